//! Turns failures into messages: the step, the path, the errno, and what to do about it. The
//! paths, the command and its search path come from profiles and the command line: they are
//! quoted escaped, so that none can move the cursor or forge a line of sbx's output.

use nix::errno::Errno;

use std::path::Path;

use super::environment::{self, Verdict};
use super::host::Host;
use crate::plan::{NamespaceSet, Op, Plan};
use crate::sandbox::channel::{Failure, Step};
use crate::text::{escape, escape_bytes};

fn errno_text(errno: Errno) -> String {
    format!("{} ({errno:?})", errno.desc())
}

const USERNS_HINT: &str = "unprivileged user namespaces look disabled on this host: check \
`sysctl user.max_user_namespaces` (must be > 0), `kernel.unprivileged_userns_clone` (Debian \
kernels before 5.10, must be 1) and `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu \
23.10+, must be 0 or an AppArmor profile must allow sbx); inside a container, its seccomp \
profile may forbid clone(CLONE_NEWUSER)";

/// The facts of the environment sbx runs in (see `host`).
fn host() -> Host {
    Host::read(Path::new("/"))
}

pub fn spawn_failure(errno: Errno, ns: NamespaceSet) -> String {
    let mut msg = format!(
        "setup failed at clone (creating namespaces: {}): {}",
        describe_namespaces(ns),
        errno_text(errno)
    );
    let host = host();
    if let Some(v) = environment::clone_refused(&host, errno) {
        msg.push_str(&v.lines());
        return msg;
    }
    let hint = match errno {
        Errno::EPERM | Errno::EACCES => environment::clone_unexplained(&host),
        Errno::ENOSPC | Errno::EUSERS => {
            "the limit on user or other namespaces is reached: raise `user.max_user_namespaces` \
             (or the per-type `user.max_*_namespaces`), or end other sandboxes"
                .to_string()
        }
        Errno::EINVAL => format!(
            "this kernel lacks one of the requested namespace types ({}); turn it off in the profile",
            describe_namespaces(ns)
        ),
        Errno::ENOMEM | Errno::EAGAIN => "out of memory or process slots".to_string(),
        _ => String::new(),
    };
    if !hint.is_empty() {
        msg.push_str("\n  hint: ");
        msg.push_str(&hint);
    }
    msg
}

fn describe_namespaces(ns: NamespaceSet) -> String {
    ns.names().join(", ")
}

/// What the environment did, for the failures it can cause: one cause and its fix.
fn setup_verdict(plan: &Plan, f: &Failure) -> Option<Verdict> {
    let errno = Errno::from_raw(f.errno);
    let maps_root = || plan.uid_map.split(|b| *b == b' ').nth(1) == Some(b"0".as_slice());
    match f.step {
        Step::Setgroups | Step::GidMap => environment::ids_refused(&host(), errno, false),
        Step::UidMap => environment::ids_refused(&host(), errno, maps_root()),
        Step::MakePrivate | Step::MountScratch => environment::mount_refused(&host(), errno),
        Step::Op => match plan.ops.get(f.index as usize) {
            Some(Op::Proc { .. }) => environment::proc_refused(&host(), errno),
            _ => None,
        },
        Step::Hostname => environment::hostname_refused(&host(), errno),
        Step::UsernsLimit => environment::limits_refused(&host(), errno),
        Step::NetNamespace => environment::netns_refused(&host(), errno),
        _ => None,
    }
}

/// The message for a failure inside the sandbox before the command ran: what failed, then
/// the environment's cause and its fix where one is known, else the step's general hint.
pub fn setup_failure(plan: &Plan, f: &Failure) -> String {
    let (mut msg, hint) = general(plan, f);
    match (setup_verdict(plan, f), hint) {
        (Some(v), _) => msg.push_str(&v.lines()),
        (None, Some(h)) => {
            msg.push_str("\n  hint: ");
            msg.push_str(h);
        }
        (None, None) => {}
    }
    msg
}

