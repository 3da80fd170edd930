//! Servers on the host's loopback for the sandbox's clients to reach (through the egress
//! proxy, or directly with `--net host`): an HTTP server that answers every request with its
//! own body and counts its connections, one that holds every connection open, reporting what
//! it received and when the other side went away, and a package index serving fixed files.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Stats {
    pub accepted: AtomicUsize,
    pub active: AtomicUsize,
    pub max_active: AtomicUsize,
    /// The request heads received, one per connection.
    pub heads: Mutex<Vec<String>>,
}

/// An HTTP/1.1 server on the host's 127.0.0.1 answering every request with its own body
/// (`Connection: close`), counting the connections it accepted.
pub struct Server {
    pub port: u16,
    pub body: String,
    pub stats: Arc<Stats>,
    pub stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start(name: &str) -> Server {
        Server::with_delay(name, Duration::ZERO)
    }

    /// A server that waits `delay` before answering (to make concurrent requests overlap).
    pub fn with_delay(name: &str, delay: Duration) -> Server {
        Server::bind(TcpListener::bind("127.0.0.1:0").unwrap(), name, delay)
    }

    /// A server on the host's `[::1]`, if it has IPv6 loopback.
    pub fn start_v6(name: &str) -> Option<Server> {
        let listener = TcpListener::bind("[::1]:0").ok()?;
        Some(Server::bind(listener, name, Duration::ZERO))
    }

    pub fn bind(listener: TcpListener, name: &str, delay: Duration) -> Server {
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let body = format!(
            "hello from server {name} on port {port} (test process {})\n",
            std::process::id()
        );
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (stats, stop, body) = (stats.clone(), stop.clone(), body.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            stats.accepted.fetch_add(1, Ordering::SeqCst);
                            let (stats, body) = (stats.clone(), body.clone());
                            std::thread::spawn(move || answer(conn, &body, delay, &stats));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
        }
        Server {
            port,
            body,
            stats,
            stop,
        }
    }

    pub fn port(&self) -> String {
        self.port.to_string()
    }

    /// The connections accepted so far (after a pause, so that one still in the backlog is
    /// counted too).
    pub fn accepted(&self) -> usize {
        std::thread::sleep(Duration::from_millis(100));
        self.stats.accepted.load(Ordering::SeqCst)
    }

    pub fn heads(&self) -> Vec<String> {
        self.stats
            .heads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The body as a shell's `$(...)` returns it.
    pub fn line(&self) -> &str {
        self.body.trim_end()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads until the end of a request head (or EOF / error / 64 KiB).
fn read_head(conn: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf
}

fn answer(mut conn: TcpStream, body: &str, delay: Duration, stats: &Stats) {
    let now = stats.active.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_active.fetch_max(now, Ordering::SeqCst);
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let head = read_head(&mut conn);
    stats
        .heads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(String::from_utf8_lossy(&head).into_owned());
    std::thread::sleep(delay);
    let msg = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(msg.as_bytes());
    let _ = conn.shutdown(Shutdown::Write);
    stats.active.fetch_sub(1, Ordering::SeqCst);
}

/// What one connection to a [`HoldServer`] saw.
#[derive(Debug)]
pub struct Held {
    pub data: Vec<u8>,
    /// When the peer closed (read returned 0 or failed), or None if it was still open after
    /// 30 s.
    pub closed_at: Option<Instant>,
}

/// A server that accepts, reads, never answers and never closes: it reports, per connection,
/// what it received and when the other side went away.
pub struct HoldServer {
    pub port: u16,
    pub accepted: Arc<AtomicUsize>,
    pub events: Receiver<Held>,
    pub stop: Arc<AtomicBool>,
}

impl HoldServer {
    pub fn start() -> HoldServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, events) = mpsc::channel();
        {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut conn, _)) => {
                            accepted.fetch_add(1, Ordering::SeqCst);
                            let tx = tx.clone();
                            std::thread::spawn(move || {
                                let _ = conn.set_nonblocking(false);
                                let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                                let mut data = Vec::new();
                                let mut chunk = [0u8; 4096];
                                let closed_at = loop {
                                    match conn.read(&mut chunk) {
                                        Ok(0) => break Some(Instant::now()),
                                        Ok(n) => data.extend_from_slice(&chunk[..n]),
                                        Err(e)
                                            if matches!(
                                                e.kind(),
                                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                                            ) =>
                                        {
                                            break None;
                                        }
                                        Err(_) => break Some(Instant::now()),
                                    }
                                };
                                let _ = tx.send(Held { data, closed_at });
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
        }
        HoldServer {
            port,
            accepted,
            events,
            stop,
        }
    }
}

impl Drop for HoldServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---- a static HTTP server (a package index) ----

/// A file the index serves.
pub struct Served {
    content_type: &'static str,
    body: Vec<u8>,
}

/// Serves fixed paths over HTTP/1.1 on 127.0.0.1 (one request per connection) and records
/// the paths asked for.
pub struct Index {
    port: u16,
    files: Arc<Mutex<HashMap<String, Served>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Index {
    pub fn start() -> Index {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let files: Arc<Mutex<HashMap<String, Served>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (f, r) = (files.clone(), requests.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (f, r) = (f.clone(), r.clone());
                std::thread::spawn(move || serve(conn, &f, &r));
            }
        });
        Index {
            port,
            files,
            requests,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn allow(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn put(&self, path: &str, content_type: &'static str, body: Vec<u8>) {
        self.files
            .lock()
            .unwrap()
            .insert(path.to_string(), Served { content_type, body });
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(mut conn: TcpStream, files: &Mutex<HashMap<String, Served>>, log: &Mutex<Vec<String>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    // A proxy may send the absolute form.
    let path = match target.strip_prefix("http://") {
        Some(rest) => rest
            .find('/')
            .map(|i| rest[i..].to_string())
            .unwrap_or("/".into()),
        None => target,
    };
    let path = path.split('?').next().unwrap().to_string();
    log.lock().unwrap().push(path.clone());
    let files = files.lock().unwrap();
    let found = files
        .get(&path)
        .or_else(|| files.get(path.trim_end_matches('/')))
        .or_else(|| files.get(&format!("{path}/")));
    let response = match found {
        Some(s) => {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                s.content_type,
                s.body.len()
            )
            .into_bytes();
            r.extend_from_slice(&s.body);
            r
        }
        None => {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
        }
    };
    drop(files);
    let _ = conn.write_all(&response);
}
