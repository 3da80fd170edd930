//! The command's process: its environment, working directory, session, exit codes, the
//! signals sbx forwards, cleanup when sbx is killed, and stdin.

mod common;

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use common::{
    Running, children_of, host_processes, host_stat, key_values, line_reader, read_rest,
    read_until, run_keep, stat_fields, survivors_with, unique_number, wait_exit,
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
