//! cgroup v2 budgets for one run, when the host delegates a subtree to the user (systemd's
//! `Delegate=yes`, or a directory root chowned to them).
//!
//! [`detect`](fn@detect) finds the cgroup the supervisor was started in (`own`) and checks
//! that it is ours to manage. [`RunCgroup::create`] then builds, under it:
//!
//! ```text
//! <own>/                      delegated to us. The controllers a run needs are enabled in its
//! │                           cgroup.subtree_control, and stay enabled (other runs use them).
//! ├── sbx-<pid>.supervisor/   the supervisor itself, when it had to leave <own> (see below)
//! └── sbx-<pid>-<n>/          one run: limits are written, statistics read and cgroup.kill
//!     │                       done here
//!     └── sandbox/            the sandbox's processes (`add_process`, `dir_fd`)
//! ```
//!
//! Why processes go one level below the limits: the kernel gives every file of a new cgroup
//! to its creator, which is the uid the payload runs as. In `sandbox/`, whose subtree_control
//! stays empty, there is no memory.max to rewrite, and a payload whose cgroup namespace is
//! rooted there cannot see the run cgroup's files at all. Limits apply to the whole subtree.
//!
//! Why the supervisor may move itself: cgroup v2 forbids enabling (domain) controllers in a
//! cgroup that has processes of its own, and the supervisor lives in `own`. So before enabling
//! controllers there, it moves into the leaf `sbx-<pid>.supervisor`. It cannot move back while
//! the controllers are enabled, so that leaf outlives the run (empty once sbx exits); a later
//! run removes leaves of supervisors that are gone. Any other process in `own` (the shell that
//! started sbx, say) makes the kernel refuse with EBUSY, reported as [`CgroupError::Busy`].

mod detect;
mod error;
mod files;
mod mountinfo;
mod run;

pub use detect::{detect, detect_from, v2_path};
pub use error::CgroupError;
pub use run::RunCgroup;

use std::path::PathBuf;

/// Whole-sandbox budgets. None leaves that resource unlimited (and its controller untouched).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// memory.max in bytes. Swap is then forbidden too (memory.swap.max = 0), or the limit
    /// would only push the excess into swap.
    pub memory_max: Option<u64>,
    /// pids.max: processes and threads together.
    pub pids_max: Option<u64>,
    /// cpu.max as (quota, period) in microseconds: (150000, 100000) is 1.5 CPUs.
    pub cpu_max: Option<(u64, u64)>,
}

impl Limits {
    /// The controllers these limits need, in the order they are enabled.
    pub fn controllers(&self) -> Vec<&'static str> {
        let mut c = Vec::new();
        if self.memory_max.is_some() {
            c.push("memory");
        }
        if self.pids_max.is_some() {
            c.push("pids");
        }
        if self.cpu_max.is_some() {
            c.push("cpu");
        }
        c
    }

    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// Where sbx may create cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delegation {
    /// The cgroup2 mount point.
    pub mount: PathBuf,
    /// The supervisor's own cgroup directory (the parent of its supervisor leaf, if it has
    /// already moved into one).
    pub own: PathBuf,
    /// The controllers `own` offers to its children (its cgroup.controllers).
    pub available: Vec<String>,
}

/// What a run cgroup measured. Files the kernel does not provide (controller not enabled,
/// older kernel) leave their fields None.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// memory.peak (Linux 5.19+, memory controller), bytes.
    pub memory_peak: Option<u64>,
    /// cpu.stat usage_usec, user_usec and system_usec (always present on cgroup v2).
    pub cpu_usage_usec: Option<u64>,
    pub cpu_user_usec: Option<u64>,
    pub cpu_system_usec: Option<u64>,
    /// memory.events oom_kill: processes the OOM killer killed in the run.
    pub oom_kills: Option<u64>,
}

#[cfg(test)]
mod tests;
