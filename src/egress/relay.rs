//! The relay: each connection sbx lets out reaches, inside the sandbox, sbx's listener on
//! 127.0.0.1, and is joined there with the connection sbx made from the host's network. A
//! mapped host port (`--allow 127.0.0.1:PORT`) is a listener of its own, joined with the
//! host's same port.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Shared;
use crate::proxy::pump::pump;

/// Connections sbx made out, waiting for the sandbox's side to reach the relay: keyed by the
/// local port of the sandbox's socket, bound before it connects.
#[derive(Default)]
pub struct Pending(Mutex<HashMap<u16, TcpStream>>);

impl Pending {
    pub fn put(&self, port: u16, out: TcpStream) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port, out);
    }

    pub fn take(&self, port: u16) -> Option<TcpStream> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&port)
    }
}

/// Accepts on the relay listener until shut down, joining each connection with its own.
pub fn serve_relay(shared: Arc<Shared>, listener: TcpListener) {
    for conn in listener.incoming() {
        if shared.stopping() {
            return;
        }
        let Ok(inside) = conn else { continue };
        let Ok(peer) = inside.peer_addr() else {
            continue;
        };
        // Registered before the sandbox's socket connected; a connection no decision made (a
        // program that found the port) is closed.
        let deadline = Instant::now() + Duration::from_millis(500);
        let out = loop {
            match shared.pending.take(peer.port()) {
                Some(out) => break Some(out),
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                None => break None,
            }
        };
        if let Some(out) = out {
            join(shared.clone(), inside, out);
        }
    }
}

/// Accepts on a mapped host port's listener, joining each connection with the host's port.
pub fn serve_host_port(shared: Arc<Shared>, listener: TcpListener, port: u16) {
    for conn in listener.incoming() {
        if shared.stopping() {
            return;
        }
        let Ok(inside) = conn else { continue };
        let Some(task) = shared.task() else { continue };
        let shared = shared.clone();
        let _ = std::thread::Builder::new()
            .name("sbx-host-port".into())
            .spawn(move || {
                let _task = task;
                let to = SocketAddr::from(([127, 0, 0, 1], port));
                match TcpStream::connect_timeout(&to, Duration::from_secs(15)) {
                    Ok(out) => {
                        shared.ledger.allow(&to.to_string());
                        join(shared, inside, out);
                    }
                    Err(e) => {
                        tracing::info!("egress: host port {port}: {e}");
                        let _ = inside.shutdown(Shutdown::Both);
                    }
                }
            });
    }
}

/// Copies both ways between the sandbox's connection and the one out, each way on its own
/// thread, until both ends are done.
fn join(shared: Arc<Shared>, inside: TcpStream, out: TcpStream) {
    // A connection past the limit is closed (the sandbox sees it reset).
    let Some(task) = shared.task() else { return };
    let ids = (shared.ledger.track(&inside), shared.ledger.track(&out));
    let (Ok(inside2), Ok(out2)) = (inside.try_clone(), out.try_clone()) else {
        return;
    };
    let up = std::thread::Builder::new()
        .name("sbx-relay-up".into())
        .spawn(move || pump(&inside2, &out2));
    let down_shared = shared.clone();
    let down = std::thread::Builder::new()
        .name("sbx-relay-down".into())
        .spawn(move || {
            let _task = task;
            pump(&out, &inside);
            if let Ok(up) = up {
                let _ = up.join();
            }
            down_shared.ledger.untrack(ids.0);
            down_shared.ledger.untrack(ids.1);
        });
    if down.is_err() {
        shared.ledger.untrack(ids.0);
        shared.ledger.untrack(ids.1);
    }
}
