//! The limits of the sandbox as a whole where no cgroup holds them: the supervisor samples the
//! sandbox's memory and tasks and kills the whole sandbox once a limit is crossed.
//!
//! Memory is the anonymous memory of every process (`RssAnon`) plus what the sandbox's tmpfs
//! store holds; tasks are every thread of every process. The processes are found by walking
//! down from the sandbox's first process: with a PID namespace (or the subreaper init is
//! without one) every process of the sandbox descends from it. A sample costs a few reads per
//! process, every [`INTERVAL`]; nothing runs before the first interval, so short commands never
//! pay for it. What a sample cannot see: memory held in an unmapped memfd or in pipe buffers,
//! and growth between two samples (each process stays under its RLIMIT_DATA meanwhile); a
//! cgroup, where the host delegates one, counts everything.

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::sys;

/// How often the sandbox is measured.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// Stops walking a runaway tree: past this many processes the count is over any sane limit.
const MAX_WALK: usize = 1 << 16;

/// A limit the sandbox crossed, with what was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crossed {
    /// Bytes used, and the limit.
    Memory { used: u64, limit: u64 },
    /// Tasks counted, and the limit.
    Processes { count: u64, limit: u64 },
}

/// One measurement of the sandbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Anonymous memory of every process plus the tmpfs store, in bytes.
    pub memory: u64,
    /// Threads of every process.
    pub tasks: u64,
    /// The processes found.
    pub processes: u64,
}

pub struct Watchdog {
    init: libc::pid_t,
    memory: Option<u64>,
    tasks: Option<u64>,
    /// The tmpfs store, handed over by the sandbox (see `sandbox::setup`).
    store: Option<OwnedFd>,
    due: Instant,
    /// Consecutive samples with the tasks near their limit.
    near: u32,
    /// The largest sample seen.
    pub peak: Sample,
}

/// Tasks at or above this share of their limit for [`NEAR_SAMPLES`] samples in a row count as
/// reaching it: the kernel's per-namespace RLIMIT_NPROC keeps the count from going over, so a
/// fork bomb hovers just under the limit (forks failing as processes come and go).
const NEAR: f64 = 0.9;
const NEAR_SAMPLES: u32 = 5;

impl Watchdog {
    /// A watchdog for the limits given; None when there is nothing to watch.
    pub fn new(
        init: libc::pid_t,
        memory: Option<u64>,
        tasks: Option<u64>,
        store: Option<OwnedFd>,
        start: Instant,
    ) -> Option<Watchdog> {
        (memory.is_some() || tasks.is_some()).then(|| Watchdog {
            init,
            memory,
            tasks,
            store,
            due: start + INTERVAL,
            near: 0,
            peak: Sample::default(),
        })
    }

    /// When the next sample is due.
    pub fn due(&self) -> Instant {
        self.due
    }

    /// Samples the sandbox if a sample is due; returns the limit it crossed, if any.
    pub fn check(&mut self, now: Instant) -> Option<Crossed> {
        if now < self.due {
            return None;
        }
        self.due = now + INTERVAL;
        let s = self.sample();
        self.peak.memory = self.peak.memory.max(s.memory);
        self.peak.tasks = self.peak.tasks.max(s.tasks);
        self.peak.processes = self.peak.processes.max(s.processes);
        if let Some(limit) = self.memory.filter(|l| s.memory > *l) {
            return Some(Crossed::Memory {
                used: s.memory,
                limit,
            });
        }
        let limit = self.tasks?;
        let near = s.tasks as f64 >= limit as f64 * NEAR;
        self.near = if near { self.near + 1 } else { 0 };
        (s.tasks >= limit || self.near >= NEAR_SAMPLES).then_some(Crossed::Processes {
            count: s.tasks,
            limit,
        })
    }

    fn sample(&self) -> Sample {
        let mut s = Sample::default();
        let mut todo = vec![self.init];
        let mut buf = [0u8; 4096];
        while let Some(pid) = todo.pop() {
            if s.processes as usize >= MAX_WALK {
                break;
            }
            let Some(status) =
                open_proc(pid, None, b"/status", 0).and_then(|fd| read_small(fd, &mut buf))
            else {
                continue;
            };
            s.processes += 1;
            s.memory += field(status, b"RssAnon:") * 1024;
            s.tasks += field(status, b"Threads:");
            children(pid, |c| todo.push(c));
        }
        if let Some(store) = &self.store {
            s.memory += used_bytes(store);
        }
        s
    }
}

/// `/proc/PID[/task/TID]REST`, NUL-terminated. Built by hand, like the reads below, so that a
/// sample runs little code: the supervisor's code pages are unmapped once the command has run
/// a while (`sys::release_code`), and a sample every interval maps back what it runs.
fn proc_path(pid: libc::pid_t, tid: Option<libc::pid_t>, rest: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        let n = bytes.len().min(out.len() - 1 - at);
        out[at..at + n].copy_from_slice(&bytes[..n]);
        at += n;
    };
    put(b"/proc/");
    let (d, from) = digits(pid);
    put(&d[from..]);
    if let Some(tid) = tid {
        put(b"/task/");
        let (d, from) = digits(tid);
        put(&d[from..]);
    }
    put(rest);
    out
}

