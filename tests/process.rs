//! The command's process: its environment, working directory, session, exit codes, the
//! signals sbx forwards (and the timeout that ends a command ignoring them), cleanup when sbx
//! is killed, and its I/O: stdin passed through from a file or a pipe, 1 GiB of output through
//! a pipe, a closed stdout giving SIGPIPE or EPIPE as outside.

mod common;

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use common::{
    Rng, Running, Workdir, children_of, error_lines, exit_code, host_processes, host_stat,
    key_values, line_reader, read_rest, read_until, run_keep, run_within, stat_fields,
    survivors_with, unique_number, wait_exit,
};

// ---- environment ----

#[test]
fn environment_is_cleared_then_rebuilt_from_the_profile() {
    let s = common::sbx(["--setenv", "A=1", "--", "env"])
        .env("SECRET_TOKEN", "x")
        .env("SSH_AUTH_SOCK", "/x")
        .env("DISPLAY", ":0")
        .env("TERM", "xterm-test");
    let home = s.work.path().join("home").display().to_string();
    let r = s.run();
    assert_eq!(r.code, 0, "{r:?}");
    let env = key_values(&r.stdout);
    for leaked in ["SECRET_TOKEN", "SSH_AUTH_SOCK", "DISPLAY", "TMPDIR"] {
        assert!(
            !env.contains_key(leaked),
            "{leaked} leaked into the sandbox: {r:?}"
        );
    }
    assert!(
        !r.stdout.contains("/x\n") && !r.stdout.contains(":0\n"),
        "a secret value leaked: {r:?}"
    );
    assert_eq!(
        env.get("TERM").map(String::as_str),
        Some("xterm-test"),
        "{r:?}"
    );
    assert_eq!(env.get("HOME"), Some(&home), "{r:?}");
    assert_eq!(env.get("USER").map(String::as_str), Some("tester"), "{r:?}");
    assert_eq!(env.get("A").map(String::as_str), Some("1"), "{r:?}");
    let path = env.get("PATH").unwrap_or_else(|| panic!("no PATH: {r:?}"));
    assert!(path.split(':').any(|d| d == "/usr/bin"), "{r:?}");
    // Nothing beyond what the profile keeps and sets.
    let allowed = [
        "TERM", "HOME", "USER", "LOGNAME", "PATH", "SHELL", "A", "PWD", "SHLVL", "_",
    ];
    for k in env.keys() {
        assert!(
            allowed.contains(&k.as_str()),
            "unexpected variable {k}: {r:?}"
        );
    }
}

#[test]
fn unsetenv_removes_a_kept_variable() {
    let r = common::sbx(["--unsetenv", "TERM", "--", "env"])
        .env("TERM", "xterm-test")
        .run();
    assert_eq!(r.code, 0, "{r:?}");
    let env = key_values(&r.stdout);
    assert!(!env.contains_key("TERM"), "{r:?}");
    assert!(env.contains_key("PATH"), "{r:?}");
}

// ---- working directory ----

#[test]
fn starts_in_the_callers_directory() {
    let s = common::sbx(["--", "sh", "-c", "pwd; echo from-inside > cwd-file"]);
    let (r, work) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    let expected = work.path().canonicalize().unwrap();
    assert_eq!(r.stdout.trim_end(), expected.display().to_string(), "{r:?}");
    // It is the caller's directory itself, writable: the host sees the file.
    let on_host = std::fs::read_to_string(work.path().join("cwd-file")).unwrap();
    assert_eq!(on_host, "from-inside\n");
}

