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
}

/// Clones the sandbox's first process. `signal_fd` is the supervisor's signalfd; the clone
/// inherits it (and the blocked mask) so that no forwarded signal is lost during setup.
///
/// `late_cgroupns`: the supervisor will move the process into a cgroup after the clone; a
/// cgroup namespace is rooted where its creator stands, so the process creates it itself once
/// it has been moved (it waits for the supervisor's go byte first).
pub fn spawn(plan: &Plan, signal_fd: RawFd, late_cgroupns: bool) -> Result<Spawned, sys::Errno> {
    let argv = Argv::new(plan);
    let (report_r, report_w) = sys::pipe()?;
    let (life_r, life_w) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => {
            sys::close(report_r);
            sys::close(report_w);
            return Err(e);
        }
    };
    let mut flags = plan.namespaces.clone_flags();
    if late_cgroupns {
        flags &= !libc::CLONE_NEWCGROUP;
    }
    match sys::clone_fork(flags) {
        Ok(0) => {
            sys::close(report_r);
            sys::close(life_w);
            child(plan, &argv, report_w, life_r, signal_fd, late_cgroupns)
        }
        Ok(pid) => {
            sys::close(report_w);
            sys::close(life_r);
            Ok(Spawned {
                pid,
                report_fd: report_r,
                lifeline_fd: life_w,
            })
        }
        Err(e) => {
            for fd in [report_r, report_w, life_r, life_w] {
                sys::close(fd);
            }
            Err(e)
        }
    }
}

/// The sandbox's first process. Never returns; never allocates.
fn child(
    plan: &Plan,
    argv: &Argv,
    report_fd: RawFd,
    lifeline: RawFd,
    signal_fd: RawFd,
    late_cgroupns: bool,
) -> ! {
    let steps = setup(plan, lifeline, late_cgroupns)
        .and_then(|_| confine::process(plan, report_fd))
        .and_then(|_| apply_rlimits(plan));
    if let Err(f) = steps {
        report::send(report_fd, f);
        sys::exit(125);
    }
    sys::close(lifeline);
    if plan.as_pid_1 {
        exec::payload(plan, argv, report_fd, None)
    }
    init::run(plan, argv, report_fd, signal_fd)
}

/// rlimits go on last, after every setup step that might need more than the command gets;
/// the payload inherits them from init.
fn apply_rlimits(plan: &Plan) -> Result<(), Failure> {
    for (i, r) in plan.limits.rlimits.iter().enumerate() {
        sys::setrlimit(r.resource, r.value).map_err(|e| Failure::at(Step::Rlimit, i, e))?;
    }
    Ok(())
}

fn setup(plan: &Plan, lifeline: RawFd, late_cgroupns: bool) -> Result<(), Failure> {
    // Die with the supervisor. The supervisor sends one byte when the process may go on (after
    // placing it in a cgroup); end of file means it died. A death between clone and prctl is
    // caught by the hang-up check after the byte: getppid() cannot help, because a PID
    // namespace's first process sees a parent of 0.
    sys::set_pdeathsig(libc::SIGKILL).map_err(|e| Failure::new(Step::Lifeline, e))?;
    match sys::read_byte(lifeline) {
        Ok(true) if !sys::peer_gone(lifeline) => {}
        _ => sys::exit(125),
    }
    if late_cgroupns {
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
    if !plan.as_pid_1 {
        // Init stays inside with the payload: it must not be a target for ptrace or
        // /proc/1/mem writes.
        sys::prctl(libc::PR_SET_DUMPABLE, 0).map_err(|e| Failure::new(Step::DropPrivileges, e))?;
    }
    Ok(())
}
