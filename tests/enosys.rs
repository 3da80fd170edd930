//! sbx where newer system calls are missing (issue 13): kernels before 5.12 (no
//! mount_setattr), and seccomp filters that answer openat2, the new mount API, close_range or
//! pidfd_open with ENOSYS (gVisor, systemd's `SystemCallFilter=`, older container profiles).
//! Each environment is built in a process tree (see `common::enosys`): the calls are taken
//! away from sbx alone, one at a time, and every guarantee the default profile gives is then
//! checked from inside and on the host. The setup races of tests/reliability.rs run on the
//! classic mount path there as well.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::enosys::{self, CALLS, MOUNT_CALLS, Mount};
use common::tree::{ETC_CHECK, HostState, symlink};
use common::{Running, Workdir, children_of, error_lines, key_values, run_within};

const LIMIT: Duration = Duration::from_secs(30);

/// What `-v` says when each call is missing; None for the calls sbx does not use itself.
fn fallback_note(call: &str) -> Option<&'static str> {
    match call {
        "openat2" => Some("openat2 (Linux 5.6)"),
        "open_tree" | "move_mount" | "mount_setattr" => Some("the new mount API"),
        "close_range" => Some("close_range (Linux 5.9)"),
        "pidfd_open" => Some("pidfd_open is missing"),
        _ => None,
    }
}

/// A bind source with a submount: `src/` holds `top` and the mount point `sub/`, onto which
/// the sbx process gets `real/` bound (in its own mount namespace).
struct Submounted {
    fx: Workdir,
    src: PathBuf,
    real: PathBuf,
}

impl Submounted {
    fn new() -> Submounted {
        let fx = Workdir::new();
        let src = fx.subdir("src");
        fx.subdir("src/sub");
        std::fs::write(src.join("top"), "top\n").unwrap();
        let real = fx.subdir("real");
        std::fs::write(real.join("inner"), "inner\n").unwrap();
        common::chown(&real.join("inner"));
        Submounted { fx, src, real }
    }

    fn mounts(&self) -> Vec<Mount> {
        vec![Mount::bind(&self.real, &self.src.join("sub"))]
    }
}

/// The script run inside: /etc as the sandbox shows it, writes into the read-only binds, the
/// root and /dev (sealed read-only once populated), and the options of every mount under /r.
const GUARANTEES: &str = "cat /etc/passwd; echo ---; \
    touch /etc/sbx-written 2>/dev/null && echo etc-write=ok || echo etc-write=refused; \
    touch /sbx-written 2>/dev/null && echo root-write=ok || echo root-write=refused; \
    touch /dev/sbx-written 2>/dev/null && echo dev-write=ok || echo dev-write=refused; \
    echo x > /r/written 2>/dev/null && echo top-write=ok || echo top-write=refused; \
    echo x > /r/sub/written 2>/dev/null && echo sub-write=ok || echo sub-write=refused; \
    echo sub=$(cat /r/sub/inner); \
    while read -r id parent dev root point opts rest; do \
      case $point in /r|/r/*) echo \"mount $point $opts\";; esac; \
    done < /proc/self/mountinfo";

/// The default profile without landlock, which refuses writes under read-only binds too: the
/// mounts alone must refuse them.
fn mounts_alone() -> common::Profile {
    common::profile("extends = [\"default\"]\n[security]\nlandlock = \"off\"\n")
}

/// Runs the default profile with `calls` taken away and checks every guarantee of its binds,
/// with landlock and without (see [`mounts_alone`]). `tag` names the case in messages.
fn check_guarantees(calls: &[&str], tag: &str) {
    check_binds(calls, &["--profile", "default"], tag);
    let p = mounts_alone();
    check_binds(
        calls,
        &["--profile", &p.path],
        &format!("{tag}, landlock off"),
    );
}

