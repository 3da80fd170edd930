//! A network lab for the tests of sbx's network modes, built as a process tree: two network
//! namespaces of its own joined by a veth pair, servers in both, and nothing outside them
//! touched. Namespace A stands for "the host" (sbx runs there, as the test uid); peer B for
//! "the internet" and a cloud metadata server:
//!
//! * A: lo; `v0` = 203.0.113.1/24 and 10.77.0.1/24 (the host's own private address); routes to
//!   169.254.169.254 and 198.51.100.7 via B, and a default route via B (B answers other
//!   destinations with "network unreachable"); its own /etc/resolv.conf (bound over the host's
//!   in A's mount namespace) naming `nameserver 203.0.113.10`. Servers: 127.0.0.1:PORT
//!   ("host-loopback") and 10.77.0.1:PORT ("host-private"), PORT = [`HOST_PORT`].
//! * B: lo with 169.254.169.254/32 and 198.51.100.7/32; `v1` = 203.0.113.10/24. Servers: HTTP on
//!   203.0.113.10:80 ("public"), 198.51.100.7:80 ("public2"), 169.254.169.254:80 ("metadata");
//!   UDP echo on 203.0.113.10:7 (answers "echo:" + the datagram); DNS on 203.0.113.10:53, UDP
//!   and TCP, from [`DNS_TABLE`] (A records; other names NXDOMAIN).
//!
//! IPv6, when the host has it (the IPv4 part above is the same either way; [`Lab::start_v6`]
//! skips a test on a host without IPv6), every address added `nodad` (usable at once):
//!
//! * A: `v0` = 2001:db8:1::1/64 ([`HOST_IP6`], public-looking) and fd00:77::1/64
//!   ([`HOST_PRIVATE6`], a ULA); routes to fd00:ec2::254 and default via B. Servers: HTTP on
//!   [::1]:PORT ("host-loopback6"), [fd00:77::1]:PORT ("host-private6"), [2001:db8:1::1]:PORT
//!   ("host-public6"); UDP echo on [::1]:7 and [fd00:77::1]:7.
//! * B: `v1` = 2001:db8:1::10/64 ([`PUBLIC6`]); lo with fd00:ec2::254/128 ([`METADATA6`], AWS's
//!   IPv6 metadata address). Servers: HTTP on [2001:db8:1::10]:80 ("public6") and
//!   [fd00:ec2::254]:80 ("metadata6"); UDP echo on [2001:db8:1::10]:7 and [fd00:ec2::254]:7.
//!
//! The HTTP servers answer any connection (an HTTP request or not) with their body. Every
//! connection, datagram and DNS question is logged ([`Lab::log`], [`Lab::dns_queries`],
//! [`Lab::connections`]), so a test can show that something never left the sandbox. IPv6
//! addresses are logged as `[ADDR]:PORT`.
//!
//! A is `unshare --net --mount` (a process, not `ip netns add`: nothing in /run/netns), B
//! `unshare --net`; commands enter A with `nsenter` and drop to the test uid with `setpriv`.
//! Each lab has its own namespaces, so tests using labs run in parallel. Everything in the lab
//! reads its stdin from the [`Lab`], so it ends when the lab drops or the test process dies;
//! the drop also kills and reaps it, and removes the lab's directory.
//!
//! [`PY_CLIENT`] is a raw-socket client (it ignores proxies) printing `OK ...` or
//! `ERR <errno name>`, for the sandbox's side.

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{NOBODY, Ran, Sbx, is_root};

