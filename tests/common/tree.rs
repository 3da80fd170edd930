//! Trees on the host: building them (every entry owned by the test uid and gid, as overlayfs
//! in a user namespace needs to copy anything up), snapshots of everything in them (type,
//! mode, owner, contents, times) or a listing of their entries, and checks that a tree, /etc
//! or the host's mount table did not change.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

// ---- listings and the host's mount table ----

/// The host's mount table (this process's mount namespace is the host's).
pub fn host_mounts() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Fails the test if the host's mount table is not `before`.
pub fn assert_mounts_unchanged(before: &BTreeSet<String>, what: &str) {
    let after = host_mounts();
    let added: Vec<_> = after.difference(before).collect();
    let removed: Vec<_> = before.difference(&after).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "{what}: the host's mount table changed: added {added:#?}, removed {removed:#?}"
    );
}

/// Everything under `dir` (not following symlinks): relative path → kind and size/target.
/// Unlike [`snapshot`], it tolerates entries that vanish while it reads.
pub fn listing(dir: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_path_buf();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                format!("symlink -> {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                "dir".to_string()
            } else if ft.is_file() {
                format!("file {} bytes", m.len())
            } else {
                format!("special {:?}", ft)
            };
            out.insert(rel, what);
            if ft.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Host state to compare after a hostile run: the attacked directories and the mount table.
pub struct HostState {
    dirs: Vec<(PathBuf, BTreeMap<PathBuf, String>)>,
    mounts: BTreeSet<String>,
}

impl HostState {
    pub fn take(dirs: &[&Path]) -> HostState {
        HostState {
            dirs: dirs.iter().map(|d| (d.to_path_buf(), listing(d))).collect(),
            mounts: host_mounts(),
        }
    }

    pub fn assert_unchanged(&self, what: &str) {
        for (d, before) in &self.dirs {
            assert_eq!(
                &listing(d),
                before,
                "{what}: {} changed on the host",
                d.display()
            );
        }
        assert_mounts_unchanged(&self.mounts, what);
    }
}

/// Makes `link` a symlink to `target`.
pub fn symlink(target: impl AsRef<Path>, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// `/etc` as the sandbox sees it should be the host's, read-only: a mount through a planted
/// symlink would hide it.
pub const ETC_CHECK: &str = "test -f /etc/passwd && test -f /etc/hostname && echo etc-intact";
