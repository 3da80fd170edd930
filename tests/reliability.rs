//! Reliability (issue 5): sbx killed at random moments leaves nothing behind; many sequential
//! runs leak no temp directory, mount, fd or zombie; 64 concurrent sandboxes stay apart;
//! signals, timeouts and I/O behave as outside; hostile filesystem state is handled or refused
//! with 125, and nothing is ever created or mounted outside the sandbox.
//!
//! Counts are reduced by default so that `cargo test` fits CI; `SBX_SOAK=1` (what
//! `benches/soak.sh` sets) runs the full counts of the issue. `SBX_SEED` replays the random
//! kill points of a failed run (the seed is printed).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use common::{
    Ran, Rng, Running, Workdir, ci, error_lines, exit_code, host_processes_with, host_stat,
    line_reader, names_in, read_until, run_within, soak, survivors_with, unique_number, wait_exit,
};

// ---- shared helpers ----

/// Every test holds this lock: shared by default, exclusive for the leak test, which counts
/// the fds and children of this very process and must not see those of parallel tests.
static PROCESS_STATE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    PROCESS_STATE.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    PROCESS_STATE.write().unwrap_or_else(|e| e.into_inner())
}

/// The number of iterations of `what`: `full` (the count) under `SBX_SOAK=1`, else
/// `reduced`, saying so in the output.
fn count(what: &str, full: usize, reduced: usize) -> usize {
    if soak() {
        eprintln!("{what}: full count {full} (SBX_SOAK=1)");
        full
    } else {
        let why = if ci() { " under CI=true" } else { "" };
        eprintln!(
            "{what}: {reduced} runs (reduced from {full}{why}; SBX_SOAK=1 or benches/soak.sh \
             runs the full count)"
        );
        reduced
    }
}

/// The host's mount table (this process's mount namespace is the host's).
fn host_mounts() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn assert_mounts_unchanged(before: &BTreeSet<String>, what: &str) {
    let after = host_mounts();
    let added: Vec<_> = after.difference(before).collect();
    let removed: Vec<_> = before.difference(&after).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "{what}: the host's mount table changed: added {added:#?}, removed {removed:#?}"
    );
}

/// Everything under `dir` (not following symlinks): relative path → kind and size/target.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_path_buf();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                format!("symlink -> {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                "dir".to_string()
            } else if ft.is_file() {
                format!("file {} bytes", m.len())
            } else {
                format!("special {:?}", ft)
            };
            out.insert(rel, what);
            if ft.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

// ---- 1. supervisor death ----

/// How long sbx takes until the command runs: the median over a few runs of the time to the
/// command's first byte of output.
fn startup_time(markers: &mut Vec<String>) -> Duration {
    let mut times = Vec::new();
    for _ in 0..5 {
        let m = unique_number();
        let script = format!("echo up; exec sleep {m}");
        let mut s = common::sbx(["-q", "--", "sh", "-c", &script]);
        s.cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        let start = Instant::now();
        let mut child = s.cmd.spawn().expect("spawn sbx");
        let mut one = [0u8; 1];
        child.stdout.as_mut().unwrap().read_exact(&mut one).unwrap();
        times.push(start.elapsed());
        // The marker is visible on the host: the survivor check below can see sandbox processes.
        let deadline = Instant::now() + Duration::from_secs(5);
        while host_processes_with(&[&m]).is_empty() {
            assert!(
                Instant::now() < deadline,
                "the marked sleep never showed up"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        markers.push(m);
    }
    times.sort();
    times[times.len() / 2]
}

/// sbx is SIGKILLed at a random point of its first 50 ms (before the clone, during setup, after
/// the command started): no process of the sandbox may outlive it. A third of the kill points
/// fall in the first 2 ms and a third in the first 10 ms, where setup runs.
#[test]
fn sbx_killed_at_random_points_leaves_no_sandbox_process() {
    let _g = shared();
    let n = count("supervisor death", 200, 60);
    let mut rng = Rng::new("supervisor death");
    let mut markers = Vec::new();
    let startup = startup_time(&mut markers);
    // (markers, delay, as_pid_1)
    let mut runs: Vec<([String; 2], Duration, bool)> = Vec::new();
    for i in 0..n {
        let (bg, fg) = (unique_number(), unique_number());
        let as_pid_1 = i % 4 == 3;
        let script = format!("sleep {bg} & exec sleep {fg}");
        let mut args: Vec<&str> = Vec::new();
        if as_pid_1 {
            args.push("--as-pid-1");
        }
        args.extend(["--", "sh", "-c", &script]);
        let mut s = common::sbx(args);
        s.cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let delay = Duration::from_micros(match i % 3 {
            0 => rng.below(2_000) as u64,
            1 => rng.below(10_000) as u64,
            _ => rng.below(50_000) as u64,
        });
        let mut child = s.cmd.spawn().expect("spawn sbx");
        std::thread::sleep(delay);
        child.kill().unwrap();
        let st = child.wait().unwrap();
        // The command sleeps for days: only the SIGKILL can have ended sbx.
        assert_eq!(
            st.signal(),
            Some(libc::SIGKILL),
            "run {i} ended by the kill"
        );
        runs.push(([bg, fg], delay, as_pid_1));
        drop(s.work);
    }
    markers.extend(runs.iter().flat_map(|(m, ..)| m.iter().cloned()));
    let left = survivors_with(&markers, Duration::from_secs(3));
    let early = runs.iter().filter(|r| r.1 < startup).count();
    eprintln!(
        "supervisor death: {n} runs; the command starts {startup:?} after spawn (median), \
         {early} kills came before that, {} after; {} survivors",
        n - early,
        left.len()
    );
    let culprits: Vec<_> = runs
        .iter()
        .filter(|(m, ..)| {
            left.iter()
                .any(|(_, c)| m.iter().any(|m| c.contains(m.as_str())))
        })
        .map(|(_, delay, pid1)| format!("killed after {delay:?} (as_pid_1: {pid1})"))
        .collect();
    assert!(
        left.is_empty(),
        "sandbox processes outlived a SIGKILLed sbx: {left:?}; runs: {culprits:?}"
    );
}

// ---- 2. no leaks ----

/// fds of this process, with what they point to.
fn open_fds() -> BTreeMap<i32, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(target) = std::fs::read_link(e.path()) {
            out.insert(fd, target.display().to_string());
        }
    }
    out
}

