//! sbx's own output. Its stdout and stderr may be closed, a pipe whose reader is gone or a
//! full disk: Rust's print macros panic on a failed write, which `panic = "abort"` turns into
//! SIGABRT before or after the command ran. What sbx prints is for the caller to read if it
//! can; a write that fails is dropped, and the run and its exit code go on as they would.

use std::fmt::Display;
use std::io::Write;

/// Writes `text` to stdout.
pub fn stdout(text: impl AsRef<[u8]>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_ref()).and_then(|()| out.flush());
}

/// Writes one of sbx's messages to stderr: `sbx: MESSAGE`.
pub fn error(message: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "sbx: {message}");
}
