//! What the egress proxy of `--net proxy` forwards, judged by what the server on the host
//! receives: a plain HTTP request reaches it with the Host it was checked for, whatever Host
//! the client wrote; only the first request of a connection reaches it, never a pipelined or
//! smuggled one after it; and a host name made of control characters is logged escaped under
//! `-v`, so that it cannot forge a line of sbx's log (the run report keeps it as it was).
//! Clients inside the sandbox speak HTTP and SOCKS5 by hand (python); servers are on the host's
//! 127.0.0.1; nothing here leaves the machine.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::http::{HoldServer, Server};
use common::proxy::{PYTHON, allow, field, have, py, run, run_report};

/// Sends raw HTTP requests (one per connection, each argument one request's bytes as a Python
/// bytes literal) to the proxy; prints the status line of each answer.
const RAW: &str = r#"
import ast
for i, arg in enumerate(sys.argv[1:]):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
    s.sendall(ast.literal_eval(arg))
    # The client is done sending: the proxy passes the end on once it forwarded the request.
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    print("answer%d %s" % (i, data.split(b"\r\n")[0].decode() or "(closed)"), flush=True)
"#;

/// `bytes` as a Python bytes literal.
fn literal(bytes: &str) -> String {
    let mut out = String::from("b'");
    for b in bytes.bytes() {
        out.push_str(&format!("\\x{b:02x}"));
    }
    out.push('\'');
    out
}

/// The `Host` header lines of a request head.
fn host_lines(head: &str) -> Vec<&str> {
    head.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.to_ascii_lowercase().starts_with("host:"))
        .collect()
}

#[test]
fn the_host_header_names_the_checked_destination() {
    if !have("the_host_header_names_the_checked_destination", &[PYTHON]) {
        return;
    }
    let a = Server::start("A");
    let dest = allow(&a.port());
    // The URI names the allowed server; the Host header another site, none, or two.
    let requests = [
        format!("GET http://{dest}/one HTTP/1.1\r\nHost: other.example\r\nX-Kept: 1\r\n\r\n"),
        format!("GET http://{dest}/two HTTP/1.1\r\nX-Kept: 2\r\n\r\n"),
        format!(
            "GET http://{dest}/three HTTP/1.1\r\nHost: {dest}\r\nHost: other.example\r\n\
             X-Kept: 3\r\n\r\n"
        ),
        format!("GET http://{dest}/four HTTP/1.0\r\nhOsT: other.example:80\r\nX-Kept: 4\r\n\r\n"),
    ];
    let python = py(RAW);
    let args: Vec<String> = requests.iter().map(|r| literal(r)).collect();
    let mut cmd = vec!["python3", "-c", python.as_str()];
    cmd.extend(args.iter().map(String::as_str));
    let r = run(&["--net", "proxy", "--allow", &dest], &cmd);
    assert_eq!(r.code, 0, "{r:?}");
    let mut heads = a.heads();
    heads.sort_by_key(|h| h.split("X-Kept: ").nth(1).map(|n| n[..1].to_string()));
    assert_eq!(
        heads.len(),
        requests.len(),
        "the server saw {heads:?}; {r:?}"
    );
    let targets = [
        "one HTTP/1.1",
        "two HTTP/1.1",
        "three HTTP/1.1",
        "four HTTP/1.0",
    ];
    for (i, head) in heads.iter().enumerate() {
        assert!(
            field(&r, &format!("answer{i}")).ends_with(" 200 OK"),
            "request {i} was not answered by the server: {r:?}"
        );
        // The request really is the one sent (the other headers are passed on)...
        assert!(
            head.starts_with(&format!("GET /{}\r\n", targets[i])),
            "{head:?}"
        );
        assert!(
            head.contains(&format!("\r\nX-Kept: {}\r\n", i + 1)),
            "{head:?}"
        );
        // ...and the only Host it carries is the destination the allowlist was asked about.
        assert_eq!(
            host_lines(head),
            [format!("Host: {dest}")],
            "the server was told another Host than the one checked: {head:?}"
        );
    }
}

