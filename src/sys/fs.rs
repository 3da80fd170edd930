//! Paths: opening, creating and reading metadata, without following what must not be followed.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{Errno, SysResult, check, check_long};

pub fn open(path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> SysResult<RawFd> {
    // SAFETY: path is NUL-terminated; the fd returned is owned by the caller.
    check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) })
}

/// [`open`], owning the result.
pub fn open_owned(path: &CStr, flags: libc::c_int) -> SysResult<OwnedFd> {
    let fd = open(path, flags, 0)?;
    // SAFETY: a fresh fd from open, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `path`, writes `content`, closes it.
pub fn write_file(path: &CStr, flags: libc::c_int, content: &[u8]) -> SysResult {
    let fd = open(path, libc::O_WRONLY | flags, 0o644)?;
    let r = super::write_all(fd, content);
    super::close(fd);
    r
}

/// What is at `path` itself (a symlink is not followed), as (device, inode).
pub fn lstat_id(path: &CStr) -> SysResult<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: path is NUL-terminated; lstat fills `st` when it returns 0.
    check(unsafe { libc::lstat(path.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: lstat succeeded, so `st` is initialised.
    let st = unsafe { st.assume_init() };
    Ok((st.st_dev, st.st_ino))
}

pub fn mkdir(path: &CStr, mode: u32) -> SysResult {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::mkdir(path.as_ptr(), mode) }).map(drop)
}

pub fn symlink(target: &CStr, path: &CStr) -> SysResult {
    // SAFETY: both are NUL-terminated.
    check(unsafe { libc::symlink(target.as_ptr(), path.as_ptr()) }).map(drop)
}

pub fn chdir(path: &CStr) -> SysResult {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

pub fn fchdir(fd: RawFd) -> SysResult {
    // SAFETY: plain syscall on an fd.
    check(unsafe { libc::fchdir(fd) }).map(drop)
}

/// openat2(2) (Linux 5.6) answered ENOSYS: paths are walked one name at a time.
pub(super) static OPENAT2: super::Missing = super::Missing::new();

/// Opens `path` as an O_PATH handle, refusing to follow any symlink on the way (openat2
/// RESOLVE_NO_SYMLINKS): what the plan checked is what gets mounted, even if someone swaps a
/// directory for a symlink in between. Without openat2, the same walk one name at a time
/// (see [`walk_nofollow`]).
pub fn open_path_nofollow(path: &CStr) -> SysResult<RawFd> {
    if OPENAT2.get() {
        return walk_nofollow(path);
    }
    // SAFETY: open_how is plain data; zeroed is valid and the fields are set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: path is NUL-terminated; how and its size are passed as openat2 expects.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    let r = check_long(ret).map(|fd| fd as RawFd);
    if OPENAT2.note(&r) {
        return walk_nofollow(path);
    }
    r
}

/// The file type bits (`S_IFMT`) of what `fd`, an O_PATH handle too, refers to.
pub fn file_type(fd: RawFd) -> SysResult<libc::mode_t> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills `st` when it returns 0; fstat works on O_PATH handles (Linux 3.6).
    check(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so `st` is initialised.
    Ok(unsafe { st.assume_init() }.st_mode & libc::S_IFMT)
}

/// [`open_path_nofollow`] without openat2, as bubblewrap does it: one `openat(O_PATH |
/// O_NOFOLLOW)` per name from `/` (or the working directory for a relative path). O_NOFOLLOW
/// on an O_PATH open returns the symlink itself rather than failing, so each step checks what
/// it opened: a symlink anywhere is ELOOP, like RESOLVE_NO_SYMLINKS (and so is a magic link
/// of /proc, which is a symlink too). `..` and mount points are crossed as openat2 crosses
/// them. Allocates nothing.
pub fn walk_nofollow(path: &CStr) -> SysResult<RawFd> {
    let bytes = path.to_bytes();
    let start: &CStr = match bytes.first() {
        None => return Err(Errno::ENOENT),
        Some(b'/') => c"/",
        Some(_) => c".",
    };
    let mut dir = open(start, libc::O_PATH | libc::O_DIRECTORY, 0)?;
    let mut names = bytes
        .split(|b| *b == b'/')
        .filter(|n| !n.is_empty())
        .peekable();
    while let Some(name) = names.next() {
        let mut buf = [0u8; 256];
        if name.len() >= buf.len() {
            super::close(dir);
            return Err(Errno::ENAMETOOLONG);
        }
        buf[..name.len()].copy_from_slice(name);
        let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: buf holds the name and a NUL; dir is a descriptor this function owns.
        let next = check(unsafe { libc::openat(dir, buf.as_ptr().cast(), flags) });
        super::close(dir);
        dir = next?;
        let kind = file_type(dir).and_then(|t| match t {
            libc::S_IFLNK => Err(Errno::ELOOP),
            libc::S_IFDIR => Ok(()),
            _ if names.peek().is_some() => Err(Errno::ENOTDIR),
            _ => Ok(()),
        });
        if let Err(e) = kind {
            super::close(dir);
            return Err(e);
        }
    }
    Ok(dir)
}

/// The value of the extended attribute `name` of the open file `fd`, into `buf`; returns its
/// length. Read through the descriptor, so it is the attribute of the file that was opened
/// and checked, not of whatever has the same name now.
pub fn fgetxattr(fd: BorrowedFd<'_>, name: &CStr, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: fd is a live descriptor borrowed for the call, name is NUL-terminated and buf's
    // length is passed with it.
    let n = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

/// Sets the file-mode creation mask; returns the previous one.
pub fn umask(mask: libc::mode_t) -> libc::mode_t {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask) }
}

/// A new inotify instance (non-blocking, close-on-exec).
pub fn inotify_init() -> SysResult<RawFd> {
    // SAFETY: plain syscall with flags.
    check(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) })
}

