//! Namespaces: every namespace the profile asks for is new (checked inside and against the
//! host), ids map to the caller, the PID layout, the hostname, the network and IPC isolation.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Running, children_of, line_reader, read_until, run_keep, wait_exit};

const KINDS: [&str; 7] = ["pid", "net", "ipc", "uts", "cgroup", "mnt", "user"];

const PRINT_NS: &str = "for n in pid net ipc uts cgroup mnt user; do \
                        printf '%s ' \"$n\"; readlink \"/proc/self/ns/$n\"; done";

/// The namespace links of a process in a sandbox started with `args`, by kind.
fn inside_ns(args: &[&str]) -> BTreeMap<String, String> {
    let r = common::sh(args, PRINT_NS);
    assert_eq!(r.code, 0, "{r:?}");
    let map: BTreeMap<String, String> = r
        .stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    for kind in KINDS {
        let v = map
            .get(kind)
            .unwrap_or_else(|| panic!("no {kind} line: {r:?}"));
        assert!(v.starts_with(&format!("{kind}:[")), "{kind}: {v:?}; {r:?}");
    }
    map
}

/// The `NSpid` line of a host process: its pid in each nested PID namespace.
fn nspid(pid: i32) -> Vec<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .unwrap_or_else(|| panic!("no NSpid in /proc/{pid}/status"))
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Interface names listed in a `/proc/net/dev` text.
fn interfaces(net_dev: &str) -> BTreeSet<String> {
    net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .collect()
}

fn python() -> Option<&'static str> {
    let p = "/usr/bin/python3";
    Path::new(p).exists().then_some(p)
}

#[test]
fn every_namespace_is_new() {
    let inside = inside_ns(&[]);
    for kind in KINDS {
        let host = common::host_ns(kind);
        assert_ne!(inside[kind], host, "{kind} namespace is the host's");
    }
}

#[test]
fn net_host_shares_only_the_network_namespace() {
    let inside = inside_ns(&["--net", "host"]);
    assert_eq!(inside["net"], common::host_ns("net"));
    for kind in KINDS.iter().filter(|k| **k != "net") {
        assert_ne!(
            inside[*kind],
            common::host_ns(kind),
            "{kind} namespace is the host's"
        );
    }
    // The sandbox sees the host's interfaces.
    let r = common::sbx(["--net", "host", "--", "cat", "/proc/net/dev"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    let host = std::fs::read_to_string("/proc/net/dev").unwrap();
    assert_eq!(interfaces(&r.stdout), interfaces(&host), "{r:?}");
}

#[test]
fn ids_inside_are_the_callers() {
    let uid = common::test_uid();
    let gid = common::test_gid();
    let s = common::sbx([
        "--",
        "sh",
        "-c",
        "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; \
         echo x > made-inside; stat -c %u:%g made-inside",
    ]);
    let (r, work) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    let (u, g) = (uid.to_string(), gid.to_string());
    let want = [
        vec![u.clone()],
        vec![g.clone()],
        vec![u.clone(), u.clone(), "1".into()],
        vec![g.clone(), g.clone(), "1".into()],
        vec!["deny".into()],
        vec![format!("{uid}:{gid}")],
    ];
    let got: Vec<Vec<String>> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(got, want, "{r:?}");
    // On the host, the file belongs to the caller.
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(work.path().join("made-inside")).unwrap();
    assert_eq!((md.uid(), md.gid()), (uid, gid));
}

#[test]
fn map_root_is_root_only_inside() {
    let uid = common::test_uid();
    let gid = common::test_gid();
    let s = common::sbx([
        "--map-root",
        "--",
        "sh",
        "-c",
        "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; \
         echo x > made-as-root; stat -c %u:%g made-as-root",
    ]);
    let (r, work) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    let got: Vec<Vec<String>> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    let want: Vec<Vec<String>> = [
        vec!["0".to_string()],
        vec!["0".to_string()],
        vec!["0".to_string(), uid.to_string(), "1".to_string()],
        vec!["0".to_string(), gid.to_string(), "1".to_string()],
        vec!["deny".to_string()],
        vec!["0:0".to_string()],
    ]
    .into();
    assert_eq!(got, want, "{r:?}");
    // Root inside is still the caller on the host.
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(work.path().join("made-as-root")).unwrap();
    assert_eq!((md.uid(), md.gid()), (uid, gid));
}

/// `pid comm` pairs from `ps -e -o pid=,comm=` output.
fn ps_list(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let pid = it.next()?.parse().ok()?;
            Some((pid, it.next()?.to_string()))
        })
        .collect()
}

