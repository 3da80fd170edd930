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

/// One row of the contract: the code, a few words for `--help`, the meaning for the man page.
pub struct Row {
    pub code: String,
    pub short: &'static str,
    pub long: &'static str,
}

/// The contract, in README's order: `--help` and the man page's EXIT STATUS are made from it.
pub fn contract() -> Vec<Row> {
    let row = |code: String, short, long| Row { code, short, long };
    vec![
        row("the command's own".into(), "", "the command exited with it"),
        row(
            "128+N".into(),
            "when killed by signal N",
            "the command was killed by signal N",
        ),
        row(
            EXIT_TIMEOUT.to_string(),
            "timeout",
            "the wall-clock limit (--timeout, limits.wall_time) fired",
        ),
        row(
            EXIT_SBX_FAILED.to_string(),
            "sbx failed (the command never ran)",
            "sbx itself failed (a bad command line, a bad profile, a setup step): the command \
             never ran; one message on stderr says why",
        ),
        row(
            EXIT_CANNOT_EXECUTE.to_string(),
            "not executable",
            "the command exists but could not be executed",
        ),
        row(
            EXIT_NOT_FOUND.to_string(),
            "not found",
            "the command was not found in the sandbox",
        ),
    ]
}

/// What the command can exit with itself, which the code alone does not tell apart.
pub const AMBIGUITY: &str = "The command can exit 124-127 itself: the --json-status report's \
                             reason tells.";

/// The contract in one paragraph, for `--help`.
pub fn summary() -> String {
    let rows: Vec<String> = contract()
        .iter()
        .map(|r| match r.short {
            "" => r.code.clone(),
            s => format!("{} {s}", r.code),
        })
        .collect();
    format!("Exit codes: {}. {AMBIGUITY}", rows.join("; "))
}

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
