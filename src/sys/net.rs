//! The sandbox's network namespace: its loopback, and listeners bound inside it.

use std::os::fd::RawFd;

use super::{Errno, SysResult, check};

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
    super::close(sock);
    r.map(drop)
}

/// A TCP listener on 127.0.0.1:`port` in the current network namespace.
pub fn loopback_listener(port: u16) -> SysResult<RawFd> {
    bound_socket([127, 0, 0, 1], port, libc::SOCK_STREAM)
}

/// A socket of `kind` (`SOCK_STREAM`, listening, or `SOCK_DGRAM`) bound to `ip`:`port` in the
/// current network namespace. Never allocates (the network namespace's helper calls it).
pub fn bound_socket(ip: [u8; 4], port: u16, kind: libc::c_int) -> SysResult<RawFd> {
    // SAFETY: plain socket creation.
    let fd = check(unsafe { libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC, 0) })?;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
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
    .and_then(|_| match kind {
        // SAFETY: listen on our own socket.
        libc::SOCK_STREAM => check(unsafe { libc::listen(fd, 1024) }),
        _ => Ok(0),
    });
    match r {
        Ok(_) => Ok(fd),
        Err(e) => {
            super::close(fd);
            Err(e)
        }
    }
}

/// Adds `ip`/32 to the loopback interface of the current network namespace (rtnetlink
/// RTM_NEWADDR; needs CAP_NET_ADMIN there). Never allocates.
pub fn add_loopback_address(ip: [u8; 4]) -> SysResult {
    #[repr(C)]
    struct Request {
        hdr: libc::nlmsghdr,
        family: u8,
        prefixlen: u8,
        flags: u8,
        scope: u8,
        index: u32,
        local_len: u16,
        local_type: u16,
        local: [u8; 4],
        address_len: u16,
        address_type: u16,
        address: [u8; 4],
    }
    const IFA_ADDRESS: u16 = 1;
    let req = Request {
        hdr: new_address_header(std::mem::size_of::<Request>()),
        family: libc::AF_INET as u8,
        prefixlen: 32,
        flags: 0,
        scope: RT_SCOPE_HOST,
        // A new network namespace registers its loopback device first: index 1.
        index: 1,
        local_len: 8,
        local_type: IFA_LOCAL,
        local: ip,
        address_len: 8,
        address_type: IFA_ADDRESS,
        address: ip,
    };
    netlink_request(
        (&req as *const Request).cast(),
        std::mem::size_of::<Request>(),
    )
}

const IFA_LOCAL: u16 = 2;
const RT_SCOPE_HOST: u8 = 254;

/// The header of an RTM_NEWADDR request of `len` bytes that adds or replaces an address.
fn new_address_header(len: usize) -> libc::nlmsghdr {
    libc::nlmsghdr {
        nlmsg_len: len as u32,
        nlmsg_type: libc::RTM_NEWADDR,
        nlmsg_flags: (libc::NLM_F_REQUEST
            | libc::NLM_F_ACK
            | libc::NLM_F_CREATE
            | libc::NLM_F_REPLACE) as u16,
        nlmsg_seq: 1,
        nlmsg_pid: 0,
    }
}

/// Sends one rtnetlink request of `len` bytes at `req` and reads its acknowledgement.
fn netlink_request(req: *const libc::c_void, len: usize) -> SysResult {
    let fd = netlink_socket()?;
    // The acknowledgement: a header and an nlmsgerr whose error is 0 or -errno.
    let mut ack = [0u8; 64];
    let r = netlink_ask(fd, req, len, &mut ack).and_then(|n| match netlink_error(&ack[..n]) {
        Some(0) => Ok(()),
        Some(e) => Err(Errno::from_raw(-e)),
        None => Err(Errno::EPROTO),
    });
    super::close(fd);
    r
}