#[test]
fn command_is_pid_2_under_sbx_init_and_sees_only_the_sandbox() {
    // The /proc loop uses only builtins: at that point the sandbox holds init and the shell.
    let r = common::sh(
        &[],
        "echo $$; cat /proc/1/comm; \
         for p in /proc/[0-9]*; do printf '%s ' \"${p#/proc/}\"; done; echo; \
         echo ---; ps -e -o pid=,comm=; true",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let (head, ps) = r.stdout.split_once("---\n").expect("marker");
    let head: Vec<&str> = head.lines().collect();
    assert_eq!(head.len(), 3, "{r:?}");
    assert_eq!(head[0], "2", "the command's pid; {r:?}");
    assert_eq!(head[1], "sbx", "PID 1 is sbx's init; {r:?}");
    let pids: Vec<&str> = head[2].split_whitespace().collect();
    assert_eq!(
        pids,
        ["1", "2"],
        "/proc lists only init and the command; {r:?}"
    );
    let procs = ps_list(ps);
    assert_eq!(procs.len(), 3, "ps -e shows init, sh and ps only; {r:?}");
    assert_eq!(procs[0], (1, "sbx".to_string()), "{r:?}");
    assert_eq!(procs[1], (2, "sh".to_string()), "{r:?}");
    assert_eq!(procs[2].1, "ps", "{r:?}");
}

#[test]
fn namespaces_and_pid_layout_seen_from_the_host() {
    let script = format!("{PRINT_NS}; echo ready; read x; exit 0");
    let mut s = common::sbx(["--", "sh", "-c", &script]);
    s.cmd.stdin(Stdio::piped());
    let (child, _work) = s.spawn();
    let mut run = Running::new(child);
    let rx = line_reader(run.stdout.take().unwrap());
    let before = read_until(&rx, "ready", Duration::from_secs(10));
    let inside: BTreeMap<String, String> = before
        .iter()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(inside.len(), KINDS.len(), "{before:?}");

    let sbx_pid = run.id() as i32;
    let init = children_of(sbx_pid);
    assert_eq!(
        init.len(),
        1,
        "sbx has one child, the sandbox's init: {init:?}"
    );
    let init = init[0];
    assert_eq!(
        nspid(init),
        [init, 1],
        "init is PID 1 of a nested PID namespace"
    );
    let payload = children_of(init);
    assert_eq!(
        payload.len(),
        1,
        "init has one child, the command: {payload:?}"
    );
    let payload = payload[0];
    assert_eq!(nspid(payload), [payload, 2], "the command is PID 2");
    // What the host sees of both processes matches what the command saw, and is not the host's.
    for pid in [init, payload] {
        for kind in KINDS {
            let ns = match std::fs::read_link(format!("/proc/{pid}/ns/{kind}")) {
                Ok(ns) => ns.display().to_string(),
                // Init is non-dumpable: without CAP_SYS_PTRACE its links are closed to us.
                Err(e) if pid == init && !common::is_root() => {
                    common::note_skip(
                        "namespaces_and_pid_layout_seen_from_the_host",
                        &format!("init's /proc/{pid}/ns/{kind}: {e}"),
                    );
                    continue;
                }
                Err(e) => panic!("/proc/{pid}/ns/{kind}: {e}"),
            };
            assert_eq!(ns, inside[kind], "pid {pid}, {kind}");
            assert_ne!(
                ns,
                common::host_ns(kind),
                "pid {pid} is in the host's {kind} namespace"
            );
        }
    }

    drop(run.stdin.take()); // `read` sees EOF and the shell exits
    let st = wait_exit(&mut run, Duration::from_secs(10));
    assert_eq!(st.code(), Some(0));
}

#[test]
fn as_pid_1_makes_the_command_pid_1() {
    let r = common::sh(
        &["--as-pid-1"],
        "echo $$; for p in /proc/[0-9]*; do printf '%s ' \"${p#/proc/}\"; done; echo; \
         echo ---; ps -e -o pid=,comm=; true",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let (head, ps) = r.stdout.split_once("---\n").expect("marker");
    let head: Vec<&str> = head.lines().collect();
    assert_eq!(head.len(), 2, "{r:?}");
    assert_eq!(head[0], "1", "the command's pid; {r:?}");
    let pids: Vec<&str> = head[1].split_whitespace().collect();
    assert_eq!(pids, ["1"], "/proc lists only the command; {r:?}");
    assert_eq!(
        ps_list(ps),
        [(1, "sh".to_string()), (2, "ps".to_string())],
        "{r:?}"
    );
}

#[test]
fn hostname_is_sbx_by_default_and_settable() {
    let host_before = nix::unistd::gethostname().unwrap();
    let r = common::sh(&[], "cat /proc/sys/kernel/hostname; hostname");
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines, ["sbx", "sbx"], "{r:?}");

    let r = common::sh(&["--hostname", "foo"], "cat /proc/sys/kernel/hostname");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim_end(), "foo", "{r:?}");

    // The host keeps its name.
    assert_eq!(nix::unistd::gethostname().unwrap(), host_before);
    assert_ne!(host_before.to_str(), Some("foo"));
}

