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

/// Opens `path` as an O_PATH handle, refusing to follow any symlink on the way (openat2
/// RESOLVE_NO_SYMLINKS): what the plan checked is what gets mounted, even if someone swaps a
/// directory for a symlink in between.
pub fn open_path_nofollow(path: &CStr) -> SysResult<RawFd> {
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
    check_long(ret).map(|fd| fd as RawFd)
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

/// Watches `path` for `mask`; returns the watch descriptor.
pub fn inotify_add_watch(fd: RawFd, path: &CStr, mask: u32) -> SysResult<libc::c_int> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::inotify_add_watch(fd, path.as_ptr(), mask) })
}
