//! Where a symlink of the layer would point once applied: its target resolved as the kernel
//! would, in the tree as apply leaves it (the layer over the host tree), following symlinks of
//! either. The layer is read from memory (what apply read once); the host tree only through
//! descriptors beneath its root, one name at a time, never following a symlink on the way.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};

use super::beneath;
use super::layer::{Content, Item};

/// The kernel's limit on symlinks followed in one lookup.
const MAX_LINKS: u32 = 40;

/// The tree as apply would leave it.
pub struct Merged<'a> {
    layer: HashMap<&'a [u8], &'a Content>,
    host: BorrowedFd<'a>,
}

impl<'a> Merged<'a> {
    pub fn new(items: &'a [Item], host: BorrowedFd<'a>) -> Merged<'a> {
        Merged {
            layer: items
                .iter()
                .map(|i| (i.rel.as_slice(), &i.content))
                .collect(),
            host,
        }
    }

    /// Whether the symlink at `link` (relative to the tree) pointing to `target` stays inside
    /// the tree. An absolute target never does: apply cannot know where the tree will be.
    pub fn stays_inside(&self, link: &[u8], target: &[u8]) -> bool {
        let mut dir: Vec<Vec<u8>> = link.split(|b| *b == b'/').map(<[u8]>::to_vec).collect();
        dir.pop();
        self.resolve(dir, target, 0).is_some()
    }

    /// `target` resolved from the directory `dir` (components, each no symlink); None when it
    /// leaves the tree, is absolute or loops.
    fn resolve(&self, dir: Vec<Vec<u8>>, target: &[u8], depth: u32) -> Option<Vec<Vec<u8>>> {
        if depth > MAX_LINKS || target.first() == Some(&b'/') {
            return None;
        }
        let mut cur = dir;
        for c in target.split(|b| *b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    cur.pop()?;
                }
                name => {
                    cur.push(name.to_vec());
                    if let Some(t) = self.link_at(&cur) {
                        cur.pop();
                        cur = self.resolve(cur, &t, depth + 1)?;
                    }
                }
            }
        }
        Some(cur)
    }

    /// The target of the symlink at `path` in the tree as apply leaves it, if one is there.
    /// The layer's entry decides where it has one; the host's shows where nothing of the
    /// layer hides it (a whiteout, an opaque directory or a non-directory above it).
    fn link_at(&self, path: &[Vec<u8>]) -> Option<Vec<u8>> {
        let rel = path.join(&b'/');
        if let Some(c) = self.layer.get(rel.as_slice()) {
            return match c {
                Content::Symlink(t) => Some(t.clone()),
                _ => None,
            };
        }
        for i in 1..path.len() {
            let above = path[..i].join(&b'/');
            match self.layer.get(above.as_slice()) {
                None | Some(Content::Dir { opaque: false }) => {}
                Some(_) => return None,
            }
        }
        let (name, parents) = path.split_last()?;
        let mut dir: Option<OwnedFd> = None;
        for p in parents {
            let at = dir.as_ref().map_or(self.host, |d| d.as_fd());
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
            dir = Some(beneath::open_at(at, p, flags, Mode::empty()).ok()?);
        }
        let at = dir.as_ref().map_or(self.host, |d| d.as_fd());
        let st = beneath::stat_at(at, name).ok()?;
        if beneath::kind(&st) != SFlag::S_IFLNK {
            return None;
        }
        beneath::readlink_at(at, name).ok()
    }
}
