//! Overlays: a host directory appears writable in the sandbox while every write lands in a
//! separate upper layer (kernel overlayfs in the user namespace, `userxattr`). The upper layer
//! lives in a private directory of the run (removed afterwards) or in `--keep-changes DIR`;
//! `sbx changes DIR` reports a kept layer and `sbx apply DIR` copies it onto the host.

pub mod apply;
mod beneath;
pub mod changes;
mod copy;
mod layer;
mod resolve;
mod walk;

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, openat};
use nix::sys::stat::{Mode, fchmod, fstat};
use serde::{Deserialize, Serialize};

use crate::hostfile::HostFile;

pub use changes::{Change, ChangeSet, Kind};

/// What a kept directory records about each overlay, next to its layers.
pub const META_FILE: &str = "sbx-changes.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptOverlay {
    /// Where it was mounted in the sandbox.
    pub destination: String,
    /// The host directory below it.
    pub source: String,
    /// The upper layer, relative to the kept directory.
    pub upper: String,
    /// `filesystem.protect` of the run, relative to the overlay: `sbx apply` refuses to write
    /// there unless told to, and `sbx changes` marks them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<String>,
    /// Which directory `source` was when the run started. `sbx apply` writes only into that
    /// same directory, and refuses a record without it (written by an older sbx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<SourceId>,
}

impl KeptOverlay {
    /// What the command changed under this overlay, read from its kept layer now.
    pub fn changes(&self) -> ChangeSet {
        change_set(
            &self.destination,
            Path::new(&self.source),
            Path::new(&self.upper),
            self.source_id,
            &self.protected,
        )
    }
}

/// A directory's identity: its device and inode. A path can be made to name another
/// directory (a symlink or a new directory put in its place); this cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceId {
    pub dev: u64,
    pub ino: u64,
}

impl SourceId {
    /// The directory `path` names now (symlinks followed, as a mount follows them).
    pub fn of_path(path: &Path) -> io::Result<SourceId> {
        Ok(SourceId::of(&fs::metadata(path)?))
    }

    pub fn of(m: &fs::Metadata) -> SourceId {
        SourceId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }

    pub(crate) fn of_stat(st: &nix::sys::stat::FileStat) -> SourceId {
        SourceId {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor) = (libc::major(self.dev), libc::minor(self.dev));
        write!(f, "device {major}:{minor} inode {}", self.ino)
    }
}

/// The message for an overlaid directory that is no longer the one the run started with.
pub(crate) fn replaced(path: &Path, was: SourceId, now: SourceId) -> String {
    format!(
        "{} is not the directory the run overlaid ({was} then, {now} now): a symlink or another \
         directory was put in its place since",
        crate::text::escape_path(path)
    )
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub schema: u32,
    pub overlays: Vec<KeptOverlay>,
}

/// A writable overlay of the run, as planned: where its layers are on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layers {
    pub destination: String,
    pub source: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// The protected paths, relative to the overlay.
    pub protected: Vec<String>,
    /// Which directory `source` is, recorded by [`prepare`] when the run starts.
    pub source_id: Option<SourceId>,
}

/// Whether `path` (relative to an overlay) is one of `protected` or lies beneath one.
pub fn is_protected(path: &[u8], protected: &[String]) -> bool {
    protected.iter().map(|p| p.as_bytes()).any(|p| {
        path == p || (path.len() > p.len() && path.starts_with(p) && path[p.len()] == b'/')
    })
}

/// Creates the upper and work directories, and records which directory each source is.
/// overlayfs shows the upper directory's mode as the overlay's root, so it takes the source's;
/// the layer root above them stays private.
pub fn prepare(layers: &mut [Layers]) -> io::Result<()> {
    for l in layers {
        let source = fs::metadata(&l.source)?;
        l.source_id = Some(SourceId::of(&source));
        let mode = source.permissions().mode() & 0o7777;
        for (d, m) in [(&l.upper, mode), (&l.work, 0o700)] {
            fs::create_dir_all(d)?;
            fs::set_permissions(d, fs::Permissions::from_mode(m))?;
        }
    }
    Ok(())
}

/// Reads what changed under each overlay of a run. A set that could not be read whole says
/// why in its `incomplete`.
pub fn report(layers: &[Layers]) -> Vec<ChangeSet> {
    layers
        .iter()
        .map(|l| {
            change_set(
                &l.destination,
                &l.source,
                &l.upper,
                l.source_id,
                &l.protected,
            )
        })
        .collect()
}

fn change_set(
    destination: &str,
    source: &Path,
    upper: &Path,
    source_id: Option<SourceId>,
    protected: &[String],
) -> ChangeSet {
    let (changes, incomplete) = changes::collect(upper, source, source_id);
    ChangeSet {
        destination: destination.to_string(),
        source: source.display().to_string(),
        changes: changes.into_iter().map(|c| c.marked(protected)).collect(),
        incomplete,
    }
}

