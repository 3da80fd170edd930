//! File descriptors: pipes and sockets between sbx's processes, reads and writes, closing.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::{Errno, SysResult, check};

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
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
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

/// Marks every fd from `first` up close-on-exec, so they vanish at execve but stay usable
/// until then (the report pipe among them).
pub fn cloexec_from(first: u32) -> SysResult {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    super::check_long(ret).map(drop)
}

/// Closes every fd except those in `keep` (which must be sorted).
pub fn close_all_except(keep: &[RawFd]) {
    let mut from: u32 = 0;
    for &k in keep {
        let k = k as u32;
        if k > from {
            // SAFETY: closing a range of our own fds.
            unsafe { libc::syscall(libc::SYS_close_range, from, k - 1, 0) };
        }
        from = k + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, 0) };
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
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut cmsg = FdCmsg { buf: [0; 24] };
    let mut msg = fd_message(&mut byte, &mut iov, &mut cmsg);
    loop {
        // SAFETY: msg points at valid buffers; MSG_CMSG_CLOEXEC marks the received fd.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(None);
        }
        break;
    }
    // SAFETY: the kernel filled msg_control; walking it with the CMSG macros is the documented way.
    let fd = unsafe {
        let hdr = libc::CMSG_FIRSTHDR(&msg);
        if hdr.is_null()
            || (*hdr).cmsg_level != libc::SOL_SOCKET
            || (*hdr).cmsg_type != libc::SCM_RIGHTS
        {
            return Ok(None);
        }
        std::ptr::read_unaligned(libc::CMSG_DATA(hdr).cast::<RawFd>())
    };
    Ok(Some(owned(fd)))
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