/// An rtnetlink socket in the current network namespace.
fn netlink_socket() -> SysResult<RawFd> {
    // SAFETY: plain socket creation.
    check(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })
}

/// Sends the request of `len` bytes at `req` on the rtnetlink socket `fd` and reads the
/// kernel's answer into `answer` (cut to its length); returns the bytes read.
fn netlink_ask(
    fd: RawFd,
    req: *const libc::c_void,
    len: usize,
    answer: &mut [u8],
) -> SysResult<usize> {
    // SAFETY: the caller passes a complete request of `len` bytes; the kernel's netlink
    // address is the default (pid 0) for an unaddressed send.
    if unsafe { libc::send(fd, req, len, 0) } < 0 {
        return Err(Errno::last());
    }
    // SAFETY: answer is a writable buffer of its length.
    let n = unsafe { libc::recv(fd, answer.as_mut_ptr().cast(), answer.len(), 0) };
    if n < 0 {
        return Err(Errno::last());
    }
    Ok((n as usize).min(answer.len()))
}

/// The error an NLMSG_ERROR answer carries (0 for an acknowledgement, else -errno); None for
/// an answer of another kind.
fn netlink_error(answer: &[u8]) -> Option<i32> {
    let kind = u16::from_ne_bytes([*answer.get(4)?, *answer.get(5)?]);
    let error = answer.get(16..20)?;
    (kind == libc::NLMSG_ERROR as u16)
        .then(|| i32::from_ne_bytes([error[0], error[1], error[2], error[3]]))
}

