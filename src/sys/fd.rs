//! File descriptors: pipes and sockets between sbx's processes, reads and writes, closing.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use super::{Errno, Missing, SysResult, check};

pub fn close(fd: RawFd) {
    // SAFETY: closing an fd the caller owns; errors from close are not actionable here.
    unsafe { libc::close(fd) };
}

pub fn write_all(fd: RawFd, mut buf: &[u8]) -> SysResult {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Reads what is there, up to `buf.len()` bytes; returns the bytes read (0 at end of file).
pub fn read(fd: RawFd, buf: &mut [u8]) -> SysResult<usize> {
    loop {
        // SAFETY: buf is a valid writable slice for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
}

/// Blocks until one byte arrives; Ok(false) at end of file.
pub fn read_byte(fd: RawFd) -> SysResult<bool> {
    let mut b = [0u8; 1];
    read(fd, &mut b).map(|n| n == 1)
}

/// Makes `to` a copy of `fd` (dup2).
pub fn dup_to(fd: RawFd, to: RawFd) -> SysResult {
    // SAFETY: plain syscall on descriptors.
    check(unsafe { libc::dup2(fd, to) }).map(drop)
}

/// Makes `to` a copy of `fd` that survives execve (dup2 keeps the flag when `fd == to`).
pub fn dup_to_inherited(fd: RawFd, to: RawFd) -> SysResult {
    dup_to(fd, to)?;
    // SAFETY: F_SETFD on a descriptor of ours only changes its close-on-exec flag.
    check(unsafe { libc::fcntl(to, libc::F_SETFD, 0) }).map(drop)
}

/// Takes ownership of a descriptor the kernel just returned.
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: the kernel just returned this fd to us and nothing else refers to it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Creates a pipe with both ends close-on-exec: (read, write).
pub fn pipe() -> SysResult<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((owned(fds[0]), owned(fds[1])))
}

/// A connected pair of unix sockets (close-on-exec) for handing over a file descriptor.
pub fn socketpair() -> SysResult<(OwnedFd, OwnedFd)> {
    socketpair_of(libc::SOCK_SEQPACKET)
}

/// [`socketpair`] of byte streams: a reader that reads a byte at a time (a shell's `read`)
/// sees what a pipe would show it, and a byte can still carry a file descriptor.
pub fn stream_socketpair() -> SysResult<(OwnedFd, OwnedFd)> {
    socketpair_of(libc::SOCK_STREAM)
}

fn socketpair_of(kind: libc::c_int) -> SysResult<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    Ok((owned(fds[0]), owned(fds[1])))
}

/// True when the write end of the pipe whose read end is `fd` has been closed everywhere.
pub fn peer_gone(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & libc::POLLHUP != 0
}

/// Waits up to `timeout_ms` (-1: forever) for any of the fds to be readable (or hung up).
pub fn poll_fds<const N: usize>(fds: [RawFd; N], timeout_ms: libc::c_int) -> SysResult<[bool; N]> {
    // A negative fd is skipped by poll(2) and never reported ready.
    let mut p = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    // SAFETY: N valid pollfds.
    check(unsafe { libc::poll(p.as_mut_ptr(), N as libc::nfds_t, timeout_ms) })?;
    Ok(p.map(|p| p.revents != 0))
}

/// close_range (Linux 5.9) answered ENOSYS.
pub(super) static CLOSE_RANGE: Missing = Missing::new();
/// close_range's CLOSE_RANGE_CLOEXEC (Linux 5.11) answered EINVAL, or close_range ENOSYS.
pub(super) static CLOSE_RANGE_CLOEXEC: Missing = Missing::new();
/// Without close_range: a descriptor of this process's `/proc/self/fd`, kept from the first
/// use (see [`cloexec_from`]) for the next; -1 when there is none.
static FD_DIR: AtomicI32 = AtomicI32::new(-1);

fn close_range(first: u32, last: u32, flags: libc::c_uint) -> SysResult {
    // SAFETY: close_range only closes or flags descriptors of this process.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    super::check_long(ret).map(drop)
}

