//! The calls that name a path, as sbx's seccomp listener hands them over when a run is
//! observed (`sbx learn`, `--trace-denials`): sbx reads the path from the caller's memory,
//! resolves it against the caller's working directory or directory descriptor, records what
//! the call does to it, and lets the call run as made.
//!
//! What sbx reads may differ from what the kernel then uses (another thread can change the
//! string in between): a record, never a decision. The mounts and landlock decide each call
//! as they do without observation.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use crate::sys::{self, Notification};

/// What a command did to a path (several bits when it did several things).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Access(u8);

impl Access {
    /// Looked it up: stat(2), access(2), readlink(2), an `O_PATH` open, chdir(2).
    pub const LOOKUP: Access = Access(1);
    /// Opened it for reading (a directory: listed it).
    pub const READ: Access = Access(2);
    /// Opened it for writing, truncated it, changed its mode, owner or times.
    pub const WRITE: Access = Access(4);
    /// Created it, or opened it with `O_CREAT` (it may have existed).
    pub const CREATE: Access = Access(8);
    /// Removed or renamed it away.
    pub const REMOVE: Access = Access(16);
    /// Executed it.
    pub const EXEC: Access = Access(32);

    pub fn contains(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn intersects(self, other: Access) -> bool {
        self.0 & other.0 != 0
    }

    pub fn without(self, other: Access) -> Access {
        Access(self.0 & !other.0)
    }

    /// Any of the changes: write, create, remove.
    pub fn changes(self) -> bool {
        self.intersects(Access::WRITE | Access::CREATE | Access::REMOVE)
    }
}

impl std::ops::BitOr for Access {
    type Output = Access;
    fn bitor(self, o: Access) -> Access {
        Access(self.0 | o.0)
    }
}

impl std::ops::BitOrAssign for Access {
    fn bitor_assign(&mut self, o: Access) {
        self.0 |= o.0;
    }
}

/// The paths a run's command named, as the sandbox showed them.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub paths: BTreeMap<PathBuf, Access>,
    /// More distinct paths than sbx keeps (`MAX_PATHS`): the rest were not recorded.
    pub truncated: bool,
}

/// Most distinct paths kept for one run (a few hundred bytes each).
const MAX_PATHS: usize = 500_000;

/// The calls that name a path, on every architecture (see `LEGACY_PATH_CALLS`).
pub const PATH_CALLS: &[i64] = &[
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_readlinkat,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_fchmodat,
    libc::SYS_fchownat,
    libc::SYS_utimensat,
    libc::SYS_truncate,
    libc::SYS_chdir,
    libc::SYS_statfs,
];

/// The older calls that name a path, which x86_64 still has (newer architectures only have
/// the `*at` forms).
#[cfg(target_arch = "x86_64")]
pub const LEGACY_PATH_CALLS: &[i64] = &[
    libc::SYS_open,
    libc::SYS_creat,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_access,
    libc::SYS_readlink,
    libc::SYS_mkdir,
    libc::SYS_rmdir,
    libc::SYS_unlink,
    libc::SYS_rename,
    libc::SYS_link,
    libc::SYS_symlink,
    libc::SYS_chmod,
    libc::SYS_chown,
    libc::SYS_lchown,
    libc::SYS_mknod,
    libc::SYS_utime,
    libc::SYS_utimes,
    libc::SYS_futimesat,
];

#[cfg(not(target_arch = "x86_64"))]
pub const LEGACY_PATH_CALLS: &[i64] = &[];

/// Where a call names a path: the directory it is relative to (an argument holding a
/// descriptor, or the working directory), the argument holding the string, and what the call
/// does to it.
#[derive(Clone, Copy, Debug)]
struct Named {
    dirfd: Option<usize>,
    path: usize,
    access: Access,
}

const fn at(dirfd: usize, path: usize, access: Access) -> Named {
    Named {
        dirfd: Some(dirfd),
        path,
        access,
    }
}

const fn cwd(path: usize, access: Access) -> Named {
    Named {
        dirfd: None,
        path,
        access,
    }
}

/// What an open's flags do to the file.
fn open_access(flags: u64) -> Access {
    let flags = flags as i32;
    if flags & libc::O_PATH != 0 {
        return Access::LOOKUP;
    }
    let mut a = match flags & libc::O_ACCMODE {
        libc::O_RDONLY => Access::READ,
        libc::O_WRONLY => Access::WRITE,
        _ => Access::READ | Access::WRITE,
    };
    if flags & libc::O_CREAT != 0 {
        a |= Access::CREATE;
    }
    if flags & libc::O_TRUNC != 0 {
        a |= Access::WRITE;
    }
    a
}

