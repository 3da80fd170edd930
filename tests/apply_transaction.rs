//! `sbx apply` is a transaction over descriptors, and `sbx changes` says when its report is
//! not whole (issue #21, item 3). Each test does the attack from inside a sandbox where that is
//! the threat, and checks the host:
//!
//! 1. The tree's root swapped after the run (a symlink to another directory, or a new
//!    directory) by a later ordinary run: apply refuses, `changes` says so, nothing is written.
//! 2. A second sandbox with the kept layer bound rewrites it while apply runs (files become
//!    symlinks to host-only files, inside symlinks point outside): nothing outside is copied
//!    or linked.
//! 3. setuid, setgid and file capabilities are dropped, and apply says so.
//! 4. A 1 GiB sparse file stays sparse.
//! 5. Two names that differ only in invalid UTF-8 stay two entries in the report, in
//!    `sbx changes` and on the host.
//! 6. A path 11 KB deep (past PATH_MAX) is reported and applied.
//! 7. A report that cannot be read whole is marked incomplete, in the run report and in
//!    `sbx changes`, and apply refuses it.

mod common;

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::overlay::{read_json, s, sh_in, sub};
use common::tree::{Node, assert_unchanged, make_tree, snapshot};
use common::{AsTestUid, Ran, Workdir, canonical};

/// Runs SCRIPT in `ws` with `ws` overlaid and its layer kept in `w/kept`; returns the kept
/// directory and the change report the run wrote.
fn kept_run(w: &Workdir, ws: &Path, script: &str) -> (PathBuf, serde_json::Value) {
    let kept = w.path().join("kept");
    let changes = w.path().join("changes.json");
    let (r, _work) = sh_in(
        ws,
        &[
            "--overlay".into(),
            canonical(ws),
            "--keep-changes".into(),
            s(&kept),
            "--changes".into(),
            s(&changes),
        ],
        script,
    );
    assert_eq!(r.code, 0, "{r:?}");
    (kept, read_json(&changes))
}

fn upper(kept: &Path) -> PathBuf {
    let meta = read_json(&kept.join("sbx-changes.json"));
    kept.join(meta["overlays"][0]["upper"].as_str().unwrap())
}

/// Whether the test uid can write into `dir` (so that a write there would land).
fn writable_by_test_uid(dir: &Path) -> bool {
    std::process::Command::new("/bin/sh")
        .args(["-c", "test -w \"$0\"", &s(dir)])
        .as_test_uid()
        .status()
        .unwrap()
        .success()
}

// ---------------------------------------------------------------------------------------------
// 1. The tree's root swapped after the run.

#[test]
fn apply_refuses_a_tree_root_swapped_by_a_later_run() {
    for swap in ["symlink", "directory"] {
        let w = Workdir::new();
        let proj = w.path().join("proj");
        make_tree(&proj, &[("sub/readme", Node::File("r\n", 0o644))]);
        let ssh = w.path().join("home/.ssh");
        make_tree(&ssh, &[("authorized_keys", Node::File("my key\n", 0o600))]);
        // Run A keeps an overlay of proj/sub.
        let sub_dir = proj.join("sub");
        let (kept, report) = kept_run(&w, &sub_dir, "echo attacker-key > authorized_keys");
        assert_eq!(
            report[0]["changes"][0]["path"], "authorized_keys",
            "{report}"
        );
        // A later, ordinary run in proj (its working directory is writable) swaps sub.
        let script = match swap {
            "symlink" => format!("mv sub sub.old && ln -s {} sub", s(&ssh)),
            _ => "mv sub sub.old && mkdir sub".to_string(),
        };
        let (r, _work) = sh_in(&proj, &[], &script);
        assert_eq!(r.code, 0, "{swap}: the swap failed: {r:?}");
        // Precondition: proj/sub now names another directory, one the test uid can write to.
        let now = std::fs::canonicalize(&sub_dir).unwrap();
        if swap == "symlink" {
            assert_eq!(now, std::fs::canonicalize(&ssh).unwrap());
        }
        assert!(
            writable_by_test_uid(&now),
            "{swap}: the attack could not land"
        );
        let before_ssh = snapshot(&ssh);
        let before_sub = snapshot(&now);

        let changes = sub(&["changes".into(), s(&kept)]);
        assert_eq!(changes.code, 125, "{swap}: {changes:?}");
        assert!(
            changes.stdout.contains("! incomplete:")
                && changes
                    .stdout
                    .contains("not the directory the run overlaid"),
            "{swap}: {changes:?}"
        );
        assert!(
            !changes.stdout.contains("authorized_keys"),
            "{swap}: changes compared against the swapped directory: {changes:?}"
        );
        for dry in [true, false] {
            let mut args = vec!["apply".to_string()];
            if dry {
                args.push("--dry-run".into());
            }
            args.push(s(&kept));
            let r = sub(&args);
            assert_eq!(r.code, 125, "{swap} {args:?}: {r:?}");
            assert!(
                r.stderr.contains("not the directory the run overlaid"),
                "{swap}: {r:?}"
            );
            assert!(r.stdout.is_empty(), "{swap}: {r:?}");
        }
        assert_unchanged(&before_ssh, &ssh, "apply onto a swapped root (ssh)");
        assert_unchanged(&before_sub, &now, "apply onto a swapped root");
    }
}

