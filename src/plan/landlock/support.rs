//! What the running kernel's landlock can do of what sbx asks of it. Landlock grew by ABI
//! version; sbx uses:
//!
//! | ABI | Linux | what | where sbx needs it |
//! |---|---|---|---|
//! | 1 | 5.13 | path rules | always (`security.landlock`) |
//! | 2 | 5.19 | refer (rename and link across directories) | never: without it landlock refuses them |
//! | 3 | 6.2 | truncate | never: read-only mounts cover it |
//! | 4 | 6.7 | TCP port rules | `network.connect_ports`, `bind_ports` |
//! | 5 | 6.10 | device ioctls | never: only `/dev` has devices, and it allows them |
//! | 6 | 6.12 | scoping of abstract unix sockets and signals | host network; no PID namespace |
//!
//! A part the profile requires and the kernel lacks is one error naming the Linux version and
//! the switch that accepts running without it; a part it accepts missing is a degradation,
//! said precisely: what still holds, or what is lost.

use std::cell::OnceCell;

use landlock::{BitFlags, Scope};

use super::super::error::{PlanError, merged};
use crate::profile::{Enforcement, Network, Security};

/// What the sandbox shares with the host that landlock's scoping (ABI 6) would close: abstract
/// unix sockets live in the network namespace, signal targets in the PID namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shared {
    pub abstract_sockets: bool,
    pub signals: bool,
}

pub(super) struct Support {
    pub scopes: BitFlags<Scope>,
    pub degraded: Vec<String>,
}

/// The running kernel, as messages name it; its release is read only when a message needs it.
struct Kernel {
    abi: i32,
    release: OnceCell<String>,
}

impl Kernel {
    fn release(&self) -> &str {
        self.release.get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|r| r.trim().to_string())
                .unwrap_or_else(|_| "unknown".into())
        })
    }

    /// "this kernel (6.1.0-57-cloud-amd64, landlock ABI 2)"
    fn this(&self) -> String {
        match self.abi {
            a if a < 1 => format!("this kernel ({})", self.release()),
            a => format!("this kernel ({}, landlock ABI {a})", self.release()),
        }
    }
}

const SWITCH: &str = "`--landlock best-effort` (security.landlock = \"best-effort\")";

