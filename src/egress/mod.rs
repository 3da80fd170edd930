//! sbx's egress for `network.mode = "on"` and `"proxy"`: the connections out the sandbox
//! makes, made by sbx from the host's network and held to the rules (`policy`); DNS inside,
//! answered by sbx (`dns`); the relay that joins the two sides (`relay`); and the seccomp
//! calls through which the sandbox's connect(2) reaches sbx (`intercept`).
//!
//! Nothing here is a network stack: the sandbox's sockets are the kernel's, in the sandbox's
//! network namespace, and only their connections out pass through sbx, as byte streams moved
//! with splice(2).

mod dns;
mod intercept;
mod policy;
mod relay;
mod udp;

use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub(crate) use intercept::handle as intercepted;
pub use policy::{Policy, Verdict};

use crate::plan::Egress as EgressPlan;
use crate::proxy::Ledger;
use crate::sandbox::EgressSocket;

/// What sbx's egress did, for the run report.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EgressStats {
    /// Connections made out (and to mapped host ports).
    pub allowed: u64,
    /// Connections and DNS questions refused.
    pub denied: u64,
    /// What was refused, in order (`ADDRESS:PORT`, or `dns NAME`), at most 100.
    pub denied_destinations: Vec<String>,
    /// The TCP destinations connected out, as `NAME:PORT` where sbx's DNS answered the name
    /// (else `ADDRESS:PORT`), each once, at most `MAX_REACHED`: what `sbx learn` allows.
    #[serde(skip)]
    pub reached: Vec<String>,
}

/// Most distinct destinations recorded for `EgressStats::reached`.
const MAX_REACHED: usize = 1000;

pub(crate) struct Shared {
    policy: Policy,
    datagrams: udp::Datagrams,
    pending: relay::Pending,
    relay_port: Mutex<Option<u16>>,
    ledger: Ledger,
    reached: Mutex<std::collections::BTreeSet<String>>,
    stopping: AtomicBool,
    /// Threads at work for the sandbox (see `MAX_TASKS`).
    tasks: Slots,
}

/// Most threads sbx runs for one sandbox's network at once: each connection relayed, UDP
/// destination and flow, DNS question and connection being made out holds one. The sandbox
/// decides how many it asks for, and the threads count against the host user's process
/// limit: past this, sbx refuses (EAGAIN for a connect, a question or datagram dropped, a
/// relayed connection reset) rather than spawn more.
const MAX_TASKS: usize = 2048;

/// A count of slots up to a limit, shared by the threads that take them.
pub(crate) struct Slots {
    used: std::sync::atomic::AtomicUsize,
    max: usize,
}

/// One slot of `Slots`, released when dropped.
pub(crate) struct Task(Arc<Shared>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.tasks.release();
    }
}

impl Slots {
    fn new(max: usize) -> Slots {
        Slots {
            used: std::sync::atomic::AtomicUsize::new(0),
            max,
        }
    }

    fn take(&self) -> bool {
        let taken = self.used.fetch_add(1, Ordering::Relaxed);
        if taken >= self.max {
            self.used.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn release(&self) {
        self.used.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    /// A task slot, or None when the sandbox has `MAX_TASKS` at work already.
    fn task(self: &Arc<Self>) -> Option<Task> {
        if !self.tasks.take() {
            tracing::info!("egress: {MAX_TASKS} tasks at work for the sandbox; refusing more");
            return None;
        }
        Some(Task(self.clone()))
    }

    /// Counts a connection made out to `dest`, and records it by name.
    fn reached(&self, dest: std::net::SocketAddr) {
        self.ledger.allow(&dest.to_string());
        let names = self.policy.names_of(dest.ip());
        let port = dest.port();
        let shown: Vec<String> = match names.is_empty() {
            true => vec![std::net::SocketAddr::new(policy::canonical(dest.ip()), port).to_string()],
            false => names.iter().map(|n| format!("{n}:{port}")).collect(),
        };
        let mut set = self.reached.lock().unwrap_or_else(|e| e.into_inner());
        for s in shown {
            if set.len() < MAX_REACHED {
                set.insert(s);
            }
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    fn relay_port(&self) -> Option<u16> {
        *self.relay_port.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// sbx's egress for one running sandbox.
pub struct Egress {
    shared: Arc<Shared>,
    /// Sockets in the sandbox's network, shut down to wake their threads at the end.
    listeners: Vec<OwnedFd>,
    threads: Vec<JoinHandle<()>>,
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f)
}

impl Egress {
    /// Serves the sockets the helper made (`sockets`, in `sandbox::egress_sockets` order);
    /// `helper` makes the sockets of datagram destinations as they come (see `udp`). The
    /// calls of the seccomp listener come through `intercept` with [`Egress::shared`].
    pub fn start(
        plan: &EgressPlan,
        sockets: Vec<(EgressSocket, OwnedFd)>,
        helper: OwnedFd,
    ) -> std::io::Result<Egress> {
        let shared = Arc::new(Shared {
            policy: Policy::new(plan.clone()),
            datagrams: udp::Datagrams::new(helper),
            pending: relay::Pending::default(),
            relay_port: Mutex::new(None),
            ledger: Ledger::new("egress"),
            reached: Mutex::default(),
            stopping: AtomicBool::new(false),
            tasks: Slots::new(MAX_TASKS),
        });
        let mut threads = Vec::new();
        let mut listeners = Vec::new();
        for (what, fd) in sockets {
            listeners.push(fd.try_clone()?);
            let s = shared.clone();
            threads.push(match what {
                EgressSocket::Relay => {
                    let l = TcpListener::from(fd);
                    *shared.relay_port.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(l.local_addr()?.port());
                    spawn("sbx-relay", move || relay::serve_relay(s, l))?
                }
                EgressSocket::DnsUdp(_) => {
                    let u = UdpSocket::from(fd);
                    spawn("sbx-dns", move || dns::serve_udp(s, u))?
                }
                EgressSocket::DnsTcp(_) => {
                    let l = TcpListener::from(fd);
                    spawn("sbx-dns", move || dns::serve_tcp(s, l))?
                }
                EgressSocket::HostPort(port) => {
                    let l = TcpListener::from(fd);
                    spawn("sbx-host-port", move || relay::serve_host_port(s, l, port))?
                }
                EgressSocket::Address(_) => continue,
            });
        }
        Ok(Egress {
            shared,
            listeners,
            threads,
        })
    }

    /// What the seccomp listener's network calls are decided with.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Closes sbx's sockets and every connection, and returns the counts.
    pub fn stop(self) -> EgressStats {
        let s = &self.shared;
        s.stopping.store(true, Ordering::Relaxed);
        s.datagrams.stop();
        for l in &self.listeners {
            // Wakes a blocked accept(2) or recvfrom(2) with an error.
            let _ = nix::sys::socket::shutdown(l.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        }
        for t in self.threads {
            let _ = t.join();
        }
        s.ledger.close_all();
        let (allowed, denied, denied_destinations) = s.ledger.counts();
        let reached = s.reached.lock().unwrap_or_else(|e| e.into_inner());
        EgressStats {
            allowed,
            denied,
            denied_destinations,
            reached: reached.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Slots;

    #[test]
    fn slots_stop_at_their_limit_and_come_back_when_released() {
        let s = Slots::new(3);
        assert!(s.take() && s.take() && s.take());
        assert!(!s.take(), "a fourth slot past the limit");
        assert!(!s.take(), "a refused take leaves the count as it was");
        s.release();
        assert!(s.take());
        assert!(!s.take());
    }
}