#[test]
fn only_lo_exists_and_it_is_up() {
    let r = common::sbx(["--", "cat", "/proc/net/dev"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    let names: Vec<String> = interfaces(&r.stdout).into_iter().collect();
    assert_eq!(names, ["lo"], "{r:?}");

    if Path::new("/usr/sbin/ip").exists() {
        let r = common::sbx(["--", "/usr/sbin/ip", "-o", "link", "show"]).run();
        assert_eq!(r.code, 0, "{r:?}");
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "only lo: {r:?}");
        let mut parts = lines[0].split(':');
        parts.next();
        assert_eq!(parts.next().map(str::trim), Some("lo"), "{r:?}");
        let flags = lines[0]
            .split_once('<')
            .and_then(|(_, f)| f.split_once('>'))
            .map(|(f, _)| f.split(',').collect::<Vec<_>>())
            .unwrap_or_default();
        assert!(flags.contains(&"UP"), "lo is not UP: {r:?}");
    } else {
        common::note_skip(
            "only_lo_exists_and_it_is_up",
            "no /usr/sbin/ip for the UP flag",
        );
    }

    // Loopback carries traffic: a listener and a client inside talk over 127.0.0.1.
    let Some(py) = python() else {
        common::note_skip("only_lo_exists_and_it_is_up", "no /usr/bin/python3");
        return;
    };
    let script = "import socket\n\
                  srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1)\n\
                  c = socket.create_connection(('127.0.0.1', srv.getsockname()[1]), timeout=3)\n\
                  a, _ = srv.accept(); c.sendall(b'ping-over-lo')\n\
                  print(a.recv(64).decode())\n";
    let r = common::sbx(["--", py, "-c", script]).run();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim_end(), "ping-over-lo", "{r:?}");
}

const CONNECT: &str = "import socket, sys\n\
                       s = socket.socket(); s.settimeout(3)\n\
                       try:\n    \
                           s.connect(('127.0.0.1', int(sys.argv[1])))\n    \
                           s.sendall(sys.argv[2].encode()); s.close(); print('connected')\n\
                       except ConnectionRefusedError:\n    print('refused')\n\
                       except OSError as e:\n    print('error', e.errno, e)\n";