fn check_binds(calls: &[&str], profile: &[&str], tag: &str) {
    let sm = Submounted::new();
    let host = HostState::take(&[Path::new("/etc"), sm.fx.path()]);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let ro = format!("{}:/r", sm.src.display());
    let mut args = vec!["-v", "--ro-bind", &ro];
    args.extend(profile);
    args.extend(["--", "sh", "-c", GUARANTEES]);
    let Some(s) = enosys::sbx(calls, sm.mounts(), &args) else {
        common::note_skip(
            tag,
            "the submount needs a root test runner; checking without it",
        );
        return check_without_submount(calls, tag);
    };
    let (r, _w) = run_within(s, LIMIT);
    assert_eq!(r.code, 0, "{tag}: the default profile runs: {r:?}");
    let (etc, rest) = r.stdout.split_once("---\n").expect("the marker");
    assert_eq!(etc, passwd, "{tag}: /etc inside is the host's: {r:?}");
    let m = key_values(rest);
    for k in [
        "etc-write",
        "root-write",
        "dev-write",
        "top-write",
        "sub-write",
    ] {
        assert_eq!(m[k], "refused", "{tag}: {k}: {r:?}");
    }
    assert_eq!(
        m["sub"], "inner",
        "{tag}: the submount is what /r/sub shows: {r:?}"
    );
    let mounts: Vec<&str> = rest.lines().filter(|l| l.starts_with("mount ")).collect();
    assert_eq!(mounts.len(), 2, "{tag}: /r and /r/sub: {r:?}");
    for l in &mounts {
        let opts: Vec<&str> = l.rsplit(' ').next().unwrap().split(',').collect();
        for want in ["ro", "nosuid", "nodev"] {
            assert!(opts.contains(&want), "{tag}: {want} on {l}: {r:?}");
        }
    }
    for call in calls {
        if let Some(note) = fallback_note(call) {
            assert!(r.stderr.contains(note), "{tag}: -v names {note:?}: {r:?}");
        }
    }
    if calls.iter().all(|c| fallback_note(c).is_none()) {
        assert!(
            !r.stderr.contains("missing"),
            "{tag}: nothing replaced: {r:?}"
        );
    }
    assert!(!sm.real.join("written").exists() && !sm.src.join("written").exists());
    host.assert_unchanged(tag);
}

/// [`check_guarantees`] where the runner cannot mount: the read-only binds without a submount.
fn check_without_submount(calls: &[&str], tag: &str) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let script = "cat /etc/passwd; echo ---; \
        touch /etc/sbx-written 2>/dev/null && echo etc-write=ok || echo etc-write=refused";
    let s = enosys::sbx(calls, Vec::new(), &["--", "sh", "-c", script]).unwrap();
    let (r, _w) = run_within(s, LIMIT);
    assert_eq!(r.code, 0, "{tag}: {r:?}");
    let (etc, rest) = r.stdout.split_once("---\n").expect("the marker");
    assert_eq!(etc, passwd, "{tag}: {r:?}");
    assert_eq!(key_values(rest)["etc-write"], "refused", "{tag}: {r:?}");
}

/// A symlink planted where a later mount goes (tests/hostile_fs.rs) with `calls` taken away:
/// refused, or mounted on the real directory, never on the link's target.
fn check_planted_symlinks(calls: &[&str], tag: &str) {
    let fx = Workdir::new();
    let w = fx.subdir("w");
    let d = fx.subdir("d");
    std::fs::write(d.join("planted"), "planted\n").unwrap();
    for (target, later) in [
        ("../etc", vec!["--tmpfs".to_string(), "/w/sub".into()]),
        (
            "/newroot/etc",
            vec!["--ro-bind".into(), format!("{}:/w/sub", d.display())],
        ),
    ] {
        let link = w.join("sub");
        let _ = std::fs::remove_file(&link);
        symlink(target, &link);
        let host = HostState::take(&[fx.path(), Path::new("/etc")]);
        let mut args = vec!["--bind".to_string(), format!("{}:/w", w.display())];
        args.extend(later.iter().cloned());
        args.extend(["--".into(), "sh".into(), "-c".into(), ETC_CHECK.into()]);
        let s = enosys::sbx(calls, Vec::new(), &args).unwrap();
        let (r, _wd) = run_within(s, LIMIT);
        assert!(
            r.code == 125 || (r.code == 0 && r.stdout.trim() == "etc-intact"),
            "{tag}: link -> {target}, {later:?}: {r:?}"
        );
        if r.code == 125 {
            assert_eq!(error_lines(&r.stderr).len(), 1, "{tag}: one message: {r:?}");
        }
        host.assert_unchanged(&format!("{tag}: planted symlink -> {target}"));
    }
}

