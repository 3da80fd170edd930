//! Where a JSON document of sbx goes: a file, an inherited descriptor, or stderr. Used for the
//! run report and the change report.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use crate::sys;

/// Where the report goes: `-` for stderr, digits for an inherited fd, else a file path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Stderr,
    Fd(i32),
    File(PathBuf),
}

impl Destination {
    pub fn parse(s: &str) -> Destination {
        if s == "-" {
            Destination::Stderr
        } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse()
                .map(Destination::Fd)
                .unwrap_or(Destination::File(s.into()))
        } else {
            Destination::File(s.into())
        }
    }

    /// Writes any value as pretty JSON followed by a newline.
    pub fn write_json<T: Serialize>(&self, value: &T) -> std::io::Result<()> {
        let mut text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
        text.push(b'\n');
        match self {
            Destination::Stderr => std::io::stderr().lock().write_all(&text),
            // The caller handed this fd to sbx for the report, and keeps it.
            Destination::Fd(fd) => sys::write_all(*fd, &text).map_err(std::io::Error::from),
            Destination::File(p) => std::fs::write(p, &text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(Destination::parse("-"), Destination::Stderr);
        assert_eq!(Destination::parse("3"), Destination::Fd(3));
        assert_eq!(Destination::parse("./3"), Destination::File("./3".into()));
        assert_eq!(
            Destination::parse("/tmp/r.json"),
            Destination::File("/tmp/r.json".into())
        );
    }
}
