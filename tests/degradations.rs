//! Quiet by default, degradations named (#13): a run prints nothing of its own on success; a
//! fallback the user did not ask for (the default profile's best-effort cgroup, a built-in
//! limit lowered to the hard limit sbx inherited, a landlock part the profile runs without)
//! is named once with -v and in the run report's `degradations`; a limit the user set that
//! cannot be enforced as asked is one warning; a 125 error is the only thing printed.
//!
//! A kernel without landlock (before 5.13, or without landlock in `lsm=`) is reproduced with a
//! seccomp filter that answers landlock's system calls with ENOSYS, as such a kernel does; the
//! real kernels (5.10, 6.1, 6.12) are in tests/kernels.

mod common;

use std::io;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use serde_json::Value;

use common::{Ran, Workdir, run_within};

const HANG: Duration = Duration::from_secs(60);
const REPORT: &str = "status.json";

/// `sbx OPTS... -- COMMAND...` with the report option first (options go before the `--`).
fn sbx(opts: &[&str], command: &[&str]) -> common::Sbx {
    let mut all = vec!["--json-status", REPORT];
    all.extend(opts);
    all.push("--");
    all.extend(command);
    common::sbx(all)
}

/// Runs an invocation built with [`sbx`] to the end; its report.
fn finish(s: common::Sbx) -> (Ran, Value, Workdir) {
    let (r, work) = run_within(s, HANG);
    let report = common::read_report(&work.path().join(REPORT), &r);
    (r, report, work)
}

fn run(opts: &[&str], command: &[&str]) -> (Ran, Value, Workdir) {
    finish(sbx(opts, command))
}

fn degradations(report: &Value) -> Vec<String> {
    report["degradations"]
        .as_array()
        .unwrap_or_else(|| panic!("no degradations array: {report}"))
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

/// The degradations that contain `needle`.
fn named(report: &Value, needle: &str) -> Vec<String> {
    degradations(report)
        .into_iter()
        .filter(|d| d.contains(needle))
        .collect()
}

/// The lines sbx's logger printed at WARN.
fn warnings(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(" WARN ")).collect()
}

/// stderr holds one sbx error and nothing else but its hint lines: no WARN or INFO line
/// before or after it.
fn only_the_error(r: &Ran) {
    assert_eq!(r.code, 125, "{r:?}");
    assert_eq!(common::error_lines(&r.stderr).len(), 1, "{r:?}");
    assert!(r.stderr.starts_with("sbx: "), "{r:?}");
    for l in r.stderr.lines().skip(1) {
        assert!(
            l.starts_with("  hint: "),
            "a line besides the error: {l:?}; {r:?}"
        );
    }
}

/// Whether the runner's uid could own its cgroup (then the cgroup fallback may not happen).
fn cgroup_fallback_applies(report: &Value) -> bool {
    report["cgroup"].is_null() && !named(report, "cgroup v2").is_empty()
}

