//! The sandbox's network namespace, created beside the root rather than in the clone.
//!
//! A network namespace is the dearest namespace to create (the kernel registers a loopback
//! device, sysctl tables and per-namespace state for every protocol: as much as all the
//! others together, see benches/README.md). Created by the clone it would sit
//! on the start's critical path. Instead, once init has its go byte, the supervisor forks a
//! helper that enters the sandbox's user namespace (as the namespace's owner it may), creates
//! the network namespace there, brings lo up and hands a descriptor of it to init over a
//! socket, while init builds the root on another CPU; init joins it with setns(2) once the
//! root is built. The helper stays in the host's PID namespace, so it takes no PID in the
//! sandbox's, runs only sbx's code and is gone (reaped by the supervisor) before init needs
//! the namespace; it reports a failure on the report pipe like a step of init's.

use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

use super::channel::{self, Failure, Step};
use crate::exit::EXIT_SBX_FAILED;
use crate::plan::Egress;
use crate::plan::Plan;
use crate::sys;

/// One of sbx's own sockets in the sandbox's network, made by the helper and handed to the
/// supervisor in this order (see `egress_sockets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EgressSocket {
    /// A host nameserver's address, added to the sandbox's `lo` (no socket is sent).
    Address([u8; 4]),
    /// The listener every connection out reaches before sbx relays it.
    Relay,
    DnsUdp([u8; 4]),
    DnsTcp([u8; 4]),
    /// A listener on 127.0.0.1:PORT relayed to the host's same port.
    HostPort(u16),
}

/// Every socket of `e`, in the order the helper makes and sends them. Never allocates.
pub fn egress_sockets(e: &Egress) -> impl Iterator<Item = EgressSocket> + '_ {
    let foreign = |a: &&[u8; 4]| a[0] != 127;
    (e.dns_inside.iter().filter(foreign))
        .map(|a| EgressSocket::Address(*a))
        .chain(std::iter::once(EgressSocket::Relay))
        .chain(
            e.dns_inside
                .iter()
                .flat_map(|a| [EgressSocket::DnsUdp(*a), EgressSocket::DnsTcp(*a)]),
        )
        .chain(e.host_ports.iter().map(|p| EgressSocket::HostPort(*p)))
}

/// What the `index`th egress socket of `plan` is, for a failure message.
pub fn egress_socket_name(plan: &Plan, index: usize) -> String {
    let ip = |a: [u8; 4]| std::net::Ipv4Addr::from(a);
    match plan
        .network
        .egress()
        .and_then(|e| egress_sockets(e).nth(index))
    {
        Some(EgressSocket::Address(a)) => format!(
            "adding the host's nameserver {} to the sandbox's lo (rtnetlink)",
            ip(a)
        ),
        Some(EgressSocket::Relay) => "listening for sbx's relay on 127.0.0.1 inside".into(),
        Some(EgressSocket::DnsUdp(a)) => format!("answering DNS on {}:53/udp inside", ip(a)),
        Some(EgressSocket::DnsTcp(a)) => format!("answering DNS on {}:53/tcp inside", ip(a)),
        Some(EgressSocket::HostPort(p)) => {
            format!("listening on 127.0.0.1:{p} inside for the host's port {p}")
        }
        None => "creating sbx's sockets in the sandbox's network".into(),
    }
}

/// Makes the sockets of `e` in the current (the sandbox's) network namespace and sends each
/// over `to` (the supervisor). Never allocates.
fn make_egress(e: &Egress, to: RawFd) -> Result<(), (usize, sys::Errno)> {
    for (i, s) in egress_sockets(e).enumerate() {
        let fd = match s {
            EgressSocket::Address(a) => {
                sys::add_loopback_address(a).map_err(|e| (i, e))?;
                continue;
            }
            EgressSocket::Relay => sys::bound_socket([127, 0, 0, 1], 0, libc::SOCK_STREAM),
            EgressSocket::DnsUdp(a) => sys::bound_socket(a, 53, libc::SOCK_DGRAM),
            EgressSocket::DnsTcp(a) => sys::bound_socket(a, 53, libc::SOCK_STREAM),
            EgressSocket::HostPort(p) => sys::bound_socket([127, 0, 0, 1], p, libc::SOCK_STREAM),
        }
        .map_err(|e| (i, e))?;
        let sent = sys::send_fd(to, fd);
        sys::close(fd);
        sent.map_err(|e| (i, e))?;
    }
    Ok(())
}

/// Forks the helper from the supervisor, for the sandbox whose init is `init`. `sock` is the
/// helper's end of the socket to init, `report` the write end of the report pipe; every other
/// descriptor is closed in the helper. Returns the helper's pid (the supervisor's child).
#[allow(unsafe_code)] // clone_fork: the one unsafe call of the sandbox side
pub fn spawn_helper(
    plan: &Plan,
    init: libc::pid_t,
    sock: RawFd,
    report: RawFd,
    egress: Option<RawFd>,
) -> sys::SysResult<libc::pid_t> {
    let supervisor = nix::unistd::getpid().as_raw();
    // SAFETY: the child runs `helper`, which never allocates, takes no lock and ends in _exit
    // (the supervisor may have other threads).
    match unsafe { sys::clone_fork(0) }? {
        0 => helper(plan, init, supervisor, [sock, report, egress.unwrap_or(-1)]),
        pid => Ok(pid),
    }
}

