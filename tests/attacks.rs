//! The attack suite: each test attacks one claim of the sandbox from inside (mostly with the
//! probe, tests/probe/sbx_probe.rs, bound in at /probe) and, where the attack has a host side,
//! checks the host too. Controls (the same attack with the layer turned off) show that each
//! test can tell a blocked attack from a harmless one.

mod common;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{AsTestUid, Ran, Running, profile, run_keep};

// ---- harness additions ----

/// A directory readable by the test uid holding a copy of the probe, built on demand
/// (`cargo test --test attacks` does not build examples by itself).
fn probe_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap(); // target/<profile>
        let mut build = Command::new(env!("CARGO"));
        build.args([
            "build",
            "--quiet",
            "--example",
            "sbx-probe",
            "--manifest-path",
        ]);
        build.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let st = build.status().expect("run cargo to build the probe");
        assert!(st.success(), "building the sbx-probe example failed: {st}");
        let built = profile_dir.join("examples/sbx-probe");
        let copy = common::copy_per_build(&built, "sbx-test-probe", "sbx-probe");
        copy.parent().unwrap().to_path_buf()
    })
}

/// `sbx OPTS... --ro-bind PROBE_DIR:/probe -- /probe/sbx-probe ATTACKS...`, not yet run.
fn probe<S: AsRef<str>>(opts: &[S], attacks: &[S]) -> common::Sbx {
    let mut args: Vec<String> = opts.iter().map(|s| s.as_ref().to_string()).collect();
    args.push("--ro-bind".into());
    args.push(format!("{}:/probe", probe_dir().display()));
    args.push("--".into());
    args.push("/probe/sbx-probe".into());
    args.extend(attacks.iter().map(|s| s.as_ref().to_string()));
    common::sbx(args)
}

/// The probe's `NAME: RESULT` lines.
fn results(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Checks every `(attack, expected result)`, reporting all mismatches at once.
fn expect(r: &Ran, want: &[(&str, &str)]) {
    let got = results(&r.stdout);
    let bad: Vec<String> = want
        .iter()
        .filter(|(k, v)| got.get(*k).map(String::as_str) != Some(*v))
        .map(|(k, v)| format!("{k}: want {v}, got {:?}", got.get(*k)))
        .collect();
    assert!(bad.is_empty(), "{}\n{r:?}", bad.join("\n"));
}

/// The probe's result for one attack.
fn result<'a>(got: &'a BTreeMap<String, String>, attack: &str, r: &Ran) -> &'a str {
    got.get(attack)
        .unwrap_or_else(|| panic!("no result for {attack}: {r:?}"))
}

/// A `sleep` on the host, run as the sandbox's uid, that attacks must not reach.
struct Canary(Child);

