//! The exit-code contract (README, "Exit codes"): what the `sbx` command exits with, and how a
//! wait status becomes a shell-style code. At the bottom of the crate so that every layer that
//! decides or passes on a code can name it.

use nix::errno::Errno;

/// The wall-clock limit fired.
pub const EXIT_TIMEOUT: i32 = 124;
/// sbx itself failed (a bad profile, a setup step): the command never ran.
pub const EXIT_SBX_FAILED: i32 = 125;
/// The command exists but could not be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Exit code for a command that could not be executed, following the shells' convention.
pub fn exec_exit_code(errno: i32) -> i32 {
    match Errno::from_raw(errno) {
        Errno::ENOENT | Errno::ENOTDIR => EXIT_NOT_FOUND,
        _ => EXIT_CANNOT_EXECUTE,
    }
}

/// How a process ended.
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

    /// From a raw wait status (a stopped or continued process counts as exited with 125: sbx
    /// only decodes statuses of processes that ended).
    pub fn from_status(status: libc::c_int) -> Ending {
        if libc::WIFSIGNALED(status) {
            Ending::Signaled(libc::WTERMSIG(status))
        } else if libc::WIFEXITED(status) {
            Ending::Exited(libc::WEXITSTATUS(status))
        } else {
            Ending::Exited(EXIT_SBX_FAILED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_shells() {
        assert_eq!(exec_exit_code(libc::ENOENT), EXIT_NOT_FOUND);
        assert_eq!(exec_exit_code(libc::EACCES), EXIT_CANNOT_EXECUTE);
        assert_eq!(Ending::Signaled(9).code(), 137);
        assert_eq!(Ending::from_status(3 << 8), Ending::Exited(3));
        assert_eq!(Ending::from_status(libc::SIGKILL), Ending::Signaled(9));
    }
}