/// Children of this process in state Z.
fn zombie_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(f) = host_stat(pid) {
            if f.len() > 1 && f[0] == "Z" && f[1] == me {
                out.push(pid);
            }
        }
    }
    out
}

/// Entries of /tmp that sbx could have made: owned by the uid sbx runs as, named as sbx or the
/// tempfile crate name them, and not the test harness's own work directories. (Other tests and
/// tools on a shared host come and go in /tmp; sbx itself is given its own TMPDIR.)
fn tmp_entries() -> BTreeSet<String> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.path()
                .symlink_metadata()
                .is_ok_and(|m| m.uid() == common::test_uid())
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("sbx") || n.starts_with(".tmp"))
        .filter(|n| !n.starts_with("sbx-test-") && !n.starts_with("sbx-fuzz-"))
        .collect()
}

/// Many sequential runs of every kind (success, failure codes, signals, not found, setup
/// failures before and after the clone, timeouts, writable overlays whose private layer lives
/// in TMPDIR) leave no temp directory, host mount, fd or zombie behind.
#[test]
fn sequential_runs_leak_nothing() {
    let _g = exclusive();
    let n = count("no leaks", 1000, 100);
    let cwd = Workdir::new();
    let tmpdir = cwd.subdir("tmpdir");
    let home = cwd.subdir("home");
    // The harness's copy of the binary goes to /tmp on first use: not a leak of sbx.
    let _ = common::binary();
    let (fds, mounts, tmp) = (open_fds(), host_mounts(), tmp_entries());
    let mut codes: BTreeMap<i32, usize> = BTreeMap::new();
    let mut markers = Vec::new();
    let start = Instant::now();
    // A tree shown through a writable overlay, whose private upper layer lives in TMPDIR.
    let tree = cwd.subdir("tree");
    std::fs::write(tree.join("base"), "base\n").unwrap();
    common::chown(&tree.join("base"));
    let cwd_before = snapshot(cwd.path());
    let overlay = format!("{}:/ov", tree.display());
    for i in 0..n {
        let m = unique_number();
        let script;
        let (args, want): (Vec<&str>, i32) = match i % 10 {
            0 | 1 => {
                script = format!("echo out-{i}; echo x > /tmp/f; sleep 0.00{m} & exit 0");
                (vec!["--", "sh", "-c", &script], 0)
            }
            // Refused by the plan, before any process is created.
            2 => (
                vec!["--ro-bind", "/etc/hostname:/dev/null/x", "--", "true"],
                125,
            ),
            3 => (vec!["--", "sh", "-c", "exit 3"], 3),
            4 => (vec!["--", "sh", "-c", "kill -KILL $$"], 137),
            5 => (vec!["--", "no-such-command-reliability"], 127),
            // A step inside the sandbox fails: init cannot fork the command.
            6 => (vec!["--limit", "processes=1", "--", "true"], 125),
            7 => {
                script = format!("sleep {m}");
                (
                    vec![
                        "--timeout",
                        "20ms",
                        "--limit",
                        "kill_grace=20ms",
                        "--",
                        "sh",
                        "-c",
                        &script,
                    ],
                    124,
                )
            }
            // Writes through an overlay, including a directory the command locks itself out
            // of: the private layer must still go.
            8 => (
                vec![
                    "--overlay",
                    &overlay,
                    "--",
                    "sh",
                    "-c",
                    "mkdir -p /ov/locked/sub && echo x > /ov/locked/sub/f && \
                     chmod 000 /ov/locked/sub /ov/locked && echo y > /ov/new && rm /ov/base",
                ],
                0,
            ),
            _ => {
                script = format!("echo y > /ov/new; sleep {m}");
                (
                    vec![
                        "--overlay",
                        &overlay,
                        "--timeout",
                        "20ms",
                        "--limit",
                        "kill_grace=20ms",
                        "--",
                        "sh",
                        "-c",
                        &script,
                    ],
                    124,
                )
            }
        };
        markers.push(m);
        let mut s = common::sbx(&args);
        s.cmd
            .current_dir(cwd.path())
            .env("TMPDIR", &tmpdir)
            .env("HOME", &home);
        let r = s.run();
        assert_eq!(r.code, want, "run {i}: {r:?}");
        *codes.entry(r.code).or_default() += 1;
        let left: Vec<_> = std::fs::read_dir(&tmpdir).unwrap().flatten().collect();
        assert!(
            left.is_empty(),
            "run {i} left {:?} in its TMPDIR: {r:?}",
            left.iter().map(|e| e.path()).collect::<Vec<_>>()
        );
    }
    eprintln!(
        "no leaks: {n} runs in {:?}, exit codes {codes:?}",
        start.elapsed()
    );
    let left: Vec<_> = std::fs::read_dir(&tmpdir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "sbx left files in its TMPDIR: {left:?}");
    let new_tmp: Vec<_> = tmp_entries().difference(&tmp).cloned().collect();
    assert!(new_tmp.is_empty(), "new entries in /tmp: {new_tmp:?}");
    assert_eq!(
        snapshot(cwd.path()),
        cwd_before,
        "the working directory changed"
    );
    assert_mounts_unchanged(&mounts, "no leaks");
    let fds_after = open_fds();
    let leaked: Vec<_> = fds_after
        .iter()
        .filter(|(fd, t)| fds.get(fd) != Some(t))
        .collect();
    assert!(leaked.is_empty(), "fds left open in the caller: {leaked:?}");
    let zombies = zombie_children();
    assert!(zombies.is_empty(), "zombie children: {zombies:?}");
    let left = survivors_with(&markers, Duration::from_secs(3));
    assert!(left.is_empty(), "sandbox processes survived: {left:?}");
}

