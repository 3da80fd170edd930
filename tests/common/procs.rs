//! The host's processes, as /proc shows them: a process's stat fields and children, the
//! processes whose command line carries a marker, and those that survive a run; unique names
//! and markers to put in command lines; the host's namespaces.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn fields_after_comm(text: &str) -> Option<Vec<String>> {
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The fields of a `/proc/PID/stat` text after the command name: state, ppid, pgrp, session,
/// tty_nr, ...
pub fn stat_fields(text: &str) -> Vec<String> {
    fields_after_comm(text).expect("a stat line")
}

/// [`stat_fields`] of a host process; None once it is gone.
pub fn host_stat(pid: i32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    fields_after_comm(&text)
}

/// Host pids in /proc.
fn host_pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
}

/// Host pids whose parent is `parent`.
pub fn children_of(parent: i32) -> Vec<i32> {
    let mut out: Vec<i32> = host_pids()
        .filter(|pid| {
            host_stat(*pid)
                .is_some_and(|f| f.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(parent))
        })
        .collect();
    out.sort_unstable();
    out
}

/// Host processes but this one, as (pid, command line with a space for each NUL), whose
/// command line satisfies `pred`. A zombie's command line is empty.
pub fn host_processes(pred: impl Fn(&str) -> bool) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for pid in host_pids().filter(|pid| *pid != me) {
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        let cmdline = cmdline.trim_end();
        if pred(cmdline) {
            out.push((pid, cmdline.to_string()));
        }
    }
    out
}

/// [`host_processes`] whose command line contains any of `markers`.
pub fn host_processes_with<S: AsRef<str>>(markers: &[S]) -> Vec<(i32, String)> {
    host_processes(|c| markers.iter().any(|m| c.contains(m.as_ref())))
}

/// Waits up to `limit` for every host process whose command line satisfies `pred` to be gone;
/// returns the survivors, SIGKILLed (so that one failure does not leave them behind).
pub fn survivors(limit: Duration, pred: impl Fn(&str) -> bool) -> Vec<(i32, String)> {
    let deadline = Instant::now() + limit;
    loop {
        let left = host_processes(&pred);
        if left.is_empty() {
            return left;
        }
        if Instant::now() >= deadline {
            for (pid, _) in &left {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`survivors`] among the processes carrying any of `markers`.
pub fn survivors_with<S: AsRef<str>>(markers: &[S], limit: Duration) -> Vec<(i32, String)> {
    survivors(limit, |c| markers.iter().any(|m| c.contains(m.as_ref())))
}

// ---- unique names and markers ----

static UNIQUE: AtomicU32 = AtomicU32::new(0);

/// A name no other test, run or process uses: `sbx-test-TAG-PID-N-NANOS`.
pub fn unique_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "sbx-test-{tag}-{}-{}-{nanos}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Digits no other process on the host has in its command line, fit for a `sleep` duration
/// (`sleep` takes no other extra argument): they mark the sandbox's processes in the host's
/// process list. Always 13 digits (for the first 100000 names and numbers of a test binary), so
/// that one marker never contains another.
pub fn unique_number() -> String {
    format!(
        "7{:07}{:05}",
        std::process::id() % 10_000_000,
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

// ---- the host's namespaces ----

/// The inode of the host's namespace of kind `kind` (e.g. "pid"), as `readlink` prints it.
pub fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}
