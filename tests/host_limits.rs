//! No way to exhaust the host: the limits bound the sandbox as a whole, on a host without a
//! delegated cgroup (this one) as well.
//!
//! 1. Memory: four processes of 400 MiB under `--memory 512M` (each under its RLIMIT_DATA) are
//!    killed together: 137, reason memory_limit, the report says the watchdog held it.
//! 2. Processes: a fork bomb under `--limit processes=64` is ended (process_limit), holds at most
//!    64 tasks meanwhile, and leaves the host's process list as it was.
//! 3. tmpfs: one budget for every writable tmpfs: 256 MiB written into each of /tmp, /var/tmp,
//!    $HOME and /dev/shm with `tmpfs_size=256M` store at most 256 MiB in all, then ENOSPC;
//!    /dev takes nothing.
//! 4. The host user keeps their share of the per-user kernel counters: a command that takes
//!    every inotify instance (or watch) it can leaves the caller able to make one. Control:
//!    with `host_share=1` the same command takes them all, so the test can tell.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{AsTestUid, read_report, run_within};

const HANG: Duration = Duration::from_secs(60);

/// The inotify tests take every instance or watch of the test uid: one at a time, and never
/// beside another test of this file (every sbx run needs an instance for its protect guard).
static INOTIFY: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    INOTIFY.lock().unwrap_or_else(|e| e.into_inner())
}

fn cgroup_delegated(rep: &serde_json::Value) -> bool {
    !rep["cgroup"].is_null()
}

#[test]
fn memory_bounds_the_sandbox_as_a_whole() {
    let _g = lock();
    let script = "
import os, time
for i in range(4):
    if os.fork() == 0:
        b = bytearray(400 << 20)
        for j in range(0, len(b), 4096):
            b[j] = 1
        time.sleep(60)
        os._exit(0)
time.sleep(60)
";
    let mut s = common::sbx(["--memory", "512M", "--json-status", "report.json", "--"]);
    let report = s.work.path().join("report.json");
    s.cmd.args(["python3", "-c", script]);
    let start = Instant::now();
    let (r, _work) = run_within(s, HANG);
    let rep = read_report(&report, &r);
    // Whichever holds it, the whole sandbox ends (the python parent would sleep on).
    assert_eq!(r.code, 137, "{r:?}");
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "not killed early: {r:?}"
    );
    assert!(r.stderr.contains("limits.memory"), "{r:?}");
    if cgroup_delegated(&rep) {
        // A delegated cgroup holds it: the kernel's OOM killer, for the whole group.
        assert_eq!(rep["reason"], "oom", "{rep}");
        return;
    }
    assert_eq!(rep["reason"], "memory_limit", "{rep}");
    let via: Vec<String> = rep["limits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["name"] == "memory")
        .map(|l| l["via"].as_str().unwrap().to_string())
        .collect();
    assert!(via.contains(&"watchdog".to_string()), "{rep}");
    let peak = rep["watchdog"]["peak_memory_bytes"].as_u64().unwrap();
    assert!(peak > 512 << 20, "the watchdog saw {peak} bytes: {rep}");
}

#[test]
fn a_fork_bomb_stays_inside_its_process_limit() {
    let _g = lock();
    let marker = common::unique_number();
    // Every process forks forever, retrying when the limit refuses it.
    let script = "
import os, sys, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.001)
";
    // The bomb's processes carry the marker; so does sbx's own command line, left out.
    let bomb = |c: &str| c.contains(&marker) && !c.contains("--limit");
    let before = common::host_processes(bomb).len();
    let mut s = common::sbx([
        "--limit",
        "processes=64",
        "--json-status",
        "report.json",
        "--",
    ]);
    let report = s.work.path().join("report.json");
    s.cmd.args(["python3", "-c", script, &marker]);
    let (mut child, _work) = s.spawn();
    let mut most = 0;
    let deadline = Instant::now() + HANG;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        most = most.max(common::host_processes(bomb).len());
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let r = common::Ran::from_output(out);
    let rep = read_report(&report, &r);
    assert!(most <= 64, "{most} processes of the bomb at once: {rep}");
    if !cgroup_delegated(&rep) {
        assert_eq!(r.code, 137, "{r:?}");
        assert_eq!(rep["reason"], "process_limit", "{rep}");
    }
    let left = common::survivors(Duration::from_secs(5), bomb);
    assert!(left.is_empty(), "the bomb outlived the run: {left:?}");
    assert_eq!(before, 0);
}

#[test]
fn tmpfs_budget_is_one_for_the_sandbox() {
    let _g = lock();
    let script = r#"
        for d in /tmp /var/tmp "$HOME" /dev/shm /dev; do
            if head -c 268435456 /dev/zero > "$d/fill" 2>/dev/null; then echo "$d full-write"; else echo "$d stopped"; fi
        done
        total=0
        for d in /tmp /var/tmp "$HOME" /dev/shm /dev; do
            n=$(stat -c %s "$d/fill" 2>/dev/null || echo 0); total=$((total + n))
        done
        echo "total=$total"
        df -k /tmp | tail -1
    "#;
    let (r, _work) = run_within(
        common::sbx(["--limit", "tmpfs_size=256M", "--", "sh", "-c", script]),
        HANG,
    );
    assert_eq!(r.code, 0, "{r:?}");
    let total: u64 = common::key_values(&r.stdout)["total"].parse().unwrap();
    assert!(total <= 256 << 20, "{total} bytes stored: {r:?}");
    assert!(total >= 200 << 20, "the budget was not used: {r:?}");
    // The first directory takes the whole budget; every later write runs out of space.
    assert!(r.stdout.contains("/tmp full-write\n"), "{r:?}");
    for d in ["/var/tmp", "/dev/shm", "/dev"] {
        assert!(r.stdout.contains(&format!("{d} stopped\n")), "{d}: {r:?}");
    }
}