/// The paths call `n` names. openat2's flags are read from its `struct open_how`.
fn named(n: &Notification) -> Vec<Named> {
    use Access as A;
    let (l, r, w, c, x, d) = (A::LOOKUP, A::READ, A::WRITE, A::CREATE, A::EXEC, A::REMOVE);
    let a = &n.args;
    #[cfg(target_arch = "x86_64")]
    match n.nr {
        libc::SYS_open => return vec![cwd(0, open_access(a[1]))],
        libc::SYS_creat => return vec![cwd(0, c | w)],
        libc::SYS_stat | libc::SYS_lstat | libc::SYS_access | libc::SYS_readlink => {
            return vec![cwd(0, l)];
        }
        libc::SYS_mkdir | libc::SYS_mknod => return vec![cwd(0, c)],
        libc::SYS_rmdir | libc::SYS_unlink => return vec![cwd(0, d)],
        libc::SYS_rename => return vec![cwd(0, d), cwd(1, c)],
        libc::SYS_link => return vec![cwd(0, l), cwd(1, c)],
        libc::SYS_symlink => return vec![cwd(1, c)],
        libc::SYS_chmod
        | libc::SYS_chown
        | libc::SYS_lchown
        | libc::SYS_utime
        | libc::SYS_utimes => return vec![cwd(0, w)],
        libc::SYS_futimesat => return vec![at(0, 1, w)],
        _ => {}
    }
    match n.nr {
        libc::SYS_openat => vec![at(0, 1, open_access(a[2]))],
        libc::SYS_openat2 => {
            let mut how = [0u8; 8];
            match sys::read_memory(n.pid, a[2], &mut how) {
                Ok(8) => vec![at(0, 1, open_access(u64::from_ne_bytes(how)))],
                _ => vec![at(0, 1, r)],
            }
        }
        libc::SYS_execve => vec![cwd(0, x)],
        libc::SYS_execveat => vec![at(0, 1, x)],
        libc::SYS_newfstatat
        | libc::SYS_statx
        | libc::SYS_faccessat
        | libc::SYS_faccessat2
        | libc::SYS_readlinkat => vec![at(0, 1, l)],
        libc::SYS_mkdirat | libc::SYS_mknodat => vec![at(0, 1, c)],
        libc::SYS_unlinkat => vec![at(0, 1, d)],
        libc::SYS_renameat | libc::SYS_renameat2 => vec![at(0, 1, d), at(2, 3, c)],
        libc::SYS_linkat => vec![at(0, 1, l), at(2, 3, c)],
        libc::SYS_symlinkat => vec![at(1, 2, c)],
        libc::SYS_fchmodat | libc::SYS_fchownat | libc::SYS_utimensat => vec![at(0, 1, w)],
        libc::SYS_truncate => vec![cwd(0, w)],
        libc::SYS_chdir | libc::SYS_statfs => vec![cwd(0, l)],
        _ => Vec::new(),
    }
}

/// The paths of one observed run, as they arrive.
#[derive(Default)]
pub(crate) struct Recorder {
    seen: Mutex<Observed>,
}

impl Recorder {
    /// Records what call `n` names. A path sbx cannot read (the caller is gone, the pointer
    /// is bad, the descriptor is not a directory of the tree) is left out.
    pub(crate) fn record(&self, n: &Notification) {
        let found: Vec<(PathBuf, Access)> = named(n)
            .into_iter()
            .filter_map(|w| Some((resolve(n, w)?, w.access)))
            .collect();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for (path, access) in found {
            let full = seen.paths.len() >= MAX_PATHS;
            match seen.paths.get_mut(&path) {
                Some(a) => *a |= access,
                None if full => seen.truncated = true,
                None => {
                    seen.paths.insert(path, access);
                }
            }
        }
    }

    pub(crate) fn take(&self) -> Observed {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The absolute path a call names, as the caller sees it.
fn resolve(n: &Notification, w: Named) -> Option<PathBuf> {
    let name = read_string(n.pid, n.args[w.path])?;
    if name.is_empty() {
        // AT_EMPTY_PATH: the descriptor itself, which was recorded when it was opened.
        return None;
    }
    let name = Path::new(OsStr::from_bytes(&name));
    if name.is_absolute() {
        return Some(normal(name));
    }
    let base = match w.dirfd.map(|i| n.args[i] as i32) {
        None | Some(libc::AT_FDCWD) => format!("/proc/{}/cwd", n.pid),
        Some(fd) => format!("/proc/{}/fd/{fd}", n.pid),
    };
    // The caller's directory as its own root shows it: its mounts are out of sbx's reach,
    // so the kernel names it from the root of the sandbox's tree.
    let dir = std::fs::read_link(base).ok()?;
    dir.is_absolute().then(|| normal(&dir.join(name)))
}

/// `path` without `.`, `..` (taken lexically) and repeated slashes.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The NUL-terminated string at `addr` in process `pid` (at most PATH_MAX bytes), read a page
/// at a time so that a string near the end of its mapping is read whole.
fn read_string(pid: libc::pid_t, addr: u64) -> Option<Vec<u8>> {
    const PAGE: u64 = 4096;
    const PATH_MAX: usize = 4096;
    if addr == 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < PATH_MAX {
        let chunk = (PAGE - at % PAGE) as usize;
        let mut buf = vec![0u8; chunk];
        let got = sys::read_memory(pid, at, &mut buf).ok()?;
        if got == 0 {
            return None;
        }
        if let Some(end) = buf[..got].iter().position(|b| *b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Some(out);
        }
        out.extend_from_slice(&buf[..got]);
        at += got as u64;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_say_what_the_open_does() {
        assert_eq!(open_access(libc::O_RDONLY as u64), Access::READ);
        assert_eq!(
            open_access((libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u64),
            Access::WRITE | Access::CREATE
        );
        assert_eq!(
            open_access((libc::O_RDWR | libc::O_CLOEXEC) as u64),
            Access::READ | Access::WRITE
        );
        assert_eq!(
            open_access((libc::O_PATH | libc::O_DIRECTORY) as u64),
            Access::LOOKUP
        );
    }

    #[test]
    fn paths_are_made_normal_lexically() {
        assert_eq!(normal(Path::new("/a/./b//c/../d")), Path::new("/a/b/d"));
        assert_eq!(normal(Path::new("/../x")), Path::new("/x"));
    }

    #[test]
    fn a_string_is_read_from_this_process() {
        let s = b"/etc/hostname\0";
        let got = read_string(std::process::id() as i32, s.as_ptr() as u64).unwrap();
        assert_eq!(got, b"/etc/hostname");
    }
}
