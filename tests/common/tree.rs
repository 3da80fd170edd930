//! Trees on the host: building them (every entry owned by the test uid and gid, as overlayfs
//! in a user namespace needs to copy anything up), snapshots of everything in them (type,
//! mode, owner, contents, times), and checks that a tree, or /etc, did not change.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::names_in;

/// Gives `p` and everything below it to the test uid and gid, never following symlinks.
pub fn own_tree(p: &Path) {
    if !super::is_root() {
        return;
    }
    std::os::unix::fs::lchown(p, Some(super::test_uid()), Some(super::test_gid())).unwrap();
    if std::fs::symlink_metadata(p).unwrap().is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            own_tree(&e.unwrap().path());
        }
    }
}

/// What a tree entry should be.
pub enum Node<'a> {
    File(&'a str, u32),
    Dir,
    Link(&'a str),
}

/// Creates `nodes` below `root` (parents as needed, mode 0755), owned by the test uid.
pub fn make_tree(root: &Path, nodes: &[(&str, Node)]) {
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

/// One entry of a tree: [`diff`] compares everything, or everything but the times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `f`, `d`, `l` or `o`.
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// FNV-1a of a file's bytes.
    pub hash: u64,
    /// A symlink's target.
    pub target: String,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

pub type Tree = BTreeMap<String, Entry>;

/// Every path below `root` (not `root` itself) with its type, mode, owner, contents and times.
pub fn snapshot(root: &Path) -> Tree {
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
pub fn diff(a: &Tree, b: &Tree, with_times: bool) -> String {
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

pub fn assert_unchanged(before: &Tree, root: &Path, what: &str) {
    let d = diff(before, &snapshot(root), true);
    assert!(d.is_empty(), "{what}: the host tree changed:\n{d}");
}

/// Top-level names of /etc and its times, to see that nothing was written there.
pub fn etc_state() -> (BTreeSet<String>, (i64, i64), (i64, i64)) {
    let names = names_in(Path::new("/etc"));
    let m = std::fs::metadata("/etc").unwrap();
    (
        names,
        (m.mtime(), m.mtime_nsec()),
        (m.ctime(), m.ctime_nsec()),
    )
}
