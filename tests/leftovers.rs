//! Nothing left behind: whatever way a run ends (the command exits, the wall clock fires, sbx
//! itself is SIGKILLed, setup fails), sbx leaves no temporary directory (the private overlay
//! layer lives in $TMPDIR during the run), no socket or other file, no mount, no process and
//! no cgroup of its own on the host.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::tree::{assert_mounts_unchanged, host_mounts};
use common::{Workdir, names_in, survivors_with, unique_number};

const HANG: Duration = Duration::from_secs(60);

/// The run cgroups of dead supervisors below this process's cgroup v2 directory, if sbx may
/// manage one here (`sbx-PID-N`, `sbx-PID.supervisor`); None when it cannot look.
fn sbx_cgroups() -> Option<BTreeSet<String>> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(|m| std::path::PathBuf::from(format!("{m}{path}")))
        .find(|p| p.join("cgroup.procs").exists())
        .map(|dir| {
            names_in(&dir)
                .into_iter()
                .filter(|n| n.starts_with("sbx-"))
                .collect()
        })
}

/// Runs sbx with an overlay of a workspace (so that it has a private layer in $TMPDIR) and
/// `args`, ending as `end` makes it; then checks that nothing is left.
fn check(what: &str, args: &[&str], end: impl FnOnce(&mut std::process::Child)) {
    let work = Workdir::new();
    let ws = work.subdir("ws");
    let tmp = work.subdir("tmp");
    let marker = unique_number();
    let mounts = host_mounts();
    let cgroups = sbx_cgroups();
    let mut s = common::sbx(["--overlay", &ws.display().to_string()]);
    s.cmd.current_dir(&ws).env("TMPDIR", &tmp).args(args);
    s.cmd.args([
        "--",
        "sh",
        "-c",
        &format!("echo x > f; exec sleep {marker}"),
    ]);
    let (child, cwd) = s.spawn();
    let mut child = common::Running::new(child);
    end(&mut child);
    let _ = common::wait_exit(&mut child, HANG);
    let left = survivors_with(&[&marker], Duration::from_secs(5));
    assert!(left.is_empty(), "{what}: processes left: {left:?}");
    // The janitor of a killed sbx needs a moment after it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !names_in(&tmp).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(names_in(&tmp), BTreeSet::new(), "{what}: left in $TMPDIR");
    assert_eq!(
        names_in(&ws),
        BTreeSet::new(),
        "{what}: the overlay leaked to the host"
    );
    assert_eq!(
        names_in(work.path()),
        ["tmp", "ws"].map(String::from).into(),
        "{what}: left beside the workspace"
    );
    assert_eq!(
        names_in(cwd.path()),
        ["home".to_string()].into(),
        "{what}: left in the working directory"
    );
    assert_mounts_unchanged(&mounts, what);
    match (cgroups, sbx_cgroups()) {
        (Some(before), Some(after)) => {
            assert!(after.is_subset(&before), "{what}: cgroups left: {after:?}")
        }
        _ => common::note_skip(what, "no cgroup v2 directory to look in"),
    }
}

#[test]
fn nothing_left_after_a_normal_exit() {
    let work = Workdir::new();
    let ws = work.subdir("ws");
    let tmp = work.subdir("tmp");
    let mut s = common::sbx([
        "--overlay",
        &ws.display().to_string(),
        "--",
        "sh",
        "-c",
        "echo x > f",
    ]);
    s.cmd.current_dir(&ws).env("TMPDIR", &tmp);
    let (r, _w) = common::run_within(s, HANG);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(names_in(&tmp), BTreeSet::new());
    assert_eq!(names_in(&ws), BTreeSet::new());
    // The same through the long-running path, ended by the command itself.
    check("exit", &[], |c| {
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        // The command sleeps; a SIGTERM to sbx is forwarded and ends it.
        std::thread::sleep(Duration::from_millis(300));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    });
}

#[test]
fn nothing_left_after_the_wall_clock() {
    check(
        "timeout",
        &["--timeout", "300ms", "--limit", "kill_grace=100ms"],
        |_| {},
    );
}

#[test]
fn nothing_left_after_sbx_is_killed() {
    check("SIGKILL of sbx", &[], |c| {
        std::thread::sleep(Duration::from_millis(300));
        let _ = c.kill();
    });
}

#[test]
fn nothing_left_after_a_setup_failure() {
    check("setup failure", &["--chdir", "/no/such/dir"], |_| {});
}
