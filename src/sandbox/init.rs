//! The sandbox's PID 1: it forks the payload, forwards the signals the supervisor relays,
//! reaps orphans, and exits with the payload's status (128+N for a signal).

use std::os::fd::RawFd;

use super::exec::{self, Argv};
use super::report::{self, Failure, Step};
use super::sys;
use crate::plan::Plan;

pub fn run(plan: &Plan, argv: &Argv, report_fd: RawFd, pty: Option<RawFd>) -> ! {
    let me = nix::unistd::getpid().as_raw();
    // The signals init waits for are blocked since the process started (see
    // `sandbox::block_signals`); a signalfd of its own receives them.
    let signal_fd = match sys::signalfd(&super::init_signals()) {
        Ok(fd) => fd,
        Err(e) => {
            report::send(report_fd, Failure::new(Step::Signals, e));
            sys::exit(125)
        }
    };
    let payload = match sys::clone_fork(0) {
        Ok(0) => exec::payload(plan, argv, report_fd, Some(me), pty),
        Ok(pid) => pid,
        Err(e) => {
            report::send(report_fd, Failure::new(Step::ForkPayload, e));
            sys::exit(125)
        }
    };
    // Nothing of the host stays with init: not the terminal, not the lifeline.
    let mut keep = [report_fd, signal_fd];
    keep.sort_unstable();
    sys::close_all_except(&keep);
    // Without a PID namespace, init is not PID 1; a subreaper still collects orphans.
    let _ = sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);

    // SAFETY: signalfd_siginfo is plain data; all-zero is valid.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    loop {
        // SAFETY: the struct is exactly `size` bytes of plain data.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(
                (&mut info as *mut libc::signalfd_siginfo).cast::<u8>(),
                size,
            )
        };
        match sys::read(signal_fd, buf) {
            Ok(n) if n == size => {}
            _ => sys::exit(125),
        }
        let sig = info.ssi_signo as libc::c_int;
        if sig != libc::SIGCHLD {
            let _ = sys::kill(payload, sig);
            continue;
        }
        while let Some((pid, status)) = sys::wait_any_nohang() {
            // A traced command reports ptrace stops here too: only its end counts.
            if pid == payload && (libc::WIFEXITED(status) || libc::WIFSIGNALED(status)) {
                finish(report_fd, me == 1, status);
            }
        }
    }
}

/// A wait status as a shell would report it: the exit code, or 128+N for signal N.
pub fn status_to_code(status: libc::c_int) -> libc::c_int {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        125
    }
}

/// The command has ended: report how, and exit as it did. As PID 1 of the sandbox's own PID
/// namespace, init first kills and reaps everything left (the kernel would at its exit, but
/// this way the report can say nothing of the sandbox runs any more, and the supervisor need
/// not wait for the namespaces' teardown). Without a PID namespace `kill(-1)` would reach
/// the caller's own processes: there init just exits.
fn finish(report_fd: RawFd, pid_1: bool, status: libc::c_int) -> ! {
    if pid_1 {
        let _ = sys::kill(-1, libc::SIGKILL);
        while sys::wait_any().is_some() {}
    }
    let usage = sys::usage_with_children();
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    let records = [
        // The exit code alone cannot tell "killed by SIGKILL" from "exit 137".
        Failure::fact(Step::PayloadStatus, status as u32 as u64),
        Failure::fact(Step::UserTime, micros(usage.ru_utime)),
        Failure::fact(Step::SystemTime, micros(usage.ru_stime)),
        Failure::fact(Step::PeakRss, usage.ru_maxrss as u64),
        Failure::fact(Step::Finished, 0),
    ];
    let sent = if pid_1 { &records[..] } else { &records[..4] };
    report::send_all(report_fd, sent);
    sys::exit(status_to_code(status))
}
