//! Workspace overlays: a command writes freely in an overlaid tree while the host tree stays
//! byte-for-byte as it was; the change report lists exactly what it did; a kept upper layer
//! is reported by `sbx changes` and copied onto the host by `sbx apply`, which refuses layers
//! that would escape the tree; read-only and temporary overlays; a real build; no layers left
//! behind. Every sbx run is as the unprivileged test uid, and every file of an overlaid tree is
//! owned by that uid and gid (overlayfs in a user namespace cannot copy up anything else).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{Ran, Workdir, canonical, names_in, run_keep};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Host-side helpers: building trees, owning them, taking snapshots.

/// Gives `p` and everything below it to the test uid and gid, never following symlinks.
fn own_tree(p: &Path) {
    if !common::is_root() {
        return;
    }
    std::os::unix::fs::lchown(p, Some(common::test_uid()), Some(common::test_gid())).unwrap();
    if std::fs::symlink_metadata(p).unwrap().is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            own_tree(&e.unwrap().path());
        }
    }
}

/// What a tree entry should be.
enum Node<'a> {
    File(&'a str, u32),
    Dir,
    Link(&'a str),
}

/// Creates `nodes` below `root` (parents as needed, mode 0755), owned by the test uid.
fn make_tree(root: &Path, nodes: &[(&str, Node)]) {
    std::fs::create_dir_all(root).unwrap();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (rel, node) in nodes {
        let p = root.join(rel);
        let parent = p.parent().unwrap();
        if !parent.exists() {
            std::fs::create_dir_all(parent).unwrap();
        }
        match node {
            Node::File(content, mode) => {
                std::fs::write(&p, content).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            Node::Dir => {
                std::fs::create_dir_all(&p).unwrap();
            }
            Node::Link(target) => std::os::unix::fs::symlink(target, &p).unwrap(),
        }
    }
    // Directories made by create_dir_all follow the umask: make them all 0755.
    fn dirs_755(p: &Path) {
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
                dirs_755(&e.path());
            }
        }
    }
    dirs_755(root);
    own_tree(root);
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One entry of a tree: everything but the times is compared by `same_content`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// `f`, `d`, `l` or `o`.
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    /// FNV-1a of a file's bytes.
    hash: u64,
    /// A symlink's target.
    target: String,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

type Tree = BTreeMap<String, Entry>;

/// Every path below `root` (not `root` itself) with its type, mode, owner, contents and times.
fn snapshot(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let t = m.file_type();
            let (kind, hash, target) = if t.is_dir() {
                todo.push(p.clone());
                ('d', 0, String::new())
            } else if t.is_file() {
                ('f', fnv1a(&std::fs::read(&p).unwrap()), String::new())
            } else if t.is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                ('l', 0, target.display().to_string())
            } else {
                ('o', 0, String::new())
            };
            out.insert(
                p.strip_prefix(root).unwrap().display().to_string(),
                Entry {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    size: if kind == 'f' { m.len() } else { 0 },
                    hash,
                    target,
                    mtime: (m.mtime(), m.mtime_nsec()),
                    ctime: (m.ctime(), m.ctime_nsec()),
                },
            );
        }
    }
    out
}

/// The differences between two snapshots, for assertion messages ("" if none).
fn diff(a: &Tree, b: &Tree, with_times: bool) -> String {
    let strip = |e: &Entry| {
        let mut e = e.clone();
        if !with_times {
            e.mtime = (0, 0);
            e.ctime = (0, 0);
        }
        e
    };
    let mut out = String::new();
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if strip(x) == strip(y) => {}
            (Some(x), Some(y)) => out += &format!("  {k}: {x:?}\n    vs {y:?}\n"),
            (Some(_), None) => out += &format!("  {k}: only in the first\n"),
            (None, Some(_)) => out += &format!("  {k}: only in the second\n"),
            (None, None) => unreachable!(),
        }
    }
    out
}

fn assert_unchanged(before: &Tree, root: &Path, what: &str) {
    let d = diff(before, &snapshot(root), true);
    assert!(d.is_empty(), "{what}: the host tree changed:\n{d}");
}

/// Top-level names of /etc and its times, to see that nothing was written there.
fn etc_state() -> (BTreeSet<String>, (i64, i64), (i64, i64)) {
    let names = names_in(Path::new("/etc"));
    let m = std::fs::metadata("/etc").unwrap();
    (
        names,
        (m.mtime(), m.mtime_nsec()),
        (m.ctime(), m.ctime_nsec()),
    )
}