#[test]
fn chdir_sets_the_starting_directory() {
    let r = common::sbx(["--chdir", "/tmp", "--", "sh", "-c", "pwd; echo $PWD"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines, ["/tmp", "/tmp"], "{r:?}");
}

const NO_CWD_PROFILE: &str = r#"
description = "No binding of the working directory"

[filesystem]
ro = ["/usr", "/etc"]
tmpfs = ["/tmp"]
symlinks = { "/bin" = "usr/bin", "/sbin" = "usr/sbin", "/lib" = "usr/lib", "/lib64" = "usr/lib64" }
dev = "minimal"
proc = true

[env.set]
PATH = "/usr/bin:/bin"
"#;

#[test]
fn invisible_cwd_starts_in_root_with_a_warning() {
    let profile = common::profile(NO_CWD_PROFILE);
    let s = common::sbx(["--profile", &profile.path, "--", "pwd"]);
    let (r, work) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim_end(), "/", "{r:?}");
    assert!(
        r.stderr.contains("not visible") && r.stderr.contains(&work.path().display().to_string()),
        "a warning naming the directory: {r:?}"
    );
}

// ---- session ----

#[test]
fn command_leads_a_new_session() {
    // `exec` keeps the shell's pid: cat reads its own stat.
    let r = common::sh(&[], "echo $$; exec cat /proc/self/stat");
    assert_eq!(r.code, 0, "{r:?}");
    let (pid, stat) = r.stdout.split_once('\n').unwrap();
    let f = stat_fields(stat);
    assert_eq!(f[2], pid, "pgrp; {r:?}");
    assert_eq!(f[3], pid, "session; {r:?}");
    assert_eq!(f[4], "0", "no controlling terminal; {r:?}");
}

#[test]
fn new_session_seen_from_the_host() {
    let mut s = common::sbx(["--", "sh", "-c", "echo ready; read x; exit 0"]);
    s.cmd.stdin(Stdio::piped());
    let (child, _work) = s.spawn();
    let mut run = Running::new(child);
    let rx = line_reader(run.stdout.take().unwrap());
    read_until(&rx, "ready", Duration::from_secs(10));

    let sbx_pid = run.id() as i32;
    let sbx_sid = host_stat(sbx_pid).unwrap()[3].clone();
    let init = children_of(sbx_pid);
    assert_eq!(init.len(), 1, "{init:?}");
    let payload = children_of(init[0]);
    assert_eq!(payload.len(), 1, "{payload:?}");
    let f = host_stat(payload[0]).unwrap();
    assert_eq!(
        f[3],
        payload[0].to_string(),
        "the command leads its session: {f:?}"
    );
    assert_ne!(f[3], sbx_sid, "the command shares sbx's session");

    drop(run.stdin.take());
    assert_eq!(wait_exit(&mut run, Duration::from_secs(10)).code(), Some(0));
}

// ---- exit codes ----

#[test]
fn exit_code_is_the_commands() {
    for code in [0, 3, 42, 255] {
        let r = common::sh(&[], &format!("exit {code}"));
        assert_eq!(r.code, code, "{r:?}");
        assert_eq!(
            r.output.status.code(),
            Some(code),
            "sbx exits, it is not killed"
        );
    }
}

/// The command can exit 124-127 itself, as sbx does for its own reasons: the code alone cannot
/// tell them apart (README, "Exit codes"), the report's `reason` can.
#[test]
fn the_reason_tells_the_commands_124_to_127_from_sbxs() {
    let run = |args: &[&str]| {
        let mut s = common::sbx(["--json-status", "report.json"]);
        s.cmd.args(args);
        let (r, work) = run_within(s, Duration::from_secs(60));
        let report = common::read_report(&work.path().join("report.json"), &r);
        (r, report)
    };
    for code in 124..=127 {
        let (r, report) = run(&["--", "sh", "-c", &format!("exit {code}")]);
        assert_eq!(r.code, code, "{r:?}");
        assert_eq!(report["reason"], "exited", "{report}");
        assert_eq!(report["exit_code"], code, "{report}");
    }
    // The same codes from sbx: a timeout, a setup failure, a command not found.
    let (r, report) = run(&["--timeout", "200ms", "--", "sleep", "30"]);
    assert_eq!(
        (r.code, &report["reason"]),
        (124, &"timeout".into()),
        "{r:?}"
    );
    let (r, report) = run(&["--chdir", "/no-such-dir-4713", "--", "true"]);
    assert_eq!(
        (r.code, &report["reason"]),
        (125, &"setup_failed".into()),
        "{r:?}"
    );
    let (r, report) = run(&["--", "no-such-command-4714"]);
    assert_eq!(
        (r.code, &report["reason"]),
        (127, &"exec_failed".into()),
        "{r:?}"
    );
}

