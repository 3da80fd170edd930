//! Terminals: the sandbox's own pty, and the invoking terminal's window size.

use std::os::fd::RawFd;

use super::{SysResult, check};

pub use libc::winsize as Winsize;

/// Makes `fd` (a terminal) the controlling terminal and stdin, stdout and stderr.
pub fn take_terminal(fd: RawFd) -> SysResult {
    // SAFETY: plain ioctl on our fd; the argument 0 refuses to steal another session's terminal.
    check(unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) })?;
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        check(unsafe { libc::dup2(fd, target) })?;
    }
    if fd > 2 {
        super::close(fd);
    }
    Ok(())
}

/// Opens a new pty from `/dev/ptmx` of the current root: (master, slave), both close-on-exec.
pub fn open_pty() -> SysResult<(RawFd, RawFd)> {
    let master = super::open(c"/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY, 0)?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int; TIOCGPTPEER opens the slave of this master.
    let slave = unsafe {
        check(libc::ioctl(master, libc::TIOCSPTLCK, &unlock)).and_then(|_| {
            check(libc::ioctl(
                master,
                libc::TIOCGPTPEER,
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            ))
        })
    };
    match slave {
        Ok(s) => Ok((master, s)),
        Err(e) => {
            super::close(master);
            Err(e)
        }
    }
}

/// The window size of the terminal on `fd`.
pub fn window_size(fd: RawFd) -> SysResult<Winsize> {
    let mut size = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize.
    check(unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) })?;
    Ok(size)
}

pub fn set_window_size(fd: RawFd, size: &Winsize) -> SysResult {
    // SAFETY: TIOCSWINSZ reads a winsize.
    check(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, size) }).map(drop)
}