// ---------------------------------------------------------------------------------------------
// Running sbx.

/// Runs `sbx ARGS` from `cwd` as the test uid; the returned work dir is the run's TMPDIR.
fn sbx_in(cwd: &Path, args: &[String]) -> (Ran, Workdir) {
    let mut s = common::sbx(args);
    s.cmd.current_dir(cwd);
    run_keep(s)
}

/// Runs `sbx ARGS -- sh -c SCRIPT` from `cwd`.
fn sh_in(cwd: &Path, args: &[String], script: &str) -> (Ran, Workdir) {
    let mut all = args.to_vec();
    all.extend(["--".into(), "sh".into(), "-c".into(), script.into()]);
    sbx_in(cwd, &all)
}

/// `sbx SUBCOMMAND...` (changes, apply, profile) as the test uid.
fn sub(args: &[String]) -> Ran {
    common::sbx(args).run()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", p.display()))
}

/// A change as (path, kind, file_type, size).
type Ch = (String, String, String, u64);

fn changes_of(set: &Value) -> BTreeSet<Ch> {
    set["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes in {set}"))
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_string(),
                c["kind"].as_str().unwrap().to_string(),
                c["file_type"].as_str().unwrap().to_string(),
                c["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn expected(list: &[(&str, &str, &str, u64)]) -> BTreeSet<Ch> {
    list.iter()
        .map(|(p, k, t, n)| (p.to_string(), k.to_string(), t.to_string(), *n))
        .collect()
}

fn set_diff(got: &BTreeSet<Ch>, want: &BTreeSet<Ch>) -> String {
    let extra: Vec<_> = got.difference(want).collect();
    let missing: Vec<_> = want.difference(got).collect();
    format!("unexpected: {extra:#?}\nmissing: {missing:#?}")
}

