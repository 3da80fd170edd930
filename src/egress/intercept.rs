//! connect(2) of the sandbox, handed to sbx by its seccomp listener (see `crate::intercept`), with sendto(2), sendmsg(2) and sendmmsg(2) that
//! name an address. sbx reads the address from the caller's memory and decides (see
//! `policy`): what stays within the sandbox's own network runs as made; a TCP connection that
//! may go out is made by sbx from the host's network, and the caller's own socket is connected
//! to sbx's relay inside (see `relay`); a datagram destination that may be reached gets sbx's
//! socket standing for it inside, and the call then runs as made (see `udp`); anything else
//! fails with ECONNREFUSED (connect) or EPERM (datagrams).
//!
//! Why this is safe: every socket of the sandbox lives in its network namespace, whose only
//! interface is `lo`: sbx never hands the sandbox a socket of the host's. A call the kernel runs
//! as made ("continue") may have its address or descriptor changed by another thread after sbx
//! looked, and still reaches nothing but the sandbox's loopback. The connection out is made
//! by sbx with the address it read and checked.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{self, SockaddrLike, SockaddrStorage};

use super::Shared;
use super::policy::{Verdict, canonical};
use crate::sys::{self, Answer, Errno, Notification};

/// How long sbx waits for a connection out (the caller waits with it).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Decides intercepted call `n` and answers it (from another thread when it connects out).
pub(crate) fn handle(shared: &Arc<Shared>, listener: &Arc<OwnedFd>, n: Notification) {
    let fd = listener.as_raw_fd();
    let connect = n.nr == libc::SYS_connect;
    let dests = destinations(&n);
    let verdicts: Vec<(SocketAddr, Verdict)> = dests
        .into_iter()
        .map(|d| (d, shared.policy.decide(d)))
        .collect();
    let mut refused = false;
    for (d, v) in &verdicts {
        if let Verdict::Refuse(why) = v {
            shared.ledger.deny(&d.to_string(), why);
            refused = true;
        }
    }
    let out: Vec<SocketAddr> = verdicts
        .iter()
        .filter(|(_, v)| *v == Verdict::Out)
        .map(|(d, _)| *d)
        .collect();
    let answer = match (refused, out.first()) {
        // A datagram refused is what a local firewall's refusal says: EPERM.
        (true, _) if connect => Answer::Fail(Errno::ECONNREFUSED),
        (true, _) => Answer::Fail(Errno::EPERM),
        (false, None) => Answer::Continue,
        (false, Some(&dest)) if connect => {
            // The connection out may take a round trip or a timeout: never in this loop.
            let Some(task) = shared.task() else {
                let _ = sys::notif_respond(fd, n.id, Answer::Fail(Errno::EAGAIN));
                return;
            };
            let (shared, listener) = (shared.clone(), listener.clone());
            let spawned = std::thread::Builder::new()
                .name("sbx-egress".into())
                .spawn(move || {
                    let _task = task;
                    let answer = go_out(&shared, listener.as_raw_fd(), &n, dest);
                    let _ = sys::notif_respond(listener.as_raw_fd(), n.id, answer);
                });
            match spawned {
                Ok(_) => return,
                Err(_) => Answer::Fail(Errno::EAGAIN),
            }
        }
        (false, Some(_)) => out
            .iter()
            .map(|d| datagrams_to(shared, *d))
            .find(|a| *a != Answer::Continue)
            .unwrap_or(Answer::Continue),
    };
    let _ = sys::notif_respond(fd, n.id, answer);
}

/// Sets up the datagram destination `dest` (see `udp`); Continue once its socket stands inside.
fn datagrams_to(shared: &Arc<Shared>, dest: SocketAddr) -> Answer {
    let to = SocketAddr::new(canonical(dest.ip()), dest.port());
    match shared.datagrams.ensure(shared, to) {
        Ok(true) => {
            shared.ledger.allow(&format!("udp {to}"));
            Answer::Continue
        }
        Ok(false) => Answer::Continue,
        Err(e) => {
            tracing::info!("egress: udp {to}: {e}");
            Answer::Fail(Errno::ENETUNREACH)
        }
    }
}

/// The addresses an intercepted call names: connect's, sendto's, or each message's of
/// sendmsg and sendmmsg (the first 64). None for calls without one or with another family.
fn destinations(n: &Notification) -> Vec<SocketAddr> {
    let read = |addr: u64, len: u64| address_at(n.pid, addr, len);
    match n.nr {
        libc::SYS_connect => read(n.args[1], n.args[2]).into_iter().collect(),
        libc::SYS_sendto => read(n.args[4], n.args[5]).into_iter().collect(),
        libc::SYS_sendmsg => message_name(n.pid, n.args[1]).into_iter().collect(),
        libc::SYS_sendmmsg => (0..n.args[2].min(64))
            .filter_map(|i| message_name(n.pid, n.args[1] + i * MMSGHDR_SIZE))
            .collect(),
        _ => Vec::new(),
    }
}

/// `struct mmsghdr`: a `struct msghdr` (56 bytes on 64-bit Linux) and an unsigned int, padded.
const MMSGHDR_SIZE: u64 = 64;

