//! sbx runs whoever runs it and wherever its output goes.
//!
//! 1. A uid with no passwd entry (Kubernetes `runAsUser`, OpenShift's random uids, `docker run
//!    -u 4242`) with HOME and USER unset: the run, `sbx doctor` and `sbx profile show` work,
//!    and the command sees HOME=/ and USER=<uid>. The statically linked glibc's NSS crashed
//!    there (SIGSEGV in libnss_systemd): traced, sbx opens no /etc/nsswitch.conf and loads no
//!    NSS module. Control: the same trace of `getent` shows the opens, so the check can tell.
//! 2. A uid with an entry and HOME and USER unset: the entry's home and name.
//! 3. Closed stdin, stdout or stderr, and stdout or stderr a pipe whose reader is gone: the
//!    command runs and sbx exits with the command's code (never SIGABRT), for a run, an
//!    error, `-v`, `--explain`, `doctor` and a report to stderr. A command that writes to the
//!    broken pipe dies of SIGPIPE as it does without sbx. A closed one is /dev/null in the
//!    command.

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{AsTestUid, Ran, Sbx, Workdir, key_values};

/// A uid that the host's /etc/passwd does not name.
const NO_ENTRY_UID: u32 = 4242;

fn passwd_entry(uid: u32) -> Option<(String, String)> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[2].parse() == Ok(uid)).then(|| (f[0].to_string(), f[5].to_string()))
    })
}

