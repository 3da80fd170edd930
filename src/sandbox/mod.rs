//! Executes a plan: one module per stage, in kernel order. The process that `spawn` clones is
//! created in every planned namespace at once and becomes the sandbox's PID 1.

mod confine;
pub mod exec;
pub mod init;
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
    /// The supervisor's end of the socket on which init hands over the proxy's listener.
    pub proxy_fd: Option<RawFd>,
}

/// What the sandbox's first process is handed: its ends of the channels to the supervisor.
#[derive(Clone, Copy)]
struct ChildEnds {
    report: RawFd,
    lifeline: RawFd,
    signal: RawFd,
    proxy: Option<RawFd>,
    late_cgroupns: bool,
}

fn close_all(fds: &[RawFd]) {
    for fd in fds {
        sys::close(*fd);
    }
}

/// Clones the sandbox's first process. `signal_fd` is the supervisor's signalfd; the clone
/// inherits it (and the blocked mask) so that no forwarded signal is lost during setup.
///
/// `late_cgroupns`: the supervisor will move the process into a cgroup after the clone; a
/// cgroup namespace is rooted where its creator stands, so the process creates it itself once
/// it has been moved (it waits for the supervisor's go byte first).
pub fn spawn(plan: &Plan, signal_fd: RawFd, late_cgroupns: bool) -> Result<Spawned, sys::Errno> {
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
        let proxy = match plan.proxy {
            Some(_) => Some(open(sys::socketpair())?),
            None => None,
        };
        Ok((report, life, proxy))
    })();
    let ((report_r, report_w), (life_r, life_w), proxy) = match channels {
        Ok(c) => c,
        Err(e) => {
            close_all(&opened);
            return Err(e);
        }
    };
    let mut flags = plan.namespaces.clone_flags();
    if late_cgroupns {
        flags &= !libc::CLONE_NEWCGROUP;
    }
    match sys::clone_fork(flags) {
        Ok(0) => {
            close_all(&[report_r, life_w]);
            if let Some((ours, _)) = proxy {
                sys::close(ours);
            }
            let ends = ChildEnds {
                report: report_w,
                lifeline: life_r,
                signal: signal_fd,
                proxy: proxy.map(|(_, theirs)| theirs),
                late_cgroupns,
            };
            child(plan, &argv, ends)
        }
        Ok(pid) => {
            close_all(&[report_w, life_r]);
            if let Some((_, theirs)) = proxy {
                sys::close(theirs);
            }
            Ok(Spawned {
                pid,
                report_fd: report_r,
                lifeline_fd: life_w,
                proxy_fd: proxy.map(|(ours, _)| ours),
            })
        }
        Err(e) => {
            close_all(&opened);
            Err(e)
        }
    }
}

/// The sandbox's first process. Never returns; never allocates.
fn child(plan: &Plan, argv: &Argv, ends: ChildEnds) -> ! {
    let steps = setup(plan, ends)
        .and_then(|_| confine::process(plan, ends.report))
        .and_then(|_| apply_rlimits(plan));
    if let Err(f) = steps {
        report::send(ends.report, f);
        sys::exit(125);
    }
    sys::close(ends.lifeline);
    if let Some(p) = ends.proxy {
        sys::close(p);
    }
    if plan.as_pid_1 {
        exec::payload(plan, argv, ends.report, None)
    }
    init::run(plan, argv, ends.report, ends.signal)
}

/// rlimits go on last, after every setup step that might need more than the command gets;
/// the payload inherits them from init.
fn apply_rlimits(plan: &Plan) -> Result<(), Failure> {
    for (i, r) in plan.limits.rlimits.iter().enumerate() {
        sys::setrlimit(r.resource, r.value).map_err(|e| Failure::at(Step::Rlimit, i, e))?;
    }
    Ok(())
}

fn setup(plan: &Plan, ends: ChildEnds) -> Result<(), Failure> {
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
    rootfs::build(plan)?;
    if let Some(name) = &plan.hostname {
        sys::sethostname(name).map_err(|e| Failure::new(Step::Hostname, e))?;
    }
    if plan.lo_up {
        sys::loopback_up().map_err(|e| Failure::new(Step::Loopback, e))?;
    }
    if let (Some(proxy), Some(sock)) = (&plan.proxy, ends.proxy) {
        // The listener lives in the sandbox's network namespace; the supervisor serves it from
        // outside, where the allowed hosts can be reached.
        let listener =
            sys::loopback_listener(proxy.port).map_err(|e| Failure::new(Step::ProxyListener, e))?;
        let sent = sys::send_fd(sock, listener);
        sys::close(listener);
        sent.map_err(|e| Failure::new(Step::ProxyListener, e))?;
    }
    if !plan.as_pid_1 {
        // Init stays inside with the payload: it must not be a target for ptrace or
        // /proc/1/mem writes.
        sys::prctl(libc::PR_SET_DUMPABLE, 0).map_err(|e| Failure::new(Step::DropPrivileges, e))?;
    }
    Ok(())
}
