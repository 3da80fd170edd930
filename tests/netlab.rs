//! The network lab itself (tests/common/netlab.rs), proved before any network mode is judged
//! in it: from its "host" namespace A without sbx, every server of the lab answers with its
//! own body, the lab's DNS answers its table and logs every question, UDP echoes, a closed
//! port is refused and an address beyond the lab unreachable; the lab never changes the test
//! process's own network or /etc/resolv.conf; sbx runs in A as the test uid, `--net host`
//! reaches the lab (by name too, through A's resolv.conf) and `--net none` does not; and a
//! dropped lab leaves no process and no file. Root only: without root each test says SKIP.

mod common;

use common::netlab::{
    DNS_TABLE, HOST_PORT, HOST_PRIVATE, Lab, METADATA, PUBLIC, PUBLIC2, client_says, py_client,
};

fn url(addr: &str) -> String {
    format!("http://{addr}/")
}

fn host_url(addr: &str) -> String {
    format!("http://{addr}:{HOST_PORT}/")
}

fn curl(addr_url: &str) -> Vec<&str> {
    vec!["curl", "-sS", "--max-time", "10", addr_url]
}

#[test]
fn every_server_answers_the_host_with_its_own_body() {
    let Some(lab) = Lab::start("every_server_answers_the_host_with_its_own_body") else {
        return;
    };
    let cases = [
        (url(PUBLIC), "public"),
        (url(PUBLIC2), "public2"),
        (url(METADATA), "metadata"),
        (host_url("127.0.0.1"), "host-loopback"),
        (host_url(HOST_PRIVATE), "host-private"),
    ];
    for (u, body) in &cases {
        let r = lab.run_bare(&curl(u));
        assert_eq!((r.code, r.stdout.as_str()), (0, *body), "{u}: {r:?}");
        assert_eq!(lab.connections(body), 1, "{u}: {:?}", lab.log());
    }

    // The raw client: the same body, a closed port refused, a destination beyond the lab
    // unreachable (B answers at once, no timeout), UDP echoed.
    let r = lab.run_bare(&py_client(&["tcp", PUBLIC, "80"]));
    assert_eq!(client_says(&r), "OK public", "{r:?}");
    let r = lab.run_bare(&py_client(&["tcp", PUBLIC, "81"]));
    assert_eq!(client_says(&r), "ERR ECONNREFUSED", "{r:?}");
    let r = lab.run_bare(&py_client(&["tcp", "192.0.2.1", "80"]));
    assert_eq!(client_says(&r), "ERR ENETUNREACH", "{r:?}");
    let r = lab.run_bare(&py_client(&["udp", PUBLIC, "7", "ping"]));
    assert_eq!(client_says(&r), "OK echo:ping", "{r:?}");
    assert_eq!(lab.connections("public"), 2, "{:?}", lab.log());
    assert!(
        lab.log().iter().any(|l| l.starts_with("udp echo ")),
        "{:?}",
        lab.log()
    );
}

/// A DNS query for `name` (type A) over TCP to the lab's nameserver, by hand: prints the
/// answer's rcode and address count.
const PY_DNS_TCP: &str = r#"
import socket, struct, sys
name = sys.argv[1]
q = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
q += struct.pack("!HH", 1, 1)
s = socket.create_connection((sys.argv[2], 53), 5)
s.sendall(struct.pack("!H", len(q)) + q)
n = struct.unpack("!H", s.recv(2))[0]
r = b""
while len(r) < n:
    r += s.recv(n - len(r))
print("rcode", r[3] & 15, "answers", struct.unpack("!H", r[6:8])[0], "addr", ".".join(str(b) for b in r[-4:]))
"#;

