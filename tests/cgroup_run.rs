//! sbx itself in a delegated cgroup v2 subtree: the run gets its own cgroup, the sandbox
//! cannot see the host's cgroup paths, a timeout reaches even a daemon outside the PID
//! namespace, and nothing is left behind. The test (root) delegates a fresh subtree to
//! `nobody` and starts sbx inside it through `setpriv`.

mod common;

use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{NOBODY, Workdir, exit_code, is_root, note_skip, survivors_with, unique_number};

const MOUNT: &str = "/sys/fs/cgroup/unified";

/// A subtree of the v2 hierarchy chowned to nobody; removed (with anything in it) on drop.
struct Delegated(PathBuf);

impl Delegated {
    fn new(tag: &str) -> Option<Delegated> {
        if !is_root() {
            note_skip(
                tag,
                "the runner is not root, so it cannot delegate a cgroup subtree",
            );
            return None;
        }
        if !Path::new(MOUNT).join("cgroup.procs").exists() {
            note_skip(tag, "no cgroup v2 hierarchy at /sys/fs/cgroup/unified");
            return None;
        }
        let dir = Path::new(MOUNT).join(format!("sbx-run-test-{}-{tag}", std::process::id()));
        fs::create_dir(&dir).unwrap();
        for f in [
            "",
            "cgroup.procs",
            "cgroup.subtree_control",
            "cgroup.threads",
        ] {
            std::os::unix::fs::chown(dir.join(f), Some(NOBODY), Some(NOBODY)).unwrap();
        }
        Some(Delegated(dir))
    }

    fn children(&self) -> Vec<String> {
        fs::read_dir(&self.0)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Delegated {
    fn drop(&mut self) {
        // Depth first: kill whatever is left, then remove every cgroup below.
        fn clean(dir: &Path) {
            for e in fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    clean(&e.path());
                }
            }
            let _ = fs::write(dir.join("cgroup.kill"), "1");
            let deadline = Instant::now() + Duration::from_secs(2);
            while fs::remove_dir(dir).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        clean(&self.0);
    }
}

/// This host's v2 hierarchy has no memory or pids controller: lift the default profile's
/// memory and process limits so that `cgroup = "required"` asks for no controller.
const NO_CONTROLLERS: [&str; 4] = ["--memory", "unlimited", "--limit", "processes=unlimited"];

/// Runs `sbx ARGS...` as nobody from inside the delegated cgroup; returns (exit, stdout, stderr).
fn sbx_in(cg: &Delegated, work: &Workdir, args: &[&str]) -> (i32, String, String) {
    let home = work.subdir("home");
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"echo $$ > "$1/cgroup.procs" && shift && exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@""#)
        .arg("sh")
        .arg(&cg.0)
        .arg(common::binary())
        .args(NO_CONTROLLERS)
        .args(args)
        .current_dir(work.path())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        exit_code(out.status),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn run_gets_its_own_cgroup_and_leaves_nothing() {
    let Some(cg) = Delegated::new("own") else {
        return;
    };
    let work = Workdir::new();
    let report = work.path().join("report.json");
    let report_arg = report.display().to_string();
    let (code, out, err) = sbx_in(
        &cg,
        &work,
        &[
            "--limit",
            "cgroup=required",
            "--json-status",
            &report_arg,
            "--",
            "cat",
            "/proc/self/cgroup",
        ],
    );
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    // The sandbox's cgroup namespace is rooted at its own cgroup: no host path shows.
    assert!(out.lines().any(|l| l == "0::/"), "{out}");
    assert!(!out.contains("sbx-run-test"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
    let path = json["cgroup"].as_str().expect("report names the cgroup");
    assert!(path.starts_with(&cg.0.display().to_string()), "{path}");
    assert!(
        !Path::new(path).exists(),
        "the run's cgroup {path} was not removed"
    );
    assert!(cg.children().is_empty(), "left behind: {:?}", cg.children());
}

/// `sbx -v ARGS...` started as nobody from inside the delegated cgroup, with the system calls
/// `calls` answering ENOSYS (a seccomp filter loaded just before sbx, as a container profile
/// would); stdout and stderr piped.
fn spawn_in_filtered(
    cg: &Delegated,
    work: &Workdir,
    calls: &[&str],
    args: &[&str],
) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let procs =
        std::ffi::CString::new(cg.0.join("cgroup.procs").into_os_string().into_vec()).unwrap();
    let prog = common::enosys::filter(calls);
    let mut cmd = Command::new(common::binary());
    cmd.arg("-v")
        .args(NO_CONTROLLERS)
        .args(args)
        .current_dir(work.path())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", work.subdir("home"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure makes only async-signal-safe system calls on
    // data prepared before the fork (apply_filter allocates nothing on success).
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: libc::c_int| match r {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            };
            // "0" moves the writer itself into the cgroup.
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            check(fd)?;
            check(libc::write(fd, c"0".as_ptr().cast(), 1) as libc::c_int)?;
            libc::close(fd);
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setgid(common::NOBODY))?;
            check(libc::setuid(common::NOBODY))?;
            seccompiler::apply_filter(&prog)
                .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
        });
    }
    cmd.spawn().unwrap()
}