impl Canary {
    fn start() -> Canary {
        let mut cmd = Command::new("sleep");
        cmd.arg("30")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .as_test_uid();
        Canary(cmd.spawn().expect("spawn the canary"))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// How the canary ended, if it does within `timeout`.
    fn ended(&mut self, timeout: Duration) -> Option<ExitStatus> {
        common::exited_within(&mut self.0, timeout)
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `Key:` fields of a /proc/PID/status text.
fn status_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

const CAP_SETS: [&str; 5] = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"];

/// Asserts that a status text shows no capabilities and no_new_privs.
fn assert_unprivileged(who: &str, status: &str, r: &dyn std::fmt::Debug) {
    let f = status_fields(status);
    for set in CAP_SETS {
        assert_eq!(
            f.get(set).map(String::as_str),
            Some("0000000000000000"),
            "{who}: {set}; {r:?}"
        );
    }
    assert_eq!(
        f.get("NoNewPrivs").map(String::as_str),
        Some("1"),
        "{who}: {r:?}"
    );
}

/// Host pids listed in /proc/PID/task/PID/children.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// (fd, link target) of a host process.
fn fd_links(pid: u32) -> Vec<(i32, String)> {
    let mut out: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let fd = e.file_name().to_str()?.parse().ok()?;
                    let link = std::fs::read_link(e.path()).ok()?;
                    Some((fd, link.display().to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

// ---- 1. no privileges ----

#[test]
fn command_and_init_hold_no_privileges() {
    let script = "cat /proc/self/status; echo =====; cat /proc/1/status";
    for extra in [&[][..], &["--map-root"][..]] {
        let r = common::sh(extra, script);
        assert_eq!(r.code, 0, "{extra:?}: {r:?}");
        let (me, init) = r
            .stdout
            .split_once("=====\n")
            .unwrap_or_else(|| panic!("{r:?}"));
        assert_unprivileged("the command", me, &r);
        assert_eq!(
            status_fields(me).get("Seccomp").map(String::as_str),
            Some("2"),
            "{r:?}"
        );
        assert_unprivileged("init (/proc/1)", init, &r);
    }
}

#[test]
fn setuid_root_binary_gains_nothing() {
    if !common::is_root() {
        common::note_skip(
            "setuid_root_binary_gains_nothing",
            "making a setuid-root binary needs root",
        );
        return;
    }
    let dir = common::Workdir::new();
    let cat = dir.path().join("cat");
    std::fs::copy("/usr/bin/cat", &cat).unwrap();
    std::os::unix::fs::chown(&cat, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&cat, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let euid = |status: &str| -> String {
        let uid = status_fields(status)
            .get("Uid")
            .cloned()
            .unwrap_or_default();
        uid.split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    // Control: on the host, the bit works for the same user.
    let host = Command::new(&cat)
        .arg("/proc/self/status")
        .uid(common::NOBODY)
        .gid(common::NOBODY)
        .output()
        .unwrap();
    let host_status = String::from_utf8_lossy(&host.stdout);
    if euid(&host_status) != "0" {
        common::note_skip(
            "setuid_root_binary_gains_nothing",
            "the setuid bit has no effect on this host's /tmp (nosuid?), so the test proves nothing",
        );
        return;
    }
    let bind = format!("{}:/suid", dir.path().display());
    let r = common::sbx(["--ro-bind", &bind, "--", "/suid/cat", "/proc/self/status"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(euid(&r.stdout), common::NOBODY.to_string(), "{r:?}");
    assert_unprivileged("the setuid binary", &r.stdout, &r);
}

// ---- 2. init: not dumpable, no host fds ----

#[test]
fn init_cannot_be_ptraced_or_written() {
    // Also as root inside (--map-root): init is non-dumpable and no one holds a capability.
    for extra in [&[][..], &["--map-root"][..]] {
        let r = probe(extra, &["proc1_mem", "ptrace_attach1"]).run();
        assert_eq!(r.code, 0, "{extra:?}: {r:?}");
        let got = results(&r.stdout);
        for attack in ["proc1_mem", "ptrace_attach1"] {
            assert_ne!(result(&got, attack, &r), "ok", "{extra:?} {attack}: {r:?}");
        }
    }
}

#[test]
fn init_holds_no_host_fds() {
    if !common::is_root() {
        common::note_skip(
            "init_holds_no_host_fds",
            "reading the fds of the sandbox's (non-dumpable) init from the host needs root",
        );
        return;
    }
    let (child, _work) = common::sbx(["--", "sleep", "10"]).spawn();
    let run = Running::new(child);
    let sbx = run.id();
    // What sbx holds as stdin/stdout/stderr: the terminal, a pipe, /dev/null.
    let stdio: Vec<String> = fd_links(sbx)
        .into_iter()
        .filter(|(fd, _)| *fd <= 2)
        .map(|(_, l)| l)
        .collect();
    assert_eq!(stdio.len(), 3, "sbx's stdio: {stdio:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let (init, fds) = loop {
        let init = children(sbx).first().copied();
        if let Some(init) = init {
            let payload_started = children(init).iter().any(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c == "sleep\n")
            });
            let fds = fd_links(init);
            if payload_started && !fds.iter().any(|(fd, _)| *fd <= 2) {
                break (init, fds);
            }
            if Instant::now() > deadline {
                panic!("init {init} still holds fds 0-2 after 5 s: {fds:?}");
            }
        } else if Instant::now() > deadline {
            panic!("sbx {sbx} has no child");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Only the report pipe, the signalfd and the watch on protected workspace paths remain,
    // and none of them is sbx's stdio.
    let expected = |l: &str| {
        l.starts_with("pipe:") || l == "anon_inode:[signalfd]" || l == "anon_inode:inotify"
    };
    assert!(
        fds.len() <= 3 && fds.iter().all(|(_, l)| expected(l)),
        "init {init} holds {fds:?}"
    );
    for (fd, link) in &fds {
        assert!(
            !stdio.contains(link),
            "init {init} holds sbx's stdio as fd {fd} ({link})"
        );
    }
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    assert_unprivileged("init seen from the host", &status, &fds);
}

// ---- 3. seccomp ----

/// Every attack the default filter must refuse, with its expected result.
fn seccomp_table() -> Vec<(&'static str, &'static str)> {
    let mut t = vec![
        ("clone_user", "EPERM"),
        ("clone_user_hi", "EPERM"),
        ("clone3", "ENOSYS"),
        ("setns", "EPERM"),
        ("ptrace_attach1", "EPERM"),
        ("process_vm_readv", "EPERM"),
        ("keyctl", "EPERM"),
        ("add_key", "EPERM"),
        ("request_key", "EPERM"),
        ("bpf", "EPERM"),
        ("perf_event_open", "EPERM"),
        ("userfaultfd", "EPERM"),
        ("io_uring_setup", "EPERM"),
        ("kexec_load", "EPERM"),
        ("init_module", "EPERM"),
        ("finit_module", "EPERM"),
        ("open_by_handle_at", "EPERM"),
        ("name_to_handle_at", "EPERM"),
        ("mount", "EPERM"),
        ("umount2", "EPERM"),
        ("pivot_root", "EPERM"),
        ("fsopen", "EPERM"),
        ("open_tree", "EPERM"),
        ("mount_setattr", "EPERM"),
        ("swapon", "EPERM"),
        ("reboot", "EPERM"),
        ("syslog", "EPERM"),
        ("acct", "EPERM"),
        ("quotactl", "EPERM"),
        ("personality_query", "ok"),
        ("tiocsti", "EPERM"),
        ("tiocsti_hi", "EPERM"),
        ("tioclinux", "EPERM"),
        ("socket_packet", "EPERM"),
        ("socket_packet_hi", "EPERM"),
        ("socket_alg", "EPERM"),
        ("netlink_audit", "EPERM"),
        ("netlink_route", "ok"),
        ("socket_inet", "ok"),
        ("socket_inet6", "ok"),
        ("socket_unix", "ok"),
    ];
    if cfg!(target_arch = "x86_64") {
        t.push(("x32", "EPERM"));
        t.push(("int80", "killed SIGSYS"));
    }
    // Last: had any of these gone through, they would change the probe's state.
    t.extend([
        ("personality8", "EPERM"),
        ("unshare_ns", "EPERM"),
        ("unshare_user", "EPERM"),
        ("ptrace_traceme", "EPERM"),
    ]);
    t
}

#[test]
fn seccomp_refuses_the_dangerous_calls() {
    if !cfg!(target_arch = "x86_64") {
        common::note_skip(
            "seccomp_refuses_the_dangerous_calls",
            "the x32 and int 0x80 attacks exist only on x86_64",
        );
    }
    let table = seccomp_table();
    let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
    let r = probe(&[], &names).run();
    assert_eq!(r.code, 0, "{r:?}");
    expect(&r, &table);
}

#[test]
fn without_seccomp_the_same_calls_reach_the_kernel() {
    let p = profile("extends = [\"default\"]\n[security]\nseccomp = \"off\"\n");
    // Calls whose kernel answer differs from the filter's; none changes the probe's state.
    let mut changed = vec![
        "clone3",
        "setns",
        "process_vm_readv",
        "keyctl",
        "request_key",
        "perf_event_open",
        "io_uring_setup",
        "name_to_handle_at",
        "personality8",
        "netlink_audit",
        "tiocsti",
    ];
    if cfg!(target_arch = "x86_64") {
        changed.extend(["x32", "int80"]);
    }
    let mut attacks = changed.clone();
    attacks.extend(["proc1_mem", "ptrace_attach1"]);
    let r = probe(&["--profile", &p.path], &attacks).run();
    assert_eq!(r.code, 0, "{r:?}");
    let got = results(&r.stdout);
    for attack in &changed {
        let v = result(&got, attack, &r);
        assert_ne!(
            v, "EPERM",
            "{attack} is still refused with seccomp off: {r:?}"
        );
    }
    assert_ne!(result(&got, "clone3", &r), "ENOSYS", "{r:?}");
    if cfg!(target_arch = "x86_64") {
        assert_ne!(result(&got, "int80", &r), "killed SIGSYS", "{r:?}");
    }
    // init stays out of reach without the filter: it is not dumpable.
    for attack in ["proc1_mem", "ptrace_attach1"] {
        assert_ne!(result(&got, attack, &r), "ok", "{attack}: {r:?}");
    }
}

#[test]
fn seccomp_deny_list_from_the_profile() {
    let p = profile("extends = [\"default\"]\n[seccomp]\ndeny = [\"getcwd\"]\n");
    let r = probe(&["--profile", &p.path], &["getcwd", "keyctl"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    expect(&r, &[("getcwd", "EPERM"), ("keyctl", "EPERM")]);
    // The shell's `pwd -P` asks getcwd(2) and reports the refusal.
    let r = common::sh(&["--profile", &p.path], "pwd -P");
    assert!(
        r.stderr.contains("getcwd") && r.stderr.contains("Operation not permitted"),
        "{r:?}"
    );
    // Control: the default profile allows getcwd.
    let r = probe(&[], &["getcwd"]).run();
    expect(&r, &[("getcwd", "ok")]);
}

#[test]
fn seccomp_action_kill_kills_the_command() {
    let p = profile("extends = [\"default\"]\n[seccomp]\naction = \"kill\"\n");
    let r = probe(&["--profile", &p.path], &["getcwd", "keyctl", "getcwd"]).run();
    assert_eq!(r.code, 128 + libc::SIGSYS, "{r:?}");
    assert_eq!(
        r.stdout.lines().collect::<Vec<_>>(),
        ["getcwd: ok"],
        "{r:?}"
    );
}

#[test]
fn seccomp_unknown_syscall_name_is_refused() {
    let p = profile("extends = [\"default\"]\n[seccomp]\ndeny = [\"no_such_syscall\"]\n");
    let r = common::sbx(["--profile", &p.path, "--", "true"]).run();
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("seccomp.deny"), "{r:?}");
    assert!(r.stderr.contains("no_such_syscall"), "{r:?}");
}

// ---- 4. landlock ----

/// An abstract unix socket listening on the host, non-blocking.
fn abstract_listener() -> (UnixListener, String) {
    let name = common::unique_name("abstract");
    let addr = SocketAddr::from_abstract_name(&name).unwrap();
    let l = UnixListener::bind_addr(&addr).unwrap();
    l.set_nonblocking(true).unwrap();
    (l, name)
}

fn accepted(l: &UnixListener) -> bool {
    match l.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    }
}

#[test]
fn abstract_unix_sockets_of_the_host_are_out_of_reach() {
    let (l, name) = abstract_listener();
    let attack = format!("abstract={name}");
    // The host's network: landlock scoping refuses the connection.
    let r = probe(&["--net", "host"], &[attack.as_str()]).run();
    assert_eq!(r.code, 0, "{r:?}");
    expect(&r, &[(&attack, "EPERM")]);
    assert!(!accepted(&l), "the host listener got a connection: {r:?}");
    // A private network namespace: the name does not exist there.
    let r = probe(&[], &[attack.as_str()]).run();
    expect(&r, &[(&attack, "ECONNREFUSED")]);
    assert!(!accepted(&l), "the host listener got a connection: {r:?}");
    // Control: without landlock, the host network's socket is reachable.
    let off = profile("extends = [\"default\"]\n[security]\nlandlock = \"off\"\n");
    let r = probe(
        &["--profile", &off.path, "--net", "host"],
        &[attack.as_str()],
    )
    .run();
    expect(&r, &[(&attack, "ok")]);
    assert!(accepted(&l), "the control connection never arrived: {r:?}");
}

#[test]
fn signals_to_host_processes_are_scoped() {
    let no_pidns = profile("extends = [\"default\"]\n[namespaces]\npid = false\n");
    let mut canary = Canary::start();
    let attack = format!("kill={}", canary.pid());
    let r = probe(&["--profile", &no_pidns.path], &[attack.as_str()]).run();
    assert_eq!(r.code, 0, "{r:?}");
    expect(&r, &[(&attack, "EPERM")]);
    assert_eq!(canary.ended(Duration::from_millis(200)), None, "{r:?}");
    // Control: without landlock the same kill reaches the canary.
    let off = profile(
        "extends = [\"default\"]\n[namespaces]\npid = false\n[security]\nlandlock = \"off\"\n",
    );
    let r = probe(&["--profile", &off.path], &[attack.as_str()]).run();
    expect(&r, &[(&attack, "ok")]);
    let st = canary.ended(Duration::from_secs(2));
    assert_eq!(st.and_then(|s| s.signal()), Some(libc::SIGKILL), "{r:?}");
}

#[test]
fn tcp_connect_ports_are_enforced() {
    let allowed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let denied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    allowed.set_nonblocking(true).unwrap();
    denied.set_nonblocking(true).unwrap();
    let p1 = allowed.local_addr().unwrap().port();
    let p2 = denied.local_addr().unwrap().port();
    let p = profile(&format!(
        "extends = [\"default\"]\n[network]\nconnect_ports = [{p1}]\n"
    ));
    let (a1, a2) = (format!("tcp={p1}"), format!("tcp={p2}"));
    let r = probe(&["--profile", &p.path, "--net", "host"], &[&a1, &a2]).run();
    assert_eq!(r.code, 0, "{r:?}");
    expect(&r, &[(&a1, "ok"), (&a2, "EACCES")]);
    assert!(allowed.accept().is_ok(), "P1 saw no connection: {r:?}");
    match denied.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("P2 must see nothing, got {other:?}: {r:?}"),
    }
}

#[test]
fn writes_only_where_the_profile_allows() {
    let host = common::Workdir::new();
    let data = host.subdir("data");
    // The paths depend on the work directory, so the attacks are added once it exists.
    let mut s = probe::<String>(
        &[
            "--map-root".into(),
            "--bind".into(),
            format!("{}:/data", data.display()),
        ],
        &[],
    );
    let cwd = s.work.path().to_path_buf();
    let home = cwd.join("home");
    let allowed = [
        cwd.join("in-cwd"),
        PathBuf::from("/tmp/in-tmp"),
        home.join("in-home"),
        PathBuf::from("/dev/shm/in-shm"),
        PathBuf::from("/data/in-bind"),
    ];
    let refused = [
        "/dev/evil",
        "/proc/self/evil",
        "/evil",
        "/etc/evil",
        "/usr/evil",
        "/probe/evil",
    ];
    let mut attacks: Vec<String> = allowed
        .iter()
        .map(|p| format!("create={}", p.display()))
        .collect();
    attacks.extend(refused.iter().map(|p| format!("create={p}")));
    s.cmd.args(&attacks);
    let (r, _work) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    let got = results(&r.stdout);
    for p in &allowed {
        let attack = format!("create={}", p.display());
        assert_eq!(result(&got, &attack, &r), "ok", "{attack}: {r:?}");
    }
    for p in refused {
        let attack = format!("create={p}");
        assert_ne!(result(&got, &attack, &r), "ok", "{attack}: {r:?}");
    }
    // /dev is sbx's own tmpfs, sealed read-only once populated: nothing new goes in, whatever
    // landlock would say (landlock grants it no file creation either).
    assert_eq!(result(&got, "create=/dev/evil", &r), "EROFS", "{r:?}");
    // On the host: the cwd and the bind got the files; the tmpfs $HOME kept its own.
    assert_eq!(
        std::fs::read_to_string(cwd.join("in-cwd")).ok().as_deref(),
        Some("probe\n")
    );
    assert_eq!(
        std::fs::read_to_string(data.join("in-bind"))
            .ok()
            .as_deref(),
        Some("probe\n")
    );
    assert!(!home.join("in-home").exists(), "$HOME leaked to the host");
    // Without landlock the seal alone still refuses the write into /dev: two layers, each
    // enough on its own (the writable tmpfs in /dev/shm shows the probe can write there).
    let off = profile("extends = [\"default\"]\n[security]\nlandlock = \"off\"\n");
    let r = probe(
        &["--profile", &off.path, "--map-root"],
        &["create=/dev/evil", "create=/dev/shm/ok"],
    )
    .run();
    expect(
        &r,
        &[("create=/dev/evil", "EROFS"), ("create=/dev/shm/ok", "ok")],
    );
}

#[test]
fn landlock_off_and_best_effort_still_run() {
    for mode in ["off", "best-effort"] {
        let p = profile(&format!(
            "extends = [\"default\"]\n[security]\nlandlock = \"{mode}\"\n"
        ));
        let r = common::sbx(["--profile", &p.path, "--", "true"]).run();
        assert_eq!(r.code, 0, "landlock = {mode}: {r:?}");
    }
}

// ---- 5. kill -1 ----

#[test]
fn kill_all_spares_the_host() {
    let no_pidns = profile("extends = [\"default\"]\n[namespaces]\npid = false\n");
    let script = "kill -KILL -1; sleep 0.2; echo survived";
    for args in [vec![], vec!["--profile", no_pidns.path.as_str()]] {
        let mut canary = Canary::start();
        let r = common::sh(&args, script);
        assert_eq!(
            canary.ended(Duration::from_millis(200)),
            None,
            "{args:?}: the host canary died: {r:?}"
        );
        assert_eq!(
            r.output.status.signal(),
            None,
            "{args:?}: sbx itself was killed: {r:?}"
        );
        if args.is_empty() {
            // In its own PID namespace the shell has nothing to kill but itself (spared).
            assert_eq!(r.code, 0, "{r:?}");
            assert_eq!(r.stdout, "survived\n", "{r:?}");
        }
    }
}

// ---- 6. hygiene ----

#[test]
fn only_stdio_reaches_the_command() {
    let secret = common::Workdir::new();
    let file = std::fs::File::open(secret.file("secret", "s3cret")).unwrap();
    let fd = file.as_raw_fd();
    let with_fd7 = |cmd: &mut Command| {
        // SAFETY: dup2 is async-signal-safe; the new fd 7 is not close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, 7) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    };
    // Control: run directly, the probe sees fd 7 (and whatever else the runner leaks).
    let mut direct = Command::new(probe_dir().join("sbx-probe"));
    direct.arg("fds").stdin(Stdio::null());
    with_fd7(&mut direct);
    let out = direct.output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        seen.trim_end().split(&[' ', ',']).any(|fd| fd == "7"),
        "control: {seen}"
    );
    let mut s = probe(&[], &["fds"]);
    with_fd7(&mut s.cmd);
    let r = s.run();
    assert_eq!(r.code, 0, "{r:?}");
    expect(&r, &[("fds", "0,1,2")]);
    // The same seen by ls.
    let mut s = common::sbx(["--", "ls", "/proc/self/fd"]);
    with_fd7(&mut s.cmd);
    let r = s.run();
    assert_eq!(r.code, 0, "{r:?}");
    let fds: Vec<&str> = r.stdout.split_whitespace().collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "3 is ls's own: {r:?}");
    drop(file);
}

#[test]
fn cwd_is_inside_the_new_root() {
    let s = common::sbx([
        "--",
        "sh",
        "-c",
        "readlink /proc/self/cwd; i=0; while [ $i -lt 30 ]; do cd -P .. || exit 9; \
         i=$((i+1)); done; pwd -P; ls -a .",
    ]);
    let cwd = s.work.path().display().to_string();
    let r = s.run();
    assert_eq!(r.code, 0, "{r:?}");
    let mut lines = r.stdout.lines();
    assert_eq!(lines.next(), Some(cwd.as_str()), "{r:?}");
    assert_eq!(lines.next(), Some("/"), "{r:?}");
    let listed: Vec<&str> = lines.collect();
    let sandbox_root = [
        ".", "..", "bin", "dev", "etc", "lib", "lib64", "opt", "proc", "sbin", "tmp", "usr", "var",
    ];
    for name in &listed {
        assert!(
            sandbox_root.contains(name),
            "`/` after cd .. shows {name:?}, not the sandbox's root: {r:?}"
        );
    }
    assert!(listed.contains(&"proc") && listed.contains(&"tmp"), "{r:?}");
}

#[test]
fn secret_variables_do_not_reach_the_command() {
    let secrets = [
        ("SSH_AUTH_SOCK", "/tmp/ssh-agent-sbx.sock"),
        ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/65534/bus"),
        ("DISPLAY", ":42"),
        ("GITHUB_TOKEN", "ghp_sbxattacksecret"),
    ];
    let mut s = common::sbx(["--", "env"]);
    for (k, v) in secrets {
        s = s.env(k, v);
    }
    let r = s.run();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("PATH="), "{r:?}");
    for (k, v) in secrets {
        assert!(!r.stdout.contains(k), "{k} leaked: {r:?}");
        assert!(!r.stdout.contains(v), "the value of {k} leaked: {r:?}");
    }
}

#[test]
fn host_unix_sockets_that_are_not_bound_are_invisible() {
    let dir = common::Workdir::new();
    let path = dir.path().join("agent.sock");
    let l = UnixListener::bind(&path).unwrap();
    l.set_nonblocking(true).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let attack = format!("unix={}", path.display());
    let r = probe(&[], &[attack.as_str()]).run();
    assert_eq!(r.code, 0, "{r:?}");
    expect(&r, &[(&attack, "ENOENT")]);
    assert!(!accepted(&l), "the host socket got a connection: {r:?}");
    // Control: bound in, the same connect reaches the host listener.
    let bind = dir.path().display().to_string();
    let r = probe(&["--bind", bind.as_str()], &[attack.as_str()]).run();
    expect(&r, &[(&attack, "ok")]);
    assert!(accepted(&l), "the control connection never arrived: {r:?}");
}

// ---- 7. the invoking terminal ----

/// Bytes waiting to be read on a terminal fd, read without blocking.
fn drain(fd: &OwnedFd) -> Vec<u8> {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    let nonblock = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(nonblock)).unwrap();
    let mut file = std::fs::File::from(fd.try_clone().unwrap());
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break, // EAGAIN: empty; EIO: no writer left
        }
    }
    out
}

#[test]
fn tiocsti_cannot_push_input_into_the_terminal() {
    use nix::sys::termios::{self, LocalFlags, SetArg};
    let pty = nix::pty::openpty(None, None).unwrap();
    // Non-canonical, no echo: a pushed byte is readable at once from the slave.
    let mut t = termios::tcgetattr(&pty.slave).unwrap();
    t.local_flags.remove(LocalFlags::ICANON | LocalFlags::ECHO);
    termios::tcsetattr(&pty.slave, SetArg::TCSANOW, &t).unwrap();
    let attacks = ["tiocsti", "tiocsti_hi", "open_rw=/dev/tty"];
    // Without a pty (the default on a terminal), so that the command shares the terminal.
    let mut s = probe(&["--no-pty"], &attacks);
    s.cmd
        .stdin(pty.slave.try_clone().unwrap())
        .stdout(pty.slave.try_clone().unwrap())
        .stderr(pty.slave.try_clone().unwrap());
    // sbx runs as a terminal session would: session leader, the pty its controlling tty.
    // SAFETY: setsid and ioctl are async-signal-safe.
    unsafe {
        s.cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = s.cmd.status().expect("spawn sbx");
    let output = String::from_utf8_lossy(&drain(&pty.master)).into_owned();
    let got = results(&output);
    assert_eq!(status.code(), Some(0), "{output}");
    for attack in ["tiocsti", "tiocsti_hi", "open_rw=/dev/tty"] {
        let v = got.get(attack).map(String::as_str);
        assert!(
            v.is_some() && v != Some("ok"),
            "{attack}: {v:?}; output: {output}"
        );
    }
    let queued = drain(&pty.slave);
    assert!(
        !queued.contains(&b'X'),
        "the sandbox pushed input into the terminal: {queued:?}"
    );
    // Control: a byte pushed by a privileged process is seen by the same check.
    if common::is_root() {
        let ch = b'Y';
        // SAFETY: TIOCSTI reads one byte from a valid pointer.
        let ret = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCSTI, &ch) };
        assert_eq!(ret, 0, "{}", std::io::Error::last_os_error());
        assert_eq!(drain(&pty.slave), b"Y");
    } else {
        common::note_skip(
            "tiocsti_cannot_push_input_into_the_terminal",
            "the control (pushing a byte from the host) needs CAP_SYS_ADMIN",
        );
    }
}
