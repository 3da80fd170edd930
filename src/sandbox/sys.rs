//! Thin wrappers over the raw system calls the sandbox makes. They take C strings prepared by
//! the plan and return the errno on failure; they never allocate, so they are safe to call
//! between clone and execve.

use std::ffi::CStr;
use std::os::fd::RawFd;

use libc::{c_int, c_ulong};
pub use nix::errno::Errno;

pub type SysResult<T = ()> = Result<T, Errno>;

fn check(ret: c_int) -> SysResult<c_int> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

fn check_long(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

fn ptr_or_null(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

pub fn mount(
    src: Option<&CStr>,
    dst: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
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

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;

/// Sets mount attributes, recursively when asked. Unlike a remount, this keeps the flags the
/// kernel locked on the source and reaches every submount.
pub fn mount_setattr(path: &CStr, recursive: bool, set: u64) -> SysResult {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 } as libc::c_uint;
    // SAFETY: path is NUL-terminated, attr lives across the call and its size is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check_long(ret).map(drop)
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

pub fn mkdir(path: &CStr, mode: u32) -> SysResult {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::mkdir(path.as_ptr(), mode) }).map(drop)
}

pub fn symlink(target: &CStr, path: &CStr) -> SysResult {
    // SAFETY: both are NUL-terminated.
    check(unsafe { libc::symlink(target.as_ptr(), path.as_ptr()) }).map(drop)
}

pub fn open(path: &CStr, flags: c_int, mode: libc::mode_t) -> SysResult<RawFd> {
    // SAFETY: path is NUL-terminated; the fd returned is owned by the caller.
    check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) })
}

pub fn close(fd: RawFd) {
    // SAFETY: closing an fd we own; errors from close are not actionable here.
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

/// Opens `path` with `flags`, writes `content`, closes it.
pub fn write_file(path: &CStr, flags: c_int, content: &[u8]) -> SysResult {
    let fd = open(path, libc::O_WRONLY | flags, 0o644)?;
    let r = write_all(fd, content);
    close(fd);
    r
}

pub fn chdir(path: &CStr) -> SysResult {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

pub fn fchdir(fd: RawFd) -> SysResult {
    // SAFETY: plain syscall on an fd.
    check(unsafe { libc::fchdir(fd) }).map(drop)
}

pub fn sethostname(name: &CStr) -> SysResult {
    // SAFETY: the pointer and length describe the name without its NUL.
    check(unsafe { libc::sethostname(name.as_ptr(), name.to_bytes().len()) }).map(drop)
}

/// fork(2) semantics with namespace flags: returns 0 in the child. Raw clone skips libc's
/// atfork handlers, which is fine because the child never allocates or takes libc locks.
pub fn clone_fork(flags: c_int) -> SysResult<libc::pid_t> {
    // SAFETY: a null stack makes the child run on a copy-on-write copy of the caller's stack,
    // exactly like fork; the remaining arguments are unused without CLONE_*TID/SETTLS.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    check_long(ret).map(|p| p as libc::pid_t)
}

pub fn set_pdeathsig(sig: c_int) -> SysResult {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as c_ulong, 0, 0, 0) }).map(drop)
}

pub fn prctl(option: c_int, arg: c_ulong) -> SysResult {
    // SAFETY: options used here take one integer argument.
    check(unsafe { libc::prctl(option, arg, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) }).map(drop)
}

pub fn setsid() -> SysResult {
    // SAFETY: no arguments.
    check(unsafe { libc::setsid() }).map(drop)
}

pub fn getppid() -> libc::pid_t {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getppid() }
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
    check_long(ret).map(drop)
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

