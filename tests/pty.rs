//! The `shell` profile and `--pty`, driven through a pty as a terminal emulator would: the
//! shell runs a command line, `tty` is the sandbox's own devpts with the terminal's window
//! size (also after a resize), Ctrl-C interrupts the foreground job and not sbx, Ctrl-Z, `jobs`
//! and `fg` work, `exit N` ends sbx with N, and the terminal is raw while relaying and restored
//! afterwards, also when a hangup ends the session. Without a terminal the shell profile just
//! runs, and with stdout redirected the output still arrives on the pipe. Without a pty, the
//! command shares the caller's terminal and can change its modes (`stty -echo`): sbx puts them
//! back however the run ends.

mod common;

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{PtyOutput, Ran, Sbx, Workdir, exit_code, exited_within, usable};

/// A spawned sbx on a pty; killed and reaped if the test ends early.
struct Session {
    child: Child,
    master: OwnedFd,
    slave: OwnedFd,
    screen: PtyOutput,
    _work: Workdir,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Session {
    /// Starts `sbx ARGS...` with a fresh pty of `rows`×`cols` as its controlling terminal and
    /// stdin, stdout and stderr, as a terminal emulator would.
    fn start(args: &[&str], rows: u16, cols: u16) -> Session {
        Session::spawn(args, rows, cols, true)
    }

    /// [`Session::start`], with stdin the pty only if `stdin_tty` (else /dev/null).
    fn spawn(args: &[&str], rows: u16, cols: u16, stdin_tty: bool) -> Session {
        let size = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).unwrap();
        let Sbx { mut cmd, work } = common::sbx(args);
        cmd.env("PS1", "sbx-prompt$ ")
            .env("TERM", "dumb")
            .stdout(pty.slave.try_clone().unwrap())
            .stderr(pty.slave.try_clone().unwrap());
        if stdin_tty {
            cmd.stdin(pty.slave.try_clone().unwrap());
        }
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(1, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let screen = PtyOutput::start(&pty.master);
        let child = cmd.spawn().expect("spawn sbx");
        drop(cmd);
        Session {
            child,
            master: pty.master,
            slave: pty.slave,
            screen,
            _work: work,
        }
    }

    fn send(&self, s: &str) {
        let mut f = std::fs::File::from(self.master.try_clone().unwrap());
        f.write_all(s.as_bytes()).unwrap();
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn wait(&mut self, timeout: Duration) -> Option<i32> {
        exited_within(&mut self.child, timeout).map(exit_code)
    }

    fn resize(&self, rows: u16, cols: u16) {
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize; the master is open.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    }
}

const PROMPT: &str = "sbx-prompt$ ";
const T: Duration = Duration::from_secs(10);

/// Runs one command line and waits for the next prompt; returns the output in between.
fn command(s: &Session, line: &str, pos: &mut usize) -> String {
    let start = *pos;
    s.send(&format!("{line}\n"));
    // The echo of the line itself, then the output, then the next prompt.
    let echoed = s.screen.expect(line, start, T).unwrap();
    *pos = s.screen.expect(PROMPT, echoed, T).unwrap();
    let text = s.screen.text();
    text[echoed..*pos - PROMPT.len()].replace('\r', "")
}

/// Drives `sbx ARGS` (an interactive shell with the prompt [`PROMPT`]) through a pty.
fn drive_shell(test: &str, args: &[&str]) {
    use nix::sys::termios::{self, LocalFlags};
    let mut s = Session::start(args, 33, 111);
    let before = termios::tcgetattr(s.slave.as_fd()).unwrap();
    assert!(
        before
            .local_flags
            .contains(LocalFlags::ECHO | LocalFlags::ICANON)
    );
    let mut pos = s
        .screen
        .expect(PROMPT, 0, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{test}: no prompt: {e}"));

    // While the shell runs, the invoking terminal is raw: keys travel as bytes.
    let during = termios::tcgetattr(s.slave.as_fd()).unwrap();
    assert!(
        !during
            .local_flags
            .intersects(LocalFlags::ECHO | LocalFlags::ICANON | LocalFlags::ISIG),
        "{test}: the terminal is not in raw mode while relaying: {:?}",
        during.local_flags
    );

    let out = command(&s, "echo hello-$((40+2))", &mut pos);
    assert!(out.contains("hello-42"), "{test}: {out:?}");

    // The sandbox's own devpts, and the invoking terminal's size.
    let out = command(&s, "tty", &mut pos);
    assert_eq!(out.trim(), "/dev/pts/0", "{test}");
    let out = command(&s, "stty size", &mut pos);
    assert_eq!(out.trim(), "33 111", "{test}");
    s.resize(40, 120);
    std::thread::sleep(Duration::from_millis(300));
    let out = command(&s, "stty size", &mut pos);
    assert_eq!(
        out.trim(),
        "40 120",
        "{test}: the new size did not reach the sandbox"
    );

    // Ctrl-C interrupts the foreground job, not sbx.
    let start = pos;
    s.send("sleep 30\n");
    let echoed = s.screen.expect("sleep 30", start, T).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    s.send("\x03");
    pos = s
        .screen
        .expect(PROMPT, echoed, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{test}: Ctrl-C did not interrupt sleep: {e}"));
    assert!(s.alive(), "{test}: sbx died of Ctrl-C");
    let out = command(&s, "echo after $?", &mut pos);
    assert!(out.contains("after 130"), "{test}: {out:?}");
    assert!(sent.elapsed() < Duration::from_secs(5), "{test}");

    // Job control: Ctrl-Z stops the foreground job, `jobs` lists it.
    let start = pos;
    s.send("sleep 31\n");
    let echoed = s.screen.expect("sleep 31", start, T).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    s.send("\x1a");
    pos = s
        .screen
        .expect(PROMPT, echoed, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{test}: Ctrl-Z did not stop sleep: {e}"));
    let stopped = s.screen.text()[echoed..pos].to_string();
    assert!(stopped.contains("Stopped"), "{test}: {stopped:?}");
    let out = command(&s, "jobs", &mut pos);
    assert!(out.contains("sleep 31"), "{test}: {out:?}");
    // `fg` resumes it in the foreground, where Ctrl-C reaches it again.
    let start = pos;
    s.send("fg\n");
    let resumed = s.screen.expect("sleep 31", start + 2, T).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    s.send("\x03");
    pos = s
        .screen
        .expect(PROMPT, resumed, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{test}: Ctrl-C did not reach the resumed job: {e}"));
    let out = command(&s, "echo fg $?; jobs", &mut pos);
    assert!(out.contains("fg 130"), "{test}: {out:?}");
    assert!(!out.contains("sleep 31"), "{test}: {out:?}");
    assert!(s.alive(), "{test}");

    // `exit 7` ends sbx with 7, and the terminal is as it was.
    s.send("exit 7\n");
    let code = s.wait(T);
    assert_eq!(code, Some(7), "{test}: screen:\n{}", s.screen.text());
    let after = termios::tcgetattr(s.slave.as_fd()).unwrap();
    assert_eq!(
        before, after,
        "{test}: the terminal settings were not restored"
    );
    assert!(
        after
            .local_flags
            .contains(LocalFlags::ECHO | LocalFlags::ICANON)
    );
}

#[test]
fn shell_profile_sh_through_a_pty() {
    drive_shell(
        "shell_profile_sh_through_a_pty",
        &["--profile", "shell", "--", "sh"],
    );
}

#[test]
fn shell_profile_bash_through_a_pty() {
    if !usable("/bin/bash") {
        common::note_skip("shell_profile_bash_through_a_pty", "bash is not installed");
        return;
    }
    drive_shell(
        "shell_profile_bash_through_a_pty",
        &["--profile", "shell", "--", "bash", "--norc", "--noprofile"],
    );
}

// ---- the pty by default: `sbx -- sh` from a terminal ----

#[test]
fn default_profile_sh_from_a_terminal_gets_a_pty_and_job_control() {
    // The headline example: no --pty, no shell profile. Ctrl-C ends the foreground `sleep`
    // (not the shell, not sbx) and Ctrl-Z stops it, as in a terminal of one's own.
    drive_shell(
        "default_profile_sh_from_a_terminal_gets_a_pty_and_job_control",
        &["--setenv", "PS1=sbx-prompt$ ", "--", "sh"],
    );
}

/// `sbx ARGS -- sh -c SCRIPT` on a terminal that is its stdin, stdout and stderr; SCRIPT
/// prints `started`, then reads a line. Returns whether the terminal was raw (relayed through
/// a pty) while the command ran, and what it printed.
fn raw_while_running(args: &[&str], script: &str) -> (bool, String) {
    use nix::sys::termios::{self, LocalFlags};
    let mut all = args.to_vec();
    all.extend(["--", "sh", "-c", script]);
    let mut s = Session::start(&all, 24, 80);
    let started = s
        .screen
        .expect("started", 0, Duration::from_secs(30))
        .unwrap();
    let during = termios::tcgetattr(s.slave.as_fd()).unwrap();
    s.send("line\n");
    let code = s.wait(T);
    assert_eq!(code, Some(0), "{args:?}: screen:\n{}", s.screen.text());
    s.screen.expect("got-line", started, T).unwrap();
    let raw = !during.local_flags.contains(LocalFlags::ICANON);
    (raw, s.screen.text().replace('\r', ""))
}

#[test]
fn no_pty_and_process_pty_false_share_the_terminal() {
    let script = "[ -t 0 ] && [ -t 1 ] && echo both-terminals; echo started; read l; echo got-$l";
    // The default, for comparison: the terminal is relayed (raw), the command sees its own pty.
    let (raw, text) = raw_while_running(&[], &format!("tty; {script}"));
    assert!(raw, "no pty by default on a terminal: {text}");
    assert!(text.contains("/dev/pts/0\n"), "{text}");
    // --no-pty and `process.pty = false`: no relay, the terminal stays as it was (canonical).
    let w = Workdir::new();
    let profile = w.file(
        "nopty.toml",
        "extends = [\"default\"]\n[process]\npty = false\n",
    );
    let profile = profile.to_str().unwrap();
    for args in [&["--no-pty"][..], &["--profile", profile][..]] {
        let (raw, text) = raw_while_running(args, script);
        assert!(!raw, "{args:?}: relayed through a pty: {text}");
        assert!(text.contains("both-terminals"), "{args:?}: {text}");
    }
    // --pty overrides a profile's `pty = false`.
    let (raw, _) = raw_while_running(&["--profile", profile, "--pty"], script);
    assert!(raw, "--pty did not force the relay");
    // And the two flags together are one clear error.
    let r = common::sbx(["--pty", "--no-pty", "--", "true"]).run();
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("--no-pty"), "{r:?}");
}

#[test]
fn no_pty_by_default_when_stdin_or_stdout_is_not_a_terminal() {
    // stdin not a terminal (a pipe, CI): the command's stdio is what sbx was given.
    let r = common::sbx(["--", "sh", "-c", "tty; [ -t 1 ] || echo stdout-not-a-tty"]).run();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("not a tty"), "{r:?}");
    // stdin a terminal, stdout a pipe (`sbx -- ls | grep x`): no pty either, so the command
    // sees the pipe it writes to (no columns, no colours, no CRLF) and the terminal is left
    // in its modes.
    let pty = nix::pty::openpty(None, None).unwrap();
    let before = nix::sys::termios::tcgetattr(pty.slave.as_fd()).unwrap();
    let Sbx { mut cmd, work } = common::sbx([
        "--",
        "sh",
        "-c",
        "[ -t 0 ] && echo stdin-a-tty; [ -t 1 ] || echo stdout-not-a-tty",
    ]);
    cmd.stdin(pty.slave.try_clone().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let screen = PtyOutput::start(&pty.master);
    let child = cmd.spawn().expect("spawn sbx");
    drop(cmd);
    let r = Ran::from_output(child.wait_with_output().unwrap());
    assert_eq!(r.code, 0, "{r:?}; terminal: {}", screen.text());
    assert_eq!(r.stdout, "stdin-a-tty\nstdout-not-a-tty\n", "{r:?}");
    let after = nix::sys::termios::tcgetattr(pty.slave.as_fd()).unwrap();
    assert_eq!(before, after);
    drop(work);
}

#[test]
fn shell_profile_without_a_terminal_just_runs() {
    let mut s = common::sbx([
        "--profile",
        "shell",
        "--",
        "sh",
        "-c",
        "echo ok; tty || true",
    ]);
    s.cmd.stdin(Stdio::piped());
    let (mut child, _w) = s.spawn();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let r = Ran::from_output(out);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.lines().next(), Some("ok"), "{r:?}");
    assert!(r.stdout.contains("not a tty"), "{r:?}");
    // Stdin is passed through as it is.
    let mut s = common::sbx([
        "--profile",
        "shell",
        "--",
        "sh",
        "-c",
        "read l; echo got-$l",
    ]);
    s.cmd.stdin(Stdio::piped());
    let (mut child, _w) = s.spawn();
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let r = Ran::from_output(child.wait_with_output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "got-piped\n", "{r:?}");
}

#[test]
fn pty_flag_gives_any_profile_a_terminal() {
    let mut s = Session::start(
        &["--pty", "--", "sh", "-c", "tty; stty size; exit 3"],
        20,
        70,
    );
    let code = s.wait(T);
    assert_eq!(code, Some(3), "{}", s.screen.text());
    let pos = s.screen.expect("/dev/pts/0", 0, T).unwrap();
    s.screen.expect("20 70", pos, T).unwrap();
    let after = nix::sys::termios::tcgetattr(s.slave.as_fd()).unwrap();
    assert!(
        after
            .local_flags
            .contains(nix::sys::termios::LocalFlags::ECHO | nix::sys::termios::LocalFlags::ICANON),
        "the terminal stayed raw"
    );
}

#[test]
fn shell_profile_hangup_ends_the_session_and_restores_the_terminal() {
    // The terminal going away sends SIGHUP to sbx (the session leader); sbx passes it on, the
    // shell exits, and the terminal settings are put back on the way out.
    let mut s = Session::start(&["--profile", "shell", "--", "sh"], 24, 80);
    s.screen.expect(PROMPT, 0, Duration::from_secs(30)).unwrap();
    let pid = nix::unistd::Pid::from_raw(s.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let code = s.wait(T);
    assert_eq!(code, Some(128 + 1), "screen:\n{}", s.screen.text());
    let after = nix::sys::termios::tcgetattr(s.slave.as_fd()).unwrap();
    assert!(
        after.local_flags.contains(
            nix::sys::termios::LocalFlags::ECHO
                | nix::sys::termios::LocalFlags::ICANON
                | nix::sys::termios::LocalFlags::ISIG
        ),
        "the terminal stayed raw after SIGHUP: {:?}",
        after.local_flags
    );
}

#[test]
fn pty_relay_with_stdout_redirected() {
    // stdin is the terminal, stdout a pipe (`sbx --profile shell -- cmd | less`): the output
    // still arrives, on the pipe.
    let pty = nix::pty::openpty(None, None).unwrap();
    let before = nix::sys::termios::tcgetattr(pty.slave.as_fd()).unwrap();
    let Sbx { mut cmd, work } = common::sbx([
        "--profile",
        "shell",
        "--",
        "sh",
        "-c",
        "tty; echo piped-out",
    ]);
    cmd.stdin(pty.slave.try_clone().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let screen = PtyOutput::start(&pty.master);
    let child = cmd.spawn().expect("spawn sbx");
    drop(cmd);
    let r = Ran::from_output(child.wait_with_output().unwrap());
    assert_eq!(r.code, 0, "{r:?}; terminal: {}", screen.text());
    assert!(r.stdout.contains("piped-out"), "{r:?}");
    assert!(r.stdout.contains("/dev/pts/0"), "{r:?}");
    let after = nix::sys::termios::tcgetattr(pty.slave.as_fd()).unwrap();
    assert_eq!(before, after, "the terminal settings were not restored");
    drop(work);
}

// ---- without a pty: the command's changes to the caller's terminal do not outlive it ----

/// Runs `sbx --no-pty ARGS -- sh -c SCRIPT` on a pty that is the caller's controlling terminal: SCRIPT turns echo off (the attack: it shares the terminal) and prints `changed`;
/// the test checks that echo is off, then `end` ends the run. Once sbx has exited, the
/// terminal's modes are those it had before. Returns sbx's exit code.
fn modes_come_back(
    test: &str,
    args: &[&str],
    script: &str,
    stdin_tty: bool,
    end: impl FnOnce(&mut Session),
) -> Option<i32> {
    use nix::sys::termios::{self, LocalFlags};
    // Without a pty: the default on a terminal is one.
    let mut all = vec!["--no-pty"];
    all.extend_from_slice(args);
    all.extend(["--", "sh", "-c", script]);
    let mut s = Session::spawn(&all, 24, 80, stdin_tty);
    let before = termios::tcgetattr(s.slave.as_fd()).unwrap();
    assert!(before.local_flags.contains(LocalFlags::ECHO), "{test}");
    s.screen
        .expect("changed", 0, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    let during = termios::tcgetattr(s.slave.as_fd()).unwrap();
    assert!(
        !during.local_flags.contains(LocalFlags::ECHO),
        "{test}: the command could not turn echo off, so this test shows nothing"
    );
    end(&mut s);
    let code = s.wait(T);
    assert!(
        code.is_some(),
        "{test}: sbx did not exit; screen:\n{}",
        s.screen.text()
    );
    let after = termios::tcgetattr(s.slave.as_fd()).unwrap();
    assert_eq!(
        before,
        after,
        "{test}: the terminal's modes were not restored; screen:\n{}",
        s.screen.text()
    );
    code
}

fn signal(s: &Session, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(s.child.id() as i32);
    nix::sys::signal::kill(pid, sig).unwrap();
}

#[test]
fn terminal_modes_come_back_when_the_command_exits_or_is_killed() {
    let t = "terminal_modes_come_back_when_the_command_exits_or_is_killed";
    // The command exits (after reading a line, so the change can be seen first).
    let code = modes_come_back(
        t,
        &[],
        "stty -echo; echo changed; read l; exit 3",
        true,
        |s| s.send("go\n"),
    );
    assert_eq!(code, Some(3), "{t}");
    // The command is killed (here by itself, with SIGKILL: it cannot clean up).
    let code = modes_come_back(
        t,
        &[],
        "stty -echo -icanon; echo changed; read l; kill -KILL $$",
        true,
        |s| s.send("g\n"),
    );
    assert_eq!(code, Some(128 + 9), "{t}");
    // The wall-clock limit ends it.
    let code = modes_come_back(
        t,
        &["--timeout", "1s"],
        "stty -echo; echo changed; exec sleep 30",
        true,
        |_| {},
    );
    assert_eq!(code, Some(124), "{t}");
    // The terminal is only on stdout and stderr: the command reaches it all the same.
    let code = modes_come_back(
        t,
        &[],
        "stty -echo <&1; echo changed; exec sleep 30",
        false,
        |s| signal(s, nix::sys::signal::Signal::SIGTERM),
    );
    assert_eq!(code, Some(128 + 15), "{t}");
}

#[test]
fn terminal_modes_come_back_when_sbx_is_signalled() {
    use nix::sys::signal::Signal;
    let t = "terminal_modes_come_back_when_sbx_is_signalled";
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let code = modes_come_back(
            t,
            &[],
            "stty -echo; echo changed; exec sleep 30",
            true,
            |s| signal(s, sig),
        );
        assert_eq!(code, Some(128 + sig as i32), "{t}: {sig}");
    }
}
