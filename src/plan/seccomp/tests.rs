//! The compiled filter, verified without a kernel: a small classic-BPF interpreter runs the
//! programs over a table of (architecture, syscall number, arguments) → expected action.

use super::*;
use seccompiler::sock_filter;

const ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
const ARCH_I386: u32 = 3 | 0x4000_0000;
const ARCH_AARCH64: u32 = 183 | 0x8000_0000 | 0x4000_0000;

fn native_arch() -> u32 {
    if cfg!(target_arch = "aarch64") {
        ARCH_AARCH64
    } else {
        ARCH_X86_64
    }
}

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
const LOG: u32 = libc::SECCOMP_RET_LOG;

/// `struct seccomp_data` as the kernel lays it out.
fn data(arch: u32, nr: i64, args: [u64; 6]) -> [u8; 64] {
    let mut d = [0u8; 64];
    d[0..4].copy_from_slice(&(nr as u32).to_le_bytes());
    d[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    d
}

/// Runs one program; panics on an instruction the interpreter does not know, so a change in
/// seccompiler's output cannot pass unnoticed.
fn run(prog: &[sock_filter], d: &[u8; 64]) -> u32 {
    run_counted(prog, d).0
}

/// The answer and how many instructions it took to reach it.
fn run_counted(prog: &[sock_filter], d: &[u8; 64]) -> (u32, usize) {
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        steps += 1;
        let ins = &prog[pc];
        pc += 1;
        let k = ins.k;
        match ins.code {
            0x20 => {
                let o = k as usize;
                acc = u32::from_le_bytes(d[o..o + 4].try_into().unwrap());
            }
            0x54 => acc &= k,
            0x05 => pc += k as usize,
            0x15 | 0x25 | 0x35 | 0x45 => {
                let taken = match ins.code {
                    0x15 => acc == k,
                    0x25 => acc > k,
                    0x35 => acc >= k,
                    _ => acc & k != 0,
                };
                pc += if taken { ins.jt } else { ins.jf } as usize;
            }
            0x06 => return (k, steps),
            other => panic!("unknown BPF instruction {other:#x} at {}", pc - 1),
        }
    }
}

/// All programs, combined as the kernel does: the lowest action value (as signed) wins.
fn eval(plan: &SeccompPlan, arch: u32, nr: i64, args: [u64; 6]) -> u32 {
    let d = data(arch, nr, args);
    plan.programs
        .iter()
        .map(|p| run(p, &d))
        .min_by_key(|r| (r & libc::SECCOMP_RET_ACTION_FULL) as i32)
        .unwrap()
}

fn plan_with(security: Security, cfg: Seccomp) -> SeccompPlan {
    build(&security, &cfg).unwrap().expect("seccomp on")
}

fn default_plan() -> SeccompPlan {
    plan_with(Security::default(), Seccomp::default())
}

fn a(a0: u64, a1: u64, a2: u64) -> [u64; 6] {
    [a0, a1, a2, 0, 0, 0]
}