/// Records the layers in a kept directory so that `sbx changes` and `sbx apply` can use them.
/// The record is written through the directory as opened before the run ([`HostFile`]).
pub fn write_meta(root: &LayerRoot, layers: &[Layers]) -> io::Result<()> {
    let Some(file) = &root.meta else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a kept directory", root.path.display()),
        ));
    };
    let dir = &root.path;
    let meta = Meta {
        schema: 1,
        overlays: layers
            .iter()
            .map(|l| KeptOverlay {
                destination: l.destination.clone(),
                source: l.source.display().to_string(),
                upper: l
                    .upper
                    .strip_prefix(dir)
                    .unwrap_or(&l.upper)
                    .display()
                    .to_string(),
                protected: l.protected.clone(),
                source_id: l.source_id,
            })
            .collect(),
    };
    file.write_json(&meta).map_err(io::Error::other)
}

/// Reads a kept directory's record; upper paths come back absolute.
pub fn read_meta(dir: &Path) -> io::Result<Meta> {
    let text = fs::read_to_string(dir.join(META_FILE)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{}: not a directory of kept changes ({e})",
                crate::text::escape_path(dir)
            ),
        )
    })?;
    let mut meta: Meta =
        serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    for o in &mut meta.overlays {
        let upper = Path::new(&o.upper);
        if upper.is_absolute()
            || upper
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: upper layer path \"{}\" leaves the directory",
                    crate::text::escape_path(dir),
                    crate::text::escape(&o.upper)
                ),
            ));
        }
        o.upper = dir.join(upper).display().to_string();
    }
    Ok(meta)
}

/// Removes a run's private layers. overlayfs leaves its work directory mode 000, so
/// permissions are opened up first.
pub fn remove_private(dir: &Path) -> io::Result<()> {
    fn open_up(p: &Path) {
        if let Ok(entries) = fs::read_dir(p) {
            for e in entries.flatten() {
                let path = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o700));
                    open_up(&path);
                }
            }
        }
    }
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    open_up(dir);
    fs::remove_dir_all(dir)
}

/// The directory holding a run's writable layers: kept for `sbx changes`/`sbx apply`, or
/// private to the run and removed when dropped.
pub struct LayerRoot {
    pub path: PathBuf,
    pub kept: bool,
    /// sbx created the kept directory: removed again if no run used it.
    created: bool,
    used: bool,
    /// A kept directory's record: the command may replace the directory's path or plant
    /// something at the record's name (the directory can lie in a writable bind).
    meta: Option<HostFile>,
}

impl LayerRoot {
    /// A kept directory must be new or empty, so that layers of two runs never mix. It is
    /// opened here, before the run, without following a symlink at its own name.
    pub fn kept(dir: &Path) -> io::Result<LayerRoot> {
        let created = fs::symlink_metadata(dir).is_err();
        fs::create_dir_all(dir)?;
        let fd = openat(
            AT_FDCWD,
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            // O_NOFOLLOW with O_DIRECTORY refuses a symlink with either.
            Errno::ELOOP | Errno::ENOTDIR
                if fs::symlink_metadata(dir).is_ok_and(|m| m.is_symlink()) =>
            {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a symbolic link: give the kept directory's own path",
                        dir.display()
                    ),
                )
            }
            e => io::Error::from(e),
        })?;
        let mut entries = nix::dir::Dir::from_fd(fd.try_clone()?)?;
        let empty = entries
            .iter()
            .all(|e| e.is_ok_and(|e| matches!(e.file_name().to_bytes(), b"." | b"..")));
        if !empty {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} is not empty: kept changes need a new or empty directory",
                    dir.display()
                ),
            ));
        }
        fchmod(&fd, Mode::from_bits_truncate(0o700))?;
        let path = dir.canonicalize()?;
        let (opened, named) = (fstat(&fd)?, fs::metadata(&path)?);
        if (opened.st_dev, opened.st_ino) != (named.dev(), named.ino()) {
            return Err(io::Error::other(format!(
                "{} changed while sbx was opening it",
                dir.display()
            )));
        }
        let meta = HostFile::in_dir(fd, META_FILE.as_ref(), path.join(META_FILE));
        Ok(LayerRoot {
            path,
            kept: true,
            created,
            used: false,
            meta: Some(meta),
        })
    }

    pub fn private(tmpdir: &Path) -> io::Result<LayerRoot> {
        let dir = tempfile::Builder::new()
            .prefix("sbx-layers-")
            .tempdir_in(tmpdir)?;
        Ok(LayerRoot {
            path: dir.keep().canonicalize()?,
            kept: false,
            created: true,
            used: false,
            meta: None,
        })
    }

    /// Marks a kept directory as holding a run's layers (so it is not removed).
    pub fn mark_used(&mut self) {
        self.used = true;
    }
}

impl Drop for LayerRoot {
    fn drop(&mut self) {
        if self.kept && self.created && !self.used {
            // The run never started (a bad plan): leave no empty directory behind.
            let _ = remove_private(&self.path);
        } else if !self.kept {
            if let Err(e) = remove_private(&self.path) {
                tracing::warn!("cannot remove {}: {e}", self.path.display());
            }
        }
    }
}
