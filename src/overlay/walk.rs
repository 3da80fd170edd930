//! Walking a tree through descriptors: depth first, names in byte order, each directory opened
//! from its parent by one name and checked to be the entry that was listed. The walk keeps one
//! descriptor per level, so a path longer than PATH_MAX is no limit, and it never recurses, so
//! a deep tree cannot exhaust the stack. What cannot be read is recorded (the walk goes on with
//! the rest) so that a caller can say its result is incomplete and why.
//!
//! The command may have taken permissions away from what it wrote (`chmod 000`) to hide it. A
//! layer's entries belong to the same user as sbx, so when told to, the walk widens the owner's
//! permissions of such an entry (through an `O_PATH` descriptor of that very inode, never by
//! path) and puts them back when the [`Reader`] is dropped.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode, SFlag};

use super::beneath::{self, AtError, AtResult};
use crate::text;

/// What could not be read, for the reason a report gives when it is incomplete.
#[derive(Debug, Default)]
pub struct Problems {
    shown: Vec<String>,
    count: usize,
}

impl Problems {
    const SHOWN: usize = 3;

    /// Records that `rel` (relative to the walk's root) could not be read.
    pub fn add(&mut self, rel: &[u8], what: impl fmt::Display) {
        self.count += 1;
        if self.shown.len() < Self::SHOWN {
            let name = if rel.is_empty() {
                ".".to_string()
            } else {
                text::escape_bytes(rel)
            };
            self.shown.push(format!("{name}: {what}"));
        }
    }

    /// Records a problem that concerns no one entry.
    pub fn note(&mut self, what: String) {
        self.count += 1;
        if self.shown.len() < Self::SHOWN {
            self.shown.push(what);
        }
    }

    /// The problems in one line (names escaped for a terminal), None when there were none.
    pub fn reason(&self) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let mut s = self.shown.join("; ");
        if self.count > self.shown.len() {
            s += &format!(" (and {} more)", self.count - self.shown.len());
        }
        Some(s)
    }

    pub fn into_list(self) -> Vec<String> {
        let mut v = self.shown;
        if self.count > v.len() {
            let more = self.count - v.len();
            v.push(format!("{more} more entries could not be read"));
        }
        v
    }
}

/// The state of a walk: what could not be read, and the permissions to put back.
pub struct Reader {
    pub problems: Problems,
    widened: Vec<(OwnedFd, u32)>,
    me: u32,
}

impl Default for Reader {
    fn default() -> Self {
        Self::new()
    }
}

impl Reader {
    pub fn new() -> Reader {
        Reader {
            problems: Problems::default(),
            widened: Vec::new(),
            me: nix::unistd::geteuid().as_raw(),
        }
    }

    /// Opens the entry `name` of `dir`, listed as `st`, with `flags`. With `widen`, an entry of
    /// sbx's user that its owner cannot read (or, for a directory, search) is opened up first.
    pub fn open(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        st: &FileStat,
        flags: OFlag,
        widen: bool,
    ) -> AtResult<OwnedFd> {
        let need = if beneath::is_dir(st) { 0o500 } else { 0o400 };
        if !(widen && st.st_uid == self.me && st.st_mode & need != need) {
            return beneath::open_same(dir, name, st, flags);
        }
        // The very inode that was listed, pinned without opening it for reading.
        let pinned = beneath::open_same(dir, name, st, OFlag::O_PATH)?;
        let add = if beneath::is_dir(st) { 0o700 } else { 0o400 };
        let mode = st.st_mode & 0o7777;
        // fchmod does not take an O_PATH descriptor; its /proc link names the same inode.
        let proc = format!("/proc/self/fd/{}", pinned.as_raw_fd());
        std::fs::set_permissions(
            &proc,
            std::os::unix::fs::PermissionsExt::from_mode(mode | add),
        )
        .map_err(|e| AtError::Errno(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
        let opened = beneath::open_same(dir, name, st, flags);
        match &opened {
            Ok(fd) => match fd.try_clone() {
                Ok(keep) => self.widened.push((keep, mode)),
                Err(_) => put_back(fd.as_fd(), mode),
            },
            // Put back at once what could not be opened after all.
            Err(_) => {
                let _ = std::fs::set_permissions(
                    &proc,
                    std::os::unix::fs::PermissionsExt::from_mode(mode),
                );
            }
        }
        opened
    }
}

fn put_back(fd: BorrowedFd<'_>, mode: u32) {
    let _ = nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(mode));
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Deepest first, so that a directory closes after what is inside it is put back.
        for (fd, mode) in self.widened.drain(..).rev() {
            put_back(fd.as_fd(), mode);
        }
    }
}

/// One entry met by [`walk`].
pub struct Entry<'a> {
    /// Relative to the walk's root, `/`-separated.
    pub rel: &'a [u8],
    pub name: &'a [u8],
    /// 1 for an entry of the root, 2 below one of those, ...
    pub depth: usize,
    /// The directory holding it.
    pub parent: BorrowedFd<'a>,
    /// The entry itself as listed (a symlink not followed), before any widening.
    pub st: &'a FileStat,
    /// A directory, opened; None for other entries or a directory that could not be opened
    /// (recorded as a problem).
    pub dir: Option<BorrowedFd<'a>>,
}

