//! Init's watch over the protected paths that do not exist (see `plan::mount::protect`): an
//! inotify instance on their parent directories, set up once the root is built and before the
//! command exists, read in init's loop. Init rather than the supervisor holds it because
//! destroying an inotify instance waits for the kernel's mark reaper (an SRCU grace period,
//! 8 ms measured), and the supervisor does not wait for init's exit. Where it does (the run
//! has a cgroup to remove), the supervisor makes the instance before the clone and the cgroup's
//! janitor keeps a second reference, so that init's close is not the one that waits
//! (`SpawnOptions::watch`). Allocation-free: init is a fork.

use std::os::fd::RawFd;

use super::channel::{Failure, Step};
use crate::plan::{MAX_GUARDS, Plan};
use crate::sys;

const MASK: u32 = libc::IN_CREATE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_ONLYDIR
    | libc::IN_DONT_FOLLOW;

pub struct Watch {
    fd: RawFd,
    /// The watch descriptor of each guard's directory, by guard index.
    wds: [libc::c_int; MAX_GUARDS],
}

/// Room for inotify events, aligned as `struct inotify_event` wants.
#[repr(C, align(8))]
struct Events([u8; 4096]);

impl Watch {
    /// Watches every guard's directory, on `instance` if the supervisor made one, else on a
    /// new one; None when there is no guard.
    pub fn start(plan: &Plan, instance: Option<RawFd>) -> Result<Option<Watch>, Failure> {
        let guards = &plan.protect.guards;
        if guards.is_empty() {
            return Ok(None);
        }
        let fd = match instance {
            Some(fd) => fd,
            None => sys::inotify_init().map_err(|e| Failure::new(Step::Protect, e))?,
        };
        let mut wds = [-1; MAX_GUARDS];
        for (i, g) in guards.iter().take(MAX_GUARDS).enumerate() {
            // The same directory gives the same watch descriptor again.
            wds[i] = sys::inotify_add_watch(fd, &g.inside, MASK)
                .map_err(|e| Failure::at(Step::Protect, i, e))?;
        }
        Ok(Some(Watch { fd, wds }))
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Reads what arrived; the index of a guard whose name appeared, changed or went, if any
    /// (every guard's when events were lost).
    pub fn tripped(&self, plan: &Plan) -> Option<usize> {
        let mut buf = Events([0; 4096]);
        let mut hit = None;
        while let Ok(n) = sys::read(self.fd, &mut buf.0) {
            if n == 0 {
                break;
            }
            let mut at = 0;
            while at + 16 <= n {
                let word = |o: usize| {
                    u32::from_ne_bytes(buf.0[at + o..at + o + 4].try_into().expect("4 bytes"))
                };
                let (wd, mask, len) = (word(0) as libc::c_int, word(4), word(12) as usize);
                let name = &buf.0[(at + 16).min(n)..(at + 16 + len).min(n)];
                let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
                if mask & libc::IN_Q_OVERFLOW != 0 {
                    // Events were lost (a storm of renames in a watched directory): look at
                    // each guarded name itself rather than take every guard as tripped.
                    hit = hit.or_else(|| changed(plan));
                }
                for (i, g) in plan.protect.guards.iter().take(MAX_GUARDS).enumerate() {
                    if self.wds[i] == wd && g.name.as_encoded_bytes() == name {
                        hit = hit.or(Some(i));
                    }
                }
                at += 16 + len;
            }
        }
        hit
    }
}

/// The first guard whose name is not what it was when the run was planned.
fn changed(plan: &Plan) -> Option<usize> {
    plan.protect.guards.iter().take(MAX_GUARDS).position(|g| {
        match sys::lstat_id(&g.path_inside) {
            Ok(id) => Some(id) != g.existing,
            Err(sys::Errno::ENOENT) => g.existing.is_some(),
            // Cannot tell (the directory itself went, or is unreadable): fail closed.
            Err(_) => true,
        }
    })
}
