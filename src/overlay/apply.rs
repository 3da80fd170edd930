//! `sbx apply`: copies a kept upper layer onto the host tree, as an explicit second step. The
//! whole layer is checked first and refused if anything in it could escape the tree (a symlink
//! pointing outside, a device or socket); then every path is written through directory handles
//! opened beneath the tree's root without following symlinks, so a symlink in the host tree
//! cannot redirect a write elsewhere either.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2, renameat};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::{UnlinkatFlags, symlinkat, unlinkat};

use super::changes::{Kind, is_opaque, is_whiteout};

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
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: io::Error,
    },
}

/// One step `apply` takes (or would take, with `--dry-run`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Action {
    pub kind: Kind,
    pub path: String,
    pub file_type: &'static str,
}

fn io_err<'a>(what: &'static str, path: &'a str) -> impl FnOnce(Errno) -> ApplyError + 'a {
    move |e| ApplyError::Io {
        what,
        path: path.to_string(),
        source: io::Error::from(e),
    }
}

/// Resolves `target` as the kernel would from `dir` (components relative to the tree's root)
/// in the merged view of the layer over the host tree, following symlinks of either; None when
/// it leaves the tree, is absolute, or loops.
fn resolve(
    upper: &Path,
    tree: &Path,
    dir: &[OsString],
    target: &Path,
    depth: u32,
) -> Option<Vec<OsString>> {
    if depth > 40 || target.is_absolute() {
        return None;
    }
    let mut cur = dir.to_vec();
    for c in target.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                cur.pop()?;
            }
            Component::Normal(name) => {
                let rel: PathBuf = cur
                    .iter()
                    .map(PathBuf::from)
                    .chain(std::iter::once(PathBuf::from(name)))
                    .collect();
                // The layer hides the host: its entry (a whiteout included) decides.
                let link = match fs::symlink_metadata(upper.join(&rel)) {
                    Ok(m) if m.file_type().is_symlink() => fs::read_link(upper.join(&rel)).ok(),
                    Ok(_) => None,
                    Err(_) => match fs::symlink_metadata(tree.join(&rel)) {
                        Ok(m) if m.file_type().is_symlink() => fs::read_link(tree.join(&rel)).ok(),
                        _ => None,
                    },
                };
                match link {
                    Some(t) => cur = resolve(upper, tree, &cur, &t, depth + 1)?,
                    None => cur.push(name.to_os_string()),
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(cur)
}

/// Whether a symlink at `rel` (in the layer) pointing to `target` stays inside the tree.
fn stays_inside(upper: &Path, tree: &Path, rel: &Path, target: &Path) -> bool {
    let dir: Vec<OsString> = rel
        .parent()
        .unwrap_or(Path::new(""))
        .iter()
        .map(|c| c.to_os_string())
        .collect();
    resolve(upper, tree, &dir, target, 0).is_some()
}

struct Entry {
    rel: PathBuf,
    meta: fs::Metadata,
    full: PathBuf,
}

fn entries(upper: &Path) -> io::Result<Vec<Entry>> {
    fn go(root: &Path, dir: &Path, out: &mut Vec<Entry>) -> io::Result<()> {
        let mut list: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        list.sort_by_key(|e| e.file_name());
        for e in list {
            let full = e.path();
            let meta = fs::symlink_metadata(&full)?;
            let rel = full.strip_prefix(root).unwrap_or(&full).to_path_buf();
            let is_dir = meta.is_dir();
            out.push(Entry {
                rel,
                meta,
                full: full.clone(),
            });
            if is_dir {
                go(root, &full, out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    go(upper, upper, &mut out)?;
    Ok(out)
}

/// Checks the whole layer before anything is written, so that apply is all or nothing.
fn check(upper: &Path, tree: &Path, list: &[Entry]) -> Result<(), ApplyError> {
    let me = nix::unistd::geteuid().as_raw();
    let mut reasons = Vec::new();
    for e in list {
        let shown = e.rel.display();
        if e.rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            reasons.push(format!("{shown}: not a plain relative path"));
        } else if e.meta.file_type().is_symlink() {
            match fs::read_link(&e.full) {
                Ok(t) if stays_inside(upper, tree, &e.rel, &t) => {}
                Ok(t) => reasons.push(format!(
                    "{shown}: symlink to {} points outside the tree",
                    t.display()
                )),
                Err(err) => reasons.push(format!("{shown}: {err}")),
            }
        } else if !(e.meta.is_file() || e.meta.is_dir() || is_whiteout(&e.meta)) {
            reasons.push(format!(
                "{shown}: devices, FIFOs and sockets are not applied"
            ));
        } else if e.meta.is_file() && e.meta.uid() != me && e.meta.mode() & 0o004 == 0 {
            reasons.push(format!(
                "{shown}: not readable by sbx (owned by uid {})",
                e.meta.uid()
            ));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(ApplyError::Refused {
            upper: upper.display().to_string(),
            reasons,
        })
    }
}

/// Opens a directory beneath `root` without following symlinks.
fn open_dir(root: &OwnedFd, rel: &Path) -> nix::Result<OwnedFd> {
    let path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2(
        root.as_fd(),
        path,
        OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS),
    )
}

/// Removes `name` in `dir`, recursively for a directory, never following symlinks.
fn remove(dir: &OwnedFd, name: &OsStr) -> nix::Result<()> {
    match unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) => {
            clear(dir, name)?;
            unlinkat(dir.as_fd(), name, UnlinkatFlags::RemoveDir)
        }
        Err(e) => Err(e),
    }
}

/// Removes everything inside the directory `name` of `dir`.
fn clear(dir: &OwnedFd, name: &OsStr) -> nix::Result<()> {
    let sub = openat2(
        dir.as_fd(),
        name,
        OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS),
    )?;
    let names: Vec<Vec<u8>> = {
        let mut d = nix::dir::Dir::from_fd(sub.try_clone().map_err(|_| Errno::EMFILE)?)?;
        d.iter()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_bytes().to_vec())
            .filter(|n| n != b"." && n != b"..")
            .collect()
    };
    for n in names {
        remove(&sub, OsStr::from_bytes(&n))?;
    }
    Ok(())
}

