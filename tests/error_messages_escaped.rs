//! sbx's error messages quote paths and values from profiles; a profile can hold any string,
//! control characters included. Quoted escaped, such a value cannot add a line to sbx's
//! output that reads as one of its own, nor send an escape sequence to the terminal: a bind
//! source that does not exist (a plan error), a working directory that does not exist inside
//! the sandbox (a setup failure, worded by `diagnose`), and `--explain`'s listing.

mod common;

use common::{Ran, error_lines};

/// A value that, printed raw, ends sbx's line, forges a log line of sbx's and erases it (no
/// colon: a bind entry would take it for the SRC:DST separator).
const HOSTILE: &str = "/no/such\n WARN forged\x1b[2K\r";
/// The same as TOML writes it.
const HOSTILE_TOML: &str = r"/no/such\n WARN forged\u001b[2K\r";
/// As sbx must show it.
const ESCAPED: &str = r"/no/such\n WARN forged\e[2K\r";

fn run_with_profile(toml: &str, extra: &[&str]) -> Ran {
    let profile = common::profile(&format!("extends = [\"default\"]\n{toml}"));
    let mut args = vec!["--profile", profile.path.as_str()];
    args.extend_from_slice(extra);
    args.extend(["--", "true"]);
    common::sbx(args).run()
}

/// The lines of `text` that hold the value.
fn lines_with_value(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.contains("forged")).collect()
}

/// No raw control character of the value is in `text`.
fn assert_no_controls(what: &str, text: &str, r: &Ran) {
    assert!(
        !text.contains(['\x1b', '\r']) && !text.contains(HOSTILE),
        "{what}: a control character of the value reached the terminal: {r:?}"
    );
}

/// The value is quoted, escaped, on the line that says `about`, and on no other line.
fn assert_quoted(about: &str, r: &Ran) {
    let lines = lines_with_value(&r.stderr);
    assert!(
        lines.len() == 1 && lines[0].contains(about) && lines[0].contains(ESCAPED),
        "the value is not quoted escaped on the line that says {about:?}: {r:?}"
    );
    assert_no_controls(about, &r.stderr, r);
}

#[test]
fn errors_quote_profile_values_escaped() {
    // A missing bind source: the plan's error quotes the path as the profile wrote it.
    let r = run_with_profile(&format!("[filesystem]\nro = [\"{HOSTILE_TOML}\"]\n"), &[]);
    assert_eq!(r.code, 125, "{r:?}");
    assert_eq!(error_lines(&r.stderr).len(), 1, "{r:?}");
    assert_quoted("does not exist", &r);

    // A working directory missing inside the sandbox: the setup failure names it.
    let r = run_with_profile(&format!("[process]\nchdir = \"{HOSTILE_TOML}\"\n"), &[]);
    assert_eq!(r.code, 125, "{r:?}");
    assert_eq!(error_lines(&r.stderr).len(), 1, "{r:?}");
    assert_quoted("setup failed at chdir to", &r);
}

#[test]
fn explain_lists_profile_values_escaped() {
    // One item per line, whatever the profile's strings hold.
    let r = run_with_profile(
        &format!("[process]\nchdir = \"{HOSTILE_TOML}\"\n[env.set]\nX = \"{HOSTILE_TOML}\"\n"),
        &["--explain"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let lines = lines_with_value(&r.stdout);
    assert_eq!(lines.len(), 2, "one line per item: {r:?}");
    assert_eq!(lines[0], format!("  X={ESCAPED}"), "{r:?}");
    assert!(
        lines[1].starts_with("command: true (cwd ") && lines[1].contains(ESCAPED),
        "{r:?}"
    );
    assert_no_controls("--explain", &r.stdout, &r);
}

/// A plan warning quoting a host path (a bind source reached through a symlink, to a
/// directory whose name holds control characters) is shown escaped once, on the terminal and
/// in `--explain`, and kept raw in the run report.
#[test]
fn plan_warnings_quote_host_paths_escaped_once() {
    let mut s = common::bare();
    let dir = s.work.path().join("evil\n WARN forged\x1b[2K\r");
    std::fs::create_dir(&dir).unwrap();
    common::chown(&dir);
    std::os::unix::fs::symlink(&dir, s.work.path().join("link")).unwrap();
    let report = s.work.path().join("report.json");
    let bind = format!("{}:/w", s.work.path().join("link").display());
    s.cmd
        .args(["--ro-bind", &bind, "--json-status"])
        .arg(&report)
        .args(["--", "true"]);
    let (r, work) = common::run_keep(s);
    assert_eq!(r.code, 0, "{r:?}");
    let shown = r"evil\n WARN forged\e[2K\r";
    let lines = lines_with_value(&r.stderr);
    assert!(
        lines.len() == 1 && lines[0].contains(shown) && !lines[0].contains(r"\\e"),
        "the warning does not quote the path escaped once: {r:?}"
    );
    assert_no_controls("warning", &r.stderr, &r);
    let rep = common::read_report(&report, &r);
    assert!(
        rep.to_string().contains(r"evil\n WARN forged\u001b[2K\r"),
        "{rep}"
    );
    let mut e = common::sbx(["--ro-bind", &bind, "--explain", "--", "true"]);
    e.cmd.current_dir(work.path());
    let r = e.run();
    let lines = lines_with_value(&r.stdout);
    assert!(
        !lines.is_empty()
            && lines
                .iter()
                .all(|l| l.contains(shown) && !l.contains(r"\\e")),
        "--explain: {r:?}"
    );
    assert_no_controls("--explain", &r.stdout, &r);
}