struct Frame<T> {
    dir: OwnedFd,
    names: std::vec::IntoIter<Vec<u8>>,
    /// The length of this directory's own relative path.
    prefix: usize,
    data: T,
}

/// Visits every entry below `root`, depth first, in byte order of the names. `visit` gets the
/// entry and the value its directory was entered with; for a directory it returns the value
/// to enter it with, or None to skip what is below. With `widen`, entries the command locked
/// are opened up (see [`Reader::open`]).
pub fn walk<T>(
    r: &mut Reader,
    root: OwnedFd,
    data: T,
    widen: bool,
    mut visit: impl FnMut(&mut Reader, &Entry<'_>, &T) -> Option<T>,
) {
    let names = match beneath::names(&root) {
        Ok(n) => n,
        Err(e) => return r.problems.add(b"", e),
    };
    let mut stack = vec![Frame {
        dir: root,
        names: names.into_iter(),
        prefix: 0,
        data,
    }];
    let mut rel: Vec<u8> = Vec::new();
    while let Some(top) = stack.last_mut() {
        let Some(name) = top.names.next() else {
            stack.pop();
            continue;
        };
        rel.truncate(top.prefix);
        if top.prefix > 0 {
            rel.push(b'/');
        }
        rel.extend_from_slice(&name);
        let st = match beneath::stat_at(top.dir.as_fd(), &name) {
            Ok(st) => st,
            Err(e) => {
                r.problems.add(&rel, e);
                continue;
            }
        };
        let opened = if beneath::kind(&st) == SFlag::S_IFDIR {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
            match r.open(top.dir.as_fd(), &name, &st, flags, widen) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    r.problems.add(&rel, e);
                    None
                }
            }
        } else {
            None
        };
        let depth = stack.len();
        let top = stack.last_mut().expect("just read");
        let entry = Entry {
            rel: &rel,
            name: &name,
            depth,
            parent: top.dir.as_fd(),
            st: &st,
            dir: opened.as_ref().map(|d| d.as_fd()),
        };
        let child = visit(r, &entry, &top.data);
        if let (Some(data), Some(dir)) = (child, opened) {
            match beneath::names(&dir) {
                Ok(n) => stack.push(Frame {
                    dir,
                    names: n.into_iter(),
                    prefix: rel.len(),
                    data,
                }),
                Err(e) => r.problems.add(&rel, e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn list(root: &std::path::Path, widen: bool) -> (Vec<(String, usize)>, Option<String>) {
        let mut r = Reader::new();
        let mut out = Vec::new();
        let fd = beneath::open_dir_path(root).unwrap();
        walk(&mut r, fd, (), widen, |_, e, _| {
            out.push((String::from_utf8_lossy(e.rel).into_owned(), e.depth));
            e.dir.map(|_| ())
        });
        (out, r.problems.reason())
    }

    #[test]
    fn walks_depth_first_in_byte_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("b/c")).unwrap();
        std::fs::write(d.path().join("b/c/f"), "").unwrap();
        std::fs::write(d.path().join("a"), "").unwrap();
        std::fs::write(d.path().join("b/z"), "").unwrap();
        std::os::unix::fs::symlink("/", d.path().join("l")).unwrap();
        let (got, problems) = list(d.path(), false);
        assert_eq!(problems, None);
        let want = [
            ("a", 1),
            ("b", 1),
            ("b/c", 2),
            ("b/c/f", 3),
            ("b/z", 2),
            ("l", 1),
        ];
        let want: Vec<(String, usize)> = want.iter().map(|(p, n)| (p.to_string(), *n)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn paths_longer_than_path_max_are_walked() {
        let d = tempfile::tempdir().unwrap();
        let name = "d".repeat(200);
        let mut dir = beneath::open_dir_path(d.path()).unwrap();
        for _ in 0..30 {
            nix::sys::stat::mkdirat(&dir, name.as_str(), Mode::from_bits_truncate(0o755)).unwrap();
            dir = beneath::open_at(
                dir.as_fd(),
                name.as_bytes(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                Mode::empty(),
            )
            .unwrap();
        }
        let (got, problems) = list(d.path(), false);
        assert_eq!(problems, None);
        assert_eq!(got.len(), 30);
        assert!(got.last().unwrap().0.len() > 6000);
        // Cleanup of a tree deeper than PATH_MAX: tempdir's remove_dir_all copes with it.
    }

    #[test]
    fn locked_entries_are_opened_up_and_put_back() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("locked")).unwrap();
        std::fs::write(d.path().join("locked/f"), "").unwrap();
        std::fs::set_permissions(d.path().join("locked"), PermissionsExt::from_mode(0o000))
            .unwrap();
        let (got, problems) = list(d.path(), true);
        assert_eq!(problems, None);
        assert_eq!(got.len(), 2, "{got:?}");
        let mode = std::fs::metadata(d.path().join("locked"))
            .unwrap()
            .permissions();
        assert_eq!(mode.mode() & 0o777, 0);
        std::fs::set_permissions(d.path().join("locked"), PermissionsExt::from_mode(0o700))
            .unwrap();
    }
}
