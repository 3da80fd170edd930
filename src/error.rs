//! The errors sbx reports before or instead of running the command. All of them exit 125.
//! Each module has its own error type; this folds them for the library's callers. A path or
//! name that came from a profile or the sandbox is shown escaped (`text`).

use std::path::PathBuf;

use nix::errno::Errno;

use crate::cgroup::CgroupError;
use crate::diagnose;
use crate::hostfile::HostFileError;
use crate::overlay::apply::ApplyError;
use crate::plan::{NamespaceSet, PlanError};
use crate::profile::{LimitError, ProfileError};
use crate::text::{escape, escape_path};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The command line is wrong (the CLI's own checks; clap reports the rest).
    #[error("{0}")]
    Usage(String),
    #[error("{}", diagnose::spawn_failure(*errno, *flags))]
    Spawn { errno: Errno, flags: NamespaceSet },
    #[error("cannot {what}: {} ({errno:?})", errno.desc())]
    Supervisor { what: &'static str, errno: Errno },
    #[error("cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    /// An overlay's layers could not be created, read or recorded.
    #[error("overlay layers in {}: {source}", escape_path(.path))]
    Overlay {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// An error with what the user can do about it, from the layer that knows (the CLI
    /// names its own flags).
    #[error("{error}\n  hint: {hint}")]
    Hint {
        error: Box<Error>,
        hint: &'static str,
    },
    /// Something sbx prints or writes (the man page, a report) could not be written.
    #[error("cannot write {}: {source}", escape(.what))]
    Output {
        what: String,
        source: std::io::Error,
    },
    /// A file the run is to write on the host (a report) cannot be, as found before the run.
    #[error("{option} {source}")]
    HostFile {
        option: &'static str,
        source: HostFileError,
    },
}
