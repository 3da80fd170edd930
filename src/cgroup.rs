//! cgroup v2 budgets for one run, when the host delegates a subtree to the user (systemd's
//! `Delegate=yes`, or a directory root chowned to them).
//!
//! [`detect`] finds the cgroup the supervisor was started in (`own`) and checks that it is
//! ours to manage. [`RunCgroup::create`] then builds, under it:
//!
//! ```text
//! <own>/                      delegated to us. The controllers a run needs are enabled in its
//! │                           cgroup.subtree_control, and stay enabled (other runs use them).
//! ├── sbx-<pid>.supervisor/   the supervisor itself, when it had to leave <own> (see below)
//! └── sbx-<pid>-<n>/          one run: limits are written, statistics read and cgroup.kill
//!     │                       done here
//!     └── sandbox/            the sandbox's processes (`add_process`, `dir_fd`)
//! ```
//!
//! Why processes go one level below the limits: the kernel gives every file of a new cgroup
//! to its creator, which is the uid the payload runs as. In `sandbox/`, whose subtree_control
//! stays empty, there is no memory.max to rewrite, and a payload whose cgroup namespace is
//! rooted there cannot see the run cgroup's files at all. Limits apply to the whole subtree.
//!
//! Why the supervisor may move itself: cgroup v2 forbids enabling (domain) controllers in a
//! cgroup that has processes of its own, and the supervisor lives in `own`. So before enabling
//! controllers there, it moves into the leaf `sbx-<pid>.supervisor`. It cannot move back while
//! the controllers are enabled, so that leaf outlives the run (empty once sbx exits); a later
//! run removes leaves of supervisors that are gone. Any other process in `own` (the shell that
//! started sbx, say) makes the kernel refuse with EBUSY, reported as [`CgroupError::Busy`].

use std::fmt::Display;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{AccessFlags, Pid};

/// What to do when the cgroup is not delegated or lacks a controller.
const DELEGATE_HINT: &str = "run sbx in a cgroup delegated to you, e.g. `systemd-run --user --scope -p Delegate=yes sbx ...`";

/// How long killed processes get to leave the cgroup before it counts as stuck.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The run cgroup's child that holds the processes.
const SANDBOX_LEAF: &str = "sandbox";

/// Numbers the runs of one supervisor, so a process can create several run cgroups.
static RUN_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whole-sandbox budgets. None leaves that resource unlimited (and its controller untouched).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// memory.max in bytes. Swap is then forbidden too (memory.swap.max = 0), or the limit
    /// would only push the excess into swap.
    pub memory_max: Option<u64>,
    /// pids.max: processes and threads together.
    pub pids_max: Option<u64>,
    /// cpu.max as (quota, period) in microseconds: (150000, 100000) is 1.5 CPUs.
    pub cpu_max: Option<(u64, u64)>,
}

impl Limits {
    /// The controllers these limits need, in the order they are enabled.
    pub fn controllers(&self) -> Vec<&'static str> {
        let mut c = Vec::new();
        if self.memory_max.is_some() {
            c.push("memory");
        }
        if self.pids_max.is_some() {
            c.push("pids");
        }
        if self.cpu_max.is_some() {
            c.push("cpu");
        }
        c
    }

    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// Where sbx may create cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delegation {
    /// The cgroup2 mount point.
    pub mount: PathBuf,
    /// The supervisor's own cgroup directory (the parent of its supervisor leaf, if it has
    /// already moved into one).
    pub own: PathBuf,
    /// The controllers `own` offers to its children (its cgroup.controllers).
    pub available: Vec<String>,
}