fn copy_file(src: &Path, dir: &OwnedFd, name: &OsStr, mode: u32) -> io::Result<()> {
    let mut input = fs::File::open(src)?;
    let mut tmp_name = b".sbx-apply-".to_vec();
    tmp_name.extend_from_slice(name.as_bytes());
    let tmp = OsStr::from_bytes(&tmp_name);
    let _ = unlinkat(dir.as_fd(), tmp, UnlinkatFlags::NoRemoveDir);
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        tmp,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::from_bits_truncate(0o600),
    )?;
    let mut out = fs::File::from(fd);
    let written = (|| {
        io::copy(&mut input, &mut out)?;
        out.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        out.sync_all()
    })()
    .and_then(|_| match renameat(dir.as_fd(), tmp, dir.as_fd(), name) {
        Err(Errno::EISDIR | Errno::ENOTEMPTY | Errno::EEXIST) => {
            remove(dir, name)?;
            renameat(dir.as_fd(), tmp, dir.as_fd(), name).map_err(io::Error::from)
        }
        r => r.map_err(io::Error::from),
    });
    if written.is_err() {
        let _ = unlinkat(dir.as_fd(), tmp, UnlinkatFlags::NoRemoveDir);
    }
    written
}

/// Applies `upper` onto `tree`. With `dry_run`, only says what it would do. Every decision
/// is taken from the tree as it is before anything is written, so the dry run and the real
/// run list the same actions.
pub fn apply(upper: &Path, tree: &Path, dry_run: bool) -> Result<Vec<Action>, ApplyError> {
    apply_with(upper, tree, dry_run, &[])
}

/// [`apply`], refusing to write any path in `protected` (relative to the tree) or below one.
pub fn apply_with(
    upper: &Path,
    tree: &Path,
    dry_run: bool,
    protected: &[String],
) -> Result<Vec<Action>, ApplyError> {
    let read_err = |source| ApplyError::Io {
        what: "read",
        path: upper.display().to_string(),
        source,
    };
    let _open = super::changes::OpenUp::new(upper).map_err(read_err)?;
    let list = entries(upper).map_err(read_err)?;
    check(upper, tree, &list)?;
    let mut steps: Vec<(&Entry, Action)> = Vec::new();
    for e in &list {
        let existing = fs::symlink_metadata(tree.join(&e.rel)).ok();
        let (kind, file_type) = if is_whiteout(&e.meta) {
            if existing.is_none() {
                continue;
            }
            (Kind::Deleted, "any")
        } else if e.meta.is_dir() {
            match &existing {
                Some(m) if m.is_dir() && !is_opaque(&e.full) => continue,
                Some(_) => (Kind::Modified, "dir"),
                None => (Kind::Added, "dir"),
            }
        } else {
            let t = if e.meta.file_type().is_symlink() {
                "symlink"
            } else {
                "file"
            };
            (
                if existing.is_some() {
                    Kind::Modified
                } else {
                    Kind::Added
                },
                t,
            )
        };
        let action = Action {
            kind,
            path: e.rel.display().to_string(),
            file_type,
        };
        steps.push((e, action));
    }
    let touched: Vec<String> = steps
        .iter()
        .map(|(_, a)| a.path.clone())
        .filter(|p| super::is_protected(p, protected))
        .collect();
    if !touched.is_empty() {
        return Err(ApplyError::Protected {
            upper: upper.display().to_string(),
            paths: touched,
        });
    }
    if !dry_run {
        let tree_s = tree.display().to_string();
        let root = nix::fcntl::open(
            tree,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err("open", &tree_s))?;
        for (e, action) in &steps {
            execute(&root, e, &action.path)?;
        }
    }
    Ok(steps.into_iter().map(|(_, a)| a).collect())
}

