//! `--net on` and `--net proxy` attacked from inside, in the network lab (tests/common/netlab.rs:
//! a namespace standing for the host, with its own loopback service and private address, a
//! peer standing for the internet, with a metadata-style server behind a route, and a DNS
//! server). sbx runs there as the test uid; each claim has its control, run without sbx.
//!
//! Claims: with `on` the internet is reachable by any program (raw sockets, curl without proxy
//! variables, names through sbx's DNS), and the host is not: its loopback, its own addresses,
//! link-local metadata; `--allow 127.0.0.1:PORT` maps one host port in. With `proxy`, programs
//! that ignore the proxy are held to the allowlist: DNS answers only allowed names (a denied
//! name never leaves the sandbox), connections go only to addresses resolved for allowed
//! names, a wildcard name rebinding to an internal address is refused. Many parallel
//! connections are all served, and nothing of sbx's is left when the sandbox ends. Root only
//! (the lab makes veth pairs): without root each test says SKIP.

mod common;

use common::netlab::{HOST_PORT, HOST_PRIVATE, Lab, METADATA, PUBLIC, PUBLIC2, client_says};
use common::read_report;

const PORT: &str = "8080";

#[test]
fn on_reaches_the_internet_and_not_the_host() {
    let Some(lab) = Lab::start("on_reaches_the_internet_and_not_the_host") else {
        return;
    };
    assert_eq!(PORT, HOST_PORT.to_string());
    // Controls: without sbx the "host" reaches all of it.
    for (op, want) in [
        (["tcp", PUBLIC, "80"], "OK public"),
        (["tcp", METADATA, "80"], "OK metadata"),
        (["tcp", "127.0.0.1", PORT], "OK host-loopback"),
        (["tcp", HOST_PRIVATE, PORT], "OK host-private"),
    ] {
        assert_eq!(lab.bare_client(&op), want, "control {op:?}");
    }
    let before = |body| lab.connections(body);
    let (meta0, lo0, priv0) = (
        before("metadata"),
        before("host-loopback"),
        before("host-private"),
    );
    let on = ["--net", "on"];
    let (says, r) = lab.client(&on, &["tcp", PUBLIC, "80"]);
    assert_eq!(says, "OK public", "{r:?}");
    let (says, r) = lab.client(&on, &["tcp", PUBLIC2, "80"]);
    assert_eq!(says, "OK public2", "{r:?}");
    for (op, body) in [
        (["tcp", METADATA, "80"], "metadata"),
        (["tcp", "127.0.0.1", PORT], "host-loopback"),
        (["tcp", HOST_PRIVATE, PORT], "host-private"),
        // The host's own public-looking address on the lab's link.
        (["tcp", "203.0.113.1", PORT], "host-private"),
    ] {
        let (says, r) = lab.client(&on, &op);
        assert_eq!(says, "ERR ECONNREFUSED", "{op:?} ({body}): {r:?}");
    }
    assert_eq!(lab.connections("metadata"), meta0, "{:?}", lab.log());
    assert_eq!(lab.connections("host-loopback"), lo0, "{:?}", lab.log());
    assert_eq!(lab.connections("host-private"), priv0, "{:?}", lab.log());

    // The profile means the same; curl needs no proxy variables, and names resolve through
    // sbx's DNS (the lab's resolv.conf names the lab's server, added to the sandbox's lo).
    let r = lab.run_sbx(&[
        "--profile",
        "net-on",
        "--",
        "curl",
        "-sS",
        "--max-time",
        "10",
        "http://allowed.test/",
    ]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "public"), "{r:?}");
    let r = lab.run_sbx(&[
        "--profile",
        "net-on",
        "--",
        "curl",
        "-sS",
        "--max-time",
        "10",
        "http://meta.test/",
    ]);
    assert_eq!(r.code, 7, "metadata by name: {r:?}");
    assert_eq!(lab.connections("metadata"), meta0, "{:?}", lab.log());
}

