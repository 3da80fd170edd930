//! `--net on` over IPv6, attacked from inside, in the network lab (tests/common/netlab.rs, its
//! IPv6 part: the host has ::1, its own public-looking 2001:db8:1::1 and a ULA fd00:77::1; the
//! internet peer 2001:db8:1::10, with AWS's IPv6 metadata address fd00:ec2::254 behind a
//! route). sbx runs there as the test uid; each claim has its control, run without sbx.
//!
//! Claims, with `--net on`, from AF_INET6 sockets:
//!
//! * TCP to a public IPv6 address goes out (through sbx's relay) and is answered;
//! * TCP to the host's loopback ::1, its own addresses (the ULA and the public-looking one),
//!   the metadata address, and the host's IPv4 loopback and private address written as
//!   v4-mapped IPv6 (::ffff:a.b.c.d) is refused with ECONNREFUSED, and no server sees a
//!   connection;
//! * a datagram to the metadata address or the host's ULA is refused (EPERM; or ECONNREFUSED),
//!   one to ::1 stays in the sandbox's own loopback (refused, or unanswered: as 127.0.0.1 in
//!   tests/net_on.rs), and none is echoed;
//! * a datagram to a public IPv6 address is echoed back, the reply coming from the destination
//!   address (recvfrom and a connected socket's getpeername);
//! * the first datagram of each of many sandboxes is echoed (none lost while sbx sets up its
//!   destination).
//!
//! Not claimed yet: `--allow '[::1]:PORT'` mapping a host port in over IPv6 (sbx maps only
//! 127.0.0.1). Root only (the lab makes veth pairs), and IPv6 on: otherwise each test says SKIP.

mod common;

use common::Ran;
use common::netlab::{
    HOST_IP6, HOST_PORT, HOST_PRIVATE, HOST_PRIVATE6, Lab, METADATA6, PUBLIC6, client_says,
};

const PORT: &str = "8080";
const ON: &[&str] = &["--net", "on"];

fn echoes(lab: &Lab) -> Vec<String> {
    lab.log()
        .into_iter()
        .filter(|l| l.starts_with("udp echo"))
        .collect()
}

#[test]
fn on_reaches_the_v6_internet_over_tcp_and_not_the_host() {
    let Some(lab) = Lab::start_v6("on_reaches_the_v6_internet_over_tcp_and_not_the_host") else {
        return;
    };
    assert_eq!(PORT, HOST_PORT.to_string());
    let mapped_lo = "::ffff:127.0.0.1".to_string();
    let mapped_priv = format!("::ffff:{HOST_PRIVATE}");
    // The refused destinations, each with the server that would answer it.
    let internal: [(&str, &str, &str); 6] = [
        ("::1", PORT, "host-loopback6"),
        (HOST_PRIVATE6, PORT, "host-private6"),
        (HOST_IP6, PORT, "host-public6"),
        (METADATA6, "80", "metadata6"),
        (&mapped_lo, PORT, "host-loopback"),
        (&mapped_priv, PORT, "host-private"),
    ];
    // Controls: without sbx the "host" reaches all of it over IPv6.
    assert_eq!(lab.bare_client(&["tcp6", PUBLIC6, "80"]), "OK public6");
    for (to, port, body) in internal {
        assert_eq!(
            lab.bare_client(&["tcp6", to, port]),
            format!("OK {body}"),
            "control [{to}]:{port}"
        );
    }
    let counts = |lab: &Lab| internal.map(|(_, _, body)| lab.connections(body));
    let before = counts(&lab);
    let public0 = lab.connections("public6");

    let (says, r) = lab.client(ON, &["tcp6", PUBLIC6, "80"]);
    assert_eq!(says, "OK public6", "{r:?}");
    assert_eq!(lab.connections("public6"), public0 + 1, "{:?}", lab.log());
    for (to, port, body) in internal {
        let (says, r) = lab.client(ON, &["tcp6", to, port]);
        assert_eq!(says, "ERR ECONNREFUSED", "[{to}]:{port} ({body}): {r:?}");
    }
    assert_eq!(counts(&lab), before, "{:?}", lab.log());
}