// ---- 3. concurrency ----

/// 64 sandboxes of one user run at the same time; each sees only its own files, processes
/// and SysV IPC, and each gets its own exit code and output.
#[test]
fn sixty_four_concurrent_sandboxes_stay_apart() {
    let _g = shared();
    const N: usize = 64;
    eprintln!("concurrency: {N} sandboxes at once (the full count, also in CI)");
    let shm_before = std::fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
    let mut runs = Vec::new();
    for i in 0..N {
        let script = format!(
            "echo secret-{i} > /tmp/secret-{i}; echo secret-{i} > ./secret-{i}; \
             ipcmk -M 4096 >/dev/null || echo ipcmk-failed; \
             echo ready; read go; \
             echo tmp: $(ls -A /tmp); echo cwd: $(ls -A .); \
             echo pids: /proc/[0-9]*; \
             echo shm: $(tail -n +2 /proc/sysvipc/shm | awk '{{print $1}}'); \
             echo token-{i}; exit {code}",
            code = i % 100
        );
        let mut s = common::sbx(["--", "sh", "-c", &script]);
        s.cmd.stdin(Stdio::piped());
        let wd = s.work.name();
        let (mut child, work) = s.spawn();
        let rx = line_reader(child.stdout.take().unwrap());
        runs.push((Running::new(child), rx, work, wd));
    }
    // All of them are running at once, each holding its files and its segment.
    for (i, (_, rx, ..)) in runs.iter().enumerate() {
        read_until(rx, "ready", Duration::from_secs(60));
        let _ = i;
    }
    for (i, (run, ..)) in runs.iter_mut().enumerate() {
        assert!(run.try_wait().unwrap().is_none(), "sandbox {i} ended early");
    }
    let shm_during = std::fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
    for (run, ..) in runs.iter_mut() {
        drop(run.stdin.take());
    }
    let mut keys = Vec::new();
    for (i, (run, rx, work, wd)) in runs.iter_mut().enumerate() {
        let st = wait_exit(run, Duration::from_secs(60));
        let lines: Vec<String> = rx.iter().collect();
        let mut err = String::new();
        let _ = run.stderr.take().unwrap().read_to_string(&mut err);
        let ctx = format!("sandbox {i}: {lines:?}\n{err}");
        assert_eq!(st.code(), Some((i % 100) as i32), "{ctx}");
        let field = |k: &str| -> Vec<String> {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(&format!("{k}:")))
                .unwrap_or_else(|| panic!("no {k}: line; {ctx}"))
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        let mut want_tmp = vec![format!("secret-{i}"), wd.clone()];
        want_tmp.sort();
        let mut tmp = field("tmp");
        tmp.sort();
        assert_eq!(tmp, want_tmp, "/tmp shows only its own entries; {ctx}");
        let mut cwd = field("cwd");
        cwd.sort();
        assert_eq!(
            cwd,
            ["home".to_string(), format!("secret-{i}")],
            "the work directory holds only its own files; {ctx}"
        );
        // The glob runs in the shell itself: no process of its own.
        assert_eq!(
            field("pids"),
            ["/proc/1", "/proc/2"],
            "only init and the shell; {ctx}"
        );
        let shm = field("shm");
        assert_eq!(shm.len(), 1, "exactly its own SysV segment; {ctx}");
        keys.push(shm[0].clone());
        assert_eq!(
            lines.last().map(String::as_str),
            Some(&*format!("token-{i}"))
        );
        assert!(!lines.iter().any(|l| l == "ipcmk-failed"), "{ctx}");
        // Its file reached its own work directory on the host, nobody else's.
        let on_host = std::fs::read_to_string(work.path().join(format!("secret-{i}"))).unwrap();
        assert_eq!(on_host, format!("secret-{i}\n"));
    }
    // The segments were never in the host's IPC namespace.
    let host_keys: BTreeSet<&str> = shm_during
        .lines()
        .chain(shm_before.lines())
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for k in &keys {
        if k != "0" {
            assert!(
                !host_keys.contains(k.as_str()),
                "segment {k} visible on the host"
            );
        }
    }
}

