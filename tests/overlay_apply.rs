//! Kept upper layers: `--keep-changes` keeps a run's upper layer (and refuses a directory that
//! is not empty); `sbx changes` reports it, also inside directories the command locked; `sbx
//! apply` makes the host tree what the command saw, does what its `--dry-run` announced and
//! writes all or nothing. Malicious upper layers (symlinks out of the tree, alone or chained,
//! FIFOs, devices, upper paths outside the kept directory, a host symlink to write through) are
//! refused by `sbx apply` before anything is written. Every sbx run is as the unprivileged
//! test uid, and every file of an overlaid tree is owned by that uid and gid.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::overlay::{
    SCRIPT, changes_of, leftover_layers, read_json, s, script_changes, set_diff, sh_in, sub,
    workspace,
};
use common::tree::{Node, assert_unchanged, diff, etc_state, make_tree, own_tree, snapshot};
use common::{Ran, Workdir, canonical};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// What `sbx apply` says it does.

/// What `sbx apply` does for SCRIPT's upper layer: one action per path of the layer that
/// differs from the host (copied-up directories are left alone).
fn script_actions() -> BTreeSet<String> {
    [
        "M .hidden",
        "M d2f",
        "D del.txt",
        "D dir_del",
        "D dir_ren",
        "A dir_renamed",
        "A dir_renamed/x",
        "D emptydir",
        "M f2d",
        "A f2d/in",
        "A link_new",
        "D link_old",
        "M mod.txt",
        "A new.bin",
        "A newdir",
        "A newdir/inner",
        "A newdir/inner/n.txt",
        "M opq",
        "A opq/fresh",
        "M opq/keepname",
        "M perm.sh",
        "D ren.txt",
        "A renamed.txt",
        "M sub/deep/file.txt",
        "A tmpdir2",
        "A tmpdir2/u",
        "M trunc.txt",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// The lines of `sbx apply` output after its `# ... onto SRC` header.
fn action_lines(r: &Ran, header: &str) -> BTreeSet<String> {
    let mut lines = r.stdout.lines();
    assert_eq!(lines.next(), Some(header), "{r:?}");
    lines.map(String::from).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. --keep-changes, `sbx changes`, `sbx apply`.

#[test]
fn kept_changes_are_reported_and_apply_reproduces_what_the_command_saw() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    workspace(&ws);
    let ws_c = canonical(&ws);
    let kept = w.path().join("kept");
    let seen = w.subdir("seen");
    let changes = w.path().join("changes.json");
    let before = snapshot(&ws);
    // The command's last step copies the tree it sees to `seen` (a writable bind).
    let (r, work) = sh_in(
        &ws,
        &[
            "--overlay".into(),
            ws_c.clone(),
            "--keep-changes".into(),
            s(&kept),
            "--changes".into(),
            s(&changes),
            "--bind".into(),
            s(&seen),
        ],
        &format!("{SCRIPT}\ncp -a . {}/", seen.display()),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_unchanged(&before, &ws, "after a run with --keep-changes");
    assert!(
        leftover_layers(work.path()).is_empty(),
        "private layers made"
    );
    let seen_tree = snapshot(&seen);
    assert!(seen_tree.contains_key("tmpdir2/u"), "{seen_tree:#?}");

    // The kept directory: private, with its record.
    let km = std::fs::metadata(&kept).unwrap();
    assert_eq!(km.mode() & 0o777, 0o700, "kept directory mode");
    assert_eq!(km.uid(), common::test_uid());
    let meta = read_json(&kept.join("sbx-changes.json"));
    assert_eq!(meta["schema"], 1, "{meta:#}");
    assert_eq!(meta["overlays"][0]["source"], ws_c.as_str(), "{meta:#}");
    assert_eq!(
        meta["overlays"][0]["destination"],
        ws_c.as_str(),
        "{meta:#}"
    );

    let want = script_changes();
    let report = read_json(&changes);

    // `sbx changes DIR`: a header, then "LETTER SIZE PATH" per change.
    let r = sub(&["changes".into(), s(&kept)]);
    assert_eq!(r.code, 0, "{r:?}");
    let mut lines = r.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("# {ws_c} (over {ws_c})").as_str()),
        "{r:?}"
    );
    let got: BTreeSet<(String, u64, String)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "line {l:?}");
            (f[0].to_string(), f[1].parse().unwrap(), f[2].to_string())
        })
        .collect();
    let letter = |k: &str| match k {
        "added" => "A",
        "modified" => "M",
        "deleted" => "D",
        _ => panic!("{k}"),
    };
    let want_lines: BTreeSet<(String, u64, String)> = want
        .iter()
        .map(|(p, k, _, n)| (letter(k).to_string(), *n, p.clone()))
        .collect();
    assert_eq!(got, want_lines, "sbx changes: {r:?}");

    // `sbx changes --json`: the same change sets as --changes wrote.
    let r = sub(&["changes".into(), s(&kept), "--json".into()]);
    assert_eq!(r.code, 0, "{r:?}");
    let j: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    assert_eq!(j, report, "sbx changes --json vs --changes");
    let got = changes_of(&j[0]);
    assert_eq!(got, want, "{}", set_diff(&got, &want));

    // --dry-run lists the actions and changes nothing.
    let r = sub(&["apply".into(), "--dry-run".into(), s(&kept)]);
    assert_eq!(r.code, 0, "{r:?}");
    let acts = action_lines(&r, &format!("# would apply onto {ws_c}"));
    assert_eq!(acts, script_actions(), "dry run: {r:?}");
    assert_unchanged(&before, &ws, "after apply --dry-run");

    // apply: the host tree becomes what the command saw (times aside). The letters may differ
    // from the dry run's (see apply_reports_what_its_dry_run_announced): paths are compared.
    let r = sub(&["apply".into(), s(&kept)]);
    assert_eq!(r.code, 0, "{r:?}");
    let paths = |set: BTreeSet<String>| -> BTreeSet<String> {
        set.into_iter().map(|l| l[2..].to_string()).collect()
    };
    let acts = action_lines(&r, &format!("# applied onto {ws_c}"));
    assert_eq!(paths(acts), paths(script_actions()), "apply: {r:?}");
    let d = diff(&snapshot(&seen), &snapshot(&ws), false);
    assert!(
        d.is_empty(),
        "applied tree (second) differs from what the command saw (first):\n{d}"
    );
}

