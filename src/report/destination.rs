//! Where a JSON document of sbx goes: a file, an inherited descriptor, or stderr. Used for the
//! run report and the change report. A file's directory is opened when the destination is
//! (before the run), and the file is written through it ([`HostFile`]).

use std::io::Write;

use serde::Serialize;

use crate::hostfile::{HostFile, HostFileError};
use crate::sys;

/// Where the report goes: `-` for stderr, digits for an inherited fd, else a file path.
#[derive(Debug)]
pub enum Destination {
    Stderr,
    Fd(i32),
    File(HostFile),
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    File(#[from] HostFileError),
    #[error("{what}: {source}")]
    Stream {
        what: &'static str,
        source: std::io::Error,
    },
}

impl Destination {
    /// Reads the option's value; for a file, opens its directory now (see [`HostFile`]).
    pub fn open(s: &str) -> Result<Destination, HostFileError> {
        if s == "-" {
            return Ok(Destination::Stderr);
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(fd) = s.parse() {
                return Ok(Destination::Fd(fd));
            }
        }
        HostFile::prepare(s.as_ref()).map(Destination::File)
    }

    /// Writes any value as pretty JSON followed by a newline.
    pub fn write_json<T: Serialize>(&self, value: &T) -> Result<(), WriteError> {
        let stream = |what, source| WriteError::Stream { what, source };
        let encoded = || {
            let mut text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
            text.push(b'\n');
            Ok::<_, std::io::Error>(text)
        };
        match self {
            Destination::Stderr => encoded()
                .and_then(|text| std::io::stderr().lock().write_all(&text))
                .map_err(|e| stream("stderr", e)),
            // The caller handed this fd to sbx for the report, and keeps it.
            Destination::Fd(fd) => encoded()
                .and_then(|text| sys::write_all(*fd, &text).map_err(std::io::Error::from))
                .map_err(|e| stream("the inherited descriptor", e)),
            Destination::File(f) => Ok(f.write_json(value)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert!(matches!(Destination::open("-"), Ok(Destination::Stderr)));
        assert!(matches!(Destination::open("3"), Ok(Destination::Fd(3))));
        let d = tempfile::tempdir().unwrap();
        let named = |name: &str| d.path().join(name).display().to_string();
        // Digits with a directory are a file name.
        match Destination::open(&named("3")) {
            Ok(Destination::File(f)) => assert_eq!(f.path(), d.path().join("3")),
            other => panic!("{other:?}"),
        }
        // A file's directory must exist when the destination is opened, before the run.
        assert!(matches!(
            Destination::open(&named("nodir/r.json")),
            Err(HostFileError::Dir { .. })
        ));
    }
}
