//! What the overlay test files share: running sbx with its arguments as `String`s from a
//! given directory, reading change reports, and the workspace, the script that changes it in
//! every way (files, directories, renames, type changes, opaque directories, symlinks) and the
//! change report that script must produce.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::tree::{Node, make_tree};
use super::{Ran, Workdir, run_keep};

/// Runs `sbx ARGS` from `cwd` as the test uid; the returned work dir is the run's TMPDIR.
pub fn sbx_in(cwd: &Path, args: &[String]) -> (Ran, Workdir) {
    let mut s = super::sbx(args);
    s.cmd.current_dir(cwd);
    run_keep(s)
}

/// Runs `sbx ARGS -- sh -c SCRIPT` from `cwd`.
pub fn sh_in(cwd: &Path, args: &[String], script: &str) -> (Ran, Workdir) {
    let mut all = args.to_vec();
    all.extend(["--".into(), "sh".into(), "-c".into(), script.into()]);
    sbx_in(cwd, &all)
}

/// `sbx SUBCOMMAND...` (changes, apply, profile) as the test uid.
pub fn sub(args: &[String]) -> Ran {
    super::sbx(args).run()
}

/// A path as an argument.
pub fn s(p: &Path) -> String {
    p.display().to_string()
}

pub fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", p.display()))
}

/// A change as (path, kind, file_type, size).
pub type Ch = (String, String, String, u64);

pub fn changes_of(set: &Value) -> BTreeSet<Ch> {
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

pub fn expected(list: &[(&str, &str, &str, u64)]) -> BTreeSet<Ch> {
    list.iter()
        .map(|(p, k, t, n)| (p.to_string(), k.to_string(), t.to_string(), *n))
        .collect()
}

pub fn set_diff(got: &BTreeSet<Ch>, want: &BTreeSet<Ch>) -> String {
    let extra: Vec<_> = got.difference(want).collect();
    let missing: Vec<_> = want.difference(got).collect();
    format!("unexpected: {extra:#?}\nmissing: {missing:#?}")
}

/// `sbx-layers-*` entries left in a directory.
pub fn leftover_layers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("sbx-layers-"))
        .collect()
}

// ---- the workspace of the change-report and apply tests ----

pub fn workspace(ws: &Path) {
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
pub const SCRIPT: &str = "set -e
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
pub fn script_changes() -> BTreeSet<Ch> {
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