/// The error line and the step's general hint, without the environment's facts.
fn general(plan: &Plan, f: &Failure) -> (String, Option<&'static str>) {
    let errno = Errno::from_raw(f.errno);
    let (what, hint): (String, &str) = match f.step {
        Step::Signals => ("blocking the signals init forwards".into(), ""),
        Step::Lifeline => ("arming the parent-death signal".into(), ""),
        Step::CgroupNamespace => (
            "creating the cgroup namespace inside the run's cgroup".into(),
            "",
        ),
        Step::Setgroups => ("writing deny to /proc/self/setgroups".into(), USERNS_HINT),
        Step::UidMap => (
            format!(
                "writing /proc/self/uid_map ({:?})",
                String::from_utf8_lossy(&plan.uid_map).trim()
            ),
            "an unprivileged process may map only its own uid",
        ),
        Step::GidMap => (
            format!(
                "writing /proc/self/gid_map ({:?})",
                String::from_utf8_lossy(&plan.gid_map).trim()
            ),
            "an unprivileged process may map only its own gid, after denying setgroups",
        ),
        Step::UsernsLimit => (
            match plan.limits.userns.get(f.index as usize) {
                Some(l) => format!("setting the sandbox's user.{} to {}", l.name, l.value),
                None => "setting a user-namespace limit".into(),
            },
            "",
        ),
        Step::MakePrivate => (
            "making the mount tree private (mount / MS_REC|MS_PRIVATE)".into(),
            "",
        ),
        Step::MountScratch => (
            "mounting the scratch tmpfs on /tmp".into(),
            "sbx needs a /tmp directory on the host to build the new root",
        ),
        Step::EnterScratch => ("preparing the scratch tmpfs".into(), ""),
        Step::PivotScratch => ("pivot_root into the scratch tmpfs".into(), ""),
        Step::Op => return op_failure(plan, f.index as usize, errno),
        Step::DetachHost => ("detaching the host's root (umount2 /oldroot)".into(), ""),
        Step::PivotRoot => ("pivot_root into the new root".into(), ""),
        Step::DetachScratch => ("detaching the scratch tmpfs".into(), ""),
        Step::RootReadOnly => ("making the new root read-only".into(), ""),
        Step::NetNamespace => (
            "creating the network namespace".into(),
            "raise `user.max_net_namespaces` if it is the limit (ENOSPC); inside a container, \
             its seccomp profile may forbid unshare(CLONE_NEWNET); or set `network.mode = \
             \"host\"` with `namespaces.net = false`",
        ),
        Step::Loopback => ("bringing up lo".into(), ""),
        Step::EgressSockets => (
            crate::sandbox::egress_socket_name(plan, f.index as usize),
            "a port of `--allow 127.0.0.1:PORT` given twice, or an address the sandbox's \
             network refuses; --net none runs without sbx's egress",
        ),
        Step::Interception => (
            "installing the seccomp listener that hands connect(2) to sbx".into(),
            "EBUSY: a filter above already has a listener (sbx --net on or proxy inside another \
             such sandbox, or a runtime's notifying filter): use --net none or host inside; \
             otherwise the kernel needs Linux 5.6 (seccomp user notification, pidfd_getfd)",
        ),
        Step::Hostname => ("sethostname".into(), ""),
        Step::Protect => (
            match plan.protect.guards.get(f.index as usize) {
                Some(g) => format!(
                    "watching {} for protected paths (inotify)",
                    escape_bytes(g.inside.as_bytes())
                ),
                None => "watching for protected paths (inotify)".into(),
            },
            "if your inotify instances or watches are used up (fs.inotify.max_user_instances), \
             close what holds them; or lift the entries in filesystem.protect",
        ),
        Step::ProxyListener => (
            match plan.network.proxy() {
                Some(p) => format!(
                    "listening for the proxy on 127.0.0.1:{} inside the sandbox",
                    p.port
                ),
                None => "starting the proxy listener".into(),
            },
            "pick another network.proxy_port",
        ),
        Step::Pty => (
            "opening a pseudo-terminal in the sandbox's /dev/pts".into(),
            "the pty relay needs dev = \"minimal\"",
        ),
        Step::Store => ("handing the tmpfs store over to the supervisor".into(), ""),
        Step::NotDumpable => ("marking init non-dumpable (PR_SET_DUMPABLE)".into(), ""),
        Step::Landlock => (
            match plan
                .landlock
                .as_ref()
                .and_then(|l| l.rules.get(f.index as usize))
            {
                Some((path, _)) if errno != Errno::EOPNOTSUPP => {
                    format!("landlock rule for {}", escape_bytes(path.as_bytes()))
                }
                _ => "applying landlock".to_string(),
            },
            "the kernel could not enforce every landlock right the profile needs; \
             `--landlock best-effort` (security.landlock = \"best-effort\") runs with what it \
             supports, and -v and the run report name what is missing",
        ),
        Step::NoNewPrivs => ("setting no_new_privs".into(), ""),
        Step::DropCapabilities => ("dropping capabilities".into(), ""),
        Step::Rlimit => (
            match plan.limits.rlimits.get(f.index as usize) {
                Some(r) => format!("setting limits.{} to {}", r.name, r.value),
                None => "setting a resource limit".into(),
            },
            "an unprivileged process cannot raise a hard limit above what it inherited",
        ),
        Step::ForkPayload => ("forking the command's process".into(), ""),
        Step::PayloadSignals => ("resetting signals".into(), ""),
        Step::Setsid => ("setsid".into(), ""),
        Step::Terminal => ("making the pty the command's terminal".into(), ""),
        Step::Chdir => (
            format!("chdir to {}", escape_bytes(plan.exec.cwd.as_bytes())),
            "the directory must exist inside the sandbox: bind it, or pick another with --chdir",
        ),
        Step::CloseFds => (
            "marking or closing inherited descriptors (close_range)".into(),
            "where close_range (Linux 5.9) or its CLOEXEC flag (5.11) is missing, sbx lists the \
             descriptors in /proc/self/fd: it needs the host's /proc mounted at /proc",
        ),
        Step::Seccomp => (
            "installing the seccomp filter".into(),
            "seccomp needs CONFIG_SECCOMP_FILTER; inside a container its own filter may forbid seccomp()",
        ),
        Step::Exec => (format!("executing {}", escape(&plan.exec.display)), ""),
    };
    let msg = format!("setup failed at {what}: {}", errno_text(errno));
    (msg, Some(hint).filter(|h| !h.is_empty()))
}