/// `sbx ARGS` with nothing in the environment but PATH, as `uid` (and gid), in a directory
/// that uid owns.
fn bare_identity(uid: u32, args: &[&str]) -> (Command, Workdir, PathBuf) {
    let work = Workdir::new();
    let dir = work.subdir("cwd");
    std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new(common::binary());
    cmd.args(args)
        .current_dir(&dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .uid(uid)
        .gid(uid);
    (cmd, work, dir)
}

fn output(mut cmd: Command) -> Ran {
    Ran::from_output(cmd.output().expect("spawn"))
}

/// Whether `program` opened /etc/nsswitch.conf or an NSS module, traced with strace as `uid`
/// in `dir`; None when strace cannot trace here.
fn opens_nss(uid: u32, dir: &Path, program: &Path, args: &[&str]) -> Option<Vec<String>> {
    let trace = dir.join(format!("trace-{}", common::unique_number()));
    let r = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=open,openat", "-o"])
        .arg(&trace)
        .arg(program)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .uid(uid)
        .gid(uid)
        .status()
        .ok()?;
    let text = std::fs::read_to_string(&trace).ok()?;
    if !r.success() && text.is_empty() {
        return None;
    }
    Some(
        text.lines()
            .filter(|l| l.contains("nsswitch.conf") || l.contains("libnss_"))
            .map(str::to_string)
            .collect(),
    )
}

#[test]
fn a_uid_without_passwd_entry_runs_with_home_and_user_unset() {
    let test = "a_uid_without_passwd_entry_runs_with_home_and_user_unset";
    if !common::is_root() {
        common::note_skip(
            test,
            "needs root to run sbx as a uid without a passwd entry",
        );
        return;
    }
    assert_eq!(passwd_entry(NO_ENTRY_UID), None, "the precondition");
    let script = "echo HOME=$HOME; echo USER=$USER; echo UID=$(id -u); echo PWD=$(pwd); \
                  echo ok > written; exit 3";
    let (cmd, _work, dir) = bare_identity(NO_ENTRY_UID, &["--", "sh", "-c", script]);
    let r = output(cmd);
    assert_eq!(r.code, 3, "{r:?}");
    let m = key_values(&r.stdout);
    assert_eq!(m["HOME"], "/", "{r:?}");
    assert_eq!(m["USER"], NO_ENTRY_UID.to_string(), "{r:?}");
    assert_eq!(m["UID"], NO_ENTRY_UID.to_string(), "{r:?}");
    assert_eq!(m["PWD"], dir.display().to_string(), "{r:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("written")).unwrap(),
        "ok\n"
    );
    for sub in [
        &["doctor"][..],
        &["profile", "show"],
        &["--explain", "--", "true"],
    ] {
        let (cmd, _work, _dir) = bare_identity(NO_ENTRY_UID, sub);
        let r = output(cmd);
        assert!(
            r.output.status.code().is_some() && r.code <= 1,
            "{sub:?}: {r:?}"
        );
        assert!(!r.stdout.is_empty(), "{sub:?}: {r:?}");
    }
}

#[test]
fn sbx_never_reads_nss() {
    let test = "sbx_never_reads_nss";
    if !common::is_root()
        || !Path::new("/etc/nsswitch.conf").exists()
        || !common::usable("/usr/bin/strace")
    {
        common::note_skip(test, "needs root, /etc/nsswitch.conf and strace");
        return;
    }
    let (_cmd, _work, dir) = bare_identity(NO_ENTRY_UID, &[]);
    // Control: a dynamically linked lookup of the same uid opens NSS, and the trace sees it.
    let getent = Path::new("/usr/bin/getent");
    match opens_nss(NO_ENTRY_UID, &dir, getent, &["passwd", "4242"]) {
        Some(opens) if !opens.is_empty() => {}
        Some(_) => panic!("the control: getent opened no NSS file, so the trace cannot tell"),
        None => {
            common::note_skip(test, "strace cannot trace here");
            return;
        }
    }
    let sbx = common::binary();
    for args in [
        &["--", "true"][..],
        &["doctor"],
        &["profile", "show"],
        &["--profile", "strict", "--", "true"],
    ] {
        let opens = opens_nss(NO_ENTRY_UID, &dir, sbx, args).expect("trace sbx");
        assert_eq!(opens, Vec::<String>::new(), "{args:?} read NSS");
    }
}

#[test]
fn a_uid_with_an_entry_and_no_home_or_user_gets_the_entry() {
    let uid = common::test_uid();
    let Some((name, home)) = passwd_entry(uid) else {
        common::note_skip(
            "a_uid_with_an_entry_and_no_home_or_user_gets_the_entry",
            "the test uid has no /etc/passwd entry",
        );
        return;
    };
    let mut s = common::sbx(["--", "sh", "-c", "echo HOME=$HOME; echo USER=$USER"]);
    s.cmd.env_remove("HOME").env_remove("USER");
    let r = s.run();
    assert_eq!(r.code, 0, "{r:?}");
    let m = key_values(&r.stdout);
    assert_eq!(m["HOME"], home, "{r:?}");
    assert_eq!(m["USER"], name, "{r:?}");
}

// ---- streams ----

/// How one of sbx's standard descriptors is set up.
#[derive(Clone, Copy, Debug)]
enum Stream {
    Closed,
    /// A pipe whose reading end is closed before sbx starts.
    Broken,
}

fn broken_pipe() -> OwnedFd {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    writer
}

/// Runs the configured `s` with descriptor `fd` (0, 1 or 2) set up as `how`; the others as
/// the harness has them (stdin /dev/null, stdout and stderr piped).
fn run_with(s: Sbx, fd: u32, how: Stream) -> (Ran, Workdir) {
    let Sbx { cmd, work } = s;
    let mut w = Command::new("/bin/sh");
    let close = match (fd, how) {
        (_, Stream::Closed) => format!(" {fd}>&-"),
        (_, Stream::Broken) => String::new(),
    };
    w.arg("-c")
        .arg(format!("exec \"$0\" \"$@\"{close}"))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear()
        .current_dir(cmd.get_current_dir().unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .as_test_uid();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            w.env(k, v);
        }
    }
    if let Stream::Broken = how {
        match fd {
            1 => w.stdout(broken_pipe()),
            2 => w.stderr(broken_pipe()),
            _ => panic!("a broken pipe on fd {fd}"),
        };
    }
    (Ran::from_output(w.output().expect("spawn")), work)
}

