//! The supervisor: the sbx process itself, in the host's namespaces. It starts the sandbox,
//! relays signals, waits, and turns what happened into an exit code and a message.

use std::os::fd::AsRawFd;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::Error;
use crate::plan::Plan;
use crate::sandbox::report::{self, Failure};
use crate::sandbox::{self, sys};

/// Signals sent to sbx that the command receives.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// How the sandbox's first process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
}

impl Ending {
    /// The exit code sbx passes on: the code, or 128+N for signal N.
    pub fn code(self) -> i32 {
        match self {
            Ending::Exited(c) => c,
            Ending::Signaled(n) => 128 + n,
        }
    }
}

/// How far landlock was enforced, as the sandbox reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LandlockOutcome {
    Full,
    Partial,
    None,
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub ending: Ending,
    /// What went wrong inside before the command ran, if anything.
    pub failure: Option<Failure>,
    /// None when landlock was not attempted.
    pub landlock: Option<LandlockOutcome>,
}

/// Restores the signal mask when the supervisor is done, also on error paths.
struct MaskGuard(SigSet);

impl Drop for MaskGuard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

pub fn run(plan: &Plan) -> Result<Outcome, Error> {
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    let mut old = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old)).map_err(
        |e| Error::Supervisor {
            what: "block signals",
            errno: e,
        },
    )?;
    let _restore = MaskGuard(old);
    let sfd =
        SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).map_err(|e| Error::Supervisor {
            what: "create a signalfd",
            errno: e,
        })?;

    let spawned = sandbox::spawn(plan, sfd.as_raw_fd()).map_err(|errno| Error::Spawn {
        errno,
        flags: plan.namespaces,
    })?;
    let child = Pid::from_raw(spawned.pid);
    tracing::debug!(pid = spawned.pid, "sandbox started");

    let ending = loop {
        let info = match sfd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                let _ = sys::kill(spawned.pid, libc::SIGKILL);
                return Err(Error::Supervisor {
                    what: "read signals",
                    errno: e,
                });
            }
        };
        let sig = info.ssi_signo as i32;
        if sig != libc::SIGCHLD {
            tracing::debug!(signal = sig, "forwarding signal");
            let _ = sys::kill(spawned.pid, sig);
            continue;
        }
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => break Ending::Exited(code),
            Ok(WaitStatus::Signaled(_, s, _)) => break Ending::Signaled(s as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::Supervisor {
                    what: "wait for the sandbox",
                    errno: e,
                });
            }
        }
    };
    // Every writer is gone once the sandbox's first process has exited; non-blocking guards
    // against a stray one all the same.
    let _ = nix::fcntl::fcntl(
        // SAFETY: the fd is owned by `spawned` and stays open until the close below.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(spawned.report_fd) },
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let records = report::receive_all(spawned.report_fd);
    let failure = records.iter().find(|r| r.is_failure()).copied();
    let landlock = records
        .iter()
        .find(|r| !r.is_failure())
        .map(|r| match r.index {
            2 => LandlockOutcome::Full,
            1 => LandlockOutcome::Partial,
            _ => LandlockOutcome::None,
        });
    sys::close(spawned.report_fd);
    sys::close(spawned.lifeline_fd);
    Ok(Outcome {
        ending,
        failure,
        landlock,
    })
}
