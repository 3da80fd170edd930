//! Papercuts of issue #17 on the command line: a relative bind source with `..` (and what a
//! relative source means in a profile), a `?` put at the end of the source instead of the
//! entry, limits that nothing enforces said plainly, the cgroup fallback named once with `-v`,
//! and `profile show` printing the security values a run would use.

mod common;

use common::{Ran, Workdir, error_lines, run_keep};

/// A work directory with `sib/f` (holding "sibling") beside `w/`, the directory sbx starts in.
fn siblings() -> (Workdir, std::path::PathBuf) {
    let work = Workdir::new();
    let sib = work.subdir("sib");
    let w = work.subdir("w");
    std::fs::write(sib.join("f"), "sibling\n").unwrap();
    common::chown(&sib.join("f"));
    (work, w)
}

fn sbx_in(dir: &std::path::Path, args: &[&str]) -> Ran {
    let mut s = common::sbx(args);
    s.cmd.current_dir(dir);
    run_keep(s).0
}

#[test]
fn relative_source_with_dotdot_resolves_against_the_current_directory() {
    let (work, w) = siblings();
    // SRC:DST, read-only and writable.
    for flag in ["--ro-bind", "--bind"] {
        let r = sbx_in(&w, &[flag, "../sib:/data", "--", "cat", "/data/f"]);
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (0, "sibling\n"),
            "{flag}: {r:?}"
        );
    }
    // No destination: mounted where the directory really is, its spelling resolved.
    let sib = common::canonical(&work.path().join("sib"));
    let r = sbx_in(
        &w,
        &["--ro-bind", "../sib", "--", "cat", &format!("{sib}/f")],
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "sibling\n"), "{r:?}");
    // `..` alone: the parent directory.
    let r = sbx_in(&w, &["--ro-bind", "..:/data", "--", "cat", "/data/sib/f"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "sibling\n"), "{r:?}");
    // Through a subdirectory and back, and optional.
    let r = sbx_in(
        &w,
        &["--ro-bind", "./../w/../sib:/data?", "--", "cat", "/data/f"],
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "sibling\n"), "{r:?}");
    let r = sbx_in(&w, &["--ro-bind", "../gone:/data?", "--", "true"]);
    assert_eq!(r.code, 0, "an optional missing source is skipped: {r:?}");
    // An overlay's source too.
    let r = sbx_in(
        &w,
        &["--ro-overlay", "../sib:/data", "--", "cat", "/data/f"],
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "sibling\n"), "{r:?}");
    // Destinations keep refusing `..`, before anything runs.
    let r = sbx_in(&w, &["--ro-bind", "../sib:/data/../etc", "--", "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("must not contain"), "{r:?}");
}

#[test]
fn a_profile_source_must_be_absolute() {
    // README: a profile's paths are absolute (`${CWD}`, `${HOME}`), so that it means the same
    // wherever sbx starts; a relative one is refused, naming the key, before anything runs.
    let (_work, w) = siblings();
    let p = common::profile("extends = [\"default\"]\n[filesystem]\nro = [\"../sib:/data\"]\n");
    let r = sbx_in(&w, &["-p", &p.path, "--", "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    let errors = error_lines(&r.stderr);
    assert_eq!(errors.len(), 1, "{r:?}");
    assert!(
        errors[0].contains("filesystem.ro") && errors[0].contains("is not an absolute path"),
        "{r:?}"
    );
    // `${CWD}` names the current directory.
    let p = common::profile("extends = [\"default\"]\n[filesystem]\nro = [\"${CWD}:/data\"]\n");
    let r = sbx_in(&w, &["-p", &p.path, "--", "ls", "/data"]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn a_question_mark_ending_the_source_shows_the_exact_fix() {
    let w = Workdir::new();
    let r = sbx_in(w.path(), &["--bind", "/nope?:/data", "--", "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    let errors = error_lines(&r.stderr);
    assert_eq!(errors.len(), 1, "{r:?}");
    assert!(
        errors[0].contains("optional only at its very end")
            && errors[0].contains("`--bind /nope:/data?`")
            && !errors[0].contains("append"),
        "{r:?}"
    );
    // The fix works as shown.
    let r = sbx_in(w.path(), &["--bind", "/nope:/data?", "--", "true"]);
    assert_eq!(r.code, 0, "{r:?}");
    // Without a `?`: the entry to write, with its option.
    let r = sbx_in(w.path(), &["--ro-bind", "/nope:/data", "--", "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("`--ro-bind /nope:/data?`"), "{r:?}");
    // In a profile: the entry as the profile writes it.
    let p = common::profile("extends = [\"default\"]\n[filesystem]\nro = [\"/nope?:/data\"]\n");
    let r = sbx_in(w.path(), &["-p", &p.path, "--", "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("`\"/nope:/data?\"`"), "{r:?}");
    // A command-line overlay cannot be optional: no `?` is suggested.
    let r = sbx_in(w.path(), &["--overlay", "/nope", "--", "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(
        r.stderr.contains("overlay source /nope does not exist") && !r.stderr.contains('?'),
        "{r:?}"
    );
}

/// Whether runs here get a cgroup of their own (then nothing falls back).
fn has_cgroup(r: &Ran) -> bool {
    r.stderr.contains("INFO cgroup: ")
}

const FALLBACK: &str = "no usable delegated cgroup v2 subtree";

#[test]
fn cpus_without_a_cgroup_is_called_not_enforced() {
    const TEST: &str = "cpus_without_a_cgroup_is_called_not_enforced";
    let w = Workdir::new();
    // `cgroup = "off"`: on every host, nothing enforces cpus.
    let r = sbx_in(
        w.path(),
        &["--limit", "cgroup=off", "--limit", "cpus=0.5", "--", "true"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let warns: Vec<&str> = r.stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warns.len(), 1, "{r:?}");
    assert!(warns[0].contains("limits.cpus is not enforced"), "{r:?}");
    // `--explain` says what holds cpus.
    let r = sbx_in(
        w.path(),
        &["--explain", "--limit", "cpus=0.5", "--", "true"],
    );
    assert!(
        r.stdout.contains("cpus = 0.5 (") && r.stdout.contains("not enforced without one"),
        "{r:?}"
    );

    let r = sbx_in(w.path(), &["-v", "--limit", "cpus=0.5", "--", "true"]);
    if has_cgroup(&r) {
        return common::note_skip(TEST, "runs get a delegated cgroup here");
    }
    let r = sbx_in(w.path(), &["--limit", "cpus=0.5", "--", "true"]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one warning: {r:?}");
    assert!(
        lines[0].contains("WARN limits.cpus is not enforced") && !lines[0].contains("rlimit"),
        "{r:?}"
    );
}

#[test]
fn verbose_names_the_cgroup_fallback_once() {
    const TEST: &str = "verbose_names_the_cgroup_fallback_once";
    let w = Workdir::new();
    for extra in [&[][..], &["--limit", "cpus=0.5"][..]] {
        let mut args = vec!["-v"];
        args.extend_from_slice(extra);
        args.extend(["--", "true"]);
        let r = sbx_in(w.path(), &args);
        assert_eq!(r.code, 0, "{r:?}");
        if has_cgroup(&r) {
            return common::note_skip(TEST, "runs get a delegated cgroup here");
        }
        assert_eq!(r.stderr.matches(FALLBACK).count(), 1, "{extra:?}: {r:?}");
        if !extra.is_empty() {
            let line = r.stderr.lines().find(|l| l.contains(FALLBACK)).unwrap();
            assert!(
                line.contains("WARN") && line.contains("limits.cpus is not enforced"),
                "{r:?}"
            );
        }
    }
}

#[test]
fn profile_show_prints_the_effective_security_values() {
    let w = Workdir::new();
    let r = sbx_in(w.path(), &["profile", "show", "default"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v: toml::Value = toml::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{r:?}"));
    let sec = &v["security"];
    assert_eq!(sec["landlock"].as_str(), Some("required"), "{r:?}");
    assert_eq!(sec["seccomp"].as_str(), Some("default"), "{r:?}");
    assert_eq!(sec["nested_userns"].as_bool(), Some(false), "{r:?}");
    assert_eq!(
        sec["scope_abstract_sockets"].as_str(),
        Some("best-effort"),
        "{r:?}"
    );
    assert_eq!(v["seccomp"]["action"].as_str(), Some("errno"), "{r:?}");
    // What a profile sets wins over the defaults shown.
    let p = common::profile(
        "extends = [\"default\"]\n[security]\nlandlock = \"best-effort\"\n[seccomp]\naction = \"kill\"\n",
    );
    let r = sbx_in(w.path(), &["profile", "show", &p.path]);
    assert_eq!(r.code, 0, "{r:?}");
    let v: toml::Value = toml::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{r:?}"));
    assert_eq!(v["security"]["landlock"].as_str(), Some("best-effort"));
    assert_eq!(v["seccomp"]["action"].as_str(), Some("kill"), "{r:?}");
}