#[test]
fn default_policy_table() {
    let p = default_plan();
    let ns_user = libc::CLONE_NEWUSER as u64;
    let sigchld = libc::SIGCHLD as u64;
    let thread = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD) as u64;
    let table: &[(&str, i64, [u64; 6], u32)] = &[
        ("getpid", libc::SYS_getpid, a(0, 0, 0), ALLOW),
        ("openat", libc::SYS_openat, a(0, 0, 0), ALLOW),
        ("ptrace", libc::SYS_ptrace, a(0, 0, 0), EPERM),
        (
            "process_vm_writev",
            libc::SYS_process_vm_writev,
            a(0, 0, 0),
            EPERM,
        ),
        ("keyctl", libc::SYS_keyctl, a(0, 0, 0), EPERM),
        ("add_key", libc::SYS_add_key, a(0, 0, 0), EPERM),
        ("bpf", libc::SYS_bpf, a(0, 0, 0), EPERM),
        (
            "perf_event_open",
            libc::SYS_perf_event_open,
            a(0, 0, 0),
            EPERM,
        ),
        ("userfaultfd", libc::SYS_userfaultfd, a(0, 0, 0), EPERM),
        (
            "io_uring_setup",
            libc::SYS_io_uring_setup,
            a(0, 0, 0),
            EPERM,
        ),
        ("kexec_load", libc::SYS_kexec_load, a(0, 0, 0), EPERM),
        ("finit_module", libc::SYS_finit_module, a(0, 0, 0), EPERM),
        (
            "open_by_handle_at",
            libc::SYS_open_by_handle_at,
            a(0, 0, 0),
            EPERM,
        ),
        ("mount", libc::SYS_mount, a(0, 0, 0), EPERM),
        ("umount2", libc::SYS_umount2, a(0, 0, 0), EPERM),
        ("pivot_root", libc::SYS_pivot_root, a(0, 0, 0), EPERM),
        ("fsopen", libc::SYS_fsopen, a(0, 0, 0), EPERM),
        ("open_tree", libc::SYS_open_tree, a(0, 0, 0), EPERM),
        ("mount_setattr", libc::SYS_mount_setattr, a(0, 0, 0), EPERM),
        ("setns", libc::SYS_setns, a(0, 0, 0), EPERM),
        ("reboot", libc::SYS_reboot, a(0, 0, 0), EPERM),
        ("syslog", libc::SYS_syslog, a(0, 0, 0), EPERM),
        ("clone plain fork", libc::SYS_clone, a(sigchld, 0, 0), ALLOW),
        ("clone thread", libc::SYS_clone, a(thread, 0, 0), ALLOW),
        (
            "clone newuser",
            libc::SYS_clone,
            a(ns_user | sigchld, 0, 0),
            EPERM,
        ),
        (
            "clone newnet",
            libc::SYS_clone,
            a(libc::CLONE_NEWNET as u64, 0, 0),
            EPERM,
        ),
        ("clone newtime", libc::SYS_clone, a(0x80, 0, 0), EPERM),
        (
            "clone newuser high garbage",
            libc::SYS_clone,
            a(0xdead_beef_0000_0000 | ns_user, 0, 0),
            EPERM,
        ),
        (
            "clone high garbage only",
            libc::SYS_clone,
            a(0xdead_beef_0000_0000 | sigchld, 0, 0),
            ALLOW,
        ),
        ("clone3", libc::SYS_clone3, a(0, 0, 0), ENOSYS),
        (
            "unshare newns",
            libc::SYS_unshare,
            a(libc::CLONE_NEWNS as u64, 0, 0),
            EPERM,
        ),
        (
            "unshare newuser",
            libc::SYS_unshare,
            a(ns_user, 0, 0),
            EPERM,
        ),
        (
            "unshare files",
            libc::SYS_unshare,
            a(libc::CLONE_FILES as u64, 0, 0),
            ALLOW,
        ),
        (
            "ioctl TIOCSTI",
            libc::SYS_ioctl,
            a(0, libc::TIOCSTI, 0),
            EPERM,
        ),
        (
            "ioctl TIOCSTI high bits",
            libc::SYS_ioctl,
            a(0, 0xffff_ffff_0000_0000 | libc::TIOCSTI, 0),
            EPERM,
        ),
        (
            "ioctl TIOCLINUX",
            libc::SYS_ioctl,
            a(0, libc::TIOCLINUX, 0),
            EPERM,
        ),
        (
            "ioctl TCGETS",
            libc::SYS_ioctl,
            a(0, libc::TCGETS, 0),
            ALLOW,
        ),
        (
            "socket inet",
            libc::SYS_socket,
            a(libc::AF_INET as u64, 1, 0),
            ALLOW,
        ),
        (
            "socket inet6",
            libc::SYS_socket,
            a(libc::AF_INET6 as u64, 1, 0),
            ALLOW,
        ),
        (
            "socket unix",
            libc::SYS_socket,
            a(libc::AF_UNIX as u64, 1, 0),
            ALLOW,
        ),
        (
            "socket packet",
            libc::SYS_socket,
            a(libc::AF_PACKET as u64, 3, 0),
            EPERM,
        ),
        (
            "socket packet high bits",
            libc::SYS_socket,
            a(0x1_0000_0000 | libc::AF_PACKET as u64, 3, 0),
            EPERM,
        ),
        (
            "socket alg",
            libc::SYS_socket,
            a(libc::AF_ALG as u64, 5, 0),
            EPERM,
        ),
        (
            "socket vsock",
            libc::SYS_socket,
            a(libc::AF_VSOCK as u64, 1, 0),
            EPERM,
        ),
        (
            "netlink route",
            libc::SYS_socket,
            a(libc::AF_NETLINK as u64, 3, libc::NETLINK_ROUTE as u64),
            ALLOW,
        ),
        (
            "netlink audit",
            libc::SYS_socket,
            a(libc::AF_NETLINK as u64, 3, libc::NETLINK_AUDIT as u64),
            EPERM,
        ),
        (
            "personality default",
            libc::SYS_personality,
            a(0, 0, 0),
            ALLOW,
        ),
        (
            "personality query",
            libc::SYS_personality,
            a(0xffff_ffff, 0, 0),
            ALLOW,
        ),
        (
            "personality linux32",
            libc::SYS_personality,
            a(8, 0, 0),
            EPERM,
        ),
        (
            "personality no-aslr",
            libc::SYS_personality,
            a(0x0040000, 0, 0),
            EPERM,
        ),
    ];
    for (what, nr, args, want) in table {
        let got = eval(&p, native_arch(), *nr, *args);
        assert_eq!(got, *want, "{what}: got {got:#x}, want {want:#x}");
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_and_i386_never_reach_an_allowed_path() {
    let p = default_plan();
    for nr in [
        libc::SYS_getpid,
        libc::SYS_ptrace,
        libc::SYS_mount,
        libc::SYS_unshare,
        0,
        511,
    ] {
        let x32 = nr | 0x4000_0000;
        assert_eq!(
            eval(&p, ARCH_X86_64, x32, a(0, 0, 0)),
            EPERM,
            "x32 nr {x32:#x}"
        );
        assert_eq!(eval(&p, ARCH_I386, nr, a(0, 0, 0)), KILL, "i386 nr {nr}");
    }
}

#[test]
fn profile_can_allow_deny_and_choose_the_action() {
    let cfg = Seccomp {
        allow: vec!["ptrace".into()],
        deny: vec!["chroot".into()],
        action: Some(SeccompAction::Kill),
    };
    let p = plan_with(Security::default(), cfg);
    assert_eq!(eval(&p, native_arch(), libc::SYS_ptrace, a(0, 0, 0)), ALLOW);
    assert_eq!(eval(&p, native_arch(), libc::SYS_chroot, a(0, 0, 0)), KILL);
    assert_eq!(eval(&p, native_arch(), libc::SYS_bpf, a(0, 0, 0)), KILL);
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        eval(&p, ARCH_X86_64, libc::SYS_getpid | 0x4000_0000, a(0, 0, 0)),
        KILL
    );

    let log = plan_with(
        Security::default(),
        Seccomp {
            action: Some(SeccompAction::Log),
            ..Default::default()
        },
    );
    assert_eq!(eval(&log, native_arch(), libc::SYS_bpf, a(0, 0, 0)), LOG);
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        eval(
            &log,
            ARCH_X86_64,
            libc::SYS_getpid | 0x4000_0000,
            a(0, 0, 0)
        ),
        EPERM,
        "x32 is never allowed"
    );
}

