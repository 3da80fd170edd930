//! One run's cgroup, from creation to removal, and the cleanup of those that dead
//! supervisors left behind.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::error::io_err;
use super::files::{keyed, read_pids, read_words, walk, write_file};
use super::{CgroupError, Delegation, Limits, Stats};

/// How long killed processes get to leave the cgroup before it counts as stuck.
pub(super) const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The run cgroup's child that holds the processes.
const SANDBOX_LEAF: &str = "sandbox";

/// Numbers the runs of one supervisor, so a process can create several run cgroups.
static RUN_COUNTER: AtomicU32 = AtomicU32::new(0);

pub(super) fn supervisor_leaf_name(pid: u32) -> String {
    format!("sbx-{pid}.supervisor")
}

/// The supervisor pid in the name of a cgroup sbx creates (`sbx-<pid>.supervisor`,
/// `sbx-<pid>-<n>`).
pub(super) fn sbx_name_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("sbx-")?;
    let pid = match rest.strip_suffix(".supervisor") {
        Some(pid) => pid,
        None => {
            let (pid, n) = rest.split_once('-')?;
            if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            pid
        }
    };
    if pid.is_empty() || !pid.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|&p: &i32| p > 0)
}

fn alive(pid: i32) -> bool {
    // EPERM means it exists but is not ours to signal.
    kill(Pid::from_raw(pid), None) != Err(Errno::ESRCH)
}

/// The directory operations whose effect on cgroupfs a plain directory does not reproduce
/// (the kernel populates a new cgroup with its interface files and rmdir drops them). Unit
/// tests substitute a simulation; everything else sbx does is plain file I/O.
pub(super) trait Fs: Sync {
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    fn rmdir(&self, path: &Path) -> io::Result<()>;
}

struct Cgroupfs;

static CGROUPFS: Cgroupfs = Cgroupfs;

impl Fs for Cgroupfs {
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        fs::DirBuilder::new().mode(0o755).create(path)
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }
}

/// Removes the cgroup at `root` and every cgroup below it (a sandbox may have made some),
/// children first. Fails with EBUSY on a populated one.
fn rmdir_tree(fs: &dyn Fs, root: &Path) -> Result<(), CgroupError> {
    for dir in walk(root).iter().rev() {
        match fs.rmdir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove cgroup", dir, &e)),
        }
    }
    Ok(())
}

/// Removes cgroups that sbx supervisors which are gone left in `own`: their supervisor leaves
/// (which outlive a run by design) and run cgroups of a supervisor that was killed. Populated
/// ones fail to rmdir and stay; live supervisors' cgroups are not touched.
fn sweep_stale(fs: &dyn Fs, own: &Path) {
    let Ok(entries) = fs::read_dir(own) else {
        return;
    };
    let me = std::process::id() as i32;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(sbx_name_pid) else {
            continue;
        };
        if pid != me && !alive(pid) {
            let _ = rmdir_tree(fs, &e.path());
        }
    }
}

/// One run's cgroup. Remove it with [`RunCgroup::remove`]; dropping it cleans up as well as
/// it can, silently.
pub struct RunCgroup {
    /// `own/sbx-<pid>-<n>`: limits, statistics, cgroup.kill.
    path: PathBuf,
    /// path/sandbox: the processes.
    leaf: PathBuf,
    /// The leaf, opened O_DIRECTORY, for clone3's CLONE_INTO_CGROUP.
    leaf_fd: OwnedFd,
    own: PathBuf,
    moved_self: bool,
    done: bool,
    fs: &'static dyn Fs,
}

impl std::fmt::Debug for RunCgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunCgroup")
            .field("path", &self.path)
            .field("leaf_fd", &self.leaf_fd)
            .field("moved_self", &self.moved_self)
            .finish()
    }
}

impl RunCgroup {
    /// Creates `own/sbx-<pid>-<n>` with `limits` written into it and its process leaf
    /// `sandbox/` below. Enables the controllers the limits need in own's
    /// cgroup.subtree_control first, moving the supervisor out of `own` if it must (see the
    /// module documentation).
    pub fn create(d: &Delegation, limits: &Limits) -> Result<RunCgroup, CgroupError> {
        Self::create_in(&CGROUPFS, d, limits, &[])
    }

    /// [`RunCgroup::create`], also enabling the `extra` controllers without a limit: e.g.
    /// "memory" to read memory.peak of a run with no memory limit.
    pub fn create_with_controllers(
        d: &Delegation,
        limits: &Limits,
        extra: &[&str],
    ) -> Result<RunCgroup, CgroupError> {
        Self::create_in(&CGROUPFS, d, limits, extra)
    }

