//! The privilege layers: namespaces joined or created, capabilities, no_new_privs, landlock's
//! ABI probe and seccomp.

use std::ffi::CStr;
use std::os::fd::RawFd;

use libc::{c_int, c_ulong};

use super::{Errno, SysResult, check, check_long};

/// Moves the calling process into the namespace `fd` refers to (a namespace fd, or a pidfd
/// with `nstype` naming which of that process's namespaces).
pub fn setns(fd: RawFd, nstype: c_int) -> SysResult {
    // SAFETY: plain syscall on an fd we own.
    check(unsafe { libc::setns(fd, nstype) }).map(drop)
}

pub fn unshare(flags: c_int) -> SysResult {
    // SAFETY: plain syscall with flags.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

pub fn sethostname(name: &CStr) -> SysResult {
    // SAFETY: the pointer and length describe the name without its NUL.
    check(unsafe { libc::sethostname(name.as_ptr(), name.to_bytes().len()) }).map(drop)
}

/// The landlock ABI version of the running kernel, or 0 when landlock is unavailable.
pub fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute and size 0, the VERSION flag only queries the ABI.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 { 0 } else { v as i32 }
}

/// Empties every capability set: bounding (so execve cannot regain any, even as uid 0),
/// ambient, then effective, permitted and inheritable.
pub fn drop_capabilities() -> SysResult {
    let mut cap: c_ulong = 0;
    loop {
        // SAFETY: PR_CAPBSET_DROP takes a capability number; EINVAL marks the end.
        let r = unsafe {
            libc::prctl(
                libc::PR_CAPBSET_DROP,
                cap,
                0 as c_ulong,
                0 as c_ulong,
                0 as c_ulong,
            )
        };
        if r < 0 {
            match Errno::last() {
                Errno::EINVAL => break,
                e => return Err(e),
            }
        }
        cap += 1;
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no further arguments.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
        )
    })?;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: a version-3 header with two data words, as capset(2) expects.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
    check_long(ret).map(drop)
}

pub fn set_no_new_privs() -> SysResult {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes 1 and zeros.
    check(unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
        )
    })
    .map(drop)
}

/// Installs one classic-BPF seccomp program (no_new_privs must be set).
pub fn seccomp_filter(prog: &[seccompiler::sock_filter]) -> SysResult {
    seccomp_install(prog, 0).map(drop)
}

/// Installs a program whose `SECCOMP_RET_USER_NOTIF` answers a supervisor listens to, and
/// returns the listener (Linux 5.0; EBUSY when a filter above already has one). Needs
/// no_new_privs or CAP_SYS_ADMIN in the process's user namespace.
pub fn seccomp_listener(prog: &[seccompiler::sock_filter]) -> SysResult<RawFd> {
    seccomp_install(prog, libc::SECCOMP_FILTER_FLAG_NEW_LISTENER).map(|fd| fd as RawFd)
}

fn seccomp_install(prog: &[seccompiler::sock_filter], flags: c_ulong) -> SysResult<libc::c_long> {
    #[repr(C)]
    struct SockFprog {
        len: libc::c_ushort,
        filter: *const seccompiler::sock_filter,
    }
    let fprog = SockFprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_ptr(),
    };
    // SAFETY: fprog points at `len` instructions that outlive the call; sock_filter has the
    // kernel's layout (seccompiler declares it repr(C)).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const SockFprog,
        )
    };
    check_long(ret)
}
