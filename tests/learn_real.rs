//! `sbx learn` on real tools (issue #17): a profile learned for attrs' own test suite (from its
//! sdist, with pytest and hypothesis from PyPI) and for `cargo build --offline` of a real
//! crate (sbx itself, with its locked dependencies from the runner's registry cache), each
//! learned over the strict base, then run under the learned profile: the same result as
//! without a sandbox, and a path the run did not use is refused.
//!
//! Inputs are fetched once into `CACHE` (a missing tool or download is a visible skip).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{AsTestUid, Ran, Workdir, run_keep};

const CACHE: &str = "/var/cache/sbx-test-cache";
const ATTRS: &str = "26.1.0";

fn sh(script: &str) -> bool {
    Command::new("sh")
        .args(["-ec", script])
        .status()
        .is_ok_and(|s| s.success())
}

/// A venv with pytest, hypothesis and attrs' wheel (for its metadata), and attrs' sdist
/// unpacked: `CACHE/attrs/{venv,attrs-VERSION}`. None (said) when it cannot be made here.
fn attrs_fixture(test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(CACHE).join("attrs");
    if dir.join("ready").exists() {
        return Some(dir);
    }
    let d = dir.display();
    let made = sh(&format!(
        "rm -rf {d}; mkdir -p {d}; chmod 755 {CACHE} {d}
         /usr/bin/python3 -m venv {d}/venv
         {d}/venv/bin/pip install -q --no-cache-dir pytest==9.2.0 hypothesis==6.170.27 attrs=={ATTRS}
         {d}/venv/bin/pip download -q --no-cache-dir --no-binary :all: --no-deps attrs=={ATTRS} -d {d}/dl
         tar -xzf {d}/dl/attrs-{ATTRS}.tar.gz -C {d}
         chmod -R a+rX {d}
         touch {d}/ready"
    ));
    if !made {
        common::note_skip(
            test,
            "cannot make a venv with pytest, hypothesis and attrs from PyPI here (python3-venv \
             or PyPI missing)",
        );
        return None;
    }
    Some(dir)
}