fn op_failure(plan: &Plan, index: usize, errno: Errno) -> (String, Option<&'static str>) {
    let Some(info) = plan.op_info.get(index) else {
        let msg = format!(
            "setup failed at filesystem step {index}: {}",
            errno_text(errno)
        );
        return (msg, None);
    };
    let mut msg = format!(
        "setup failed at {} {}",
        info.what,
        escape(&info.sandbox_path)
    );
    if let Some(h) = &info.host_path {
        msg.push_str(&format!(" (from {})", escape(h)));
    }
    if let Some(o) = &info.origin {
        msg.push_str(&format!(", asked by {o}"));
    }
    msg.push_str(": ");
    msg.push_str(&errno_text(errno));
    let hint = match (plan.ops.get(index), errno) {
        (Some(Op::Proc { .. }), Errno::EPERM) => {
            "mounting a fresh proc needs a PID namespace and a /proc with no part covered; where \
             /proc is masked, --proc host binds it as it is (without a PID namespace)"
        }
        (Some(Op::Bind { .. }), Errno::ENOENT) => {
            "the source or mount point vanished after sbx checked it"
        }
        (Some(_), Errno::ELOOP) => {
            "a path component became a symlink after sbx checked it; sbx does not follow \
             symlinks when placing mounts, so it stopped"
        }
        (Some(Op::Bind { .. }), Errno::EBUSY) => {
            "a mount inside the source could not be reached at its mount point (hidden under \
             another mount, in a directory sbx may not search, or moved while sbx set up); \
             without mount_setattr (Linux 5.12; a seccomp filter may answer it with ENOSYS) \
             sbx makes each mount of a bind read-only through its path, and stops where one \
             cannot be: bind a directory that holds no such mount, or run on Linux >= 5.12"
        }
        (Some(Op::Bind { .. }), Errno::E2BIG) => {
            "the source holds more than 1024 mounts, more than sbx remounts one by one where \
             mount_setattr (Linux 5.12) is missing: bind a directory with fewer"
        }
        (Some(Op::Bind { .. }), Errno::EINVAL) => {
            "the source may be a mount that cannot be bound from this namespace"
        }
        (Some(Op::Tmpfs { .. } | Op::Devpts { .. }), Errno::EPERM) => {
            "this kernel refuses the mount in a user namespace"
        }
        (Some(Op::Overlay { .. }), Errno::EPERM | Errno::EINVAL | Errno::ENODEV) => {
            "overlayfs refused the mount: in a user namespace it needs Linux >= 5.11 with \
             userxattr, and refuses an upper layer on overlayfs (a container's root: put \
             TMPDIR on a tmpfs, e.g. docker run --tmpfs /layers -e TMPDIR=/layers) and a \
             directory holding mounts of its own (a container's binds); `sbx doctor` checks a \
             plain overlay; sbx never falls back to a writable bind"
        }
        (Some(Op::Overlay { .. }), Errno::EOVERFLOW) => {
            "a file or directory in the overlaid tree belongs to a uid or gid not mapped in the \
             sandbox (not yours), so overlayfs cannot copy it up"
        }
        _ => "",
    };
    (msg, Some(hint).filter(|h| !h.is_empty()))
}