/// `sbx -v --limit cgroup=required -- sh -c "touch READY; SCRIPT"` started as
/// [`spawn_in_filtered`] does, returned once the command has touched READY (`ready` in the work
/// directory) or 20 s have passed.
fn start_command(
    cg: &Delegated,
    work: &Workdir,
    calls: &[&str],
    script: &str,
) -> std::process::Child {
    let ready = work.path().join("ready");
    let script = format!("touch {}; {script}", ready.display());
    let child = spawn_in_filtered(
        cg,
        work,
        calls,
        &["--limit", "cgroup=required", "--", "sh", "-c", &script],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// The sandbox is created inside its cgroup (clone3's CLONE_INTO_CGROUP) and, where clone3
/// answers ENOSYS (Docker's and podman's seccomp profiles do), moved there after the clone:
/// either way the command runs in the run's cgroup and nothing is left behind.
#[test]
fn the_sandbox_starts_in_its_cgroup_with_and_without_clone3() {
    for (tag, calls) in [("clone3", &[][..]), ("noclone3", &["clone3"][..])] {
        let Some(cg) = Delegated::new(tag) else {
            return;
        };
        if !calls.is_empty() {
            common::enosys::assert_taken_away(calls);
        }
        let work = Workdir::new();
        let child = start_command(&cg, &work, calls, "cat /proc/self/cgroup; sleep 1");
        // While the command runs, its processes are in the run's process leaf, seen from the
        // host: `<delegated>/sbx-<pid>-<n>/sandbox`.
        let leaves: Vec<String> = cg
            .children()
            .iter()
            .map(|run| fs::read_to_string(cg.0.join(run).join("sandbox/cgroup.procs")))
            .filter_map(Result::ok)
            .collect();
        let out = child.wait_with_output().unwrap();
        let (code, stdout, err) = (
            exit_code(out.status),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert_eq!(code, 0, "{tag}: stdout {stdout}\nstderr {err}");
        assert!(
            leaves.iter().any(|procs| procs.lines().count() >= 2),
            "{tag}: no run cgroup held init and the command: {leaves:?}"
        );
        // The cgroup namespace is rooted at the run's cgroup: the command stands at its root.
        assert!(stdout.lines().any(|l| l == "0::/"), "{tag}: {stdout}");
        // Born there with clone3; moved there, and said so, when it is filtered.
        let born = err.contains("the sandbox started in its cgroup");
        let moved = err.contains("CLONE_INTO_CGROUP is missing");
        assert_eq!(
            (born, moved),
            (calls.is_empty(), !calls.is_empty()),
            "{tag}: {err}"
        );
        assert!(
            cg.children().is_empty(),
            "{tag}: left behind: {:?}",
            cg.children()
        );
    }
}

/// With a cgroup to remove, sbx waits for init's exit; the protected paths' inotify instance is
/// then made by the supervisor and kept by the cgroup's janitor too (so that init's close does
/// not wait for the kernel's mark reaper). The watch must still end a command that creates a
/// protected path, and the janitor must leave once dismissed.
#[test]
fn a_protected_path_ends_a_run_with_its_own_cgroup() {
    let Some(cg) = Delegated::new("protect") else {
        return;
    };
    let work = Workdir::new();
    let marker = unique_number();
    let (code, out, err) = sbx_in(
        &cg,
        &work,
        &[
            "--limit",
            "cgroup=required",
            "--",
            "sh",
            "-c",
            &format!("mkdir .git; sleep 5; echo survived {marker}"),
        ],
    );
    assert_eq!(code, 137, "stdout {out}\nstderr {err}");
    assert!(!out.contains("survived"), "{out}");
    assert!(err.contains("protected path"), "{err}");
    assert!(
        !work.path().join(".git").exists(),
        "the created .git stayed"
    );
    assert!(cg.children().is_empty(), "left behind: {:?}", cg.children());
    // The janitor, as a fork of sbx (sbx's command line) or as a shell (the cgroup's path).
    let left = survivors_with(
        &[marker, cg.0.display().to_string()],
        Duration::from_secs(3),
    );
    assert!(left.is_empty(), "still running: {left:?}");
}

/// sbx killed (SIGKILL) in a run with its own cgroup: its janitor, a fork of sbx waiting on a
/// socket, sees it close, starts its shell and removes the run's cgroup once the sandbox
/// (which dies with sbx) has left it. Nothing of the run may be left. Killed twice: sbx alone,
/// and every process of the run named `sbx` (as `pkill -x sbx` would: the janitor must not be
/// one of them).
#[test]
fn the_janitor_removes_the_cgroup_of_a_killed_sbx() {
    for by_name in [false, true] {
        let tag = if by_name { "killed-by-name" } else { "killed" };
        let Some(cg) = Delegated::new(tag) else {
            return;
        };
        let work = Workdir::new();
        let marker = unique_number();
        let mut child = start_command(&cg, &work, &[], &format!("exec sleep {marker}"));
        assert!(
            work.path().join("ready").exists(),
            "{tag}: the command never ran"
        );
        assert_eq!(
            cg.children().len(),
            1,
            "{tag}: no run cgroup: {:?}",
            cg.children()
        );
        if by_name {
            // This run's processes named sbx (its command line carries the marker): what
            // `pkill -9 -x sbx` would kill of it, without touching other tests' runs.
            let named_sbx: Vec<i32> = common::host_processes_with(&[&marker])
                .into_iter()
                .map(|(pid, _)| pid)
                .filter(|pid| {
                    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sbx")
                })
                .collect();
            assert!(
                named_sbx.contains(&(child.id() as i32)),
                "{tag}: {named_sbx:?}"
            );
            for pid in named_sbx {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        } else {
            child.kill().unwrap();
        }
        let _ = child.wait();
        // The janitor's shell retries every 0.1 s, for 5 s.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cg.children().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            cg.children().is_empty(),
            "{tag}: left behind: {:?}",
            cg.children()
        );
        // The sandbox, the janitor as a fork (sbx's command line) and as a shell (the cgroup's
        // path).
        let markers = [marker, cg.0.display().to_string()];
        let left = survivors_with(&markers, Duration::from_secs(3));
        assert!(left.is_empty(), "{tag}: still running: {left:?}");
    }
}

/// In a run with its own cgroup sbx waits for init's exit; the janitor holds the sandbox's mount
/// namespace, so that tearing the sandbox's mounts down is the janitor's exit's work and not
/// init's. While the command runs, a process must hold a descriptor of the command's mount
/// namespace; after the run, none.
#[test]
fn the_janitor_holds_the_sandboxs_mounts_in_a_run_with_a_cgroup() {
    let Some(cg) = Delegated::new("holds") else {
        return;
    };
    let work = Workdir::new();
    let marker = unique_number();
    let child = start_command(&cg, &work, &[], &format!("sleep 1; : {marker}"));
    // The command's mount namespace, from the host: `sh -c ... MARKER` is the command.
    let command = common::host_processes_with(&[format!(": {marker}")]);
    let ns = command
        .iter()
        .find(|(_, cmdline)| cmdline.starts_with("sh -c"))
        .and_then(|(pid, _)| fs::read_link(format!("/proc/{pid}/ns/mnt")).ok())
        .expect("the command's mount namespace");
    let held_during = holders_of(&ns);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        exit_code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!held_during.is_empty(), "no process held {}", ns.display());
    let deadline = Instant::now() + Duration::from_secs(3);
    while !holders_of(&ns).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        holders_of(&ns),
        Vec::<i32>::new(),
        "still held after the run"
    );
}

/// The processes with a descriptor open on the namespace `ns` (a `mnt:[N]` link).
fn holders_of(ns: &Path) -> Vec<i32> {
    let pids = fs::read_dir("/proc").unwrap().flatten();
    pids.filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let fds = fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten();
            fds.flatten()
                .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l == ns))
        })
        .collect()
}

