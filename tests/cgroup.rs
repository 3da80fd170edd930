//! sbx::cgroup on the real kernel. The test (root) creates a subtree of the cgroup2 hierarchy
//! and delegates it to uid 65534 the way systemd or an administrator would: by chowning the
//! directory and its cgroup.procs, cgroup.subtree_control and cgroup.threads. The unprivileged
//! part runs in a re-execution of this test binary (`SBX_CGROUP_CHILD=<role>`, test
//! `unprivileged_child`), started inside the subtree by a root shell that writes its own pid
//! into cgroup.procs and then execs `setpriv` to drop to 65534. Everything the tests create
//! (cgroups, processes, the copy of the binary, a controller enabled at the root) is removed.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{NOBODY, is_root, note_skip};
use sbx::cgroup::{self, CgroupError, Limits, RunCgroup};

const ROLE_ENV: &str = "SBX_CGROUP_CHILD";
const OWN_ENV: &str = "SBX_CGROUP_OWN";
const MOUNT_ENV: &str = "SBX_CGROUP_MOUNT";
const OTHER_ENV: &str = "SBX_CGROUP_OTHER_PID";
/// Printed by the child as its last act: `--exact` with a wrong name would run nothing and
/// still exit 0.
const DONE: &str = "SBX-CGROUP-CHILD-DONE";

/// The real-kernel tests change the root cgroup's subtree_control: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------------
// Root side

/// The cgroup2 mount, or why the real-kernel tests cannot run here.
fn cgroup2_mount() -> Result<PathBuf, String> {
    if !is_root() {
        return Err(
            "the test runner is not root, so it cannot create and delegate a \
                    cgroup subtree"
                .into(),
        );
    }
    if !Path::new("/usr/bin/setpriv").exists() && !Path::new("/bin/setpriv").exists() {
        return Err("setpriv (util-linux) is missing".into());
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter(|l| l.contains(" - cgroup2 "))
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .collect();
    // This host's hybrid layout mounts it at /sys/fs/cgroup/unified.
    let unified = Path::new("/sys/fs/cgroup/unified");
    if mounts.iter().any(|m| m == unified) {
        return Ok(unified.to_path_buf());
    }
    mounts
        .into_iter()
        .next()
        .ok_or_else(|| "no cgroup2 mount (neither /sys/fs/cgroup/unified nor another)".into())
}

fn read(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path.as_ref()).unwrap_or_default()
}