// ---- 4. signals and I/O ----

/// A quick check that SIGINT, SIGTERM and SIGHUP sent to sbx in turn all reach one command
/// (tests/process.rs checks each signal's exit code).
#[test]
fn int_term_hup_reach_the_same_command() {
    let _g = shared();
    let script = "for s in INT TERM HUP; do trap \"echo got-$s\" $s; done; echo ready; \
                  n=0; while [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done";
    let (child, _work) = common::sbx(["--", "sh", "-c", script]).spawn();
    let mut run = Running::new(child);
    let rx = line_reader(run.stdout.take().unwrap());
    read_until(&rx, "ready", Duration::from_secs(10));
    let pid = Pid::from_raw(run.id() as i32);
    for (sig, name) in [
        (Signal::SIGINT, "INT"),
        (Signal::SIGTERM, "TERM"),
        (Signal::SIGHUP, "HUP"),
    ] {
        kill(pid, sig).unwrap();
        read_until(&rx, &format!("got-{name}"), Duration::from_secs(5));
    }
}

/// A command that ignores SIGTERM, SIGINT and SIGHUP is still ended by the timeout: 124, and
/// nothing of it survives.
#[test]
fn timeout_ends_a_command_that_ignores_signals() {
    let _g = shared();
    let m = unique_number();
    let script =
        format!("trap '' TERM INT HUP; sleep {m} & echo ready; while :; do sleep 0.05; done");
    let (child, _work) = common::sbx([
        "--timeout",
        "1500ms",
        "--limit",
        "kill_grace=300ms",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .spawn();
    let start = Instant::now();
    let mut run = Running::new(child);
    let rx = line_reader(run.stdout.take().unwrap());
    read_until(&rx, "ready", Duration::from_secs(10));
    let pid = Pid::from_raw(run.id() as i32);
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        kill(pid, sig).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        run.try_wait().unwrap().is_none(),
        "the command ignores the forwarded signals"
    );
    let st = wait_exit(&mut run, Duration::from_secs(10));
    let took = start.elapsed();
    let mut err = String::new();
    let _ = run.stderr.take().unwrap().read_to_string(&mut err);
    assert_eq!(st.code(), Some(124), "{err}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "ended after {took:?}"
    );
    let left = survivors_with(&[m], Duration::from_secs(3));
    assert!(left.is_empty(), "survivors: {left:?}");
}

/// 1 GiB through a pipe arrives complete, byte for byte in count.
#[test]
fn one_gib_of_output_through_a_pipe() {
    let _g = shared();
    const GIB: u64 = 1 << 30;
    let size = match std::env::var("SBX_BIG_OUTPUT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => n,
        None => GIB,
    };
    eprintln!("large output: {size} bytes");
    let (child, _work) =
        common::sbx(["-q", "--", "head", "-c", &size.to_string(), "/dev/zero"]).spawn();
    let mut run = Running::new(child);
    let mut out = run.stdout.take().unwrap();
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let k = out.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        total += k as u64;
    }
    let st = wait_exit(&mut run, Duration::from_secs(30));
    eprintln!("large output: {total} bytes in {:?}", start.elapsed());
    assert_eq!(st.code(), Some(0));
    assert_eq!(total, size, "byte count");
}

/// The caller closes sbx's stdout after one byte: `yes` dies of SIGPIPE, and sbx exits 141,
/// as `yes` does outside (and as the shell reports for `yes | head -c1`). With SIGPIPE ignored
/// the command sees EPIPE and exits with its own code, again as outside.
#[test]
fn closed_stdout_gives_sigpipe_or_epipe_as_outside() {
    let _g = shared();
    let cases: [&[&str]; 2] = [&["yes"], &["sh", "-c", "trap '' PIPE; yes; exit $?"]];
    for argv in cases {
        let outside = {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            let mut child = c.spawn().unwrap();
            let mut out = child.stdout.take().unwrap();
            let mut one = [0u8; 1];
            out.read_exact(&mut one).unwrap();
            drop(out);
            exit_code(wait_exit(&mut child, Duration::from_secs(10)))
        };
        let mut args = vec!["-q", "--"];
        args.extend(argv);
        let (child, _work) = common::sbx(&args).spawn();
        let mut run = Running::new(child);
        let mut out = run.stdout.take().unwrap();
        let mut one = [0u8; 1];
        out.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"y");
        drop(out);
        let st = wait_exit(&mut run, Duration::from_secs(10));
        let mut err = String::new();
        let _ = run.stderr.take().unwrap().read_to_string(&mut err);
        assert_eq!(exit_code(st), outside, "{argv:?}: inside as outside; {err}");
        if argv.len() == 1 {
            assert_eq!(outside, 141, "yes dies of SIGPIPE outside");
        }
        assert!(error_lines(&err).is_empty(), "sbx itself complained: {err}");
    }
}

/// Pseudo-random bytes, reproducible.
fn data(len: usize) -> Vec<u8> {
    let mut r = Rng(0x5bd1_e995_1234_5678);
    (0..len).map(|_| (r.next_u64() >> 56) as u8).collect()
}