/// Marks every fd from `first` up close-on-exec, so they vanish at execve but stay usable
/// until then (the report pipe among them).
///
/// Without close_range (or its CLOEXEC flag), the descriptors are listed from
/// `/proc/self/fd`, whose directory stays open for a later [`close_all_except`]: the sandbox's
/// first process calls this while the host's /proc is its /proc, and closes what it inherited
/// after its root has changed, when no /proc it can trust may be left.
pub fn cloexec_from(first: u32) -> SysResult {
    if !CLOSE_RANGE_CLOEXEC.get() {
        match close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) {
            Err(Errno::ENOSYS) => {
                CLOSE_RANGE.set();
                CLOSE_RANGE_CLOEXEC.set();
            }
            Err(Errno::EINVAL) => CLOSE_RANGE_CLOEXEC.set(),
            r => return r,
        }
    }
    let dir = match FD_DIR.load(Ordering::Relaxed) {
        -1 => {
            let d = fd_dir()?;
            FD_DIR.store(d, Ordering::Relaxed);
            d
        }
        d => d,
    };
    for_each_number(dir, |fd| {
        if fd >= first as RawFd && fd != dir {
            // SAFETY: F_SETFD on a descriptor of ours only changes its close-on-exec flag.
            check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
        }
        Ok(())
    })
}

/// Closes every fd except those in `keep` (which must be sorted). Without close_range, lists
/// them from the directory [`cloexec_from`] kept, or from `/proc/self/fd`.
pub fn close_all_except(keep: &[RawFd]) -> SysResult {
    // Whatever happens below, the kept directory is closed (it is not in `keep`).
    let kept = FD_DIR.swap(-1, Ordering::Relaxed);
    if !CLOSE_RANGE.get() {
        let r = close_ranges(keep);
        if !CLOSE_RANGE.note(&r) {
            return r;
        }
    }
    let dir = match kept {
        -1 => fd_dir()?,
        d => d,
    };
    let listed = for_each_number(dir, |fd| {
        if fd != dir && keep.binary_search(&fd).is_err() {
            close(fd);
        }
        Ok(())
    });
    if keep.binary_search(&dir).is_err() {
        close(dir);
    }
    listed
}

fn close_ranges(keep: &[RawFd]) -> SysResult {
    let mut from: u32 = 0;
    for &k in keep {
        let k = k as u32;
        if k > from {
            close_range(from, k - 1, 0)?;
        }
        from = k + 1;
    }
    close_range(from, u32::MAX, 0)
}

/// This process's descriptor directory, for [`for_each_number`].
fn fd_dir() -> SysResult<RawFd> {
    super::open(c"/proc/self/fd", libc::O_RDONLY | libc::O_DIRECTORY, 0)
}

/// Calls `f` with every number listed in `dir` (a `/proc/<pid>/fd` or `/proc/<pid>/task`
/// directory), from the start; `f` may close descriptors as it goes (procfs lists the table by
/// number). Allocates nothing.
pub fn for_each_number(dir: RawFd, mut f: impl FnMut(RawFd) -> SysResult) -> SysResult {
    // SAFETY: lseek on our own descriptor.
    if unsafe { libc::lseek(dir, 0, libc::SEEK_SET) } < 0 {
        return Err(Errno::last());
    }
    // u64s: the records are 8-byte aligned.
    let mut buf = [0u64; 512];
    let size = std::mem::size_of_val(&buf);
    loop {
        // SAFETY: buf is writable for `size` bytes; getdents64 fills at most that.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), size) };
        let n = super::check_long(n)? as usize;
        if n == 0 {
            return Ok(());
        }
        // SAFETY: the kernel wrote n <= size bytes into buf; viewing u64s as bytes is valid.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
        let mut at = 0;
        // struct linux_dirent64: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name.
        while at + 19 < n {
            let reclen = usize::from(u16::from_ne_bytes([bytes[at + 16], bytes[at + 17]]));
            if reclen == 0 || at + reclen > n {
                return Err(Errno::EIO);
            }
            let name = &bytes[at + 19..at + reclen];
            let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
            if let Some(fd) = parse_fd(name) {
                f(fd)?;
            }
            at += reclen;
        }
    }
}

/// A descriptor number as /proc names it; None for `.` and `..`.
fn parse_fd(name: &[u8]) -> Option<RawFd> {
    if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    name.iter().try_fold(0 as RawFd, |n, d| {
        n.checked_mul(10)?.checked_add(RawFd::from(d - b'0'))
    })
}

/// Room for one SCM_RIGHTS control message carrying one fd.
#[repr(C)]
union FdCmsg {
    buf: [u8; 24],
    _align: libc::cmsghdr,
}