#[test]
fn timeout_kills_a_daemon_outside_the_pid_namespace() {
    let Some(cg) = Delegated::new("daemon") else {
        return;
    };
    let work = Workdir::new();
    // Without a PID namespace, killing the sandbox's first process would leave the daemon
    // alive; the cgroup reaches it.
    let profile = work.file(
        "nopid.toml",
        "extends = [\"default\"]\n[namespaces]\npid = false\n",
    );
    let marker = unique_number();
    let script = format!(
        "setsid sh -c 'trap \"\" TERM; exec sleep {marker}' < /dev/null > /dev/null 2>&1 & trap '' TERM; sleep 100"
    );
    let start = Instant::now();
    let (code, out, err) = sbx_in(
        &cg,
        &work,
        &[
            "--profile",
            &profile.display().to_string(),
            "--limit",
            "cgroup=required",
            "--timeout",
            "1s",
            "--limit",
            "kill_grace=500ms",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    assert_eq!(code, 124, "stdout {out}\nstderr {err}");
    assert!(start.elapsed() < Duration::from_secs(8));
    let left = survivors_with(&[format!("sleep {marker}")], Duration::from_secs(3));
    assert!(left.is_empty(), "the daemon survived the timeout: {left:?}");
    assert!(cg.children().is_empty(), "left behind: {:?}", cg.children());
}

#[test]
fn permissions_of_the_delegation_are_checked() {
    let Some(cg) = Delegated::new("perm") else {
        return;
    };
    // Take the delegation back: sbx must refuse rather than run without the cgroup.
    fs::set_permissions(cg.0.join("cgroup.procs"), fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(cg.0.join("cgroup.procs"), Some(0), Some(0)).unwrap();
    let work = Workdir::new();
    let marker = work.path().join("ran");
    let (code, _, err) = sbx_in(
        &cg,
        &work,
        &[
            "--limit",
            "cgroup=required",
            "--",
            "touch",
            &marker.display().to_string(),
        ],
    );
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("not delegated") || err.contains("not writable"),
        "{err}"
    );
    assert!(!marker.exists(), "the command ran");
}
