//! The egress proxy of `--net proxy`, judged by what gets through: HTTP servers on the host's
//! loopback (some allowed, some not) and real clients inside the sandbox (`curl`, `python3`).
//! The allowed server answers through the proxy (plain HTTP, CONNECT, SOCKS5), a denied one
//! gets 403 / SOCKS "not allowed" and never sees a connection, a client ignoring the proxy
//! reaches nothing the list does not name, DNS answers only the list's names, wildcard entries
//! never reach loopback, bad allowlists are setup errors, the profile's route sets every proxy
//! variable, modes none and host keep working, and a failed run names what was refused. The run report, load and the tunnels' lifetime are in tests/proxy_lifecycle.rs.
//! Nothing here leaves the machine: only 127.0.0.1 and the sandbox's namespaces.

mod common;

use std::time::{Duration, Instant};

use common::http::Server;
use common::proxy::{CURL, PYTHON, allow, field, have, py, run, run_report, sh, sh_report};
use serde_json::Value;

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
// 3. A client that ignores the proxy reaches nothing the list does not name; 4. DNS inside
// answers only the list's names (tests/net_on.rs has the rest, in the network lab)

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
    // Allowed through the proxy by name; `127.0.0.1:PORT` itself would map the port in
    // (tests/net_on.rs).
    let r = sh(
        &[
            "--net",
            "proxy",
            "--allow",
            &format!("localhost.test:{}", a.port()),
        ],
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
// 6. Bad input

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
        (&["--net", "on", "--allow", "127.0.0.1:53"], "answers DNS"),
        (
            &["--net", "proxy", "--allow", "127.0.0.1:3128"],
            "proxy's own port",
        ),
        (
            &["--allow", "127.0.0.1:1"],
            "needs network.mode = \"on\" or \"proxy\"",
        ),
        (
            &["--net", "host", "--allow", "127.0.0.1:1"],
            "needs network.mode = \"on\" or \"proxy\"",
        ),
        (
            &["--net", "none", "--allow", "127.0.0.1:1"],
            "needs network.mode = \"on\" or \"proxy\"",
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
// 7. The profile route: [network] mode = "proxy" with allow and proxy_port

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
// 8. Modes none and host keep working

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
// 7. A failed run names what the network refused

#[test]
fn a_failed_run_names_what_the_network_refused() {
    if !have("a_failed_run_names_what_the_network_refused", &[CURL]) {
        return;
    }
    let a = Server::start("A");
    let url = format!("http://127.0.0.1:{}/", a.port());
    let curl = ["curl", "-fsS", "--max-time", "5", url.as_str()];
    let args = ["--net", "proxy", "--allow", "allowed.invalid:80"];
    let line = format!("sbx: the sandbox's network refused 127.0.0.1:{}", a.port());
    // curl's own words say 403; sbx's line says who refused what, and where that is decided.
    let r = run(&args, &curl);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains(&line), "{r:?}");
    assert!(r.stderr.contains("network.allow"), "{r:?}");
    // Quiet, or a command that succeeds anyway: no line.
    let mut quiet = vec!["-q"];
    quiet.extend_from_slice(&args);
    let r = run(&quiet, &curl);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(!r.stderr.contains("network refused"), "{r:?}");
    let script = format!("curl -fsS --max-time 5 {url}; true");
    let r = sh(&args, &script, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stderr.contains("network refused"), "{r:?}");
    // The report carries the same line.
    let (r, report) = run_report(&args, &curl);
    assert_ne!(r.code, 0, "{r:?}");
    let refused = report["network"]["refused"].as_str().unwrap_or_default();
    assert!(
        refused.starts_with("the sandbox's network refused 127.0.0.1:"),
        "{report}"
    );
    assert_eq!(a.accepted(), 0);
}
