//! `sbx apply`: copies a kept upper layer onto the host tree, as an explicit second step, as a
//! transaction over descriptors.
//!
//! 1. The tree's root is opened once and must be the directory the run overlaid (its device
//!    and inode were recorded when the run started): a symlink or another directory put in its
//!    place since is refused.
//! 2. The layer is read once, through descriptors ([`super::layer`]); the files stay open and
//!    are what is copied.
//! 3. The whole layer is checked before anything is written: a layer (or change report) that
//!    could not be read whole, a device, FIFO or socket, a symlink that would point outside the tree, or a
//!    protected path refuses everything.
//! 4. What to do is decided from the tree as it is before anything is written (so the dry run
//!    and the real run list the same actions), then done beneath the root's descriptor one
//!    name at a time without following symlinks. setuid and setgid bits and file capabilities
//!    are dropped, and the actions say so; holes in sparse files stay holes.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode};

use super::SourceId;
use super::beneath::{self, AtError};
use super::changes::Kind;
use super::copy::{self, KEPT_BITS};
use super::layer::{self, Content, Item, Layer};
use crate::text;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("refusing to apply {upper}: {}", reasons.join("; "))]
    Refused { upper: String, reasons: Vec<String> },
    /// The layer writes paths that host tools run or trust (`filesystem.protect`).
    #[error(
        "refusing to apply {upper}: it writes protected paths, which host tools run or trust: {}",
        paths.join(", ")
    )]
    Protected { upper: String, paths: Vec<String> },
    /// The tree is not the directory the run overlaid.
    #[error("refusing to apply {upper}: {why}")]
    Replaced { upper: String, why: String },
    /// The record of an older sbx does not say which directory the tree was.
    #[error(
        "refusing to apply {upper}: the record does not say which directory {tree} was when the \
         run started (it was written by an older sbx), so sbx cannot tell that it is still that \
         directory"
    )]
    Unverified { upper: String, tree: String },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: io::Error,
    },
}

/// One step `apply` takes (or would take, with `--dry-run`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub kind: Kind,
    /// Relative to the tree, `/`-separated, as bytes.
    pub path: Vec<u8>,
    pub file_type: &'static str,
    /// What of the layer's entry is not written: `setuid`, `setgid`, `file capabilities`.
    pub dropped: Vec<&'static str>,
}

impl Action {
    /// The path escaped for a terminal.
    pub fn shown(&self) -> String {
        text::escape_bytes(&self.path)
    }
}

/// What to apply where.
pub struct Apply<'a> {
    /// The kept upper layer.
    pub upper: &'a Path,
    /// The host directory the run overlaid.
    pub tree: &'a Path,
    /// Which directory `tree` was when the run started; None refuses.
    pub tree_id: Option<SourceId>,
    /// Paths (relative to the tree) not to write, nor anything below them.
    pub protected: &'a [String],
    /// Only say what would be done.
    pub dry_run: bool,
}

impl Apply<'_> {
    /// Applies the layer; returns the actions taken (or, with `dry_run`, that would be).
    pub fn run(&self) -> Result<Vec<Action>, ApplyError> {
        let upper = text::escape_path(self.upper);
        let tree = text::escape_path(self.tree);
        let Some(id) = self.tree_id else {
            return Err(ApplyError::Unverified { upper, tree });
        };
        let io_err = |what, path: &str| {
            let path = path.to_string();
            move |e: AtError| ApplyError::Io {
                what,
                path,
                source: e.into(),
            }
        };
        let root = beneath::open_dir_path(self.tree).map_err(io_err("open", &tree))?;
        let now = SourceId::of_stat(&beneath::stat_fd(&root).map_err(io_err("open", &tree))?);
        if now != id {
            let why = super::replaced(self.tree, id, now);
            return Err(ApplyError::Replaced { upper, why });
        }
        // What the report would say must be whole too: apply deletes and replaces what it
        // lists, and cannot be all or nothing over a tree it cannot read.
        if let (_, Some(why)) = super::changes::collect(self.upper, self.tree, Some(id)) {
            let reasons = vec![format!("its change report is incomplete: {why}")];
            return Err(ApplyError::Refused { upper, reasons });
        }
        let layer_root = beneath::open_dir_path(self.upper).map_err(io_err("read", &upper))?;
        let layer = layer::read(layer_root);
        let mut reasons = layer.problems.clone();
        reasons.extend(layer::check(&layer, root.as_fd()));
        if !reasons.is_empty() {
            return Err(ApplyError::Refused { upper, reasons });
        }
        let steps = plan(&layer, root.as_fd());
        let touched: Vec<String> = steps
            .iter()
            .flatten()
            .filter(|a| super::is_protected(&a.path, self.protected))
            .map(Action::shown)
            .collect();
        if !touched.is_empty() {
            return Err(ApplyError::Protected {
                upper,
                paths: touched,
            });
        }
        if !self.dry_run {
            write(&layer, &steps, root)?;
        }
        Ok(steps.into_iter().flatten().collect())
    }
}

/// The bits of `mode` apply does not write, by name.
fn dropped_bits(mode: u32) -> Vec<&'static str> {
    let mut out = Vec::new();
    if mode & 0o4000 != 0 {
        out.push("setuid");
    }
    if mode & 0o2000 != 0 {
        out.push("setgid");
    }
    out
}