/// `sbx-layers-*` entries left in a directory.
fn leftover_layers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("sbx-layers-"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The workspace used by the change-report and apply tests.

fn workspace(ws: &Path) {
    make_tree(
        ws,
        &[
            ("keep.txt", Node::File("unchanged\n", 0o644)),
            ("mod.txt", Node::File("old content\n", 0o644)),
            ("trunc.txt", Node::File("0123456789\n", 0o644)),
            ("del.txt", Node::File("delete me\n", 0o644)),
            ("ren.txt", Node::File("rename me\n", 0o600)),
            ("perm.sh", Node::File("#!/bin/sh\n", 0o644)),
            (".hidden", Node::File("h\n", 0o644)),
            ("dir_del/a", Node::File("a\n", 0o644)),
            ("dir_del/b/c", Node::File("c\n", 0o644)),
            ("dir_ren/x", Node::File("x\n", 0o644)),
            ("sub/deep/file.txt", Node::File("deep\n", 0o644)),
            ("sub/other.txt", Node::File("other\n", 0o644)),
            ("f2d", Node::File("was a file\n", 0o644)),
            ("d2f/inner", Node::File("inner\n", 0o644)),
            ("opq/old1", Node::File("1\n", 0o644)),
            ("opq/keepname", Node::File("k\n", 0o644)),
            ("link_old", Node::Link("keep.txt")),
            ("emptydir", Node::Dir),
        ],
    );
}

/// Creates, modifies, deletes and renames files and directories (cwd: the workspace).
const SCRIPT: &str = "set -e
printf 'appended\\n' >> mod.txt
: > trunc.txt
rm del.txt
mv ren.txt renamed.txt
chmod 755 perm.sh
printf 'H\\n' > .hidden
rm -r dir_del
mv dir_ren dir_renamed
printf 'more\\n' >> sub/deep/file.txt
mkdir -p newdir/inner
printf 'n\\n' > newdir/inner/n.txt
head -c 5000 /dev/zero > new.bin
rm f2d; mkdir f2d; printf 'in\\n' > f2d/in
rm -r d2f; printf 'now a file\\n' > d2f
rm -r opq; mkdir opq; printf 'K\\n' > opq/keepname; printf 'fresh\\n' > opq/fresh
rm link_old
ln -s keep.txt link_new
mkdir tmpdir; printf t > tmpdir/t; mv tmpdir/t tmpdir/u; mv tmpdir tmpdir2
rmdir emptydir
";

/// What SCRIPT did, as the change report should say it.
fn script_changes() -> BTreeSet<Ch> {
    expected(&[
        (".hidden", "modified", "file", 2),
        ("d2f", "deleted", "dir", 0),
        ("d2f/inner", "deleted", "file", 6),
        ("d2f", "added", "file", 11),
        ("del.txt", "deleted", "file", 10),
        ("dir_del", "deleted", "dir", 0),
        ("dir_del/a", "deleted", "file", 2),
        ("dir_del/b", "deleted", "dir", 0),
        ("dir_del/b/c", "deleted", "file", 2),
        ("dir_ren", "deleted", "dir", 0),
        ("dir_ren/x", "deleted", "file", 2),
        ("dir_renamed", "added", "dir", 0),
        ("dir_renamed/x", "added", "file", 2),
        ("emptydir", "deleted", "dir", 0),
        ("f2d", "deleted", "file", 11),
        ("f2d", "added", "dir", 0),
        ("f2d/in", "added", "file", 3),
        ("link_new", "added", "symlink", 0),
        ("link_old", "deleted", "symlink", 0),
        ("mod.txt", "modified", "file", 21),
        ("new.bin", "added", "file", 5000),
        ("newdir", "added", "dir", 0),
        ("newdir/inner", "added", "dir", 0),
        ("newdir/inner/n.txt", "added", "file", 2),
        ("opq/old1", "deleted", "file", 2),
        ("opq/keepname", "modified", "file", 2),
        ("opq/fresh", "added", "file", 6),
        ("perm.sh", "modified", "file", 10),
        ("ren.txt", "deleted", "file", 10),
        ("renamed.txt", "added", "file", 10),
        ("sub/deep/file.txt", "modified", "file", 10),
        ("tmpdir2", "added", "dir", 0),
        ("tmpdir2/u", "added", "file", 1),
        ("trunc.txt", "modified", "file", 0),
    ])
}

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
// 1. The host tree stays as it was; the change report lists exactly what the command did.

#[test]
fn writes_in_an_overlay_leave_the_host_tree_untouched_and_are_reported() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    workspace(&ws);
    let ws_c = canonical(&ws);
    let before = snapshot(&ws);
    let changes = w.path().join("changes.json");
    let status = w.path().join("status.json");
    let (r, work) = sh_in(
        &ws,
        &[
            "--overlay".into(),
            ws_c.clone(),
            "--changes".into(),
            s(&changes),
            "--json-status".into(),
            s(&status),
        ],
        &format!(
            "{SCRIPT}
pwd; cat mod.txt; cat renamed.txt; ls dir_renamed; cat opq/keepname
test ! -e del.txt && test ! -e dir_del && test -d f2d && test -f d2f && echo SEEN-OK"
        ),
    );
    assert_eq!(r.code, 0, "{r:?}");
    // The command saw its own writes.
    assert!(
        r.stdout
            .starts_with(&format!("{ws_c}\nold content\nappended\nrename me\nx\nK\n")),
        "{r:?}"
    );
    assert!(r.stdout.contains("SEEN-OK"), "{r:?}");

    // The host tree: the same paths, modes, owners, contents and times.
    assert_unchanged(&before, &ws, "after an overlaid run");

    let want = script_changes();
    let report = read_json(&changes);
    let sets = report.as_array().unwrap_or_else(|| panic!("{report}"));
    assert_eq!(sets.len(), 1, "{report:#}");
    assert_eq!(sets[0]["destination"], ws_c.as_str(), "{report:#}");
    assert_eq!(sets[0]["source"], ws_c.as_str(), "{report:#}");
    let got = changes_of(&sets[0]);
    assert_eq!(got, want, "--changes:\n{}", set_diff(&got, &want));

    // The run report carries the same change sets.
    let st = read_json(&status);
    assert_eq!(st["exit_code"], 0, "{st:#}");
    assert_eq!(st["changes"], report, "run report vs --changes");
    assert!(
        leftover_layers(work.path()).is_empty(),
        "layers left behind"
    );
}