/// `apply --dry-run` announces what `apply` then reports doing, also in a directory the
/// command replaced (opaque), where the host's old entries are cleared first.
#[test]
fn apply_reports_what_its_dry_run_announced() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(
        &ws,
        &[
            ("opq/same", Node::File("old\n", 0o644)),
            ("opq/gone", Node::File("gone\n", 0o644)),
        ],
    );
    let kept = w.path().join("kept");
    let (r, _work) = sh_in(
        &ws,
        &[
            "--overlay".into(),
            canonical(&ws),
            "--keep-changes".into(),
            s(&kept),
        ],
        "set -e; rm -r opq; mkdir opq; echo new > opq/same",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let dry = sub(&["apply".into(), "--dry-run".into(), s(&kept)]);
    assert_eq!(dry.code, 0, "{dry:?}");
    let real = sub(&["apply".into(), s(&kept)]);
    assert_eq!(real.code, 0, "{real:?}");
    let body = |r: &Ran| {
        r.stdout
            .lines()
            .skip(1)
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(body(&dry), ["M opq", "M opq/same"], "{dry:?}");
    assert_eq!(
        body(&real),
        body(&dry),
        "apply did not do what --dry-run said: {real:?}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("opq/same")).unwrap(),
        "new\n"
    );
    assert!(!ws.join("opq/gone").exists());
}

/// A command can leave files and directories without permissions in its layer; `sbx apply`
/// either copies them or refuses before writing anything, and never leaves its temporary
/// files in the tree.
#[test]
fn apply_of_an_unreadable_file_writes_all_or_nothing() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let kept = w.path().join("kept");
    let (r, _work) = sh_in(
        &ws,
        &[
            "--overlay".into(),
            canonical(&ws),
            "--keep-changes".into(),
            s(&kept),
        ],
        "set -e; echo 1 > a_first.txt; echo 2 > z_locked.txt; chmod 000 z_locked.txt",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let before = snapshot(&ws);
    let r = sub(&["apply".into(), s(&kept)]);
    let names: Vec<String> = snapshot(&ws).into_keys().collect();
    if r.code == 0 {
        assert_eq!(names, ["a.txt", "a_first.txt", "z_locked.txt"], "{r:?}");
    } else {
        assert_eq!(r.code, 125, "{r:?}");
        let d = diff(&before, &snapshot(&ws), true);
        assert!(
            d.is_empty(),
            "a failed apply left the tree half-written: {r:?}\n{d}"
        );
    }
}

/// The change report is read from the layer as the user: a directory the command left
/// without permissions must not make the report (or `sbx changes`) come back empty.
#[test]
fn change_report_sees_into_directories_the_command_locked() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let kept = w.path().join("kept");
    let changes = w.path().join("changes.json");
    let (r, _work) = sh_in(
        &ws,
        &[
            "--overlay".into(),
            canonical(&ws),
            "--keep-changes".into(),
            s(&kept),
            "--changes".into(),
            s(&changes),
        ],
        "set -e; echo evil >> a.txt; mkdir -p locked/inner; echo x > locked/inner/f
chmod 000 locked/inner; chmod 000 locked",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let report = read_json(&changes);
    assert_eq!(
        report.as_array().map(Vec::len),
        Some(1),
        "{report:#}\n{r:?}"
    );
    let got = changes_of(&report[0]);
    assert!(
        got.contains(&("a.txt".into(), "modified".into(), "file".into(), 7)),
        "the modification is not reported: {report:#}\n{r:?}"
    );
    assert!(
        got.iter().any(|c| c.0 == "locked"),
        "the locked directory is not reported: {report:#}"
    );
    let r = sub(&["changes".into(), s(&kept)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("a.txt"), "{r:?}");
}

#[test]
fn keep_changes_into_a_non_empty_directory_is_refused() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let kept = w.path().join("kept");
    make_tree(&kept, &[("old", Node::File("old layer\n", 0o644))]);
    let before_ws = snapshot(&ws);
    let before_kept = snapshot(&kept);
    let (r, work) = sh_in(
        &ws,
        &[
            "--overlay".into(),
            canonical(&ws),
            "--keep-changes".into(),
            s(&kept),
        ],
        "echo RAN; echo x > new.txt",
    );
    assert_eq!(r.code, 125, "{r:?}");
    assert!(!r.stdout.contains("RAN"), "the command ran: {r:?}");
    assert!(
        r.stderr.contains(&s(&kept)) && r.stderr.contains("not empty"),
        "{r:?}"
    );
    assert_unchanged(&before_ws, &ws, "refused --keep-changes");
    assert_unchanged(&before_kept, &kept, "refused --keep-changes (kept dir)");
    assert!(leftover_layers(work.path()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 2. Malicious upper layers are refused by `sbx apply` before anything is written.

/// A hand-made kept directory `DIR/kept` whose only overlay is `tree` with the upper layer at
/// `upper` (relative to the kept directory); returns (kept dir, upper dir).
fn craft_kept(w: &Workdir, tree: &Path, upper: &str) -> (PathBuf, PathBuf) {
    let kept = w.path().join("kept");
    std::fs::create_dir_all(&kept).unwrap();
    // As sbx records it when a run starts: which directory the tree is (device and inode).
    let m = std::fs::metadata(tree).unwrap();
    let meta = serde_json::json!({
        "schema": 1,
        "overlays": [{
            "destination": canonical(tree),
            "source": canonical(tree),
            "upper": upper,
            "source_id": { "dev": m.dev(), "ino": m.ino() },
        }],
    });
    std::fs::write(kept.join("sbx-changes.json"), meta.to_string()).unwrap();
    let up = kept.join(upper);
    std::fs::create_dir_all(&up).unwrap();
    (kept, up)
}

/// Builds a tree and a kept layer holding a benign file plus `evil`, runs `sbx apply` (and
/// `--dry-run`), and checks that it exits 125 naming `name`, writing nothing anywhere.
fn refused_layer(evil: impl FnOnce(&Path, &Path), name: &str, why: &str) {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(
        &ws,
        &[
            ("a.txt", Node::File("a\n", 0o644)),
            ("sub/b.txt", Node::File("b\n", 0o644)),
        ],
    );
    let outside = w.path().join("outside");
    make_tree(&outside, &[("secret", Node::File("secret\n", 0o644))]);
    let (kept, up) = craft_kept(&w, &ws, "0/upper");
    std::fs::write(up.join("a.txt"), "overwritten\n").unwrap();
    std::fs::write(up.join("benign.txt"), "benign\n").unwrap();
    std::fs::create_dir(up.join("sub")).unwrap();
    evil(&up, &outside);
    own_tree(&kept);
    let before = snapshot(&ws);
    let before_outside = snapshot(&outside);
    let etc = etc_state();
    for dry in [true, false] {
        let mut args = vec!["apply".to_string()];
        if dry {
            args.push("--dry-run".into());
        }
        args.push(s(&kept));
        let r = sub(&args);
        assert_eq!(r.code, 125, "{why}: apply {args:?}: {r:?}");
        assert!(
            r.stderr.contains(name),
            "{why}: the message does not name {name}: {r:?}"
        );
        assert!(!r.stdout.contains("benign.txt"), "{why}: {r:?}");
        assert_unchanged(&before, &ws, why);
        assert_unchanged(&before_outside, &outside, why);
        assert_eq!(etc_state(), etc, "{why}: /etc changed");
    }
}

#[test]
fn apply_refuses_a_symlink_to_etc() {
    refused_layer(
        |up, _| std::os::unix::fs::symlink("/etc", up.join("sub/evil-etc")).unwrap(),
        "sub/evil-etc",
        "symlink to /etc",
    );
}

#[test]
fn apply_refuses_an_absolute_symlink_to_a_writable_outside_directory() {
    refused_layer(
        |up, outside| std::os::unix::fs::symlink(outside, up.join("evil-abs")).unwrap(),
        "evil-abs",
        "absolute symlink outside",
    );
}

#[test]
fn apply_refuses_a_symlink_climbing_out_with_dot_dot() {
    refused_layer(
        |up, _| std::os::unix::fs::symlink("../../x", up.join("sub/evil-up")).unwrap(),
        "sub/evil-up",
        "symlink ../../x",
    );
    refused_layer(
        |up, _| std::os::unix::fs::symlink("sub/../../outside", up.join("evil-mid")).unwrap(),
        "evil-mid",
        "symlink sub/../../outside",
    );
}

#[test]
fn apply_refuses_a_fifo() {
    refused_layer(
        |up, _| {
            nix::unistd::mkfifo(&up.join("sub/evil-fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap()
        },
        "sub/evil-fifo",
        "FIFO",
    );
}

#[test]
fn apply_refuses_a_device() {
    if !common::is_root() {
        common::note_skip(
            "apply_refuses_a_device",
            "creating a device node needs root",
        );
        return;
    }
    refused_layer(
        |up, _| {
            nix::sys::stat::mknod(
                &up.join("evil-null"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(1, 3),
            )
            .unwrap()
        },
        "evil-null",
        "character device 1:3",
    );
}

/// Two symlinks that each stay inside lexically, but chained leave the tree: `d/up -> ..` is
/// the tree's root, so `d/x -> up/..` is the tree's parent.
#[test]
fn apply_refuses_chained_symlinks_that_escape_together() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("d/keep", Node::File("k\n", 0o644))]);
    let (kept, up) = craft_kept(&w, &ws, "0/upper");
    std::fs::create_dir(up.join("d")).unwrap();
    std::os::unix::fs::symlink("..", up.join("d/up")).unwrap();
    std::os::unix::fs::symlink("up/..", up.join("d/x")).unwrap();
    own_tree(&kept);
    let r = sub(&["apply".into(), s(&kept)]);
    if r.code == 125 {
        return;
    }
    assert_eq!(r.code, 0, "{r:?}");
    // Applied: no symlink of the tree may resolve outside it.
    let root = canonical(&ws);
    for (p, e) in snapshot(&ws) {
        if e.kind == 'l' {
            if let Ok(to) = ws.join(&p).canonicalize() {
                assert!(
                    to.starts_with(&root),
                    "apply created {p} -> {}, which resolves to {} outside the tree: {r:?}",
                    e.target,
                    to.display()
                );
            }
        }
    }
}

/// The same, made by a command in the sandbox: what it leaves in its kept layer cannot reach
/// outside the tree through `sbx apply`.
#[test]
fn apply_refuses_escapes_a_sandboxed_command_planted() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let kept = w.path().join("kept");
    let before = snapshot(&ws);
    let (r, _work) = sh_in(
        &ws,
        &[
            "--overlay".into(),
            canonical(&ws),
            "--keep-changes".into(),
            s(&kept),
        ],
        "set -e; echo b > b.txt; ln -s /etc/passwd pw; ln -s ../.. up2; mkfifo pipe",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let r = sub(&["apply".into(), s(&kept)]);
    assert_eq!(r.code, 125, "{r:?}");
    for name in ["pw", "up2", "pipe"] {
        assert!(r.stderr.contains(name), "{name} not named: {r:?}");
    }
    assert_unchanged(&before, &ws, "refused apply of a planted layer");
}

#[test]
fn apply_refuses_an_upper_path_outside_the_kept_directory() {
    for upper in ["../../somewhere", "0/../../somewhere", "/somewhere-abs"] {
        let w = Workdir::new();
        let ws = w.path().join("ws");
        make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
        // Refused from the record alone (a planted layer that exists is checked below).
        let kept = w.path().join("kept");
        std::fs::create_dir_all(&kept).unwrap();
        let meta = serde_json::json!({
            "schema": 1,
            "overlays": [{ "destination": canonical(&ws), "source": canonical(&ws), "upper": upper }],
        });
        std::fs::write(kept.join("sbx-changes.json"), meta.to_string()).unwrap();
        own_tree(&kept);
        let before = snapshot(&ws);
        for cmd in ["apply", "changes"] {
            let r = sub(&[cmd.into(), s(&kept)]);
            assert_eq!(r.code, 125, "{cmd} with upper {upper:?}: {r:?}");
            assert!(
                r.stderr.contains(upper),
                "{cmd}: {upper:?} not named: {r:?}"
            );
        }
        assert_unchanged(&before, &ws, upper);
    }
    // One level up, where a planted layer really exists: still refused, nothing copied.
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    make_tree(
        &w.path().join("somewhere"),
        &[("planted", Node::File("planted\n", 0o644))],
    );
    let (kept, _) = craft_kept(&w, &ws, "x");
    let mut meta = read_json(&kept.join("sbx-changes.json"));
    meta["overlays"][0]["upper"] = "../somewhere".into();
    std::fs::write(kept.join("sbx-changes.json"), meta.to_string()).unwrap();
    own_tree(&kept);
    let before = snapshot(&ws);
    let r = sub(&["apply".into(), s(&kept)]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("../somewhere"), "{r:?}");
    assert_unchanged(&before, &ws, "upper ../somewhere");
}

/// The host tree has a directory replaced by a symlink to an outside directory, and the layer
/// writes into (and deletes in) that directory: nothing may happen outside.
#[test]
fn apply_never_writes_through_a_host_symlink() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    let outside = w.path().join("outside");
    let outside2 = w.path().join("outside2");
    make_tree(&outside, &[("victim", Node::File("victim\n", 0o644))]);
    make_tree(&outside2, &[("b/keep", Node::File("keep\n", 0o644))]);
    make_tree(
        &ws,
        &[
            ("a.txt", Node::File("a\n", 0o644)),
            ("d", Node::Link(&s(&outside))),
            ("n", Node::Link(&s(&outside2))),
        ],
    );
    let (kept, up) = craft_kept(&w, &ws, "0/upper");
    std::fs::create_dir_all(up.join("d")).unwrap();
    std::fs::write(up.join("d/new.txt"), "new\n").unwrap();
    std::fs::write(up.join("d/victim"), "overwritten\n").unwrap();
    std::fs::create_dir_all(up.join("n/b")).unwrap();
    std::fs::write(up.join("n/b/c.txt"), "c\n").unwrap();
    if common::is_root() {
        // A whiteout: n/b/keep deleted.
        nix::sys::stat::mknod(
            &up.join("n/b/keep"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
    }
    own_tree(&kept);
    let before_out = snapshot(&outside);
    let before_out2 = snapshot(&outside2);
    let r = sub(&["apply".into(), s(&kept)]);
    assert!(r.code == 0 || r.code == 125, "{r:?}");
    assert_unchanged(&before_out, &outside, "apply through host symlink d");
    assert_unchanged(&before_out2, &outside2, "apply through host symlink n");
    if r.code == 0 {
        // The symlinks were replaced by real directories holding the layer's files.
        let after = snapshot(&ws);
        assert_eq!(after["d"].kind, 'd', "{after:#?}");
        assert_eq!(after["n"].kind, 'd', "{after:#?}");
        assert_eq!(
            std::fs::read_to_string(ws.join("d/new.txt")).unwrap(),
            "new\n"
        );
        assert_eq!(
            std::fs::read_to_string(ws.join("n/b/c.txt")).unwrap(),
            "c\n"
        );
        assert!(!ws.join("n/b/keep").exists());
    }
}
