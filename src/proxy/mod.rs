//! The egress proxy of `network.mode = "proxy"`. The sandbox has its own network namespace
//! with only `lo`; inside it, the sandbox's init binds a listener on 127.0.0.1 and hands it to
//! the supervisor (SCM_RIGHTS). The supervisor, outside in the host's network, accepts on it
//! and connects out on the command's behalf only where the allowlist says so. A program that
//! ignores the proxy variables has no route at all.
//!
//! One port speaks both HTTP (CONNECT and plain absolute-URI requests) and SOCKS5 (told apart by
//! the first byte). Each connection gets its own threads, so a slow peer never blocks the
//! supervisor's signal and timeout handling.

pub mod allow;
mod http;
pub mod ledger;
pub mod pump;
mod request;
mod socks;

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

pub use allow::{Allowlist, Decision, Rule, RuleError};
pub use ledger::Ledger;

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// What the proxy did, for the run report.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProxyStats {
    pub allowed: u64,
    pub denied: u64,
    /// `host:port` of each denied request, in order (at most 100 kept).
    pub denied_hosts: Vec<String>,
}

struct Shared {
    ledger: Ledger,
    stopping: std::sync::atomic::AtomicBool,
}

pub struct Proxy {
    listener: TcpListener,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Serves `listener` (bound inside the sandbox's network namespace) until `stop`.
    pub fn start(listener: OwnedFd, allow: Allowlist) -> io::Result<Proxy> {
        let listener = TcpListener::from(listener);
        let shared = Arc::new(Shared {
            ledger: Ledger::new("proxy"),
            stopping: std::sync::atomic::AtomicBool::new(false),
        });
        let allow = Arc::new(allow);
        let accept = {
            let listener = listener.try_clone()?;
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("sbx-proxy".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        let conn = match conn {
                            Ok(c) => c,
                            Err(_) if shared.stopping.load(Ordering::Relaxed) => break,
                            // Out of descriptors or memory for a moment: the connection waits
                            // in the backlog; try again shortly rather than give up.
                            Err(e) => {
                                tracing::debug!("proxy: accept: {e}");
                                std::thread::sleep(Duration::from_millis(20));
                                continue;
                            }
                        };
                        let shared = shared.clone();
                        let allow = allow.clone();
                        let _ = std::thread::Builder::new()
                            .name("sbx-proxy-conn".into())
                            .spawn(move || {
                                let id = shared.ledger.track(&conn);
                                serve(conn, &allow, &shared);
                                shared.ledger.untrack(id);
                            });
                    }
                })?
        };
        Ok(Proxy {
            listener,
            shared,
            accept,
        })
    }

    /// Closes the listener and every connection, and returns the counts.
    pub fn stop(self) -> ProxyStats {
        self.shared.stopping.store(true, Ordering::Relaxed);
        // shutdown(2) on a listening socket wakes a blocked accept(2) with an error; std's
        // TcpListener offers no shutdown, nix's wrapper keeps the proxy free of unsafe.
        let _ = nix::sys::socket::shutdown(
            std::os::fd::AsRawFd::as_raw_fd(&self.listener),
            nix::sys::socket::Shutdown::Both,
        );
        let _ = self.accept.join();
        self.shared.ledger.close_all();
        let (allowed, denied, denied_hosts) = self.shared.ledger.counts();
        ProxyStats {
            allowed,
            denied,
            denied_hosts,
        }
    }
}

fn serve(client: TcpStream, allow: &Allowlist, shared: &Shared) {
    let _ = client.set_read_timeout(Some(HEAD_TIMEOUT));
    let mut first = [0u8; 1];
    if client.peek(&mut first).unwrap_or(0) == 0 {
        return;
    }
    let result = if first[0] == 5 {
        socks::serve(client, allow, shared)
    } else {
        http::serve(client, allow, shared)
    };
    if let Err(e) = result {
        tracing::debug!("proxy connection ended: {e}");
    }
}

/// Connects to the first address that answers.
fn connect(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Copies the server's answer to the client while `upstream` sends the client's side to the
/// server, until both are done.
fn splice(
    client: TcpStream,
    server: TcpStream,
    shared: &Shared,
    upstream: impl FnOnce(&mut TcpStream, &mut TcpStream) -> io::Result<()> + Send + 'static,
) -> io::Result<()> {
    let _ = client.set_read_timeout(None);
    let id = shared.ledger.track(&server);
    let mut up_server = server.try_clone()?;
    let mut up_client = client.try_clone()?;
    let upstream = std::thread::Builder::new()
        .name("sbx-proxy-up".into())
        .spawn(move || {
            if let Err(e) = upstream(&mut up_client, &mut up_server) {
                tracing::debug!("proxy: client to server: {e}");
            }
            let _ = up_server.shutdown(Shutdown::Write);
        })?;
    pump::pump(&server, &client);
    let _ = upstream.join();
    shared.ledger.untrack(id);
    Ok(())
}

/// Reads until `\r\n\r\n`; returns (head, bytes read past it).
fn read_head(s: &mut TcpStream) -> io::Result<(Vec<u8>, Vec<u8>)> {
    const MAX: usize = 64 * 1024;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the request ended",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((buf, rest));
        }
        if buf.len() > MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
    }
}
