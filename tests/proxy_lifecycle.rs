//! The egress proxy of `--net proxy` over a run: the run report counts what was allowed and
//! denied, `-v` logs denied requests with the host, many concurrent connections all succeed,
//! an open tunnel neither delays the timeout nor stops forwarded signals, and no tunnel
//! outlives the sandbox, even one held by a process that survives the command; the command
//! holds no socket of the proxy, and the proxy keeps accepting after running out of
//! descriptors. Servers on the host's loopback, clients inside the sandbox; nothing here leaves
//! the machine: only 127.0.0.1 and the sandbox's namespaces.

mod common;

use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::http::{HoldServer, Server};
use common::proxy::{CURL, PYTHON, allow, field, have, py, run, run_report, sh, sh_report};

// ---------------------------------------------------------------------------------------------
// 1. The run report; 2. -v

#[test]
fn run_report_counts_allowed_and_denied_requests() {
    if !have("run_report_counts_allowed_and_denied_requests", &[CURL]) {
        return;
    }
    let a = Server::start("A");
    let b = Server::start("B");
    let entries = [allow(&a.port()), "*.example.invalid:443".to_string()];
    let script = r#"
curl -s -o /dev/null http://127.0.0.1:$1/
curl -s -o /dev/null -p http://127.0.0.1:$1/
curl -s -o /dev/null http://127.0.0.1:$2/
curl -s -o /dev/null -p http://127.0.0.1:$2/
curl -s -o /dev/null -x socks5h://127.0.0.1:3128 http://127.0.0.1:$2/
true
"#;
    let (r, report) = sh_report(
        &[
            "--net",
            "proxy",
            "--allow",
            &entries[0],
            "--allow",
            &entries[1],
        ],
        script,
        &[&a.port(), &b.port()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let net = &report["network"];
    assert_eq!(net["mode"], "proxy", "{report}");
    assert_eq!(net["allow"], serde_json::json!(entries), "{report}");
    assert_eq!(net["proxy"]["allowed"], 2, "{report}");
    assert_eq!(net["proxy"]["denied"], 3, "{report}");
    let b_host = allow(&b.port());
    assert_eq!(
        net["proxy"]["denied_hosts"],
        serde_json::json!([b_host, b_host, b_host]),
        "{report}"
    );
    assert!(
        report["namespaces"]
            .as_array()
            .is_some_and(|n| n.iter().any(|x| x == "net")),
        "{report}"
    );
    assert_eq!((a.accepted(), b.accepted()), (2, 0));
}

#[test]
fn run_report_keeps_at_most_100_denied_hosts() {
    if !have("run_report_keeps_at_most_100_denied_hosts", &[PYTHON]) {
        return;
    }
    let b = Server::start("B");
    let python = r#"
import sys, urllib.request, urllib.error
codes = set()
for i in range(120):
    try:
        urllib.request.urlopen("http://127.0.0.1:%s/%d" % (sys.argv[1], i), timeout=10)
        codes.add(200)
    except urllib.error.HTTPError as e:
        codes.add(e.code)
print("codes", sorted(codes))
"#;
    let (r, report) = run_report(&["--net", "proxy"], &["python3", "-c", python, &b.port()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "codes"), "[403]", "{r:?}");
    let p = &report["network"]["proxy"];
    assert_eq!(p["denied"], 120, "{report}");
    assert_eq!(p["allowed"], 0, "{report}");
    let hosts = p["denied_hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 100, "{report}");
    assert!(hosts.iter().all(|h| *h == allow(&b.port())), "{report}");
    assert_eq!(b.accepted(), 0);
}

#[test]
fn verbose_logs_denied_requests_with_the_host() {
    if !have("verbose_logs_denied_requests_with_the_host", &[CURL]) {
        return;
    }
    let a = Server::start("A");
    let b = Server::start("B");
    let r = sh(
        &["-v", "--net", "proxy", "--allow", &allow(&a.port())],
        "curl -s -o /dev/null http://127.0.0.1:$1/; curl -s -o /dev/null http://127.0.0.1:$2/",
        &[&a.port(), &b.port()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let b_host = allow(&b.port());
    assert!(
        r.stderr
            .lines()
            .any(|l| l.contains("denied") && l.contains(&b_host)),
        "no log line about the denied request to {b_host}: {r:?}"
    );
    assert!(
        !r.stderr
            .lines()
            .any(|l| l.contains("denied") && l.contains(&allow(&a.port()))),
        "the allowed request was logged as denied: {r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Load

#[test]
fn two_hundred_requests_over_32_connections_all_succeed() {
    if !have(
        "two_hundred_requests_over_32_connections_all_succeed",
        &[PYTHON],
    ) {
        return;
    }
    // A short delay per answer so that the 32 workers' connections really overlap.
    let a = Server::with_delay("A", Duration::from_millis(20));
    let python = r#"
import sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
url, want = sys.argv[1], sys.argv[2]
def get(i):
    try:
        with urllib.request.urlopen(url, timeout=15) as r:
            body = r.read().decode()
            return "ok" if r.status == 200 and body == want else "bad %d %r" % (r.status, body)
    except Exception as e:
        return "error %r" % e
with ThreadPoolExecutor(32) as ex:
    results = list(ex.map(get, range(200)))
print("ok", results.count("ok"))
for r in sorted(set(results) - {"ok"}):
    print("failure", r)
"#;
    let url = format!("http://127.0.0.1:{}/", a.port());
    let started = Instant::now();
    let (r, report) = run_report(
        &["--net", "proxy", "--allow", &allow(&a.port())],
        &["python3", "-c", python, &url, &a.body],
    );
    let took = started.elapsed();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "ok"), "200", "{r:?}");
    assert_eq!(report["network"]["proxy"]["allowed"], 200, "{report}");
    assert_eq!(report["network"]["proxy"]["denied"], 0, "{report}");
    assert_eq!(a.accepted(), 200);
    let overlap = a.stats.max_active.load(Ordering::SeqCst);
    assert!(
        overlap >= 8,
        "at most {overlap} connections were open at once: not a concurrent load"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    eprintln!("load: 200 requests, up to {overlap} at once, in {took:?}");
}

#[test]
fn parallel_curls_through_the_proxy_all_succeed() {
    if !have("parallel_curls_through_the_proxy_all_succeed", &[CURL]) {
        return;
    }
    if !Path::new("/usr/bin/xargs").exists() && !Path::new("/bin/xargs").exists() {
        common::note_skip("parallel_curls_through_the_proxy_all_succeed", "no xargs");
        return;
    }
    let a = Server::with_delay("A", Duration::from_millis(20));
    let script = r#"seq 200 | xargs -P32 -I{} curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$1/{}" | sort | uniq -c | while read n c; do echo "code-$c $n"; done"#;
    let started = Instant::now();
    let (r, report) = sh_report(
        &["--net", "proxy", "--allow", &allow(&a.port())],
        script,
        &[&a.port()],
    );
    let took = started.elapsed();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "code-200"), "200", "{r:?}");
    assert_eq!(report["network"]["proxy"]["allowed"], 200, "{report}");
    assert_eq!(a.accepted(), 200);
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

// ---------------------------------------------------------------------------------------------
// 4. Open tunnels neither delay the timeout nor outlive the sandbox

#[test]
fn open_tunnels_do_not_block_the_timeout_and_close_with_the_sandbox() {
    if !have(
        "open_tunnels_do_not_block_the_timeout_and_close_with_the_sandbox",
        &[PYTHON],
    ) {
        return;
    }
    let h = HoldServer::start();
    let port = h.port.to_string();
    // Two tunnels (CONNECT and SOCKS5) to a server that never answers; the command ignores
    // SIGTERM, so only the SIGKILL after kill_grace ends it.
    let python = py(r#"
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
port = int(sys.argv[1])
t, status = connect(port)
print("connect", status, flush=True)
t.sendall(b"via-connect")
s, code = socks(port)
print("socks", code, flush=True)
s.sendall(b"via-socks")
print("holding", flush=True)
time.sleep(1000)
"#);
    let started = Instant::now();
    let r = run(
        &[
            "--net",
            "proxy",
            "--allow",
            &allow(&port),
            "--timeout",
            "2s",
            "--limit",
            "kill_grace=1s",
        ],
        &["python3", "-c", &python, &port],
    );
    let ended = Instant::now();
    let took = ended - started;
    assert_eq!(r.code, 124, "{r:?}");
    assert!(took < Duration::from_secs(6), "took {took:?}: {r:?}");
    assert_eq!(
        field(&r, "connect"),
        "HTTP/1.1 200 Connection established",
        "{r:?}"
    );
    assert_eq!(field(&r, "socks"), "0", "{r:?}");
    field(&r, "holding");
    assert_eq!(h.accepted.load(Ordering::SeqCst), 2);

    let mut seen = Vec::new();
    for _ in 0..2 {
        let held = h
            .events
            .recv_timeout(Duration::from_secs(3))
            .unwrap_or_else(|_| {
                panic!("a held connection was still open 3 s after sbx exited; seen {seen:?}")
            });
        let closed = held
            .closed_at
            .unwrap_or_else(|| panic!("a held connection was never closed: {held:?}"));
        assert!(
            closed <= ended + Duration::from_secs(2),
            "closed {:?} after sbx exited",
            closed - ended
        );
        seen.push(String::from_utf8_lossy(&held.data).into_owned());
    }
    seen.sort();
    assert_eq!(seen, ["via-connect", "via-socks"]);
}

#[test]
fn signals_are_forwarded_while_a_tunnel_is_open() {
    if !have("signals_are_forwarded_while_a_tunnel_is_open", &[PYTHON]) {
        return;
    }
    let h = HoldServer::start();
    let port = h.port.to_string();
    let python = py(r#"
import time
t, status = connect(int(sys.argv[1]))
print(status, flush=True)
time.sleep(1000)
"#);
    let mut all = vec![
        "--net".to_string(),
        "proxy".into(),
        "--allow".into(),
        allow(&port),
        "--timeout".into(),
        "30s".into(),
        "--".into(),
        "python3".into(),
        "-c".into(),
        python,
    ];
    all.push(port.clone());
    let (mut child, _work) = common::sbx(&all).spawn();
    let mut out = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        match out.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            _ => break,
        }
    }
    let line = String::from_utf8_lossy(&line).into_owned();
    if line.trim_end() != "HTTP/1.1 200 Connection established" {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no tunnel: {line:?}");
    }
    let started = Instant::now();
    // SAFETY: kill(2) on our own child, which has not been reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = started + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sbx did not end within 5 s of SIGTERM with a tunnel open");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status:?}");
    let held = h
        .events
        .recv_timeout(Duration::from_secs(3))
        .expect("the held connection outlived the sandbox");
    assert!(held.closed_at.is_some(), "{held:?}");
}

// ---------------------------------------------------------------------------------------------
// Robustness

/// A tunnel held by a process that outlives the command (no PID namespace, so sbx's end does
/// not take it along) is still closed when the sandbox ends, and the proxy is gone with it.
#[test]
fn tunnels_of_surviving_processes_close_when_the_sandbox_ends() {
    if !have(
        "tunnels_of_surviving_processes_close_when_the_sandbox_ends",
        &[PYTHON],
    ) {
        return;
    }
    let h = HoldServer::start();
    let port = h.port.to_string();
    let profile = common::profile("extends = [\"default\"]\n[namespaces]\npid = false\n");
    // The command forks a daemon that opens a tunnel, then exits. The daemon waits for its
    // tunnel to die, then tries the proxy once more, and says what happened in a file.
    let python = py(r#"
import os, time
port = int(sys.argv[1])
if os.fork() > 0:
    time.sleep(0.5)
    print("parent done", flush=True)
    sys.exit(0)
os.setsid()
null = os.open("/dev/null", os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
def note(name, text):
    with open(name + ".tmp", "w") as f:
        f.write(text)
    os.rename(name + ".tmp", name)
try:
    t, status = connect(port)
    t.sendall(b"from-daemon")
    note("daemon.pid", "%d %s" % (os.getpid(), status))
    t.settimeout(15)
    try:
        got = t.recv(100)
    except OSError as e:
        got = repr(e)
    try:
        socket.create_connection(("127.0.0.1", 3128), timeout=2)
        again = "connected"
    except ConnectionRefusedError:
        again = "refused"
    except OSError as e:
        again = repr(e)
    note("daemon.after", "tunnel %r, proxy %s" % (got, again))
except Exception as e:
    note("daemon.after", "error %r" % e)
"#);
    let mut s = common::sbx([
        "-p",
        &profile.path,
        "--net",
        "proxy",
        "--allow",
        &allow(&port),
        "--",
        "python3",
        "-c",
        &python,
        &port,
    ]);
    let cwd = s.work.path().to_path_buf();
    let output = s.cmd.output().expect("spawn sbx");
    let ended = Instant::now();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Whatever happens, the daemon does not outlive the test.
    struct KillDaemon(std::path::PathBuf);
    impl Drop for KillDaemon {
        fn drop(&mut self) {
            if let Some(pid) = std::fs::read_to_string(&self.0)
                .ok()
                .and_then(|p| p.split(' ').next()?.parse::<i32>().ok())
                .filter(|p| *p > 1)
            {
                // SAFETY: kill(2) on the daemon this test started (it wrote its own pid).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _kill = KillDaemon(cwd.join("daemon.pid"));
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout {stdout}\nstderr {stderr}"
    );
    assert!(stdout.contains("parent done"), "{stdout}");
    let pid = std::fs::read_to_string(cwd.join("daemon.pid")).unwrap_or_default();
    assert!(
        pid.ends_with("HTTP/1.1 200 Connection established"),
        "the daemon's tunnel: {pid:?}"
    );

    let held = h
        .events
        .recv_timeout(Duration::from_secs(3))
        .expect("the daemon's tunnel outlived the sandbox");
    let closed = held.closed_at.expect("never closed");
    assert!(closed <= ended + Duration::from_secs(2));
    assert_eq!(held.data, b"from-daemon");

    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        if let Ok(a) = std::fs::read_to_string(cwd.join("daemon.after")) {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not notice its tunnel closing"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Its connect(2) is sbx's to decide (the interception), and sbx is gone: the kernel
    // answers ENOSYS for a listener no one holds; either way nothing is reached.
    assert!(
        after == "tunnel b'', proxy refused"
            || after == "tunnel b'', proxy OSError(38, 'Function not implemented')",
        "the daemon saw: {after}"
    );
}

/// The command holds no socket of the proxy (its listener stays with the supervisor).
#[test]
fn the_command_holds_no_proxy_socket() {
    let r = sh(
        &["--net", "proxy", "--allow", "127.0.0.1:1"],
        "for f in /proc/self/fd/*; do readlink \"$f\"; done; true",
        &[],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains("socket:"), "{r:?}");
}

/// Running out of file descriptors for a moment (many idle client connections against a low
/// RLIMIT_NOFILE) must not end the proxy: once they are closed, new requests are served.
#[test]
fn the_proxy_keeps_accepting_after_running_out_of_descriptors() {
    use std::os::unix::process::CommandExt;
    if !have(
        "the_proxy_keeps_accepting_after_running_out_of_descriptors",
        &[PYTHON],
    ) {
        return;
    }
    let a = Server::start("A");
    // Each idle client connection costs the proxy a descriptor or two; 100 of them exhaust a
    // limit of 128 whatever sbx itself has open.
    let python = py(r#"
import time, urllib.request
idle = []
for i in range(100):
    try:
        idle.append(socket.create_connection(("127.0.0.1", 3128), timeout=2))
    except OSError as e:
        print("idle", i, repr(e), flush=True)
        break
time.sleep(0.5)
for s in idle:
    s.close()
time.sleep(0.5)
try:
    with urllib.request.urlopen("http://127.0.0.1:%s/" % sys.argv[1], timeout=3) as r:
        print("after", r.status)
except Exception as e:
    print("after", repr(e))
"#);
    let mut s = common::sbx([
        "--net",
        "proxy",
        "--allow",
        &allow(&a.port()),
        "--limit",
        "open_files=128",
        "--",
        "python3",
        "-c",
        &python,
        &a.port(),
    ]);
    // SAFETY: setrlimit(2) is async-signal-safe; the closure allocates nothing.
    unsafe {
        s.cmd.pre_exec(|| {
            let l = libc::rlimit {
                rlim_cur: 128,
                rlim_max: 128,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let r = s.run();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "after"), "200", "{r:?}");
    assert_eq!(a.accepted(), 1);
}