#[test]
fn an_allowed_host_port_is_mapped_in_at_the_same_address() {
    let Some(lab) = Lab::start("an_allowed_host_port_is_mapped_in_at_the_same_address") else {
        return;
    };
    let allow = format!("127.0.0.1:{PORT}");
    for mode in ["on", "proxy"] {
        let lo0 = lab.connections("host-loopback");
        let (says, r) = lab.client(
            &["--net", mode, "--allow", &allow],
            &["tcp", "127.0.0.1", PORT],
        );
        assert_eq!(says, "OK host-loopback", "{mode}: {r:?}");
        // curl with no proxy at all (proxy mode sets the variables; --noproxy ignores them).
        let r = lab.run_sbx(&[
            "--net",
            mode,
            "--allow",
            &allow,
            "--",
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "10",
            &format!("http://localhost:{PORT}/"),
        ]);
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (0, "host-loopback"),
            "{mode}: {r:?}"
        );
        assert_eq!(
            lab.connections("host-loopback"),
            lo0 + 2,
            "{mode}: {:?}",
            lab.log()
        );
        // Only that port: the host's other loopback ports stay out of reach.
        let (says, r) = lab.client(
            &["--net", mode, "--allow", &allow],
            &["tcp", "127.0.0.1", "8081"],
        );
        assert_eq!(says, "ERR ECONNREFUSED", "{mode}: {r:?}");
    }
    // An internal address listed exactly is an exception to `on`'s rule.
    let (says, r) = lab.client(
        &["--net", "on", "--allow", &format!("{HOST_PRIVATE}:{PORT}")],
        &["tcp", HOST_PRIVATE, PORT],
    );
    assert_eq!(says, "OK host-private", "{r:?}");
}

#[test]
fn proxy_holds_programs_that_ignore_it_to_the_allowlist() {
    let Some(lab) = Lab::start("proxy_holds_programs_that_ignore_it_to_the_allowlist") else {
        return;
    };
    let proxy = ["--net", "proxy", "--allow", "allowed.test:80"];
    // A raw client, by name: sbx's DNS answers the allowed name, the connection goes out.
    let (says, r) = lab.client(&proxy, &["tcp", "allowed.test", "80"]);
    assert_eq!(says, "OK public", "{r:?}");
    // The same address on another port, or another public address, is not on the list.
    let (says, r) = lab.client(&proxy, &["tcp", "allowed.test", "81"]);
    assert_eq!(says, "ERR ECONNREFUSED", "{r:?}");
    let (says, r) = lab.client(&proxy, &["tcp", PUBLIC2, "80"]);
    assert_eq!(says, "ERR ECONNREFUSED", "{r:?}");
    // A name the list does not have gets NXDOMAIN, and the question never leaves.
    let (says, r) = lab.client(&proxy, &["resolve", "other.test"]);
    assert_eq!(says, "ERR EAI_NONAME", "{r:?}");
    assert!(
        !lab.dns_queries()
            .iter()
            .any(|q| q.starts_with("other.test")),
        "{:?}",
        lab.log()
    );
    // curl ignoring the proxy variables: the same list.
    let curl = |url: &str| {
        lab.run_sbx(&[
            "--net",
            "proxy",
            "--allow",
            "allowed.test:80",
            "--",
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "10",
            url,
        ])
    };
    let r = curl("http://allowed.test/");
    assert_eq!((r.code, r.stdout.as_str()), (0, "public"), "{r:?}");
    let r = curl("http://other.test/");
    assert_eq!(r.code, 6, "could not resolve: {r:?}");
    let r = curl(&format!("http://{PUBLIC2}/"));
    assert_eq!(r.code, 7, "refused: {r:?}");

    // The run report counts and names what was refused.
    let dir = common::Workdir::new();
    let status = dir.path().join("status.json");
    let status_arg = status.display().to_string();
    let mut args = vec!["--json-status", &status_arg];
    args.extend_from_slice(&proxy);
    let (_, r) = lab.client(&args, &["tcp", PUBLIC2, "80"]);
    let report = read_report(&status, &r);
    let c = &report["network"]["connections"];
    assert_eq!(c["denied"], 1, "{report}");
    assert_eq!(
        c["denied_destinations"][0],
        format!("{PUBLIC2}:80"),
        "{report}"
    );
}

