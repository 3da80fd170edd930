//! The payload: the process that becomes the command. Its last steps, in order: the
//! parent-death check, signals, session, terminal, working directory, seccomp, execve. The
//! descriptors it inherits were marked close-on-exec by the sandbox's first process.

use std::os::fd::RawFd;

use super::channel::{self, Failure, Milestone, Step};
use crate::exit::{EXIT_SBX_FAILED, exec_exit_code};
use crate::plan::Plan;
use crate::sys::{self, Errno};

/// Prepared argv and envp pointer arrays (null-terminated), built before the fork.
pub struct Argv {
    pub argv: Vec<*const libc::c_char>,
    pub envp: Vec<*const libc::c_char>,
}

impl Argv {
    pub fn new(plan: &Plan) -> Argv {
        let ptrs = |v: &[std::ffi::CString]| {
            v.iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        Argv {
            argv: ptrs(&plan.exec.argv),
            envp: ptrs(&plan.exec.envp),
        }
    }
}

/// Prepares the payload and replaces it with the command. `parent` is the pid the payload
/// expects as its parent, for the death-signal race check; None skips that check.
pub fn payload(
    plan: &Plan,
    argv: &Argv,
    report: RawFd,
    parent: Option<libc::pid_t>,
    pty: Option<RawFd>,
) -> ! {
    let steps = || -> Result<(), Failure> {
        let step = |s: Step, r: sys::SysResult| r.map_err(|e| Failure::new(s, e));
        if let Some(parent) = parent {
            step(Step::PayloadSignals, sys::set_pdeathsig(libc::SIGKILL))?;
            if sys::getppid() != parent {
                sys::exit(EXIT_SBX_FAILED);
            }
        }
        // The supervisor blocked signals to forward them, and Rust ignores SIGPIPE; the
        // command gets the defaults, as outside a sandbox.
        step(Step::PayloadSignals, sys::set_sigmask(&sys::empty_sigset()))?;
        step(
            Step::PayloadSignals,
            sys::default_disposition(libc::SIGPIPE),
        )?;
        if plan.new_session {
            step(Step::Setsid, sys::setsid())?;
        }
        if let Some(slave) = pty {
            // A new session's first terminal becomes its controlling terminal: the relay's
            // pty, never the invoking one.
            step(Step::Terminal, sys::take_terminal(slave))?;
        }
        step(Step::Chdir, sys::chdir(&plan.exec.cwd))?;
        super::confine::seccomp(plan)?;
        channel::milestone(report, plan.trace, Milestone::Exec);
        Ok(())
    };
    if let Err(f) = steps() {
        channel::send(report, f);
        sys::exit(EXIT_SBX_FAILED);
    }
    let errno = exec(plan, argv);
    channel::send(report, Failure::new(Step::Exec, errno));
    sys::exit(exec_exit_code(errno as i32))
}

/// Tries the candidates in order, like execvp; returns the errno that explains the failure
/// best (a permission problem over a later "not found").
fn exec(plan: &Plan, argv: &Argv) -> Errno {
    let mut first_denied: Option<Errno> = None;
    let mut last = Errno::ENOENT;
    for candidate in &plan.exec.candidates {
        last = sys::execve(candidate, &argv.argv, &argv.envp);
        match last {
            Errno::ENOENT | Errno::ENOTDIR | Errno::ESTALE | Errno::ENODEV | Errno::ETIMEDOUT => {}
            Errno::EACCES | Errno::EPERM => {
                first_denied.get_or_insert(last);
            }
            _ => break,
        }
    }
    match (first_denied, last) {
        (Some(d), Errno::ENOENT | Errno::ENOTDIR) => d,
        (_, e) => e,
    }
}