/// Lowers the hard RLIMIT_NOFILE sbx inherits to `n` (as a CI runner or a container may).
fn with_hard_nofile(s: &mut common::Sbx, n: u64) {
    // SAFETY: setrlimit(2) is async-signal-safe; the closure allocates nothing.
    unsafe {
        s.cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs sbx as on a kernel without landlock: its three system calls fail with ENOSYS.
fn without_landlock(s: &mut common::Sbx) {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
    let calls = [
        libc::SYS_landlock_create_ruleset,
        libc::SYS_landlock_add_rule,
        libc::SYS_landlock_restrict_self,
    ];
    let filter: BpfProgram = SeccompFilter::new(
        calls.into_iter().map(|nr| (nr, vec![])).collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        std::env::consts::ARCH
            .try_into()
            .expect("a seccomp architecture"),
    )
    .and_then(TryInto::try_into)
    .expect("compile the filter");
    // SAFETY: apply_filter makes two system calls (prctl, seccomp) on the compiled program,
    // which the closure owns; it allocates nothing.
    unsafe {
        s.cmd.pre_exec(move || {
            seccompiler::apply_filter(&filter).map_err(|e| io::Error::other(e.to_string()))
        });
    }
}

// ---- quiet by default ----

#[test]
fn a_successful_run_prints_nothing_of_its_own() {
    let (r, report, _w) = run(&[], &["sh", "-c", "echo ran"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "ran\n"), "{r:?}");
    assert_eq!(r.stderr, "", "{r:?}");
    if !cgroup_fallback_applies(&report) {
        common::note_skip(
            "a_successful_run_prints_nothing_of_its_own",
            "this host delegates a cgroup, so the cgroup fallback was not exercised",
        );
    }
    // Every built-in profile, the same (pty: stdin is not a terminal).
    let list = common::sbx(["profile", "list"]).run();
    let names: Vec<&str> = list
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.contains(&"net-on") && names.len() >= 10, "{list:?}");
    for name in names {
        let (r, _, _w) = run(&["--profile", name], &["true"]);
        assert_eq!(
            (r.code, r.stderr.as_str()),
            (0, ""),
            "profile {name}: {r:?}"
        );
    }
}

/// The cgroup fallback is named once with -v and in the report; without -v it is silent.
#[test]
fn the_cgroup_fallback_is_named_with_v_and_in_the_report() {
    let (r, report, _w) = run(&["-v"], &["true"]);
    assert_eq!(r.code, 0, "{r:?}");
    if !cgroup_fallback_applies(&report) {
        common::note_skip(
            "the_cgroup_fallback_is_named_with_v_and_in_the_report",
            "this host delegates a cgroup to the test uid",
        );
        return;
    }
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("cgroup v2"))
        .collect();
    assert_eq!(lines.len(), 1, "{r:?}");
    assert!(
        lines[0].contains("INFO degraded:") && lines[0].contains("watchdog"),
        "{r:?}"
    );
    assert!(warnings(&r.stderr).is_empty(), "{r:?}");
    assert_eq!(named(&report, "cgroup v2").len(), 1, "{report}");
}

/// A built-in limit above the hard limit sbx inherited is lowered quietly; the same value set
/// by the user (command line or a profile file of theirs) is one warning.
#[test]
fn a_lowered_limit_warns_only_when_the_user_set_it() {
    // The default profile's open_files = 4096, under a hard limit of 1000.
    let mut s = sbx(&[], &["sh", "-c", "ulimit -n"]);
    with_hard_nofile(&mut s, 1000);
    let (r, report, _w) = finish(s);
    assert_eq!((r.code, r.stdout.as_str()), (0, "1000\n"), "{r:?}");
    assert_eq!(r.stderr, "", "{r:?}");
    let notes = named(&report, "limits.open_files");
    assert_eq!(notes.len(), 1, "{report}");
    assert!(
        notes[0].contains("4096") && notes[0].contains("1000"),
        "{notes:?}"
    );

    // The user's own value: one warning, and the report names it too.
    let mut s = sbx(&["--limit", "open_files=2000"], &["sh", "-c", "ulimit -n"]);
    with_hard_nofile(&mut s, 1000);
    let (r, report, _w) = finish(s);
    assert_eq!((r.code, r.stdout.as_str()), (0, "1000\n"), "{r:?}");
    let warned = warnings(&r.stderr);
    assert_eq!(warned.len(), 1, "{r:?}");
    assert!(warned[0].contains("limits.open_files = 2000"), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert_eq!(named(&report, "limits.open_files").len(), 1, "{report}");

    // Set in a profile file of the user's, over the default: the same.
    let mine = common::profile("extends = [\"default\"]\n[limits]\nopen_files = 2000\n");
    let mut s = sbx(&["--profile", &mine.path], &["true"]);
    with_hard_nofile(&mut s, 1000);
    let (r, _, _w) = finish(s);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(warnings(&r.stderr).len(), 1, "{r:?}");

    // Control: under a hard limit above the value nothing is lowered, nothing is named.
    let (r, report, _w) = run(&["--limit", "open_files=2000"], &["sh", "-c", "ulimit -n"]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "2000\n", ""),
        "{r:?}"
    );
    assert!(named(&report, "limits.open_files").is_empty(), "{report}");
}