#[test]
fn unknown_names_are_errors() {
    let cfg = Seccomp {
        deny: vec!["getpid".into(), "no_such_call".into()],
        ..Default::default()
    };
    let e = build(&Security::default(), &cfg).unwrap_err().to_string();
    assert!(e.contains("no_such_call") && !e.contains("getpid,"), "{e}");
    assert!(e.contains("seccomp.deny"), "{e}");
    let cfg = Seccomp {
        allow: vec!["x".into()],
        deny: vec![],
        action: None,
    };
    assert!(build(&Security::default(), &cfg).is_err());
}

#[test]
fn off_and_nested_userns() {
    let off = Security {
        seccomp: Some(SeccompMode::Off),
        ..Default::default()
    };
    assert!(build(&off, &Seccomp::default()).unwrap().is_none());
    let nested = Security {
        nested_userns: Some(true),
        ..Default::default()
    };
    let p = plan_with(nested, Seccomp::default());
    let user = libc::CLONE_NEWUSER as u64;
    assert_eq!(
        eval(&p, native_arch(), libc::SYS_clone, a(user, 0, 0)),
        ALLOW
    );
    assert_eq!(
        eval(&p, native_arch(), libc::SYS_unshare, a(user, 0, 0)),
        ALLOW
    );
    assert_eq!(eval(&p, native_arch(), libc::SYS_ptrace, a(0, 0, 0)), EPERM);
}

