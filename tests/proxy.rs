//! The egress proxy of `--net proxy`: HTTP servers on the host's loopback (some allowed, some
//! not) and real clients inside the sandbox (`curl`, `python3`). The allowed server answers
//! through the proxy (plain HTTP, CONNECT, SOCKS5), a denied one gets 403 / SOCKS "not allowed"
//! and never sees a connection, a client ignoring the proxy has no route, DNS does not work
//! inside, wildcard entries never reach loopback, the run report counts what happened, many
//! concurrent connections all succeed, an open tunnel neither delays the timeout nor outlives
//! the sandbox. Nothing here leaves the machine: only 127.0.0.1 and the sandbox's namespaces.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Ran;
use serde_json::Value;

const CURL: &str = "/usr/bin/curl";
const PYTHON: &str = "/usr/bin/python3";

/// Whether every tool exists; prints a note naming the missing one otherwise.
fn have(test: &str, tools: &[&str]) -> bool {
    for t in tools {
        if !Path::new(t).exists() {
            common::note_skip(test, &format!("no {t}"));
            return false;
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Host-side servers

#[derive(Default)]
struct Stats {
    accepted: AtomicUsize,
    active: AtomicUsize,
    max_active: AtomicUsize,
    /// The request heads received, one per connection.
    heads: Mutex<Vec<String>>,
}

/// An HTTP/1.1 server on the host's 127.0.0.1 answering every request with its own body
/// (`Connection: close`), counting the connections it accepted.
struct Server {
    port: u16,
    body: String,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(name: &str) -> Server {
        Server::with_delay(name, Duration::ZERO)
    }

    /// A server that waits `delay` before answering (to make concurrent requests overlap).
    fn with_delay(name: &str, delay: Duration) -> Server {
        Server::bind(TcpListener::bind("127.0.0.1:0").unwrap(), name, delay)
    }

    /// A server on the host's `[::1]`, if it has IPv6 loopback.
    fn start_v6(name: &str) -> Option<Server> {
        let listener = TcpListener::bind("[::1]:0").ok()?;
        Some(Server::bind(listener, name, Duration::ZERO))
    }

    fn bind(listener: TcpListener, name: &str, delay: Duration) -> Server {
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let body = format!(
            "hello from server {name} on port {port} (test process {})\n",
            std::process::id()
        );
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (stats, stop, body) = (stats.clone(), stop.clone(), body.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            stats.accepted.fetch_add(1, Ordering::SeqCst);
                            let (stats, body) = (stats.clone(), body.clone());
                            std::thread::spawn(move || answer(conn, &body, delay, &stats));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
        }
        Server {
            port,
            body,
            stats,
            stop,
        }
    }

    fn port(&self) -> String {
        self.port.to_string()
    }

    /// The connections accepted so far (after a pause, so that one still in the backlog is
    /// counted too).
    fn accepted(&self) -> usize {
        std::thread::sleep(Duration::from_millis(100));
        self.stats.accepted.load(Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<String> {
        self.stats
            .heads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The body as a shell's `$(...)` returns it.
    fn line(&self) -> &str {
        self.body.trim_end()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads until the end of a request head (or EOF / error / 64 KiB).
fn read_head(conn: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf
}

fn answer(mut conn: TcpStream, body: &str, delay: Duration, stats: &Stats) {
    let now = stats.active.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_active.fetch_max(now, Ordering::SeqCst);
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let head = read_head(&mut conn);
    stats
        .heads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(String::from_utf8_lossy(&head).into_owned());
    std::thread::sleep(delay);
    let msg = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(msg.as_bytes());
    let _ = conn.shutdown(Shutdown::Write);
    stats.active.fetch_sub(1, Ordering::SeqCst);
}

/// What one connection to a [`HoldServer`] saw.
#[derive(Debug)]
struct Held {
    data: Vec<u8>,
    /// When the peer closed (read returned 0 or failed), or None if it was still open after
    /// 30 s.
    closed_at: Option<Instant>,
}

/// A server that accepts, reads, never answers and never closes: it reports, per connection,
/// what it received and when the other side went away.
struct HoldServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    events: Receiver<Held>,
    stop: Arc<AtomicBool>,
}

impl HoldServer {
    fn start() -> HoldServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, events) = mpsc::channel();
        {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut conn, _)) => {
                            accepted.fetch_add(1, Ordering::SeqCst);
                            let tx = tx.clone();
                            std::thread::spawn(move || {
                                let _ = conn.set_nonblocking(false);
                                let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                                let mut data = Vec::new();
                                let mut chunk = [0u8; 4096];
                                let closed_at = loop {
                                    match conn.read(&mut chunk) {
                                        Ok(0) => break Some(Instant::now()),
                                        Ok(n) => data.extend_from_slice(&chunk[..n]),
                                        Err(e)
                                            if matches!(
                                                e.kind(),
                                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                                            ) =>
                                        {
                                            break None;
                                        }
                                        Err(_) => break Some(Instant::now()),
                                    }
                                };
                                let _ = tx.send(Held { data, closed_at });
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
        }
        HoldServer {
            port,
            accepted,
            events,
            stop,
        }
    }
}

impl Drop for HoldServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// Running sbx

/// `sbx ARGS -- CMD...`.
fn run(args: &[&str], cmd: &[&str]) -> Ran {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--");
    all.extend_from_slice(cmd);
    common::sbx(all).run()
}

/// `sbx ARGS -- sh -c SCRIPT sh SCRIPT_ARGS...`.
fn sh(args: &[&str], script: &str, script_args: &[&str]) -> Ran {
    let mut cmd = vec!["sh", "-c", script, "sh"];
    cmd.extend_from_slice(script_args);
    run(args, &cmd)
}

/// Like [`run`], with `--json-status`; returns the report too.
fn run_report(args: &[&str], cmd: &[&str]) -> (Ran, Value) {
    let dir = common::Workdir::new();
    let status = dir.path().join("status.json");
    let status_arg = status.display().to_string();
    let mut all: Vec<&str> = vec!["--json-status", &status_arg];
    all.extend_from_slice(args);
    let r = run(&all, cmd);
    let report = common::read_report(&status, &r);
    (r, report)
}

/// The rest of the stdout line that starts with `key ` (the last one if several).
fn field<'a>(r: &'a Ran, key: &str) -> &'a str {
    let prefix = format!("{key} ");
    r.stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(&prefix).or_else(|| (l == key).then_some("")))
        .unwrap_or_else(|| panic!("no {key:?} line in the output: {r:?}"))
}

fn allow(port: &str) -> String {
    format!("127.0.0.1:{port}")
}

/// A python helper library, prepended to scripts that speak SOCKS5 or CONNECT by hand.
const PY_LIB: &str = r#"
import socket, sys

def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError("closed after %r" % out)
        out += chunk
    return out

def socks(port, name=b"127.0.0.1"):
    """Opens a SOCKS5 CONNECT to name:port through the proxy; returns (socket, reply code)."""
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    s.sendall(b"\x05\x01\x00")
    assert recv_exact(s, 2) == b"\x05\x00"
    s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
    return s, recv_exact(s, 10)[1]

def connect(port):
    """Opens an HTTP CONNECT tunnel to 127.0.0.1:port; returns (socket, status line)."""
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    return s, head.split(b"\r\n")[0].decode()

def get_over(s, port):
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % port)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n\r\n", 1)[-1].decode().strip()
"#;

fn py(script: &str) -> String {
    format!("{PY_LIB}\n{script}")
}

// ---------------------------------------------------------------------------------------------
// 1. Allowed vs denied, plain HTTP and CONNECT, curl and python

#[test]
fn allowed_host_answers_and_others_get_403() {
    if !have("allowed_host_answers_and_others_get_403", &[CURL, PYTHON]) {
        return;
    }
    let a = Server::start("A");
    let b = Server::start("B");
    let script = r#"
echo "curl-a $(curl -s http://127.0.0.1:$1/)"
echo "curl-b $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$2/)"
echo "curl-b-body $(curl -s http://127.0.0.1:$2/)"
echo "tunnel-a $(curl -s -p http://127.0.0.1:$1/)"
out=$(curl -s -p -o /dev/null -w '%{http_connect}' http://127.0.0.1:$2/); echo "tunnel-b $? $out"
python3 -c "$3" "$1" "$2"
"#;
    let python = r#"
import sys, urllib.request, urllib.error
a, b = sys.argv[1], sys.argv[2]
print("py-proxy", urllib.request.getproxies().get("http"))
print("py-a", urllib.request.urlopen("http://127.0.0.1:%s/" % a, timeout=10).read().decode().strip())
try:
    urllib.request.urlopen("http://127.0.0.1:%s/" % b, timeout=10)
    print("py-b reached")
except urllib.error.HTTPError as e:
    print("py-b", e.code)
"#;
    let r = sh(
        &["--net", "proxy", "--allow", &allow(&a.port())],
        script,
        &[&a.port(), &b.port(), python],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "curl-a"), a.line(), "{r:?}");
    assert_eq!(field(&r, "curl-b"), "403", "{r:?}");
    let denied = field(&r, "curl-b-body");
    assert!(
        denied.contains(&allow(&b.port())) && denied.contains("not in the allowlist"),
        "the 403 body should say what was refused and why: {denied:?}"
    );
    assert_eq!(field(&r, "tunnel-a"), a.line(), "{r:?}");
    // curl's exit 56 (CURLE_RECV_ERROR): the proxy refused the CONNECT with 403.
    assert_eq!(field(&r, "tunnel-b"), "56 403", "{r:?}");
    assert_eq!(field(&r, "py-proxy"), "http://127.0.0.1:3128", "{r:?}");
    assert_eq!(field(&r, "py-a"), a.line(), "{r:?}");
    assert_eq!(field(&r, "py-b"), "403", "{r:?}");

    assert_eq!(
        a.accepted(),
        3,
        "curl, curl -p and python each reach A once"
    );
    assert_eq!(b.accepted(), 0, "B must never see a connection");
    // What reached A is an origin-form request without the proxy's own headers.
    for head in a.heads() {
        assert!(head.starts_with("GET / HTTP/1.1\r\n"), "{head:?}");
        for line in head.split("\r\n").skip(1) {
            assert!(
                !line.to_ascii_lowercase().starts_with("proxy-"),
                "a proxy header was forwarded: {head:?}"
            );
        }
    }
}

#[test]
fn repeated_allow_and_port_wildcard() {
    if !have("repeated_allow_and_port_wildcard", &[CURL]) {
        return;
    }
    let a = Server::start("A");
    let b = Server::start("B");
    let script =
        r#"echo "a $(curl -s http://127.0.0.1:$1/)"; echo "b $(curl -s http://127.0.0.1:$2/)""#;
    let r = sh(
        &[
            "--net",
            "proxy",
            "--allow",
            &allow(&a.port()),
            "--allow",
            &allow(&b.port()),
        ],
        script,
        &[&a.port(), &b.port()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "a"), a.line(), "{r:?}");
    assert_eq!(field(&r, "b"), b.line(), "{r:?}");

    let r = sh(
        &["--net", "proxy", "--allow", "127.0.0.1:*"],
        script,
        &[&a.port(), &b.port()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "a"), a.line(), "{r:?}");
    assert_eq!(field(&r, "b"), b.line(), "{r:?}");
    assert_eq!((a.accepted(), b.accepted()), (2, 2));
}

#[test]
fn proxy_without_an_allowlist_refuses_everything() {
    if !have("proxy_without_an_allowlist_refuses_everything", &[CURL]) {
        return;
    }
    let a = Server::start("A");
    let (r, report) = sh_report(
        &["--net", "proxy"],
        r#"echo "code $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$1/)""#,
        &[&a.port()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "code"), "403", "{r:?}");
    assert_eq!(a.accepted(), 0);
    assert_eq!(report["network"]["mode"], "proxy", "{report}");
    assert_eq!(
        report["network"]["allow"],
        serde_json::json!([]),
        "{report}"
    );
    assert_eq!(report["network"]["proxy"]["denied"], 1, "{report}");
}

fn sh_report(args: &[&str], script: &str, script_args: &[&str]) -> (Ran, Value) {
    let mut cmd = vec!["sh", "-c", script, "sh"];
    cmd.extend_from_slice(script_args);
    run_report(args, &cmd)
}

// ---------------------------------------------------------------------------------------------
// 2. SOCKS5

#[test]
fn socks5_reaches_allowed_hosts_only() {
    if !have("socks5_reaches_allowed_hosts_only", &[CURL, PYTHON]) {
        return;
    }
    let a = Server::start("A");
    let b = Server::start("B");
    let script = r#"
echo "socks5h-a $(curl -s -x socks5h://127.0.0.1:3128 http://127.0.0.1:$1/)"
echo "socks5-a $(curl -s -x socks5://127.0.0.1:3128 http://127.0.0.1:$1/)"
curl -s -o /dev/null -x socks5h://127.0.0.1:3128 http://127.0.0.1:$2/; echo "socks5h-b $?"
curl -s -o /dev/null -x socks5://127.0.0.1:3128 http://127.0.0.1:$2/; echo "socks5-b $?"
python3 -c "$3" "$1" "$2"
"#;
    let python = py(r#"
a, b = int(sys.argv[1]), int(sys.argv[2])
s, code = socks(a)
print("raw-a", code, get_over(s, a) if code == 0 else "")
s, code = socks(b)
print("raw-b", code)
"#);
    let r = sh(
        &["--net", "proxy", "--allow", &allow(&a.port())],
        script,
        &[&a.port(), &b.port(), &python],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "socks5h-a"), a.line(), "{r:?}");
    assert_eq!(field(&r, "socks5-a"), a.line(), "{r:?}");
    // 97: CURLE_PROXY, curl's "the proxy refused" (SOCKS reply 2, not allowed by ruleset).
    assert_eq!(field(&r, "socks5h-b"), "97", "{r:?}");
    assert_eq!(field(&r, "socks5-b"), "97", "{r:?}");
    assert_eq!(field(&r, "raw-a"), format!("0 {}", a.line()), "{r:?}");
    assert_eq!(
        field(&r, "raw-b"),
        "2",
        "SOCKS5 reply 2 is 'not allowed'; {r:?}"
    );
    assert_eq!(a.accepted(), 3);
    assert_eq!(b.accepted(), 0, "B must never see a connection");
}

// ---------------------------------------------------------------------------------------------
// 3. A client that ignores the proxy has no route; 4. DNS does not work inside

#[test]
fn direct_connections_bypassing_the_proxy_fail() {
    if !have(
        "direct_connections_bypassing_the_proxy_fail",
        &[CURL, PYTHON],
    ) {
        return;
    }
    let a = Server::start("A");
    let script = r#"
curl -s --noproxy '*' --max-time 3 http://127.0.0.1:$1/; echo "curl $?"
python3 -c "$2" "$1"
"#;
    let python = r#"
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
    print("py connected")
except ConnectionRefusedError:
    print("py refused")
except OSError as e:
    print("py error", e.errno, e)
with open("/proc/net/dev") as f:
    print("ifaces", " ".join(sorted(l.split(":")[0].strip() for l in f.readlines()[2:])))
"#;
    let started = Instant::now();
    let r = sh(
        &["--net", "proxy", "--allow", &allow(&a.port())],
        script,
        &[&a.port(), python],
    );
    assert_eq!(r.code, 0, "{r:?}");
    // 7: CURLE_COULDNT_CONNECT, refused by the sandbox's own lo (not a timeout).
    assert_eq!(field(&r, "curl"), "7", "{r:?}");
    assert_eq!(field(&r, "py"), "refused", "{r:?}");
    assert_eq!(field(&r, "ifaces"), "lo", "only lo in proxy mode; {r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refusals should be immediate"
    );
    assert_eq!(a.accepted(), 0, "the direct connections must not reach A");
}

#[test]
fn dns_does_not_work_inside() {
    if !have("dns_does_not_work_inside", &[PYTHON]) {
        return;
    }
    let a = Server::start("A");
    // Names that need DNS (not in /etc/hosts); the sandbox has no route, so nothing is sent.
    let script = r#"
getent hosts example.com >/dev/null; echo "getent $?"
python3 -c "$1"
"#;
    let python = r#"
import socket
try:
    print("py resolved", socket.getaddrinfo("example.com", 80))
except socket.gaierror as e:
    print("py gaierror", e.errno)
"#;
    let r = sh(
        &["--net", "proxy", "--allow", &allow(&a.port())],
        script,
        &[python],
    );
    assert_eq!(r.code, 0, "{r:?}");
    // getent: 2 = key not found.
    assert_eq!(field(&r, "getent"), "2", "{r:?}");
    assert!(field(&r, "py").starts_with("gaierror"), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// 5. DNS-rebinding defence: wildcards never lead to loopback, exact entries may

#[test]
fn wildcard_entries_never_reach_loopback_exact_ones_do() {
    if !have(
        "wildcard_entries_never_reach_loopback_exact_ones_do",
        &[CURL, PYTHON],
    ) {
        return;
    }
    let a = Server::start("A");
    let wildcard = format!("*:{}", a.port());
    let script = r#"
echo "localhost $(curl -s -o /dev/null -w '%{http_code}' http://localhost:$1/)"
echo "literal $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$1/)"
out=$(curl -s -p -o /dev/null -w '%{http_connect}' http://localhost:$1/); echo "tunnel $? $out"
curl -s -o /dev/null -x socks5h://127.0.0.1:3128 http://localhost:$1/; echo "socks $?"
curl -s -o /dev/null -x socks5://127.0.0.1:3128 http://127.0.0.1:$1/; echo "socks-ip $?"
python3 -c "$2" "$1"
"#;
    let python = py(r#"
s, code = socks(int(sys.argv[1]), b"localhost")
print("raw-socks", code)
"#);
    let (r, report) = sh_report(
        &["--net", "proxy", "--allow", &wildcard],
        script,
        &[&a.port(), &python],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "localhost"), "403", "{r:?}");
    assert_eq!(field(&r, "literal"), "403", "{r:?}");
    assert_eq!(field(&r, "tunnel"), "56 403", "{r:?}");
    assert_eq!(field(&r, "socks"), "97", "{r:?}");
    assert_eq!(field(&r, "socks-ip"), "97", "{r:?}");
    assert_eq!(field(&r, "raw-socks"), "2", "{r:?}");
    assert_eq!(a.accepted(), 0, "a wildcard entry reached loopback");
    assert_eq!(report["network"]["proxy"]["allowed"], 0, "{report}");
    assert_eq!(report["network"]["proxy"]["denied"], 6, "{report}");

    // An exact name entry allows loopback, for that name only.
    let script = r#"
echo "localhost $(curl -s http://localhost:$1/)"
echo "socks $(curl -s -x socks5h://127.0.0.1:3128 http://localhost:$1/)"
echo "literal $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$1/)"
"#;
    let r = sh(
        &[
            "--net",
            "proxy",
            "--allow",
            &format!("localhost:{}", a.port()),
        ],
        script,
        &[&a.port()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "localhost"), a.line(), "{r:?}");
    assert_eq!(field(&r, "socks"), a.line(), "{r:?}");
    assert_eq!(field(&r, "literal"), "403", "{r:?}");
    assert_eq!(a.accepted(), 2);
}

#[test]
fn ipv6_literals_follow_the_same_rules() {
    if !have("ipv6_literals_follow_the_same_rules", &[CURL]) {
        return;
    }
    let Some(a) = Server::start_v6("A6") else {
        common::note_skip("ipv6_literals_follow_the_same_rules", "no IPv6 loopback");
        return;
    };
    let script = r#"
echo "plain $(curl -s "http://[::1]:$1/")"
echo "tunnel $(curl -s -p "http://[::1]:$1/")"
echo "socks5h $(curl -s -x socks5h://127.0.0.1:3128 "http://[::1]:$1/")"
echo "socks5 $(curl -s -x socks5://127.0.0.1:3128 "http://[::1]:$1/")"
"#;
    let r = sh(
        &["--net", "proxy", "--allow", &format!("[::1]:{}", a.port())],
        script,
        &[&a.port()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    for key in ["plain", "tunnel", "socks5h", "socks5"] {
        assert_eq!(field(&r, key), a.line(), "{key}: {r:?}");
    }
    assert_eq!(a.accepted(), 4);

    // Loopback literals, IPv4-mapped ones included, never pass a wildcard entry.
    let script = r#"
echo "v6 $(curl -s -o /dev/null -w '%{http_code}' "http://[::1]:$1/")"
echo "mapped $(curl -s -o /dev/null -w '%{http_code}' "http://[::ffff:127.0.0.1]:$1/")"
curl -s -o /dev/null -x socks5://127.0.0.1:3128 "http://[::1]:$1/"; echo "socks5 $?"
"#;
    let r = sh(
        &["--net", "proxy", "--allow", &format!("*:{}", a.port())],
        script,
        &[&a.port()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "v6"), "403", "{r:?}");
    assert_eq!(field(&r, "mapped"), "403", "{r:?}");
    assert_eq!(field(&r, "socks5"), "97", "{r:?}");
    assert_eq!(a.accepted(), 4, "a wildcard entry reached [::1]");
}

// ---------------------------------------------------------------------------------------------
// 6. The run report; 7. -v

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
// 8. Load

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
// 9. Open tunnels neither delay the timeout nor outlive the sandbox

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
// 10. Bad input

#[test]
fn bad_allowlists_are_setup_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["--net", "proxy", "--allow", "nonsense"], "network.allow"),
        (&["--net", "proxy", "--allow", "host:0"], "network.allow"),
        (&["--net", "proxy", "--allow", "host:http"], "network.allow"),
        (
            &["--net", "proxy", "--allow", "host:65536"],
            "network.allow",
        ),
        (&["--net", "proxy", "--allow", "a*b:80"], "network.allow"),
        (&["--net", "proxy", "--allow", "*.:80"], "network.allow"),
        (&["--net", "proxy", "--allow", ":80"], "network.allow"),
        (
            &["--allow", "127.0.0.1:1"],
            "needs network.mode = \"proxy\"",
        ),
        (
            &["--net", "host", "--allow", "127.0.0.1:1"],
            "needs network.mode = \"proxy\"",
        ),
        (
            &["--net", "none", "--allow", "127.0.0.1:1"],
            "needs network.mode = \"proxy\"",
        ),
    ];
    for (args, want) in cases {
        let r = run(args, &["sh", "-c", "echo ran"]);
        assert_eq!(r.code, 125, "{args:?}: {r:?}");
        assert!(r.stderr.contains(want), "{args:?}: want {want:?}: {r:?}");
        assert!(r.stderr.contains("network.allow"), "{args:?}: {r:?}");
        assert!(
            !r.stdout.contains("ran"),
            "the command ran: {args:?}: {r:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The profile route: [network] mode = "proxy" with allow and proxy_port

#[test]
fn profile_network_proxy_with_its_own_port() {
    if !have("profile_network_proxy_with_its_own_port", &[CURL]) {
        return;
    }
    let a = Server::start("A");
    let profile = common::profile(&format!(
        "extends = [\"default\"]\n[network]\nmode = \"proxy\"\nallow = [\"127.0.0.1:{}\"]\n\
         proxy_port = 8123\n",
        a.port()
    ));
    let script = r#"
echo "http_proxy $http_proxy"
echo "HTTPS_PROXY $HTTPS_PROXY"
echo "ALL_PROXY $ALL_PROXY"
echo "a $(curl -s http://127.0.0.1:$1/)"
echo "socks $(curl -s -x "$ALL_PROXY" http://127.0.0.1:$1/)"
"#;
    let r = sh(&["-p", &profile.path], script, &[&a.port()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "http_proxy"), "http://127.0.0.1:8123", "{r:?}");
    assert_eq!(field(&r, "HTTPS_PROXY"), "http://127.0.0.1:8123", "{r:?}");
    assert_eq!(field(&r, "ALL_PROXY"), "socks5h://127.0.0.1:8123", "{r:?}");
    assert_eq!(field(&r, "a"), a.line(), "{r:?}");
    assert_eq!(field(&r, "socks"), a.line(), "{r:?}");
    assert_eq!(a.accepted(), 2);
}

#[test]
fn proxy_mode_sets_every_proxy_variable() {
    let r = run(&["--net", "proxy", "--allow", "127.0.0.1:1"], &["env"]);
    assert_eq!(r.code, 0, "{r:?}");
    let env: Vec<&str> = r.stdout.lines().collect();
    for (k, v) in [
        ("HTTP_PROXY", "http://127.0.0.1:3128"),
        ("HTTPS_PROXY", "http://127.0.0.1:3128"),
        ("ALL_PROXY", "socks5h://127.0.0.1:3128"),
        ("NO_PROXY", ""),
    ] {
        for k in [k.to_string(), k.to_lowercase()] {
            let want = format!("{k}={v}");
            assert!(env.contains(&want.as_str()), "no {want:?}: {r:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 11. Modes none and host keep working

#[test]
fn mode_none_reaches_nothing_and_mode_host_reaches_the_host() {
    if !have(
        "mode_none_reaches_nothing_and_mode_host_reaches_the_host",
        &[CURL],
    ) {
        return;
    }
    let a = Server::start("A");
    let script = r#"
curl -s --max-time 3 http://127.0.0.1:$1/; echo "curl $?"
echo "proxy-vars $(env | grep -ci '_proxy=')"
"#;
    let (r, report) = sh_report(&[], script, &[&a.port()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "curl"), "7", "connection refused expected: {r:?}");
    assert_eq!(field(&r, "proxy-vars"), "0", "{r:?}");
    assert_eq!(report["network"]["mode"], "none", "{report}");
    assert_eq!(report["network"]["proxy"], Value::Null, "{report}");
    assert_eq!(a.accepted(), 0);

    let script = r#"
echo "curl $(curl -s --max-time 3 http://127.0.0.1:$1/)"
echo "proxy-vars $(env | grep -ci '_proxy=')"
"#;
    let (r, report) = sh_report(&["--net", "host"], script, &[&a.port()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "curl"), a.line(), "{r:?}");
    assert_eq!(field(&r, "proxy-vars"), "0", "{r:?}");
    assert_eq!(report["network"]["mode"], "host", "{report}");
    assert_eq!(report["network"]["proxy"], Value::Null, "{report}");
    assert_eq!(a.accepted(), 1);
    // Directly, not through a proxy: the request is in origin form from curl itself.
    assert!(a.heads()[0].starts_with("GET / HTTP/1.1\r\n"));
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
    assert_eq!(
        after, "tunnel b'', proxy refused",
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
