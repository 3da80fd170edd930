//! `--trace-denials` (issue #17 item 3): a failed run names, on one line, the paths the
//! sandbox refused its command, each with the profile line that decided and the option that
//! would allow it; the run report's `denials` has them all. A path missing on the host too is
//! no refusal, and without the option nothing is observed or said.

mod common;

use common::{Ran, Workdir, read_report, run_keep};

const DEFAULT: &str = include_str!("../profiles/default.toml");
const STRICT: &str = include_str!("../profiles/strict.toml");

/// The 1-based line of `profile` holding `needle`.
fn line_of(profile: &str, needle: &str) -> usize {
    profile
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("the profile has no {needle}"))
        + 1
}

/// sbx's refusal line on stderr, if it printed one.
fn refusal(r: &Ran) -> Option<&str> {
    r.stderr
        .lines()
        .find(|l| l.starts_with("sbx: the sandbox refused "))
}

/// A host file in a directory of its own under /tmp: the default profile's fresh /tmp does not
/// show it.
fn outside_file() -> (Workdir, String) {
    let outside = Workdir::new();
    let f = outside.file("data.txt", "secret\n");
    (outside, f.display().to_string())
}

/// Under `--profile strict` (the working directory read-only): read a host file the sandbox
/// does not show, write into the working directory, exit 3.
fn failing_run(extra: &[&str]) -> (Ran, Workdir, String, Workdir) {
    let (outside, host_file) = outside_file();
    let mut s = common::bare();
    let report = s.work.path().join("report.json");
    let report = report.display().to_string();
    let script = format!("cat {host_file}; echo x > out; exit 3");
    let mut args = vec!["--profile", "strict", "--json-status", &report];
    args.extend_from_slice(extra);
    args.extend(["--", "sh", "-c", &script]);
    s.cmd.args(&args);
    let (r, w) = run_keep(s);
    (r, w, host_file, outside)
}

#[test]
fn a_failed_run_names_an_unseen_read_and_a_read_only_write_with_their_fix() {
    let (r, w, host_file, _outside) = failing_run(&["--trace-denials"]);
    assert_eq!(r.code, 3, "{r:?}");
    let line = refusal(&r).unwrap_or_else(|| panic!("no refusal line: {r:?}"));
    let cwd = w.path().display().to_string();
    let tmp_at = format!(
        "builtin:default.toml:{}",
        line_of(DEFAULT, "tmpfs = [\"/tmp\"")
    );
    let cwd_at = format!(
        "builtin:strict.toml:{}",
        line_of(STRICT, "ro = [\"${CWD}\"]")
    );
    assert!(
        line.contains(&format!(
            "{host_file} (not visible: filesystem.tmpfs \"/tmp\" at {tmp_at}; add --ro-bind \
             {host_file}, or [filesystem] ro)"
        )),
        "{line}"
    );
    assert!(
        line.contains(&format!(
            "{cwd}/out (not writable: filesystem.ro \"{cwd}\" at {cwd_at}; add --bind {cwd}, \
             or [filesystem] rw)"
        )),
        "{line}"
    );
    assert_eq!(r.stderr.matches("the sandbox refused").count(), 1, "{r:?}");
    // The report has both, with sbx why's reason and full fix.
    let v = read_report(&w.path().join("report.json"), &r);
    let denials = v["denials"].as_array().expect("denials is a list");
    let find = |p: &str| {
        denials
            .iter()
            .find(|d| d["path"] == p)
            .unwrap_or_else(|| panic!("{p} not in {denials:?}"))
    };
    let read = find(&host_file);
    assert_eq!(read["access"], "see", "{read}");
    assert!(
        read["decided_by"].as_str().unwrap().starts_with(&tmp_at),
        "{read}"
    );
    assert!(
        read["fix"]
            .as_str()
            .unwrap()
            .ends_with(&format!("or run with --ro-bind {host_file}")),
        "{read}"
    );
    let write = find(&format!("{cwd}/out"));
    assert_eq!(write["access"], "write", "{write}");
    assert!(
        write["reason"].as_str().unwrap().contains("read-only bind"),
        "{write}"
    );
}

#[test]
fn quiet_silences_the_line_but_the_report_keeps_the_denials() {
    let (r, w, host_file, _outside) = failing_run(&["--trace-denials", "-q"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(refusal(&r).is_none(), "{r:?}");
    let v = read_report(&w.path().join("report.json"), &r);
    let denials = v["denials"].as_array().expect("denials is a list");
    assert!(
        denials.iter().any(|d| d["path"] == host_file.as_str()),
        "{v}"
    );
}

#[test]
fn without_the_option_nothing_is_said_and_the_report_has_no_denials() {
    let (r, w, _host_file, _outside) = failing_run(&[]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(refusal(&r).is_none(), "{r:?}");
    let v = read_report(&w.path().join("report.json"), &r);
    assert!(v["denials"].is_null(), "{v}");
}

#[test]
fn a_successful_run_prints_nothing() {
    let (_outside, host_file) = outside_file();
    let mut s = common::bare();
    let script = format!("cat {host_file} 2>/dev/null; true");
    s.cmd.args(["--trace-denials", "--", "sh", "-c", &script]);
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(refusal(&r).is_none(), "{r:?}");
}

#[test]
fn a_probe_for_a_path_missing_on_the_host_too_is_no_refusal() {
    let (outside, host_file) = outside_file();
    let missing = outside.path().join("no-such-file").display().to_string();
    let mut s = common::bare();
    let report = s.work.path().join("report.json");
    let report_s = report.display().to_string();
    // Both are absent in the sandbox; only the first is there on the host.
    let script = format!("test -e {missing} || test -e /srv/sbx-no-such; cat {host_file}; exit 1");
    s.cmd.args([
        "--trace-denials",
        "--json-status",
        &report_s,
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let (r, _w) = run_keep(s);
    assert_eq!(r.code, 1, "{r:?}");
    let line = refusal(&r).unwrap_or_else(|| panic!("no refusal line: {r:?}"));
    assert!(line.contains(&host_file), "{line}");
    assert!(!line.contains("no-such"), "{line}");
    let v = read_report(&report, &r);
    let paths: Vec<&str> = v["denials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, [host_file.as_str()], "{v}");
}

#[test]
fn many_refusals_are_counted_after_the_first_five() {
    let (outside, _) = outside_file();
    let mut s = common::bare();
    let names: Vec<String> = (0..8)
        .map(|i| outside.file(&format!("f{i}"), "x\n").display().to_string())
        .collect();
    let script = format!("cat {} 2>/dev/null; exit 1", names.join(" "));
    s.cmd.args(["--trace-denials", "--", "sh", "-c", &script]);
    let (r, _w) = run_keep(s);
    let line = refusal(&r).unwrap_or_else(|| panic!("no refusal line: {r:?}"));
    assert_eq!(line.matches("(not visible").count(), 5, "{line}");
    assert!(
        line.contains("and 3 more (--json-status has them all)"),
        "{line}"
    );
}

#[test]
fn learn_refuses_the_option_before_running_anything() {
    let mut s = common::bare();
    s.cmd
        .args(["learn", "--trace-denials", "--", "sh", "-c", "touch ran"]);
    let (r, w) = run_keep(s);
    assert_eq!(r.code, 125, "{r:?}");
    assert_eq!(common::error_lines(&r.stderr).len(), 1, "{r:?}");
    assert!(
        r.stderr.contains("--trace-denials is a run option"),
        "{r:?}"
    );
    assert!(!w.path().join("ran").exists());
}
