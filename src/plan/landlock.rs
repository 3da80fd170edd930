//! The landlock policy: which access each of the sandbox's mounts grants, decided from the
//! mount list before any fork. The rules are opened by path after pivot_root, so they name the
//! sandbox's own view.
//!
//! Everything visible may be read (the root, `/`, grants read beneath it); read-only binds add
//! execute; read-write binds and tmpfs mounts grant everything; `/dev` read, write and device
//! ioctls; `/proc` read and write. Nothing else is writable, even where a mount would allow it.

use std::ffi::CString;

use landlock::{ABI, Access, AccessFs, BitFlags};

use super::error::{PlanError, merged as origin};
use super::mount::{Grant, GrantRule};
use crate::profile::{Enforcement, Network, Security};

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
    /// Scope abstract unix sockets and signals to the sandbox (ABI >= 6).
    pub scoped: bool,
    /// What could not be enforced on this kernel (best-effort only).
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

/// Builds the plan for a kernel with landlock ABI `kernel_abi` (0 = none).
pub fn build(
    security: &Security,
    network: &Network,
    grants: &[GrantRule],
    shares_signals_or_sockets: bool,
    kernel_abi: i32,
) -> Result<Option<LandlockPlan>, PlanError> {
    let mode = security.landlock.unwrap_or(Enforcement::Required);
    if mode == Enforcement::Off {
        return Ok(None);
    }
    let required = mode == Enforcement::Required;
    let abi = ABI::from(kernel_abi);
    let mut degraded = Vec::new();
    if kernel_abi < 1 {
        if required {
            return Err(PlanError::invalid(
                &origin("security.landlock"),
                "landlock is required but this kernel does not provide it (needs Linux >= 5.13 \
                 with landlock in the `lsm=` boot list); set landlock = \"best-effort\" or \"off\"",
            ));
        }
        return Ok(None);
    }
    let wants_ports = network.connect_ports.is_some() || network.bind_ports.is_some();
    if wants_ports && kernel_abi < 4 {
        if required {
            return Err(PlanError::invalid(
                &origin("network.connect_ports"),
                format!(
                    "TCP port rules need landlock ABI 4 (Linux 6.7); this kernel has ABI {kernel_abi}"
                ),
            ));
        }
        degraded.push("TCP port rules (needs landlock ABI 4)".to_string());
    }
    let scoped = kernel_abi >= 6;
    if !scoped && shares_signals_or_sockets {
        if required {
            return Err(PlanError::invalid(
                &origin("security.landlock"),
                format!(
                    "with the host network or no PID namespace, sbx scopes abstract unix sockets \
                     and signals with landlock ABI 6 (Linux 6.12); this kernel has ABI {kernel_abi}"
                ),
            ));
        }
        degraded.push("abstract-socket and signal scoping (needs landlock ABI 6)".to_string());
    }
    let mut rules = vec![(
        CString::new("/").expect("no NUL"),
        AccessFs::from_read(abi) & !AccessFs::Execute,
    )];
    // Rights accumulate down the path (through mount points too): a rule that grants no more
    // than a rule above it adds nothing, and each rule costs four system calls at startup.
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
    let ports_ok = kernel_abi >= 4;
    Ok(Some(LandlockPlan {
        mode,
        abi,
        kernel_abi,
        handled: AccessFs::from_all(abi),
        rules,
        connect_ports: network.connect_ports.clone().filter(|_| ports_ok),
        bind_ports: network.bind_ports.clone().filter(|_| ports_ok),
        scoped,
        degraded,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Vec<GrantRule> {
        vec![
            GrantRule {
                path: "/usr".into(),
                grant: Grant::ReadExec,
                is_dir: true,
            },
            GrantRule {
                path: "/work".into(),
                grant: Grant::Full,
                is_dir: true,
            },
            GrantRule {
                path: "/dev".into(),
                grant: Grant::Device,
                is_dir: true,
            },
            GrantRule {
                path: "/proc".into(),
                grant: Grant::Proc,
                is_dir: true,
            },
            GrantRule {
                path: "/etc/hosts".into(),
                grant: Grant::ReadExec,
                is_dir: false,
            },
        ]
    }

    #[test]
    fn grants_map_to_access_rights() {
        let p = build(
            &Security::default(),
            &Network::default(),
            &grants(),
            false,
            7,
        )
        .unwrap()
        .unwrap();
        let get = |path: &str| {
            p.rules
                .iter()
                .find(|(p, _)| p.to_str() == Ok(path))
                .unwrap()
                .1
        };
        assert!(!get("/").contains(AccessFs::WriteFile) && !get("/").contains(AccessFs::Execute));
        assert!(
            get("/usr").contains(AccessFs::Execute) && !get("/usr").contains(AccessFs::WriteFile)
        );
        assert!(
            get("/work").contains(AccessFs::WriteFile | AccessFs::MakeReg | AccessFs::RemoveDir)
        );
        assert!(get("/dev").contains(AccessFs::IoctlDev | AccessFs::WriteFile));
        assert!(
            !get("/dev").contains(AccessFs::Execute) && !get("/dev").contains(AccessFs::MakeReg)
        );
        assert!(!get("/proc").contains(AccessFs::Execute));
        assert!(
            !get("/etc/hosts").contains(AccessFs::ReadDir),
            "file rules carry file rights only"
        );
        assert!(p.scoped);
    }

    #[test]
    fn rules_that_add_nothing_are_left_out() {
        let grants = vec![
            GrantRule {
                path: "/tmp".into(),
                grant: Grant::Full,
                is_dir: true,
            },
            GrantRule {
                path: "/tmp/work".into(),
                grant: Grant::Full,
                is_dir: true,
            },
            GrantRule {
                path: "/tmp/work/ro".into(),
                grant: Grant::ReadExec,
                is_dir: true,
            },
            GrantRule {
                path: "/tmpx".into(),
                grant: Grant::ReadExec,
                is_dir: true,
            },
            GrantRule {
                path: "/dev".into(),
                grant: Grant::Device,
                is_dir: true,
            },
            GrantRule {
                path: "/dev/null".into(),
                grant: Grant::Device,
                is_dir: false,
            },
            GrantRule {
                path: "/dev/shm".into(),
                grant: Grant::Full,
                is_dir: true,
            },
        ];
        let p = build(&Security::default(), &Network::default(), &grants, false, 7)
            .unwrap()
            .unwrap();
        let paths: Vec<&str> = p.rules.iter().map(|(p, _)| p.to_str().unwrap()).collect();
        assert_eq!(paths, ["/", "/tmp", "/tmpx", "/dev", "/dev/shm"]);
    }

    #[test]
    fn required_fails_closed_on_old_kernels() {
        let s = Security::default();
        assert!(build(&s, &Network::default(), &grants(), false, 0).is_err());
        let ports = Network {
            connect_ports: Some(vec![443]),
            ..Default::default()
        };
        assert!(build(&s, &ports, &grants(), false, 3).is_err());
        assert!(build(&s, &Network::default(), &grants(), true, 5).is_err());
        assert!(
            build(&s, &Network::default(), &grants(), false, 5)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn best_effort_degrades_and_says_so() {
        let s = Security {
            landlock: Some(Enforcement::BestEffort),
            ..Default::default()
        };
        assert!(
            build(&s, &Network::default(), &grants(), false, 0)
                .unwrap()
                .is_none()
        );
        let ports = Network {
            connect_ports: Some(vec![443]),
            ..Default::default()
        };
        let p = build(&s, &ports, &grants(), true, 3).unwrap().unwrap();
        assert_eq!(p.degraded.len(), 2, "{:?}", p.degraded);
        assert!(p.connect_ports.is_none());
        let off = Security {
            landlock: Some(Enforcement::Off),
            ..Default::default()
        };
        assert!(
            build(&off, &Network::default(), &grants(), false, 7)
                .unwrap()
                .is_none()
        );
    }
}