/// A record of an older sbx says nothing about which directory the tree was: apply refuses.
#[test]
fn apply_refuses_a_record_that_does_not_say_which_directory_the_tree_was() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let (kept, _) = kept_run(&w, &ws, "echo b > b.txt");
    let meta_path = kept.join("sbx-changes.json");
    let mut meta = read_json(&meta_path);
    assert!(meta["overlays"][0]["source_id"]["ino"].is_u64(), "{meta}");
    meta["overlays"][0]
        .as_object_mut()
        .unwrap()
        .remove("source_id");
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    let before = snapshot(&ws);
    let r = sub(&["apply".into(), s(&kept)]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("older sbx"), "{r:?}");
    assert_unchanged(&before, &ws, "apply of an old record");
}

// ---------------------------------------------------------------------------------------------
// 2. A racing writer of the layer.

/// A second sandbox has the kept layer bound and flips, as fast as it can, a file between
/// itself and a symlink to a host-only file, and a symlink between an inside and an outside
/// target, while apply runs again and again. Whatever apply read is what it checked and wrote:
/// the host-only file is never copied, no symlink out of the tree is ever written.
#[test]
fn a_racing_writer_of_the_layer_cannot_steer_apply() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let secret_dir = w.path().join("secret");
    make_tree(
        &secret_dir,
        &[
            ("host-only", Node::File("SECRET-HOST-ONLY\n", 0o600)),
            ("bashrc", Node::File("# bashrc\n", 0o644)),
        ],
    );
    let secret = s(&secret_dir.join("host-only"));
    let bashrc = s(&secret_dir.join("bashrc"));
    let (kept, _) = kept_run(&w, &ws, "echo benign > f.txt && ln -s a.txt l");
    let layer = upper(&kept);
    let ctl = w.subdir("ctl");
    let script = format!(
        "i=0; while [ ! -e /ctl/stop ] && [ $i -lt 200000 ]; do \
           rm -f /layer/f.txt; ln -s {secret} /layer/f.txt; \
           rm -f /layer/f.txt; echo benign > /layer/f.txt; \
           rm -f /layer/l; ln -s {bashrc} /layer/l; rm -f /layer/l; ln -s a.txt /layer/l; \
           i=$((i+1)); echo $i > /ctl/count; \
         done"
    );
    let writer = common::sbx([
        "--timeout",
        "120s",
        "--bind",
        &format!("{}:/layer", s(&layer)),
        "--bind",
        &format!("{}:/ctl", s(&ctl)),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let (child, _wd) = writer.spawn();
    let mut writer = common::Running::new(child);
    let count = || -> u64 {
        std::fs::read_to_string(ctl.join("count"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    };
    let start = Instant::now();
    while count() < 5 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the writer never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = count();
    let (mut applied, mut refused) = (0, 0);
    // At least 150 applies within 15 s, and on until the writer has flipped the layer ten
    // times meanwhile (a loaded machine slows it more than apply), within 60 s.
    let (soft, hard) = (
        Instant::now() + Duration::from_secs(15),
        Instant::now() + Duration::from_secs(60),
    );
    let mut n = 0;
    loop {
        let enough = n >= 150 || Instant::now() > soft;
        if (enough && count() > first + 10) || Instant::now() > hard {
            break;
        }
        n += 1;
        let r = sub(&["apply".into(), s(&kept)]);
        match r.code {
            0 => applied += 1,
            125 => refused += 1,
            _ => panic!("apply: {r:?}"),
        }
        check_no_escape(&ws, &secret_dir, &r);
    }
    let last = count();
    std::fs::write(ctl.join("stop"), "").unwrap();
    let _ = common::wait_exit(&mut writer, Duration::from_secs(30));
    eprintln!("racing writer: {applied} applied, {refused} refused, writer {first}..{last}");
    // Precondition: the writer was flipping the layer all along.
    assert!(last > first + 10, "the writer did not run during apply");
    assert_eq!(
        std::fs::read_to_string(secret_dir.join("host-only")).unwrap(),
        "SECRET-HOST-ONLY\n"
    );
}

/// Nothing in the tree is a symlink that leads out of it, or holds the host-only file.
fn check_no_escape(ws: &Path, secret_dir: &Path, r: &Ran) {
    let root = std::fs::canonicalize(ws).unwrap();
    for (p, e) in snapshot(ws) {
        let full = ws.join(&p);
        if e.kind == 'l' {
            assert!(
                !e.target.starts_with(&s(secret_dir)),
                "apply wrote {p} -> {}: {r:?}",
                e.target
            );
            if let Ok(to) = full.canonicalize() {
                assert!(to.starts_with(&root), "{p} leads out: {r:?}");
            }
        }
        if e.kind == 'f' {
            let text = std::fs::read(&full).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&text).contains("SECRET-HOST-ONLY"),
                "apply copied the host-only file into {p}: {r:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. and 4. setuid, setgid, file capabilities; sparse files.

#[test]
fn setuid_setgid_and_file_capabilities_are_dropped_and_said() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let (kept, _) = kept_run(
        &w,
        &ws,
        "set -e; printf '#!/bin/sh\\necho hi\\n' > tool; chmod 6755 tool; \
         printf x > plain; chmod 755 plain",
    );
    let tool = upper(&kept).join("tool");
    // Precondition: the layer really holds a setuid and setgid file.
    let mode = std::fs::metadata(&tool).unwrap().mode();
    assert_eq!(mode & 0o7777, 0o6755, "the command could not set the bits");
    let caps = common::is_root();
    if caps {
        // cap_net_bind_service, as root on the host (the sandbox has no capabilities).
        let st = std::process::Command::new("setcap")
            .args(["cap_net_bind_service=ep", &s(&tool)])
            .status();
        assert!(st.is_ok_and(|s| s.success()), "setcap failed");
        assert!(
            has_caps(&tool),
            "precondition: the layer's file has capabilities"
        );
    } else {
        common::note_skip(
            "setuid_setgid_and_file_capabilities_are_dropped_and_said",
            "file capabilities need root to be set on the layer",
        );
    }
    let r = sub(&["apply".into(), s(&kept)]);
    assert_eq!(r.code, 0, "{r:?}");
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("A tool"))
        .unwrap_or_else(|| panic!("{r:?}"));
    let want = if caps {
        "A tool  (dropped: setuid, setgid, file capabilities)"
    } else {
        "A tool  (dropped: setuid, setgid)"
    };
    assert_eq!(line, want, "{r:?}");
    assert!(r.stdout.lines().any(|l| l == "A plain"), "{r:?}");
    let m = std::fs::metadata(ws.join("tool")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o755, "the host file keeps special bits");
    assert!(
        !has_caps(&ws.join("tool")),
        "the host file has capabilities"
    );
}

fn has_caps(p: &Path) -> bool {
    let out = std::process::Command::new("getcap").arg(p).output();
    match out {
        Ok(o) => !String::from_utf8_lossy(&o.stdout).trim().is_empty(),
        Err(_) => false,
    }
}

#[test]
fn a_sparse_gigabyte_stays_sparse() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let (kept, report) = kept_run(
        &w,
        &ws,
        "truncate -s 1G sparse.bin && printf end >> sparse.bin",
    );
    let size = (1u64 << 30) + 3;
    assert_eq!(report[0]["changes"][0]["size"], size, "{report}");
    // Precondition: sparse in the layer.
    let m = std::fs::metadata(upper(&kept).join("sparse.bin")).unwrap();
    assert!(m.blocks() * 512 < 1 << 20, "not sparse in the layer: {m:?}");
    let r = sub(&["apply".into(), s(&kept)]);
    assert_eq!(r.code, 0, "{r:?}");
    let m = std::fs::metadata(ws.join("sparse.bin")).unwrap();
    assert_eq!(m.len(), size);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "apply filled the holes: {} bytes on disk",
        m.blocks() * 512
    );
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(ws.join("sparse.bin")).unwrap();
    let mut tail = [0u8; 3];
    f.read_exact_at(&mut tail, 1 << 30).unwrap();
    assert_eq!(&tail, b"end");
}

// ---------------------------------------------------------------------------------------------
// 5. and 6. Names as bytes; paths past PATH_MAX.

#[test]
fn two_invalid_utf8_names_stay_two_entries_everywhere() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let (kept, report) = kept_run(
        &w,
        &ws,
        "printf 1 > \"$(printf 'n\\376')\" && printf 2 > \"$(printf 'n\\377')\"",
    );
    let bytes: Vec<serde_json::Value> = report[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path_bytes"].clone())
        .collect();
    assert_eq!(
        bytes,
        [serde_json::json!([110, 254]), serde_json::json!([110, 255])],
        "{report}"
    );
    let r = sub(&["changes".into(), s(&kept)]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().skip(1).collect();
    assert_eq!(
        lines,
        ["A          1  n\\xfe", "A          1  n\\xff"],
        "{r:?}"
    );
    let j = sub(&["changes".into(), s(&kept), "--json".into()]);
    let j: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(j, report, "sbx changes --json vs the run's report");
    let r = sub(&["apply".into(), s(&kept)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout.lines().skip(1).collect::<Vec<_>>(),
        ["A n\\xfe", "A n\\xff"],
        "{r:?}"
    );
    for (name, content) in [(&b"n\xfe"[..], "1"), (b"n\xff", "2")] {
        let p = ws.join(OsStr::from_bytes(name));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), content, "{p:?}");
    }
}

/// One directory level per 200-byte name: 55 of them make a path of 11 KB.
const DEEP_NAME: usize = 200;
const DEEP_LEVELS: usize = 55;

#[test]
fn a_path_deeper_than_path_max_is_reported_and_applied() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    // Built from the bottom up by renames, so that no path the shell uses is long (dash's cd
    // fails past PATH_MAX): w/leaf.txt, then n/d/leaf.txt renamed to w, and so on.
    let script = format!(
        "set -e; d=$(printf '%0{DEEP_NAME}d' 0 | tr 0 d); mkdir w; echo deep > w/leaf.txt; \
         i=1; while [ $i -lt {DEEP_LEVELS} ]; do mkdir n; mv w n/$d; mv n w; i=$((i+1)); done; \
         mv w $d"
    );
    let (kept, report) = kept_run(&w, &ws, &script);
    assert!(report[0].get("incomplete").is_none(), "{report}");
    let changes = report[0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), DEEP_LEVELS + 1, "{report}");
    let leaf = changes
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .find(|p| p.ends_with("/leaf.txt"))
        .expect("the leaf is reported");
    // Precondition: the path is longer than PATH_MAX.
    assert!(leaf.len() > 11_000, "only {} bytes", leaf.len());

    let r = sub(&["changes".into(), s(&kept)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(leaf), "sbx changes misses the leaf");
    let r = sub(&["apply".into(), s(&kept)]);
    assert_eq!(r.code, 0, "{}", &r.stderr);
    assert!(r.stdout.lines().any(|l| l == format!("A {leaf}")));
    let mut dir: OwnedFd = nix::fcntl::open(
        &ws,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let name = "d".repeat(DEEP_NAME);
    for _ in 0..DEEP_LEVELS {
        dir = nix::fcntl::openat(
            dir.as_fd(),
            name.as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
    }
    let f = nix::fcntl::openat(
        dir.as_fd(),
        "leaf.txt",
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .expect("the leaf was applied");
    let text = std::io::read_to_string(std::fs::File::from(f)).unwrap();
    assert_eq!(text, "deep\n");
}

// ---------------------------------------------------------------------------------------------
// 7. Incomplete reports.

/// An entry of the layer sbx cannot read (a directory of another user): `sbx changes` prints
/// what it can, marks the report incomplete and exits 125; apply refuses.
#[test]
fn an_unreadable_layer_is_an_incomplete_report_and_apply_refuses_it() {
    if !common::is_root() {
        common::note_skip(
            "an_unreadable_layer_is_an_incomplete_report_and_apply_refuses_it",
            "a directory of another user in the layer needs root to make",
        );
        return;
    }
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let (kept, _) = kept_run(&w, &ws, "echo b > b.txt");
    let foreign = upper(&kept).join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("inside"), "x").unwrap();
    std::fs::set_permissions(&foreign, PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&foreign, Some(12345), Some(12345)).unwrap();
    let r = sub(&["changes".into(), s(&kept)]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(
        r.stdout
            .contains("! incomplete: foreign: Permission denied"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("b.txt"),
        "what could be read is shown: {r:?}"
    );
    assert!(r.stderr.contains("incomplete"), "{r:?}");
    let j = sub(&["changes".into(), s(&kept), "--json".into()]);
    let j: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert!(
        j[0]["incomplete"].as_str().unwrap().contains("foreign"),
        "{j}"
    );
    let before = snapshot(&ws);
    let r = sub(&["apply".into(), s(&kept)]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("foreign"), "{r:?}");
    assert_unchanged(&before, &ws, "apply of an incomplete layer");
}

/// The overlaid directory is replaced on the host while the command runs: the run's own
/// change report is marked incomplete (not emptied, not compared against the new directory),
/// and the run keeps the command's exit code.
#[test]
fn the_run_report_is_marked_incomplete_when_its_tree_was_replaced() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let ctl = w.subdir("ctl");
    let status = w.path().join("status.json");
    let ws_c = canonical(&ws);
    let mut s_ = common::sbx([
        "--overlay",
        &ws_c,
        "--bind",
        &format!("{}:/ctl", s(&ctl)),
        "--json-status",
        &s(&status),
        "--timeout",
        "60s",
        "--",
        "sh",
        "-c",
        "echo x >> a.txt; touch /ctl/ready; while [ ! -e /ctl/go ]; do sleep 0.02; done; exit 3",
    ]);
    s_.cmd.current_dir(&ws);
    let (child, _wd) = s_.spawn();
    let child = common::Running::new(child);
    let start = Instant::now();
    while !ctl.join("ready").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the command never ran"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::rename(&ws, w.path().join("ws.old")).unwrap();
    make_tree(&ws, &[("other", Node::File("o\n", 0o644))]);
    std::fs::write(ctl.join("go"), "").unwrap();
    let out = child.into_child().wait_with_output().unwrap();
    let r = Ran::from_output(out);
    assert_eq!(r.code, 3, "{r:?}");
    let rep = read_json(&status);
    let set = &rep["changes"][0];
    assert!(
        set["incomplete"]
            .as_str()
            .is_some_and(|s| s.contains("not the directory the run overlaid")),
        "{rep:#}"
    );
    assert!(r.stderr.contains("incomplete"), "{r:?}");
}
