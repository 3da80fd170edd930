//! Resource limits, the wall-clock timeout and the JSON run report, with real workloads run
//! by the unprivileged test uid: fork bombs, memory hogs, oversized files, full tmpfs mounts,
//! commands that ignore SIGTERM and hide in new sessions; bad limit values; the cgroup
//! fallback.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{
    AsTestUid, Ran, Running, Workdir, host_processes_with, line_reader, next_line, run_timed,
    run_within, survivors_with, unique_name, unique_number,
};

/// The report's file name, relative to the work directory (sbx runs there).
const REPORT: &str = "status.json";

/// How long a run may take before it counts as a hang (and fails the test).
const HANG: Duration = Duration::from_secs(60);

/// A unique `sleep` duration of `whole` seconds and a fraction, so the sleeps themselves are
/// recognisable on the host.
fn unique_duration(whole: u32) -> String {
    format!("{whole}.{}", unique_number())
}

/// `sbx --json-status status.json ARGS...`.
fn sbx_report<'a>(args: impl IntoIterator<Item = &'a str>) -> common::Sbx {
    let mut all = vec!["--json-status", REPORT];
    all.extend(args);
    common::sbx(all)
}

fn read_report(work: &Workdir, r: &Ran) -> Value {
    common::read_report(&work.path().join(REPORT), r)
}

