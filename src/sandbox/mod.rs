//! Executes a plan: one module per stage, in kernel order. The process that `spawn` clones is
//! created in every planned namespace but the network one at once, and becomes the sandbox's
//! PID 1; a helper creates the network namespace beside it (see `netns`).

mod confine;
pub mod exec;
pub mod init;
mod netns;
pub mod report;
mod rootfs;
pub mod sys;
mod userns;

use std::os::fd::RawFd;

use crate::plan::Plan;
use exec::Argv;
use report::{Failure, Step};

/// The running sandbox as the supervisor sees it.
pub struct Spawned {
    pub pid: libc::pid_t,
    /// Read end of the failure pipe.
    pub report_fd: RawFd,
    /// Write end of the lifeline: when the supervisor dies it closes, and the sandbox knows.
    pub lifeline_fd: RawFd,
    /// The supervisor's end of the socket on which init hands over what it opened inside for
    /// the supervisor: the proxy's listener, then the pty's master, in that order.
    pub handover_fd: Option<RawFd>,
    /// The network namespace's helper (see `netns`), a child of the supervisor to reap.
    pub net_helper: Option<libc::pid_t>,
}

/// What the sandbox's first process is handed: its ends of the channels to the supervisor.
#[derive(Clone, Copy)]
struct ChildEnds {
    report: RawFd,
    lifeline: RawFd,
    handover: Option<RawFd>,
    /// Init's end of the socket on which the network namespace arrives (see `netns`).
    net: Option<RawFd>,
    late_cgroupns: bool,
    pty: bool,
}

/// How the supervisor wants the sandbox started.
#[derive(Clone, Copy, Debug)]
pub struct SpawnOptions {
    /// The supervisor will move the process into a cgroup after the clone; a cgroup namespace
    /// is rooted where its creator stands, so the process creates it itself once it has been
    /// moved (it waits for the supervisor's go byte first).
    pub late_cgroupns: bool,
    /// Open a pty in the sandbox's own devpts for the command's terminal, and hand its master
    /// over for the relay.
    pub pty: bool,
}

fn close_all(fds: &[RawFd]) {
    for fd in fds {
        sys::close(*fd);
    }
}

/// Clones the sandbox's first process.
pub fn spawn(plan: &Plan, opts: SpawnOptions) -> Result<Spawned, sys::Errno> {
    let argv = Argv::new(plan);
    let mut opened: Vec<RawFd> = Vec::with_capacity(6);
    let mut open = |r: sys::SysResult<(RawFd, RawFd)>| {
        r.map(|(a, b)| {
            opened.extend([a, b]);
            (a, b)
        })
    };
    let channels = (|| {
        let report = open(sys::pipe())?;
        let life = open(sys::pipe())?;
        let handover = match plan.proxy.is_some() || opts.pty {
            true => Some(open(sys::socketpair())?),
            false => None,
        };
        let net = match plan.namespaces.net {
            true => Some(open(sys::socketpair())?),
            false => None,
        };
        Ok((report, life, handover, net))
    })();
    let ((report_r, report_w), (life_r, life_w), handover, net) = match channels {
        Ok(c) => c,
        Err(e) => {
            close_all(&opened);
            return Err(e);
        }
    };
    let mut flags = plan.namespaces.clone_flags();
    if opts.late_cgroupns {
        flags &= !libc::CLONE_NEWCGROUP;
    }
    // A helper creates it, beside the root (see `netns`).
    flags &= !libc::CLONE_NEWNET;
    match sys::clone_fork(flags) {
        Ok(0) => {
            close_all(&[report_r, life_w]);
            if let Some((ours, _)) = handover {
                sys::close(ours);
            }
            if let Some((helper_end, _)) = net {
                sys::close(helper_end);
            }
            let ends = ChildEnds {
                report: report_w,
                lifeline: life_r,
                handover: handover.map(|(_, theirs)| theirs),
                net: net.map(|(_, init_end)| init_end),
                late_cgroupns: opts.late_cgroupns,
                pty: opts.pty,
            };
            child(plan, &argv, ends)
        }
        Ok(pid) => {
            // The helper needs the report pipe's write end: fork it before that closes.
            let helper = net.map(|(helper_end, init_end)| {
                sys::close(init_end);
                let forked = netns::spawn_helper(pid, helper_end, report_w);
                sys::close(helper_end);
                forked
            });
            close_all(&[report_w, life_r]);
            if let Some((_, theirs)) = handover {
                sys::close(theirs);
            }
            let net_helper = match helper.transpose() {
                Ok(h) => h,
                Err(e) => {
                    let _ = sys::kill(pid, libc::SIGKILL);
                    let _ = sys::wait4(pid, 0);
                    close_all(&[report_r, life_w]);
                    if let Some((ours, _)) = handover {
                        sys::close(ours);
                    }
                    return Err(e);
                }
            };
            Ok(Spawned {
                pid,
                report_fd: report_r,
                lifeline_fd: life_w,
                handover_fd: handover.map(|(ours, _)| ours),
                net_helper,
            })
        }
        Err(e) => {
            close_all(&opened);
            Err(e)
        }
    }
}