/// The destination of the `struct msghdr` at `at` in process `pid`.
fn message_name(pid: libc::pid_t, at: u64) -> Option<SocketAddr> {
    let mut hdr = [0u8; 16];
    let got = sys::read_memory(pid, at, &mut hdr).ok()?;
    if got < 12 {
        return None;
    }
    let name = u64::from_ne_bytes(hdr[..8].try_into().ok()?);
    let len = u32::from_ne_bytes(hdr[8..12].try_into().ok()?);
    (name != 0).then(|| address_at(pid, name, u64::from(len)))?
}

/// The internet address at `addr` (`len` bytes) in the caller's memory; None for any other
/// family or an address the kernel would refuse itself.
fn address_at(pid: libc::pid_t, addr: u64, len: u64) -> Option<SocketAddr> {
    let len = usize::try_from(len).ok()?.min(128);
    let mut buf = [0u8; 128];
    let got = sys::read_memory(pid, addr, &mut buf[..len]).ok()?;
    let b = &buf[..got];
    let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]) as i32;
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match family {
        libc::AF_INET if b.len() >= 16 => {
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 if b.len() >= 24 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[8..24]);
            let scope = b
                .get(24..28)
                .map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]));
            let ip = Ipv6Addr::from(a);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope)))
        }
        _ => None,
    }
}

/// The caller's thread group: pidfd_open takes a process, the notification names a thread.
fn process_of(tid: libc::pid_t) -> Option<libc::pid_t> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The caller's socket, duplicated into sbx; checked to belong to the waiting caller.
fn callers_socket(listener: RawFd, n: &Notification) -> Result<OwnedFd, Errno> {
    let pidfd = match sys::pidfd_open(n.pid) {
        Ok(p) => p,
        // A thread other than the leader: EINVAL, or ENOENT on newer kernels.
        Err(Errno::EINVAL | Errno::ENOENT) => {
            sys::pidfd_open(process_of(n.pid).ok_or(Errno::ESRCH)?)?
        }
        Err(e) => return Err(e),
    };
    let fd = RawFd::try_from(n.args[0] as i64).map_err(|_| Errno::EBADF)?;
    let sock = sys::pidfd_getfd(pidfd.as_raw_fd(), fd)?;
    // The pid, then the descriptor, were read while the caller still waited: they are its.
    if !sys::notif_id_valid(listener, n.id) {
        return Err(Errno::ESRCH);
    }
    Ok(sock)
}

fn errno_of(e: &std::io::Error) -> Errno {
    e.raw_os_error()
        .map(Errno::from_raw)
        .unwrap_or(Errno::ECONNREFUSED)
}

/// Makes the connection out for `n` and connects the caller's socket to the relay.
fn go_out(shared: &Arc<Shared>, listener: RawFd, n: &Notification, dest: SocketAddr) -> Answer {
    let sock = match callers_socket(listener, n) {
        Ok(s) => s,
        Err(e) => return Answer::Fail(e),
    };
    match socket::getsockopt(&sock, socket::sockopt::SockType) {
        Ok(socket::SockType::Stream) => {}
        // A datagram socket connects, inside, to sbx's socket standing for the destination.
        Ok(socket::SockType::Datagram) => return datagrams_to(shared, dest),
        _ => {
            shared
                .ledger
                .deny(&dest.to_string(), "only TCP and UDP go out");
            return Answer::Fail(Errno::ENETUNREACH);
        }
    }
    let local: Option<SockaddrStorage> = socket::getsockname(sock.as_raw_fd()).ok();
    let Some(family) = local.as_ref().and_then(SockaddrLike::family) else {
        return Answer::Fail(Errno::ENOTSOCK);
    };
    let target = SocketAddr::new(canonical(dest.ip()), dest.port());
    let out = match TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            tracing::info!("egress: {target}: {e}");
            return Answer::Fail(errno_of(&e));
        }
    };
    let _ = out.set_nodelay(true);
    let Some(relay) = shared.relay_port() else {
        return Answer::Fail(Errno::ENETUNREACH);
    };
    let (bind_to, relay_at): (SockaddrStorage, SockaddrStorage) = match family {
        socket::AddressFamily::Inet => (
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0).into(),
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, relay).into(),
        ),
        socket::AddressFamily::Inet6 => {
            // An IPv6 socket reaches the relay at 127.0.0.1 as ::ffff:127.0.0.1.
            let mapped = Ipv4Addr::LOCALHOST.to_ipv6_mapped();
            (
                SocketAddrV6::new(mapped, 0, 0, 0).into(),
                SocketAddrV6::new(mapped, relay, 0, 0).into(),
            )
        }
        _ => return Answer::Fail(Errno::EAFNOSUPPORT),
    };
    // Bound first, so that the relay knows the connection by its port before it arrives. A
    // socket the program bound already keeps its port.
    let _ = socket::bind(sock.as_raw_fd(), &bind_to);
    let port = socket::getsockname::<SockaddrStorage>(sock.as_raw_fd())
        .ok()
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|a| a.port())
                .or_else(|| a.as_sockaddr_in6().map(|a| a.port()))
        });
    let Some(port) = port.filter(|p| *p != 0) else {
        return Answer::Fail(Errno::EADDRNOTAVAIL);
    };
    shared.pending.put(port, out);
    match socket::connect(sock.as_raw_fd(), &relay_at) {
        Ok(()) => {
            shared.reached(dest);
            Answer::Value(0)
        }
        Err(Errno::EINPROGRESS) => {
            shared.reached(dest);
            Answer::Fail(Errno::EINPROGRESS)
        }
        Err(e) => {
            shared.pending.take(port);
            Answer::Fail(e)
        }
    }
}
