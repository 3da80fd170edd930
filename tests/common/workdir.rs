//! Work directories and profile files owned by the test uid, and small checks of the files
//! in a directory.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{NOBODY, is_root};

/// A directory owned by the test uid, removed when dropped.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        let dir = tempfile::Builder::new()
            .prefix("sbx-test-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        chown(dir.path());
        Workdir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory's own name (its last component).
    pub fn name(&self) -> String {
        self.path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// Creates a subdirectory owned by the test uid.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        chown(&p);
        p
    }

    /// Writes a file owned by the test uid.
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, content).unwrap();
        chown(&p);
        p
    }
}

pub fn chown(path: &Path) {
    if is_root() {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    }
}

/// A profile file the test uid can read, in a work directory of its own; kept while the value
/// lives.
pub struct Profile {
    _dir: Workdir,
    pub path: String,
}

/// Writes `body` to a profile file (see [`Profile`]).
pub fn profile(body: &str) -> Profile {
    let dir = Workdir::new();
    let path = dir.file("profile.toml", body).display().to_string();
    Profile { _dir: dir, path }
}

// ---- files ----

/// File names and contents of a directory (recursively; a directory's content is None), for
/// "unchanged" checks.
pub fn tree_snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                out.insert(rel, None);
                todo.push(p);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out
}

/// The names in `dir` (not recursive).
pub fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The canonical path of `p`, as sbx names it.
pub fn canonical(p: &Path) -> String {
    std::fs::canonicalize(p).unwrap().display().to_string()
}