/// [`inotify_init`], owned: closed when dropped.
pub fn inotify_instance() -> SysResult<std::os::fd::OwnedFd> {
    // SAFETY: a fresh descriptor from inotify_init1, owned by nothing else.
    inotify_init().map(|fd| unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// Watches `path` for `mask`; returns the watch descriptor.
pub fn inotify_add_watch(fd: RawFd, path: &CStr, mask: u32) -> SysResult<libc::c_int> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::inotify_add_watch(fd, path.as_ptr(), mask) })
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn c(p: &std::path::Path) -> CString {
        CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
    }

    /// (device, inode) of what `fd` holds; closes it.
    fn id_of(fd: RawFd) -> (u64, u64) {
        let meta = std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap();
        super::super::close(fd);
        (meta.dev(), meta.ino())
    }

    #[test]
    fn the_walk_opens_what_openat2_opens() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/f"), "x").unwrap();
        for p in ["a", "a/b", "a/b/f", "a//b/./f", "a/b/../b/f"] {
            let path = c(&d.path().join(p));
            let want = std::fs::metadata(d.path().join(p)).unwrap();
            assert_eq!(
                id_of(walk_nofollow(&path).unwrap()),
                (want.dev(), want.ino()),
                "{p}"
            );
            assert_eq!(
                id_of(open_path_nofollow(&path).unwrap()),
                (want.dev(), want.ino())
            );
        }
        let root = std::fs::metadata("/").unwrap();
        assert_eq!(
            id_of(walk_nofollow(c"/").unwrap()),
            (root.dev(), root.ino())
        );
    }

    #[test]
    fn the_walk_follows_no_symlink_anywhere() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("dir")).unwrap();
        std::fs::write(d.path().join("dir/f"), "x").unwrap();
        std::os::unix::fs::symlink("dir", d.path().join("link")).unwrap();
        std::os::unix::fs::symlink("dir/f", d.path().join("flink")).unwrap();
        for p in ["link", "link/f", "flink"] {
            let path = c(&d.path().join(p));
            assert_eq!(walk_nofollow(&path).err(), Some(Errno::ELOOP), "{p}");
            assert_eq!(open_path_nofollow(&path).err(), Some(Errno::ELOOP), "{p}");
        }
        // The magic links of /proc are symlinks too.
        let pid = std::process::id();
        for p in [format!("/proc/{pid}/cwd"), format!("/proc/{pid}/root/etc")] {
            let path = CString::new(p.clone()).unwrap();
            assert_eq!(walk_nofollow(&path).err(), Some(Errno::ELOOP), "{p}");
        }
    }

    #[test]
    fn the_walk_says_what_is_wrong_with_a_path() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), "x").unwrap();
        let at = |p: &str| walk_nofollow(&c(&d.path().join(p))).err();
        assert_eq!(at("f/g"), Some(Errno::ENOTDIR));
        assert_eq!(at("missing"), Some(Errno::ENOENT));
        assert_eq!(at(&"n".repeat(256)), Some(Errno::ENAMETOOLONG));
        assert_eq!(walk_nofollow(c"").err(), Some(Errno::ENOENT));
    }
}