#[test]
fn killed_command_gives_128_plus_signal() {
    for (sig, code) in [("KILL", 137), ("TERM", 143), ("USR1", 138)] {
        let r = common::sh(&[], &format!("kill -{sig} $$; sleep 5"));
        assert_eq!(r.code, code, "SIG{sig}: {r:?}");
        assert_eq!(
            r.output.status.code(),
            Some(code),
            "sbx itself exits normally"
        );
    }
}

#[test]
fn missing_command_gives_127_and_names_it() {
    let r = common::sbx(["--", "no-such-command-4711"]).run();
    assert_eq!(r.code, 127, "{r:?}");
    assert!(r.stderr.contains("no-such-command-4711"), "{r:?}");
    let r = common::sbx(["--", "/usr/bin/no-such-command-4712"]).run();
    assert_eq!(r.code, 127, "{r:?}");
    assert!(r.stderr.contains("no-such-command-4712"), "{r:?}");
}

#[test]
fn non_executable_file_gives_126() {
    let s = common::sbx(["--", "./not-executable.sh"]);
    let script = s.work.file("not-executable.sh", "#!/bin/sh\necho ran\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let abs = script.display().to_string();
    let (r, work) = run_keep(s);
    assert_eq!(r.code, 126, "{r:?}");
    assert!(!r.stdout.contains("ran"), "{r:?}");
    assert!(r.stderr.contains("not-executable.sh"), "{r:?}");

    // The same by absolute path, from the same work directory.
    let mut s = common::sbx(["--", &abs]);
    s.cmd.current_dir(work.path());
    let r = s.run();
    assert_eq!(r.code, 126, "{r:?}");
    assert!(!r.stdout.contains("ran"), "{r:?}");
}

#[test]
fn bad_profile_gives_125_and_the_command_never_runs() {
    let s = common::sbx([
        "--profile",
        "no-such-profile-4713",
        "--",
        "sh",
        "-c",
        "echo ran > ran",
    ]);
    let (r, work) = run_keep(s);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("no-such-profile-4713"), "{r:?}");
    assert!(!work.path().join("ran").exists(), "the command ran");
}

// ---- signals ----

#[test]
fn forwarded_signals_reach_the_command() {
    let cases = [
        (Signal::SIGTERM, "TERM", 7),
        (Signal::SIGINT, "INT", 8),
        (Signal::SIGHUP, "HUP", 9),
        (Signal::SIGUSR1, "USR1", 10),
        (Signal::SIGUSR2, "USR2", 11),
        (Signal::SIGQUIT, "QUIT", 12),
    ];
    for (sig, name, code) in cases {
        let script = format!(
            "trap 'echo got-{name}; exit {code}' {name}; echo ready; while :; do sleep 0.05; done"
        );
        let (child, _work) = common::sbx(["--", "sh", "-c", &script]).spawn();
        let mut run = Running::new(child);
        let rx = line_reader(run.stdout.take().unwrap());
        read_until(&rx, "ready", Duration::from_secs(10));
        kill(Pid::from_raw(run.id() as i32), sig).unwrap();
        let st = wait_exit(&mut run, Duration::from_secs(5));
        let rest = read_rest(&rx, Duration::from_secs(5));
        let mut err = String::new();
        let _ = run.stderr.take().unwrap().read_to_string(&mut err);
        assert_eq!(st.code(), Some(code), "SIG{name}: {rest:?} {err}");
        assert_eq!(rest, [format!("got-{name}")], "SIG{name}: {err}");
    }
}