#[test]
fn v6_datagrams_to_the_host_and_metadata_are_refused() {
    let Some(lab) = Lab::start_v6("v6_datagrams_to_the_host_and_metadata_are_refused") else {
        return;
    };
    let internal = [METADATA6, "::1", HOST_PRIVATE6];
    // Controls: the echoes answer the host.
    for to in internal {
        assert_eq!(
            lab.bare_client(&["udp6", to, "7", "ping"]),
            "OK echo:ping",
            "control [{to}]:7"
        );
    }
    let n0 = echoes(&lab).len();
    for to in internal {
        let (says, r) = lab.client(ON, &["udp6", to, "7", "ping"]);
        // ::1 in the sandbox is its own loopback, where nothing listens.
        let own = to == "::1" && says == "ERR timeout";
        assert!(
            says == "ERR EPERM" || says == "ERR ECONNREFUSED" || own,
            "[{to}]:7: {r:?}"
        );
    }
    let after = echoes(&lab);
    assert_eq!(after.len(), n0, "echoed: {after:?}");
}

/// recvfrom on an unconnected AF_INET6 socket, then a connected one (connect, send, recv):
/// `OK <reply> <source> | <reply> <peer>`.
const PY_UDP6_FROM: &str = r#"
import socket, sys
to = (sys.argv[1], int(sys.argv[2]), 0, 0)
try:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(b"ping", to)
    data, src = s.recvfrom(100)
    c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    c.settimeout(5)
    c.connect(to)
    c.send(b"connected")
    print("OK", data.decode(), src[0], "|", c.recv(100).decode(), c.getpeername()[0])
except OSError as e:
    print("ERR", e.errno, e)
"#;

#[test]
fn v6_datagrams_reach_the_internet_from_its_own_address() {
    let Some(lab) = Lab::start_v6("v6_datagrams_reach_the_internet_from_its_own_address") else {
        return;
    };
    let want = format!("OK echo:ping {PUBLIC6} | echo:connected {PUBLIC6}");
    // Control: the lab's echo answers the host, from its address.
    let r = lab.run_bare(&["python3", "-c", PY_UDP6_FROM, PUBLIC6, "7"]);
    assert_eq!(client_says(&r), want, "control: {r:?}");
    let n0 = echoes(&lab).len();
    let (says, r) = lab.client(ON, &["udp6", PUBLIC6, "7", "ping"]);
    assert_eq!(says, "OK echo:ping", "{r:?}");
    let r = lab.run_sbx(&[
        "--net",
        "on",
        "--",
        "python3",
        "-c",
        PY_UDP6_FROM,
        PUBLIC6,
        "7",
    ]);
    assert_eq!(client_says(&r), want, "{r:?}");
    assert_eq!(echoes(&lab).len(), n0 + 3, "{:?}", lab.log());
}

/// One datagram with a 2 s wait for the echo: `OK` or `ERR timeout`.
const PY_UDP6_ONCE: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(b"first", (sys.argv[1], 7, 0, 0))
try:
    s.recvfrom(100)
    print("OK")
except socket.timeout:
    print("ERR timeout")
"#;

/// The first datagram of a sandbox to a new IPv6 destination waits for sbx to add that address
/// inside and bind a socket to it; the kernel routes to a new IPv6 address a moment after it
/// acknowledges it, and a datagram sent in that moment was lost (2–3 % of first datagrams,
/// seen as this file's other datagram test failing about once in 30 runs). Many sandboxes,
/// each sending its first datagram: every one is echoed.
#[test]
fn the_first_v6_datagram_of_every_sandbox_is_echoed() {
    let Some(lab) = Lab::start_v6("the_first_v6_datagram_of_every_sandbox_is_echoed") else {
        return;
    };
    let runs: usize = std::env::var("SBX_TEST_FIRST_DATAGRAMS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let r = lab.run_bare(&["python3", "-c", PY_UDP6_ONCE, PUBLIC6]);
    assert_eq!(client_says(&r), "OK", "control: {r:?}");
    let lost: Vec<Ran> = (0..runs)
        .map(|_| lab.run_sbx(&["--net", "on", "--", "python3", "-c", PY_UDP6_ONCE, PUBLIC6]))
        .filter(|r| client_says(r) != "OK")
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {runs} lost: {:?}",
        lost.len(),
        lost.first()
    );
}