#[test]
fn only_the_first_request_of_a_connection_reaches_the_server() {
    if !have(
        "only_the_first_request_of_a_connection_reaches_the_server",
        &[PYTHON],
    ) {
        return;
    }
    // The server records every byte it receives until the proxy closes its side.
    let h = HoldServer::start();
    let dest = allow(&h.port.to_string());
    // Another allowed server, named by the pipelined requests: it must not be reached either.
    let b = Server::start("B");
    let b_dest = allow(&b.port());
    let second = format!(
        "GET http://{b_dest}/second HTTP/1.1\r\nHost: {b_dest}\r\n\r\n\
         GET /smuggled HTTP/1.1\r\nHost: other.example\r\n\r\n"
    );
    // (what the client sends, what the server must receive: the first request, no more)
    let cases = [
        (
            format!("GET http://{dest}/first HTTP/1.1\r\nHost: {dest}\r\n\r\n{second}"),
            format!("GET /first HTTP/1.1\r\nHost: {dest}\r\nConnection: close\r\n\r\n"),
        ),
        (
            format!("POST http://{dest}/first HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello{second}"),
            format!(
                "POST /first HTTP/1.1\r\nHost: {dest}\r\nContent-Length: 5\r\n\
                 Connection: close\r\n\r\nhello"
            ),
        ),
        (
            format!(
                "POST http://{dest}/first HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                 5\r\nhello\r\n0\r\n\r\n{second}"
            ),
            format!(
                "POST /first HTTP/1.1\r\nHost: {dest}\r\nTransfer-Encoding: chunked\r\n\
                 Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            ),
        ),
    ];
    let python = py(RAW);
    let args: Vec<String> = cases.iter().map(|(sent, _)| literal(sent)).collect();
    let mut cmd = vec!["python3", "-c", python.as_str()];
    cmd.extend(args.iter().map(String::as_str));
    let r = run(
        &["-v", "--net", "proxy", "--allow", &dest, "--allow", &b_dest],
        &cmd,
    );
    assert_eq!(r.code, 0, "{r:?}");
    for (i, (sent, expected)) in cases.iter().enumerate() {
        let held = h
            .events
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("case {i}: the server saw no connection end; {r:?}"));
        assert_eq!(
            String::from_utf8_lossy(&held.data),
            *expected,
            "case {i}: the server did not receive exactly the first request of {sent:?}"
        );
    }
    assert_eq!(h.accepted.load(Ordering::SeqCst), cases.len());
    assert_eq!(b.accepted(), 0, "a pipelined request reached B");
    // What was dropped is said under -v.
    assert_eq!(
        r.stderr
            .lines()
            .filter(|l| l.contains("sent after the first request"))
            .count(),
        cases.len(),
        "{r:?}"
    );
}

#[test]
fn requests_a_server_could_read_differently_are_refused() {
    if !have(
        "requests_a_server_could_read_differently_are_refused",
        &[PYTHON],
    ) {
        return;
    }
    let a = Server::start("A");
    let dest = allow(&a.port());
    let requests = [
        // A bare LF: a server taking it for a line end sees a second Host.
        format!("GET http://{dest}/ HTTP/1.1\r\nX-A: 1\nHost: other.example\r\n\r\n"),
        // Two lengths: the proxy and the server would disagree on where the body ends.
        format!(
            "POST http://{dest}/ HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\
             \r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"
        ),
        format!("POST http://{dest}/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n"),
        // A folded header line.
        format!("GET http://{dest}/ HTTP/1.1\r\nX-A: 1\r\n Host: other.example\r\n\r\n"),
    ];
    let python = py(RAW);
    let args: Vec<String> = requests.iter().map(|r| literal(r)).collect();
    let mut cmd = vec!["python3", "-c", python.as_str()];
    cmd.extend(args.iter().map(String::as_str));
    let r = run(&["--net", "proxy", "--allow", &dest], &cmd);
    assert_eq!(r.code, 0, "{r:?}");
    for i in 0..requests.len() {
        assert_eq!(
            field(&r, &format!("answer{i}")),
            "HTTP/1.1 400 Bad Request",
            "request {i}: {r:?}"
        );
    }
    assert_eq!(a.accepted(), 0, "a refused request reached the server");
}

#[test]
fn verbose_log_shows_a_hostile_host_name_escaped() {
    if !have("verbose_log_shows_a_hostile_host_name_escaped", &[PYTHON]) {
        return;
    }
    let a = Server::start("A");
    // A SOCKS5 host name is any 255 bytes: this one carries a forged log line and an escape
    // sequence that erases the line it is printed on.
    let python = py(r#"
name = b"evil\n  INFO proxy: allowed forged.example:443\x1b[2K\rx"
s, code = socks(int(sys.argv[1]), name)
print("socks", code)
"#);
    let (r, report) = run_report(
        &["-v", "--net", "proxy", "--allow", &allow(&a.port())],
        &["python3", "-c", &python, &a.port()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(field(&r, "socks"), "2", "the name was not refused: {r:?}");
    let forged: Vec<&str> = r.stderr.lines().filter(|l| l.contains("forged")).collect();
    assert_eq!(
        forged.len(),
        1,
        "the host name spans several lines of the log: {forged:?}\n{r:?}"
    );
    assert!(
        forged[0]
            .contains("proxy: denied evil\\n  INFO proxy: allowed forged.example:443\\e[2K\\rx:"),
        "the denial is not logged with the name escaped: {forged:?}"
    );
    assert!(
        !r.stderr.contains(['\x1b', '\r']),
        "a control character of the name reached the terminal: {r:?}"
    );
    // The run report keeps the name as it was (JSON escapes it).
    let port = a.port();
    assert_eq!(
        report["network"]["proxy"]["denied_hosts"],
        serde_json::json!([format!(
            "evil\n  INFO proxy: allowed forged.example:443\x1b[2K\rx:{port}"
        )]),
        "{report}"
    );
    assert_eq!(a.accepted(), 0);
}