#[test]
fn host_loopback_is_unreachable_unless_net_host() {
    let Some(py) = python() else {
        common::note_skip(
            "host_loopback_is_unreachable_unless_net_host",
            "no /usr/bin/python3",
        );
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();

    // Default: 127.0.0.1 is the sandbox's own lo, where nothing listens on that port.
    let token = format!("from-default-{}", std::process::id());
    let r = common::sbx(["--", py, "-c", CONNECT, &port, &token]).run();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim_end(), "refused", "{r:?}");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the host listener got a connection from the sandbox: {other:?}"),
    }

    // --net host: the host's loopback, and the host reads what the sandbox sent.
    let token = format!("from-net-host-{}", std::process::id());
    let r = common::sbx(["--net", "host", "--", py, "-c", CONNECT, &port, &token]).run();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim_end(), "connected", "{r:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no connection reached the host");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).unwrap();
    assert_eq!(got, token);
}

/// A SysV shared memory segment on the host, removed when dropped.
struct HostShm {
    id: libc::c_int,
    key: libc::key_t,
}

impl HostShm {
    fn new() -> HostShm {
        // A key unlikely to be in use: a fixed prefix and our pid.
        let key = (0x5b70_0000 | (std::process::id() & 0xf_ffff)) as libc::key_t;
        // SAFETY: shmget takes plain values.
        let id = unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o644) };
        assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
        HostShm { id, key }
    }
}

impl Drop for HostShm {
    fn drop(&mut self) {
        // SAFETY: removing our own segment.
        unsafe { libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

/// (key, shmid) pairs listed in a `/proc/sysvipc/shm` text.
fn shm_segments(text: &str) -> Vec<(i64, i64)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn host_sysv_shared_memory_is_not_visible() {
    let shm = HostShm::new();
    let host = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    assert!(
        shm_segments(&host).contains(&(shm.key as i64, shm.id as i64)),
        "the host lists its segment: {host}"
    );
    let key_hex = format!("0x{:08x}", shm.key);

    let r = common::sh(&[], "cat /proc/sysvipc/shm; echo ---; ipcs -m; true");
    assert_eq!(r.code, 0, "{r:?}");
    let (proc_list, ipcs) = r.stdout.split_once("---\n").expect("marker");
    assert!(
        proc_list.starts_with("       key"),
        "a /proc/sysvipc/shm header: {r:?}"
    );
    assert_eq!(
        shm_segments(proc_list),
        [],
        "segments visible inside: {r:?}"
    );
    if Path::new("/usr/bin/ipcs").exists() {
        assert!(ipcs.contains("Shared Memory"), "{r:?}");
        assert!(
            !ipcs.contains(&key_hex),
            "the host's segment {key_hex} is visible: {r:?}"
        );
    }

    // Control: a segment made inside is listed inside, so the empty list above means something.
    if Path::new("/usr/bin/ipcmk").exists() {
        let r = common::sh(&[], "ipcmk -M 4096 >/dev/null && cat /proc/sysvipc/shm");
        assert_eq!(r.code, 0, "{r:?}");
        let inside = shm_segments(&r.stdout);
        assert_eq!(inside.len(), 1, "{r:?}");
        assert_ne!(inside[0].0, shm.key as i64, "{r:?}");
    } else {
        common::note_skip(
            "host_sysv_shared_memory_is_not_visible",
            "no ipcmk for the control",
        );
    }
    // The host's segment is untouched.
    let host = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    assert!(shm_segments(&host).contains(&(shm.key as i64, shm.id as i64)));
}

/// Init writes the user namespace's limits through a proc of the sandbox's own (see
/// `sandbox::userns`), never where a bind takes its source from the host's /proc: the bind
/// shows the host's process 1, and the sandbox's own /proc its own.
#[test]
fn a_bind_from_the_hosts_proc_shows_the_host() {
    let host = std::fs::read_to_string("/proc/1/comm").unwrap();
    let r = common::sbx([
        "--ro-bind",
        "/proc/1/comm:/etc/hostname",
        "--",
        "sh",
        "-c",
        "cat /etc/hostname /proc/1/comm",
    ])
    .run();
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some(host.trim_end()), "{r:?}");
    assert_ne!(lines.get(1).copied(), Some(host.trim_end()), "{r:?}");
}