/// Writes one entry of the layer into the tree, looking at the tree as it is now.
fn execute(root: &OwnedFd, e: &Entry, shown: &str) -> Result<(), ApplyError> {
    let parent_rel = e.rel.parent().unwrap_or(Path::new(""));
    let name = e.rel.file_name().unwrap_or_default();
    let dir = open_dir(root, parent_rel).map_err(io_err("open the directory of", shown))?;
    let existing =
        nix::sys::stat::fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok();
    let is_dir = existing.is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
    if is_whiteout(&e.meta) {
        remove(&dir, name).map_err(io_err("remove", shown))
    } else if e.meta.is_dir() {
        match (existing, is_dir) {
            (Some(_), true) => clear(&dir, name).map_err(io_err("empty", shown)),
            (Some(_), false) => remove(&dir, name).map_err(io_err("replace", shown)),
            (None, _) => Ok(()),
        }?;
        if !is_dir {
            mkdirat(
                dir.as_fd(),
                name,
                Mode::from_bits_truncate(e.meta.mode() & 0o7777),
            )
            .map_err(io_err("create", shown))?;
        }
        Ok(())
    } else if e.meta.file_type().is_symlink() {
        let target = fs::read_link(&e.full).map_err(|source| ApplyError::Io {
            what: "read",
            path: shown.to_string(),
            source,
        })?;
        remove(&dir, name).map_err(io_err("replace", shown))?;
        symlinkat(target.as_path(), dir.as_fd(), name).map_err(io_err("create", shown))
    } else {
        copy_file(&e.full, &dir, name, e.meta.mode()).map_err(|source| ApplyError::Io {
            what: "write",
            path: shown.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_must_stay_inside() {
        let upper = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        let (u, t) = (upper.path(), tree.path());
        assert!(stays_inside(u, t, Path::new("a/b/l"), Path::new("../c")));
        assert!(stays_inside(u, t, Path::new("l"), Path::new("x/y")));
        assert!(!stays_inside(u, t, Path::new("l"), Path::new("../x")));
        assert!(!stays_inside(
            u,
            t,
            Path::new("a/l"),
            Path::new("../../etc")
        ));
        assert!(!stays_inside(u, t, Path::new("a/l"), Path::new("/etc")));
    }

    #[test]
    fn chained_symlinks_are_resolved() {
        let upper = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        fs::create_dir(upper.path().join("d")).unwrap();
        std::os::unix::fs::symlink("..", upper.path().join("d/up")).unwrap();
        // Lexically inside (d/up/.. = d), but up is itself `..`: d/x is the tree's parent.
        std::os::unix::fs::symlink("up/..", upper.path().join("d/x")).unwrap();
        let e = apply(upper.path(), tree.path(), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("d/x") && e.contains("outside"), "{e}");
        assert!(
            fs::symlink_metadata(tree.path().join("d")).is_err(),
            "nothing may be written"
        );
    }

    #[test]
    fn applies_added_and_modified_files_and_refuses_escapes() {
        let upper = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        fs::write(tree.path().join("keep"), "old").unwrap();
        fs::write(upper.path().join("keep"), "new").unwrap();
        fs::create_dir(upper.path().join("d")).unwrap();
        fs::write(upper.path().join("d/f"), "x").unwrap();
        std::os::unix::fs::symlink("d/f", upper.path().join("link")).unwrap();
        let dry = apply(upper.path(), tree.path(), true).unwrap();
        assert_eq!(dry.len(), 4, "{dry:?}");
        assert_eq!(fs::read_to_string(tree.path().join("keep")).unwrap(), "old");
        apply(upper.path(), tree.path(), false).unwrap();
        assert_eq!(fs::read_to_string(tree.path().join("keep")).unwrap(), "new");
        assert_eq!(fs::read_to_string(tree.path().join("d/f")).unwrap(), "x");
        assert_eq!(
            fs::read_link(tree.path().join("link")).unwrap(),
            Path::new("d/f")
        );

        std::os::unix::fs::symlink("/etc", upper.path().join("evil")).unwrap();
        let e = apply(upper.path(), tree.path(), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("evil") && e.contains("outside"), "{e}");
    }

    #[test]
    fn never_writes_through_a_host_symlink() {
        let upper = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), tree.path().join("d")).unwrap();
        fs::create_dir(upper.path().join("d")).unwrap();
        fs::write(upper.path().join("d/f"), "x").unwrap();
        // The upper "d" replaces the host symlink "d" rather than writing through it.
        let r = apply(upper.path(), tree.path(), false);
        assert!(
            fs::read_dir(outside.path()).unwrap().next().is_none(),
            "wrote outside: {r:?}"
        );
    }
}