pub fn execve(path: &CStr, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> Errno {
    // SAFETY: argv and envp are null-terminated arrays of pointers into C strings that the
    // plan owns and keeps alive; execve only returns on failure.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Errno::last()
}

pub fn exit(code: c_int) -> ! {
    // SAFETY: _exit skips atexit handlers and stdio flushing, which belong to the parent.
    unsafe { libc::_exit(code) }
}

pub fn kill(pid: libc::pid_t, sig: c_int) -> SysResult {
    // SAFETY: plain syscall.
    check(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Sets the signal mask to `set` (SIG_SETMASK).
pub fn set_sigmask(set: &libc::sigset_t) -> SysResult {
    // SAFETY: set points to an initialised sigset_t.
    check(unsafe { libc::sigprocmask(libc::SIG_SETMASK, set, std::ptr::null_mut()) }).map(drop)
}

pub fn empty_sigset() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        s
    }
}

pub fn default_disposition(sig: c_int) -> SysResult {
    // SAFETY: SIG_DFL is always a valid handler.
    let r = unsafe { libc::signal(sig, libc::SIG_DFL) };
    if r == libc::SIG_ERR {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Reads one fixed-size record; returns the bytes read (0 at end of file).
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

/// Waits for any child without blocking; returns (pid, raw status) or None.
pub fn wait_any_nohang() -> Option<(libc::pid_t, c_int)> {
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid, status))
}

/// Waits, blocking, for any child; None once there is none left.
pub fn wait_any() -> Option<(libc::pid_t, c_int)> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid > 0 {
            return Some((pid, status));
        }
        if pid < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        return None;
    }
}

/// CPU time of this process and of every child it waited for, summed; peak RSS is the larger.
pub fn usage_with_children() -> libc::rusage {
    let get = |who| {
        // SAFETY: rusage is plain data; zeroed is valid.
        let mut r: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: r is a valid out pointer; RUSAGE_SELF and RUSAGE_CHILDREN cannot fail.
        unsafe { libc::getrusage(who, &mut r) };
        r
    };
    let (mut own, kids) = (get(libc::RUSAGE_SELF), get(libc::RUSAGE_CHILDREN));
    let add = |a: &mut libc::timeval, b: libc::timeval| {
        let usec = a.tv_usec + b.tv_usec;
        a.tv_sec += b.tv_sec + usec / 1_000_000;
        a.tv_usec = usec % 1_000_000;
    };
    add(&mut own.ru_utime, kids.ru_utime);
    add(&mut own.ru_stime, kids.ru_stime);
    own.ru_maxrss = own.ru_maxrss.max(kids.ru_maxrss);
    own
}

/// Brings the loopback interface up in the current network namespace.
pub fn loopback_up() -> SysResult {
    // SAFETY: a datagram socket only serves as a handle for the interface ioctls.
    let sock =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: ifreq is plain data; zeroed is a valid initial state.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills ifr_flags of a valid ifreq.
    // The request's type differs between libcs (unsigned long in glibc, int in musl).
    let r = check(unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS as _, &mut req) }).and_then(|_| {
        // SAFETY: the union member ifru_flags was just written by the kernel.
        unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        // SAFETY: SIOCSIFFLAGS reads a valid ifreq.
        check(unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS as _, &req) })
    });
    close(sock);
    r.map(drop)
}

/// Creates a pipe with both ends close-on-exec: (read, write).
pub fn pipe() -> SysResult<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
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

/// Sets both the soft and the hard limit, so the command cannot raise it again.
pub fn setrlimit(resource: crate::plan::limits::Resource, value: u64) -> SysResult {
    let r = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: r is a valid rlimit.
    check(unsafe { libc::setrlimit(resource, &r) }).map(drop)
}

/// Blocks until one byte arrives; Ok(false) at end of file.
pub fn read_byte(fd: RawFd) -> SysResult<bool> {
    let mut b = [0u8; 1];
    read(fd, &mut b).map(|n| n == 1)
}

/// wait4 on one pid: (raw status, resource usage of it and its waited-for descendants).
pub fn wait4(pid: libc::pid_t, flags: c_int) -> SysResult<Option<(c_int, libc::rusage)>> {
    let mut status = 0;
    // SAFETY: rusage is plain data; zeroed is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and usage are valid out pointers.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if r > 0 {
            return Ok(Some((status, usage)));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
}

/// Moves the calling process into the namespace `fd` refers to (a namespace fd, or a pidfd
/// with `nstype` naming which of that process's namespaces).
pub fn setns(fd: RawFd, nstype: c_int) -> SysResult {
    // SAFETY: plain syscall on an fd we own.
    check(unsafe { libc::setns(fd, nstype) }).map(drop)
}

/// Sleeps until a signal arrives (SIGKILL, for the processes that call it).
pub fn pause() {
    // SAFETY: no arguments; returns only after a handled signal.
    unsafe { libc::pause() };
}

