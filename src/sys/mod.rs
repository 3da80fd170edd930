//! The one place sbx talks to the kernel directly. Every raw system call goes through a wrapper
//! here (or through nix, where nix has it), so that `unsafe` code lives in this module alone.
//!
//! The wrappers take C strings prepared by the plan and return the errno on failure. The ones
//! the sandbox's processes call between clone and execve never allocate (those processes may
//! be forks of a multi-threaded program, whose allocator locks a child must not touch).

#![allow(unsafe_code)]

mod fd;
mod fs;
mod mount;
mod net;
mod notify;
mod process;
mod procfs;
mod security;
mod term;

pub use nix::errno::Errno;

pub use fd::*;
pub use fs::*;
pub use mount::*;
pub use net::*;
pub use notify::*;
pub use process::*;
pub use procfs::*;
pub use security::*;
pub use term::*;

pub type SysResult<T = ()> = Result<T, Errno>;

/// A newer system call found missing in this process: the kernel predates it, or a seccomp
/// filter (gVisor, systemd's `SystemCallFilter=`, an older container profile) answers it with
/// ENOSYS. Set at the first such answer, so that every later use goes straight to the
/// classic fallback without asking again; never cleared (a filter is never lifted). A plain
/// static: the sandbox's processes read it without allocating, and a fork inherits it.
pub struct Missing(std::sync::atomic::AtomicBool);

impl Missing {
    pub const fn new() -> Missing {
        Missing(std::sync::atomic::AtomicBool::new(false))
    }

    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records `r`'s error if it says the call is missing (ENOSYS); returns whether it did.
    pub fn note<T>(&self, r: &SysResult<T>) -> bool {
        let missing = matches!(r, Err(Errno::ENOSYS));
        if missing {
            self.set();
        }
        missing
    }
}

bitflags::bitflags! {
    /// The newer system calls this process found missing, each replaced by its classic
    /// fallback (with the same guarantees; see where each is used).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Fallbacks: u32 {
        const OPENAT2 = 1;
        const MOUNT_API = 2;
        const CLOSE_RANGE_CLOEXEC = 4;
        const CLOSE_RANGE = 8;
        const PIDFD_OPEN = 16;
    }
}

impl Fallbacks {
    /// What each stands for, with the kernel that brought it.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        [
            (Fallbacks::OPENAT2, "openat2 (Linux 5.6)"),
            (
                Fallbacks::MOUNT_API,
                "the new mount API (open_tree and move_mount: Linux 5.2; mount_setattr: 5.12)",
            ),
            (Fallbacks::CLOSE_RANGE, "close_range (Linux 5.9)"),
            (
                Fallbacks::CLOSE_RANGE_CLOEXEC,
                "close_range's CLOEXEC flag (Linux 5.11)",
            ),
            (Fallbacks::PIDFD_OPEN, "pidfd_open (Linux 5.3)"),
        ]
        .into_iter()
        .filter(move |(f, _)| self.contains(*f))
        .map(|(_, name)| name)
    }
}

/// The fallbacks this process has taken so far.
pub fn fallbacks() -> Fallbacks {
    let mut f = Fallbacks::empty();
    for (missing, flag) in [
        (&fs::OPENAT2, Fallbacks::OPENAT2),
        (&mount::MOUNT_API, Fallbacks::MOUNT_API),
        (&fd::CLOSE_RANGE_CLOEXEC, Fallbacks::CLOSE_RANGE_CLOEXEC),
        (&fd::CLOSE_RANGE, Fallbacks::CLOSE_RANGE),
        (&process::PIDFD_OPEN, Fallbacks::PIDFD_OPEN),
    ] {
        f.set(flag, missing.get());
    }
    f
}

fn check(ret: libc::c_int) -> SysResult<libc::c_int> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

fn check_long(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}