    pub(super) fn create_in(
        fs: &'static dyn Fs,
        d: &Delegation,
        limits: &Limits,
        extra: &[&str],
    ) -> Result<RunCgroup, CgroupError> {
        let mut wanted = limits.controllers();
        for c in extra {
            if !wanted.contains(c) {
                wanted.push(c);
            }
        }
        let missing: Vec<String> = wanted
            .iter()
            .filter(|c| !d.available.iter().any(|a| a == *c))
            .map(|c| c.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(CgroupError::MissingControllers {
                cgroup: d.own.clone(),
                missing,
                available: d.available.clone(),
                hint: "the delegation was detected without asking for them".to_string(),
            });
        }
        let moved_self = enable_controllers(fs, &d.own, &wanted)?;
        let path = mkdir_run(fs, &d.own)?;
        let leaf = path.join(SANDBOX_LEAF);
        match populate(fs, &path, &leaf, limits) {
            Ok(leaf_fd) => Ok(RunCgroup {
                path,
                leaf,
                leaf_fd,
                own: d.own.clone(),
                moved_self,
                done: false,
                fs,
            }),
            Err(e) => {
                let _ = rmdir_tree(fs, &path);
                Err(e)
            }
        }
    }

    /// The run cgroup: where the limits are and the statistics come from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The leaf below [`RunCgroup::path`] that holds the sandbox's processes.
    pub fn leaf_path(&self) -> &Path {
        &self.leaf
    }

    /// The leaf, opened O_RDONLY|O_DIRECTORY|O_CLOEXEC: pass it as `clone_args.cgroup` with
    /// CLONE_INTO_CGROUP (Linux 5.7+) to start a process directly inside.
    pub fn dir_fd(&self) -> RawFd {
        self.leaf_fd.as_raw_fd()
    }

    /// Whether creating this run moved the supervisor into its `sbx-<pid>.supervisor` leaf.
    pub fn moved_self(&self) -> bool {
        self.moved_self
    }

    /// Moves process `pid` (all its threads) into the sandbox leaf.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        write_file(&self.leaf.join("cgroup.procs"), &pid.to_string())
    }

    /// Kills every process in the run, then waits (up to 2 s) until none is left. Uses
    /// cgroup.kill (Linux 5.14+), else freezes the cgroup and SIGKILLs each listed pid until
    /// the list is empty.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        // cgroup.kill also reaches processes forking at that moment and cannot hit a reused
        // pid; should it fail, the pid-by-pid fallback still applies.
        if write_file(&self.path.join("cgroup.kill"), "1").is_err() {
            self.kill_listed();
        }
        self.wait_empty()
    }

    /// The cgroup.kill fallback. Frozen processes cannot fork, so the loop converges; a pid
    /// could still be reused between reading the list and the kill, the race cgroup.kill
    /// closes.
    fn kill_listed(&self) {
        let freeze = self.path.join("cgroup.freeze");
        if freeze.exists() {
            let _ = write_file(&freeze, "1");
        }
        let me = std::process::id() as i32;
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            let mut any = false;
            for dir in walk(&self.path) {
                for pid in read_pids(&dir.join("cgroup.procs")) {
                    if pid != me && kill(Pid::from_raw(pid), Signal::SIGKILL) != Err(Errno::ESRCH) {
                        any = true;
                    }
                }
            }
            if !any || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether any process is left in the run's subtree.
    fn populated(&self) -> bool {
        match fs::read_to_string(self.path.join("cgroup.events")) {
            Ok(events) => keyed(&events, "populated").is_some_and(|n| n != 0),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.path.exists() => false,
            Err(_) => walk(&self.path)
                .iter()
                .any(|d| !read_pids(&d.join("cgroup.procs")).is_empty()),
        }
    }

    fn wait_empty(&self) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        while self.populated() {
            if start.elapsed() >= DRAIN_TIMEOUT {
                let pids = walk(&self.path)
                    .iter()
                    .flat_map(|d| read_pids(&d.join("cgroup.procs")))
                    .collect();
                return Err(CgroupError::Stragglers {
                    cgroup: self.path.clone(),
                    pids,
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        Ok(())
    }

    /// What the run used. Read it after the sandbox ended and before [`RunCgroup::remove`].
    pub fn stats(&self) -> Stats {
        let read = |name: &str| fs::read_to_string(self.path.join(name)).ok();
        let cpu = read("cpu.stat").unwrap_or_default();
        Stats {
            memory_peak: read("memory.peak").and_then(|t| t.trim().parse().ok()),
            cpu_usage_usec: keyed(&cpu, "usage_usec"),
            cpu_user_usec: keyed(&cpu, "user_usec"),
            cpu_system_usec: keyed(&cpu, "system_usec"),
            oom_kills: read("memory.events").and_then(|t| keyed(&t, "oom_kill")),
        }
    }

    /// Kills what is left, waits for it to go (bounded), and removes the run cgroup. A
    /// supervisor leaf stays (the supervisor is in it); leaves and run cgroups of supervisors
    /// that are gone are removed on the way.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.cleanup()
    }

    fn cleanup(&mut self) -> Result<(), CgroupError> {
        self.done = true;
        let mut result = Ok(());
        if self.populated() {
            result = self.kill_all();
        }
        if let Err(e) = rmdir_tree(self.fs, &self.path) {
            result = result.and(Err(e));
        }
        sweep_stale(self.fs, &self.own);
        result
    }
}

impl AsFd for RunCgroup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.leaf_fd.as_fd()
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.cleanup();
        }
    }
}