/// The report's `limits` entries named `name`, as (value, via).
fn limit_entries(report: &Value, name: &str) -> Vec<(u64, String)> {
    report["limits"]
        .as_array()
        .unwrap_or_else(|| panic!("limits is not an array: {report}"))
        .iter()
        .filter(|l| l["name"] == name)
        .map(|l| {
            (
                l["value"].as_u64().unwrap_or_else(|| panic!("{l}")),
                l["via"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{l}"))
                    .to_string(),
            )
        })
        .collect()
}

/// Fails if a process with one of `needles` in its command line is still on the host shortly
/// after sbx returned (the kernel tears a PID namespace down while its init exits, so half a
/// second is generous).
fn assert_none_survive(needles: &[&str], r: &Ran) {
    let left = survivors_with(needles, Duration::from_millis(500));
    assert!(
        left.is_empty(),
        "processes of the sandbox survived on the host: {left:?}; {r:?}"
    );
}

/// The host can still start a process as the test uid.
fn assert_host_can_fork() {
    let st = std::process::Command::new("/bin/true")
        .as_test_uid()
        .status()
        .expect("the host cannot start a process");
    assert!(st.success(), "{st:?}");
}

// ---- processes ----

#[test]
fn fork_bomb_is_contained_and_leaves_nothing() {
    let m = unique_name("bomb");
    let s = common::sbx([
        "--limit",
        "processes=64",
        "--limit",
        "kill_grace=1s",
        "--timeout",
        "10s",
        "--",
        "sh",
        "-c",
        "b() { b & b & }; b; sleep 1",
        &m,
    ]);
    let (r, took, _work) = run_timed(s, Duration::from_secs(30));
    assert!(
        took < Duration::from_secs(10),
        "sbx returned only after {took:?} (the 10s timeout): {r:?}"
    );
    assert!(
        r.stderr.contains("Cannot fork"),
        "the bomb never hit the process limit: {r:?}"
    );
    assert_host_can_fork();
    assert_none_survive(&[&m], &r);
}

#[test]
fn process_limit_stops_a_loop_of_background_jobs() {
    let m = unique_name("nproc");
    let s = common::sbx([
        "--limit",
        "processes=20",
        "--timeout",
        "10s",
        "--",
        "sh",
        "-c",
        "for i in $(seq 100); do sleep 5 & done; wait; echo all-started",
        &m,
    ]);
    let (r, took, _work) = run_timed(s, Duration::from_secs(30));
    assert_ne!(r.code, 0, "{r:?}");
    assert_ne!(r.code, 124, "it should fail, not time out: {r:?}");
    assert!(r.stderr.contains("Cannot fork"), "{r:?}");
    assert!(!r.stdout.contains("all-started"), "{r:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {r:?}");
    assert_none_survive(&[&m], &r);
}

/// Starts `sbx --limit processes=30` running 20 background sleeps; it prints how many it
/// started, then holds them until its stdin closes.
fn spawn_holder(duration: &str, tag: &str) -> (std::process::Child, Workdir) {
    let script = format!(
        "n=0; for i in $(seq 20); do sleep {duration} & n=$((n+1)); done; echo $n; read x; echo done"
    );
    let mut s = common::sbx([
        "--limit",
        "processes=30",
        "--timeout",
        "20s",
        "--",
        "sh",
        "-c",
        &script,
        tag,
    ]);
    s.cmd.stdin(Stdio::piped());
    s.spawn()
}

#[test]
fn each_sandbox_has_its_own_process_budget() {
    let dur = unique_duration(60);
    let m = unique_name("budget");
    let (a, _wa) = spawn_holder(&dur, &m);
    let mut a = Running::new(a);
    let rx_a = line_reader(a.stdout.take().unwrap());
    let line_a = next_line(&rx_a, Duration::from_secs(10));
    assert_eq!(line_a.trim(), "20", "first sandbox");
    // The first sandbox holds its 20 sleeps while the second starts its own.
    let (b, _wb) = spawn_holder(&dur, &m);
    let mut b = Running::new(b);
    let rx_b = line_reader(b.stdout.take().unwrap());
    let line_b = next_line(&rx_b, Duration::from_secs(10));
    assert_eq!(line_b.trim(), "20", "second sandbox");

    // Both run as the same host uid, and together hold more than one budget's worth. (The
    // last child forked may not have exec'd sleep yet when the count is printed.)
    let own_sleeps = || -> Vec<(i32, String)> {
        host_processes_with(&[&dur])
            .into_iter()
            .filter(|(pid, cmd)| {
                cmd == &format!("sleep {dur}")
                    && std::fs::metadata(format!("/proc/{pid}"))
                        .map(|m| m.uid())
                        .ok()
                        == Some(common::test_uid())
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut sleeps = own_sleeps();
    while sleeps.len() < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        sleeps = own_sleeps();
    }
    assert_eq!(sleeps.len(), 40, "{sleeps:?}");

    for run in [&mut a, &mut b] {
        drop(run.stdin.take());
    }
    let mut last = None;
    for (name, run) in [("first", a), ("second", b)] {
        let out = run.into_child().wait_with_output().unwrap();
        let r = Ran::from_output(out);
        assert_eq!(r.code, 0, "{name}: {r:?}");
        assert!(!r.stderr.contains("Cannot fork"), "{name}: {r:?}");
        last = Some(r);
    }
    assert_none_survive(&[&dur, &m], &last.unwrap());
}

// ---- memory, files, tmpfs ----

#[test]
fn memory_limit_stops_a_large_allocation() {
    let (r, work) = run_within(
        sbx_report([
            "--memory",
            "100M",
            "--",
            "python3",
            "-c",
            "bytearray(200*1024*1024)",
        ]),
        HANG,
    );
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("MemoryError"), "{r:?}");
    let rep = read_report(&work, &r);
    let mem = limit_entries(&rep, "memory");
    assert!(
        mem.contains(&(104857600, "rlimit".into())),
        "no memory rlimit of 100M in {mem:?}: {rep}"
    );
    if rep["cgroup"].is_null() {
        // Without a cgroup, sbx's watchdog holds the limit for the sandbox as a whole.
        assert!(
            !mem.iter().any(|(_, via)| via == "cgroup"),
            "a cgroup limit without a cgroup: {rep}"
        );
        assert!(mem.contains(&(104857600, "watchdog".into())), "{rep}");
    } else {
        assert!(mem.contains(&(104857600, "cgroup".into())), "{rep}");
    }
}

#[test]
fn memory_limit_allows_a_smaller_allocation() {
    let r = common::sbx([
        "--memory",
        "100M",
        "--",
        "python3",
        "-c",
        "b = bytearray(50*1024*1024); b[-1] = 1; print(len(b))",
    ])
    .run();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim(), "52428800", "{r:?}");
}

#[test]
fn file_size_limit_signals_the_writer() {
    // `exec`: the writer is the command itself, so its death by SIGXFSZ is the command's
    // (a shell that forks the writer would exit 153 normally instead).
    let (r, work) = run_within(
        sbx_report([
            "--limit",
            "file_size=1M",
            "--",
            "sh",
            "-c",
            "exec head -c 2000000 /dev/zero > f",
        ]),
        HANG,
    );
    assert_eq!(r.code, 153, "128 + SIGXFSZ: {r:?}");
    let size = std::fs::metadata(work.path().join("f")).unwrap().len();
    assert_eq!(size, 1048576, "{r:?}");
    let rep = read_report(&work, &r);
    assert_eq!(rep["reason"], "signaled", "{rep}");
    assert_eq!(rep["signal"], 25, "{rep}");
    assert_eq!(rep["exit_code"], 153, "{rep}");
    assert!(
        limit_entries(&rep, "file_size").contains(&(1048576, "rlimit".into())),
        "{rep}"
    );
}

#[test]
fn tmpfs_size_limits_every_writable_tmpfs() {
    // The budget is shared by every writable tmpfs (see tmpfs_budget_is_one_for_the_sandbox),
    // so each directory gives its space back before the next is tried.
    let script = r#"
        for d in /tmp "$HOME" /dev/shm; do
            head -c 500000 /dev/zero > "$d/small" && echo "$d small ok"
            head -c 2000000 /dev/zero > "$d/big" || echo "$d big failed"
            rm -f "$d/small" "$d/big"
        done
    "#;
    let s = sbx_report(["--limit", "tmpfs_size=1M", "--", "sh", "-c", script]);
    let home = s.work.path().join("home");
    let (r, work) = run_within(s, HANG);
    assert_eq!(r.code, 0, "{r:?}");
    let h = home.display().to_string();
    let want = [
        "/tmp small ok".to_string(),
        "/tmp big failed".into(),
        format!("{h} small ok"),
        format!("{h} big failed"),
        "/dev/shm small ok".into(),
        "/dev/shm big failed".into(),
    ];
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), want, "{r:?}");
    assert_eq!(
        r.stderr.matches("No space left on device").count(),
        3,
        "{r:?}"
    );
    // $HOME inside is a tmpfs: nothing reached the host's directory.
    assert!(std::fs::read_dir(&home).unwrap().next().is_none(), "{r:?}");
    let rep = read_report(&work, &r);
    assert!(
        limit_entries(&rep, "tmpfs_size").contains(&(1048576, "tmpfs".into())),
        "{rep}"
    );
}