/// A message of one data byte with room for one fd, pointing into `byte` and `cmsg`.
fn fd_message(byte: &mut [u8; 1], iov: &mut libc::iovec, cmsg: &mut FdCmsg) -> libc::msghdr {
    iov.iov_base = byte.as_mut_ptr().cast();
    iov.iov_len = 1;
    // SAFETY: msghdr is plain data; zeroed then filled with pointers the caller keeps alive.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    // SAFETY: taking a raw pointer to the union's buffer; CMSG_SPACE(4) = 24 fits.
    msg.msg_control = unsafe { cmsg.buf.as_mut_ptr() }.cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as _;
    msg
}

/// Sends `fd` over the unix socket `sock` (SCM_RIGHTS).
pub fn send_fd(sock: RawFd, fd: RawFd) -> SysResult {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut cmsg = FdCmsg { buf: [0; 24] };
    let msg = fd_message(&mut byte, &mut iov, &mut cmsg);
    // SAFETY: the control buffer is large enough for one header and one fd, as computed above.
    unsafe {
        let hdr = libc::CMSG_FIRSTHDR(&msg);
        (*hdr).cmsg_level = libc::SOL_SOCKET;
        (*hdr).cmsg_type = libc::SCM_RIGHTS;
        (*hdr).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(hdr).cast::<RawFd>(), fd);
    }
    // SAFETY: msg points at valid buffers for the duration of the call.
    let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Receives one fd sent with `send_fd`; None when the peer closed without sending.
pub fn recv_fd(sock: RawFd) -> SysResult<Option<OwnedFd>> {
    recv_byte_and_fd(sock).map(|(_, fd)| fd)
}

/// Receives one byte and the fd sent with it, if any: (None, None) when the peer closed.
/// Allocates nothing.
pub fn recv_byte_and_fd(sock: RawFd) -> SysResult<(Option<u8>, Option<OwnedFd>)> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut cmsg = FdCmsg { buf: [0; 24] };
    let mut msg = fd_message(&mut byte, &mut iov, &mut cmsg);
    let n = loop {
        // SAFETY: msg points at valid buffers; MSG_CMSG_CLOEXEC marks the received fd.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        break n as usize;
    };
    if n == 0 {
        return Ok((None, None));
    }
    let got = Some(byte[0]);
    // SAFETY: the kernel filled msg_control; walking it with the CMSG macros is the documented way.
    let fd = unsafe {
        let hdr = libc::CMSG_FIRSTHDR(&msg);
        if hdr.is_null()
            || (*hdr).cmsg_level != libc::SOL_SOCKET
            || (*hdr).cmsg_type != libc::SCM_RIGHTS
        {
            return Ok((got, None));
        }
        std::ptr::read_unaligned(libc::CMSG_DATA(hdr).cast::<RawFd>())
    };
    Ok((got, Some(owned(fd))))
}

/// A signalfd (close-on-exec) for the signals in `set`, which must be blocked.
pub fn signalfd(set: &libc::sigset_t) -> SysResult<RawFd> {
    // SAFETY: set points to an initialised sigset_t; -1 asks for a new fd.
    check(unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC) })
}

/// Reads the next signal from a signalfd; returns its number.
pub fn read_signal(fd: RawFd) -> SysResult<libc::c_int> {
    // SAFETY: signalfd_siginfo is plain data; all-zero is valid.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: the struct is exactly `size` bytes of plain data, borrowed for the read only.
    let buf = unsafe {
        std::slice::from_raw_parts_mut(
            (&mut info as *mut libc::signalfd_siginfo).cast::<u8>(),
            size,
        )
    };
    match read(fd, buf)? {
        n if n == size => Ok(info.ssi_signo as libc::c_int),
        _ => Err(Errno::EIO),
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn descriptors_are_listed_from_proc() {
        let (r, w) = pipe().unwrap();
        let dir = fd_dir().unwrap();
        let mut seen = Vec::new();
        // Twice: the listing starts over each time.
        for _ in 0..2 {
            seen.clear();
            for_each_number(dir, |fd| {
                seen.push(fd);
                Ok(())
            })
            .unwrap();
        }
        close(dir);
        for fd in [0, r.as_raw_fd(), w.as_raw_fd(), dir] {
            assert!(seen.contains(&fd), "{fd} in {seen:?}");
        }
        assert_eq!(parse_fd(b"."), None);
        assert_eq!(parse_fd(b"12"), Some(12));
        assert_eq!(parse_fd(b"99999999999"), None);
    }
}