#[test]
fn dns_rebinding_to_internal_addresses_is_refused() {
    let Some(lab) = Lab::start("dns_rebinding_to_internal_addresses_is_refused") else {
        return;
    };
    // A wildcard entry: names resolving to loopback or metadata addresses get NXDOMAIN.
    let wild = ["--net", "proxy", "--allow", "*.test:*"];
    let (says, r) = lab.client(&wild, &["resolve", "allowed.test"]);
    assert_eq!(says, "OK 203.0.113.10", "{r:?}");
    for name in ["rebind.test", "meta.test"] {
        let (says, r) = lab.client(&wild, &["resolve", name]);
        assert_eq!(says, "ERR EAI_NONAME", "{name}: {r:?}");
    }
    // Listed exactly, the name resolves, and 127.0.0.1 is the sandbox's own loopback: the
    // host's service on that port is not reached.
    let lo0 = lab.connections("host-loopback");
    let exact = [
        "--net",
        "proxy",
        "--allow",
        &format!("rebind.test:{PORT}") as &str,
    ];
    let (says, r) = lab.client(&exact, &["tcp", "rebind.test", PORT]);
    assert_eq!(says, "ERR ECONNREFUSED", "{r:?}");
    assert_eq!(lab.connections("host-loopback"), lo0, "{:?}", lab.log());
    // The same with `on`: a public name rebinding to metadata is refused at connect.
    let (says, r) = lab.client(&["--net", "on"], &["tcp", "meta.test", "80"]);
    assert_eq!(says, "ERR ECONNREFUSED", "{r:?}");
}

/// 200 connections, 32 at a time, each reading its whole answer.
const PY_MANY: &str = r#"
import socket, sys, concurrent.futures as cf
def one(i):
    s = socket.create_connection((sys.argv[1], 80), 20)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    d = b""
    while True:
        c = s.recv(4096)
        if not c:
            break
        d += c
    return d.split(b"\r\n\r\n", 1)[-1].strip() == b"public"
with cf.ThreadPoolExecutor(32) as ex:
    ok = sum(ex.map(one, range(200)))
print("served", ok)
"#;

#[test]
fn many_parallel_connections_are_all_served_and_nothing_is_left() {
    let Some(lab) = Lab::start("many_parallel_connections_are_all_served_and_nothing_is_left")
    else {
        return;
    };
    let n0 = lab.connections("public");
    let r = lab.run_sbx(&["--net", "on", "--", "python3", "-c", PY_MANY, PUBLIC]);
    assert_eq!((r.code, r.stdout.trim()), (0, "served 200"), "{r:?}");
    assert_eq!(lab.connections("public"), n0 + 200, "{:?}", lab.log());

    // A connection held open by a process left in the background: when the command ends, the
    // sandbox ends, and so does every connection sbx made for it.
    // (The lab's server waits 2 s for a request before it answers and closes: sbx is gone well
    // before that, so an established connection after it would be sbx's leftover.)
    let marker = common::unique_name("held");
    let script = format!(
        "python3 -c 'import socket,time; s=socket.create_connection((\"{PUBLIC}\", 80), 5); \
         print(\"held\", flush=True); time.sleep(60)' {marker} & sleep 0.3; echo done"
    );
    let r = lab.run_sbx(&["--net", "on", "--", "sh", "-c", &script]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("held") && r.stdout.contains("done"),
        "{r:?}"
    );
    let ss = lab.run_bare(&["ss", "-Htn", "state", "established"]);
    assert_eq!(ss.code, 0, "{ss:?}");
    assert!(
        !ss.stdout.contains(&format!("{PUBLIC}:80")),
        "a connection outlived the sandbox: {ss:?}"
    );
    let left = common::survivors_with(&[&marker], std::time::Duration::from_secs(2));
    assert!(left.is_empty(), "processes left: {left:?}");
}

