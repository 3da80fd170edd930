//! Guards for protected paths that do not exist (see `plan::mount::protect`): nothing can be
//! mounted where nothing is, so the supervisor watches the parent directories on the host with
//! inotify and ends the run the moment the command creates (or replaces) a protected name.
//! When the run is over, whatever appeared is moved aside within its directory, to
//! `NAME.sbx-refused-PID`, so that no host tool finds it under the name it trusts; the user
//! decides what to do with it. A check after the run catches an event the queue lost.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{AtFlags, OFlag, RenameFlags};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
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

struct Watched {
    wd: WatchDescriptor,
    /// The directory, opened before the sandbox started: moving a name aside never resolves
    /// a path the sandbox could have changed.
    dir: OwnedFd,
    /// Indices into `Guard::planned` of the names guarded here.
    names: Vec<usize>,
}

pub struct Guard {
    inotify: Inotify,
    watched: Vec<Watched>,
    planned: Vec<Planned>,
    /// Indices of the guards that tripped.
    tripped: Vec<usize>,
}

/// What is at `name` in `dir` now: (device, inode), None when nothing is.
fn identity(dir: &OwnedFd, name: &OsString) -> Option<(u64, u64)> {
    nix::sys::stat::fstatat(dir.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
        .ok()
        .map(|st| (st.st_dev, st.st_ino))
}

impl Guard {
    /// Starts watching; None when no protected path needs a guard. Failing to watch fails the
    /// run: a requested protection that cannot be applied stops it.
    pub fn new(plan: &ProtectPlan) -> Result<Option<Guard>, Error> {
        if plan.guards.is_empty() {
            return Ok(None);
        }
        let fail = |what, errno| Error::Supervisor { what, errno };
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| fail("watch the protected paths (inotify_init)", e))?;
        let mut watched: Vec<Watched> = Vec::new();
        for (i, g) in plan.guards.iter().enumerate() {
            if let Some(w) = watched
                .iter_mut()
                .find(|w| plan.guards[w.names[0]].dir == g.dir)
            {
                w.names.push(i);
                continue;
            }
            let dir = nix::fcntl::open(
                &g.dir,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| fail("open a directory of protected paths", e))?;
            let mask = AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_ONLYDIR
                | AddWatchFlags::IN_DONT_FOLLOW;
            let wd = inotify
                .add_watch(&g.dir, mask)
                .map_err(|e| fail("watch the protected paths (inotify_add_watch)", e))?;
            watched.push(Watched {
                wd,
                dir,
                names: vec![i],
            });
        }
        Ok(Some(Guard {
            inotify,
            watched,
            planned: plan.guards.clone(),
            tripped: Vec::new(),
        }))
    }

    pub fn fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }

    fn trip(&mut self, i: usize) {
        if !self.tripped.contains(&i) {
            tracing::debug!("protected path touched: {}", self.planned[i].shown);
            self.tripped.push(i);
        }
    }

    /// Reads the events that arrived; true when a guard tripped (now or before).
    pub fn read(&mut self) -> bool {
        let events = self.inotify.read_events().unwrap_or_default();
        for e in events {
            if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                // Events were lost: look at every guarded name.
                self.check();
                continue;
            }
            let Some(name) = e.name else { continue };
            let hits: Vec<usize> = self
                .watched
                .iter()
                .filter(|w| w.wd == e.wd)
                .flat_map(|w| w.names.iter().copied())
                .filter(|i| self.planned[*i].name == name)
                .collect();
            for i in hits {
                self.trip(i);
            }
        }
        !self.tripped.is_empty()
    }

    /// Compares every guarded name with what was there when the run started.
    pub fn check(&mut self) {
        let changed: Vec<usize> = self
            .watched
            .iter()
            .flat_map(|w| w.names.iter().map(move |i| (w, *i)))
            .filter(|(w, i)| identity(&w.dir, &self.planned[*i].name) != self.planned[*i].existing)
            .map(|(_, i)| i)
            .collect();
        for i in changed {
            self.trip(i);
        }
    }

    /// Once the sandbox is gone: moves each name that appeared aside, within its directory.
    pub fn defuse(mut self) -> Vec<Tripped> {
        self.read();
        self.check();
        let me = std::process::id();
        let mut out = Vec::new();
        for &i in &self.tripped {
            let g = &self.planned[i];
            let Some(w) = self.watched.iter().find(|w| w.names.contains(&i)) else {
                continue;
            };
            let now = identity(&w.dir, &g.name);
            let moved_to = (now.is_some() && now != g.existing)
                .then(|| {
                    (0..100).find_map(|n| {
                        let mut aside = g.name.clone();
                        aside.push(format!(".sbx-refused-{me}"));
                        if n > 0 {
                            aside.push(format!("-{n}"));
                        }
                        nix::fcntl::renameat2(
                            w.dir.as_fd(),
                            g.name.as_os_str(),
                            w.dir.as_fd(),
                            aside.as_os_str(),
                            RenameFlags::RENAME_NOREPLACE,
                        )
                        .ok()
                        .map(|_| g.dir.join(&aside))
                    })
                })
                .flatten();
            if now.is_some() && moved_to.is_none() && now != g.existing {
                tracing::error!(
                    "cannot move {} aside: host tools may use it",
                    String::from_utf8_lossy(g.dir.join(&g.name).as_os_str().as_bytes())
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
