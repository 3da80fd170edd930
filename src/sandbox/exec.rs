//! The last steps of the payload process: signals, session, working directory, fds, execve.

use std::os::fd::RawFd;

use super::report::{self, Failure, Step};
use super::sys::{self, Errno};
use crate::plan::Plan;

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

/// Exit code for a command that could not be executed, following the shells' convention.
pub fn exec_exit_code(errno: i32) -> i32 {
    match Errno::from_raw(errno) {
        Errno::ENOENT | Errno::ENOTDIR => 127,
        _ => 126,
    }
}

/// Prepares the payload and replaces it with the command. `parent` is the pid the payload
/// expects as its parent, for the death-signal race check; None skips that check.
pub fn payload(
    plan: &Plan,
    argv: &Argv,
    report_fd: RawFd,
    parent: Option<libc::pid_t>,
    pty: Option<RawFd>,
) -> ! {
    let fail = |step: Step, e: Errno| -> ! {
        report::send(report_fd, Failure::new(step, e));
        sys::exit(125)
    };
    if let Some(parent) = parent {
        if let Err(e) = sys::set_pdeathsig(libc::SIGKILL) {
            fail(Step::Signals, e);
        }
        if sys::getppid() != parent {
            sys::exit(125);
        }
    }
    // The supervisor blocked signals to forward them, and Rust ignores SIGPIPE; the command
    // gets the defaults, as outside a sandbox.
    if let Err(e) =
        sys::set_sigmask(&sys::empty_sigset()).and_then(|_| sys::default_disposition(libc::SIGPIPE))
    {
        fail(Step::Signals, e);
    }
    if plan.new_session {
        if let Err(e) = sys::setsid() {
            fail(Step::Setsid, e);
        }
    }
    if let Some(slave) = pty {
        // A new session's first terminal becomes its controlling terminal: the relay's pty,
        // never the invoking one.
        if let Err(e) = sys::take_terminal(slave) {
            fail(Step::Setsid, e);
        }
    }
    if let Err(e) = sys::chdir(&plan.exec.cwd) {
        fail(Step::Chdir, e);
    }
    if let Err(e) = sys::cloexec_from(3) {
        fail(Step::Exec, e);
    }
    if let Err(f) = super::confine::seccomp(plan) {
        report::send(report_fd, f);
        sys::exit(125);
    }
    report::milestone(report_fd, plan.trace, 3);
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
    let errno = match (first_denied, last) {
        (Some(d), Errno::ENOENT | Errno::ENOTDIR) => d,
        (_, e) => e,
    };
    report::send(report_fd, Failure::new(Step::Exec, errno));
    sys::exit(exec_exit_code(errno as i32))
}