/// What a run cgroup measured. Files the kernel does not provide (controller not enabled,
/// older kernel) leave their fields None.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// memory.peak (Linux 5.19+, memory controller), bytes.
    pub memory_peak: Option<u64>,
    /// cpu.stat usage_usec, user_usec and system_usec (always present on cgroup v2).
    pub cpu_usage_usec: Option<u64>,
    pub cpu_user_usec: Option<u64>,
    pub cpu_system_usec: Option<u64>,
    /// memory.events oom_kill: processes the OOM killer killed in the run.
    pub oom_kills: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "this process is in no cgroup v2 hierarchy (/proc/self/cgroup has no `0::` line): the \
         host runs cgroup v1 only"
    )]
    NotInV2,
    #[error(
        "no cgroup2 mount in /proc/self/mountinfo shows this process's cgroup {cgroup:?}: mount \
         cgroup2 (usually at /sys/fs/cgroup) where sbx can see it"
    )]
    NoMount { cgroup: String },
    #[error(
        "cgroup {} is not delegated to uid {uid}: {} is not writable (owner uid {owner}, mode \
         {mode:o}); {DELEGATE_HINT}, or have root chown the directory and its cgroup.procs, \
         cgroup.subtree_control and cgroup.threads to uid {uid}",
        cgroup.display(),
        file.display()
    )]
    NotDelegated {
        cgroup: PathBuf,
        file: PathBuf,
        owner: u32,
        mode: u32,
        uid: u32,
    },
    #[error(
        "cgroup v2 controller{} {} not available in {} (its cgroup.controllers lists: {}): {hint}",
        plural(missing),
        list(missing),
        cgroup.display(),
        if available.is_empty() { "nothing".to_string() } else { list(available) }
    )]
    MissingControllers {
        cgroup: PathBuf,
        missing: Vec<String>,
        available: Vec<String>,
        hint: String,
    },
    #[error(
        "cannot enable the {} controller{} in {}: cgroup v2 allows none in a cgroup that has \
         processes, and other processes live there (pids {}); {DELEGATE_HINT}, so that sbx is \
         alone in its cgroup",
        list(controllers),
        plural(controllers),
        cgroup.display(),
        if others.is_empty() { "that exited meanwhile".to_string() } else { list(others) }
    )]
    Busy {
        cgroup: PathBuf,
        controllers: Vec<String>,
        others: Vec<i32>,
    },
    #[error(
        "processes in {} survived SIGKILL for {DRAIN_TIMEOUT:?} (pids: {})",
        cgroup.display(),
        if pids.is_empty() { "none listed".to_string() } else { list(pids) }
    )]
    Stragglers { cgroup: PathBuf, pids: Vec<i32> },
    #[error("cannot {op} {}: {} ({errno:?})", path.display(), errno.desc())]
    Io {
        op: &'static str,
        path: PathBuf,
        errno: Errno,
    },
    #[error("cannot write {value:?} to {}: {} ({errno:?})", path.display(), errno.desc())]
    Write {
        path: PathBuf,
        value: String,
        errno: Errno,
    },
}

fn list<T: Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural<T>(items: &[T]) -> &'static str {
    if items.len() == 1 { "" } else { "s" }
}

fn errno_of(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn io_err(op: &'static str, path: &Path, e: &io::Error) -> CgroupError {
    CgroupError::Io {
        op,
        path: path.to_path_buf(),
        errno: errno_of(e),
    }
}

/// Finds the supervisor's cgroup v2 directory and checks that sbx may manage it: the
/// directory, its cgroup.procs and (when controllers are needed) its cgroup.subtree_control
/// writable by us, and every `needed` controller listed in its cgroup.controllers.
pub fn detect(needed: &[&str]) -> Result<Delegation, CgroupError> {
    let read = |p: &str| fs::read_to_string(p).map_err(|e| io_err("read", Path::new(p), &e));
    detect_from(
        &read("/proc/self/cgroup")?,
        &read("/proc/self/mountinfo")?,
        needed,
    )
}

/// [`detect`] from the text of /proc/self/cgroup and /proc/self/mountinfo, so that a test can
/// point it at a directory laid out like cgroupfs (by naming that directory as the cgroup2
/// mount point in `mountinfo`).
pub fn detect_from(
    cgroup_file: &str,
    mountinfo: &str,
    needed: &[&str],
) -> Result<Delegation, CgroupError> {
    detect_with(cgroup_file, mountinfo, needed, &|p| {
        // access(2) checks the real ids; sbx is not setuid, so they are the effective ones.
        nix::unistd::access(p, AccessFlags::W_OK)
    })
}

/// The write-access check, injectable because root passes access(2) on any file.
type AccessCheck<'a> = &'a dyn Fn(&Path) -> Result<(), Errno>;

fn detect_with(
    cgroup_file: &str,
    mountinfo: &str,
    needed: &[&str],
    writable: AccessCheck,
) -> Result<Delegation, CgroupError> {
    let cgpath = v2_path(cgroup_file).ok_or(CgroupError::NotInV2)?;
    let mounts = parse_mountinfo(mountinfo);
    let (mount, mut own) = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup2")
        .find_map(|m| {
            let rel = relative_to(&m.root, cgpath.as_bytes())?;
            let own = if rel.is_empty() {
                m.point.clone()
            } else {
                m.point.join(std::ffi::OsString::from_vec(rel.to_vec()))
            };
            Some((m.point.clone(), own))
        })
        .ok_or_else(|| CgroupError::NoMount {
            cgroup: cgpath.to_string(),
        })?;
    // An earlier run in this process moved the supervisor into its leaf; it still manages
    // the cgroup above.
    let me = std::process::id();
    if own != mount && own.file_name() == Some(supervisor_leaf_name(me).as_ref()) {
        own.pop();
    }

    let controllers = own.join("cgroup.controllers");
    let available = read_words(&controllers).map_err(|e| io_err("read", &controllers, &e))?;
    let missing: Vec<String> = needed
        .iter()
        .filter(|c| !available.iter().any(|a| a == *c))
        .map(|c| c.to_string())
        .collect();
    if !missing.is_empty() {
        let hint = missing_hint(&mount, &mounts, &missing);
        return Err(CgroupError::MissingControllers {
            cgroup: own,
            missing,
            available,
            hint,
        });
    }

    let mut files = vec![own.clone(), own.join("cgroup.procs")];
    if !needed.is_empty() {
        files.push(own.join("cgroup.subtree_control"));
    }
    for file in files {
        match writable(&file) {
            Ok(()) => {}
            Err(Errno::EACCES | Errno::EPERM | Errno::EROFS) => {
                let meta = fs::metadata(&file).map_err(|e| io_err("stat", &file, &e))?;
                return Err(CgroupError::NotDelegated {
                    cgroup: own,
                    file,
                    owner: meta.uid(),
                    mode: meta.mode() & 0o7777,
                    uid: nix::unistd::geteuid().as_raw(),
                });
            }
            Err(errno) => {
                return Err(CgroupError::Io {
                    op: "check write access to",
                    path: file,
                    errno,
                });
            }
        }
    }
    Ok(Delegation {
        mount,
        own,
        available,
    })
}

/// Says, for each missing controller, why it is missing and what would help.
fn missing_hint(mount: &Path, mounts: &[MountEntry], missing: &[String]) -> String {
    let top = read_words(&mount.join("cgroup.controllers")).unwrap_or_default();
    let mut why = Vec::new();
    for c in missing {
        let v1 = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.superopts.split(',').any(|o| o == c));
        why.push(if top.iter().any(|t| t == c) {
            format!(
                "{c} is enabled higher up but not delegated down to this cgroup; {DELEGATE_HINT}"
            )
        } else if let Some(v1) = v1 {
            format!(
                "{c} is bound to the cgroup v1 hierarchy at {} (a hybrid layout), so cgroup v2 \
                 cannot limit it until the host boots with systemd.unified_cgroup_hierarchy=1",
                v1.point.display()
            )
        } else {
            format!("this kernel's cgroup v2 hierarchy has no {c} controller")
        });
    }
    why.join("; ")
}