#[test]
fn forwarded_signals_reach_the_command_as_pid_1() {
    let script = "trap 'echo got-TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done";
    let (child, _work) = common::sbx(["--as-pid-1", "--", "sh", "-c", script]).spawn();
    let mut run = Running::new(child);
    let rx = line_reader(run.stdout.take().unwrap());
    read_until(&rx, "ready", Duration::from_secs(10));
    kill(Pid::from_raw(run.id() as i32), Signal::SIGTERM).unwrap();
    let st = wait_exit(&mut run, Duration::from_secs(5));
    assert_eq!(st.code(), Some(7));
    assert_eq!(read_rest(&rx, Duration::from_secs(5)), ["got-TERM"]);
}

#[test]
fn unhandled_forwarded_signal_kills_the_command() {
    // No trap: the default action ends the command, and sbx reports 128+N.
    for (sig, code) in [
        (Signal::SIGTERM, 143),
        (Signal::SIGINT, 130),
        (Signal::SIGHUP, 129),
    ] {
        let (child, _work) = common::sbx(["--", "sh", "-c", "echo ready; exec sleep 30"]).spawn();
        let mut run = Running::new(child);
        let rx = line_reader(run.stdout.take().unwrap());
        read_until(&rx, "ready", Duration::from_secs(10));
        // `exec` may not have replaced the shell yet; the shell dies of these signals too.
        kill(Pid::from_raw(run.id() as i32), sig).unwrap();
        let st = wait_exit(&mut run, Duration::from_secs(5));
        assert_eq!(st.code(), Some(code), "{sig:?}: {st:?}");
    }
}

/// A quick check that SIGINT, SIGTERM and SIGHUP sent to sbx in turn all reach one command
/// (unhandled_forwarded_signal_kills_the_command checks each signal's exit code).
#[test]
fn int_term_hup_reach_the_same_command() {
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

// ---- sbx killed ----

fn assert_nothing_left_when_sbx_is_killed(extra: &[&str]) {
    let (bg, fg) = (unique_number(), unique_number());
    let script = format!("sleep {bg} & echo ready; sleep {fg}; echo not-reached");
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--", "sh", "-c", &script]);
    let (child, _work) = common::sbx(args).spawn();
    let mut run = Running::new(child);
    let rx = line_reader(run.stdout.take().unwrap());
    read_until(&rx, "ready", Duration::from_secs(10));

    // Both sleeps are running on the host.
    let want = [format!("sleep {bg}"), format!("sleep {fg}")];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = host_processes(|c| want.iter().any(|w| w == c));
        if found.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sleeps did not start: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    kill(Pid::from_raw(run.id() as i32), Signal::SIGKILL).unwrap();
    let st = wait_exit(&mut run, Duration::from_secs(5));
    assert_eq!(st.signal(), Some(libc::SIGKILL));

    // Every process that mentions the markers (the shell and both sleeps) goes away.
    let left = survivors_with(&[&bg, &fg], Duration::from_secs(5));
    assert!(
        left.is_empty(),
        "sandbox processes outlived sbx ({extra:?}): {left:?}"
    );
}

#[test]
fn killing_sbx_leaves_no_sandbox_process() {
    assert_nothing_left_when_sbx_is_killed(&[]);
}

#[test]
fn killing_sbx_leaves_no_sandbox_process_as_pid_1() {
    assert_nothing_left_when_sbx_is_killed(&["--as-pid-1"]);
}

// ---- stdin ----

#[test]
fn stdin_is_passed_through() {
    let mut s = common::sbx(["--", "cat"]);
    s.cmd.stdin(Stdio::piped());
    let (mut child, _work) = s.spawn();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello\nsecond line\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nsecond line\n");
}

// ---- large output, a closed stdout, stdin from a file and a pipe ----

/// 1 GiB through a pipe arrives complete, byte for byte in count.
#[test]
fn one_gib_of_output_through_a_pipe() {
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