#[test]
fn the_lab_dns_answers_its_table_and_logs_every_question() {
    let Some(lab) = Lab::start("the_lab_dns_answers_its_table_and_logs_every_question") else {
        return;
    };
    // Through the host's resolver (glibc, A's /etc/resolv.conf), and by hand over TCP.
    let r = lab.run_bare(&["getent", "ahostsv4", "allowed.test"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with(&format!("{PUBLIC} ")), "{r:?}");
    for (name, addr) in DNS_TABLE {
        let r = lab.run_bare(&py_client(&["resolve", name]));
        assert_eq!(client_says(&r), format!("OK {addr}"), "{name}: {r:?}");
    }
    let r = lab.run_bare(&py_client(&["resolve", "nope.test"]));
    assert_eq!(client_says(&r), "ERR EAI_NONAME", "{r:?}");
    let r = lab.run_bare(&["python3", "-c", PY_DNS_TCP, "other.test", PUBLIC]);
    assert_eq!(
        r.stdout.trim(),
        format!("rcode 0 answers 1 addr {PUBLIC2}"),
        "{r:?}"
    );
    let r = lab.run_bare(&["python3", "-c", PY_DNS_TCP, "nope2.test", PUBLIC]);
    assert!(r.stdout.starts_with("rcode 3 answers 0"), "{r:?}");

    let asked = lab.dns_queries();
    for name in [
        "allowed.test",
        "other.test",
        "rebind.test",
        "meta.test",
        "nope.test",
    ] {
        assert!(
            asked.iter().any(|n| n == name),
            "{name} not logged: {asked:?}"
        );
    }
    assert!(
        lab.log()
            .iter()
            .any(|l| l.starts_with("dns nope2.test 1 tcp ")),
        "the TCP question was not logged: {:?}",
        lab.log()
    );
    // The control: a name nobody asked is not in the log.
    assert!(!asked.iter().any(|n| n == "never.test"), "{asked:?}");
}

#[test]
fn the_lab_leaves_the_test_process_network_and_files_alone() {
    let before = std::fs::read("/etc/resolv.conf").ok();
    let Some(lab) = Lab::start("the_lab_leaves_the_test_process_network_and_files_alone") else {
        return;
    };
    // A sees the lab's resolv.conf; the test process still sees its own.
    let r = lab.run_bare(&["cat", "/etc/resolv.conf"]);
    assert_eq!(r.stdout, format!("nameserver {PUBLIC}\n"), "{r:?}");
    assert_eq!(std::fs::read("/etc/resolv.conf").ok(), before);
    // None of the lab's addresses is in the test process's network namespace.
    let here = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    for addr in ["203.0.113.", "198.51.100.7", METADATA, HOST_PRIVATE] {
        assert!(
            !here.contains(addr),
            "{addr} is in the test's own namespace"
        );
    }
    let r = lab.run_bare(&["cat", "/proc/net/fib_trie"]);
    assert!(r.stdout.contains("203.0.113.1"), "control: A has it: {r:?}");
}

#[test]
fn sbx_runs_in_the_lab_and_net_host_reaches_it_but_none_does_not() {
    let Some(lab) = Lab::start("sbx_runs_in_the_lab_and_net_host_reaches_it_but_none_does_not")
    else {
        return;
    };
    let mut args = vec!["--net", "host", "--"];
    args.extend(curl("http://allowed.test/"));
    let r = lab.run_sbx(&args);
    assert_eq!((r.code, r.stdout.as_str()), (0, "public"), "{r:?}");
    assert!(
        lab.dns_queries().iter().any(|n| n == "allowed.test"),
        "sbx --net host resolved through A's resolv.conf: {:?}",
        lab.log()
    );
    let mut args = vec!["--net", "host", "--"];
    args.extend(py_client(&["tcp", METADATA, "80"]));
    let r = lab.run_sbx(&args);
    assert_eq!(client_says(&r), "OK metadata", "{r:?}");
    let mut args = vec!["--net", "host", "--"];
    args.extend(py_client(&["tcp", PUBLIC, "81"]));
    let r = lab.run_sbx(&args);
    assert_eq!(client_says(&r), "ERR ECONNREFUSED", "{r:?}");
    // sbx ran as the test uid.
    let r = lab.run_sbx(&["--net", "host", "--", "id", "-u"]);
    assert_eq!(r.stdout.trim(), common::test_uid().to_string(), "{r:?}");
    let public_before = lab.connections("public");

    // --net none: no route to the lab, and no connection reaches it.
    let u = url(PUBLIC);
    let mut args = vec!["--net", "none", "--"];
    args.extend(curl(&u));
    let r = lab.run_sbx(&args);
    assert_eq!(r.code, 7, "curl: could not connect: {r:?}");
    let mut args = vec!["--net", "none", "--"];
    args.extend(py_client(&["tcp", PUBLIC, "80"]));
    let r = lab.run_sbx(&args);
    assert_eq!(client_says(&r), "ERR ENETUNREACH", "{r:?}");
    let mut args = vec!["--net", "none", "--"];
    args.extend(py_client(&["udp", PUBLIC, "7", "ping"]));
    let r = lab.run_sbx(&args);
    assert_eq!(client_says(&r), "ERR ENETUNREACH", "{r:?}");
    assert_eq!(lab.connections("public"), public_before, "{:?}", lab.log());
    assert!(
        !lab.log().iter().any(|l| l.starts_with("udp ")),
        "{:?}",
        lab.log()
    );
}

fn run_netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_dropped_lab_leaves_no_process_and_no_file() {
    let netns_before = run_netns();
    let Some(lab) = Lab::start("a_dropped_lab_leaves_no_process_and_no_file") else {
        return;
    };
    let dir = lab.dir().to_path_buf();
    let members: Vec<(u32, std::path::PathBuf)> = lab
        .pids()
        .into_iter()
        .map(|p| (p, std::fs::read_link(format!("/proc/{p}/ns/net")).unwrap()))
        .collect();
    assert!(dir.exists() && members.len() == 4, "{members:?}");
    assert_ne!(members[0].1, members[1].1, "A and B share a namespace");
    drop(lab);
    assert!(!dir.exists(), "{} is left", dir.display());
    // Each pid is gone (not even a zombie), or reused by a process outside the lab.
    for (p, ns) in &members {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat"));
        let now = std::fs::read_link(format!("/proc/{p}/ns/net")).ok();
        assert!(
            stat.is_err() || now.is_some_and(|n| n != *ns),
            "lab process {p} survived: {stat:?}"
        );
    }
    assert_eq!(run_netns(), netns_before, "/run/netns changed");
}