/// The cgroup v2 path in /proc/<pid>/cgroup text (its `0::PATH` line).
pub fn v2_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

#[derive(Debug)]
struct MountEntry {
    /// The mounted directory inside the filesystem, as bytes (mountinfo is not UTF-8-bound).
    root: Vec<u8>,
    point: PathBuf,
    fstype: String,
    superopts: String,
}

/// Parses /proc/self/mountinfo: `ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - FSTYPE
/// SOURCE SUPEROPTS`. Paths escape space, tab, newline and backslash as `\ooo`, so the first
/// " - " is the separator.
fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let mut pre = pre.split(' ').skip(3);
            let root = unescape(pre.next()?);
            let point = PathBuf::from(std::ffi::OsString::from_vec(unescape(pre.next()?)));
            let mut post = post.split(' ');
            let fstype = post.next()?.to_string();
            let _source = post.next();
            let superopts = post.next().unwrap_or("").to_string();
            Some(MountEntry {
                root,
                point,
                fstype,
                superopts,
            })
        })
        .collect()
}

fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).filter(|d| {
            b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3'
        });
        if let Some(d) = oct {
            out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// `path` relative to the mount's `root`, without a leading slash; None when the mount does
/// not show `path` (including roots like `/..` that a cgroup namespace gives foreign mounts).
fn relative_to<'a>(root: &[u8], path: &'a [u8]) -> Option<&'a [u8]> {
    let rest = if root == b"/" {
        path
    } else {
        let rest = path.strip_prefix(root)?;
        if !rest.is_empty() && !rest.starts_with(b"/") {
            return None;
        }
        rest
    };
    if !path.starts_with(b"/") {
        return None;
    }
    let rest = rest.strip_prefix(b"/").unwrap_or(rest);
    Some(rest)
}

fn read_words(path: &Path) -> io::Result<Vec<String>> {
    Ok(fs::read_to_string(path)?
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

fn read_pids(path: &Path) -> Vec<i32> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        // 0 and negative numbers would address process groups in kill(2): never let them in.
        .filter(|&p: &i32| p > 0)
        .collect()
}

/// The value of `key` in a flat-keyed file (cpu.stat, memory.events: `key value` lines).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Writes `value` to a cgroup interface file in one write(2), as the kernel expects.
fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    let werr = |e: &io::Error| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        errno: errno_of(e),
    };
    // Never O_CREAT: cgroupfs creates its files itself, a missing one means a missing feature.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| werr(&e))?;
    f.write_all(value.as_bytes()).map_err(|e| werr(&e))
}

fn supervisor_leaf_name(pid: u32) -> String {
    format!("sbx-{pid}.supervisor")
}

/// The supervisor pid in the name of a cgroup sbx creates (`sbx-<pid>.supervisor`,
/// `sbx-<pid>-<n>`).
fn sbx_name_pid(name: &str) -> Option<i32> {
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

/// `root` and every cgroup below it, parents before children. Symlinks are not followed.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        out.push(dir);
    }
    out
}

/// The directory operations whose effect on cgroupfs a plain directory does not reproduce
/// (the kernel populates a new cgroup with its interface files and rmdir drops them). Unit
/// tests substitute a simulation; everything else sbx does is plain file I/O.
trait Fs: Sync {
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
    /// own/sbx-<pid>-<n>: limits, statistics, cgroup.kill.
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