// ---- wall clock ----

#[test]
fn timeout_stops_the_command_with_124() {
    let (r, took, work) = run_timed(
        sbx_report(["--timeout", "1s", "--", "sleep", "100"]),
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 124, "{r:?}");
    assert!(took >= Duration::from_secs(1), "fired early: {took:?}");
    assert!(took < Duration::from_secs(8), "took {took:?}: {r:?}");
    let rep = read_report(&work, &r);
    assert_eq!(rep["reason"], "timeout", "{rep}");
    assert_eq!(rep["exit_code"], 124, "{rep}");
    assert_eq!(rep["signal"], 15, "sleep died of the SIGTERM: {rep}");
    assert!(
        limit_entries(&rep, "wall_time").contains(&(1, "supervisor".into())),
        "{rep}"
    );
    let wall = rep["wall_time_s"].as_f64().unwrap();
    assert!((1.0..8.0).contains(&wall), "{rep}");
}

#[test]
fn timeout_kills_term_ignoring_setsid_children() {
    assert!(
        std::path::Path::new("/usr/bin/setsid").exists(),
        "setsid (util-linux) is needed"
    );
    let m = unique_name("hide");
    let dur = unique_duration(1000);
    let script =
        format!(r#"trap "" TERM; setsid sh -c 'trap "" TERM; sleep {dur}; : {m}' & sleep {dur}"#);
    let (r, took, work) = run_timed(
        sbx_report([
            "--timeout",
            "1s",
            "--limit",
            "kill_grace=1s",
            "--",
            "sh",
            "-c",
            &script,
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 124, "{r:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {r:?}");
    let rep = read_report(&work, &r);
    assert_eq!(rep["reason"], "timeout", "{rep}");
    assert_eq!(rep["exit_code"], 124, "{rep}");
    assert_eq!(rep["signal"], 9, "ended by the SIGKILL: {rep}");
    assert_none_survive(&[&m, &dur], &r);
}

#[test]
fn wall_time_from_a_profile_file() {
    let mut s = sbx_report([]);
    let profile = s.work.file(
        "wall.toml",
        "extends = [\"default\"]\n\n[limits]\nwall_time = \"1s\"\nkill_grace = \"1s\"\n",
    );
    let profile = profile.display().to_string();
    s.cmd.args(["--profile", &profile, "--", "sleep", "100"]);
    let (r, took, work) = run_timed(s, Duration::from_secs(30));
    assert_eq!(r.code, 124, "{r:?}");
    assert!(took < Duration::from_secs(8), "took {took:?}: {r:?}");
    let rep = read_report(&work, &r);
    assert_eq!(rep["reason"], "timeout", "{rep}");
    assert_eq!(rep["profiles"], serde_json::json!([profile]), "{rep}");
}

// ---- the run report ----

#[test]
fn report_of_a_normal_run() {
    let (r, work) = run_within(sbx_report(["--", "sh", "-c", "echo hi"]), HANG);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "hi\n", "{r:?}");
    let text = std::fs::read_to_string(work.path().join(REPORT)).unwrap();
    assert!(text.ends_with('\n'), "{text:?}");
    let rep = read_report(&work, &r);
    assert_eq!(rep["schema"], 1, "{rep}");
    assert!(rep["sbx_version"].is_string(), "{rep}");
    assert_eq!(rep["command"], serde_json::json!(["sh", "-c", "echo hi"]));
    assert_eq!(rep["profiles"], serde_json::json!(["default"]));
    assert_eq!(rep["exit_code"], 0, "{rep}");
    assert_eq!(rep["reason"], "exited", "{rep}");
    assert!(rep["signal"].is_null(), "{rep}");
    assert!(rep["setup_error"].is_null(), "{rep}");
    assert!(rep["wall_time_s"].as_f64().unwrap() > 0.0, "{rep}");
    assert!(rep["user_cpu_s"].as_f64().is_some(), "{rep}");
    assert!(rep["system_cpu_s"].as_f64().is_some(), "{rep}");
    assert!(rep["peak_memory_bytes"].as_u64().unwrap() > 0, "{rep}");
    let ns: Vec<&str> = rep["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for want in ["user", "mount", "pid", "net"] {
        assert!(ns.contains(&want), "{want} missing: {rep}");
    }
    assert_eq!(rep["landlock"]["mode"], "required", "{rep}");
    assert!(
        rep["landlock"]["abi"].as_i64().unwrap() > 0,
        "required landlock ran, so the kernel has an ABI: {rep}"
    );
    assert_eq!(rep["landlock"]["enforced"], "full", "{rep}");
    assert!(rep["seccomp"]["rules"].as_u64().unwrap() > 30, "{rep}");
    assert_eq!(rep["seccomp"]["action"], "errno", "{rep}");
    assert!(
        limit_entries(&rep, "memory").contains(&(8 << 30, "rlimit".into())),
        "the default profile's 8G: {rep}"
    );
    assert!(
        limit_entries(&rep, "processes").contains(&(4096, "rlimit".into())),
        "{rep}"
    );
    assert!(limit_entries(&rep, "wall_time").is_empty(), "{rep}");
    assert!(rep["degradations"].is_array(), "{rep}");
    assert!(rep.get("cgroup").is_some(), "{rep}");
}

#[test]
fn report_of_a_failing_command() {
    let (r, work) = run_within(sbx_report(["--", "sh", "-c", "exit 3"]), HANG);
    assert_eq!(r.code, 3, "{r:?}");
    let rep = read_report(&work, &r);
    assert_eq!(rep["exit_code"], 3, "{rep}");
    assert_eq!(rep["reason"], "exited", "{rep}");
    assert!(rep["signal"].is_null(), "{rep}");
}

#[test]
fn report_of_a_killed_command() {
    let (r, work) = run_within(sbx_report(["--", "sh", "-c", "kill -KILL $$"]), HANG);
    assert_eq!(r.code, 137, "{r:?}");
    let rep = read_report(&work, &r);
    assert_eq!(rep["exit_code"], 137, "{rep}");
    assert_eq!(rep["reason"], "signaled", "{rep}");
    assert_eq!(rep["signal"], 9, "{rep}");
}

#[test]
fn report_of_a_missing_command() {
    let cmd = "no-such-command-sbxlim";
    let (r, work) = run_within(sbx_report(["--", cmd, "arg"]), HANG);
    assert_eq!(r.code, 127, "{r:?}");
    let rep = read_report(&work, &r);
    assert_eq!(rep["exit_code"], 127, "{rep}");
    assert_eq!(rep["reason"], "exec_failed", "{rep}");
    assert_eq!(rep["command"], serde_json::json!([cmd, "arg"]), "{rep}");
    let err = rep["setup_error"].as_str().unwrap_or_default();
    assert!(err.contains(cmd), "{rep}");
}

#[test]
fn report_is_written_when_setup_fails() {
    let (r, work) = run_within(
        sbx_report(["--profile", "no-such-profile-sbxlim", "--", "touch", "ran"]),
        HANG,
    );
    assert_eq!(r.code, 125, "{r:?}");
    assert!(!work.path().join("ran").exists(), "the command ran: {r:?}");
    let rep = read_report(&work, &r);
    assert_eq!(rep["schema"], 1, "{rep}");
    assert_eq!(rep["exit_code"], 125, "{rep}");
    assert_eq!(rep["reason"], "setup_failed", "{rep}");
    assert_eq!(rep["command"], serde_json::json!(["touch", "ran"]), "{rep}");
    assert_eq!(
        rep["profiles"],
        serde_json::json!(["no-such-profile-sbxlim"]),
        "{rep}"
    );
    let err = rep["setup_error"].as_str().unwrap_or_default();
    assert!(err.contains("no-such-profile-sbxlim"), "{rep}");
}

#[test]
fn report_to_stderr() {
    let r = common::sbx([
        "--json-status",
        "-",
        "--",
        "sh",
        "-c",
        "echo out; echo from-the-command >&2; exit 5",
    ])
    .run();
    assert_eq!(r.code, 5, "{r:?}");
    assert_eq!(r.stdout, "out\n", "the report is not on stdout: {r:?}");
    let start = r
        .stderr
        .find("\n{")
        .map(|i| i + 1)
        .or_else(|| r.stderr.starts_with('{').then_some(0))
        .unwrap_or_else(|| panic!("no JSON object on stderr: {r:?}"));
    assert!(
        r.stderr[..start].contains("from-the-command"),
        "the command's stderr comes first: {r:?}"
    );
    let mut it = serde_json::Deserializer::from_str(&r.stderr[start..]).into_iter::<Value>();
    let rep = it
        .next()
        .unwrap()
        .unwrap_or_else(|e| panic!("bad JSON on stderr ({e}): {r:?}"));
    assert_eq!(rep["schema"], 1, "{rep}");
    assert_eq!(rep["exit_code"], 5, "{rep}");
    assert_eq!(rep["reason"], "exited", "{rep}");
}

#[test]
fn report_to_an_inherited_fd() {
    let mut s = common::sbx(["--json-status", "3", "--", "sh", "-c", "exit 4"]);
    let path = s.work.path().join("fd3.json");
    let file = std::fs::File::create(&path).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: dup2 and fcntl are async-signal-safe; `file` outlives the spawn. The file may
    // already be fd 3, where dup2 does nothing: clearing close-on-exec covers both cases.
    unsafe {
        s.cmd.pre_exec(move || {
            if (fd != 3 && libc::dup2(fd, 3) < 0) || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (r, work) = run_within(s, HANG);
    drop(file);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(!work.path().join("3").exists(), "wrote a file named 3");
    let text = std::fs::read_to_string(&path).unwrap();
    let rep: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("fd 3 got {text:?}: {e}; {r:?}"));
    assert_eq!(rep["exit_code"], 4, "{rep}");
    assert_eq!(rep["reason"], "exited", "{rep}");
    assert!(!r.stderr.contains("\"schema\""), "{r:?}");
}

// ---- bad limit values ----

fn assert_rejected(args: &[&str], names: &[&str], profile: Option<&str>) {
    let mut s = sbx_report([]);
    if let Some(text) = profile {
        let p = s.work.file("bad.toml", text);
        s.cmd.arg("--profile").arg(p);
    }
    let ran = s.work.path().join("ran");
    s.cmd.args(args).arg("--").arg("touch").arg(&ran);
    let (r, work) = run_within(s, HANG);
    assert_eq!(r.code, 125, "{args:?}: {r:?}");
    assert!(!ran.exists(), "{args:?}: the command ran: {r:?}");
    assert!(
        names.iter().any(|n| r.stderr.contains(n)),
        "{args:?}: the message names none of {names:?}: {r:?}"
    );
    let rep = read_report(&work, &r);
    assert_eq!(rep["reason"], "setup_failed", "{args:?}: {rep}");
    assert_eq!(rep["exit_code"], 125, "{args:?}: {rep}");
}

#[test]
fn bad_limit_values_are_rejected_naming_the_key() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--memory=-1G"], &["limits.memory"]),
        (&["--memory", "12parsecs"], &["limits.memory"]),
        (&["--memory", "0"], &["limits.memory"]),
        (&["--limit", "processes=0"], &["limits.processes"]),
        (&["--limit", "processes=-3"], &["processes"]),
        (&["--timeout", "soon"], &["wall_time", "timeout"]),
        (&["--timeout", "0s"], &["wall_time", "timeout"]),
        (&["--limit", "tmpfs_size=1Q"], &["tmpfs_size"]),
        (&["--limit", "file_size=-1M"], &["file_size"]),
        (&["--limit", "kill_grace=later"], &["kill_grace"]),
        (&["--limit", "bogus=1"], &["bogus"]),
        (&["--limit", "processes"], &["processes"]),
        (&["--limit", "cgroup=maybe"], &["cgroup"]),
    ];
    for (args, names) in cases {
        assert_rejected(args, names, None);
    }
}

#[test]
fn negative_memory_as_a_separate_argument_names_the_key() {
    // `--memory -1G` is how people write it; clap must not read `-1G` as options.
    let s = common::sbx(["--memory", "-1G", "--", "touch", "ran"]);
    let (r, work) = run_within(s, HANG);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(!work.path().join("ran").exists(), "{r:?}");
    assert!(r.stderr.contains("memory"), "the key is not named: {r:?}");
}

#[test]
fn bad_limit_in_a_profile_file_is_rejected() {
    assert_rejected(
        &[],
        &["limits.memory"],
        Some("extends = [\"default\"]\n\n[limits]\nmemory = \"lots\"\n"),
    );
}

// ---- cgroup fallback ----

/// Whether the cgroup sbx starts in could be delegated to the test uid: never when the
/// runner is root (sbx then runs as `nobody` in root's cgroup).
fn cgroup_may_be_delegated() -> bool {
    if common::is_root() {
        return false;
    }
    let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") else {
        return false;
    };
    let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
        return false;
    };
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .any(|m| {
            std::fs::metadata(format!("{m}{path}/cgroup.procs"))
                .is_ok_and(|md| md.uid() == common::test_uid())
        })
}