const CASES: [(u32, Stream); 5] = [
    (0, Stream::Closed),
    (1, Stream::Closed),
    (2, Stream::Closed),
    (1, Stream::Broken),
    (2, Stream::Broken),
];

#[test]
fn a_closed_or_broken_stream_never_stops_a_run() {
    for (fd, how) in CASES {
        for verbose in [false, true] {
            // -v makes sbx write a line per step, on the stream that may be gone.
            let mut args = vec!["--json-status", "-"];
            if verbose {
                args.push("-v");
            }
            args.extend(["--", "sh", "-c", "echo ran > ran.txt; exit 3"]);
            let (r, work) = run_with(common::sbx(args), fd, how);
            assert_eq!(r.code, 3, "fd {fd} {how:?} -v {verbose}: {r:?}");
            assert_eq!(
                std::fs::read_to_string(work.path().join("ran.txt")).unwrap(),
                "ran\n",
                "fd {fd} {how:?}: the command did not run"
            );
        }
    }
}

/// A standard descriptor closed when sbx starts is /dev/null in the command, as without a
/// sandbox under std's start-up: it is never left for sbx's next open (a profile, a mount) to
/// take, and never closed in the command. The shell's descriptor is read through `/proc/$$/fd`
/// from a command substitution, before any redirection of the shell's own.
#[test]
fn a_closed_standard_stream_is_dev_null_in_the_command() {
    for fd in 0..3 {
        let probe = format!("n=$(stat -L -c %t,%T /proc/$$/fd/{fd}); echo \"$n\" > seen.txt");
        let (r, work) = run_with(common::sbx(["--", "sh", "-c", &probe]), fd, Stream::Closed);
        assert_eq!(r.code, 0, "fd {fd}: {r:?}");
        let seen = std::fs::read_to_string(work.path().join("seen.txt")).unwrap();
        // /dev/null is the character device 1,3 (hexadecimal in stat's %t,%T).
        assert_eq!(seen.trim(), "1,3", "fd {fd} in the command");
    }
}

#[test]
fn sbx_output_to_a_closed_or_broken_stream_keeps_its_exit_code() {
    for (fd, how) in CASES {
        // An error before anything runs: its one line goes nowhere, the code stays 125.
        let (r, _w) = run_with(
            common::sbx(["--profile", "no-such-profile", "--", "true"]),
            fd,
            how,
        );
        assert_eq!(r.code, 125, "fd {fd} {how:?}: {r:?}");
        // What sbx prints on stdout.
        for args in [
            &["--explain", "--", "true"][..],
            &["profile", "show"],
            &["completions", "bash"],
            &["man"],
        ] {
            let (r, _w) = run_with(common::sbx(args), fd, how);
            assert_eq!(r.code, 0, "{args:?} fd {fd} {how:?}: {r:?}");
        }
        let (r, _w) = run_with(common::sbx(["doctor"]), fd, how);
        assert!(
            r.output.status.code().is_some() && r.code <= 1,
            "doctor fd {fd} {how:?}: {r:?}"
        );
    }
}

#[test]
fn a_command_writing_to_a_broken_pipe_ends_as_it_does_without_sbx() {
    let script = "echo out; echo after > after.txt; exit 3";
    // Without sbx, as the same uid: the shell dies of SIGPIPE at the echo, or goes on.
    let w = Workdir::new();
    let plain = Command::new("/bin/sh")
        .args(["-c", script])
        .current_dir(w.path())
        .stdin(Stdio::null())
        .stdout(broken_pipe())
        .as_test_uid()
        .status()
        .unwrap();
    let expected = common::exit_code(plain);
    let (r, work) = run_with(common::sbx(["--", "sh", "-c", script]), 1, Stream::Broken);
    assert_eq!(r.code, expected, "{r:?}");
    assert_eq!(
        work.path().join("after.txt").exists(),
        w.path().join("after.txt").exists()
    );
}

