//! Datagrams out. For each destination the sandbox may send to, sbx's network helper binds a
//! socket at that very address inside (the address added to the sandbox's `lo`): the sandbox's
//! datagrams to it arrive at sbx, which sends them on from the host's network, one host socket
//! per sandbox socket (a flow), and passes the answers back from the destination's own address,
//! so that resolvers and QUIC stacks that check where an answer came from accept it.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Shared;
use crate::sys;

/// How long a flow lives without a datagram either way.
const IDLE: Duration = Duration::from_secs(120);
/// How often a flow's thread looks whether sbx is stopping.
const TICK: Duration = Duration::from_millis(500);

/// The destinations set up so far, and the helper that makes their sockets.
pub struct Datagrams {
    helper: Mutex<Option<OwnedFd>>,
    ready: Mutex<HashSet<SocketAddr>>,
    /// The sockets inside, shut down at the end to wake their threads.
    inside: Mutex<Vec<UdpSocket>>,
}

impl Datagrams {
    pub fn new(helper: OwnedFd) -> Datagrams {
        Datagrams {
            helper: Mutex::new(Some(helper)),
            ready: Mutex::new(HashSet::new()),
            inside: Mutex::new(Vec::new()),
        }
    }

    /// Makes sure datagrams to `to` reach sbx; returns whether this call set it up.
    pub fn ensure(&self, shared: &Arc<Shared>, to: SocketAddr) -> io::Result<bool> {
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        if ready.contains(&to) {
            return Ok(false);
        }
        let task = shared
            .task()
            .ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))?;
        let inside = self.ask_helper(to)?;
        let sock = UdpSocket::from(inside);
        let keep = sock.try_clone()?;
        let s = shared.clone();
        std::thread::Builder::new()
            .name("sbx-udp".into())
            .spawn(move || {
                let _task = task;
                serve(s, sock, to)
            })?;
        self.inside
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(keep);
        ready.insert(to);
        Ok(true)
    }

    fn ask_helper(&self, to: SocketAddr) -> io::Result<OwnedFd> {
        let helper = self.helper.lock().unwrap_or_else(|e| e.into_inner());
        let fd = helper
            .as_ref()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        let mut req = [0u8; crate::sandbox::UDP_REQUEST];
        req[2..4].copy_from_slice(&to.port().to_be_bytes());
        match to.ip() {
            IpAddr::V4(v4) => {
                req[0] = 4;
                req[4..8].copy_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                req[0] = 6;
                req[4..20].copy_from_slice(&v6.octets());
            }
        }
        sys::write_all(fd.as_raw_fd(), &req)?;
        match sys::recv_fd(fd.as_raw_fd())? {
            Some(sock) => Ok(sock),
            None => Err(io::Error::other(format!(
                "the network helper could not bind {to} inside the sandbox"
            ))),
        }
    }

    /// Ends the helper (it exits when its socket closes) and wakes every flow.
    pub fn stop(&self) {
        self.helper.lock().unwrap_or_else(|e| e.into_inner()).take();
        for s in self.inside.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = nix::sys::socket::shutdown(s.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        }
    }
}

/// One flow: a host socket connected to the destination, for one sandbox socket.
struct Flow {
    out: UdpSocket,
    last: Arc<Mutex<Instant>>,
}

/// Relays the datagrams that arrive at the socket standing for `to` inside.
fn serve(shared: Arc<Shared>, inside: UdpSocket, to: SocketAddr) {
    let inside = Arc::new(inside);
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    let _ = inside.set_read_timeout(Some(TICK));
    loop {
        if shared.stopping() {
            return;
        }
        let (n, from) = match inside.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                flows.retain(|_, f| {
                    f.last.lock().unwrap_or_else(|e| e.into_inner()).elapsed() < IDLE
                });
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if shared.stopping() {
            return;
        }
        let flow = match flows.entry(from) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                match open_flow(&shared, &inside, from, to) {
                    Ok(f) => e.insert(f),
                    Err(err) => {
                        tracing::info!("egress: udp {to}: {err}");
                        continue;
                    }
                }
            }
        };
        *flow.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let _ = flow.out.send(&buf[..n]);
    }
}

fn open_flow(
    shared: &Arc<Shared>,
    inside: &Arc<UdpSocket>,
    from: SocketAddr,
    to: SocketAddr,
) -> io::Result<Flow> {
    let any: IpAddr = match to {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let task = shared
        .task()
        .ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))?;
    let out = UdpSocket::bind((any, 0))?;
    out.connect(to)?;
    out.set_read_timeout(Some(TICK))?;
    let last = Arc::new(Mutex::new(Instant::now()));
    let (back, inside, shared, seen) = (
        out.try_clone()?,
        inside.clone(),
        shared.clone(),
        last.clone(),
    );
    std::thread::Builder::new()
        .name("sbx-udp-flow".into())
        .spawn(move || {
            let _task = task;
            let mut buf = vec![0u8; 65536];
            loop {
                if shared.stopping() {
                    return;
                }
                match back.recv(&mut buf) {
                    Ok(n) => {
                        *seen.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                        let _ = inside.send_to(&buf[..n], from);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        if seen.lock().unwrap_or_else(|e| e.into_inner()).elapsed() >= IDLE {
                            return;
                        }
                    }
                    // ICMP unreachable comes back as ECONNREFUSED on the next recv: the
                    // sandbox's own socket hears nothing, as a datagram lost.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                    Err(_) => return,
                }
            }
        })?;
    Ok(Flow { out, last })
}
