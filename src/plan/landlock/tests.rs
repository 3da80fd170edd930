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

const ISOLATED: Shared = Shared {
    abstract_sockets: false,
    signals: false,
};
const HOST_NET: Shared = Shared {
    abstract_sockets: true,
    signals: false,
};
const NO_PIDNS: Shared = Shared {
    abstract_sockets: false,
    signals: true,
};

fn security(landlock: Enforcement, sockets: Option<Enforcement>) -> Security {
    Security {
        landlock: Some(landlock),
        scope_abstract_sockets: sockets,
        ..Default::default()
    }
}

fn ports() -> Network {
    Network {
        connect_ports: Some(vec![443]),
        ..Default::default()
    }
}

fn plan(s: &Security, n: &Network, shared: Shared, abi: i32) -> Landlock {
    build(s, n, &grants(), shared, abi).unwrap()
}

fn error(s: &Security, n: &Network, shared: Shared, abi: i32) -> String {
    build(s, n, &grants(), shared, abi).unwrap_err().to_string()
}

#[test]
fn grants_map_to_access_rights() {
    let l = plan(&Security::default(), &Network::default(), ISOLATED, 7);
    let p = l.plan.unwrap();
    let get = |path: &str| {
        p.rules
            .iter()
            .find(|(p, _)| p.to_str() == Ok(path))
            .unwrap()
            .1
    };
    assert!(!get("/").contains(AccessFs::WriteFile) && !get("/").contains(AccessFs::Execute));
    assert!(get("/usr").contains(AccessFs::Execute) && !get("/usr").contains(AccessFs::WriteFile));
    assert!(get("/work").contains(AccessFs::WriteFile | AccessFs::MakeReg | AccessFs::RemoveDir));
    assert!(get("/dev").contains(AccessFs::IoctlDev | AccessFs::WriteFile));
    assert!(!get("/dev").contains(AccessFs::Execute) && !get("/dev").contains(AccessFs::MakeReg));
    assert!(!get("/proc").contains(AccessFs::Execute));
    assert!(
        !get("/etc/hosts").contains(AccessFs::ReadDir),
        "file rules carry file rights only"
    );
    assert_eq!(p.scopes, Scope::AbstractUnixSocket | Scope::Signal);
    assert!(l.degraded.is_empty(), "{:?}", l.degraded);
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
    let p = build(
        &Security::default(),
        &Network::default(),
        &grants,
        ISOLATED,
        7,
    )
    .unwrap()
    .plan
    .unwrap();
    let paths: Vec<&str> = p.rules.iter().map(|(p, _)| p.to_str().unwrap()).collect();
    assert_eq!(paths, ["/", "/tmp", "/tmpx", "/dev", "/dev/shm"]);
}

/// On every ABI from 6 on, the default profile's plan is the same: nothing degraded.
#[test]
fn a_current_kernel_degrades_nothing() {
    let default = security(Enforcement::Required, Some(Enforcement::BestEffort));
    for abi in [6, 7, 8, 9, 10, 11] {
        for shared in [ISOLATED, HOST_NET, NO_PIDNS] {
            let l = plan(&default, &ports(), shared, abi);
            assert!(l.degraded.is_empty(), "ABI {abi}: {:?}", l.degraded);
            let p = l.plan.unwrap();
            assert_eq!(p.scopes, Scope::AbstractUnixSocket | Scope::Signal);
            assert_eq!(p.connect_ports.as_deref(), Some(&[443][..]));
        }
    }
}

