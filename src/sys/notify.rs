//! Seccomp user notifications, as the supervisor serves them: receiving a notification,
//! reading the caller's memory and descriptors, and answering.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::{Errno, SysResult, check, check_long};

/// One intercepted system call.
#[derive(Clone, Copy, Debug)]
pub struct Notification {
    pub id: u64,
    /// The caller, in the supervisor's PID namespace.
    pub pid: libc::pid_t,
    /// The system call's number.
    pub nr: i64,
    pub args: [u64; 6],
}

/// Waits for the next notification. EINTR is retried; ENOENT means the caller went away
/// between the kernel's wake-up and this call (take the next one).
pub fn notif_recv(listener: RawFd) -> SysResult<Notification> {
    loop {
        // SAFETY: seccomp_notif is plain data; the kernel requires it zeroed on entry.
        let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: RECV fills a seccomp_notif the caller owns.
        let r =
            check(unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_RECV as _, &mut n) });
        match r {
            Ok(_) => {
                return Ok(Notification {
                    id: n.id,
                    pid: n.pid as libc::pid_t,
                    nr: i64::from(n.data.nr),
                    args: n.data.args,
                });
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// How an intercepted call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The kernel runs the call as the caller made it.
    Continue,
    /// The call returns this value without running.
    Value(i64),
    /// The call fails with this errno without running.
    Fail(Errno),
}

/// Answers notification `id`. ENOENT: the caller is gone or was interrupted; nothing to do.
pub fn notif_respond(listener: RawFd, id: u64, answer: Answer) -> SysResult {
    let (val, error, flags) = match answer {
        Answer::Continue => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
        Answer::Value(v) => (v, 0, 0),
        Answer::Fail(e) => (0, -(e as i32), 0),
    };
    let mut resp = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags,
    };
    // SAFETY: SEND reads a seccomp_notif_resp the caller owns.
    check(unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_SEND as _, &mut resp) })
        .map(drop)
}

/// Whether notification `id` still stands: its caller is alive and still waiting, so a pid or
/// descriptor read since it arrived belongs to that caller.
pub fn notif_id_valid(listener: RawFd, id: u64) -> bool {
    let mut id = id;
    // SAFETY: ID_VALID reads one u64.
    check(unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID as _, &mut id) })
        .is_ok()
}

/// A duplicate of descriptor `fd` of the process behind `pidfd` (Linux 5.6; ptrace access).
pub fn pidfd_getfd(pidfd: RawFd, fd: RawFd) -> SysResult<OwnedFd> {
    // SAFETY: plain syscall with two descriptors' numbers and no flags.
    let r = check_long(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) })?;
    // SAFETY: a fresh descriptor, owned by nothing else (pidfd_getfd sets CLOEXEC).
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Reads `buf.len()` bytes at `addr` in process `pid` (ptrace access); returns how many.
pub fn read_memory(pid: libc::pid_t, addr: u64, buf: &mut [u8]) -> SysResult<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, which outlives the call; the kernel checks `remote`
    // against the other process's mappings.
    let r = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as usize)
    }
}
