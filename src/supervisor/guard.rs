//! The host side of the guards of protected paths that do not exist (see
//! `plan::mount::protect`): the sandbox's init watches for them and ends the command when one
//! appears (see `sandbox::watch`); here, the directories are opened before the sandbox starts,
//! every guarded name is checked again once it is over (which also catches what init could not
//! see: a run with `--as-pid-1`, a lost event), and whatever appeared is moved aside within its
//! directory, to `NAME.sbx-refused-PID`, so that no host tool finds it under the name it trusts.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{AtFlags, OFlag, RenameFlags};
use nix::sys::stat::Mode;

use crate::error::Error;
use crate::plan::{Guard as Planned, ProtectPlan};

/// A protected name that appeared, and where it was moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tripped {
    /// The protected path as the sandbox names it.
    pub path: String,
    /// Where it is on the host now (None: it could not be moved, or it was removed).
    pub moved_to: Option<String>,
}

pub struct Guard {
    /// The guards' directories, each opened once before the sandbox started: moving a name
    /// aside never resolves a path the sandbox could have changed.
    dirs: Vec<OwnedFd>,
    /// For each guard, its directory's index in `dirs`.
    dir_of: Vec<usize>,
    planned: Vec<Planned>,
}

/// What is at `name` in `dir` now: (device, inode), None when nothing is.
fn identity(dir: &OwnedFd, name: &OsString) -> Option<(u64, u64)> {
    nix::sys::stat::fstatat(dir.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
        .ok()
        .map(|st| (st.st_dev, st.st_ino))
}

impl Guard {
    /// Opens the guards' directories; None when there is no guard.
    pub fn new(plan: &ProtectPlan) -> Result<Option<Guard>, Error> {
        if plan.guards.is_empty() {
            return Ok(None);
        }
        let mut dirs = Vec::new();
        let mut dir_of = Vec::new();
        for (i, g) in plan.guards.iter().enumerate() {
            if let Some(j) = plan.guards[..i].iter().position(|o| o.dir == g.dir) {
                dir_of.push(dir_of[j]);
                continue;
            }
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let fd = nix::fcntl::open(&g.dir, flags, Mode::empty()).map_err(|errno| {
                Error::Supervisor {
                    what: "open a directory of protected paths",
                    errno,
                }
            })?;
            dir_of.push(dirs.len());
            dirs.push(fd);
        }
        Ok(Some(Guard {
            dirs,
            dir_of,
            planned: plan.guards.clone(),
        }))
    }

    /// Once the sandbox is gone: the guards init reported, and any whose name is not what it
    /// was, are moved aside.
    pub fn defuse(self, reported: &[usize]) -> Vec<Tripped> {
        let me = std::process::id();
        let mut out = Vec::new();
        for (i, g) in self.planned.iter().enumerate() {
            let dir = &self.dirs[self.dir_of[i]];
            let now = identity(dir, &g.name);
            let changed = now != g.existing;
            if !changed && !reported.contains(&i) {
                continue;
            }
            let moved_to = (now.is_some() && changed)
                .then(|| {
                    (0..100).find_map(|n| {
                        let mut aside = g.name.clone();
                        aside.push(format!(".sbx-refused-{me}"));
                        if n > 0 {
                            aside.push(format!("-{n}"));
                        }
                        nix::fcntl::renameat2(
                            dir.as_fd(),
                            g.name.as_os_str(),
                            dir.as_fd(),
                            aside.as_os_str(),
                            RenameFlags::RENAME_NOREPLACE,
                        )
                        .ok()
                        .map(|_| g.dir.join(&aside))
                    })
                })
                .flatten();
            if now.is_some() && changed && moved_to.is_none() {
                tracing::error!(
                    "cannot move {} aside: host tools may use it",
                    crate::text::escape_path(&g.dir.join(&g.name))
                );
            }
            out.push(Tripped {
                path: g.shown.clone(),
                moved_to: moved_to.map(|p| p.to_string_lossy().into_owned()),
            });
        }
        out
    }
}
