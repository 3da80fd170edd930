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

use std::os::fd::{AsFd, OwnedFd};
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
        while let Some(pid) = todo.pop() {
            if s.processes as usize >= MAX_WALK {
                break;
            }
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue;
            };
            s.processes += 1;
            s.memory += kib(&status, "RssAnon:") * 1024;
            s.tasks += kib(&status, "Threads:");
            todo.extend(children(pid));
        }
        if let Some(store) = &self.store {
            s.memory += used_bytes(store);
        }
        s
    }
}

/// A `Key: value` field of /proc/PID/status, as a number (kB for sizes).
fn kib(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The children of every thread of `pid`.
fn children(pid: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Bytes a filesystem holds, from a descriptor of it.
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
    let mut todo = children(init);
    while let Some(pid) = todo.pop() {
        todo.extend(children(pid));
        let _ = sys::kill(pid, libc::SIGKILL);
    }
}
