//! What the proxy and sbx's egress keep of their connections: counts and refused destinations
//! for the run report, and the open connections, shut down when the sandbox ends.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::text::escape;

/// Refused destinations kept for the report.
const KEPT: usize = 100;

pub struct Ledger {
    /// The log lines' prefix (`proxy`, `egress`).
    who: &'static str,
    allowed: AtomicU64,
    denied: AtomicU64,
    denied_list: Mutex<Vec<String>>,
    open: Mutex<HashMap<u64, TcpStream>>,
    next: AtomicU64,
}

impl Ledger {
    pub fn new(who: &'static str) -> Ledger {
        Ledger {
            who,
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            denied_list: Mutex::new(Vec::new()),
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        }
    }

    // What the sandbox named is escaped: a name cannot forge a line of the log.
    pub fn deny(&self, what: &str, why: &str) {
        self.denied.fetch_add(1, Ordering::Relaxed);
        tracing::info!("{}: denied {}: {}", self.who, escape(what), escape(why));
        let mut list = self.denied_list.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() < KEPT {
            list.push(what.to_string());
        }
    }

    pub fn allow(&self, what: &str) {
        self.allowed.fetch_add(1, Ordering::Relaxed);
        tracing::info!("{}: allowed {}", self.who, escape(what));
    }

    /// Registers a connection for shutdown at the end; returns its key.
    pub fn track(&self, s: &TcpStream) -> Option<u64> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let clone = s.try_clone().ok()?;
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, clone);
        Some(id)
    }

    pub fn untrack(&self, id: Option<u64>) {
        if let Some(id) = id {
            self.open
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
    }

    /// Shuts every open connection down.
    pub fn close_all(&self) {
        for s in self.open.lock().unwrap_or_else(|e| e.into_inner()).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// (allowed, denied, the refused destinations kept).
    pub fn counts(&self) -> (u64, u64, Vec<String>) {
        (
            self.allowed.load(Ordering::Relaxed),
            self.denied.load(Ordering::Relaxed),
            self.denied_list
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}
