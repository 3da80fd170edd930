//! The sandbox's PID 1: it spawns the payload (which shares init's memory until its execve),
//! forwards the signals the supervisor relays, reaps orphans, and exits with the payload's
//! status (128+N for a signal).

use std::os::fd::RawFd;

use super::FORWARDED_SIGNALS;
use super::channel::{self, Fact, Failure, Step};
use super::exec::{self, Argv};
use super::watch::Watch;
use crate::exit::{EXIT_SBX_FAILED, Ending};
use crate::plan::Plan;
use crate::sys;

/// What init waits for: the forwarded signals and its children's deaths.
pub(super) fn signals() -> libc::sigset_t {
    let mut all = [libc::SIGCHLD; FORWARDED_SIGNALS.len() + 1];
    all[..FORWARDED_SIGNALS.len()].copy_from_slice(&FORWARDED_SIGNALS);
    sys::sigset_of(&all)
}

#[allow(unsafe_code)] // spawn_sharing_memory: the one unsafe call of the sandbox side
pub fn run(
    plan: &Plan,
    argv: &Argv,
    report: RawFd,
    (pty, watch): (Option<RawFd>, Option<Watch>),
    release_stack: bool,
) -> ! {
    let fail = |s, e| -> ! {
        channel::send(report, Failure::new(s, e));
        sys::exit(EXIT_SBX_FAILED)
    };
    let me = nix::unistd::getpid().as_raw();
    // The signals init waits for are blocked since the process started (see
    // `setup::first_process`); a signalfd of its own receives them.
    let signal_fd = sys::signalfd(&signals()).unwrap_or_else(|e| fail(Step::Signals, e));
    // The command's process shares init's memory until its execve: a fork would copy init's
    // page tables, only for the execve to throw the copy away.
    // SAFETY: init is single-threaded; `exec::payload` never allocates, writes only to its
    // own stack (and the report channel) and ends in execve or _exit.
    let payload = match unsafe {
        sys::spawn_sharing_memory(&mut || exec::payload(plan, argv, report, Some(me), pty))
    } {
        Ok(pid) => pid,
        Err(e) => fail(Step::ForkPayload, e),
    };
    // Nothing of the host stays with init: not the terminal, not the lifeline.
    let watch_fd = watch.as_ref().map_or(-1, Watch::fd);
    let mut keep = [report, signal_fd, watch_fd];
    keep.sort_unstable();
    if let Err(e) = sys::close_all_except(&keep[usize::from(watch_fd < 0)..]) {
        let _ = sys::kill(payload, libc::SIGKILL);
        fail(Step::CloseFds, e)
    }
    // The setup's frames (its buffers are on the stack: it never allocates) are dead from here
    // on, and would stay resident for as long as the command runs.
    if release_stack {
        sys::release_dead_stack();
    }
    // Without a PID namespace, init is not PID 1; a subreaper still collects orphans.
    let _ = sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
    let mut protected = false;
    // Init waits for as long as the command runs: once it has waited SETTLE_MS with nothing
    // to do, the setup's code need not stay mapped (a short command ends first and never pays
    // the faults back; a busy reaper keeps it until a quiet moment).
    let mut settled = false;
    loop {
        let timeout = match settled {
            false => sys::SETTLE_MS,
            true => -1,
        };
        let ready = match sys::poll_fds([signal_fd, watch_fd], timeout) {
            Ok([false, false]) if !settled => {
                sys::release_code();
                settled = true;
                continue;
            }
            Ok(r) => r,
            Err(sys::Errno::EINTR) => continue,
            Err(_) => sys::exit(EXIT_SBX_FAILED),
        };
        if let (true, Some(w), false) = (ready[1], &watch, protected)
            && let Some(i) = w.tripped(plan)
        {
            // A protected path appeared: the command goes, with everything it started (as PID
            // 1, when the payload is reaped below, `finish` kills the rest).
            channel::send(report, Fact::Protected(i as u32));
            protected = true;
            let _ = sys::kill(payload, libc::SIGKILL);
        }
        if !ready[0] {
            continue;
        }
        let sig = sys::read_signal(signal_fd).unwrap_or_else(|_| sys::exit(EXIT_SBX_FAILED));
        if sig != libc::SIGCHLD {
            let _ = sys::kill(payload, sig);
            continue;
        }
        while let Some((pid, status)) = sys::wait_any_nohang() {
            // A traced command reports ptrace stops here too: only its end counts.
            if pid == payload && (libc::WIFEXITED(status) || libc::WIFSIGNALED(status)) {
                finish(report, me == 1, status);
            }
        }
    }
}

/// The command has ended: report how, and exit as it did. As PID 1 of the sandbox's own PID
/// namespace, init first kills and reaps everything left (the kernel would at its exit, but
/// this way the report can say nothing of the sandbox runs any more, and the supervisor need
/// not wait for the namespaces' teardown). Without a PID namespace `kill(-1)` would reach
/// the caller's own processes: there init just exits.
fn finish(report: RawFd, pid_1: bool, status: libc::c_int) -> ! {
    if pid_1 {
        let _ = sys::kill(-1, libc::SIGKILL);
        while sys::wait_any().is_some() {}
    }
    let usage = sys::usage_with_children();
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    let records = [
        // The exit code alone cannot tell "killed by SIGKILL" from "exit 137".
        Fact::PayloadStatus(status).into(),
        Fact::UserTime(micros(usage.ru_utime)).into(),
        Fact::SystemTime(micros(usage.ru_stime)).into(),
        Fact::PeakRss(usage.ru_maxrss as u64).into(),
        Fact::Finished.into(),
    ];
    let sent = if pid_1 { &records[..] } else { &records[..4] };
    channel::send_all(report, sent);
    sys::exit(Ending::from_status(status).code())
}
