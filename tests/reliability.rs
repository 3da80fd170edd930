//! Reliability (issue 5), the suite `benches/soak.sh` runs at full counts: sbx killed at
//! random moments leaves nothing behind; many sequential runs leak no temp directory, mount,
//! fd or zombie; 64 concurrent sandboxes stay apart; a daemonizing command neither delays sbx
//! nor outlives it, and nothing of the sandbox runs once sbx returns; a bind source or a mount
//! point swapped with a symlink while sbx sets up is refused with 125 or shows what sbx
//! checked, and nothing is ever created or mounted outside the sandbox. Signals, timeouts and
//! I/O are in tests/process.rs, hostile filesystem state that holds still in
//! tests/hostile_fs.rs.
//!
//! Counts are reduced by default so that `cargo test` fits CI; `SBX_SOAK=1` (what
//! `benches/soak.sh` sets) runs the full counts of the issue. `SBX_SEED` replays the random
//! kill points of a failed run (the seed is printed).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use common::tree::{ETC_CHECK, HostState, assert_mounts_unchanged, host_mounts, listing, symlink};
use common::{
    Ran, Rng, Running, Workdir, count, error_lines, host_processes_with, host_stat, line_reader,
    names_in, read_until, run_within, survivors_with, unique_number, wait_exit,
};

// ---- this process's fds and children ----

/// Every test holds this lock: shared by default, exclusive for the leak test, which counts
/// the fds and children of this very process and must not see those of parallel tests.
static PROCESS_STATE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    PROCESS_STATE.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    PROCESS_STATE.write().unwrap_or_else(|e| e.into_inner())
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
    // Outside the writable working directory: sbx refuses overlay layers the command can reach.
    let tmp_root = Workdir::new();
    let tmpdir = tmp_root.subdir("tmpdir");
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
    let cwd_before = listing(cwd.path());
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
        listing(cwd.path()),
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

// ---- 4. nothing outlives the run ----

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

// ---- 5. symlink races during setup ----

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

/// How a race test starts sbx: `common::sbx`, or with newer system calls taken away.
type Build = fn(&[String]) -> common::Sbx;

fn plain(args: &[String]) -> common::Sbx {
    common::sbx(args)
}

/// With the new mount API and openat2 answering ENOSYS: the classic mount path (issue 13).
fn classic(args: &[String]) -> common::Sbx {
    common::enosys::sbx(&common::enosys::MOUNT_CALLS, Vec::new(), args).expect("no mounts")
}

/// A bind source swapped between a directory and a symlink to another directory while sbx
/// runs: the sandbox shows the directory it checked (or the symlink's target when it saw the
/// symlink and warned), or refuses with 125 — never the other directory's content under the
/// name of the one it checked.
#[test]
fn bind_source_swapped_between_check_and_mount() {
    bind_source_race("bind source race", plain);
}

/// The same on the classic mount path (no mount_setattr, open_tree, move_mount, openat2).
#[test]
fn bind_source_swapped_on_the_classic_mount_path() {
    common::enosys::assert_taken_away(&common::enosys::MOUNT_CALLS);
    bind_source_race("bind source race (classic mounts)", classic);
}

fn bind_source_race(what: &str, build: Build) {
    let _g = shared();
    let n = count(what, 200, 40);
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
            build(&[
                "--ro-bind".into(),
                format!("{}:/mnt/p", p.display()),
                "--".into(),
                "cat".into(),
                "/mnt/p/id".into(),
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
    eprintln!("{what}: {n} runs, {swaps} swaps: {tally:?}");
    if let Some(e) = &refusal {
        eprintln!("{what}: a refusal: {}", error_lines(e).join(" | "));
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
        let got = listing(&d);
        assert!(
            got.is_empty() || got.keys().all(|k| k == Path::new("id")),
            "{}: {got:?}",
            d.display()
        );
    }
    assert_mounts_unchanged(&mounts, what);
}

/// The attack of symlink_planted_at_a_later_mount_point (tests/hostile_fs.rs) as a race: the
/// mount point is a real directory when sbx checks it and a symlink to ../etc when it mounts.
/// /etc inside must stay the host's.
#[test]
fn mount_point_swapped_with_a_symlink_during_setup() {
    mount_point_race("mount point race", plain);
}

/// The same on the classic mount path (no mount_setattr, open_tree, move_mount, openat2).
#[test]
fn mount_point_swapped_on_the_classic_mount_path() {
    common::enosys::assert_taken_away(&common::enosys::MOUNT_CALLS);
    mount_point_race("mount point race (classic mounts)", classic);
}

fn mount_point_race(what: &str, build: Build) {
    let _g = shared();
    let n = count(what, 200, 40);
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
        let (r, _wd) = run_within(build(&args), Duration::from_secs(20));
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
    eprintln!("{what}: {n} runs, {swaps} swaps: {tally:?}");
    if let Some(e) = &refusal {
        eprintln!("{what}: a refusal: {}", error_lines(e).join(" | "));
    }
    assert!(
        wrong.is_empty(),
        "a mount followed a symlink swapped in after the check and hid /etc \
         (time-of-check/time-of-use on the mount point): {} of {n} runs: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
    assert_eq!(names_in(&w), names_before);
    host.assert_unchanged(what);
}
