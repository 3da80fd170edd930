//! The change report: what a command did to an overlaid tree, read from the overlay's upper
//! layer after the run. In the upper layer (mounted with `userxattr`), a character device 0:0
//! is a whiteout (the path was deleted), a directory with `user.overlay.opaque=y` replaced the
//! lower one, and anything else was added or copied up (modified).
//!
//! Both layers are walked through descriptors ([`super::walk`]), the lower one only after its
//! root was checked to be the directory the run overlaid. Names are bytes: a name that is not
//! UTF-8 keeps its exact bytes beside its text, so two such names stay two entries. What
//! cannot be read makes the report incomplete, with the reason, instead of empty.

use std::collections::{BTreeSet, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::FileStat;
use serde::{Deserialize, Serialize};

use super::SourceId;
use super::beneath::{self, AtError};
use super::walk::{Reader, walk};
use crate::text;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Added,
    Modified,
    Deleted,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Change {
    /// Relative to the overlay's root, `/`-separated. A name that is not valid UTF-8 has
    /// U+FFFD in place of each invalid sequence here, and its exact bytes in `path_bytes`.
    pub path: String,
    /// The exact bytes of `path`, only when they are not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_bytes: Option<Vec<u8>>,
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
    /// The change of kind `kind` to the entry `rel`, which is (or, deleted, was) `st`.
    pub(crate) fn new(rel: &[u8], kind: Kind, st: &FileStat) -> Change {
        let (path, path_bytes) = match std::str::from_utf8(rel) {
            Ok(s) => (s.to_string(), None),
            Err(_) => (
                String::from_utf8_lossy(rel).into_owned(),
                Some(rel.to_vec()),
            ),
        };
        let file_type = beneath::type_name(st);
        Change {
            path,
            path_bytes,
            kind,
            file_type: file_type.into(),
            size: if file_type == "file" {
                st.st_size as u64
            } else {
                0
            },
            protected: false,
        }
    }

    /// The path's exact bytes.
    pub fn name(&self) -> &[u8] {
        self.path_bytes.as_deref().unwrap_or(self.path.as_bytes())
    }

    /// The path escaped for a terminal.
    pub fn shown(&self) -> String {
        text::escape_bytes(self.name())
    }

    /// The change, marked when `protected` covers its path.
    pub fn marked(mut self, protected: &[String]) -> Change {
        self.protected = super::is_protected(self.name(), protected);
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
    /// Set when the report could not be completed: why (names escaped). `changes` then holds
    /// what could be read, and `sbx apply` refuses the layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
}

/// What the command changed under the overlay whose upper layer is `upper` and whose lower
/// tree is `lower`, which must still be the directory `expect` (None: an older record that
/// cannot tell, said in the result). Never fails: what cannot be read is the set's
/// `incomplete` reason.
pub fn collect(
    upper: &Path,
    lower: &Path,
    expect: Option<SourceId>,
) -> (Vec<Change>, Option<String>) {
    let mut r = Reader::new();
    let upper_fd = match beneath::open_dir_path(upper) {
        Ok(fd) => fd,
        Err(e) => {
            let why = format!(
                "cannot open the upper layer {}: {e}",
                text::escape_path(upper)
            );
            return (Vec::new(), Some(why));
        }
    };
    let lower_fd = match beneath::open_dir_path(lower) {
        Ok(fd) => fd,
        Err(e) => {
            let why = format!(
                "cannot open the overlaid directory {}: {e}",
                text::escape_path(lower)
            );
            return (Vec::new(), Some(why));
        }
    };
    match (expect, beneath::stat_fd(&lower_fd)) {
        (Some(id), Ok(st)) if SourceId::of_stat(&st) == id => {}
        (Some(id), Ok(st)) => {
            let why = super::replaced(lower, id, SourceId::of_stat(&st));
            return (Vec::new(), Some(why));
        }
        (Some(_), Err(e)) => r.problems.add(b"", e),
        (None, _) => r.problems.note(format!(
            "the record does not say which directory {} was when the run started (written by \
             an older sbx), so it may have been replaced since",
            text::escape_path(lower)
        )),
    }
    let mut c = Collect::default();
    walk(&mut r, upper_fd, Some(lower_fd), true, |r, e, lower| {
        c.visit(r, e, lower.as_ref())
    });
    // An opaque directory replaced the lower one: what it hid is deleted unless the upper
    // layer has a path of the same name.
    for (rel, change) in std::mem::take(&mut c.hidden) {
        if !c.seen.contains(&rel) {
            c.changes.insert(change);
        }
    }
    (c.changes.into_iter().collect(), r.problems.reason())
}

#[derive(Default)]
struct Collect {
    changes: BTreeSet<Change>,
    /// Every path of the upper layer.
    seen: HashSet<Vec<u8>>,
    /// What opaque directories hid, deleted unless the upper layer has the same path.
    hidden: Vec<(Vec<u8>, Change)>,
}

impl Collect {
    /// One entry of the upper layer, against the lower directory at the same place (None
    /// where the lower tree has no directory there); returns the lower directory to enter
    /// a directory with.
    fn visit(
        &mut self,
        r: &mut Reader,
        e: &super::walk::Entry<'_>,
        lower: Option<&OwnedFd>,
    ) -> Option<Option<OwnedFd>> {
        self.seen.insert(e.rel.to_vec());
        let old = lower.and_then(|l| match beneath::stat_at(l.as_fd(), e.name) {
            Ok(st) => Some(st),
            Err(AtError::Errno(nix::errno::Errno::ENOENT)) => None,
            Err(err) => {
                r.problems
                    .add(e.rel, format_args!("in the overlaid directory: {err}"));
                None
            }
        });
        if beneath::is_whiteout(e.st) {
            if let Some(o) = &old {
                let below = open_below(r, lower, e, old.as_ref());
                self.deleted(r, e.rel, o, below);
            }
            return None;
        }
        if beneath::is_dir(e.st) {
            let below = open_below(r, lower, e, old.as_ref());
            match &old {
                None => {
                    self.changes.insert(Change::new(e.rel, Kind::Added, e.st));
                }
                Some(o) if !beneath::is_dir(o) => {
                    self.deleted(r, e.rel, o, None);
                    self.changes.insert(Change::new(e.rel, Kind::Added, e.st));
                }
                Some(_) if e.dir.is_some_and(beneath::is_opaque) => {
                    if let Some(fd) = below.as_ref().and_then(|b| b.try_clone().ok()) {
                        let mut hidden = BTreeSet::new();
                        below_deleted(r, e.rel, fd, &mut hidden);
                        self.hidden
                            .extend(hidden.into_iter().map(|c| (c.name().to_vec(), c)));
                    }
                }
                Some(_) => {}
            }
            return Some(below);
        }
        let kind = match &old {
            None => Kind::Added,
            Some(o) if beneath::is_dir(o) => {
                let below = open_below(r, lower, e, old.as_ref());
                self.deleted(r, e.rel, o, below);
                Kind::Added
            }
            Some(_) => Kind::Modified,
        };
        self.changes.insert(Change::new(e.rel, kind, e.st));
        None
    }

    /// Records the deletion of the lower entry `rel` (`st`), and of everything below it when
    /// it is a directory (opened as `below`).
    fn deleted(&mut self, r: &mut Reader, rel: &[u8], st: &FileStat, below: Option<OwnedFd>) {
        self.changes.insert(Change::new(rel, Kind::Deleted, st));
        if let Some(fd) = below {
            below_deleted(r, rel, fd, &mut self.changes);
        }
    }
}

/// The lower directory `old` at the place of `e`, opened; None when it is no directory.
fn open_below(
    r: &mut Reader,
    lower: Option<&OwnedFd>,
    e: &super::walk::Entry<'_>,
    old: Option<&FileStat>,
) -> Option<OwnedFd> {
    let (l, st) = (lower?, old?);
    if !beneath::is_dir(st) {
        return None;
    }
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
    match beneath::open_same(l.as_fd(), e.name, st, flags) {
        Ok(fd) => Some(fd),
        Err(err) => {
            r.problems
                .add(e.rel, format_args!("in the overlaid directory: {err}"));
            None
        }
    }
}

/// Everything below the lower directory `dir` (at `rel`), as deleted. The host tree is never
/// opened up: what sbx cannot read there is a problem of the report.
fn below_deleted(r: &mut Reader, rel: &[u8], dir: OwnedFd, out: &mut BTreeSet<Change>) {
    let mut full = Vec::new();
    walk(r, dir, (), false, |_, e, _| {
        full.clear();
        full.extend_from_slice(rel);
        full.push(b'/');
        full.extend_from_slice(e.rel);
        out.insert(Change::new(&full, Kind::Deleted, e.st));
        e.dir.map(|_| ())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(p: &Path) -> Option<SourceId> {
        Some(SourceId::of_path(p).unwrap())
    }

    #[test]
    fn invalid_utf8_names_stay_apart() {
        use std::os::unix::ffi::OsStrExt;
        let upper = tempfile::tempdir().unwrap();
        let lower = tempfile::tempdir().unwrap();
        for n in [&b"n\xfe"[..], b"n\xff"] {
            std::fs::write(upper.path().join(std::ffi::OsStr::from_bytes(n)), "x").unwrap();
        }
        let (got, why) = collect(upper.path(), lower.path(), id(lower.path()));
        assert_eq!(why, None);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].path, got[1].path, "both are shown lossily alike");
        assert_ne!(got[0].name(), got[1].name());
        assert_eq!(got[0].shown(), "n\\xfe");
        let j = serde_json::to_value(&got).unwrap();
        assert_eq!(j[1]["path_bytes"], serde_json::json!([110, 255]));
        assert!(j[0].get("path_bytes").is_some());
    }

    #[test]
    fn a_replaced_lower_directory_makes_the_report_incomplete() {
        let upper = tempfile::tempdir().unwrap();
        let lower = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(upper.path().join("f"), "x").unwrap();
        let (got, why) = collect(upper.path(), other.path(), id(lower.path()));
        assert!(got.is_empty(), "{got:?}");
        assert!(why.unwrap().contains("not the directory the run overlaid"));
        let (got, why) = collect(upper.path(), lower.path(), None);
        assert_eq!(got.len(), 1);
        assert!(why.unwrap().contains("older sbx"));
    }
}