pub const HOST_IP: &str = "203.0.113.1";
/// The host's own private address (in A).
pub const HOST_PRIVATE: &str = "10.77.0.1";
/// The "internet" peer, also the lab's nameserver.
pub const PUBLIC: &str = "203.0.113.10";
/// A second public address, in B, routed from A via [`PUBLIC`].
pub const PUBLIC2: &str = "198.51.100.7";
pub const METADATA: &str = "169.254.169.254";
/// The "internet" peer's IPv6 address (public: 2001:db8::/32 is not internal to sbx).
pub const PUBLIC6: &str = "2001:db8:1::10";
/// The host's own public-looking IPv6 address on the lab's link (in A).
pub const HOST_IP6: &str = "2001:db8:1::1";
/// The host's own private IPv6 address, a ULA (in A).
pub const HOST_PRIVATE6: &str = "fd00:77::1";
/// AWS's IPv6 metadata address (a ULA), in B, routed from A via [`PUBLIC6`].
pub const METADATA6: &str = "fd00:ec2::254";
/// The port of the host's own services (127.0.0.1 and [`HOST_PRIVATE`]), in A.
pub const HOST_PORT: u16 = 8080;
/// The names the lab's DNS answers (A records); every other name is NXDOMAIN.
pub const DNS_TABLE: &[(&str, &str)] = &[
    ("allowed.test", PUBLIC),
    ("other.test", PUBLIC2),
    ("rebind.test", "127.0.0.1"),
    ("meta.test", METADATA),
];

const SERVERS: &str = include_str!("netlab_servers.py");
const PYTHON: &str = "/usr/bin/python3";
const TOOLS: &[&str] = &[
    "/usr/bin/unshare",
    "/usr/bin/nsenter",
    "/usr/bin/setpriv",
    PYTHON,
];

/// How long a command run in the lab may take before it is killed (and the test fails).
const LIMIT: Duration = Duration::from_secs(60);

/// A raw-socket client for inside the sandbox (run as `python3 -c PY_CLIENT ARGS...`; see
/// [`py_client`]). It prints one line:
///
/// * `tcp HOST PORT`: connects, sends an HTTP GET, prints `OK <body>`;
/// * `udp HOST PORT MSG`: sends MSG in one datagram (sendto), prints `OK <reply>`;
/// * `resolve NAME`: getaddrinfo (IPv4), prints `OK <addresses, space-separated>`;
/// * `tcp6 HOST PORT`, `udp6 HOST PORT MSG`: as `tcp` and `udp`, from an AF_INET6 socket
///   (HOST an IPv6 address, without brackets);
///
/// or `ERR <errno name>` (`ECONNREFUSED`, `ENETUNREACH`, `EAI_NONAME`, `timeout`, ...).
/// Timeouts are 5 seconds.
pub const PY_CLIENT: &str = r#"
import errno, socket, sys
op = sys.argv[1]
def name(e):
    if isinstance(e, socket.timeout):
        return "timeout"
    if isinstance(e, socket.gaierror):
        for k in dir(socket):
            if k.startswith("EAI_") and getattr(socket, k) == e.errno:
                return k
        return "EAI_%s" % e.errno
    return errno.errorcode.get(e.errno, str(e.errno))
try:
    if op in ("tcp", "tcp6"):
        if op == "tcp":
            s = socket.create_connection((sys.argv[2], int(sys.argv[3])), 5)
        else:
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect((sys.argv[2], int(sys.argv[3]), 0, 0))
        s.sendall(b"GET / HTTP/1.0\r\nHost: %s\r\n\r\n" % sys.argv[2].encode())
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        print("OK", data.split(b"\r\n\r\n", 1)[-1].decode().strip())
    elif op in ("udp", "udp6"):
        if op == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            to = (sys.argv[2], int(sys.argv[3]))
        else:
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            to = (sys.argv[2], int(sys.argv[3]), 0, 0)
        s.settimeout(5)
        s.sendto(sys.argv[4].encode(), to)
        print("OK", s.recvfrom(65535)[0].decode())
    elif op == "resolve":
        infos = socket.getaddrinfo(sys.argv[2], None, socket.AF_INET, socket.SOCK_STREAM)
        print("OK", " ".join(sorted({i[4][0] for i in infos})))
    else:
        sys.exit("unknown op %r" % op)
except OSError as e:
    print("ERR", name(e))
"#;

/// `python3 -c PY_CLIENT ARGS...`, to append after `--` in an sbx command (or run bare).
pub fn py_client<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["python3", "-c", PY_CLIENT];
    v.extend_from_slice(args);
    v
}

/// The `OK ...` / `ERR ...` line [`PY_CLIENT`] printed (the last such line of stdout).
pub fn client_says(r: &Ran) -> &str {
    r.stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("OK") || l.starts_with("ERR"))
        .unwrap_or_else(|| panic!("the client printed no OK/ERR line: {r:?}"))
}

