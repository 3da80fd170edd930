//! The sandbox's network namespace: its loopback, and listeners bound inside it.

use std::os::fd::RawFd;

use super::{SysResult, check};

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
            super::close(fd);
            Err(e)
        }
    }
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