/// The helper's whole life. Never returns; never allocates (the supervisor may have other
/// threads, whose locks a forked child must not touch).
fn helper(plan: &Plan, init: libc::pid_t, supervisor: libc::pid_t, fds: [RawFd; 3]) -> ! {
    let [sock, report, egress] = fds;
    let fail = |step, e| -> ! {
        channel::send(report, Failure::new(step, e));
        sys::exit(EXIT_SBX_FAILED)
    };
    let mut keep = fds;
    keep.sort_unstable();
    let keep = match keep[0] {
        -1 => &keep[1..],
        _ => &keep[..],
    };
    if let Err(e) = sys::close_all_except(keep) {
        fail(Step::NetNamespace, e)
    }
    // Die with the supervisor; a supervisor gone before the prctl is caught by the check.
    if sys::set_pdeathsig(libc::SIGKILL).is_err() || sys::getppid() != supervisor {
        sys::exit(EXIT_SBX_FAILED);
    }
    // Not yet waited for by the supervisor, so the pid still names init: as a pidfd, or
    // (without pidfd_open) as /proc/PID, which a reused pid could misname no more than it
    // could the pidfd opened from it.
    let user = match sys::pidfd_open(init) {
        Ok(pidfd) => pidfd.into_raw_fd(),
        Err(sys::Errno::ENOSYS) => {
            sys::open_namespace(init, b"user").unwrap_or_else(|e| fail(Step::NetNamespace, e))
        }
        Err(e) => fail(Step::NetNamespace, e),
    };
    let joined = sys::setns(user, libc::CLONE_NEWUSER);
    sys::close(user);
    if let Err(e) = joined {
        fail(Step::NetNamespace, e)
    }
    if let Err(e) = sys::unshare(libc::CLONE_NEWNET) {
        fail(Step::NetNamespace, e)
    }
    // A private network namespace always gets a working loopback.
    if let Err(e) = sys::loopback_up() {
        fail(Step::Loopback, e)
    }
    // Before init may run the command: its first connection finds sbx's sockets in place.
    if let (Some(e), true) = (plan.network.egress(), egress >= 0) {
        if let Err((i, e)) = make_egress(e, egress) {
            channel::send(report, Failure::at(Step::EgressSockets, i, e));
            sys::exit(EXIT_SBX_FAILED)
        }
    }
    // The helper is still in the host's mount and PID namespaces: this is its own entry.
    let net = sys::open(c"/proc/self/ns/net", libc::O_RDONLY | libc::O_CLOEXEC, 0)
        .unwrap_or_else(|e| fail(Step::NetNamespace, e));
    if let Err(e) = sys::send_fd(sock, net) {
        fail(Step::NetNamespace, e)
    }
    if plan.network.egress().is_some() && egress >= 0 {
        serve_udp_requests(egress)
    }
    sys::exit(0)
}

/// The helper's second life, with sbx's egress: it stays in the sandbox's network namespace
/// (with the capabilities of its user namespace) and makes the sockets that need creating
/// there while the command runs. A request is [`UDP_REQUEST`] bytes: the family (4 or 6), an
/// unused byte, a port (big-endian) and the address (IPv4 in the first 4 of 16 bytes). The
/// answer is a UDP socket bound to that address and port inside, the address added to `lo`
/// first (so that the sandbox's datagrams to it arrive at sbx's socket, and its answers come
/// from it), or a message without a descriptor if that failed. Ends when the supervisor
/// closes its end. Never allocates.
fn serve_udp_requests(sock: RawFd) -> ! {
    let mut req = [0u8; UDP_REQUEST];
    loop {
        match sys::read(sock, &mut req) {
            Ok(UDP_REQUEST) => {}
            Ok(_) | Err(_) => sys::exit(0),
        }
        let port = u16::from_be_bytes([req[2], req[3]]);
        let mut ip6 = [0u8; 16];
        ip6.copy_from_slice(&req[4..20]);
        let ip4 = [req[4], req[5], req[6], req[7]];
        let made = match req[0] {
            4 => match ip4[0] {
                127 => Ok(()),
                _ => sys::add_loopback_address(ip4),
            }
            .and_then(|_| sys::bound_socket(ip4, port, libc::SOCK_DGRAM)),
            6 => sys::add_loopback_address6(ip6).and_then(|_| sys::bound_udp6(ip6, port)),
            _ => Err(sys::Errno::EINVAL),
        };
        let answered = match made {
            Ok(fd) => {
                let r = sys::send_fd(sock, fd);
                sys::close(fd);
                r
            }
            Err(_) => sys::write_all(sock, b"!"),
        };
        if answered.is_err() {
            sys::exit(0)
        }
    }
}

/// The size of a request to the helper for a UDP socket (see `serve_udp_requests`).
pub const UDP_REQUEST: usize = 20;

/// In init, once the root is built: waits for the helper's namespace and joins it. A helper
/// that failed has already said why on the report pipe.
pub fn join(sock: RawFd) -> Result<(), Failure> {
    let net = match sys::recv_fd(sock) {
        Ok(Some(fd)) => fd,
        // The helper ended without a namespace: its own report says why (or it was killed).
        Ok(None) => return Err(Failure::new(Step::NetNamespace, sys::Errno::ESRCH)),
        Err(e) => return Err(Failure::new(Step::NetNamespace, e)),
    };
    sys::close(sock);
    sys::setns(net.as_raw_fd(), libc::CLONE_NEWNET).map_err(|e| Failure::new(Step::NetNamespace, e))
}
