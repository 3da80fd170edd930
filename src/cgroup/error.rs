//! What can go wrong with cgroups, worded so the user knows what to change on the host.

use std::fmt::Display;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::run::DRAIN_TIMEOUT;

/// What to do when the cgroup is not delegated or lacks a controller.
pub(super) const DELEGATE_HINT: &str = "run sbx in a cgroup delegated to you, e.g. `systemd-run --user --scope -p Delegate=yes sbx ...`";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "this process is in no cgroup v2 hierarchy (/proc/self/cgroup has no `0::` line): the \
         host runs cgroup v1 only"
    )]
    NotInV2,
    #[error(
        "no cgroup2 mount in /proc/self/mountinfo shows this process's cgroup {cgroup:?}: mount \
         cgroup2 (usually at /sys/fs/cgroup) where sbx can see it"
    )]
    NoMount { cgroup: String },
    #[error(
        "cgroup {} is not delegated to uid {uid}: {} is not writable (owner uid {owner}, mode \
         {mode:o}); {DELEGATE_HINT}, or have root chown the directory and its cgroup.procs, \
         cgroup.subtree_control and cgroup.threads to uid {uid}",
        cgroup.display(),
        file.display()
    )]
    NotDelegated {
        cgroup: PathBuf,
        file: PathBuf,
        owner: u32,
        mode: u32,
        uid: u32,
    },
    #[error(
        "cgroup v2 controller{} {} not available in {} (its cgroup.controllers lists: {}): {hint}",
        plural(missing),
        list(missing),
        cgroup.display(),
        if available.is_empty() { "nothing".to_string() } else { list(available) }
    )]
    MissingControllers {
        cgroup: PathBuf,
        missing: Vec<String>,
        available: Vec<String>,
        hint: String,
    },
    #[error(
        "cannot enable the {} controller{} in {}: cgroup v2 allows none in a cgroup that has \
         processes, and other processes live there (pids {}); {DELEGATE_HINT}, so that sbx is \
         alone in its cgroup",
        list(controllers),
        plural(controllers),
        cgroup.display(),
        if others.is_empty() { "that exited meanwhile".to_string() } else { list(others) }
    )]
    Busy {
        cgroup: PathBuf,
        controllers: Vec<String>,
        others: Vec<i32>,
    },
    #[error(
        "processes in {} survived SIGKILL for {DRAIN_TIMEOUT:?} (pids: {})",
        cgroup.display(),
        if pids.is_empty() { "none listed".to_string() } else { list(pids) }
    )]
    Stragglers { cgroup: PathBuf, pids: Vec<i32> },
    #[error("cannot {op} {}: {} ({errno:?})", path.display(), errno.desc())]
    Io {
        op: &'static str,
        path: PathBuf,
        errno: Errno,
    },
    #[error("cannot write {value:?} to {}: {} ({errno:?})", path.display(), errno.desc())]
    Write {
        path: PathBuf,
        value: String,
        errno: Errno,
    },
}

fn list<T: Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural<T>(items: &[T]) -> &'static str {
    if items.len() == 1 { "" } else { "s" }
}

pub(super) fn errno_of(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

pub(super) fn io_err(op: &'static str, path: &Path, e: &io::Error) -> CgroupError {
    CgroupError::Io {
        op,
        path: path.to_path_buf(),
        errno: errno_of(e),
    }
}
