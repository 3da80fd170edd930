//! The errors sbx reports before or instead of running the command. All of them exit 125.

use crate::diagnose;
use crate::plan::{NamespaceSet, PlanError};
use crate::profile::ProfileError;
use nix::errno::Errno;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Usage(String),
    #[error("{}", diagnose::spawn_failure(*errno, *flags))]
    Spawn { errno: Errno, flags: NamespaceSet },
    #[error("cannot {what}: {} ({errno:?})", errno.desc())]
    Supervisor { what: &'static str, errno: Errno },
    #[error("{0}")]
    Setup(String),
    /// Not a failure: `--explain` printed the plan instead of running it.
    #[error("explained")]
    Explained,
    #[error("cgroup: {0}")]
    Cgroup(#[from] crate::cgroup::CgroupError),
}