#[test]
fn without_a_delegated_cgroup_best_effort_falls_back() {
    if cgroup_may_be_delegated() {
        common::note_skip(
            "without_a_delegated_cgroup_best_effort_falls_back",
            "the test uid may own its cgroup",
        );
        return;
    }
    let (r, work) = run_within(sbx_report(["--", "sh", "-c", "echo ran"]), HANG);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "ran\n", "{r:?}");
    let rep = read_report(&work, &r);
    assert!(rep["cgroup"].is_null(), "{rep}");
    let degr = rep["degradations"].as_array().unwrap();
    assert!(
        degr.iter()
            .any(|d| d.as_str().unwrap_or_default().contains("cgroup")),
        "the cgroup fallback is not among the degradations: {rep}"
    );
    // A fallback the user did not ask for (the default profile's best-effort cgroup) is named
    // in the report and with -v, not on stderr (#13: quiet by default).
    assert_eq!(r.stderr, "", "{r:?}");
    let (v, _) = run_within(common::sbx(["-v", "--", "true"]), HANG);
    assert_eq!(v.code, 0, "{v:?}");
    let named: Vec<&str> = v
        .stderr
        .lines()
        .filter(|l| l.contains("cgroup v2"))
        .collect();
    assert_eq!(named.len(), 1, "-v names the fallback once: {v:?}");
    // The rlimits still apply.
    assert!(
        limit_entries(&rep, "memory").contains(&(8 << 30, "rlimit".into())),
        "{rep}"
    );
}

#[test]
fn without_a_delegated_cgroup_required_fails() {
    if cgroup_may_be_delegated() {
        common::note_skip(
            "without_a_delegated_cgroup_required_fails",
            "the test uid may own its cgroup",
        );
        return;
    }
    let s = sbx_report(["--limit", "cgroup=required", "--", "touch", "ran"]);
    let (r, work) = run_within(s, HANG);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(!work.path().join("ran").exists(), "the command ran: {r:?}");
    let lower = r.stderr.to_lowercase();
    assert!(
        ["memory", "controller", "delegat"]
            .iter()
            .any(|w| lower.contains(w)),
        "the message does not say what is missing: {r:?}"
    );
    let rep = read_report(&work, &r);
    assert_eq!(rep["reason"], "setup_failed", "{rep}");
    assert_eq!(rep["exit_code"], 125, "{rep}");
}