/// The control: on this host (no filter) the submount is there and writable through a
/// writable bind, so a refused write above is the read-only bind's doing.
#[test]
fn control_the_submount_is_writable_without_read_only() {
    let sm = Submounted::new();
    let rw = format!("{}:/r", sm.src.display());
    let script = "echo x > /r/sub/written && echo sub-write=ok";
    let Some(s) = enosys::sbx(&[], sm.mounts(), &["--bind", &rw, "--", "sh", "-c", script]) else {
        return common::note_skip("control", "mounting a submount needs a root test runner");
    };
    let (r, _w) = run_within(s, LIMIT);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(key_values(&r.stdout)["sub-write"], "ok", "{r:?}");
    assert_eq!(
        std::fs::read_to_string(sm.real.join("written")).unwrap(),
        "x\n",
        "the write landed in the submount's host directory"
    );
}

/// Each call alone: the filter takes it away (and only the filter), the default profile runs,
/// /etc is the host's, no read-only bind or submount can be written, every mount of the bind
/// is ro, nosuid and nodev, a planted symlink is never followed, and `-v` names the fallback.
#[test]
fn the_default_profile_keeps_its_guarantees_without_each_newer_call() {
    for c in &CALLS {
        enosys::assert_taken_away(&[c.name]);
        check_guarantees(&[c.name], c.name);
        check_planted_symlinks(&[c.name], c.name);
    }
}

/// All of the mount API and openat2 at once, as on Linux 5.10 under an older container
/// profile: every bind takes the classic path.
#[test]
fn the_classic_mount_path_keeps_the_guarantees() {
    enosys::assert_taken_away(&MOUNT_CALLS);
    check_guarantees(&MOUNT_CALLS, "mount calls");
    check_planted_symlinks(&MOUNT_CALLS, "mount calls");
}

// ---- close_range ----