#[test]
fn overlay_at_another_destination_reports_it_and_leaves_the_source_alone() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let ws_c = canonical(&ws);
    let before = snapshot(&ws);
    let changes = w.path().join("changes.json");
    let (r, _work) = sh_in(
        w.path(),
        &[
            "--overlay".into(),
            format!("{ws_c}:/view"),
            "--chdir".into(),
            "/view".into(),
            "--changes".into(),
            s(&changes),
        ],
        "echo b > b.txt && echo more >> a.txt && cat a.txt && pwd",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "a\nmore\n/view\n", "{r:?}");
    assert_unchanged(&before, &ws, "overlay at /view");
    let report = read_json(&changes);
    assert_eq!(report[0]["destination"], "/view", "{report:#}");
    assert_eq!(report[0]["source"], ws_c.as_str(), "{report:#}");
    assert_eq!(
        changes_of(&report[0]),
        expected(&[
            ("a.txt", "modified", "file", 7),
            ("b.txt", "added", "file", 2)
        ])
    );
}

/// The overlay's root should look like the host directory it shows (mode, owner).
#[test]
fn overlay_root_has_the_host_directory_mode() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    std::fs::set_permissions(&ws, std::fs::Permissions::from_mode(0o750)).unwrap();
    let (r, _work) = sh_in(
        &ws,
        &["--overlay".into(), canonical(&ws)],
        "stat -c '%a %u %g' . && stat -c '%a %u %g' a.txt",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let (uid, gid) = (common::test_uid(), common::test_gid());
    assert_eq!(
        r.stdout,
        format!("750 {uid} {gid}\n644 {uid} {gid}\n"),
        "the overlaid root does not look like the host directory: {r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. --keep-changes, `sbx changes`, `sbx apply`.

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
// 3. Malicious upper layers are refused by `sbx apply` before anything is written.

/// A hand-made kept directory `DIR/kept` whose only overlay is `tree` with the upper layer at
/// `upper` (relative to the kept directory); returns (kept dir, upper dir).
fn craft_kept(w: &Workdir, tree: &Path, upper: &str) -> (PathBuf, PathBuf) {
    let kept = w.path().join("kept");
    std::fs::create_dir_all(&kept).unwrap();
    let meta = serde_json::json!({
        "schema": 1,
        "overlays": [{ "destination": canonical(tree), "source": canonical(tree), "upper": upper }],
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

// ---------------------------------------------------------------------------------------------
// 4. Read-only overlays.

#[test]
fn ro_overlay_reads_but_refuses_writes() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(
        &ws,
        &[
            ("keep.txt", Node::File("keep\n", 0o644)),
            ("sub/f", Node::File("f\n", 0o644)),
        ],
    );
    let before = snapshot(&ws);
    let changes = w.path().join("changes.json");
    let (r, work) = sh_in(
        &ws,
        &[
            "--ro-overlay".into(),
            canonical(&ws),
            "--changes".into(),
            s(&changes),
        ],
        "cat keep.txt sub/f
for op in 'echo x > new.txt' 'echo y >> keep.txt' 'rm keep.txt' 'mkdir nd' 'touch keep.txt' \
          'mv sub/f sub/g' 'chmod 600 keep.txt' 'ln -s keep.txt l'; do
  if sh -c \"$op\" 2>>/tmp/err; then echo \"WROTE: $op\"; fi
done
grep -c 'Read-only file system' /tmp/err
cat /tmp/err >&2",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "keep\nf\n8\n", "{r:?}");
    assert_unchanged(&before, &ws, "--ro-overlay");
    assert_eq!(read_json(&changes), serde_json::json!([]));
    assert!(
        leftover_layers(work.path()).is_empty(),
        "a read-only overlay made layers"
    );
}

#[test]
fn ro_overlay_profile_merges_lower_layers_first_wins() {
    let w = Workdir::new();
    let a = w.path().join("a");
    let b = w.path().join("b");
    make_tree(
        &a,
        &[
            ("clash.txt", Node::File("from A\n", 0o644)),
            ("only_a.txt", Node::File("a\n", 0o644)),
            ("sub/in_a", Node::File("ia\n", 0o644)),
        ],
    );
    make_tree(
        &b,
        &[
            ("clash.txt", Node::File("from B\n", 0o644)),
            ("only_b.txt", Node::File("b\n", 0o644)),
            ("sub/in_b", Node::File("ib\n", 0o644)),
        ],
    );
    let (before_a, before_b) = (snapshot(&a), snapshot(&b));
    let profile = w.file(
        "ro.toml",
        &format!(
            "extends = [\"default\"]\n\n[[filesystem.overlay]]\nsrc = \"{}\"\ndst = \"/merged\"\n\
             mode = \"ro\"\nlower = [\"{}\"]\n",
            canonical(&a),
            canonical(&b)
        ),
    );
    let (r, _work) = sh_in(
        w.path(),
        &["--profile".into(), s(&profile)],
        "cd /merged && cat clash.txt only_a.txt only_b.txt sub/in_a sub/in_b && ls -A . sub
echo x > new.txt || echo REFUSED",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout,
        "from A\na\nb\nia\nib\n.:\nclash.txt\nonly_a.txt\nonly_b.txt\nsub\n\nsub:\nin_a\nin_b\nREFUSED\n",
        "{r:?}"
    );
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    assert_unchanged(&before_a, &a, "ro overlay upper lower");
    assert_unchanged(&before_b, &b, "ro overlay second lower");
}

// ---------------------------------------------------------------------------------------------
// 5. Temporary overlays.

#[test]
fn tmp_overlay_writes_vanish_and_are_size_limited() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("keep.txt", Node::File("keep\n", 0o644))]);
    let before = snapshot(&ws);
    let changes = w.path().join("changes.json");
    let status = w.path().join("status.json");
    // The overlay's writes share the sandbox's one tmpfs budget with /tmp: head's message goes
    // straight to stderr, since a full budget leaves no room to keep it in a file.
    let (r, work) = sh_in(
        &ws,
        &[
            "--tmp-overlay".into(),
            canonical(&ws),
            "--limit".into(),
            "tmpfs_size=1M".into(),
            "--changes".into(),
            s(&changes),
            "--json-status".into(),
            s(&status),
        ],
        "set -e; echo small > small.txt; echo more >> keep.txt; mkdir d; echo x > d/x
cat small.txt keep.txt
if head -c 2097152 /dev/zero > big.bin; then echo WROTE-BIG; fi",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "small\nkeep\nmore\n", "{r:?}");
    assert!(r.stderr.contains("No space left on device"), "{r:?}");
    assert_unchanged(&before, &ws, "--tmp-overlay");
    assert_eq!(
        read_json(&changes),
        serde_json::json!([]),
        "tmp overlays are not reported"
    );
    assert_eq!(read_json(&status)["changes"], serde_json::json!([]));
    assert!(leftover_layers(work.path()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 6. A real build.

#[test]
fn make_in_an_overlay_builds_and_leaves_outputs_only_in_the_report() {
    for tool in ["/usr/bin/make", "/usr/bin/cc"] {
        if !Path::new(tool).exists() {
            common::note_skip("make_in_an_overlay", &format!("{tool} is missing"));
            return;
        }
    }
    let w = Workdir::new();
    let ws = w.path().join("proj");
    make_tree(
        &ws,
        &[
            (
                "main.c",
                Node::File(
                    "#include <stdio.h>\n#include \"util.h\"\n\
                     int main(void) { printf(\"answer %d\\n\", answer()); return 0; }\n",
                    0o644,
                ),
            ),
            (
                "util.c",
                Node::File(
                    "#include \"util.h\"\nint answer(void) { return 42; }\n",
                    0o644,
                ),
            ),
            ("util.h", Node::File("int answer(void);\n", 0o644)),
            (
                "Makefile",
                Node::File(
                    "hello: main.o util.o\n\t$(CC) -o $@ main.o util.o\n\n\
                     %.o: %.c util.h\n\t$(CC) -c -o $@ $<\n",
                    0o644,
                ),
            ),
        ],
    );
    let before = snapshot(&ws);
    let changes = w.path().join("changes.json");
    let (r, work) = sh_in(
        &ws,
        &[
            "--overlay".into(),
            canonical(&ws),
            "--changes".into(),
            s(&changes),
        ],
        "make && ./hello",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.ends_with("answer 42\n"), "{r:?}");
    assert_unchanged(&before, &ws, "make in an overlay");
    for out in ["hello", "main.o", "util.o"] {
        assert!(!ws.join(out).exists(), "{out} reached the host");
    }
    let report = read_json(&changes);
    let got: BTreeSet<(String, String, String)> = changes_of(&report[0])
        .into_iter()
        .map(|(p, k, t, n)| {
            assert!(n > 0, "{p} is empty");
            (p, k, t)
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = ["hello", "main.o", "util.o"]
        .into_iter()
        .map(|p| (p.into(), "added".into(), "file".into()))
        .collect();
    assert_eq!(got, want, "{report:#}");
    assert!(leftover_layers(work.path()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 7. The private layers directory never outlives the run.

#[test]
fn private_layers_are_removed_however_the_run_ends() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let ws_c = canonical(&ws);
    let status = w.path().join("status.json");
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            "--overlay".to_string(),
            ws_c.clone(),
            "--json-status".into(),
            s(&status),
        ];
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    // Nothing written: one change set, empty.
    let (r, work) = sh_in(&ws, &base(&[]), "cat a.txt");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(leftover_layers(work.path()).is_empty());
    assert_eq!(
        read_json(&status)["changes"],
        serde_json::json!([{ "destination": ws_c, "source": ws_c, "changes": [] }])
    );
    // The command locks its files away and fails.
    let (r, work) = sh_in(
        &ws,
        &base(&[]),
        "mkdir -p locked/inner && echo x > locked/inner/f && chmod 000 locked/inner && \
         chmod 500 locked && chmod 400 a.txt && exit 3",
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert!(leftover_layers(work.path()).is_empty(), "{r:?}");
    // Killed by the wall-clock limit.
    let (r, work) = sh_in(&ws, &base(&["--timeout", "1s"]), "echo x > t; sleep 30");
    assert_eq!(r.code, 124, "{r:?}");
    assert!(leftover_layers(work.path()).is_empty(), "{r:?}");
    // The command is not found.
    let mut args = base(&[]);
    args.extend(["--".into(), "/nonexistent-command".into()]);
    let (r, work) = sbx_in(&ws, &args);
    assert_eq!(r.code, 127, "{r:?}");
    assert!(leftover_layers(work.path()).is_empty(), "{r:?}");
    // Setup fails after the layers were made (a missing bind source).
    let (r, work) = sh_in(&ws, &base(&["--bind", "/nonexistent-sbx-src"]), "true");
    assert_eq!(r.code, 125, "{r:?}");
    assert!(leftover_layers(work.path()).is_empty(), "{r:?}");
    assert_unchanged(&snapshot(&ws), &ws, "");
    assert_eq!(std::fs::read_to_string(ws.join("a.txt")).unwrap(), "a\n");
    assert!(!ws.join("locked").exists() && !ws.join("t").exists());
}

#[test]
fn an_upper_layer_inside_the_overlaid_tree_is_refused() {
    let w = Workdir::new();
    let ws = w.path().join("ws");
    make_tree(&ws, &[("a.txt", Node::File("a\n", 0o644))]);
    let before = snapshot(&ws);
    let (r, _work) = sh_in(
        &ws,
        &[
            "--overlay".into(),
            canonical(&ws),
            "--keep-changes".into(),
            s(&ws.join("kept")),
        ],
        "echo RAN",
    );
    assert_eq!(r.code, 125, "{r:?}");
    assert!(!r.stdout.contains("RAN"), "{r:?}");
    // sbx creates the (empty) kept directory before it sees the nesting; nothing else.
    let after = snapshot(&ws);
    let extra: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(
        extra.iter().all(|k| k.as_str() == "kept"),
        "wrote into the tree: {extra:?}"
    );

    // The same with the private layers: TMPDIR inside the tree.
    let before = snapshot(&ws);
    let mut s = common::sbx(["--overlay", &canonical(&ws), "--", "sh", "-c", "echo RAN"]);
    s.cmd.current_dir(&ws).env("TMPDIR", &ws);
    let r = s.run();
    assert_eq!(r.code, 125, "{r:?}");
    assert!(
        !r.stdout.contains("RAN") && r.stderr.contains("TMPDIR"),
        "{r:?}"
    );
    let d = diff(&before, &snapshot(&ws), false);
    assert!(d.is_empty(), "TMPDIR inside the tree: left\n{d}");
}

// ---------------------------------------------------------------------------------------------
// 8. The profile form.

#[test]
fn profile_overlay_with_changes_behaves_like_the_flags() {
    let w = Workdir::new();
    let ws1 = w.path().join("ws1");
    let ws2 = w.path().join("ws2");
    workspace(&ws1);
    workspace(&ws2);
    let (c1, c2) = (canonical(&ws1), canonical(&ws2));
    let kept1 = w.path().join("kept1");
    let kept2 = w.path().join("kept2");
    let profile = w.file(
        "ov.toml",
        &format!(
            "extends = [\"default\"]\n\n[filesystem]\nchanges = \"{}\"\n\n\
             [[filesystem.overlay]]\nsrc = \"{c1}\"\n",
            s(&kept1)
        ),
    );
    let (before1, before2) = (snapshot(&ws1), snapshot(&ws2));

    let (r, _work) = sh_in(&ws1, &["--profile".into(), s(&profile)], SCRIPT);
    assert_eq!(r.code, 0, "{r:?}");
    let (r2, _work) = sh_in(
        &ws2,
        &[
            "--overlay".into(),
            c2.clone(),
            "--keep-changes".into(),
            s(&kept2),
        ],
        SCRIPT,
    );
    assert_eq!(r2.code, 0, "{r2:?}");
    assert_unchanged(&before1, &ws1, "profile overlay");
    assert_unchanged(&before2, &ws2, "flag overlay");

    let r = sub(&["changes".into(), s(&kept1), "--json".into()]);
    assert_eq!(r.code, 0, "{r:?}");
    let j1: Value = serde_json::from_str(&r.stdout).unwrap();
    let r = sub(&["changes".into(), s(&kept2), "--json".into()]);
    assert_eq!(r.code, 0, "{r:?}");
    let j2: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j1[0]["source"], c1.as_str());
    assert_eq!(j1[0]["destination"], c1.as_str());
    let want = script_changes();
    let got = changes_of(&j1[0]);
    assert_eq!(got, want, "{}", set_diff(&got, &want));
    assert_eq!(changes_of(&j2[0]), want);

    // Both kept layers apply to the same tree.
    for k in [&kept1, &kept2] {
        let r = sub(&["apply".into(), s(k)]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    let d = diff(&snapshot(&ws1), &snapshot(&ws2), false);
    assert!(d.is_empty(), "profile vs flags after apply:\n{d}");

    // `profile show` prints the overlay and `changes` back as TOML that loads identically.
    // Run from `w`, so that the default's `${CWD}` is a directory that still exists.
    let show = |file: &Path| sbx_in(w.path(), &["profile".into(), "show".into(), s(file)]).0;
    let r = show(&profile);
    assert_eq!(r.code, 0, "{r:?}");
    let v: toml::Value = toml::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{r:?}"));
    let fs = &v["filesystem"];
    assert_eq!(fs["changes"].as_str(), Some(s(&kept1).as_str()), "{r:?}");
    let ov = fs["overlay"].as_array().unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(ov.len(), 1, "{r:?}");
    assert_eq!(ov[0]["src"].as_str(), Some(c1.as_str()), "{r:?}");
    assert!(
        ov[0].get("mode").is_none_or(|m| m.as_str() == Some("rw")),
        "{r:?}"
    );
    let shown = w.file("shown.toml", &r.stdout);
    let again = show(&shown);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.stdout, r.stdout, "shown profile does not load back");
    let check = sbx_in(w.path(), &["profile".into(), "check".into(), s(&shown)]).0;
    assert_eq!(check.code, 0, "{check:?}");

    // Every mode round-trips, with dst and lower.
    let all = w.file(
        "all.toml",
        &format!(
            "extends = [\"default\"]\n\n[[filesystem.overlay]]\nsrc = \"{c1}\"\ndst = \"/v1\"\n\
             mode = \"ro\"\nlower = [\"{c2}\"]\n\n[[filesystem.overlay]]\nsrc = \"{c2}\"\n\
             dst = \"/v2\"\nmode = \"tmp\"\n"
        ),
    );
    let r = show(&all);
    assert_eq!(r.code, 0, "{r:?}");
    let v: toml::Value = toml::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{r:?}"));
    let ov = v["filesystem"]["overlay"].as_array().unwrap();
    assert_eq!(ov.len(), 2, "{r:?}");
    assert_eq!(ov[0]["dst"].as_str(), Some("/v1"));
    assert_eq!(ov[0]["mode"].as_str(), Some("ro"));
    assert_eq!(ov[0]["lower"][0].as_str(), Some(c2.as_str()));
    assert_eq!(ov[1]["mode"].as_str(), Some("tmp"));
    let shown = w.file("all-shown.toml", &r.stdout);
    let again = show(&shown);
    assert_eq!(again.stdout, r.stdout, "{again:?}");
}
