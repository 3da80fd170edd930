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
    let cgroup_file = read("/proc/self/cgroup")?;
    let cgpath = v2_path(&cgroup_file).ok_or(CgroupError::NotInV2)?;
    let (mount, own) = match usual_mount(cgpath) {
        Some(found) => found,
        None => locate(cgpath, &parse_mountinfo(&read("/proc/self/mountinfo")?))?,
    };
    check_delegation(mount, own, &cgroup_file, needed, &write_access)
}

/// Where cgroup2 usually is (the unified layout, then the hybrid one), found without reading
/// the whole mount table, which costs more than the rest of the probe together on a host
/// with many mounts. The place counts only if it shows our own cgroup at `cgpath`, with our
/// pid in its cgroup.procs: a mount made in another cgroup namespace shows another tree under
/// the same names.
fn usual_mount(cgpath: &str) -> Option<(PathBuf, PathBuf)> {
    let me = std::process::id() as i32;
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .filter(|point| {
            nix::sys::statfs::statfs(*point)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        })
        .map(|point| match cgpath.trim_start_matches('/') {
            "" => (PathBuf::from(point), PathBuf::from(point)),
            rel => (PathBuf::from(point), Path::new(point).join(rel)),
        })
        .find(|(_, own)| read_pids(&own.join("cgroup.procs")).contains(&me))
}

/// access(2) checks the real ids; sbx is not setuid, so they are the effective ones.
fn write_access(p: &Path) -> Result<(), Errno> {
    nix::unistd::access(p, AccessFlags::W_OK)
}

/// [`detect`] from the text of /proc/self/cgroup and /proc/self/mountinfo, so that a test can
/// point it at a directory laid out like cgroupfs (by naming that directory as the cgroup2
/// mount point in `mountinfo`).
pub fn detect_from(
    cgroup_file: &str,
    mountinfo: &str,
    needed: &[&str],
) -> Result<Delegation, CgroupError> {
    detect_with(cgroup_file, mountinfo, needed, &write_access)
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
    let (mount, own) = locate(cgpath, &parse_mountinfo(mountinfo))?;
    check_delegation(mount, own, cgroup_file, needed, writable)
}

/// The cgroup2 mount that shows `cgpath`, and the directory of `cgpath` under it.
fn locate(cgpath: &str, mounts: &[MountEntry]) -> Result<(PathBuf, PathBuf), CgroupError> {
    mounts
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
        })
}

/// Checks that `own` (under the cgroup2 mount `mount`) is ours to manage and offers `needed`.
fn check_delegation(
    mount: PathBuf,
    mut own: PathBuf,
    cgroup_file: &str,
    needed: &[&str],
    writable: AccessCheck,
) -> Result<Delegation, CgroupError> {
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
        let hint = missing_hint(&mount, &own, &available, cgroup_file, &missing);
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

/// Says, for each missing controller, why it is missing and what would help. A controller
/// bound to a cgroup v1 hierarchy shows in /proc/self/cgroup as `ID:controllers:path`.
fn missing_hint(
    mount: &Path,
    own: &Path,
    available: &[String],
    cgroup_file: &str,
    missing: &[String],
) -> String {
    let top = match own == mount {
        true => available.to_vec(),
        false => read_words(&mount.join("cgroup.controllers")).unwrap_or_default(),
    };
    let mut why = Vec::new();
    for c in missing {
        let v1 = cgroup_file.lines().find(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next();
            parts.next().is_some_and(|cs| cs.split(',').any(|x| x == c))
        });
        why.push(if top.iter().any(|t| t == c) {
            format!(
                "{c} is enabled higher up but not delegated down to this cgroup; {DELEGATE_HINT}"
            )
        } else if let Some(line) = v1 {
            format!(
                "{c} is bound to a cgroup v1 hierarchy (/proc/self/cgroup: {line}; a hybrid \
                 layout), so cgroup v2 cannot limit it until the host boots with \
                 systemd.unified_cgroup_hierarchy=1"
            )
        } else {
            format!("this kernel's cgroup v2 hierarchy has no {c} controller")
        });
    }
    why.join("; ")
}

/// The cgroup v2 path in `/proc/<pid>/cgroup` text (its `0::PATH` line).
pub fn v2_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

#[derive(Debug)]
struct MountEntry {
    /// The mounted directory inside the filesystem, as bytes (mountinfo is not UTF-8-bound).
    root: Vec<u8>,
    point: PathBuf,
    fstype: String,
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
            Some(MountEntry {
                root,
                point,
                fstype,
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
mod tests;