/// Makes the caller's `fd` reach sbx as fds 7 and 1000, not close-on-exec.
fn leak_into(cmd: &mut Command, fd: i32) {
    // SAFETY: dup2 is async-signal-safe; runs after the filter is loaded, which leaves it alone.
    unsafe {
        cmd.pre_exec(move || {
            for to in [7, 1000] {
                if libc::dup2(fd, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// The descriptors of `pid`, as (number, what it is).
fn fds_of(pid: u32) -> Vec<(String, String)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            (
                e.file_name().to_string_lossy().into_owned(),
                target.display().to_string(),
            )
        })
        .collect()
}

/// Which of `pids` is PID 1 of its own PID namespace (the sandbox's init).
fn init_among(pids: &[i32]) -> Option<u32> {
    pids.iter().copied().find_map(|p| {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
        let nspid = status.lines().find(|l| l.starts_with("NSpid:"))?;
        (nspid.split_whitespace().last() == Some("1")).then_some(p as u32)
    })
}

/// Without close_range, a descriptor the caller leaves open reaches neither the command nor
/// the sandbox's init, which stays inside with it (read from the host).
#[test]
fn inherited_descriptors_stay_out_without_close_range() {
    enosys::assert_taken_away(&["close_range"]);
    let secret = Workdir::new();
    let path = secret.file("secret", "s3cret");
    let file = std::fs::File::open(&path).unwrap();
    let s = enosys::sbx(
        &["close_range"],
        Vec::new(),
        &["-v", "--", "ls", "/proc/self/fd"],
    );
    let mut s = s.unwrap();
    leak_into(&mut s.cmd, file.as_raw_fd());
    let (r, _w) = run_within(s, LIMIT);
    assert_eq!(r.code, 0, "{r:?}");
    let fds: Vec<&str> = r.stdout.split_whitespace().collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "3 is ls's own: {r:?}");
    assert!(r.stderr.contains("close_range (Linux 5.9)"), "{r:?}");

    if !common::is_root() {
        return common::note_skip("init's descriptors", "reading them needs a root runner");
    }
    let script = "echo ready; sleep 10";
    let mut s = enosys::sbx(&["close_range"], Vec::new(), &["--", "sh", "-c", script]).unwrap();
    leak_into(&mut s.cmd, file.as_raw_fd());
    let child = s
        .cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running::new(child);
    let sbx_pid = running.id();
    let stdout = running.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let secret_path = common::canonical(&path);
    let leaked = |pid| {
        fds_of(pid)
            .into_iter()
            .filter(|(_, t)| *t == secret_path)
            .count()
    };
    assert_eq!(leaked(sbx_pid), 2, "precondition: sbx got fds 7 and 1000");
    let init = init_among(&children_of(sbx_pid as i32)).expect("the sandbox's init");
    // Init closes what it inherited right after forking the command: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while leaked(init) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = fds_of(init);
    assert_eq!(leaked(init), 0, "init kept the caller's file: {left:?}");
    // Its report pipe, its signalfd and the inotify watch of protected paths.
    assert!(left.len() <= 3, "init keeps only its own: {left:?}");
}

// ---- pidfd_open ----

/// Without pidfd_open, sbx still sees how and when the sandbox ends: exit codes, a death by
/// signal, the wall-clock limit, and no delay to speak of.
#[test]
fn the_end_is_seen_without_pidfd_open() {
    enosys::assert_taken_away(&["pidfd_open"]);
    let run = |args: &[&str]| {
        let s = enosys::sbx(&["pidfd_open"], Vec::new(), args).unwrap();
        let start = Instant::now();
        let (r, _w) = run_within(s, LIMIT);
        (r, start.elapsed())
    };
    let (r, _) = run(&["--", "sh", "-c", "exit 3"]);
    assert_eq!(r.code, 3, "{r:?}");
    let (r, _) = run(&["--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(r.code, 137, "{r:?}");
    let (r, took) = run(&["--timeout", "1s", "--", "sleep", "20"]);
    assert_eq!(r.code, 124, "{r:?}");
    assert!(
        took < Duration::from_secs(10),
        "the timeout fired late: {took:?}"
    );
    let (r, took) = run(&["-v", "--", "true"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("pidfd_open is missing"), "{r:?}");
    assert!(took < Duration::from_secs(2), "{took:?}: {r:?}");
}

// ---- mounts hidden under others, on the classic path ----

/// A submount with another mount stacked on its root is hidden for good (only CAP_SYS_ADMIN in
/// the sandbox's user namespace could uncover it): the classic path runs, and what is visible
/// is read-only.
#[test]
fn classic_binds_accept_a_mount_stacked_under_another() {
    let sm = Submounted::new();
    let top = sm.fx.subdir("top");
    std::fs::write(top.join("inner"), "stacked\n").unwrap();
    let mut mounts = sm.mounts();
    mounts.push(Mount::bind(&top, &sm.src.join("sub")));
    let ro = format!("{}:/r", sm.src.display());
    let off = mounts_alone();
    let script = "cat /r/sub/inner; echo x > /r/sub/written 2>/dev/null || echo refused";
    let args = [
        "--profile",
        &off.path,
        "--ro-bind",
        &ro,
        "--",
        "sh",
        "-c",
        script,
    ];
    let Some(s) = enosys::sbx(&MOUNT_CALLS, mounts, &args) else {
        return common::note_skip("stacked", "mounting needs a root test runner");
    };
    enosys::assert_taken_away(&MOUNT_CALLS);
    let (r, _w) = run_within(s, LIMIT);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "stacked\nrefused\n", "{r:?}");
    assert!(!top.join("written").exists() && !sm.real.join("written").exists());
}

/// A submount hidden under a mount on one of its ancestors could come back if the host moved
/// directories around: the classic path cannot reach it to make it read-only, so it refuses
/// with one message; the new mount API reaches every mount and runs (the control).
#[test]
fn classic_binds_refuse_a_mount_hidden_under_an_ancestor() {
    let fx = Workdir::new();
    let src = fx.subdir("src");
    fx.subdir("src/a/sub");
    let (low, cover) = (fx.subdir("low"), fx.subdir("cover"));
    let mounts = || {
        vec![
            Mount::bind(&low, &src.join("a/sub")),
            Mount::bind(&cover, &src.join("a")),
        ]
    };
    let ro = format!("{}:/r", src.display());
    let off = mounts_alone();
    let args = [
        "--profile",
        &off.path,
        "--ro-bind",
        &ro,
        "--",
        "sh",
        "-c",
        "echo x > /r/a/x 2>/dev/null || echo refused",
    ];
    let Some(new_api) = enosys::sbx(&[], mounts(), &args) else {
        return common::note_skip("hidden", "mounting needs a root test runner");
    };
    let (r, _w) = run_within(new_api, LIMIT);
    assert_eq!((r.code, r.stdout.as_str()), (0, "refused\n"), "{r:?}");
    enosys::assert_taken_away(&MOUNT_CALLS);
    let (r, _w) = run_within(enosys::sbx(&MOUNT_CALLS, mounts(), &args).unwrap(), LIMIT);
    assert_eq!(r.code, 125, "{r:?}");
    let msgs = error_lines(&r.stderr);
    assert_eq!(msgs.len(), 1, "one message: {r:?}");
    assert!(
        r.stderr.contains("could not be reached at its mount point"),
        "{r:?}"
    );
    assert!(common::names_in(&low).is_empty() && common::names_in(&cover).is_empty());
}

/// The classic path reaches each submount by its mount point: directories above one swapped
/// over and over while sbx sets up (the mount follows its directory, the names change) must
/// end with the submount read-only or with 125, never writable.
#[test]
fn classic_submount_moved_during_setup_is_never_writable() {
    if !common::is_root() {
        return common::note_skip("moved submount", "mounting needs a root test runner");
    }
    enosys::assert_taken_away(&MOUNT_CALLS);
    let n = common::count("moved submount race", 200, 40);
    let fx = Workdir::new();
    let src = fx.subdir("src");
    fx.subdir("src/a/sub");
    fx.subdir("src/b/sub");
    let real = fx.subdir("real");
    let (a, b) = (src.join("a"), src.join("b"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        let (a, b) = (c(&a), c(&b));
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
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
                if rc != 0 {
                    // The fixture is gone: the test failed and is unwinding.
                    break;
                }
                swaps += 1;
            }
            swaps
        })
    };
    let ro = format!("{}:/r", src.display());
    let off = mounts_alone();
    let script = "for d in a b; do echo x > /r/$d/sub/w 2>/dev/null && echo wrote-$d; done; \
        grep ' /r/./sub ' /proc/self/mountinfo | cut -d' ' -f6";
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..n {
        // The submount goes onto whichever directory is named `a` at that moment (the
        // exchange is atomic: there always is one).
        let mounts = vec![Mount::bind(&real, &a.join("sub"))];
        let args = [
            "--profile",
            &off.path,
            "--ro-bind",
            &ro,
            "--",
            "sh",
            "-c",
            script,
        ];
        let (r, _w) = run_within(enosys::sbx(&MOUNT_CALLS, mounts, &args).unwrap(), LIMIT);
        assert!(
            !r.stdout.contains("wrote"),
            "run {i}: a submount was writable: {r:?}"
        );
        let kind = match r.code {
            0 => {
                assert!(r.stdout.starts_with("ro,"), "run {i}: the submount: {r:?}");
                "ran, the submount read-only".to_string()
            }
            125 => {
                assert_eq!(error_lines(&r.stderr).len(), 1, "run {i}: {r:?}");
                "refused (125)".to_string()
            }
            _ => panic!("run {i}: {r:?}"),
        };
        *tally.entry(kind).or_default() += 1;
        assert!(
            !real.join("w").exists(),
            "run {i}: written through the submount"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!("moved submount race: {n} runs, {swaps} swaps: {tally:?}");
    assert!(swaps > 0, "the directories were never swapped");
    assert!(!a.join("sub/w").exists() && !b.join("sub/w").exists());
}