/// Signals sent to sbx that the command receives.
pub const FORWARDED_SIGNALS: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// What init waits for: the forwarded signals and its children's deaths.
fn init_signals() -> libc::sigset_t {
    let mut set = sys::empty_sigset();
    for s in FORWARDED_SIGNALS.iter().chain(&[libc::SIGCHLD]) {
        // SAFETY: set is initialised and s a valid signal number.
        unsafe { libc::sigaddset(&mut set, *s) };
    }
    set
}

/// The sandbox's first process. Never returns; never allocates.
fn child(plan: &Plan, argv: &Argv, ends: ChildEnds) -> ! {
    // A PID namespace's init drops signals it neither handles nor blocks: block what init
    // will forward before anything else, so a signal sent during setup waits for it.
    if let Err(e) = sys::block_signals(&init_signals()) {
        report::send(ends.report, Failure::new(Step::Signals, e));
        sys::exit(125);
    }
    let steps = setup(plan, ends).and_then(|pty| {
        confine::process(plan, ends.report)?;
        apply_rlimits(plan)?;
        report::milestone(ends.report, plan.trace, 2);
        Ok(pty)
    });
    let pty = match steps {
        Ok(pty) => pty,
        Err(f) => {
            report::send(ends.report, f);
            sys::exit(125);
        }
    };
    sys::close(ends.lifeline);
    if let Some(h) = ends.handover {
        sys::close(h);
    }
    if plan.as_pid_1 {
        exec::payload(plan, argv, ends.report, None, pty)
    }
    init::run(plan, argv, ends.report, pty)
}

/// rlimits go on last, after every setup step that might need more than the command gets;
/// the payload inherits them from init.
fn apply_rlimits(plan: &Plan) -> Result<(), Failure> {
    for (i, r) in plan.limits.rlimits.iter().enumerate() {
        sys::setrlimit(r.resource, r.value).map_err(|e| Failure::at(Step::Rlimit, i, e))?;
    }
    Ok(())
}

/// Everything up to the privilege drop; returns the command's pty slave, if it gets one.
fn setup(plan: &Plan, ends: ChildEnds) -> Result<Option<RawFd>, Failure> {
    let lifeline = ends.lifeline;
    // Die with the supervisor. The supervisor sends one byte when the process may go on (after
    // placing it in a cgroup); end of file means it died. A death between clone and prctl is
    // caught by the hang-up check after the byte: getppid() cannot help, because a PID
    // namespace's first process sees a parent of 0.
    sys::set_pdeathsig(libc::SIGKILL).map_err(|e| Failure::new(Step::Lifeline, e))?;
    match sys::read_byte(lifeline) {
        Ok(true) if !sys::peer_gone(lifeline) => {}
        _ => sys::exit(125),
    }
    if ends.late_cgroupns {
        sys::unshare(libc::CLONE_NEWCGROUP).map_err(|e| Failure::new(Step::CgroupNamespace, e))?;
    }

    userns::write_id_maps(plan)?;
    report::milestone(ends.report, plan.trace, 0);
    rootfs::build(plan)?;
    report::milestone(ends.report, plan.trace, 1);
    if let Some(sock) = ends.net {
        netns::join(sock)?;
    }
    if let Some(name) = &plan.hostname {
        sys::sethostname(name).map_err(|e| Failure::new(Step::Hostname, e))?;
    }
    if let (Some(proxy), Some(sock)) = (&plan.proxy, ends.handover) {
        // The listener lives in the sandbox's network namespace; the supervisor serves it from
        // outside, where the allowed hosts can be reached.
        let listener =
            sys::loopback_listener(proxy.port).map_err(|e| Failure::new(Step::ProxyListener, e))?;
        let sent = sys::send_fd(sock, listener);
        sys::close(listener);
        sent.map_err(|e| Failure::new(Step::ProxyListener, e))?;
    }
    let mut slave = None;
    if let (true, Some(sock)) = (ends.pty, ends.handover) {
        // The pty comes from the sandbox's own devpts, so its name resolves inside (ttyname,
        // `tty`); the supervisor relays through the master.
        let (master, s) = sys::open_pty().map_err(|e| Failure::new(Step::Pty, e))?;
        let sent = sys::send_fd(sock, master);
        sys::close(master);
        sent.map_err(|e| Failure::new(Step::Pty, e))?;
        slave = Some(s);
    }
    if !plan.as_pid_1 {
        // Init stays inside with the payload: it must not be a target for ptrace or
        // /proc/1/mem writes.
        sys::prctl(libc::PR_SET_DUMPABLE, 0).map_err(|e| Failure::new(Step::DropPrivileges, e))?;
    }
    Ok(slave)
}