/// Enables `wanted` controllers in own's subtree_control unless they already are; returns
/// whether the supervisor moved itself into its leaf to make that possible.
fn enable_controllers(fs: &dyn Fs, own: &Path, wanted: &[&str]) -> Result<bool, CgroupError> {
    let control = own.join("cgroup.subtree_control");
    let enabled = read_words(&control).map_err(|e| io_err("read", &control, &e))?;
    let todo: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|c| !enabled.iter().any(|e| e == c))
        .collect();
    if todo.is_empty() {
        return Ok(false);
    }
    // The root cgroup, the only one without cgroup.type, is exempt from the no-internal-
    // processes rule.
    let moved = if own.join("cgroup.type").exists() {
        Some(move_self(fs, own)?)
    } else {
        None
    };
    let value = todo
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    let Err(err) = write_file(&control, &value) else {
        return Ok(moved.is_some());
    };
    // Nothing was enabled: go back where we were and leave no trace.
    let others = read_pids(&own.join("cgroup.procs"));
    if let Some((leaf, true)) = &moved {
        let back = write_file(&own.join("cgroup.procs"), &std::process::id().to_string());
        if back.is_ok() {
            let _ = fs.rmdir(leaf);
        }
    }
    match err {
        CgroupError::Write {
            errno: Errno::EBUSY,
            ..
        } => Err(CgroupError::Busy {
            cgroup: own.to_path_buf(),
            controllers: todo.iter().map(|c| c.to_string()).collect(),
            others,
        }),
        other => Err(other),
    }
}

/// Moves the supervisor (all its threads) into `own/sbx-<pid>.supervisor`; returns that and
/// whether it had to create it (else the supervisor may have been there already).
fn move_self(fs: &dyn Fs, own: &Path) -> Result<(PathBuf, bool), CgroupError> {
    let me = std::process::id();
    let leaf = own.join(supervisor_leaf_name(me));
    let created = match fs.mkdir(&leaf) {
        Ok(()) => true,
        // Ours from an earlier run, or a dead namesake's: empty either way.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(io_err("create cgroup", &leaf, &e)),
    };
    if let Err(e) = write_file(&leaf.join("cgroup.procs"), &me.to_string()) {
        if created {
            let _ = fs.rmdir(&leaf);
        }
        return Err(e);
    }
    Ok((leaf, created))
}

/// Creates `own/sbx-<pid>-<n>` with the first free n.
fn mkdir_run(fs: &dyn Fs, own: &Path) -> Result<PathBuf, CgroupError> {
    let me = std::process::id();
    let mut tries = 0;
    loop {
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = own.join(format!("sbx-{me}-{n}"));
        match fs.mkdir(&path) {
            Ok(()) => return Ok(path),
            // Left by an earlier process with our pid.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 100 => tries += 1,
            Err(e) => return Err(io_err("create cgroup", &path, &e)),
        }
    }
}

/// Writes the limits into the new run cgroup, then creates and opens its process leaf.
fn populate(
    fs: &dyn Fs,
    path: &Path,
    leaf: &Path,
    limits: &Limits,
) -> Result<OwnedFd, CgroupError> {
    if let Some(bytes) = limits.memory_max {
        write_file(&path.join("memory.max"), &bytes.to_string())?;
        // Absent when swap accounting is off, and then there is no swap to limit.
        let swap = path.join("memory.swap.max");
        if swap.exists() {
            write_file(&swap, "0")?;
        }
        // Crossing the limit ends the whole sandbox, as sbx's watchdog does where there is no
        // cgroup, rather than one process the rest carry on without (systemd's OOMPolicy=stop).
        write_file(&path.join("memory.oom.group"), "1")?;
    }
    if let Some(pids) = limits.pids_max {
        write_file(&path.join("pids.max"), &pids.to_string())?;
    }
    if let Some((quota, period)) = limits.cpu_max {
        write_file(&path.join("cpu.max"), &format!("{quota} {period}"))?;
    }
    fs.mkdir(leaf)
        .map_err(|e| io_err("create cgroup", leaf, &e))?;
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(leaf)
        .map_err(|e| io_err("open", leaf, &e))?;
    Ok(dir.into())
}
