//! Test harness: runs the real sbx binary as an unprivileged user. When the test runner is
//! root (as in CI), the spawned sbx is dropped to `nobody`, from a copy of the binary in a
//! world-readable directory (the build tree may sit under a 0700 home).
//!
//! Every test file includes this module (`mod common;`). This file is the runner: building an
//! sbx invocation, running it (to the end, keeping its work directory, or within a deadline)
//! and reading what it printed and reported. The helpers that several test files need live
//! in submodules by topic:
//!
//! * `user`: the test uid, running host commands as it, executables it can run;
//! * `workdir`: work directories and profile files it owns, the files in a directory;
//! * `spawned`: a spawned sbx, its output line by line or through a pty, its exit;
//! * `procs`: the host's processes, survivors of a run, unique markers, the host's namespaces;
//! * `soak`: run counts (`SBX_SOAK=1`, CI) and reproducible randomness;
//!
//! These are re-exported here (`common::sbx`, `common::Workdir`, `common::survivors_with`, ...).
//! The helpers of one topic, which only a few files use, are reached by path
//! (`common::tree::snapshot`, `common::http::Server`):
//!
//! * `envs`: what container runtimes do to sbx (masked /proc, seccomp filters, no
//!   capabilities), built as a process tree around it;
//! * `tree`: building trees on the host, snapshots, and checks that the host did not change;
//! * `overlay`: the workspace, script and expected change report of the overlay tests;
//! * `http`: servers on the host's loopback;
//! * `netlab`: a network lab of two namespaces of its own (a "host" where sbx runs and an
//!   "internet" with a metadata server and a DNS server), joined by a veth pair, for the
//!   network modes' tests; root only (it says SKIP otherwise);
//! * `proxy`: clients run behind the egress proxy and what they printed;
//! * `enosys`: sbx under a seccomp filter that answers newer system calls with ENOSYS, with
//!   mounts of its own.
//!
//! Each test binary compiles all of it and uses a part, hence the `allow(dead_code)`.

#![allow(dead_code)]

pub mod enosys;
pub mod envs;
pub mod http;
pub mod netlab;
pub mod overlay;
pub mod procs;
pub mod proxy;
pub mod soak;
pub mod spawned;
pub mod tree;
pub mod user;
pub mod workdir;

// Each binary uses a part of these as well.
#[allow(unused_imports)]
pub use {procs::*, soak::*, spawned::*, user::*, workdir::*};

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A copy of the sbx binary that the test uid can execute.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let built = PathBuf::from(env!("CARGO_BIN_EXE_sbx"));
        if !is_root() {
            return built;
        }
        copy_per_build(&built, "sbx-test-bin", "sbx")
    })
}

// ---- running sbx ----

/// A configured sbx invocation.
pub struct Sbx {
    pub cmd: Command,
    pub work: Workdir,
}

/// Starts building `sbx ARGS...` run from a fresh work directory, with a clean environment
/// (HOME inside the work directory) and as the unprivileged test uid.
pub fn sbx<I, S>(args: I) -> Sbx
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let work = Workdir::new();
    let home = work.subdir("home");
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .current_dir(work.path())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &home)
        .env("USER", "tester")
        .env("TMPDIR", work.path())
        .stdin(Stdio::null())
        .as_test_uid();
    Sbx { cmd, work }
}

/// An sbx invocation with no arguments yet, so that the arguments can name its work dir.
pub fn bare() -> Sbx {
    sbx(Vec::<String>::new())
}

/// A process's exit code as a shell reports it: 128+N for a death by signal N.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub output: Output,
}

impl Ran {
    pub fn from_output(output: Output) -> Ran {
        Ran {
            code: exit_code(output.status),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            output,
        }
    }
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Sbx {
    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Sbx {
        self.cmd.env(k, v);
        self
    }

    pub fn run(self) -> Ran {
        run_keep(self).0
    }

    pub fn spawn(mut self) -> (std::process::Child, Workdir) {
        let child = self
            .cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sbx");
        (child, self.work)
    }
}

/// Runs `s` to the end and keeps its work directory, so that the host side can be checked
/// afterwards.
pub fn run_keep(s: Sbx) -> (Ran, Workdir) {
    let Sbx { mut cmd, work } = s;
    let output = cmd.output().expect("spawn sbx");
    (Ran::from_output(output), work)
}

/// [`run_keep`] for a run that must not hang: fails the test (after SIGKILLing sbx) if sbx has
/// not exited within `limit`. Also returns how long sbx ran.
pub fn run_timed(s: Sbx, limit: Duration) -> (Ran, Duration, Workdir) {
    let Sbx { mut cmd, work } = s;
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sbx");
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => {
            let took = start.elapsed();
            (Ran::from_output(out.expect("wait for sbx")), took, work)
        }
        Err(_) => {
            // Our own child, by its pid: it has not been reaped, so the pid is still its.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let out = rx.recv_timeout(Duration::from_secs(10));
            panic!("sbx did not exit within {limit:?}: it hangs; output after SIGKILL: {out:?}");
        }
    }
}

/// [`run_timed`] without the duration.
pub fn run_within(s: Sbx, limit: Duration) -> (Ran, Workdir) {
    let (r, _, work) = run_timed(s, limit);
    (r, work)
}

/// Runs `sbx ARGS... -- sh -c SCRIPT` and returns the result.
pub fn sh(args: &[&str], script: &str) -> Ran {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--", "sh", "-c", script]);
    sbx(all).run()
}

/// A `--json-status` report, parsed; `r` is the run that wrote it (for the failure message).
pub fn read_report(path: &Path, r: &Ran) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no run report at {}: {e}; {r:?}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("the report is not JSON ({e}): {text}"))
}

/// Lines of stderr that are one of sbx's (or clap's) error messages.
pub fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("sbx:") || l.starts_with("error:"))
        .collect()
}

/// `KEY=VALUE` lines as a map (other lines are skipped).
pub fn key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Prints why a test is not checking something on this host, so a skip is never silent.
pub fn note_skip(test: &str, why: &str) {
    eprintln!("NOTE {test}: not checked on this host: {why}");
}