fn sha256_outside(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// stdin from a file and from a pipe reaches the command intact.
#[test]
fn stdin_from_a_file_and_from_a_pipe() {
    let _g = shared();
    let src = Workdir::new();
    let bytes = data(8 << 20);
    let file = src.path().join("input.bin");
    std::fs::write(&file, &bytes).unwrap();
    let want = sha256_outside(&file);

    let mut s = common::sbx(["-q", "--", "sha256sum"]);
    s.cmd.stdin(std::fs::File::open(&file).unwrap());
    let (r, _w) = run_within(s, Duration::from_secs(30));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout.split_whitespace().next(),
        Some(&*want),
        "from a file"
    );

    let mut s = common::sbx(["-q", "--", "sha256sum"]);
    s.cmd.stdin(Stdio::piped());
    let (mut child, _w) = s.spawn();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for chunk in bytes.chunks(4093) {
            stdin.write_all(chunk).unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next(),
        Some(&*want),
        "from a pipe"
    );
}

/// A command that closes its stdio and leaves a daemon in a new session: sbx returns 0
/// promptly and the daemon dies with the sandbox's PID namespace.
#[test]
fn daemonizing_command_returns_promptly_and_leaves_nothing() {
    let _g = shared();
    let m = unique_number();
    let script = format!("exec >&- 2>&- <&-; (setsid sleep {m} &); exit 0");
    let start = Instant::now();
    let (r, _w) = run_within(
        common::sbx(["--", "sh", "-c", &script]),
        Duration::from_secs(10),
    );
    let took = start.elapsed();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(took < Duration::from_secs(3), "returned after {took:?}");
    let left = survivors_with(&[m], Duration::from_secs(3));
    assert!(left.is_empty(), "the daemon survived the run: {left:?}");
}

/// sbx returns when init reports the command's end, without waiting for init's own exit and
/// the namespaces' teardown: by then every other process of the sandbox must be gone, its
/// files closed. A background process that holds 1 GiB takes a while to die (the kernel
/// frees its memory before its files), and keeps a FIFO on the host open for writing until
/// then: the host end must read end-of-file the moment sbx returns. (Their stdio goes to
/// /dev/null, or the harness would wait for them to close sbx's pipes.)
#[test]
fn nothing_of_the_sandbox_runs_once_sbx_returns() {
    let _g = shared();
    let sbx = common::sbx([
        "--",
        "sh",
        "-c",
        "python3 -c 'import time; x = bytearray(1 << 30); open(\"ready\", \"w\").close(); \
         time.sleep(1e6)' 3>held >/dev/null 2>&1 & \
         (setsid sleep 1000000 >/dev/null 2>&1 &); \
         while [ ! -e ready ]; do sleep 0.01; done; exit 0",
    ]);
    let fifo = sbx.work.path().join("held");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    common::chown(&fifo);
    // Opened first, so that the writer's open does not wait for a reader.
    let mut host_end = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let r = sbx.run();
    assert_eq!(r.code, 0, "{r:?}");
    let mut buf = [0u8; 8];
    match host_end.read(&mut buf) {
        Ok(0) => {}
        other => panic!("the FIFO still has a writer when sbx returned: {other:?}"),
    }
}

// ---- 6. hostile filesystem state ----

/// Host state to compare after a hostile run: the attacked directories and the mount table.
struct HostState {
    dirs: Vec<(PathBuf, BTreeMap<PathBuf, String>)>,
    mounts: BTreeSet<String>,
}

impl HostState {
    fn take(dirs: &[&Path]) -> HostState {
        HostState {
            dirs: dirs
                .iter()
                .map(|d| (d.to_path_buf(), snapshot(d)))
                .collect(),
            mounts: host_mounts(),
        }
    }

    fn assert_unchanged(&self, what: &str) {
        for (d, before) in &self.dirs {
            assert_eq!(
                &snapshot(d),
                before,
                "{what}: {} changed on the host",
                d.display()
            );
        }
        assert_mounts_unchanged(&self.mounts, what);
    }
}