    fn create_in(
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A plain directory playing cgroupfs: mkdir creates the interface files the kernel would
    /// (those of the controllers the parent enables), rmdir refuses populated cgroups and ones
    /// with children, like the kernel.
    struct FakeKernel {
        /// Interface files this kernel lacks.
        omit: &'static [&'static str],
    }

    static FAKE: FakeKernel = FakeKernel { omit: &[] };
    /// Before Linux 5.14 (no cgroup.kill), swap accounting off.
    static FAKE_OLD: FakeKernel = FakeKernel {
        omit: &["cgroup.kill", "memory.swap.max"],
    };
    static FAKE_NO_CPU_MAX: FakeKernel = FakeKernel { omit: &["cpu.max"] };

    fn put(dir: &Path, name: &str, content: &str) {
        fs::write(dir.join(name), content).unwrap();
    }

    fn get(path: impl AsRef<Path>) -> String {
        fs::read_to_string(path.as_ref())
            .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
    }

    impl Fs for FakeKernel {
        fn mkdir(&self, path: &Path) -> io::Result<()> {
            fs::create_dir(path)?;
            let parent = path.parent().unwrap();
            // The kernel shows "memory pids"; our writes leave "+memory +pids" in the fake.
            let enabled: Vec<String> = read_words(&parent.join("cgroup.subtree_control"))?
                .iter()
                .map(|c| c.trim_start_matches('+').to_string())
                .collect();
            let on = |c: &str| enabled.iter().any(|e| e == c);
            let mut files = vec![
                ("cgroup.procs", ""),
                ("cgroup.threads", ""),
                ("cgroup.subtree_control", ""),
                ("cgroup.type", "domain\n"),
                ("cgroup.events", "populated 0\nfrozen 0\n"),
                ("cgroup.freeze", "0\n"),
                ("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
                ("cgroup.kill", ""),
            ];
            if on("memory") {
                files.extend([
                    ("memory.max", "max\n"),
                    ("memory.peak", "0\n"),
                    ("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"),
                    ("memory.swap.max", "max\n"),
                ]);
            }
            if on("pids") {
                files.push(("pids.max", "max\n"));
            }
            if on("cpu") {
                files.push(("cpu.max", "max 100000\n"));
            }
            for (name, content) in files {
                if !self.omit.contains(&name) {
                    put(path, name, content);
                }
            }
            put(path, "cgroup.controllers", &(enabled.join(" ") + "\n"));
            Ok(())
        }

        fn rmdir(&self, path: &Path) -> io::Result<()> {
            let has_children = fs::read_dir(path)?
                .flatten()
                .any(|e| e.file_type().unwrap().is_dir());
            if has_children || !get(path.join("cgroup.procs")).trim().is_empty() {
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            fs::remove_dir_all(path)
        }
    }

    /// A temporary cgroup2 "mount" holding the supervisor's delegated cgroup
    /// /user.slice/sbx-test.scope, with the supervisor in it.
    struct FakeHost {
        _tmp: tempfile::TempDir,
        mount: PathBuf,
        own: PathBuf,
        cgroup_file: String,
        mountinfo: String,
    }

    const OWN: &str = "/user.slice/sbx-test.scope";

    fn fake_host(available: &str) -> FakeHost {
        let tmp = tempfile::tempdir().unwrap();
        let mount = tmp.path().join("cgroup2");
        let own = mount.join("user.slice/sbx-test.scope");
        fs::create_dir_all(&own).unwrap();
        // The root: no cgroup.type there.
        put(&mount, "cgroup.controllers", "cpu memory pids hugetlb\n");
        put(&mount, "cgroup.subtree_control", "cpu memory pids\n");
        put(&mount, "cgroup.procs", "1\n");
        put(&own, "cgroup.controllers", &format!("{available}\n"));
        put(&own, "cgroup.subtree_control", "");
        put(&own, "cgroup.procs", &format!("{}\n", std::process::id()));
        put(&own, "cgroup.threads", "");
        put(&own, "cgroup.type", "domain\n");
        put(&own, "cgroup.events", "populated 1\nfrozen 0\n");
        let mountinfo = format!(
            "22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n\
             35 31 0:32 / /fake/v1/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n\
             41 31 0:38 / {} rw,nosuid,relatime shared:12 - cgroup2 cgroup2 rw,nsdelegate\n",
            mount.display()
        );
        FakeHost {
            _tmp: tmp,
            mount,
            own,
            cgroup_file: format!("1:name=systemd:/x\n0::{OWN}\n"),
            mountinfo,
        }
    }

    impl FakeHost {
        fn detect(&self, needed: &[&str]) -> Result<Delegation, CgroupError> {
            detect_from(&self.cgroup_file, &self.mountinfo, needed)
        }
    }

    fn me() -> u32 {
        std::process::id()
    }

    const LIMITS: Limits = Limits {
        memory_max: Some(512 << 20),
        pids_max: Some(64),
        cpu_max: Some((150_000, 100_000)),
    };

    #[test]
    fn limits_name_their_controllers_in_order() {
        assert_eq!(LIMITS.controllers(), ["memory", "pids", "cpu"]);
        assert!(Limits::default().controllers().is_empty());
        assert!(Limits::default().is_empty());
        let cpu_only = Limits {
            cpu_max: Some((50_000, 100_000)),
            ..Limits::default()
        };
        assert_eq!(cpu_only.controllers(), ["cpu"]);
    }

    #[test]
    fn detect_finds_the_delegated_cgroup() {
        let h = fake_host("cpu memory pids");
        let d = h.detect(&["memory", "pids", "cpu"]).unwrap();
        assert_eq!(
            d,
            Delegation {
                mount: h.mount.clone(),
                own: h.own.clone(),
                available: vec!["cpu".into(), "memory".into(), "pids".into()],
            }
        );
    }

    #[test]
    fn detect_names_a_missing_controller_and_why() {
        let h = fake_host("cpu pids");
        let err = h.detect(&["memory", "pids"]).unwrap_err();
        let CgroupError::MissingControllers { missing, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(missing, &["memory"]);
        let msg = err.to_string();
        // The root offers memory, so it is a delegation problem: say how to get one.
        assert!(
            msg.contains("controller memory not available in")
                && msg.contains("lists: cpu, pids")
                && msg.contains("not delegated down")
                && msg.contains("systemd-run --user --scope -p Delegate=yes"),
            "{msg}"
        );

        // Bound to cgroup v1 (this host's case): say so instead.
        put(&h.mount, "cgroup.controllers", "hugetlb\n");
        let msg = h.detect(&["memory"]).unwrap_err().to_string();
        assert!(
            msg.contains("memory is bound to the cgroup v1 hierarchy at /fake/v1/memory")
                && msg.contains("systemd.unified_cgroup_hierarchy=1"),
            "{msg}"
        );
        let msg = h.detect(&["io"]).unwrap_err().to_string();
        assert!(
            msg.contains("controller io not available") && msg.contains("has no io controller"),
            "{msg}"
        );
    }

    #[test]
    fn detect_without_v2_or_mount_says_so() {
        let h = fake_host("");
        let err = detect_from("1:name=systemd:/\n2:memory:/\n", &h.mountinfo, &[]).unwrap_err();
        assert!(matches!(err, CgroupError::NotInV2), "{err:?}");
        assert!(err.to_string().contains("no cgroup v2 hierarchy"));

        let v1_only = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let err = detect_from(&h.cgroup_file, v1_only, &[]).unwrap_err();
        assert!(
            err.to_string().contains("no cgroup2 mount") && err.to_string().contains(OWN),
            "{err}"
        );
        // A mount of another subtree does not show ours.
        let other = format!(
            "41 31 0:38 /system.slice {} rw - cgroup2 cgroup2 rw\n",
            h.mount.display()
        );
        let err = detect_from(&h.cgroup_file, &other, &[]).unwrap_err();
        assert!(matches!(err, CgroupError::NoMount { .. }), "{err:?}");
    }

    #[test]
    fn detect_maps_a_mount_of_a_subtree() {
        // cgroup2 mounted with root /user.slice: our cgroup is sbx-test.scope below the mount.
        let h = fake_host("");
        let base = h.mount.join("user.slice");
        let mountinfo = format!(
            "41 31 0:38 /user.slice {} rw - cgroup2 cgroup2 rw\n",
            base.display()
        );
        let d = detect_from(&h.cgroup_file, &mountinfo, &[]).unwrap();
        assert_eq!(d.mount, base);
        assert_eq!(d.own, h.own);
    }

    #[test]
    fn detect_reports_a_cgroup_that_is_not_writable() {
        let h = fake_host("cpu memory pids");
        // Injected, because root passes access(2) whatever the mode.
        let deny = |p: &Path| {
            if p.ends_with("cgroup.subtree_control") {
                Err(Errno::EACCES)
            } else {
                Ok(())
            }
        };
        let err = detect_with(&h.cgroup_file, &h.mountinfo, &["memory"], &deny).unwrap_err();
        let CgroupError::NotDelegated { file, owner, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(file, &h.own.join("cgroup.subtree_control"));
        assert_eq!(*owner, nix::unistd::geteuid().as_raw());
        let msg = err.to_string();
        assert!(
            msg.contains("is not delegated to uid")
                && msg.contains("cgroup.subtree_control is not writable (owner uid")
                && msg.contains("systemd-run --user --scope -p Delegate=yes"),
            "{msg}"
        );
        // Without needed controllers, subtree_control does not matter.
        detect_with(&h.cgroup_file, &h.mountinfo, &[], &deny).unwrap();

        // The real access(2) check.
        fs::set_permissions(
            h.own.join("cgroup.procs"),
            fs::Permissions::from_mode(0o444),
        )
        .unwrap();
        if nix::unistd::geteuid().is_root() {
            eprintln!(
                "NOTE detect_reports_a_cgroup_that_is_not_writable: root passes access(2) on a \
                 0444 file, so the real check is not exercised here (the injected one is, and \
                 tests/cgroup.rs runs it as uid 65534 on the real cgroupfs)"
            );
            h.detect(&[]).unwrap();
        } else {
            let err = h.detect(&[]).unwrap_err();
            assert!(
                err.to_string().contains("cgroup.procs is not writable")
                    && err.to_string().contains("mode 444"),
                "{err}"
            );
        }
    }

    #[test]
    fn detect_sees_through_our_own_supervisor_leaf() {
        let h = fake_host("memory");
        let leaf = h.own.join(supervisor_leaf_name(me()));
        fs::create_dir(&leaf).unwrap();
        let cgroup_file = format!("0::{OWN}/sbx-{}.supervisor\n", me());
        let d = detect_from(&cgroup_file, &h.mountinfo, &["memory"]).unwrap();
        assert_eq!(d.own, h.own);
        // Another process's leaf is just a cgroup.
        let other = format!("0::{OWN}/sbx-1.supervisor\n");
        FAKE.mkdir(&h.own.join("sbx-1.supervisor")).unwrap();
        let d = detect_from(&other, &h.mountinfo, &[]).unwrap();
        assert_eq!(d.own, h.own.join("sbx-1.supervisor"));
    }

    #[test]
    fn create_enables_controllers_moves_the_supervisor_and_writes_limits() {
        let h = fake_host("cpu memory pids");
        let d = h.detect(&LIMITS.controllers()).unwrap();
        let run = RunCgroup::create_in(&FAKE, &d, &LIMITS, &[]).unwrap();

        // One write enables exactly what the limits need.
        assert_eq!(
            get(h.own.join("cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
        // The supervisor left `own` first, for the no-internal-processes rule.
        assert!(run.moved_self());
        let leaf = h.own.join(format!("sbx-{}.supervisor", me()));
        assert_eq!(get(leaf.join("cgroup.procs")), me().to_string());

        let name = run
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(name.starts_with(&format!("sbx-{}-", me())), "{name}");
        assert_eq!(run.path().parent(), Some(h.own.as_path()));
        assert_eq!(get(run.path().join("memory.max")), "536870912");
        assert_eq!(get(run.path().join("memory.swap.max")), "0");
        assert_eq!(get(run.path().join("pids.max")), "64");
        assert_eq!(get(run.path().join("cpu.max")), "150000 100000");
        // Nothing is delegated further: the process leaf has no limit files to rewrite.
        assert_eq!(get(run.path().join("cgroup.subtree_control")), "");
        assert_eq!(run.leaf_path(), run.path().join("sandbox"));
        assert_eq!(get(run.leaf_path().join("cgroup.controllers")), "\n");
        assert!(!run.leaf_path().join("memory.max").exists());

        // dir_fd is the leaf, open.
        let fd_target = fs::read_link(format!("/proc/self/fd/{}", run.dir_fd())).unwrap();
        assert_eq!(fd_target, run.leaf_path());
        assert_eq!(run.as_fd().as_raw_fd(), run.dir_fd());

        run.add_process(4242).unwrap();
        assert_eq!(get(run.leaf_path().join("cgroup.procs")), "4242");
        put(run.leaf_path(), "cgroup.procs", ""); // it exited

        let path = run.path().to_path_buf();
        run.remove().unwrap();
        assert!(!path.exists());
        // The supervisor's leaf stays: it lives there.
        assert!(leaf.exists());
    }

    #[test]
    fn a_second_run_reuses_enabled_controllers_without_moving() {
        let h = fake_host("cpu memory pids");
        put(&h.own, "cgroup.subtree_control", "memory pids cpu\n");
        let d = h.detect(&LIMITS.controllers()).unwrap();
        let run = RunCgroup::create_in(&FAKE, &d, &LIMITS, &[]).unwrap();
        assert!(!run.moved_self());
        assert_eq!(
            get(h.own.join("cgroup.subtree_control")),
            "memory pids cpu\n"
        );
        assert!(!h.own.join(supervisor_leaf_name(me())).exists());
        assert_eq!(get(run.path().join("pids.max")), "64");
        run.remove().unwrap();
    }

    #[test]
    fn no_limits_touch_no_controller() {
        let h = fake_host("cpu memory pids");
        let d = h.detect(&[]).unwrap();
        let run = RunCgroup::create_in(&FAKE, &d, &Limits::default(), &[]).unwrap();
        assert!(!run.moved_self());
        assert_eq!(get(h.own.join("cgroup.subtree_control")), "");
        assert!(!h.own.join(supervisor_leaf_name(me())).exists());
        for f in ["memory.max", "pids.max", "cpu.max"] {
            assert!(!run.path().join(f).exists(), "{f}");
        }
        run.remove().unwrap();
    }

    #[test]
    fn extra_controllers_are_enabled_without_limits() {
        let h = fake_host("cpu memory pids");
        let d = h.detect(&["memory"]).unwrap();
        let limits = Limits {
            pids_max: Some(10),
            ..Limits::default()
        };
        let run = RunCgroup::create_in(&FAKE, &d, &limits, &["memory", "pids"]).unwrap();
        assert_eq!(get(h.own.join("cgroup.subtree_control")), "+pids +memory");
        assert_eq!(get(run.path().join("memory.max")), "max\n");
        assert_eq!(get(run.path().join("pids.max")), "10");
        run.remove().unwrap();
    }

    #[test]
    fn the_root_cgroup_needs_no_move() {
        let h = fake_host("cpu memory pids");
        fs::remove_file(h.own.join("cgroup.type")).unwrap();
        let d = h.detect(&["pids"]).unwrap();
        let limits = Limits {
            pids_max: Some(5),
            ..Limits::default()
        };
        let run = RunCgroup::create_in(&FAKE, &d, &limits, &[]).unwrap();
        assert!(!run.moved_self());
        assert_eq!(get(h.own.join("cgroup.subtree_control")), "+pids");
        assert!(!h.own.join(supervisor_leaf_name(me())).exists());
        run.remove().unwrap();
    }

    #[test]
    fn no_swap_file_means_no_swap_limit() {
        let h = fake_host("memory");
        let d = h.detect(&["memory"]).unwrap();
        let limits = Limits {
            memory_max: Some(1 << 30),
            ..Limits::default()
        };
        let run = RunCgroup::create_in(&FAKE_OLD, &d, &limits, &[]).unwrap();
        assert_eq!(get(run.path().join("memory.max")), "1073741824");
        assert!(!run.path().join("memory.swap.max").exists());
        run.remove().unwrap();
    }

    #[test]
    fn create_refuses_controllers_the_delegation_lacks() {
        let h = fake_host("cpu memory");
        let d = h.detect(&[]).unwrap();
        let err = RunCgroup::create_in(&FAKE, &d, &LIMITS, &[]).unwrap_err();
        assert!(
            err.to_string().contains("controller pids not available"),
            "{err}"
        );
        // Nothing was touched.
        assert_eq!(get(h.own.join("cgroup.subtree_control")), "");
        assert_eq!(
            fs::read_dir(&h.own)
                .unwrap()
                .flatten()
                .filter(|e| e.path().is_dir())
                .count(),
            0
        );
    }

    #[test]
    fn a_failed_limit_write_removes_the_run_cgroup() {
        let h = fake_host("cpu memory pids");
        let d = h.detect(&["cpu"]).unwrap();
        let limits = Limits {
            cpu_max: Some((150_000, 100_000)),
            ..Limits::default()
        };
        let err = RunCgroup::create_in(&FAKE_NO_CPU_MAX, &d, &limits, &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("cannot write \"150000 100000\" to ")
                && msg.contains("cpu.max: No such file or directory (ENOENT)"),
            "{msg}"
        );
        let runs: Vec<_> = fs::read_dir(&h.own)
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("sbx-") && !n.ends_with(".supervisor"))
            .collect();
        assert!(runs.is_empty(), "{runs:?}");
    }

    #[test]
    fn kill_all_writes_cgroup_kill() {
        let h = fake_host("");
        let d = h.detect(&[]).unwrap();
        let run = RunCgroup::create_in(&FAKE, &d, &Limits::default(), &[]).unwrap();
        run.kill_all().unwrap();
        assert_eq!(get(run.path().join("cgroup.kill")), "1");
        run.remove().unwrap();
    }

    #[test]
    fn kill_all_without_cgroup_kill_freezes_and_signals_each_pid() {
        let h = fake_host("");
        let d = h.detect(&[]).unwrap();
        let run = RunCgroup::create_in(&FAKE_OLD, &d, &Limits::default(), &[]).unwrap();
        assert!(!run.path().join("cgroup.kill").exists());
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        put(
            run.leaf_path(),
            "cgroup.procs",
            &format!("{}\n", child.id()),
        );
        // Reap it as soon as it dies, as the supervisor would.
        let reaper = std::thread::spawn(move || child.wait().unwrap());
        run.kill_all().unwrap();
        assert_eq!(get(run.path().join("cgroup.freeze")), "1");
        let status = reaper.join().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        put(run.leaf_path(), "cgroup.procs", "");
        run.remove().unwrap();
    }

    #[test]
    fn stragglers_are_reported_after_the_timeout() {
        let h = fake_host("");
        let d = h.detect(&[]).unwrap();
        let run = RunCgroup::create_in(&FAKE, &d, &Limits::default(), &[]).unwrap();
        put(run.path(), "cgroup.events", "populated 1\nfrozen 0\n");
        put(run.leaf_path(), "cgroup.procs", "2000000000\n");
        let t = Instant::now();
        let err = run.kill_all().unwrap_err();
        assert!(t.elapsed() >= DRAIN_TIMEOUT);
        assert!(
            matches!(&err, CgroupError::Stragglers { pids, .. } if pids == &[2_000_000_000]),
            "{err:?}"
        );
        assert!(err.to_string().contains("survived SIGKILL"), "{err}");
        put(run.path(), "cgroup.events", "populated 0\n");
        put(run.leaf_path(), "cgroup.procs", "");
        run.remove().unwrap();
    }

    #[test]
    fn stats_parse_the_kernel_files() {
        let h = fake_host("cpu memory pids");
        let d = h.detect(&["memory"]).unwrap();
        let limits = Limits {
            memory_max: Some(1 << 30),
            ..Limits::default()
        };
        let run = RunCgroup::create_in(&FAKE, &d, &limits, &[]).unwrap();
        put(run.path(), "memory.peak", "73539584\n");
        put(
            run.path(),
            "cpu.stat",
            "usage_usec 1523977\nuser_usec 1203456\nsystem_usec 320521\nnr_periods 0\n\
             nr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n",
        );
        put(
            run.path(),
            "memory.events",
            "low 0\nhigh 0\nmax 17\noom 2\noom_kill 1\noom_group_kill 0\n",
        );
        assert_eq!(
            run.stats(),
            Stats {
                memory_peak: Some(73_539_584),
                cpu_usage_usec: Some(1_523_977),
                cpu_user_usec: Some(1_203_456),
                cpu_system_usec: Some(320_521),
                oom_kills: Some(1),
            }
        );
        // Without the memory controller (or before 5.19) the files are missing.
        for f in ["memory.peak", "memory.events", "cpu.stat"] {
            fs::remove_file(run.path().join(f)).unwrap();
        }
        assert_eq!(run.stats(), Stats::default());
        run.remove().unwrap();
    }

    #[test]
    fn drop_cleans_up() {
        let h = fake_host("");
        let d = h.detect(&[]).unwrap();
        let run = RunCgroup::create_in(&FAKE, &d, &Limits::default(), &[]).unwrap();
        let path = run.path().to_path_buf();
        assert!(path.join("sandbox").exists());
        drop(run);
        assert!(!path.exists());
    }

    #[test]
    fn remove_sweeps_cgroups_of_dead_supervisors_only() {
        let h = fake_host("pids");
        put(&h.own, "cgroup.subtree_control", "pids\n");
        let dead = 2_000_000_000;
        let mk = |name: &str| {
            let p = h.own.join(name);
            FAKE.mkdir(&p).unwrap();
            p
        };
        let dead_leaf = mk(&format!("sbx-{dead}.supervisor"));
        let dead_run = mk(&format!("sbx-{dead}-3"));
        FAKE.mkdir(&dead_run.join("sandbox")).unwrap();
        let busy_leaf = mk(&format!("sbx-{}.supervisor", dead - 1));
        put(&busy_leaf, "cgroup.procs", "77\n");
        let live_leaf = mk("sbx-1.supervisor"); // pid 1 is alive
        let unrelated = mk(&format!("other-{dead}"));

        let d = h.detect(&[]).unwrap();
        let run = RunCgroup::create_in(&FAKE, &d, &Limits::default(), &[]).unwrap();
        run.remove().unwrap();
        assert!(!dead_leaf.exists());
        assert!(!dead_run.exists());
        assert!(busy_leaf.exists());
        assert!(live_leaf.exists());
        assert!(unrelated.exists());
    }

    #[test]
    fn parsers() {
        assert_eq!(
            v2_path("12:pids:/a\n0::/user.slice/x.scope\n"),
            Some("/user.slice/x.scope")
        );
        assert_eq!(v2_path("0::/\n"), Some("/"));
        assert_eq!(v2_path("1:cpu:/\n"), None);

        let m = parse_mountinfo(
            "41 31 0:38 / /sys/fs/cgroup/with\\040space rw shared:1 master:2 - cgroup2 none rw\n\
             garbage line\n\
             32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].point, Path::new("/sys/fs/cgroup/with space"));
        assert_eq!(m[0].fstype, "cgroup2");
        assert_eq!(m[1].superopts, "rw,cpu,cpuacct");
        assert_eq!(unescape("a\\011b\\134c\\012"), b"a\tb\\c\n");
        assert_eq!(unescape("trailing\\04"), b"trailing\\04");

        assert_eq!(relative_to(b"/", b"/a/b"), Some(&b"a/b"[..]));
        assert_eq!(relative_to(b"/", b"/"), Some(&b""[..]));
        assert_eq!(relative_to(b"/a", b"/a/b"), Some(&b"b"[..]));
        assert_eq!(relative_to(b"/a", b"/a"), Some(&b""[..]));
        assert_eq!(relative_to(b"/a", b"/ab"), None);
        assert_eq!(relative_to(b"/../..", b"/a"), None);

        assert_eq!(keyed("usage_usec 5\nuser_usec 3\n", "user_usec"), Some(3));
        assert_eq!(keyed("usage_usec 5\n", "system_usec"), None);
        assert_eq!(keyed("oom_kill x\n", "oom_kill"), None);

        assert_eq!(sbx_name_pid("sbx-123.supervisor"), Some(123));
        assert_eq!(sbx_name_pid("sbx-123-4"), Some(123));
        assert_eq!(sbx_name_pid("sbx-0-4"), None);
        assert_eq!(sbx_name_pid("sbx-12a-4"), None);
        assert_eq!(sbx_name_pid("sbx-12-"), None);
        assert_eq!(sbx_name_pid("sbx--1.supervisor"), None);
        assert_eq!(sbx_name_pid("sbx-test-1"), None);
        assert_eq!(sbx_name_pid("other"), None);
    }
}