/// What the run reports (at -v and in the report's degradations) for an optional step the
/// sandbox left out.
pub fn skipped(plan: &Plan, f: &Failure) -> String {
    let errno = Errno::from_raw(f.errno);
    if f.step == Step::UsernsLimit {
        return format!(
            "the sandbox's user-namespace limits (limits.host_share: its share of inotify and \
             fanotify, no user namespace inside) not set: {}; seccomp still denies creating \
             namespaces",
            match errno {
                Errno::EROFS => "/proc/sys is read-only here (--proc host)".to_string(),
                e => errno_text(e),
            }
        );
    }
    let what = match (f.step, &plan.hostname) {
        (Step::Hostname, Some(h)) => format!(
            "hostname {} not set (the sandbox has the name of the UTS namespace it came from, \
             in a UTS namespace of its own)",
            escape_bytes(h.to_bytes())
        ),
        _ => format!("{:?} left out", f.step),
    };
    let why = match (f.step, environment::hostname_refused(&host(), errno)) {
        (Step::Hostname, Some(v)) => v.cause,
        _ => format!("sethostname: {}", errno_text(errno)),
    };
    format!("{what}: {why}")
}

/// The message for a command that could not be executed (exit 126 or 127).
pub fn exec_failure(plan: &Plan, errno: i32) -> String {
    let errno = Errno::from_raw(errno);
    let cmd = escape(&plan.exec.display);
    // ENOENT for a file that is there: its interpreter is not.
    let interp = || super::interp::missing_interpreter(plan);
    if let Some(msg) = matches!(errno, Errno::ENOENT | Errno::ENOTDIR)
        .then(interp)
        .flatten()
    {
        return msg;
    }
    match errno {
        Errno::ENOENT | Errno::ENOTDIR if plan.exec.display.contains('/') => {
            format!("{cmd}: no such file in the sandbox (is its directory bound?)")
        }
        Errno::ENOENT | Errno::ENOTDIR => {
            let mut msg = format!(
                "{cmd}: command not found in the sandbox (PATH={})",
                escape(&plan.exec.search_path)
            );
            // Where the host's PATH finds it, unless the run's warning said so already
            // (a profile that passes the host's PATH).
            let host_path = std::env::var("PATH").ok();
            if host_path.as_deref() != Some(plan.exec.search_path.as_str()) {
                let report = crate::plan::path_report(&plan.exec, &plan.view, host_path.as_deref());
                if let Some(d) = report.differs {
                    msg.push_str("\n  hint: ");
                    msg.push_str(&escape(&d));
                }
            }
            msg
        }
        e => format!("{cmd}: cannot execute: {}", errno_text(e)),
    }
}