pub fn unshare(flags: c_int) -> SysResult {
    // SAFETY: plain syscall with flags.
    check(unsafe { libc::unshare(flags) }).map(drop)
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

/// Sets attributes on every mount of a detached tree, before anyone can see it.
pub fn mount_setattr_fd(fd: RawFd, set: u64) -> SysResult {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint;
    // SAFETY: an empty path with AT_EMPTY_PATH; attr lives across the call with its size.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check_long(ret).map(drop)
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

/// A connected pair of unix sockets (close-on-exec) for handing over a file descriptor.
pub fn socketpair() -> SysResult<(RawFd, RawFd)> {
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
    Ok((fds[0], fds[1]))
}

/// A TCP listener on 127.0.0.1:`port` in the current network namespace.
pub fn loopback_listener(port: u16) -> SysResult<RawFd> {
    // SAFETY: plain socket creation.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: addr is a valid sockaddr_in and its size is passed.
    let r = check(unsafe {
        libc::bind(
            fd,
            &addr as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })
    // SAFETY: listen on our own socket.
    .and_then(|_| check(unsafe { libc::listen(fd, 1024) }));
    match r {
        Ok(_) => Ok(fd),
        Err(e) => {
            close(fd);
            Err(e)
        }
    }
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
pub fn recv_fd(sock: RawFd) -> SysResult<Option<RawFd>> {
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
    unsafe {
        let hdr = libc::CMSG_FIRSTHDR(&msg);
        if hdr.is_null()
            || (*hdr).cmsg_level != libc::SOL_SOCKET
            || (*hdr).cmsg_type != libc::SCM_RIGHTS
        {
            return Ok(None);
        }
        Ok(Some(std::ptr::read_unaligned(
            libc::CMSG_DATA(hdr).cast::<RawFd>(),
        )))
    }
}

/// Makes `fd` (a terminal) the controlling terminal and stdin, stdout and stderr.
pub fn take_terminal(fd: RawFd) -> SysResult {
    // SAFETY: plain ioctl on our fd; the argument 0 refuses to steal another session's terminal.
    check(unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) })?;
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        check(unsafe { libc::dup2(fd, target) })?;
    }
    if fd > 2 {
        close(fd);
    }
    Ok(())
}

/// Opens a new pty from `/dev/ptmx` of the current root: (master, slave), both close-on-exec.
pub fn open_pty() -> SysResult<(RawFd, RawFd)> {
    let master = open(c"/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY, 0)?;
    let unlock: c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int; TIOCGPTPEER opens the slave of this master.
    let slave = unsafe {
        check(libc::ioctl(master, libc::TIOCSPTLCK, &unlock)).and_then(|_| {
            check(libc::ioctl(
                master,
                libc::TIOCGPTPEER,
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            ))
        })
    };
    match slave {
        Ok(s) => Ok((master, s)),
        Err(e) => {
            close(master);
            Err(e)
        }
    }
}

/// Adds `set` to the blocked signals.
pub fn block_signals(set: &libc::sigset_t) -> SysResult {
    // SAFETY: set points to an initialised sigset_t.
    check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, set, std::ptr::null_mut()) }).map(drop)
}

/// A signalfd (close-on-exec) for the signals in `set`, which must be blocked.
pub fn signalfd(set: &libc::sigset_t) -> SysResult<RawFd> {
    // SAFETY: set points to an initialised sigset_t; -1 asks for a new fd.
    check(unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC) })
}

/// A pidfd for a child: readable once it has exited (Linux 5.3).
pub fn pidfd_open(pid: libc::pid_t) -> SysResult<RawFd> {
    // SAFETY: plain syscall with a pid and no flags.
    check_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }).map(|fd| fd as RawFd)
}

/// Waits up to `timeout_ms` (-1: forever) for any of the fds to be readable (or hung up).
pub fn poll_fds<const N: usize>(fds: [RawFd; N], timeout_ms: c_int) -> SysResult<[bool; N]> {
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

/// CLOCK_MONOTONIC in microseconds, low 32 bits (differences are taken modulo 2^32).
pub fn monotonic_us() -> u32 {
    // SAFETY: timespec is plain data and a valid out pointer; CLOCK_MONOTONIC always exists.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    (t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000) as u32
}

/// Installs one classic-BPF seccomp program (no_new_privs must be set).
pub fn seccomp_filter(prog: &[seccompiler::sock_filter]) -> SysResult {
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
            0 as c_ulong,
            &fprog as *const SockFprog,
        )
    };
    check_long(ret).map(drop)
}
