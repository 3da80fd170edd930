//! The landlock policy: which access each of the sandbox's mounts grants, decided from the
//! mount list before any fork. The rules are opened by path after pivot_root, so they name the
//! sandbox's own view.
//!
//! Everything visible may be read (the root, `/`, grants read beneath it); read-only binds add
//! execute; read-write binds and tmpfs mounts grant everything; `/dev` read, write and device
//! ioctls; `/proc` read and write. Nothing else is writable, even where a mount would allow it.
//!
//! What the running kernel's landlock ABI cannot do is decided in `support`: a refusal where
//! the profile requires it, else a degradation named in -v and the run report.

mod support;
#[cfg(test)]
mod tests;

use std::ffi::CString;

use landlock::{ABI, Access, AccessFs, BitFlags, Scope};

use super::error::PlanError;
use super::mount::{Grant, GrantRule};
use crate::profile::{Enforcement, Network, Security};
pub use support::Shared;

#[derive(Clone, Debug)]
pub struct LandlockPlan {
    pub mode: Enforcement,
    /// The ABI the rules are written for: the kernel's, capped at what the crate knows.
    pub abi: ABI,
    pub kernel_abi: i32,
    pub handled: BitFlags<AccessFs>,
    /// (path inside the sandbox, access) in order, `/` first.
    pub rules: Vec<(CString, BitFlags<AccessFs>)>,
    pub connect_ports: Option<Vec<u16>>,
    pub bind_ports: Option<Vec<u16>>,
    /// What is scoped to the sandbox (ABI >= 6): abstract unix sockets, signals.
    pub scopes: BitFlags<Scope>,
}

impl LandlockPlan {
    /// What is scoped, for messages: "abstract sockets and signals", "signals" or "".
    pub fn scoped(&self) -> &'static str {
        let sockets = self.scopes.contains(Scope::AbstractUnixSocket);
        match (sockets, self.scopes.contains(Scope::Signal)) {
            (true, true) => "abstract sockets and signals",
            (true, false) => "abstract sockets",
            (false, true) => "signals",
            (false, false) => "",
        }
    }
}

/// The landlock plan (none when landlock is off or the kernel has none), and what this kernel
/// cannot enforce of what sbx would, in words: each is named once in -v and the run report.
#[derive(Clone, Debug)]
pub struct Landlock {
    pub plan: Option<LandlockPlan>,
    pub degraded: Vec<String>,
}

fn access(grant: Grant, abi: ABI, is_dir: bool) -> BitFlags<AccessFs> {
    let all = AccessFs::from_all(abi);
    let read = AccessFs::from_read(abi);
    let a = match grant {
        Grant::Full => all,
        Grant::ReadExec => read,
        Grant::Proc => (read | AccessFs::WriteFile) & !AccessFs::Execute,
        Grant::Device => {
            (read | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev)
                & !AccessFs::Execute
                & all
        }
    };
    if is_dir {
        a
    } else {
        a & AccessFs::from_file(abi)
    }
}

/// The path rules, `/` first. Rights accumulate down the path (through mount points too): a
/// rule that grants no more than a rule above it adds nothing, and each rule costs four system
/// calls at startup.
fn rules(grants: &[GrantRule], abi: ABI) -> Result<Vec<(CString, BitFlags<AccessFs>)>, PlanError> {
    let mut rules = vec![(
        CString::new("/").expect("no NUL"),
        AccessFs::from_read(abi) & !AccessFs::Execute,
    )];
    let mut dirs: Vec<(&str, BitFlags<AccessFs>)> = vec![("/", rules[0].1)];
    for g in grants {
        let a = access(g.grant, abi, g.is_dir);
        let below = |dir: &str| dir == "/" || g.path.starts_with(&format!("{dir}/"));
        if dirs.iter().any(|(dir, da)| below(dir) && da.contains(a)) {
            continue;
        }
        let path =
            CString::new(g.path.as_str()).map_err(|_| PlanError::Other("path with NUL".into()))?;
        rules.push((path, a));
        if g.is_dir {
            dirs.push((&g.path, a));
        }
    }
    Ok(rules)
}

/// Builds the plan for a kernel with landlock ABI `kernel_abi` (0 = none), for a sandbox that
/// shares `shared` with the host.
pub fn build(
    security: &Security,
    network: &Network,
    grants: &[GrantRule],
    shared: Shared,
    kernel_abi: i32,
) -> Result<Landlock, PlanError> {
    let mode = security.landlock.unwrap_or(Enforcement::Required);
    if mode == Enforcement::Off {
        return Ok(Landlock {
            plan: None,
            degraded: Vec::new(),
        });
    }
    let support = support::decide(security, network, shared, kernel_abi)?;
    if kernel_abi < 1 {
        return Ok(Landlock {
            plan: None,
            degraded: support.degraded,
        });
    }
    let abi = ABI::from(kernel_abi);
    let ports_ok = kernel_abi >= 4;
    Ok(Landlock {
        plan: Some(LandlockPlan {
            mode,
            abi,
            kernel_abi,
            handled: AccessFs::from_all(abi),
            rules: rules(grants, abi)?,
            connect_ports: network.connect_ports.clone().filter(|_| ports_ok),
            bind_ports: network.bind_ports.clone().filter(|_| ports_ok),
            scopes: support.scopes,
        }),
        degraded: support.degraded,
    })
}
