//! Test harness: runs the real sbx binary as an unprivileged user. When the test runner is
//! root (as in CI), the spawned sbx is dropped to `nobody`, from a copy of the binary in a
//! world-readable directory (the build tree may sit under a 0700 home).
//!
//! Every test file includes this module (`mod common;`), so it also holds the helpers that
//! several of them need: running sbx and keeping its work directory, reading a spawned sbx's
//! output line by line, finding the sandbox's processes on the host, unique markers, profile
//! files, tree snapshots and the like.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The unprivileged identity used when the runner is root.
pub const NOBODY: u32 = 65534;

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The uid sbx runs as in tests.
pub fn test_uid() -> u32 {
    if is_root() {
        NOBODY
    } else {
        nix::unistd::geteuid().as_raw()
    }
}

pub fn test_gid() -> u32 {
    if is_root() {
        NOBODY
    } else {
        nix::unistd::getegid().as_raw()
    }
}

/// Runs a host command as the test uid: as `nobody` when the runner is root.
pub trait AsTestUid {
    fn as_test_uid(&mut self) -> &mut Self;
}

impl AsTestUid for Command {
    fn as_test_uid(&mut self) -> &mut Self {
        if is_root() {
            self.uid(NOBODY).gid(NOBODY);
        }
        self
    }
}

// ---- executables the test uid can run ----

/// Copies the executable `src` to `dir/name`, `dir` and the copy with mode 0755, so that the
/// test uid can run it wherever `src` lives. The copy appears whole (a rename), so that
/// concurrent test binaries can share it; an existing copy is kept.
pub fn install_executable(src: &Path, dir: &Path, name: &str) -> PathBuf {
    let copy = dir.join(name);
    if !copy.exists() {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        std::fs::copy(src, &tmp).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &copy).unwrap();
    }
    copy
}

/// A copy of the build product `built` that the test uid can run: one copy per build (the
/// directory, `PREFIX-MTIME-SIZE` in the temp dir, names it), reused by every test file and run.
pub fn copy_per_build(built: &Path, prefix: &str, name: &str) -> PathBuf {
    let meta = std::fs::metadata(built).unwrap_or_else(|e| panic!("no {}: {e}", built.display()));
    let stamp = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{}", stamp.as_nanos(), meta.len()));
    install_executable(built, &dir, name)
}

/// This test binary, copied where the test uid can run it (to re-run it unprivileged); the
/// copy goes when the returned directory drops.
pub fn test_exe_copy(tag: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("sbx-{tag}-test-"))
        .tempdir_in("/tmp")
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let copy = install_executable(&exe, dir.path(), &format!("{tag}-test"));
    (dir, copy)
}

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

// ---- work directories ----

/// A directory owned by the test uid, removed when dropped.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        let dir = tempfile::Builder::new()
            .prefix("sbx-test-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        chown(dir.path());
        Workdir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory's own name (its last component).
    pub fn name(&self) -> String {
        self.path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// Creates a subdirectory owned by the test uid.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        chown(&p);
        p
    }

    /// Writes a file owned by the test uid.
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, content).unwrap();
        chown(&p);
        p
    }
}

pub fn chown(path: &Path) {
    if is_root() {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    }
}

/// A profile file the test uid can read, in a work directory of its own; kept while the value
/// lives.
pub struct Profile {
    _dir: Workdir,
    pub path: String,
}

/// Writes `body` to a profile file (see [`Profile`]).
pub fn profile(body: &str) -> Profile {
    let dir = Workdir::new();
    let path = dir.file("profile.toml", body).display().to_string();
    Profile { _dir: dir, path }
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

// ---- a spawned sbx ----

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

// ---- the host's processes ----

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

// ---- files ----

/// File names and contents of a directory (recursively; a directory's content is None), for
/// "unchanged" checks.
pub fn tree_snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                out.insert(rel, None);
                todo.push(p);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out
}

/// The names in `dir` (not recursive).
pub fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The canonical path of `p`, as sbx names it.
pub fn canonical(p: &Path) -> String {
    std::fs::canonicalize(p).unwrap().display().to_string()
}

// ---- the host ----

/// The inode of the host's namespace of kind `kind` (e.g. "pid"), as `readlink` prints it.
pub fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

/// Prints why a test is not checking something on this host, so a skip is never silent.
pub fn note_skip(test: &str, why: &str) {
    eprintln!("NOTE {test}: not checked on this host: {why}");
}

// ---- run counts and randomness ----

/// Whether the full counts run (`SBX_SOAK=1`, as benches/soak.sh sets).
pub fn soak() -> bool {
    std::env::var("SBX_SOAK").is_ok_and(|v| v == "1")
}

/// Whether this is CI (`CI=true`).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `SBX_SEED` or the clock; prints the seed for `what`, to replay a failure.
    pub fn new(what: &str) -> Rng {
        let seed = std::env::var("SBX_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{what}: seed {seed} (replay with SBX_SEED={seed})");
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