/// Decides, for a landlock that is not off, what is scoped, what is refused and what is
/// degraded on a kernel with landlock ABI `abi` (0: none).
pub(super) fn decide(
    security: &Security,
    network: &Network,
    shared: Shared,
    abi: i32,
) -> Result<Support, PlanError> {
    let mode = security.landlock.unwrap_or(Enforcement::Required);
    let sockets = security.scope_abstract_sockets.unwrap_or(mode);
    let kernel = Kernel {
        abi,
        release: OnceCell::new(),
    };
    let mut degraded = Vec::new();
    if abi < 1 {
        if mode == Enforcement::Required {
            return Err(PlanError::invalid(
                &merged("security.landlock"),
                format!(
                    "landlock is required, and {} has none: it needs Linux 5.13 or later with \
                     landlock in the `lsm=` boot list; {SWITCH} runs without it, and -v and the \
                     run report name what that loses",
                    kernel.this()
                ),
            ));
        }
        degraded.push(format!(
            "landlock: not applied, {} has none (it needs Linux 5.13 with landlock in the \
             `lsm=` boot list): files are confined by the mounts alone (read-only binds, a \
             read-only root and /dev) and file permissions, without landlock's per-path rights \
             (execute only from binds and tmpfs mounts; writes only into the writable ones, \
             /dev and /proc)",
            kernel.this()
        ));
    } else {
        degraded.extend(unhandled_rights(&kernel));
    }
    ports(network, mode, &kernel, &mut degraded)?;
    let mut scopes = BitFlags::empty();
    if abi >= 6 {
        scopes |= Scope::Signal;
        if sockets != Enforcement::Off {
            scopes |= Scope::AbstractUnixSocket;
        }
        return Ok(Support { scopes, degraded });
    }
    if shared.abstract_sockets && sockets != Enforcement::Off {
        if sockets == Enforcement::Required {
            let how = match security.scope_abstract_sockets {
                Some(_) => "security.scope_abstract_sockets = \"best-effort\" runs without it",
                None => {
                    "security.scope_abstract_sockets = \"best-effort\" or --landlock best-effort \
                     runs without it"
                }
            };
            return Err(PlanError::invalid(
                &merged("security.scope_abstract_sockets"),
                format!(
                    "with the host's network sbx keeps the host's abstract unix sockets out of \
                     reach with landlock ABI 6 (Linux 6.12); {} cannot: {how}, or give the \
                     sandbox a network of its own (--net none or proxy)",
                    kernel.this()
                ),
            ));
        }
        degraded.push(format!(
            "abstract unix sockets: not scoped on {} (landlock scoping needs ABI 6, Linux \
             6.12): with the host's network the command can connect to abstract unix sockets the host's \
             programs listen on (an X11 server's @/tmp/.X11-unix/X0, for one); nothing replaces \
             the scoping",
            kernel.this()
        ));
    }
    if shared.signals {
        if mode == Enforcement::Required {
            return Err(PlanError::invalid(
                &merged("security.landlock"),
                format!(
                    "without a PID namespace sbx scopes signals to the sandbox with landlock ABI \
                     6 (Linux 6.12); {} cannot: turn the PID namespace on, or {SWITCH} runs \
                     without the scoping",
                    kernel.this()
                ),
            ));
        }
        degraded.push(format!(
            "signals: not scoped on {} (landlock scoping needs ABI 6, Linux 6.12): without a \
             PID namespace the command can signal your processes outside the sandbox; nothing replaces the \
             scoping",
            kernel.this()
        ));
    }
    Ok(Support { scopes, degraded })
}

/// The file rights an older ABI does not handle, which sbx's mounts make up for.
fn unhandled_rights(kernel: &Kernel) -> Vec<String> {
    let mut out = Vec::new();
    if kernel.abi < 2 {
        out.push(format!(
            "landlock's refer right (ABI 2, Linux 5.19): missing on {}: moving or \
             hard-linking a file into another directory fails with EXDEV (mv copies instead)",
            kernel.this()
        ));
    }
    if kernel.abi < 3 {
        out.push(format!(
            "landlock's truncate right (ABI 3, Linux 6.2): missing on {}: truncation is \
             not checked by landlock; outside the writable binds and tmpfs mounts files stay \
             unwritable through their read-only mounts",
            kernel.this()
        ));
    }
    if kernel.abi < 5 {
        out.push(format!(
            "landlock's device-ioctl right (ABI 5, Linux 6.10): missing on {}: ioctls on \
             devices are not checked by landlock; the only devices are /dev's (every other \
             mount is nodev), where they are allowed anyway, and seccomp still denies TIOCSTI \
             and TIOCLINUX",
            kernel.this()
        ));
    }
    out
}

/// TCP port rules (ABI 4), when the profile has any.
fn ports(
    network: &Network,
    mode: Enforcement,
    kernel: &Kernel,
    degraded: &mut Vec<String>,
) -> Result<(), PlanError> {
    let key = match (&network.connect_ports, &network.bind_ports) {
        (Some(_), _) => "network.connect_ports",
        (None, Some(_)) => "network.bind_ports",
        (None, None) => return Ok(()),
    };
    if kernel.abi >= 4 {
        return Ok(());
    }
    if mode == Enforcement::Required {
        return Err(PlanError::invalid(
            &merged(key),
            format!(
                "TCP port rules need landlock ABI 4 (Linux 6.7); {} cannot: {SWITCH} runs \
                 without them",
                kernel.this()
            ),
        ));
    }
    degraded.push(format!(
        "{key}: not applied on {} (TCP port rules need landlock ABI 4, Linux 6.7): the \
         command may connect to and bind any TCP port its network allows",
        kernel.this()
    ));
    Ok(())
}