fn symlink(target: impl AsRef<Path>, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// README: binding a symlink binds its target (with a warning); the link itself never shows.
#[test]
fn symlink_bind_source_binds_its_target() {
    let _g = shared();
    let fx = Workdir::new();
    let target = fx.subdir("target");
    std::fs::write(target.join("id"), "target-content\n").unwrap();
    symlink("target", &fx.path().join("rel-link"));
    symlink(&target, &fx.path().join("abs-link"));
    symlink("target/id", &fx.path().join("file-link"));
    let host = HostState::take(&[fx.path()]);
    let p = |n: &str| fx.path().join(n).display().to_string();
    let (r, _w) = run_within(
        common::sbx([
            "--ro-bind",
            &format!("{}:/mnt/rel", p("rel-link")),
            "--ro-bind",
            &format!("{}:/mnt/abs", p("abs-link")),
            "--ro-bind",
            &format!("{}:/mnt/file", p("file-link")),
            "--bind",
            &p("rel-link"),
            "--",
            "sh",
            "-c",
            &format!(
                "cat /mnt/rel/id /mnt/abs/id /mnt/file; cat {}/id; \
                 for x in /mnt/rel /mnt/abs /mnt/file {}; do test -L $x && echo link $x; done; \
                 echo end",
                p("rel-link"),
                p("rel-link")
            ),
        ]),
        Duration::from_secs(20),
    );
    assert_eq!(r.code, 0, "binding a symlink binds its target: {r:?}");
    assert_eq!(
        r.stdout,
        "target-content\n".repeat(4) + "end\n",
        "the targets' content, never a link: {r:?}"
    );
    assert!(
        r.stderr.contains("resolves to"),
        "a warning names the target: {r:?}"
    );
    host.assert_unchanged("symlink bind source");
}

/// Swaps `a` and `b` (RENAME_EXCHANGE) in a loop until stopped.
struct Swapper {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Swapper {
    fn start(a: &Path, b: &Path) -> Swapper {
        let stop = Arc::new(AtomicBool::new(false));
        let (a, b) = (cstring(a), cstring(b));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !flag.load(Ordering::Relaxed) {
                // SAFETY: two valid NUL-terminated paths.
                let rc = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                assert_eq!(rc, 0, "renameat2: {}", std::io::Error::last_os_error());
                swaps += 1;
                if swaps % 64 == 0 {
                    std::thread::yield_now();
                }
            }
            swaps
        });
        Swapper {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn cstring(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// Classifies a 125 of a race test: refused by the plan (it saw the symlink) or at mount time
/// (the mount found one), keeping the first message of the latter.
fn refused(r: &Ran, first: &mut Option<String>) -> &'static str {
    assert_eq!(error_lines(&r.stderr).len(), 1, "one message: {r:?}");
    if r.stderr.contains("setup failed") {
        first.get_or_insert_with(|| r.stderr.clone());
        "refused at mount time (125)"
    } else {
        "refused by the plan (125)"
    }
}

/// A bind source swapped between a directory and a symlink to another directory while sbx
/// runs: the sandbox shows the directory it checked (or the symlink's target when it saw the
/// symlink and warned), or refuses with 125 — never the other directory's content under the
/// name of the one it checked.
#[test]
fn bind_source_swapped_between_check_and_mount() {
    let _g = shared();
    let n = count("bind source race", 200, 40);
    let fx = Workdir::new();
    let p = fx.subdir("p");
    std::fs::write(p.join("id"), "checked\n").unwrap();
    let other = fx.subdir("other");
    std::fs::write(other.join("id"), "other\n").unwrap();
    // Relative: it resolves inside the sandbox's view of the host (/oldroot/...) as well.
    let alt = fx.path().join("p.alt");
    symlink("other", &alt);
    let (names_before, mounts) = (names_in(fx.path()), host_mounts());
    let swapper = Swapper::start(&p, &alt);
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut refusal: Option<String> = None;
    for i in 0..n {
        let (r, _w) = run_within(
            common::sbx([
                "--ro-bind",
                &format!("{}:/mnt/p", p.display()),
                "--",
                "cat",
                "/mnt/p/id",
            ]),
            Duration::from_secs(20),
        );
        let warned = r.stderr.contains("resolves to");
        let kind = match (r.code, r.stdout.as_str(), warned) {
            (0, "checked\n", false) => "checked directory",
            (0, "other\n", true) => "symlink seen and resolved at check",
            (125, _, _) => refused(&r, &mut refusal),
            _ => {
                wrong.push(format!("run {i}: {r:?}"));
                "WRONG"
            }
        };
        *tally.entry(kind).or_default() += 1;
    }
    let swaps = swapper.stop();
    eprintln!("bind source race: {n} runs, {swaps} swaps: {tally:?}");
    if let Some(e) = &refusal {
        eprintln!(
            "bind source race: a refusal: {}",
            error_lines(e).join(" | ")
        );
    }
    assert!(
        wrong.is_empty(),
        "the sandbox showed another directory than the one sbx checked \
         (time-of-check/time-of-use on the bind source): {} of {n} runs: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
    assert_eq!(
        names_in(fx.path()),
        names_before,
        "entries created on the host"
    );
    // Whichever name the directory ended up under, it holds only what the test put there.
    for d in [p.clone(), alt.clone(), other.clone()] {
        let got = snapshot(&d);
        assert!(
            got.is_empty() || got.keys().all(|k| k == Path::new("id")),
            "{}: {got:?}",
            d.display()
        );
    }
    assert_mounts_unchanged(&mounts, "bind source race");
}

/// `/etc` as the sandbox sees it should be the host's, read-only: a mount through a planted
/// symlink would hide it.
const ETC_CHECK: &str = "test -f /etc/passwd && test -f /etc/hostname && echo etc-intact";

/// A symlink planted in a writable bind where a later mount goes: sbx must refuse (125) or
/// mount on the real directory — never on the symlink's target.
#[test]
fn symlink_planted_at_a_later_mount_point() {
    let _g = shared();
    let fx = Workdir::new();
    let w = fx.subdir("w");
    let h = fx.subdir("host-target");
    std::fs::write(h.join("keep"), "keep\n").unwrap();
    let d = fx.subdir("d");
    std::fs::write(d.join("planted"), "planted\n").unwrap();
    // Each case: the link target, and the later mount.
    let cases: [(&str, Vec<String>); 4] = [
        ("../etc", vec!["--tmpfs".into(), "/w/sub".into()]),
        (
            "/newroot/etc",
            vec!["--ro-bind".into(), format!("{}:/w/sub", d.display())],
        ),
        (h.to_str().unwrap(), vec!["--tmpfs".into(), "/w/sub".into()]),
        (
            &*format!("/oldroot{}", h.display()),
            vec!["--tmpfs".into(), "/w/sub".into()],
        ),
    ];
    for (target, later) in cases {
        let link = w.join("sub");
        let _ = std::fs::remove_file(&link);
        symlink(target, &link);
        let host = HostState::take(&[fx.path(), Path::new("/etc")]);
        let mut args = vec!["--bind".to_string(), format!("{}:/w", w.display())];
        args.extend(later.iter().cloned());
        args.extend(["--".into(), "sh".into(), "-c".into(), ETC_CHECK.into()]);
        let (r, _wd) = run_within(common::sbx(&args), Duration::from_secs(20));
        eprintln!("planted symlink -> {target} {later:?}: exit {}", r.code);
        assert!(
            r.code == 125 || (r.code == 0 && r.stdout.trim() == "etc-intact"),
            "link -> {target}, {later:?}: {r:?}"
        );
        if r.code == 125 {
            assert_eq!(error_lines(&r.stderr).len(), 1, "one message: {r:?}");
        }
        host.assert_unchanged(&format!("planted symlink -> {target}"));
    }
}

/// The same attack as a race: the mount point is a real directory when sbx checks it and a
/// symlink to ../etc when it mounts. /etc inside must stay the host's.
#[test]
fn mount_point_swapped_with_a_symlink_during_setup() {
    let _g = shared();
    let n = count("mount point race", 200, 40);
    let fx = Workdir::new();
    let w = fx.subdir("w");
    let sub = w.join("sub");
    std::fs::create_dir(&sub).unwrap();
    common::chown(&sub);
    let alt = w.join("sub.alt");
    symlink("../etc", &alt);
    let host = HostState::take(&[Path::new("/etc")]);
    let names_before = names_in(&w);
    let swapper = Swapper::start(&sub, &alt);
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut refusal: Option<String> = None;
    for i in 0..n {
        let args = [
            "--bind".to_string(),
            format!("{}:/w", w.display()),
            "--tmpfs".into(),
            "/w/sub".into(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            ETC_CHECK.into(),
        ];
        let (r, _wd) = run_within(common::sbx(&args), Duration::from_secs(20));
        let kind = match r.code {
            0 if r.stdout.trim() == "etc-intact" => "mounted on the real directory",
            125 => refused(&r, &mut refusal),
            _ => {
                wrong.push(format!("run {i}: {r:?}"));
                "WRONG"
            }
        };
        *tally.entry(kind).or_default() += 1;
    }
    let swaps = swapper.stop();
    eprintln!("mount point race: {n} runs, {swaps} swaps: {tally:?}");
    if let Some(e) = &refusal {
        eprintln!(
            "mount point race: a refusal: {}",
            error_lines(e).join(" | ")
        );
    }
    assert!(
        wrong.is_empty(),
        "a mount followed a symlink swapped in after the check and hid /etc \
         (time-of-check/time-of-use on the mount point): {} of {n} runs: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
    assert_eq!(names_in(&w), names_before);
    host.assert_unchanged("mount point race");
}

/// Paths with `..` are refused with 125 and a message, and the command never runs.
#[test]
fn dot_dot_paths_are_refused() {
    let _g = shared();
    let fx = Workdir::new();
    let x = fx.subdir("x");
    let y = fx.subdir("y");
    let _ = (&x, &y);
    let base = fx.path().display().to_string();
    let cases: Vec<Vec<String>> = vec![
        vec!["--bind".into(), format!("{base}/x/../y")],
        vec!["--bind".into(), format!("{base}/y:/mnt/../etc")],
        vec!["--ro-bind".into(), format!("{base}/x/..:/mnt/x")],
        vec!["--tmpfs".into(), "/tmp/../etc".into()],
        vec!["--bind".into(), "x/../y".into()],
    ];
    let host = HostState::take(&[fx.path()]);
    for case in cases {
        let mut args = case.clone();
        args.extend(["--".into(), "touch".into(), "ran".into()]);
        let mut s = common::sbx(&args);
        s.cmd.current_dir(fx.path());
        let (r, _w) = run_within(s, Duration::from_secs(20));
        assert_eq!(r.code, 125, "{case:?}: {r:?}");
        let msgs = error_lines(&r.stderr);
        assert_eq!(msgs.len(), 1, "{case:?}: one message: {r:?}");
        assert!(
            msgs[0].contains(".."),
            "{case:?}: the message names `..`: {r:?}"
        );
        host.assert_unchanged(&format!("{case:?}"));
    }
}

/// FIFOs and unix sockets as bind sources or mount points: bound as they are, or refused with
/// 125; never a hang (nothing opens them), never anything created on the host.
#[test]
fn fifo_and_socket_as_source_or_mount_point() {
    let _g = shared();
    let fx = Workdir::new();
    let fifo = fx.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    common::chown(&fifo);
    let sock_path = fx.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    common::chown(&sock_path);
    std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let w = fx.subdir("w");
    let wfifo = w.join("fifo");
    nix::unistd::mkfifo(&wfifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    let file = fx.file("file", "file-content\n");
    let host = HostState::take(&[fx.path()]);
    let d = |p: &Path| p.display().to_string();
    // (args, script run inside when accepted, expected stdout when accepted)
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (
            vec!["--ro-bind".into(), format!("{}:/mnt/fifo", d(&fifo))],
            "test -p /mnt/fifo && echo fifo",
            "fifo",
        ),
        (
            vec!["--bind".into(), format!("{}:/mnt/sock", d(&sock_path))],
            "test -S /mnt/sock && echo socket",
            "socket",
        ),
        (
            vec![
                "--bind".into(),
                format!("{}:/w", d(&w)),
                "--tmpfs".into(),
                "/w/fifo".into(),
            ],
            "test -d /w/fifo && echo dir",
            "dir",
        ),
        (
            vec![
                "--bind".into(),
                format!("{}:/w", d(&w)),
                "--ro-bind".into(),
                format!("{}:/w/fifo", d(&file)),
            ],
            "cat /w/fifo",
            "file-content",
        ),
    ];
    for (case, script, want) in cases {
        let mut args = case.clone();
        args.extend(["--".into(), "sh".into(), "-c".into(), script.into()]);
        let (r, _w) = run_within(common::sbx(&args), Duration::from_secs(20));
        eprintln!("special files {case:?}: exit {}", r.code);
        match r.code {
            0 => assert_eq!(r.stdout.trim(), want, "{case:?}: {r:?}"),
            125 => assert_eq!(error_lines(&r.stderr).len(), 1, "{case:?}: {r:?}"),
            _ => panic!("{case:?}: neither done nor refused: {r:?}"),
        }
        host.assert_unchanged(&format!("{case:?}"));
    }
}

/// A file where a directory is expected: refused with 125, nothing created on the host.
#[test]
fn file_where_a_directory_is_expected_is_refused() {
    let _g = shared();
    let fx = Workdir::new();
    let f1 = fx.file("f1", "one\n");
    let f2 = fx.file("f2", "two\n");
    let w = fx.subdir("w");
    std::fs::write(w.join("file"), "in-w\n").unwrap();
    let d = fx.subdir("d");
    let host = HostState::take(&[fx.path()]);
    let s = |p: &Path| p.display().to_string();
    let cases: Vec<Vec<String>> = vec![
        // A bind under a file bind.
        vec![
            "--ro-bind".into(),
            format!("{}:/x", s(&f1)),
            "--bind".into(),
            format!("{}:/x/sub", s(&f2)),
        ],
        // A tmpfs under a file bind.
        vec![
            "--ro-bind".into(),
            format!("{}:/x", s(&f1)),
            "--tmpfs".into(),
            "/x/sub".into(),
        ],
        // A tmpfs whose parent inside a bind is a regular file on the host.
        vec![
            "--bind".into(),
            format!("{}:/w", s(&w)),
            "--tmpfs".into(),
            "/w/file/sub".into(),
        ],
        // A tmpfs onto a regular file inside a bind.
        vec![
            "--bind".into(),
            format!("{}:/w", s(&w)),
            "--tmpfs".into(),
            "/w/file".into(),
        ],
        // A directory bound onto a regular file inside a bind.
        vec![
            "--bind".into(),
            format!("{}:/w", s(&w)),
            "--ro-bind".into(),
            format!("{}:/w/file", s(&d)),
        ],
        // A file bound where a missing path inside a bind would need creating.
        vec![
            "--bind".into(),
            format!("{}:/w", s(&w)),
            "--ro-bind".into(),
            format!("{}:/w/new/sub", s(&f1)),
        ],
    ];
    for case in cases {
        let mut args = case.clone();
        args.extend(["--".into(), "touch".into(), "ran".into()]);
        let (r, wd) = run_within(common::sbx(&args), Duration::from_secs(20));
        assert_eq!(r.code, 125, "{case:?}: {r:?}");
        assert_eq!(
            error_lines(&r.stderr).len(),
            1,
            "{case:?}: one message: {r:?}"
        );
        assert!(!wd.path().join("ran").exists(), "{case:?}: the command ran");
        host.assert_unchanged(&format!("{case:?}"));
    }
}

/// Bind sources that are dangling or looping symlinks: a clean 125 naming the source, or
/// skipped when marked optional; nothing created on the host.
#[test]
fn dangling_and_looping_symlink_sources() {
    let _g = shared();
    let fx = Workdir::new();
    let looping = fx.path().join("loop");
    symlink("loop", &looping);
    let dangling = fx.path().join("dangling");
    symlink("no-such-target", &dangling);
    let host = HostState::take(&[fx.path()]);
    for src in [&looping, &dangling] {
        let (r, wd) = run_within(
            common::sbx([
                "--bind",
                &format!("{}:/mnt/x", src.display()),
                "--",
                "touch",
                "ran",
            ]),
            Duration::from_secs(20),
        );
        assert_eq!(r.code, 125, "{}: {r:?}", src.display());
        let msgs = error_lines(&r.stderr);
        assert_eq!(msgs.len(), 1, "one message: {r:?}");
        assert!(msgs[0].contains(&*src.display().to_string()), "{r:?}");
        assert!(!wd.path().join("ran").exists(), "the command ran");
    }
    let (r, _wd) = run_within(
        common::sbx([
            "--bind",
            &format!("{}:/mnt/x?", dangling.display()),
            "--",
            "sh",
            "-c",
            "test -e /mnt/x && echo present || echo absent",
        ]),
        Duration::from_secs(20),
    );
    assert_eq!(r.code, 0, "an optional dangling source is skipped: {r:?}");
    assert_eq!(r.stdout, "absent\n", "{r:?}");
    host.assert_unchanged("dangling and looping symlinks");
}