/// pytest's result line without its timing and warnings: "5 failed, 1371 passed".
fn tally(out: &str) -> String {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_else(|| panic!("no pytest summary in:\n{out}"));
    line.trim_matches('=')
        .split(',')
        .map(str::trim)
        .map(|p| p.split(" in ").next().unwrap_or(p))
        .filter(|p| p.ends_with("passed") || p.ends_with("failed"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sbx ARGS...` in `dir` with HOME `home`.
fn sbx_in(dir: &Path, home: &Path, env: &[(&str, String)], args: &[&str]) -> Ran {
    let mut s = common::sbx(args);
    s.cmd.current_dir(dir).env("HOME", home);
    for (k, v) in env {
        s.cmd.env(k, v);
    }
    run_keep(s).0
}

/// A copy of `src` in a fresh work directory, owned by the test uid.
fn copy_tree(src: &Path, excludes: &str) -> (Workdir, PathBuf) {
    let w = Workdir::new();
    let to = w.subdir("project");
    assert!(sh(&format!(
        "cd {} && tar {excludes} -cf - . | tar -xf - -C {}; chown -R {}:{} {}",
        src.display(),
        to.display(),
        common::test_uid(),
        common::test_gid(),
        to.display()
    )));
    w.subdir("home");
    (w, to)
}

#[test]
fn a_profile_learned_for_attrs_test_suite_runs_it_under_strict() {
    let test = "a_profile_learned_for_attrs_test_suite_runs_it_under_strict";
    let Some(fx) = attrs_fixture(test) else {
        return;
    };
    let (w, project) = copy_tree(&fx.join(format!("attrs-{ATTRS}")), "");
    let home = w.path().join("home");
    let python = fx.join("venv/bin/python3").display().to_string();
    let pytest = [
        python.as_str(),
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests",
    ];
    let bare = Command::new(&python)
        .args(&pytest[1..])
        .current_dir(&project)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &home)
        .env("PYTHONPATH", "src")
        .as_test_uid()
        .output()
        .unwrap();
    let bare = Ran::from_output(bare);
    let want = tally(&bare.stdout);

    let learned = w.path().join("attrs.toml").display().to_string();
    let mut args = vec![
        "learn",
        "-p",
        "strict",
        "--setenv",
        "PYTHONPATH=src",
        "-o",
        &learned,
        "--",
    ];
    args.extend(pytest);
    let r = sbx_in(&project, &home, &[], &args);
    assert_eq!(r.code, bare.code, "learn: {r:?}\nbare: {bare:?}");
    assert_eq!(tally(&r.stdout), want, "{r:?}");
    let text = std::fs::read_to_string(&learned).unwrap();
    assert!(
        text.contains(&format!("\"{}\",", fx.join("venv").display())),
        "{text}"
    );

    let mut args = vec!["-p", &learned, "--setenv", "PYTHONPATH=src", "--"];
    args.extend(pytest);
    let r = sbx_in(&project, &home, &[], &args);
    assert_eq!(r.code, bare.code, "learned: {r:?}\nbare: {bare:?}\n{text}");
    assert_eq!(tally(&r.stdout), want, "{r:?}");
    // The base alone does not run it: the venv is not there.
    let mut args = vec!["-p", "strict", "--setenv", "PYTHONPATH=src", "--"];
    args.extend(pytest);
    let r = sbx_in(&project, &home, &[], &args);
    assert_eq!(r.code, 127, "{r:?}");
    // What the run did not use is refused, though the host has it.
    let sdist = fx
        .join(format!("dl/attrs-{ATTRS}.tar.gz"))
        .display()
        .to_string();
    let r = sbx_in(&project, &home, &[], &["-p", &learned, "--", "cat", &sdist]);
    assert!(r.code != 0 && r.stderr.contains("No such file"), "{r:?}");
}

/// The runner's Rust toolchain and registry cache, hard-linked where the test uid can read
/// them (`CACHE/rust/{sysroot,cargo-home}`): rustup keeps them in a private home.
fn rust_fixture(test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(CACHE).join("rust");
    if dir.join("ready").exists() {
        return Some(dir);
    }
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let cargo_home = std::env::var("CARGO_HOME")
        .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap_or_default()));
    let Some(sysroot) = sysroot else {
        common::note_skip(test, "rustc is not on PATH");
        return None;
    };
    let d = dir.display();
    // Hard links: the same files, reachable by another path; cp -a where they cannot be made.
    let made = sh(&format!(
        "rm -rf {d}; mkdir -p {d}/cargo-home; chmod 755 {CACHE} {d} {d}/cargo-home
         cp -al {sysroot} {d}/sysroot 2>/dev/null || cp -a {sysroot} {d}/sysroot
         cp -al {cargo_home}/registry {d}/cargo-home/registry 2>/dev/null \
           || cp -a {cargo_home}/registry {d}/cargo-home/registry
         chmod -R a+rX {d}
         touch {d}/ready"
    ));
    if !made {
        common::note_skip(
            test,
            "cannot copy the runner's toolchain and registry cache",
        );
        return None;
    }
    Some(dir)
}

#[test]
fn a_profile_learned_for_cargo_build_offline_builds_the_crate_under_strict() {
    let test = "a_profile_learned_for_cargo_build_offline_builds_the_crate_under_strict";
    let Some(fx) = rust_fixture(test) else {
        return;
    };
    let (w, project) = copy_tree(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        "--exclude=./target --exclude=./.git",
    );
    let home = w.path().join("home");
    let path = format!("{}/sysroot/bin:/usr/bin:/bin", fx.display());
    let cargo_home = format!("{}/cargo-home", fx.display());
    let env = [("PATH", path.clone()), ("CARGO_HOME", cargo_home.clone())];
    let set_path = format!("PATH={path}");
    let set_home = format!("CARGO_HOME={cargo_home}");
    let learned = w.path().join("cargo.toml").display().to_string();
    let opts = ["--setenv", &set_path, "--setenv", &set_home];
    let build = ["--", "cargo", "build", "--offline", "--bin", "sbx"];

    let mut args = vec!["learn", "-p", "strict", "-o", &learned];
    args.extend(opts);
    args.extend(build);
    let r = sbx_in(&project, &home, &env, &args);
    assert_eq!(r.code, 0, "learn: {r:?}");
    assert!(
        !project.join("target").exists(),
        "the learning run's build reached the host"
    );
    let text = std::fs::read_to_string(&learned).unwrap();
    assert!(
        text.contains("\"${CWD}\","),
        "the build's target is learned: {text}"
    );

    let mut args = vec!["-p", &learned];
    args.extend(opts);
    args.extend(build);
    let r = sbx_in(&project, &home, &env, &args);
    assert_eq!(r.code, 0, "learned: {r:?}\n{text}");
    let built = project.join("target");
    assert!(
        sh(&format!(
            "find {} -name sbx -type f -perm -u+x | grep -q .",
            built.display()
        )),
        "no binary was built"
    );
    // The base alone does not build it: the toolchain is not there.
    let mut args = vec!["-p", "strict"];
    args.extend(opts);
    args.extend(build);
    let r = sbx_in(&project, &home, &env, &args);
    assert_ne!(r.code, 0, "{r:?}");
    // What the run did not use is refused, though the host has it.
    let outside = format!("{CACHE}/outside-{}", w.name());
    std::fs::write(&outside, "not learned\n").unwrap();
    common::chown(Path::new(&outside));
    let r = sbx_in(
        &project,
        &home,
        &env,
        &["-p", &learned, "--", "cat", &outside],
    );
    let _ = std::fs::remove_file(&outside);
    assert!(r.code != 0 && r.stderr.contains("No such file"), "{r:?}");
}