/// A UDP socket bound to [`ip`]:`port` in the current network namespace. Never allocates.
pub fn bound_udp6(ip: [u8; 16], port: u16) -> SysResult<RawFd> {
    // SAFETY: plain socket creation.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    let addr = libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: port.to_be(),
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr { s6_addr: ip },
        sin6_scope_id: 0,
    };
    let one: libc::c_int = 1;
    // SAFETY: IPV6_V6ONLY takes an int, passed with its size.
    let r = check(unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .and_then(|_| {
        // SAFETY: addr is a valid sockaddr_in6 and its size is passed.
        check(unsafe {
            libc::bind(
                fd,
                &addr as *const libc::sockaddr_in6 as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        })
    });
    match r {
        Ok(_) => Ok(fd),
        Err(e) => {
            super::close(fd);
            Err(e)
        }
    }
}

/// Adds `ip`/128 to the loopback interface of the current network namespace, as
/// [`add_loopback_address`] does for IPv4 (without duplicate address detection), and returns
/// once the address is usable: see [`await_local_route6`].
pub fn add_loopback_address6(ip: [u8; 16]) -> SysResult {
    add_address6(ip)?;
    await_local_route6(ip)
}

fn add_address6(ip: [u8; 16]) -> SysResult {
    #[repr(C)]
    struct Request {
        hdr: libc::nlmsghdr,
        family: u8,
        prefixlen: u8,
        flags: u8,
        scope: u8,
        index: u32,
        local_len: u16,
        local_type: u16,
        local: [u8; 16],
        flags_len: u16,
        flags_type: u16,
        flags_value: u32,
    }
    const IFA_FLAGS: u16 = 8;
    const IFA_F_NODAD: u32 = 0x02;
    let req = Request {
        hdr: new_address_header(std::mem::size_of::<Request>()),
        family: libc::AF_INET6 as u8,
        prefixlen: 128,
        flags: IFA_F_NODAD as u8,
        scope: RT_SCOPE_HOST,
        index: 1,
        local_len: 20,
        local_type: IFA_LOCAL,
        local: ip,
        flags_len: 8,
        flags_type: IFA_FLAGS,
        flags_value: IFA_F_NODAD,
    };
    netlink_request(
        (&req as *const Request).cast(),
        std::mem::size_of::<Request>(),
    )
}

/// Waits until packets to `ip` are delivered locally. The kernel acknowledges a new IPv6
/// address before it routes to it: the local route is inserted afterwards, from a work queue,
/// even without duplicate address detection. Until then a datagram to the address follows the
/// address's prefix route out of `lo`, comes back and is dropped as one to forward (measured:
/// 2–3 % of datagrams sent right after the acknowledgement were lost). Asks the kernel for the
/// route to `ip` (RTM_GETROUTE) until its type is RTN_LOCAL, for at most a second. Never
/// allocates.
fn await_local_route6(ip: [u8; 16]) -> SysResult {
    #[repr(C)]
    struct Request {
        hdr: libc::nlmsghdr,
        family: u8,
        dst_len: u8,
        src_len: u8,
        tos: u8,
        table: u8,
        protocol: u8,
        scope: u8,
        kind: u8,
        flags: u32,
        dst_len_attr: u16,
        dst_type: u16,
        dst: [u8; 16],
    }
    const RTA_DST: u16 = 1;
    const RTN_LOCAL: u8 = 2;
    // nlmsghdr (16 bytes), then struct rtmsg, whose eighth byte is the route's type.
    const TYPE_AT: usize = 16 + 7;
    let req = Request {
        hdr: libc::nlmsghdr {
            nlmsg_len: std::mem::size_of::<Request>() as u32,
            nlmsg_type: libc::RTM_GETROUTE,
            nlmsg_flags: libc::NLM_F_REQUEST as u16,
            nlmsg_seq: 1,
            nlmsg_pid: 0,
        },
        family: libc::AF_INET6 as u8,
        dst_len: 128,
        src_len: 0,
        tos: 0,
        table: 0,
        protocol: 0,
        scope: 0,
        kind: 0,
        flags: 0,
        dst_len_attr: 20,
        dst_type: RTA_DST,
        dst: ip,
    };
    let fd = netlink_socket()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let r = loop {
        let mut answer = [0u8; 512];
        let n = match netlink_ask(
            fd,
            (&req as *const Request).cast(),
            std::mem::size_of::<Request>(),
            &mut answer,
        ) {
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        let kind = u16::from_ne_bytes([answer[4], answer[5]]);
        if kind == libc::RTM_NEWROUTE && n > TYPE_AT && answer[TYPE_AT] == RTN_LOCAL {
            break Ok(());
        }
        // An error other than "no route yet" will not go away by asking again.
        match netlink_error(&answer[..n]) {
            Some(e) if e != 0 && e != -libc::ENETUNREACH && e != -libc::EHOSTUNREACH => {
                break Err(Errno::from_raw(-e));
            }
            _ => {}
        }
        if std::time::Instant::now() >= deadline {
            break Err(Errno::ETIMEDOUT);
        }
        std::thread::sleep(std::time::Duration::from_micros(50));
    };
    super::close(fd);
    r
}

/// Keeps glibc's name service to the lookups built into libc itself ("files" and "dns"), so
/// that the proxy's name resolution never loads the host's NSS modules: sbx links glibc
/// statically, and a module such as libnss_systemd loaded into a static binary crashes it.
/// Call once, before any other lookup (glibc's configuration is not thread-safe).
#[cfg(target_env = "gnu")]
pub fn nss_builtin_only() {
    unsafe extern "C" {
        fn __nss_configure_lookup(
            db: *const libc::c_char,
            service_line: *const libc::c_char,
        ) -> libc::c_int;
    }
    for (db, services) in [
        (c"hosts", c"files dns"),
        (c"passwd", c"files"),
        (c"group", c"files"),
    ] {
        // SAFETY: both arguments are NUL-terminated static strings; the caller runs this
        // before any other lookup. A failure leaves glibc's default, which is no worse.
        let _ = unsafe { __nss_configure_lookup(db.as_ptr(), services.as_ptr()) };
    }
}

/// Other C libraries have no NSS modules to load.
#[cfg(not(target_env = "gnu"))]
pub fn nss_builtin_only() {}