/// A process of the lab, killed and reaped on drop. Its stdin is a pipe from the lab: when it
/// closes (the lab drops or the test process dies) the process ends by itself.
struct Member {
    child: Child,
    _stdin: Option<ChildStdin>,
}

impl Member {
    fn spawn(mut cmd: Command, what: &str) -> Result<Member, String> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {what}: {e}"))?;
        let stdin = child.stdin.take();
        Ok(Member {
            child,
            _stdin: stdin,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // Our own child, not yet reaped: its pid is still its own.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running lab (see the module doc). Dropping it ends every process of the lab, which ends
/// its namespaces (the veth pair with them), and removes its directory.
pub struct Lab {
    // Dropped in order: the servers, then the namespaces' holders, then the directory.
    servers: Vec<Member>,
    a: Member,
    b: Member,
    dir: tempfile::TempDir,
    v6: bool,
}

/// `ip` (or anything) as root in a namespace of process `pid`.
fn enter(pid: u32, mount: bool) -> Command {
    let mut c = Command::new("/usr/bin/nsenter");
    c.arg(format!("--net=/proc/{pid}/ns/net"));
    if mount {
        c.arg(format!("--mount=/proc/{pid}/ns/mnt"));
    }
    c.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
    c
}

fn check(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

/// Runs `sh -c SCRIPT` as root in namespace(s) of `pid`.
fn sh_in(pid: u32, mount: bool, script: &str, what: &str) -> Result<(), String> {
    let mut c = enter(pid, mount);
    c.args(["--", "/bin/sh", "-ec", script]);
    check(c, what)
}

const SETUP_A: &str = "
ip link set lo up
ip link set v0 up
ip addr add 203.0.113.1/24 dev v0
ip addr add 10.77.0.1/24 dev v0
ip route add 169.254.169.254/32 via 203.0.113.10
ip route add 198.51.100.7/32 via 203.0.113.10
ip route add default via 203.0.113.10
";

// Forwarding on, with no route beyond the lab: B answers a destination it does not have with
// ICMP "network unreachable" (fast), instead of dropping it (a timeout).
const SETUP_B: &str = "
ip link set lo up
ip link set v1 up
ip addr add 203.0.113.10/24 dev v1
ip addr add 169.254.169.254/32 dev lo
ip addr add 198.51.100.7/32 dev lo
echo 1 > /proc/sys/net/ipv4/ip_forward
";

// IPv6 on in a namespace, before its links come up (so lo gets ::1), and no duplicate address
// detection on the lab's link (its link-local addresses usable at once too). `$1` is the veth.
const ENABLE_V6: &str = "
for c in all default lo \"$1\"; do
    echo 0 > /proc/sys/net/ipv6/conf/$c/disable_ipv6
done
echo 0 > /proc/sys/net/ipv6/conf/\"$1\"/accept_dad
";

const SETUP_A6: &str = "
ip -6 addr add 2001:db8:1::1/64 dev v0 nodad
ip -6 addr add fd00:77::1/64 dev v0 nodad
ip -6 route add fd00:ec2::254/128 via 2001:db8:1::10
ip -6 route add default via 2001:db8:1::10
";

// As for IPv4: B forwards, with no route beyond the lab (unreachable, not a timeout). A
// answers the metadata address from its ULA (the longest common prefix): B routes it back.
const SETUP_B6: &str = "
ip -6 addr add 2001:db8:1::10/64 dev v1 nodad
ip -6 addr add fd00:ec2::254/128 dev lo nodad
ip -6 route add fd00:77::/64 via 2001:db8:1::1
echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
";

impl Lab {
    /// Starts a lab, or prints `SKIP test: why` and returns None when this host cannot make
    /// one (not root, a tool missing, no veth).
    pub fn start(test: &str) -> Option<Lab> {
        if !is_root() {
            eprintln!("SKIP {test}: the network lab needs root (to make veth pairs)");
            return None;
        }
        if let Some(t) = TOOLS.iter().find(|t| !Path::new(t).exists()) {
            eprintln!("SKIP {test}: the network lab needs {t}");
            return None;
        }
        match Lab::try_start() {
            Ok(lab) => Some(lab),
            Err(why) => {
                eprintln!("SKIP {test}: no network lab on this host: {why}");
                None
            }
        }
    }

    /// As [`Lab::start`], and also None (with `SKIP test: ...`) when the lab has no IPv6 (the
    /// host has IPv6 off).
    pub fn start_v6(test: &str) -> Option<Lab> {
        let lab = Lab::start(test)?;
        if !lab.v6 {
            eprintln!("SKIP {test}: no IPv6 on this host (no /proc/sys/net/ipv6)");
            return None;
        }
        Some(lab)
    }

    /// Whether the lab has its IPv6 part (see the module doc).
    pub fn has_v6(&self) -> bool {
        self.v6
    }

    fn try_start() -> Result<Lab, String> {
        let dir = tempfile::Builder::new()
            .prefix("sbx-netlab-")
            .tempdir_in("/tmp")
            .map_err(|e| e.to_string())?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, format!("nameserver {PUBLIC}\n")).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&resolv, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| e.to_string())?;
        let script = dir.path().join("servers.py");
        std::fs::write(&script, SERVERS).map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("log"), "").map_err(|e| e.to_string())?;

        // The namespaces' holders: `cat` reading the lab's pipe.
        let mut a = Command::new("/usr/bin/unshare");
        a.args(["--net", "--mount", "--propagation", "private", "--", "cat"])
            .stdout(Stdio::null());
        let a = Member::spawn(a, "namespace A")?;
        let mut b = Command::new("/usr/bin/unshare");
        b.args(["--net", "--", "cat"]).stdout(Stdio::null());
        let b = Member::spawn(b, "peer B")?;
        let mut lab = Lab {
            servers: Vec::new(),
            a,
            b,
            dir,
            v6: Path::new("/proc/sys/net/ipv6").exists(),
        };
        // unshare has made the namespaces once it execs cat.
        lab.wait_for_exec()?;

        let (pa, pb) = (lab.a.pid(), lab.b.pid());
        let mut veth = enter(pa, false);
        veth.args([
            "--", "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ])
        .args(["netns", &pb.to_string()]);
        check(veth, "ip link add veth")?;
        if lab.v6 {
            let v6 = |veth| format!("set -- {veth}\n{ENABLE_V6}");
            sh_in(pa, false, &v6("v0"), "enable IPv6 in A")?;
            sh_in(pb, false, &v6("v1"), "enable IPv6 in B")?;
        }
        sh_in(pa, false, SETUP_A, "set up A")?;
        sh_in(pb, false, SETUP_B, "set up B")?;
        if lab.v6 {
            sh_in(pa, false, SETUP_A6, "set up A's IPv6")?;
            sh_in(pb, false, SETUP_B6, "set up B's IPv6")?;
        }
        let bind = format!("mount --bind {} /etc/resolv.conf", resolv.display());
        sh_in(pa, true, &bind, "bind A's /etc/resolv.conf")?;

        let log = lab.dir.path().join("log");
        let mut internet = enter(pb, false);
        internet
            .args(["--", PYTHON, "-u"])
            .arg(&script)
            .arg("internet")
            .arg(&log);
        if lab.v6 {
            internet.arg("v6");
        }
        lab.start_servers(internet, "B's servers")?;
        let mut host = enter(pa, true);
        host.args(["--", PYTHON, "-u"])
            .arg(&script)
            .arg("host")
            .arg(&log)
            .arg(HOST_PORT.to_string());
        if lab.v6 {
            host.arg("v6");
        }
        lab.start_servers(host, "A's servers")?;
        Ok(lab)
    }

    /// Waits until both holders are `cat` (unshare exec'd it, the namespaces exist).
    fn wait_for_exec(&self) -> Result<(), String> {
        for _ in 0..500 {
            let comm = |p: u32| std::fs::read_to_string(format!("/proc/{p}/comm"));
            let ready = |p: u32| comm(p).is_ok_and(|c| c.trim() == "cat");
            if ready(self.a.pid()) && ready(self.b.pid()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err("unshare did not make the namespaces within 5 s".into())
    }

    fn start_servers(&mut self, mut cmd: Command, what: &str) -> Result<(), String> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut m = Member::spawn(cmd, what)?;
        let out = m.child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) if l.trim() == "ready" => {
                self.servers.push(m);
                Ok(())
            }
            got => {
                let _ = m.child.kill();
                let mut err = String::new();
                if let Some(mut e) = m.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                Err(format!("{what} did not start ({got:?}): {err}"))
            }
        }
    }

    /// The lab's directory (root's; its files are the lab's, not the sandbox's).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pids of the lab's processes (holders and servers), for "nothing left" checks.
    pub fn pids(&self) -> Vec<u32> {
        let mut v = vec![self.a.pid(), self.b.pid()];
        v.extend(self.servers.iter().map(Member::pid));
        v
    }

    /// The pid whose namespaces are A's (network and mount).
    pub fn host_pid(&self) -> u32 {
        self.a.pid()
    }

    pub fn host_port(&self) -> u16 {
        HOST_PORT
    }

    /// `cmd` (a configured command: program, arguments, environment, directory) run inside A,
    /// as the test uid (`nobody`).
    fn in_a(&self, inner: &Command) -> Command {
        let pid = self.a.pid();
        let mut c = Command::new("/usr/bin/nsenter");
        c.arg(format!("--net=/proc/{pid}/ns/net"))
            .arg(format!("--mount=/proc/{pid}/ns/mnt"));
        if let Some(d) = inner.get_current_dir() {
            c.arg(format!("--wd={}", d.display()));
        }
        c.args(["--", "/usr/bin/setpriv"])
            .arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .args(["--clear-groups", "--"])
            .arg(inner.get_program())
            .args(inner.get_args())
            .env_clear()
            .stdin(Stdio::null());
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        c
    }

    /// `sbx ARGS...` run in A as the test uid, as [`super::sbx`] builds it (a fresh work
    /// directory, a clean environment); fails the test if it runs over a minute.
    pub fn run_sbx(&self, args: &[&str]) -> Ran {
        let s = super::sbx(args);
        let cmd = self.in_a(&s.cmd);
        super::run_within(Sbx { cmd, work: s.work }, LIMIT).0
    }

    /// `CMD...` run in A as the test uid without sbx (the controls), with the environment and
    /// work directory [`super::sbx`] gives sbx.
    pub fn run_bare(&self, cmd: &[&str]) -> Ran {
        let s = super::bare();
        let mut inner = Command::new(cmd[0]);
        inner.args(&cmd[1..]);
        if let Some(d) = s.cmd.get_current_dir() {
            inner.current_dir(d);
        }
        for (k, v) in s.cmd.get_envs() {
            if let Some(v) = v {
                inner.env(k, v);
            }
        }
        let cmd = self.in_a(&inner);
        super::run_within(Sbx { cmd, work: s.work }, LIMIT).0
    }

    /// `sbx ARGS -- python3 -c PY_CLIENT OP...` in A: what the client said, and the run.
    pub fn client(&self, args: &[&str], op: &[&str]) -> (String, Ran) {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--");
        all.extend(py_client(op));
        let r = self.run_sbx(&all);
        (client_says(&r).to_string(), r)
    }

    /// `python3 -c PY_CLIENT OP...` in A without sbx (the control): what the client said.
    pub fn bare_client(&self, op: &[&str]) -> String {
        client_says(&self.run_bare(&py_client(op))).to_string()
    }

    /// The lab's log so far, one line per event:
    /// `tcp BODY ADDR:PORT from PEER:PORT`, `udp echo ADDR:PORT from ...`,
    /// `dns NAME QTYPE udp|tcp from ...`.
    pub fn log(&self) -> Vec<String> {
        // A server logs a connection as it accepts it; let one in the backlog be counted.
        std::thread::sleep(Duration::from_millis(100));
        std::fs::read_to_string(self.dir.path().join("log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The names asked of the lab's DNS server so far (each question once, in order; any type).
    pub fn dns_queries(&self) -> Vec<String> {
        self.log()
            .iter()
            .filter_map(|l| l.strip_prefix("dns "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    /// The connections the server answering `body` ("public", "metadata", "host-loopback", ...)
    /// accepted so far.
    pub fn connections(&self, body: &str) -> usize {
        let prefix = format!("tcp {body} ");
        self.log().iter().filter(|l| l.starts_with(&prefix)).count()
    }

    /// The path of A's resolv.conf (as bound over /etc/resolv.conf in A).
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.path().join("resolv.conf")
    }
}