/// What to do for each item of the layer (None: nothing, e.g. a directory that is already
/// there), decided from the tree as it is now.
fn plan(layer: &Layer, root: BorrowedFd<'_>) -> Vec<Option<Action>> {
    // The host directory at each depth of the walk, where the host has one.
    let mut host: Vec<Option<OwnedFd>> = Vec::new();
    let mut steps = Vec::with_capacity(layer.items.len());
    for it in &layer.items {
        host.truncate(it.depth - 1);
        let parent = match host.last() {
            None => Some(root),
            Some(d) => d.as_ref().map(|d| d.as_fd()),
        };
        let existing = parent.and_then(|p| beneath::stat_at(p, it.name()).ok());
        let step = decide(it, existing.as_ref());
        if let Content::Dir { .. } = it.content {
            let below = match (parent, &existing) {
                (Some(p), Some(st)) if beneath::is_dir(st) => {
                    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
                    beneath::open_same(p, it.name(), st, flags).ok()
                }
                _ => None,
            };
            host.push(below);
        }
        steps.push(step);
    }
    steps
}

fn decide(it: &Item, existing: Option<&FileStat>) -> Option<Action> {
    let exists = existing.is_some();
    let is_dir = existing.is_some_and(beneath::is_dir);
    let changed = if exists { Kind::Modified } else { Kind::Added };
    let (kind, file_type, dropped) = match &it.content {
        Content::Whiteout if exists => (Kind::Deleted, "any", Vec::new()),
        Content::Whiteout => return None,
        Content::Dir { opaque } if is_dir => {
            if !opaque {
                return None;
            }
            (Kind::Modified, "dir", Vec::new())
        }
        Content::Dir { .. } => (changed, "dir", dropped_bits(it.mode)),
        Content::File { caps, .. } => {
            let mut dropped = dropped_bits(it.mode);
            if *caps {
                dropped.push("file capabilities");
            }
            (changed, "file", dropped)
        }
        Content::Symlink(_) => (changed, "symlink", Vec::new()),
        Content::Other(_) => return None,
    };
    Some(Action {
        kind,
        path: it.rel.clone(),
        file_type,
        dropped,
    })
}

/// Does `steps`, beneath `root`.
fn write(layer: &Layer, steps: &[Option<Action>], root: OwnedFd) -> Result<(), ApplyError> {
    // The tree's directory at each depth of the walk, as it is once written.
    let mut dirs: Vec<OwnedFd> = vec![root];
    // Directories apply created, with the mode they get once everything inside is written.
    let mut created: Vec<(OwnedFd, u32)> = Vec::new();
    for (it, step) in layer.items.iter().zip(steps) {
        let shown = it.shown();
        let fail = |what: &'static str| {
            let path = shown.clone();
            move |e: io::Error| ApplyError::Io {
                what,
                path,
                source: e,
            }
        };
        let at = |e: AtError| io::Error::from(e);
        if dirs.len() < it.depth {
            // Its directory could not be entered: said when that failed.
            return Err(fail("open the directory of")(
                io::ErrorKind::NotFound.into(),
            ));
        }
        dirs.truncate(it.depth);
        let dir = dirs.last().expect("the root").as_fd();
        let name = it.name();
        match (&it.content, step) {
            (Content::Whiteout, Some(_)) => copy::remove_all(dir, name)
                .map_err(at)
                .map_err(fail("remove"))?,
            (Content::Dir { .. }, step) => {
                let opened = match step {
                    None => open_dir(dir, name),
                    Some(_) => {
                        let existing = beneath::stat_at(dir, name).ok();
                        if existing.as_ref().is_some_and(beneath::is_dir) {
                            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
                            let d = beneath::open_at(dir, name, flags, Mode::empty())
                                .map_err(at)
                                .map_err(fail("open"))?;
                            let to_clear = d.try_clone().map_err(fail("open"))?;
                            copy::clear(to_clear).map_err(at).map_err(fail("empty"))?;
                            Ok(d)
                        } else {
                            if existing.is_some() {
                                copy::remove_all(dir, name)
                                    .map_err(at)
                                    .map_err(fail("replace"))?;
                            }
                            let d = copy::make_dir(dir, name)
                                .map_err(at)
                                .map_err(fail("create"))?;
                            let keep = d.try_clone().map_err(fail("create"))?;
                            created.push((keep, it.mode & KEPT_BITS));
                            Ok(d)
                        }
                    }
                };
                dirs.push(opened.map_err(at).map_err(fail("open"))?);
            }
            (Content::File { file, .. }, Some(_)) => {
                copy::install_file(dir, name, file, it.mode).map_err(fail("write"))?
            }
            (Content::Symlink(target), Some(_)) => copy::install_symlink(dir, name, target)
                .map_err(at)
                .map_err(fail("create"))?,
            _ => {}
        }
    }
    // Deepest first: a directory apply made read-only is closed after what is inside it.
    for (d, mode) in created.into_iter().rev() {
        let _ = nix::sys::stat::fchmod(d.as_fd(), Mode::from_bits_truncate(mode));
    }
    Ok(())
}

fn open_dir(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, AtError> {
    beneath::open_at(dir, name, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())
}

#[cfg(test)]
mod tests;
