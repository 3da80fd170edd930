//! Mounts: the classic mount(2) and the new mount API (open_tree, mount_setattr, move_mount).

use std::ffi::CStr;
use std::os::fd::RawFd;

use super::{Missing, SysResult, check, check_long};

/// open_tree or move_mount (Linux 5.2) or mount_setattr (5.12) answered ENOSYS: binds are
/// placed and made read-only with mount(2) alone (see `sandbox::rootfs`).
pub(super) static MOUNT_API: Missing = Missing::new();

/// Whether the new mount API was found missing in this process.
pub fn mount_api_missing() -> bool {
    MOUNT_API.get()
}

/// Records an ENOSYS from a call of the new mount API; returns whether `r` was one.
pub fn note_mount_api<T>(r: &SysResult<T>) -> bool {
    MOUNT_API.note(r)
}

fn ptr_or_null(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

pub fn mount(
    src: Option<&CStr>,
    dst: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> SysResult {
    // SAFETY: every pointer is a valid NUL-terminated string or null, as mount(2) accepts.
    let ret = unsafe {
        libc::mount(
            ptr_or_null(src),
            dst.as_ptr(),
            ptr_or_null(fstype),
            flags,
            ptr_or_null(data).cast(),
        )
    };
    check(ret).map(drop)
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn setattr(dfd: RawFd, path: &CStr, flags: libc::c_uint, set: u64) -> SysResult {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: path is NUL-terminated, attr lives across the call and its size is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dfd,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check_long(ret).map(drop)
}

/// Sets mount attributes, recursively when asked. Unlike a remount, this keeps the flags the
/// kernel locked on the source and reaches every submount.
pub fn mount_setattr(path: &CStr, recursive: bool, set: u64) -> SysResult {
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 } as libc::c_uint;
    setattr(libc::AT_FDCWD, path, flags, set)
}

/// Sets attributes on every mount of a detached tree, before anyone can see it.
pub fn mount_setattr_fd(fd: RawFd, set: u64) -> SysResult {
    setattr(
        fd,
        c"",
        (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
        set,
    )
}

/// ST_NOSYMFOLLOW of statvfs(3) (Linux 5.10); libc does not name it.
const ST_NOSYMFOLLOW: libc::c_ulong = 0x2000;

/// The flags of the mount that `fd` is on which a bind remount must repeat, as `MS_*` flags:
/// MS_REMOUNT|MS_BIND replaces them all, and clearing one the kernel locked (a mount from a
/// more privileged namespace) fails with EPERM. The atime flags are left out: a remount
/// without any keeps them as they are.
pub fn mount_flags(fd: RawFd) -> SysResult<libc::c_ulong> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: fstatvfs (glibc's fstatfs, which works on O_PATH handles since Linux 3.12) fills
    // `st` when it returns 0.
    check(unsafe { libc::fstatvfs(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstatvfs succeeded, so `st` is initialised.
    let f = unsafe { st.assume_init() }.f_flag;
    let same = libc::ST_RDONLY | libc::ST_NOSUID | libc::ST_NODEV | libc::ST_NOEXEC;
    const _: () = assert!(libc::ST_RDONLY == libc::MS_RDONLY && libc::ST_NOEXEC == libc::MS_NOEXEC);
    const _: () = assert!(libc::ST_NOSUID == libc::MS_NOSUID && libc::ST_NODEV == libc::MS_NODEV);
    let nosymfollow = match f & ST_NOSYMFOLLOW {
        0 => 0,
        _ => libc::MS_NOSYMFOLLOW,
    };
    Ok((f & same) | nosymfollow)
}

/// Changes the flags of the mount whose root `target` names (MS_REMOUNT|MS_BIND): `flags`
/// become its flags, all of them (see [`mount_flags`]). Only that mount: submounts keep theirs.
pub fn remount(target: &CStr, flags: libc::c_ulong) -> SysResult {
    mount(
        None,
        target,
        None,
        libc::MS_REMOUNT | libc::MS_BIND | flags,
        None,
    )
}

pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> SysResult {
    // SAFETY: both arguments are NUL-terminated paths.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    check_long(ret).map(drop)
}

pub fn umount_detach(path: &CStr) -> SysResult {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// A detached recursive copy of the mount tree at `fd` (a bind mount not yet attached).
pub fn open_tree_clone(fd: RawFd) -> SysResult<RawFd> {
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | libc::AT_RECURSIVE as libc::c_uint
        | libc::AT_EMPTY_PATH as libc::c_uint;
    // SAFETY: an empty path with AT_EMPTY_PATH operates on fd itself.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, fd, c"".as_ptr(), flags) };
    check_long(ret).map(|fd| fd as RawFd)
}

/// Attaches the detached tree `from` onto the directory or file open at `to`.
pub fn move_mount_fds(from: RawFd, to: RawFd) -> SysResult {
    // SAFETY: both paths are empty and both fds are ours, as the EMPTY_PATH flags require.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            c"".as_ptr(),
            to,
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    check_long(ret).map(drop)
}