#[test]
fn required_fails_closed_naming_the_kernel_and_the_switch() {
    let s = Security::default();
    let e = error(&s, &Network::default(), ISOLATED, 0);
    assert!(
        e.contains("Linux 5.13") && e.contains("--landlock best-effort") && !e.contains('\n'),
        "{e}"
    );
    let e = error(&s, &ports(), ISOLATED, 3);
    assert!(
        e.contains("network.connect_ports") && e.contains("Linux 6.7") && e.contains("ABI 3"),
        "{e}"
    );
    assert!(e.contains("--landlock best-effort"), "{e}");
    // Abstract sockets (host network), with nothing in the profile to accept their loss.
    let e = error(&s, &Network::default(), HOST_NET, 5);
    assert!(
        e.contains("scope_abstract_sockets") && e.contains("Linux 6.12"),
        "{e}"
    );
    assert!(e.contains("--landlock best-effort"), "{e}");
    // Required explicitly: the key is the way out, not --landlock.
    let e = error(
        &security(Enforcement::BestEffort, Some(Enforcement::Required)),
        &Network::default(),
        HOST_NET,
        2,
    );
    assert!(
        e.contains("scope_abstract_sockets") && !e.contains("--landlock"),
        "{e}"
    );
    // Signals (no PID namespace): the profile's own landlock mode decides.
    let e = error(
        &security(Enforcement::Required, Some(Enforcement::BestEffort)),
        &Network::default(),
        NO_PIDNS,
        5,
    );
    assert!(
        e.contains("signals") && e.contains("PID namespace") && e.contains("6.12"),
        "{e}"
    );
    // What nothing needs: a private network and PID namespace on ABI 5.
    assert!(plan(&s, &Network::default(), ISOLATED, 5).plan.is_some());
}

/// The default profile accepts running without abstract-socket scoping where the kernel
/// lacks it (its network is private unless the user shares the host's): named, not refused.
#[test]
fn accepted_scoping_is_a_degradation_said_once() {
    let default = security(Enforcement::Required, Some(Enforcement::BestEffort));
    let l = plan(&default, &Network::default(), HOST_NET, 2);
    let p = l.plan.expect("landlock applies at ABI 2");
    assert_eq!(p.mode, Enforcement::Required);
    assert!(p.scopes.is_empty());
    let sockets: Vec<&String> = l
        .degraded
        .iter()
        .filter(|d| d.contains("abstract unix sockets"))
        .collect();
    assert_eq!(sockets.len(), 1, "{:?}", l.degraded);
    assert!(sockets[0].contains("ABI 2") && sockets[0].contains("Linux 6.12"));
    // ABI 2 also lacks truncate (3) and device ioctls (5): named, covered by the mounts.
    for right in ["truncate", "device-ioctl"] {
        assert_eq!(
            l.degraded.iter().filter(|d| d.contains(right)).count(),
            1,
            "{right}: {:?}",
            l.degraded
        );
    }
    assert_eq!(l.degraded.len(), 3, "{:?}", l.degraded);
    // A private network has no host sockets to scope: only the rights are named.
    let l = plan(&default, &Network::default(), ISOLATED, 2);
    assert_eq!(l.degraded.len(), 2, "{:?}", l.degraded);
}

#[test]
fn best_effort_degrades_and_says_so() {
    let s = security(Enforcement::BestEffort, None);
    let l = plan(&s, &Network::default(), ISOLATED, 0);
    assert!(l.plan.is_none());
    assert_eq!(l.degraded.len(), 1, "{:?}", l.degraded);
    assert!(l.degraded[0].contains("not applied") && l.degraded[0].contains("Linux 5.13"));
    let l = plan(
        &s,
        &ports(),
        Shared {
            abstract_sockets: true,
            signals: true,
        },
        3,
    );
    let p = l.plan.unwrap();
    assert!(p.connect_ports.is_none() && p.scopes.is_empty());
    for what in [
        "connect_ports",
        "abstract unix sockets",
        "signals",
        "device-ioctl",
    ] {
        assert_eq!(
            l.degraded.iter().filter(|d| d.contains(what)).count(),
            1,
            "{what}: {:?}",
            l.degraded
        );
    }
    assert!(
        !l.degraded.iter().any(|d| d.contains("truncate")),
        "ABI 3 has it"
    );
    let off = security(Enforcement::Off, None);
    let l = plan(&off, &Network::default(), HOST_NET, 7);
    assert!(l.plan.is_none() && l.degraded.is_empty());
}

/// `scope_abstract_sockets = "off"` leaves the host's abstract sockets reachable on purpose
/// (signals stay scoped); it is a choice, not a degradation.
#[test]
fn abstract_socket_scoping_can_be_turned_off() {
    let s = security(Enforcement::Required, Some(Enforcement::Off));
    let l = plan(&s, &Network::default(), HOST_NET, 7);
    assert_eq!(l.plan.unwrap().scopes, BitFlags::from(Scope::Signal));
    assert!(l.degraded.is_empty());
    assert!(plan(&s, &Network::default(), HOST_NET, 4).degraded.len() == 1);
}
