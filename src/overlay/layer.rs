//! A kept upper layer as `sbx apply` reads it: once, through descriptors, before anything is
//! decided. Each regular file is opened then (checked to be the file that was listed) and that
//! descriptor is what apply later copies from; each symlink's target is read then and that
//! target is what is checked and what is written. A process that can write the layer while
//! apply runs (another sandbox with it bound) can change a file's bytes, but not make apply
//! copy another file, follow a symlink, or write a target it did not check.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::stat::SFlag;

use super::beneath::{self, AtError};
use super::resolve::Merged;
use super::walk::{Reader, walk};
use crate::text;

pub enum Content {
    Dir {
        opaque: bool,
    },
    /// Open for reading; `caps`: it carries file capabilities.
    File {
        file: File,
        caps: bool,
    },
    Symlink(Vec<u8>),
    Whiteout,
    /// A device, FIFO or socket: never applied.
    Other(&'static str),
}

pub struct Item {
    /// Relative to the layer's root, `/`-separated.
    pub rel: Vec<u8>,
    /// Where the last component starts in `rel`.
    name_at: usize,
    /// 1 for an entry of the root, 2 below one of those, ...
    pub depth: usize,
    /// Permission bits as the command left them (before sbx opened anything up).
    pub mode: u32,
    pub content: Content,
}

impl Item {
    pub fn name(&self) -> &[u8] {
        &self.rel[self.name_at..]
    }

    /// The path escaped for a terminal.
    pub fn shown(&self) -> String {
        text::escape_bytes(&self.rel)
    }
}

pub struct Layer {
    /// Depth first, names in byte order: a directory comes before what is inside it.
    pub items: Vec<Item>,
    /// What could not be read (names escaped): apply refuses a layer it cannot read whole.
    pub problems: Vec<String>,
}

/// Reads the layer below `root`. Permissions the command took away are put back before this
/// returns; the files stay open.
pub fn read(root: OwnedFd) -> Layer {
    let mut r = Reader::new();
    let me = nix::unistd::geteuid().as_raw();
    let mut items = Vec::new();
    walk(&mut r, root, (), true, |r, e, _| {
        let content = match beneath::kind(e.st) {
            SFlag::S_IFDIR => Content::Dir {
                opaque: e.dir.is_some_and(beneath::is_opaque),
            },
            SFlag::S_IFREG => {
                let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
                match r.open(e.parent, e.name, e.st, flags, true) {
                    Ok(fd) => Content::File {
                        caps: beneath::has_capabilities(fd.as_fd()),
                        file: File::from(fd),
                    },
                    Err(AtError::Errno(nix::errno::Errno::EMFILE)) => {
                        r.problems.add(
                            e.rel,
                            "sbx holds every file of the layer open until it is applied, and \
                             the open-file limit (ulimit -Hn) is too low for this layer",
                        );
                        return None;
                    }
                    Err(err) => {
                        let owner = match err {
                            AtError::Errno(nix::errno::Errno::EACCES) if e.st.st_uid != me => {
                                format!(" (owned by uid {})", e.st.st_uid)
                            }
                            _ => String::new(),
                        };
                        r.problems
                            .add(e.rel, format_args!("not readable by sbx{owner}: {err}"));
                        return None;
                    }
                }
            }
            SFlag::S_IFLNK => match beneath::readlink_at(e.parent, e.name) {
                Ok(target) => Content::Symlink(target),
                Err(err) => {
                    r.problems
                        .add(e.rel, format_args!("cannot read the symlink: {err}"));
                    return None;
                }
            },
            _ if beneath::is_whiteout(e.st) => Content::Whiteout,
            SFlag::S_IFCHR | SFlag::S_IFBLK => Content::Other("a device"),
            SFlag::S_IFIFO => Content::Other("a FIFO"),
            _ => Content::Other("a socket"),
        };
        items.push(Item {
            rel: e.rel.to_vec(),
            name_at: e.rel.len() - e.name.len(),
            depth: e.depth,
            mode: e.st.st_mode & 0o7777,
            content,
        });
        e.dir.map(|_| ())
    });
    Layer {
        items,
        problems: std::mem::take(&mut r.problems).into_list(),
    }
}

/// Why the layer must not be applied onto the tree open as `tree`: entries that are no file,
/// directory, symlink or whiteout, and symlinks that would point outside the tree once
/// applied. Empty when it may be.
pub fn check(layer: &Layer, tree: BorrowedFd<'_>) -> Vec<String> {
    let merged = Merged::new(&layer.items, tree);
    let mut reasons = Vec::new();
    for it in &layer.items {
        match &it.content {
            Content::Other(what) => reasons.push(format!(
                "{}: {what}; devices, FIFOs and sockets are not applied",
                it.shown()
            )),
            Content::Symlink(target) if !merged.stays_inside(&it.rel, target) => {
                reasons.push(format!(
                    "{}: symlink to {} points outside the tree",
                    it.shown(),
                    text::escape_bytes(target)
                ))
            }
            _ => {}
        }
    }
    reasons
}
