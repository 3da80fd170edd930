//! The change report: what a command did to an overlaid tree, read from the overlay's upper
//! layer after the run. In the upper layer (mounted with `userxattr`), a character device 0:0
//! is a whiteout (the path was deleted), a directory with `user.overlay.opaque=y` replaced the
//! lower one, and anything else was added or copied up (modified).

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Added,
    Modified,
    Deleted,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Change {
    /// Relative to the overlay's root, `/`-separated.
    pub path: String,
    pub kind: Kind,
    /// `file`, `dir`, `symlink` or `other`.
    pub file_type: String,
    /// Bytes: the new size for added and modified files, the old size for deleted ones.
    pub size: u64,
    /// The path is protected (`filesystem.protect`): host tools run or trust it, and
    /// `sbx apply` refuses to write it unless told to.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
}

impl Change {
    /// The change, marked when `protected` covers its path.
    pub fn marked(mut self, protected: &[String]) -> Change {
        self.protected = super::is_protected(&self.path, protected);
        self
    }
}

/// The changes under one overlay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    /// Where the overlay was mounted in the sandbox.
    pub destination: String,
    /// The host directory under it (the lower layer).
    pub source: String,
    pub changes: Vec<Change>,
}

pub(crate) fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

pub(crate) fn is_opaque(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 4];
    crate::sys::lgetxattr(&c, c"user.overlay.opaque", &mut buf) == Ok(1) && buf[0] == b'y'
}

fn file_type(m: &fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else if t.is_symlink() {
        "symlink"
    } else {
        "other"
    }
}

fn rel(base: &Path, p: &Path) -> String {
    p.strip_prefix(base)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// Opens up a layer for reading while it lives. The command may have left directories without
/// read or search permission, or files without read permission (`chmod 000`), to hide its
/// changes; a layer's files belong to the same user as sbx, so their permissions are widened
/// for the owner and put back when this is dropped.
pub(crate) struct OpenUp {
    changed: Vec<(PathBuf, u32)>,
}

impl OpenUp {
    pub(crate) fn new(root: &Path) -> io::Result<OpenUp> {
        use std::os::unix::fs::PermissionsExt;
        let mut me = OpenUp {
            changed: Vec::new(),
        };
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let mode = fs::symlink_metadata(&dir)?.permissions().mode();
            if mode & 0o500 != 0o500 {
                fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o700))?;
                me.changed.push((dir.clone(), mode));
            }
            for e in fs::read_dir(&dir)? {
                let p = e?.path();
                let m = fs::symlink_metadata(&p)?;
                if m.is_dir() {
                    stack.push(p);
                } else if m.is_file() && m.permissions().mode() & 0o400 == 0 {
                    fs::set_permissions(
                        &p,
                        fs::Permissions::from_mode(m.permissions().mode() | 0o400),
                    )?;
                    me.changed.push((p, m.permissions().mode()));
                }
            }
        }
        Ok(me)
    }
}

impl Drop for OpenUp {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        // Deepest first, so that a parent closes after its children are restored.
        for (p, mode) in self.changed.iter().rev() {
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(*mode));
        }
    }
}

/// Every path below `dir` (not `dir` itself), depth first, as (path, metadata).
fn walk(dir: &Path, out: &mut Vec<(PathBuf, fs::Metadata)>) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let m = fs::symlink_metadata(&p)?;
        let is_dir = m.is_dir();
        out.push((p.clone(), m));
        if is_dir {
            walk(&p, out)?;
        }
    }
    Ok(())
}

/// Compares an upper layer with its lower tree.
pub fn collect(upper: &Path, lower: &Path) -> io::Result<Vec<Change>> {
    let _open = OpenUp::new(upper)?;
    let mut changes = BTreeSet::new();
    let mut entries = Vec::new();
    walk(upper, &mut entries)?;
    let mut deleted_dirs: Vec<PathBuf> = Vec::new();
    for (p, m) in &entries {
        let r = rel(upper, p);
        let below = lower.join(&r);
        let old = fs::symlink_metadata(&below).ok();
        if is_whiteout(m) {
            if let Some(old) = old {
                deleted(&below, lower, &old, &mut changes)?;
            }
            continue;
        }
        if m.is_dir() {
            match &old {
                None => {
                    changes.insert(Change {
                        path: r,
                        kind: Kind::Added,
                        file_type: "dir".into(),
                        size: 0,
                        protected: false,
                    });
                }
                Some(o) if !o.is_dir() => {
                    deleted(&below, lower, o, &mut changes)?;
                    changes.insert(Change {
                        path: r,
                        kind: Kind::Added,
                        file_type: "dir".into(),
                        size: 0,
                        protected: false,
                    });
                }
                Some(_) if is_opaque(p) => deleted_dirs.push(p.clone()),
                Some(_) => {}
            }
            continue;
        }
        let kind = match &old {
            None => Kind::Added,
            Some(o) if o.is_dir() => {
                deleted(&below, lower, o, &mut changes)?;
                Kind::Added
            }
            Some(_) => Kind::Modified,
        };
        changes.insert(Change {
            path: r,
            kind,
            file_type: file_type(m).into(),
            size: if m.is_file() { m.len() } else { 0 },
            protected: false,
        });
    }
    // An opaque directory replaced the lower one: what it hid is deleted unless the upper
    // layer has a path of the same name.
    for dir in deleted_dirs {
        let r = rel(upper, &dir);
        let mut old = Vec::new();
        walk(&lower.join(&r), &mut old)?;
        for (p, m) in old {
            let rp = rel(lower, &p);
            if fs::symlink_metadata(upper.join(&rp)).is_err() {
                changes.insert(Change {
                    path: rp,
                    kind: Kind::Deleted,
                    file_type: file_type(&m).into(),
                    size: if m.is_file() { m.len() } else { 0 },
                    protected: false,
                });
            }
        }
    }
    Ok(changes.into_iter().collect())
}

/// Records the deletion of `path` in the lower tree, and of everything below it.
fn deleted(
    path: &Path,
    lower: &Path,
    m: &fs::Metadata,
    out: &mut BTreeSet<Change>,
) -> io::Result<()> {
    out.insert(Change {
        path: rel(lower, path),
        kind: Kind::Deleted,
        file_type: file_type(m).into(),
        size: if m.is_file() { m.len() } else { 0 },
        protected: false,
    });
    if m.is_dir() {
        let mut below = Vec::new();
        walk(path, &mut below)?;
        for (p, bm) in below {
            out.insert(Change {
                path: rel(lower, &p),
                kind: Kind::Deleted,
                file_type: file_type(&bm).into(),
                size: if bm.is_file() { bm.len() } else { 0 },
                protected: false,
            });
        }
    }
    Ok(())
}
