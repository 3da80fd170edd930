//! The invoking terminal's modes, put back when the sandbox ends. Without a pty of its own the
//! command shares the caller's terminal on its stdin, stdout or stderr. In a session of its own
//! it cannot signal the terminal's jobs or push keystrokes into it, but it can still change
//! its modes (`stty -echo`, raw mode), and those would outlive sbx: the user would type blind
//! into their shell. So sbx reads the modes of each terminal among its standard descriptors
//! before the sandbox starts and restores them once the sandbox is gone, however it ended.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::termios::{self, SetArg, Termios};

/// A terminal and the modes it had.
struct Saved {
    /// A duplicate of the descriptor it was found on: the caller may close or reuse that one.
    fd: OwnedFd,
    modes: Termios,
}

pub struct TtyModes {
    saved: Vec<Saved>,
}

/// Whether this process may set the terminal's modes without taking them from someone else:
/// it is not its controlling terminal, or this process's group is in the foreground. A
/// background job must not: the modes are then the foreground program's (the shell's line
/// editor, an editor), and setting them from the background would stop sbx with SIGTTOU.
fn ours(fd: &OwnedFd) -> bool {
    match nix::unistd::tcgetpgrp(fd.as_fd()) {
        Ok(group) => group == nix::unistd::getpgrp(),
        // ENOTTY: a terminal, but not this session's controlling one.
        Err(_) => true,
    }
}

impl TtyModes {
    /// Reads the modes of the terminals on descriptors 0, 1 and 2 (each terminal once).
    pub fn take() -> TtyModes {
        let mut saved: Vec<Saved> = Vec::new();
        let mut seen = Vec::new();
        for std_fd in [
            std::io::stdin().as_fd(),
            std::io::stdout().as_fd(),
            std::io::stderr().as_fd(),
        ] {
            let Ok(modes) = termios::tcgetattr(std_fd) else {
                continue; // not a terminal
            };
            let Ok(st) = nix::sys::stat::fstat(std_fd) else {
                continue;
            };
            if seen.contains(&st.st_rdev) {
                continue;
            }
            let Ok(fd) = std_fd.try_clone_to_owned() else {
                tracing::warn!("cannot keep the terminal's modes to restore them after the run");
                continue;
            };
            if !ours(&fd) {
                tracing::debug!(
                    "sbx is a background job of the terminal: its modes are left alone"
                );
                continue;
            }
            seen.push(st.st_rdev);
            saved.push(Saved { fd, modes });
        }
        TtyModes { saved }
    }

    /// Puts back the modes the sandbox changed. Idempotent.
    pub fn restore(&mut self) {
        for s in self.saved.drain(..) {
            let now = termios::tcgetattr(s.fd.as_fd());
            if now.as_ref().is_ok_and(|m| *m == s.modes) || !ours(&s.fd) {
                continue;
            }
            // Blocked, SIGTTOU cannot stop sbx should the shell move it to the background
            // between the check above and the call.
            let mut ttou = SigSet::empty();
            ttou.add(Signal::SIGTTOU);
            let mut old = SigSet::empty();
            let blocked = nix::sys::signal::pthread_sigmask(
                SigmaskHow::SIG_BLOCK,
                Some(&ttou),
                Some(&mut old),
            )
            .is_ok();
            match termios::tcsetattr(s.fd.as_fd(), SetArg::TCSANOW, &s.modes) {
                Ok(()) => tracing::info!("the command changed the terminal's modes: restored"),
                // EIO: the terminal hung up; nobody is left to type on it.
                Err(e) => tracing::debug!("cannot restore the terminal's modes: {}", e.desc()),
            }
            if blocked {
                let _ =
                    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
            }
        }
    }
}

impl Drop for TtyModes {
    fn drop(&mut self) {
        self.restore();
    }
}
