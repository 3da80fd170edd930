//! The library API from a multi-threaded program, run unprivileged. The test (as root in CI)
//! re-runs this test binary as `nobody` through setpriv, so that the sandboxes are started by
//! an unprivileged process that has several threads busy allocating at the same time: the
//! sandboxes' processes are raw clones and must not touch the allocator before execve.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const CHILD: &str = "SBX_LIBRARY_CHILD";
const DONE: &str = "SBX-LIBRARY-CHILD-DONE";

/// The checks themselves, run in the unprivileged re-execution.
fn threaded_runs() {
    assert!(!nix::unistd::geteuid().is_root(), "must run unprivileged");
    let stop = Arc::new(AtomicBool::new(false));
    // Threads that hold the allocator's locks as often as possible while sandboxes start.
    let churn: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut v: Vec<Vec<u8>> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    v.push(vec![0u8; 4096]);
                    if v.len() > 256 {
                        v.clear();
                    }
                }
            })
        })
        .collect();
    let runs: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut codes = Vec::new();
                for round in 0..4 {
                    let code = (i * 10 + round) % 100;
                    let f = sbx::Sandbox::new()
                        .unwrap()
                        .profile("default")
                        .unwrap()
                        .run(["sh", "-c", &format!("exit {code}")])
                        .unwrap();
                    assert_eq!(f.exit_code, code, "{:?}", f.message);
                    assert_eq!(f.status.reason, sbx::report::Reason::Exited);
                    codes.push(code);
                }
                codes.len()
            })
        })
        .collect();
    let total: usize = runs
        .into_iter()
        .map(|t| t.join().expect("a run thread panicked"))
        .sum();
    stop.store(true, Ordering::Relaxed);
    for c in churn {
        c.join().unwrap();
    }
    assert_eq!(total, 32);

    // A timeout through the library, and the plan without running.
    let f = sbx::Sandbox::new()
        .unwrap()
        .profile("default")
        .unwrap()
        .limit("wall_time", "1s")
        .unwrap()
        .run(["sleep", "100"])
        .unwrap();
    assert_eq!(f.exit_code, 124);
    assert_eq!(f.status.reason, sbx::report::Reason::Timeout);
    let plan = sbx::Sandbox::new()
        .unwrap()
        .profile("strict")
        .unwrap()
        .plan(["true"])
        .unwrap();
    assert!(plan.namespaces.net);
    println!("{DONE}");
}

#[test]
fn unprivileged_child() {
    if std::env::var_os(CHILD).is_some() {
        threaded_runs();
    }
}

#[test]
fn library_runs_sandboxes_from_many_threads() {
    // As root, a world-readable copy run as nobody (the build tree may be under a 0700 home).
    let copy = common::is_root().then(|| common::test_exe_copy("library"));
    let work = common::Workdir::new();
    let mut cmd = if let Some((_, exe)) = &copy {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(exe);
        c
    } else {
        Command::new(std::env::current_exe().unwrap())
    };
    let out = cmd
        .args([
            "--exact",
            "unprivileged_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .current_dir(work.path())
        .env("HOME", work.subdir("home"))
        .env("TMPDIR", work.path())
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(DONE),
        "the child did not run the checks:\n{stdout}"
    );
}
