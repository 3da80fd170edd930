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
pub fn spawn(plan: &Plan, signal_fd: RawFd) -> Result<Spawned, sys::Errno> {
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
    match sys::clone_fork(plan.namespaces.clone_flags()) {
        Ok(0) => {
            sys::close(report_r);
            sys::close(life_w);
            child(plan, &argv, report_w, life_r, signal_fd)
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
fn child(plan: &Plan, argv: &Argv, report_fd: RawFd, lifeline: RawFd, signal_fd: RawFd) -> ! {
    if let Err(f) = setup(plan, lifeline).and_then(|_| confine::process(plan, report_fd)) {
        report::send(report_fd, f);
        sys::exit(125);
    }
    sys::close(lifeline);
    if plan.as_pid_1 {
        exec::payload(plan, argv, report_fd, None)
    }
    init::run(plan, argv, report_fd, signal_fd)
}

fn setup(plan: &Plan, lifeline: RawFd) -> Result<(), Failure> {
    // Die with the supervisor; the lifeline closes the window between clone and prctl, where
    // getppid() cannot help because a PID namespace's first process sees a parent of 0.
    sys::set_pdeathsig(libc::SIGKILL).map_err(|e| Failure::new(Step::Lifeline, e))?;
    if sys::peer_gone(lifeline) {
        sys::exit(125);
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
