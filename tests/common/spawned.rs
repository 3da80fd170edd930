//! A spawned sbx: killed and reaped when the test ends, its output read line by line on a
//! thread of its own, its end awaited within a deadline, and what it writes to a pty.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::process::{Child, ChildStdout, ExitStatus};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A spawned sbx, killed and reaped when the test ends (early or not). Derefs to the child.
pub struct Running(Option<Child>);

impl Running {
    pub fn new(child: Child) -> Running {
        Running(Some(child))
    }

    /// The child, no longer killed on drop (to wait for its output).
    pub fn into_child(mut self) -> Child {
        self.0.take().unwrap()
    }
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().unwrap()
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The lines of a spawned sbx's stdout, read on a thread of their own.
pub fn line_reader(out: ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line; panics after `timeout` or at EOF.
pub fn next_line(rx: &Receiver<String>, timeout: Duration) -> String {
    rx.recv_timeout(timeout)
        .unwrap_or_else(|e| panic!("no line from the sandbox within {timeout:?}: {e:?}"))
}

/// Lines read until one equals `want` (excluded); panics after `timeout` or at EOF.
pub fn read_until(rx: &Receiver<String>, want: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l == want => return seen,
            Ok(l) => seen.push(l),
            Err(e) => panic!("waiting for {want:?}: {e:?}; read so far: {seen:?}"),
        }
    }
}

/// The remaining lines, up to EOF (or `timeout`).
pub fn read_rest(rx: &Receiver<String>, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while let Ok(l) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        seen.push(l);
    }
    seen
}

/// How `child` ended, if it does within `timeout`.
pub fn exited_within(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How `child` ended; fails the test if it has not within `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    exited_within(child, timeout).unwrap_or_else(|| panic!("sbx did not exit within {timeout:?}"))
}

/// What is written to a pty's master side, collected on a thread.
pub struct PtyOutput {
    buf: Arc<Mutex<Vec<u8>>>,
    done: Arc<Mutex<bool>>,
}

impl PtyOutput {
    pub fn start(master: &OwnedFd) -> PtyOutput {
        let mut file = std::fs::File::from(master.try_clone().unwrap());
        let buf = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(Mutex::new(false));
        let (b, d) = (buf.clone(), done.clone());
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                match file.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => b.lock().unwrap().extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break, // EIO: the last slave closed
                }
            }
            *d.lock().unwrap() = true;
        });
        PtyOutput { buf, done }
    }

    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// Waits until `needle` appears after byte `from`; returns the offset just past it.
    pub fn expect(&self, needle: &str, from: usize, timeout: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let b = self.buf.lock().unwrap();
                if b.len() > from {
                    if let Some(i) = b[from..]
                        .windows(needle.len())
                        .position(|w| w == needle.as_bytes())
                    {
                        return Ok(from + i + needle.len());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no {needle:?} after byte {from} within {timeout:?}; screen:\n{}",
                    self.text()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything, once the slave side is closed everywhere (or after `timeout`).
    pub fn finish(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while !*self.done.lock().unwrap() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.text()
    }
}