/// The same rules as `build` makes, compiled by seccompiler's own backend (a linear chain):
/// the reference the binary search must agree with.
fn reference(nested: bool, action: SeccompAction) -> Vec<sock_filter> {
    use seccompiler::{
        SeccompAction as SA, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule,
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &(name, nr) in DENY_ALWAYS {
        if !(nested && name == "setns") {
            rules.insert(nr, Vec::new());
        }
    }
    let dword =
        |arg, op, v: u64| SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, v).unwrap();
    for (_, nr, conds) in conditional_rules(nested) {
        // One rule with "any of these bits" is, for seccompiler, one rule per bit.
        if let [
            Cond {
                arg,
                check: Check::AnyBit(mask),
            },
        ] = conds[..]
        {
            for bit in (0..32).map(|b| 1u32 << b).filter(|b| mask & b != 0) {
                let c = dword(arg, SeccompCmpOp::MaskedEq(bit.into()), bit.into());
                rules
                    .entry(nr)
                    .or_default()
                    .push(SeccompRule::new(vec![c]).unwrap());
            }
            continue;
        }
        let conds = conds
            .iter()
            .map(|c| match c.check {
                Check::Eq(v) => dword(c.arg, SeccompCmpOp::Eq, v.into()),
                Check::Ne(v) => dword(c.arg, SeccompCmpOp::Ne, v.into()),
                Check::AnyBit(_) => panic!("AnyBit only alone in a rule"),
            })
            .collect();
        rules
            .entry(nr)
            .or_default()
            .push(SeccompRule::new(conds).unwrap());
    }
    let on_match = match action {
        SeccompAction::Errno => SA::Errno(libc::EPERM as u32),
        SeccompAction::Kill => SA::KillProcess,
        SeccompAction::Log => SA::Log,
    };
    let compile = |rules, on_match| {
        BpfProgram::try_from(SeccompFilter::new(rules, SA::Allow, on_match, arch()).unwrap())
            .unwrap()
    };
    let clone3 = [(libc::SYS_clone3, Vec::new())].into();
    chain(vec![
        compile(rules, on_match),
        compile(clone3, SA::Errno(libc::ENOSYS as u32)),
    ])
}

/// Argument values around every rule's edges: each flag alone and together, with garbage in
/// the upper half, every socket family, the filtered ioctls and their neighbours.
#[allow(clippy::unnecessary_cast)] // ioctl requests are u64 in glibc, i32 in musl
fn interesting_args() -> Vec<[u64; 6]> {
    let mut first: Vec<u64> = vec![0, 1, 8, 0xffff_ffff, PER_QUERY.into(), 0x1_0000_0000];
    let all_flags: u64 = NAMESPACE_FLAGS.iter().fold(0, |a, f| a | f);
    for &f in NAMESPACE_FLAGS {
        first.extend([f, f | 0x11, f | 0xdead_0000_0000, all_flags & !f]);
    }
    first.push(all_flags);
    first.extend(0..48u64);
    let second = [
        0,
        libc::TIOCSTI as u64,
        libc::TIOCLINUX as u64,
        libc::TIOCSTI as u64 | 1 << 32,
        libc::TIOCSTI as u64 + 1,
        0x5401,
    ];
    let third = [0, 1, 4, 9, 15, libc::NETLINK_ROUTE as u64 | 1 << 40];
    let mut out = Vec::new();
    for &x in &first {
        for &y in &second {
            for &z in &third {
                out.push(a(x, y, z));
            }
        }
    }
    out
}

#[test]
fn the_binary_search_answers_as_seccompilers_chain_does() {
    let conditional: Vec<i64> = conditional_rules(false).iter().map(|r| r.1).collect();
    let args = interesting_args();
    for nested in [false, true] {
        for action in [
            SeccompAction::Errno,
            SeccompAction::Kill,
            SeccompAction::Log,
        ] {
            let security = Security {
                nested_userns: Some(nested),
                ..Security::default()
            };
            let cfg = Seccomp {
                action: Some(action),
                ..Seccomp::default()
            };
            let ours = plan_with(security, cfg);
            let theirs = reference(nested, action);
            for arch in [native_arch(), ARCH_I386] {
                for nr in 0..1024i64 {
                    let cases: &[[u64; 6]] = if conditional.contains(&nr) {
                        &args
                    } else {
                        &args[..3]
                    };
                    for &args in cases {
                        let want = run(&theirs, &data(arch, nr, args));
                        assert_eq!(
                            eval(&ours, arch, nr, args),
                            want,
                            "nested {nested}, {action:?}, arch {arch:#x}, nr {nr}, args {args:x?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn every_call_is_decided_in_a_few_steps() {
    // The kernel walks the filter for every syscall number when it is installed (to fill its
    // action cache), so the longest walk bounds the install cost as much as the call cost.
    // A walk that reads an argument ends the kernel's emulation, so the rules' own length
    // (clone's eight flags) counts only for calls made.
    let p = default_plan();
    assert_eq!(p.programs.len(), 1);
    let conditional: Vec<i64> = conditional_rules(false).iter().map(|r| r.1).collect();
    let walk = |nr| run_counted(&p.programs[0], &data(native_arch(), nr, a(0, 0, 0))).1;
    let worst = (0..1024i64)
        .filter(|nr| !conditional.contains(nr))
        .map(walk)
        .max()
        .unwrap();
    assert!(worst <= 20, "the longest walk is {worst} instructions");
    let worst_rules = conditional.iter().map(|&nr| walk(nr)).max().unwrap();
    assert!(
        worst_rules <= 48,
        "a rule walk takes {worst_rules} instructions"
    );
}