/// The test uid's inotify: takes every instance (or, with `watches`, every watch) it can;
/// returns how many.
const GRAB: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
watches = sys.argv[1] == "watches"
fds = []
while True:
    fd = libc.inotify_init1(0)
    if fd < 0:
        break
    fds.append(fd)
    if watches:
        break
n = len(fds)
if watches:
    d = os.path.join(os.environ.get("TMPDIR", "/tmp"), "watched")
    os.makedirs(d, exist_ok=True)
    files = []
    for i in range(4096):
        p = os.path.join(d, str(i))
        open(p, "w").close()
        files.append(p.encode())
    n = 0
    done = False
    while not done:
        fd = fds[-1]
        for p in files:
            if libc.inotify_add_watch(fd, p, 2) < 0:
                if ctypes.get_errno() == 28:
                    done = True
                    break
                fd = libc.inotify_init1(0)
                if fd < 0:
                    done = True
                    break
                fds.append(fd)
                continue
            n += 1
        if not done:
            fd = libc.inotify_init1(0)
            if fd < 0:
                break
            fds.append(fd)
print(n, flush=True)
sys.stdin.read()
"#;

/// Whether the test uid can make one inotify instance (and one watch) on the host now.
fn host_can(what: &str) -> bool {
    let script = r#"
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
if fd < 0:
    sys.exit(1)
if sys.argv[1] == "watches" and libc.inotify_add_watch(fd, b"/", 2) < 0:
    sys.exit(2)
"#;
    Command::new("python3")
        .args(["-c", script, what])
        .as_test_uid()
        .status()
        .unwrap()
        .success()
}

/// How many inotify instances the test uid can make on the host now.
fn host_free_instances() -> u64 {
    let script = r#"
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
n = 0
while libc.inotify_init1(0) >= 0:
    n += 1
print(n)
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .as_test_uid()
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Waits until the test uid holds no inotify instance, and so no watch: the kernel frees a
/// closed instance (and gives back its count) only after its marks are reaped, milliseconds
/// after the processes of an earlier sandbox are gone.
fn wait_for_release() {
    let limit = host_limit("max_inotify_instances");
    let deadline = std::time::Instant::now() + HANG;
    while host_free_instances() < limit {
        assert!(
            std::time::Instant::now() < deadline,
            "the test uid still holds inotify instances after {HANG:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Runs the grab in a sandbox with `args` (once nothing of an earlier one is held); returns
/// what it took and whether the host could still make one while it held them.
fn grab(what: &str, args: &[&str]) -> (u64, bool) {
    wait_for_release();
    let mut all = args.to_vec();
    all.extend(["--", "python3", "-c", GRAB, what]);
    let mut s = common::sbx(all);
    s.cmd.stdin(Stdio::piped());
    let (child, _work) = s.spawn();
    let mut child = common::Running::new(child);
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let taken = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no count: {line:?}"));
    let host = host_can(what);
    drop(child.stdin.take());
    let _ = common::wait_exit(&mut child, HANG);
    (taken, host)
}

fn host_limit(name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/sys/user/{name}"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn inotify_instances_leave_the_host_its_share() {
    let _g = lock();
    let limit = host_limit("max_inotify_instances");
    let (taken, host) = grab("instances", &[]);
    assert!(taken > 0 && taken <= limit / 2, "took {taken} of {limit}");
    assert!(
        host,
        "the host user could not make an inotify instance while the sandbox ran"
    );
    // Control: with the whole share the sandbox takes them all and the host user has none.
    let (taken, host) = grab("instances", &["--limit", "host_share=1"]);
    assert!(
        taken > limit / 2,
        "the control took only {taken} of {limit}"
    );
    assert!(!host, "the control left an instance: the test cannot tell");
}

#[test]
fn inotify_watches_leave_the_host_its_share() {
    let _g = lock();
    let limit = host_limit("max_inotify_watches");
    if limit > 400_000 {
        common::note_skip(
            "inotify_watches_leave_the_host_its_share",
            &format!("max_inotify_watches is {limit}: too many to take in a test"),
        );
        return;
    }
    let (taken, host) = grab("watches", &[]);
    assert!(taken > 0 && taken <= limit / 2, "took {taken} of {limit}");
    assert!(
        host,
        "the host user could not add an inotify watch while the sandbox ran"
    );
    let (taken, host) = grab("watches", &["--limit", "host_share=1"]);
    assert!(
        taken > limit / 2,
        "the control took only {taken} of {limit}"
    );
    assert!(!host, "the control left a watch: the test cannot tell");
}

#[test]
fn user_namespace_limits_are_shown() {
    let _g = lock();
    let r = common::sbx(["--explain", "--", "true"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    let instances = host_limit("max_inotify_instances") / 2;
    assert!(
        r.stdout.contains(&format!(
            "  inotify_instances = {instances} (user namespace)"
        )),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("  user_namespaces = 0 (user namespace)"),
        "{r:?}"
    );
    let mut s = common::sbx(["--json-status", "report.json", "--", "true"]);
    let report = s.work.path().join("report.json");
    s.cmd.args(Vec::<String>::new());
    let (r, _w) = common::run_keep(s);
    let rep = read_report(&report, &r);
    let found = rep["limits"].as_array().unwrap().iter().any(|l| {
        l["name"] == "inotify_instances" && l["via"] == "userns" && l["value"] == instances
    });
    assert!(found, "{rep}");
}