/// A connected UDP socket (connect, send, recv), for the other path of datagrams.
const PY_UDP_CONNECTED: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    s.send(b"connected")
    print("OK", s.recv(100).decode(), s.getpeername()[0])
except OSError as e:
    print("ERR", e.errno)
"#;

#[test]
fn datagrams_reach_the_internet_from_its_own_address_and_not_the_host() {
    let Some(lab) =
        Lab::start("datagrams_reach_the_internet_from_its_own_address_and_not_the_host")
    else {
        return;
    };
    // Control: the lab's echo answers the host.
    assert_eq!(
        lab.bare_client(&["udp", PUBLIC, "7", "ping"]),
        "OK echo:ping"
    );
    let (says, r) = lab.client(&["--net", "on"], &["udp", PUBLIC, "7", "ping"]);
    assert_eq!(says, "OK echo:ping", "{r:?}");
    // Connected: the answer comes from the destination's own address.
    let r = lab.run_sbx(&[
        "--net",
        "on",
        "--",
        "python3",
        "-c",
        PY_UDP_CONNECTED,
        PUBLIC,
        "7",
    ]);
    assert_eq!(
        client_says(&r),
        format!("OK echo:connected {PUBLIC}"),
        "{r:?}"
    );
    // Internal destinations, and anything not listed in proxy mode, are refused (EPERM).
    let echoes = |lab: &Lab| {
        lab.log()
            .iter()
            .filter(|l| l.starts_with("udp echo"))
            .count()
    };
    let n0 = echoes(&lab);
    for (args, to) in [
        (&["--net", "on"][..], "127.0.0.1"),
        (&["--net", "on"][..], HOST_PRIVATE),
        (&["--net", "on"][..], METADATA),
        (
            &["--net", "proxy", "--allow", "allowed.test:80"][..],
            PUBLIC,
        ),
    ] {
        let (says, r) = lab.client(args, &["udp", to, "7", "ping"]);
        assert!(
            says == "ERR EPERM" || says == "ERR ECONNREFUSED" || says == "ERR timeout",
            "{args:?} {to}: {r:?}"
        );
    }
    assert_eq!(echoes(&lab), n0, "{:?}", lab.log());
    // Listed, the proxy mode lets it through.
    let (says, r) = lab.client(
        &["--net", "proxy", "--allow", "allowed.test:7"],
        &["udp", PUBLIC, "7", "ping"],
    );
    assert_eq!(
        says, "ERR EPERM",
        "an address, not a name, was listed: {r:?}"
    );
    let (says, r) = lab.client(
        &["--net", "proxy", "--allow", &format!("{PUBLIC}:7")],
        &["udp", PUBLIC, "7", "ping"],
    );
    assert_eq!(says, "OK echo:ping", "{r:?}");
}

#[test]
fn connect_ports_hold_the_connections_sbx_makes_out() {
    let Some(lab) = Lab::start("connect_ports_hold_the_connections_sbx_makes_out") else {
        return;
    };
    // Landlock's TCP port rules see only the sandbox's own connect(2); the ones out are made by
    // sbx, which applies the same list.
    let p = common::profile(
        "extends = [\"default\"]\n[network]\nmode = \"on\"\nconnect_ports = [80]\n",
    );
    let (says, r) = lab.client(&["-p", &p.path], &["tcp", PUBLIC, "80"]);
    assert_eq!(says, "OK public", "{r:?}");
    let n0 = lab.connections("public2");
    let p = common::profile(
        "extends = [\"default\"]\n[network]\nmode = \"on\"\nconnect_ports = [443]\n",
    );
    let (says, r) = lab.client(&["-p", &p.path], &["tcp", PUBLIC2, "80"]);
    assert_eq!(says, "ERR ECONNREFUSED", "{r:?}");
    assert_eq!(lab.connections("public2"), n0, "{:?}", lab.log());
}