fn write(path: impl AsRef<Path>, value: &str) {
    fs::write(path.as_ref(), value)
        .unwrap_or_else(|e| panic!("write {value:?} to {}: {e}", path.as_ref().display()));
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

/// A cgroup the test made under the root; removed with everything in it when dropped.
struct Subtree {
    path: PathBuf,
}

impl Subtree {
    fn new(mount: &Path, role: &str, delegate: bool) -> Subtree {
        let path = mount.join(format!("sbx-test-{}-{role}", std::process::id()));
        fs::create_dir(&path).unwrap();
        let sub = Subtree { path };
        if delegate {
            for f in [
                "",
                "cgroup.procs",
                "cgroup.subtree_control",
                "cgroup.threads",
            ] {
                std::os::unix::fs::chown(sub.path.join(f), Some(NOBODY), Some(NOBODY)).unwrap();
            }
        }
        sub
    }
}

impl Drop for Subtree {
    fn drop(&mut self) {
        for dir in subdirs(&self.path).iter().rev() {
            let _ = fs::write(dir.join("cgroup.kill"), "1");
            let start = Instant::now();
            while read(dir.join("cgroup.events")).contains("populated 1")
                && start.elapsed() < Duration::from_secs(2)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            if let Err(e) = fs::remove_dir(dir) {
                eprintln!("cleanup: rmdir {}: {e}", dir.display());
            }
        }
    }
}

/// A controller the test enabled in the root's subtree_control, disabled again when dropped.
struct RootController {
    control: PathBuf,
    name: &'static str,
}

impl RootController {
    /// None when the root does not offer it or it was already enabled (then it stays).
    fn enable(mount: &Path, name: &'static str) -> Option<RootController> {
        if !read(mount.join("cgroup.controllers"))
            .split_whitespace()
            .any(|c| c == name)
        {
            return None;
        }
        let control = mount.join("cgroup.subtree_control");
        if read(&control).split_whitespace().any(|c| c == name) {
            eprintln!("NOTE {name} was already enabled at the cgroup root; leaving it so");
        } else {
            write(&control, &format!("+{name}"));
        }
        Some(RootController { control, name })
    }
}

impl Drop for RootController {
    fn drop(&mut self) {
        if let Err(e) = fs::write(&self.control, format!("-{}", self.name)) {
            eprintln!("cleanup: cannot disable {} at the root: {e}", self.name);
        }
    }
}

/// Runs the child `role` as uid 65534 inside `cg`; asserts it passed and returns its output.
fn run_child(mount: &Path, cg: &Path, role: &str, env: &[(&str, String)]) -> String {
    let (_dir, exe) = common::test_exe_copy("cgroup");
    let script = r#"echo $$ > "$1/cgroup.procs" || exit 99
exec setpriv --reuid=65534 --regid=65534 --clear-groups "$2" --exact unprivileged_child --nocapture --test-threads=1"#;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .arg("sh")
        .arg(cg)
        .arg(&exe)
        .current_dir("/")
        .env(ROLE_ENV, role)
        .env(OWN_ENV, cg)
        .env(MOUNT_ENV, mount)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("--- stdout\n{stdout}--- stderr\n{stderr}");
    assert!(
        out.status.success() && stdout.contains(DONE),
        "child {role} failed ({:?}):\n{all}",
        out.status
    );
    // Show what the child saw (the real error messages) with --nocapture.
    eprintln!("child {role}:\n{all}");
    all
}

#[test]
fn real_kernel_delegated_subtree() {
    let mount = match cgroup2_mount() {
        Ok(m) => m,
        Err(why) => return note_skip("real_kernel_delegated_subtree", &why),
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cg = Subtree::new(&mount, "delegated", true);
    run_child(&mount, &cg.path, "delegated", &[]);
    // The child removed its run cgroups; nothing but the subtree itself is left.
    assert_eq!(subdirs(&cg.path), std::slice::from_ref(&cg.path));
}

#[test]
fn real_kernel_undelegated_subtree_is_refused() {
    let mount = match cgroup2_mount() {
        Ok(m) => m,
        Err(why) => return note_skip("real_kernel_undelegated_subtree_is_refused", &why),
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cg = Subtree::new(&mount, "undelegated", false);
    run_child(&mount, &cg.path, "undelegated", &[]);
}

/// Enabling a controller in the delegated cgroup: the supervisor must move into its leaf
/// first, and other processes there make the kernel refuse. No memory, pids or cpu controller
/// exists in this host's v2 hierarchy, so this uses hugetlb, enabled at the root for the test.
#[test]
fn real_kernel_enabling_a_controller_moves_the_supervisor() {
    let test = "real_kernel_enabling_a_controller_moves_the_supervisor";
    let mount = match cgroup2_mount() {
        Ok(m) => m,
        Err(why) => return note_skip(test, &why),
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(_hugetlb) = RootController::enable(&mount, "hugetlb") else {
        return note_skip(
            test,
            "the cgroup v2 root offers no hugetlb controller to enable",
        );
    };

    // Another process in the delegated cgroup: enabling must fail with EBUSY, explained.
    {
        let cg = Subtree::new(&mount, "busy", true);
        let mut other = spawn_in(&cg.path);
        run_child(
            &mount,
            &cg.path,
            "busy",
            &[(OTHER_ENV, other.id().to_string())],
        );
        other.kill().unwrap();
        other.wait().unwrap();
    }

    // Alone in it: the supervisor moves into its leaf and the controller is enabled. Stale
    // cgroups of a dead supervisor go; a live one's (this test's pid) stays.
    let cg = Subtree::new(&mount, "controllers", true);
    let dead = fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse::<u64>()
        .unwrap()
        + 1;
    let stale = [
        cg.path.join(format!("sbx-{dead}.supervisor")),
        cg.path.join(format!("sbx-{dead}-0")),
    ];
    let live = cg
        .path
        .join(format!("sbx-{}.supervisor", std::process::id()));
    for d in stale.iter().chain([&live]) {
        fs::create_dir(d).unwrap();
    }
    run_child(&mount, &cg.path, "controllers", &[]);
    for d in &stale {
        assert!(!d.exists(), "{} should have been swept", d.display());
    }
    assert!(live.exists());
    // The child's own leaf outlives it (documented); it is empty now.
    let leaves: Vec<PathBuf> = subdirs(&cg.path)
        .into_iter()
        .filter(|p| *p != cg.path && *p != live)
        .collect();
    assert_eq!(leaves.len(), 1, "{leaves:?}");
    assert!(leaves[0].to_string_lossy().ends_with(".supervisor"));
    assert!(read(leaves[0].join("cgroup.events")).contains("populated 0"));
}

/// `sleep 100` started by root inside `cg`.
fn spawn_in(cg: &Path) -> Child {
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"echo $$ > "$1/cgroup.procs" && exec sleep 100"#)
        .arg("sh")
        .arg(cg)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    wait_for(|| read(cg.join("cgroup.procs")).lines().any(|l| l == pid));
    child
}

// ---------------------------------------------------------------------------------------
// Unprivileged side

fn wait_for(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(3), "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The cgroup path of `pid` as /proc shows it.
fn cgroup_of(pid: impl std::fmt::Display) -> String {
    let text = read(format!("/proc/{pid}/cgroup"));
    cgroup::v2_path(&text).unwrap_or("").to_string()
}

/// A cgroup directory as /proc/<pid>/cgroup names it.
fn rel(mount: &Path, dir: &Path) -> String {
    format!("/{}", dir.strip_prefix(mount).unwrap().display())
}

/// Gone or a zombie: dead either way.
fn dead(pid: u32) -> bool {
    let stat = read(format!("/proc/{pid}/stat"));
    stat.is_empty()
        || stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'))
}

fn pids_in(dir: &Path) -> Vec<u32> {
    read(dir.join("cgroup.procs"))
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// Not a test by itself: the unprivileged half of the tests above, run by them.
#[test]
fn unprivileged_child() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let own = PathBuf::from(std::env::var(OWN_ENV).unwrap());
    let mount = PathBuf::from(std::env::var(MOUNT_ENV).unwrap());
    assert_eq!(nix::unistd::geteuid().as_raw(), NOBODY);
    assert_eq!(cgroup_of("self"), rel(&mount, &own));
    match role.as_str() {
        "delegated" => child_delegated(&mount, &own),
        "undelegated" => child_undelegated(&own),
        "busy" => child_busy(&mount, &own),
        "controllers" => child_controllers(&mount, &own),
        other => panic!("unknown role {other}"),
    }
    println!("{DONE}");
}

fn child_delegated(mount: &Path, own: &Path) {
    // This host's v2 hierarchy has no memory controller: the error must say so.
    if read(own.join("cgroup.controllers"))
        .split_whitespace()
        .any(|c| c == "memory")
    {
        eprintln!("NOTE memory is delegated here, so the missing-controller error is not seen");
    } else {
        let err = cgroup::detect(&["memory"]).unwrap_err();
        eprintln!("detect([memory]): {err}");
        assert!(
            matches!(&err, CgroupError::MissingControllers { missing, .. } if missing == &["memory"])
        );
        assert!(
            err.to_string().contains("controller memory not available"),
            "{err}"
        );
    }

    let d = cgroup::detect(&[]).unwrap();
    assert_eq!(d.own, own);
    assert_eq!(d.mount, mount);

    let run = RunCgroup::create(&d, &Limits::default()).unwrap();
    assert!(!run.moved_self());
    assert_eq!(run.path().parent(), Some(own));
    assert_eq!(fs::metadata(run.path()).unwrap().uid(), NOBODY);
    assert_eq!(run.leaf_path(), run.path().join("sandbox"));
    let leaf_rel = rel(mount, run.leaf_path());

    // A child that forks a grandchild once it is inside.
    let mut sh = Command::new("/bin/sh")
        .arg("-c")
        .arg("read go; sleep 100 & exec sleep 100")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    run.add_process(sh.id() as i32).unwrap();
    assert_eq!(cgroup_of(sh.id()), leaf_rel);
    use std::io::Write;
    sh.stdin.take().unwrap().write_all(b"go\n").unwrap();
    wait_for(|| pids_in(run.leaf_path()).len() == 2);
    let grandchild = pids_in(run.leaf_path())
        .into_iter()
        .find(|&p| p != sh.id())
        .unwrap();
    assert_eq!(cgroup_of(grandchild), leaf_rel);

    // Straight into the leaf with clone3(CLONE_INTO_CGROUP), as the supervisor does
    // (`sys::clone_fork_into_cgroup`, which this crate cannot reach).
    let direct = clone_into_cgroup(run.dir_fd());
    if let Some(pid) = direct {
        assert_eq!(cgroup_of(pid), leaf_rel);
    }

    run.kill_all().unwrap();
    assert_eq!(sh.wait().unwrap().signal(), Some(libc::SIGKILL));
    if let Some(pid) = direct {
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Signaled(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
                false
            )
        );
    }
    // Reparented to init, which reaps it.
    wait_for(|| dead(grandchild));
    assert!(pids_in(run.leaf_path()).is_empty());
    assert!(read(run.path().join("cgroup.events")).contains("populated 0"));

    let stats = run.stats();
    eprintln!("stats: {stats:?}");
    assert!(stats.cpu_usage_usec.is_some(), "cpu.stat is always there");
    assert_eq!(stats.memory_peak, None, "no memory controller enabled");

    let path = run.path().to_path_buf();
    run.remove().unwrap();
    assert!(!path.exists());

    // Dropped without remove(): processes are killed and the cgroup goes all the same.
    let run = RunCgroup::create(&d, &Limits::default()).unwrap();
    let path = run.path().to_path_buf();
    let mut sleeper = Command::new("sleep").arg("100").spawn().unwrap();
    run.add_process(sleeper.id() as i32).unwrap();
    drop(run);
    assert!(!path.exists());
    assert_eq!(sleeper.wait().unwrap().signal(), Some(libc::SIGKILL));
}

fn child_undelegated(own: &Path) {
    let err = cgroup::detect(&[]).unwrap_err();
    eprintln!("detect([]): {err}");
    let CgroupError::NotDelegated { cgroup, owner, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(cgroup, own);
    assert_eq!(*owner, 0);
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("is not delegated to uid {NOBODY}"))
            && msg.contains("systemd-run --user --scope -p Delegate=yes"),
        "{msg}"
    );
}

fn child_busy(mount: &Path, own: &Path) {
    let other: i32 = std::env::var(OTHER_ENV).unwrap().parse().unwrap();
    let d = cgroup::detect(&["hugetlb"]).unwrap();
    let err = RunCgroup::create_with_controllers(&d, &Limits::default(), &["hugetlb"]).unwrap_err();
    eprintln!("create(+hugetlb) with another process: {err}");
    let CgroupError::Busy { others, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(others, &[other]);
    assert!(err.to_string().contains("systemd-run"), "{err}");
    // Back where it was, no leaf, nothing enabled.
    assert_eq!(cgroup_of("self"), rel(mount, own));
    assert_eq!(subdirs(own), [own.to_path_buf()]);
    assert_eq!(read(own.join("cgroup.subtree_control")).trim(), "");
}

fn child_controllers(mount: &Path, own: &Path) {
    let d = cgroup::detect(&["hugetlb"]).unwrap();
    let run = RunCgroup::create_with_controllers(&d, &Limits::default(), &["hugetlb"]).unwrap();
    assert!(run.moved_self());
    let me = std::process::id();
    assert_eq!(
        cgroup_of("self"),
        rel(mount, &own.join(format!("sbx-{me}.supervisor")))
    );
    assert!(read(own.join("cgroup.subtree_control")).contains("hugetlb"));
    let has_hugetlb = |dir: &Path| {
        fs::read_dir(dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("hugetlb."))
    };
    assert!(
        has_hugetlb(run.path()),
        "the run cgroup gets the controller"
    );
    assert!(!has_hugetlb(run.leaf_path()), "the process leaf does not");

    let mut sleeper = Command::new("sleep").arg("100").spawn().unwrap();
    run.add_process(sleeper.id() as i32).unwrap();
    run.kill_all().unwrap();
    assert_eq!(sleeper.wait().unwrap().signal(), Some(libc::SIGKILL));
    let path = run.path().to_path_buf();
    run.remove().unwrap();
    assert!(!path.exists());

    // A second run in the same process: detection sees through the supervisor leaf and
    // nothing has to move.
    let d2 = cgroup::detect(&["hugetlb"]).unwrap();
    assert_eq!(d2.own, own);
    let run = RunCgroup::create_with_controllers(&d2, &Limits::default(), &["hugetlb"]).unwrap();
    assert!(!run.moved_self());
    let path = run.path().to_path_buf();
    run.remove().unwrap();
    assert!(!path.exists());
}

/// `struct clone_args` of clone3(2), up to the cgroup field (Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Starts `sleep 100` directly in the cgroup open at `fd`; None (with a NOTE) when the kernel
/// or a seccomp filter refuses clone3.
fn clone_into_cgroup(fd: std::os::fd::RawFd) -> Option<i32> {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: fd as u64,
        ..CloneArgs::default()
    };
    let path = c"/bin/sleep";
    let argv = [c"sleep".as_ptr(), c"100".as_ptr(), std::ptr::null()];
    // SAFETY: args is a valid clone_args of the size passed. The child shares no memory with
    // the parent (no CLONE_VM) and calls only execv and _exit, which are async-signal-safe,
    // on data prepared before the call; so this is fork(2) semantics in a threaded process.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // SAFETY: see above; both pointers are NUL-terminated strings / a null-terminated array.
        unsafe {
            libc::execv(path.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        }
    }
    if pid < 0 {
        let e = nix::errno::Errno::last();
        eprintln!("NOTE clone3(CLONE_INTO_CGROUP) not checked: {e}");
        return None;
    }
    Some(pid as i32)
}