/// Without a delegated cgroup, sbx's watchdog holds `--memory` for the whole sandbox, which is
/// what README documents for that option: enforced as asked, so no warning (tests/limits.rs
/// shows the watchdog ending a sandbox over it). `cpus` has nothing to hold it: a user's
/// `cpus` is one warning.
#[test]
fn an_unenforceable_user_limit_is_one_warning() {
    let (r, report, _w) = run(&["--memory", "512M"], &["true"]);
    assert_eq!(r.code, 0, "{r:?}");
    if !cgroup_fallback_applies(&report) {
        common::note_skip(
            "an_unenforceable_user_limit_is_one_warning",
            "this host delegates a cgroup to the test uid",
        );
        return;
    }
    assert_eq!(r.stderr, "", "{r:?}");
    let memory: Vec<&Value> = report["limits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["name"] == "memory" && l["via"] == "watchdog")
        .collect();
    assert_eq!(memory.len(), 1, "the watchdog holds --memory: {report}");
    assert_eq!(memory[0]["value"], 512u64 << 20, "{report}");

    let (r, report, _w) = run(&["--limit", "cpus=1"], &["true"]);
    assert_eq!(r.code, 0, "{r:?}");
    let warned = warnings(&r.stderr);
    assert_eq!(warned.len(), 1, "{r:?}");
    assert!(warned[0].contains("limits.cpus is not enforced"), "{r:?}");
    assert_eq!(
        named(&report, "limits.cpus is not enforced").len(),
        1,
        "{report}"
    );
}

// ---- 125: the error alone ----

#[test]
fn a_setup_failure_is_the_only_thing_printed() {
    // Fails inside the sandbox, after the plan's and the cgroup's fallbacks were decided.
    let (r, report, work) = run(&["--chdir", "/no/such/dir"], &["touch", "ran"]);
    only_the_error(&r);
    assert!(r.stderr.contains("chdir"), "{r:?}");
    assert!(!work.path().join("ran").exists(), "the command ran: {r:?}");
    assert_eq!(report["reason"], "setup_failed", "{report}");
    // Fails in the plan.
    let (r, _, _w) = run(&["--limit", "processes=0"], &["true"]);
    only_the_error(&r);
    // Fails at the cgroup (none is delegated here).
    let (r, report, _w) = run(&["--limit", "cgroup=required"], &["true"]);
    if report["cgroup"].is_null() {
        only_the_error(&r);
    }
}

// ---- a kernel without landlock ----

/// The filter really takes landlock away (the host has it), and the default profile refuses
/// with one line naming the kernel needed and the switch.
#[test]
fn without_landlock_the_default_refuses_in_one_line_naming_the_switch() {
    let (r, report, _w) = run(&[], &["true"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(report["landlock"]["enforced"], "full", "{report}");
    assert!(report["landlock"]["abi"].as_i64().unwrap() >= 6, "{report}");

    let mut s = sbx(&[], &["touch", "ran"]);
    without_landlock(&mut s);
    let (r, report, work) = finish(s);
    only_the_error(&r);
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    for needle in ["landlock", "Linux 5.13", "--landlock best-effort"] {
        assert!(r.stderr.contains(needle), "{needle:?} missing: {r:?}");
    }
    assert!(!work.path().join("ran").exists(), "the command ran: {r:?}");
    assert_eq!(report["reason"], "setup_failed", "{report}");
}

/// `--landlock best-effort` runs there, quietly, and names what is lost; what the message says
/// still holds (read-only binds) holds, and what it says is lost (abstract sockets with the
/// host's network) is.
#[test]
fn without_landlock_best_effort_runs_and_names_what_is_lost() {
    let w = Workdir::new();
    let data = w.subdir("data");
    let write = "echo x > /data/f && echo wrote; echo x > ok";
    let mut s = sbx(
        &[
            "--landlock",
            "best-effort",
            "--ro-bind",
            &format!("{}:/data", data.display()),
        ],
        &["sh", "-c", write],
    );
    without_landlock(&mut s);
    let (r, report, work) = finish(s);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{r:?}");
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    assert!(
        !data.join("f").exists(),
        "the read-only bind let a write through: {r:?}"
    );
    assert!(work.path().join("ok").exists(), "{r:?}");
    // Control: a writable bind of the same directory takes the write.
    let mut s = sbx(
        &[
            "--landlock",
            "best-effort",
            "--bind",
            &format!("{}:/data", data.display()),
        ],
        &["sh", "-c", write],
    );
    without_landlock(&mut s);
    let (c, _, _w) = finish(s);
    assert_eq!((c.code, c.stdout.as_str()), (0, "wrote\n"), "{c:?}");
    assert!(data.join("f").exists(), "{c:?}");
    assert_eq!(report["landlock"]["mode"], "best-effort", "{report}");
    assert_eq!(report["landlock"]["abi"], 0, "{report}");
    assert_eq!(report["landlock"]["enforced"], "not_applied", "{report}");
    assert_eq!(named(&report, "landlock: not applied").len(), 1, "{report}");
    assert!(named(&report, "Linux 5.13").len() == 1, "{report}");

    // Quiet by default; -v names it once.
    let mut s = sbx(&["--landlock", "best-effort", "-v"], &["true"]);
    without_landlock(&mut s);
    let (r, _, _w) = finish(s);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("landlock: not applied"))
        .collect();
    assert_eq!(lines.len(), 1, "{r:?}");
    assert!(lines[0].contains("INFO degraded:"), "{r:?}");
    assert!(warnings(&r.stderr).is_empty(), "{r:?}");

    // With the host's network the host's abstract sockets are reachable, as named.
    if !common::usable("/usr/bin/python3") {
        common::note_skip(
            "without_landlock_best_effort_runs_and_names_what_is_lost",
            "no python3 for the abstract-socket part",
        );
        return;
    }
    let name = common::unique_name("abstract");
    let listener = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&addr).unwrap()
    };
    listener.set_nonblocking(true).unwrap();
    let connect = format!(
        "import socket; s = socket.socket(socket.AF_UNIX); s.connect('\\0{name}'); print('ok')"
    );
    let mut s = sbx(
        &["--landlock", "best-effort", "--net", "host"],
        &["python3", "-c", &connect],
    );
    without_landlock(&mut s);
    let (r, report, _w) = finish(s);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "ok\n", ""),
        "{r:?}"
    );
    assert!(
        listener.accept().is_ok(),
        "the connection never arrived: {r:?}"
    );
    assert_eq!(named(&report, "abstract unix sockets").len(), 1, "{report}");
}

/// `--landlock` is `security.landlock`: off is off, and a bad value is one clear error.
#[test]
fn the_landlock_switch_sets_security_landlock() {
    let (r, report, _w) = run(&["--landlock", "off"], &["true"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{r:?}");
    assert_eq!(report["landlock"]["mode"], "off", "{report}");
    assert_eq!(report["landlock"]["enforced"], "not_applied", "{report}");
    assert!(
        named(&report, "landlock").is_empty(),
        "off is not a degradation: {report}"
    );
    let r = common::sbx(["--landlock", "sometimes", "--", "true"]).run();
    assert_eq!(r.code, 125, "{r:?}");
    assert_eq!(common::error_lines(&r.stderr).len(), 1, "{r:?}");
    assert!(
        r.stderr.contains("best-effort"),
        "the values are listed: {r:?}"
    );
}