/// The proxy resolves names (a `getaddrinfo` in the static binary) without loading any of the
/// host's NSS modules: glibc is kept to its built-in "files" and "dns". Run in a private mount
/// namespace whose /etc/nsswitch.conf names modules first (as on a systemd host), so that a
/// lookup through NSS would load them: the control, getent, does. The trace must also show the
/// lookup itself (sbx reading /etc/hosts for `localhost`), or it cannot tell.
#[test]
fn the_proxy_resolves_names_without_nss_modules() {
    let test = "the_proxy_resolves_names_without_nss_modules";
    let module = Path::new("/lib/x86_64-linux-gnu/libnss_systemd.so.2");
    if !common::is_root()
        || !common::usable("/usr/bin/strace")
        || !common::usable("/usr/bin/curl")
        || !common::usable("/usr/bin/unshare")
        || !module.exists()
    {
        common::note_skip(test, "needs root, strace, curl, unshare and libnss_systemd");
        return;
    }
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in server.incoming().flatten() {
            use std::io::Write;
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
        }
    });
    let uid = common::test_uid();
    let (_cmd, work, dir) = bare_identity(uid, &[]);
    let conf = work.path().join("nsswitch.conf");
    std::fs::write(
        &conf,
        "passwd: files systemd\nhosts: mymachines systemd files dns\n",
    )
    .unwrap();
    let traced = |trace: &Path, program: &[&str]| -> Ran {
        let script = r#"mount --bind "$1" /etc/nsswitch.conf && shift && exec "$@""#;
        let out = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(&conf)
            .args([
                "strace",
                "-f",
                "-qq",
                "-e",
                "trace=open,openat,execve",
                "-o",
            ])
            .arg(trace)
            .args([
                "setpriv",
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
            ])
            .args(["--clear-groups", "env", "-i", "PATH=/usr/bin:/bin"])
            .arg(format!("HOME={}", work.path().display()))
            .args(program)
            .current_dir(&dir)
            .output()
            .unwrap();
        Ran::from_output(out)
    };
    let modules = |text: &str, skip: &[String]| -> Vec<String> {
        text.lines()
            .filter(|l| !skip.iter().any(|p| l.starts_with(&format!("{p} "))))
            .filter(|l| l.contains("libnss_"))
            .map(str::to_string)
            .collect()
    };
    // Control: a dynamically linked lookup of `localhost` here loads a module.
    let control = dir.join("control");
    let r = traced(&control, &["getent", "hosts", "localhost"]);
    assert_eq!(r.code, 0, "control: {r:?}");
    let text = std::fs::read_to_string(&control).unwrap();
    assert!(
        !modules(&text, &[]).is_empty(),
        "the control loaded no NSS module, so the test cannot tell:\n{text}"
    );
    let trace = dir.join("trace");
    let sbx = common::binary().display().to_string();
    let allow = format!("localhost:{port}");
    let url = format!("http://localhost:{port}/");
    let r = traced(
        &trace,
        &[
            &sbx, "--net", "proxy", "--allow", &allow, "--", "curl", "-sS", &url,
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "ok\n", "{r:?}");
    let text = std::fs::read_to_string(&trace).unwrap();
    // setpriv, env and the command's curl are dynamically linked and use NSS as they like: only
    // the processes of sbx itself count.
    let sbx_start = text
        .lines()
        .position(|l| l.contains(&format!("execve(\"{sbx}\"")))
        .expect("sbx in the trace");
    let others: Vec<String> = text
        .lines()
        .filter(|l| l.contains("execve(\"/usr/bin/curl\"") || l.contains("execve(\"/usr/bin/sh\""))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    let after: String = text.lines().skip(sbx_start).collect::<Vec<_>>().join("\n");
    let sbx_lines: Vec<&str> = after
        .lines()
        .filter(|l| !others.iter().any(|p| l.starts_with(&format!("{p} "))))
        .collect();
    assert!(
        sbx_lines.iter().any(|l| l.contains("\"/etc/hosts\"")),
        "the trace shows no lookup by sbx, so it cannot tell:\n{text}"
    );
    assert_eq!(
        modules(&after, &others),
        Vec::<String>::new(),
        "sbx loaded NSS modules"
    );
}