/// Opens `/proc/PID[/task/TID]REST` read-only with `flags` added.
fn open_proc(pid: libc::pid_t, tid: Option<libc::pid_t>, rest: &[u8], flags: i32) -> Option<RawFd> {
    let path = proc_path(pid, tid, rest);
    let path = std::ffi::CStr::from_bytes_until_nul(&path).ok()?;
    sys::open(path, libc::O_RDONLY | flags, 0).ok()
}

/// The decimal digits of a pid (never negative here), without formatting machinery.
fn digits(n: libc::pid_t) -> ([u8; 10], usize) {
    let mut n = n.unsigned_abs();
    let mut d = [0u8; 10];
    let mut at = d.len();
    loop {
        at -= 1;
        d[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    (d, at)
}

/// Reads the open file `fd` into `buf` and closes it: what fits, which for a status file is
/// all of it.
fn read_small(fd: RawFd, buf: &mut [u8]) -> Option<&[u8]> {
    let mut len = 0;
    while len < buf.len() {
        match sys::read(fd, &mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    sys::close(fd);
    Some(&buf[..len])
}

/// The number after `key` on its line of a status file, 0 if missing.
fn field(status: &[u8], key: &[u8]) -> u64 {
    status
        .split(|b| *b == b'\n')
        .find_map(|l| l.strip_prefix(key))
        .map_or(0, |v| {
            v.iter()
                .skip_while(|b| b.is_ascii_whitespace())
                .take_while(|b| b.is_ascii_digit())
                .fold(0u64, |n, b| {
                    n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
                })
        })
}

/// Calls `found` with each child of every thread of `pid` (`/proc/PID/task/TID/children`).
fn children(pid: libc::pid_t, mut found: impl FnMut(libc::pid_t)) {
    let Some(dir) = open_proc(pid, None, b"/task", libc::O_DIRECTORY) else {
        return;
    };
    let _ = sys::for_each_number(dir, |tid| {
        let Some(fd) = open_proc(pid, Some(tid), b"/children", 0) else {
            return Ok(());
        };
        // Read in chunks: a number cut at a chunk's end carries over.
        let mut chunk = [0u8; 1024];
        let mut carry: Option<libc::pid_t> = None;
        while let Ok(n @ 1..) = sys::read(fd, &mut chunk) {
            for b in &chunk[..n] {
                match (b.is_ascii_digit(), carry) {
                    (true, c) => {
                        let d = libc::pid_t::from(b - b'0');
                        carry = Some(c.unwrap_or(0).saturating_mul(10).saturating_add(d));
                    }
                    (false, Some(c)) => {
                        found(c);
                        carry = None;
                    }
                    (false, None) => {}
                }
            }
        }
        if let Some(c) = carry {
            found(c);
        }
        sys::close(fd);
        Ok(())
    });
    sys::close(dir);
}

fn used_bytes(fd: &OwnedFd) -> u64 {
    match nix::sys::statfs::fstatfs(fd.as_fd()) {
        Ok(s) => (s.blocks() - s.blocks_free()) * s.block_size() as u64,
        Err(_) => 0,
    }
}

/// Kills the sandbox: its first process (with a PID namespace, that ends every other), then
/// any process found below it (without one).
pub fn kill_all(init: libc::pid_t) {
    let _ = sys::kill(init, libc::SIGKILL);
    let mut todo = Vec::new();
    children(init, |c| todo.push(c));
    while let Some(pid) = todo.pop() {
        children(pid, |c| todo.push(c));
        let _ = sys::kill(pid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: [u8; 64]) -> String {
        std::ffi::CStr::from_bytes_until_nul(&p)
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn proc_paths_are_built_by_hand_as_format_would() {
        assert_eq!(path(proc_path(1, None, b"/status")), "/proc/1/status");
        assert_eq!(
            path(proc_path(4_194_304, Some(2_147_483_647), b"/children")),
            "/proc/4194304/task/2147483647/children"
        );
        assert_eq!(path(proc_path(0, None, b"/task")), "/proc/0/task");
    }

    #[test]
    fn status_fields_are_read_by_key() {
        let status = b"Name:\tsh\nThreads:\t3\nRssAnon:\t  1024 kB\nRssFile:\t9 kB\n";
        assert_eq!(field(status, b"RssAnon:"), 1024);
        assert_eq!(field(status, b"Threads:"), 3);
        assert_eq!(field(status, b"VmSwap:"), 0);
    }

    #[test]
    fn children_of_this_process_are_found() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let mut found = Vec::new();
        children(std::process::id() as libc::pid_t, |c| found.push(c));
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&(child.id() as libc::pid_t)), "{found:?}");
    }
}
