//! The terminal relay for interactive sandboxes (`process.pty`). The command runs in a new
//! session, so it cannot reach the invoking terminal; to keep job control and Ctrl-C it gets a
//! pseudo-terminal of its own as controlling terminal, and the supervisor relays bytes between
//! the real terminal (in raw mode, so Ctrl-C travels as a byte to the sandbox's foreground
//! group instead of signalling sbx) and the pty's master side.

use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::thread::JoinHandle;

use nix::sys::termios::{self, SetArg, Termios};

use crate::sys::{self, Winsize};

/// The invoking terminal's state, taken before the sandbox starts.
pub struct Pending {
    saved: Termios,
    size: Winsize,
}

/// The relay while the sandbox runs; dropping it restores the terminal.
pub struct Relay {
    saved: Termios,
    master: RawFd,
    thread: Option<JoinHandle<()>>,
}

/// Whether the run is interactive, so that the command gets a pty unless the profile says
/// otherwise: stdin, stdout and stderr are all terminals, and sbx is in the foreground.
///
/// All three, because the relay has one output stream, and it is a terminal's: a command whose
/// stdout or stderr the user redirected (`sbx -- ls | grep x`, `2>log`) would otherwise see a
/// terminal there (columns, colours, CRLF line ends) and have its stderr merged into stdout.
/// The foreground, because a background job (`sbx -- make &`) must not take the terminal:
/// setting raw mode or reading keys from the background would stop sbx with SIGTTOU/SIGTTIN.
/// Stdin is asked first: when it is not a terminal (pipes, CI) this costs one ioctl.
pub fn interactive() -> bool {
    let stdin = std::io::stdin();
    if !(stdin.is_terminal() && std::io::stdout().is_terminal() && std::io::stderr().is_terminal())
    {
        return false;
    }
    match nix::unistd::tcgetpgrp(stdin.as_fd()) {
        Ok(group) => group == nix::unistd::getpgrp(),
        // ENOTTY: a terminal, but not this session's controlling one: no job control to lose.
        Err(_) => true,
    }
}

impl Pending {
    /// Takes the terminal's settings when stdin is one; None otherwise (nothing to relay).
    pub fn take() -> nix::Result<Option<Pending>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let size = sys::window_size(0).unwrap_or(Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        let saved = termios::tcgetattr(stdin.as_fd())?;
        Ok(Some(Pending { saved, size }))
    }

    /// Gives the sandbox's pty the terminal's settings and size, puts the terminal in raw
    /// mode, and starts relaying.
    pub fn attach(self, master: OwnedFd) -> nix::Result<Relay> {
        termios::tcsetattr(master.as_fd(), SetArg::TCSANOW, &self.saved)?;
        let _ = sys::set_window_size(master.as_raw_fd(), &self.size);
        let mut raw = self.saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &raw)?;
        let master_fd = master.as_raw_fd();
        let thread = std::thread::Builder::new()
            .name("sbx-pty".into())
            .spawn(move || copy_loop(master))
            .ok();
        Ok(Relay {
            saved: self.saved,
            master: master_fd,
            thread,
        })
    }
}

impl Relay {
    /// Passes the real terminal's size on (after SIGWINCH).
    pub fn resize(&self) {
        // The master fd stays open while the relay runs.
        if let Ok(size) = sys::window_size(0) {
            let _ = sys::set_window_size(self.master, &size);
        }
    }

    /// Waits for the relay to drain what the command wrote, then restores the terminal.
    pub fn finish(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Copies stdin → master and master → stdout until the pty's last slave closes (EIO).
fn copy_loop(master: OwnedFd) {
    let m = master.as_raw_fd();
    let mut buf = [0u8; 8192];
    let mut stdin_open = true;
    loop {
        let stdin = if stdin_open { 0 } else { -1 };
        let ready = match sys::poll_fds([m, stdin], -1) {
            Ok(r) => r,
            Err(sys::Errno::EINTR) => continue,
            Err(_) => return,
        };
        if ready[0] {
            match nix::unistd::read(&master, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if sys::write_all(1, &buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        if ready[1] {
            match nix::unistd::read(std::io::stdin().as_fd(), &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    if sys::write_all(m, &buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    }
}
