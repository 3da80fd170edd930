//! Writing into the host tree beneath a directory descriptor: files copied from the layer's
//! open descriptors (holes kept, setuid and setgid dropped) and symlinks, each written under a
//! temporary name and renamed into place; directories created; trees removed. Every name is
//! one component of a directory already open, so nothing is written through a symlink and
//! paths of any depth work.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, Whence, lseek, unlinkat};

use super::beneath::{self, AtResult};

/// The permission bits sbx writes: setuid and setgid are dropped (the tree is the user's; a
/// command must not leave a program there that runs with more than the caller's rights).
pub const KEPT_BITS: u32 = 0o1777;

fn os(name: &[u8]) -> &std::ffi::OsStr {
    std::ffi::OsStr::from_bytes(name)
}

/// A temporary name in `dir`, created exclusively by `make` (which gets the name).
fn temporary<T>(mut make: impl FnMut(&[u8]) -> AtResult<T>) -> AtResult<(Vec<u8>, T)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!(".sbx-apply.{}.{n}", std::process::id()).into_bytes();
        match make(&name) {
            Err(beneath::AtError::Errno(Errno::EEXIST)) if n < 1000 => continue,
            r => return r.map(|t| (name, t)),
        }
    }
}

/// Renames `tmp` of `dir` to `name`, replacing what is there (a directory is removed first).
fn place(dir: BorrowedFd<'_>, tmp: &[u8], name: &[u8]) -> AtResult<()> {
    match nix::fcntl::renameat(dir, os(tmp), dir, os(name)) {
        Err(Errno::EISDIR | Errno::ENOTEMPTY | Errno::EEXIST) => {
            remove_all(dir, name)?;
            Ok(nix::fcntl::renameat(dir, os(tmp), dir, os(name))?)
        }
        r => Ok(r?),
    }
}

/// Writes `name` in `dir` as a copy of `from` with the permission bits `mode & KEPT_BITS`.
pub fn install_file(dir: BorrowedFd<'_>, name: &[u8], from: &File, mode: u32) -> io::Result<()> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL;
    let (tmp, fd) =
        temporary(|t| beneath::open_at(dir, t, flags, Mode::from_bits_truncate(0o600)))?;
    let out = File::from(fd);
    let written = copy_data(from, &out)
        .and_then(|()| out.set_permissions(PermissionsExt::from_mode(mode & KEPT_BITS)))
        .and_then(|()| out.sync_all())
        .and_then(|()| place(dir, &tmp, name).map_err(io::Error::from));
    if written.is_err() {
        let _ = unlinkat(dir, os(&tmp), UnlinkatFlags::NoRemoveDir);
    }
    written
}

/// Writes `name` in `dir` as a symlink to `target`.
pub fn install_symlink(dir: BorrowedFd<'_>, name: &[u8], target: &[u8]) -> AtResult<()> {
    let (tmp, ()) = temporary(|t| Ok(nix::unistd::symlinkat(os(target), dir, os(t))?))?;
    let placed = place(dir, &tmp, name);
    if placed.is_err() {
        let _ = unlinkat(dir, os(&tmp), UnlinkatFlags::NoRemoveDir);
    }
    placed
}

/// Creates the directory `name` in `dir`, owner-writable until apply is done with it, and
/// opens it.
pub fn make_dir(dir: BorrowedFd<'_>, name: &[u8]) -> AtResult<OwnedFd> {
    nix::sys::stat::mkdirat(dir, os(name), Mode::from_bits_truncate(0o700))?;
    beneath::open_at(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
    )
}

/// Copies the bytes of `from` into `to`, leaving holes where `from` has them: only the data
/// regions SEEK_DATA/SEEK_HOLE report are read and written, and the length is set at the end.
fn copy_data(from: &File, to: &File) -> io::Result<()> {
    let size = from.metadata()?.len();
    let mut buf = vec![0u8; 128 << 10];
    let mut off = 0u64;
    while off < size {
        let start = match lseek(from.as_fd(), off as i64, Whence::SeekData) {
            Ok(o) => o as u64,
            // No data after `off`: the rest is a hole.
            Err(Errno::ENXIO) => break,
            Err(_) => off,
        };
        let end = match lseek(from.as_fd(), start as i64, Whence::SeekHole) {
            Ok(o) if o as u64 > start => (o as u64).min(size),
            _ => size,
        };
        let mut pos = start;
        while pos < end {
            let want = usize::try_from(end - pos)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = from.read_at(&mut buf[..want], pos)?;
            if n == 0 {
                break;
            }
            to.write_all_at(&buf[..n], pos)?;
            pos += n as u64;
        }
        if pos < end {
            // The file shrank while it was copied.
            break;
        }
        off = end;
    }
    to.set_len(size)
}

/// Removes `name` in `dir`, with everything inside it for a directory, never following a
/// symlink. Iterative: a deep tree cannot exhaust the stack.
pub fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> AtResult<()> {
    match unlinkat(dir, os(name), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    let top = beneath::open_at(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
    )?;
    clear(top)?;
    Ok(unlinkat(dir, os(name), UnlinkatFlags::RemoveDir)?)
}

/// Removes everything inside the open directory `top`.
pub fn clear(top: OwnedFd) -> AtResult<()> {
    struct Level {
        dir: OwnedFd,
        names: std::vec::IntoIter<Vec<u8>>,
        /// Its name in the level above.
        name: Vec<u8>,
    }
    let names = beneath::names(&top)?;
    let mut stack = vec![Level {
        dir: top,
        names: names.into_iter(),
        name: Vec::new(),
    }];
    while let Some(level) = stack.last_mut() {
        let Some(n) = level.names.next() else {
            let done = stack.pop().expect("not empty");
            if let Some(up) = stack.last() {
                unlinkat(up.dir.as_fd(), os(&done.name), UnlinkatFlags::RemoveDir)?;
            }
            continue;
        };
        match unlinkat(level.dir.as_fd(), os(&n), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(Errno::EISDIR) => {
                let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
                let dir = beneath::open_at(level.dir.as_fd(), &n, flags, Mode::empty())?;
                let names = beneath::names(&dir)?;
                stack.push(Level {
                    dir,
                    names: names.into_iter(),
                    name: n,
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn holes_stay_holes_and_setuid_goes() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let f = File::create(&src).unwrap();
        f.set_len(256 << 20).unwrap();
        f.write_all_at(b"middle", 100 << 20).unwrap();
        f.write_all_at(b"end", (256 << 20) - 3).unwrap();
        std::fs::set_permissions(&src, PermissionsExt::from_mode(0o6755)).unwrap();
        let from = File::open(&src).unwrap();
        let dst = d.path().join("dst");
        std::fs::create_dir(&dst).unwrap();
        let dir = beneath::open_dir_path(&dst).unwrap();
        install_file(dir.as_fd(), b"copy", &from, 0o6755).unwrap();
        let m = std::fs::metadata(dst.join("copy")).unwrap();
        assert_eq!(m.len(), 256 << 20);
        assert_eq!(m.mode() & 0o7777, 0o755);
        assert!(
            m.blocks() * 512 < 4 << 20,
            "{} blocks: not sparse",
            m.blocks()
        );
        let copy = File::open(dst.join("copy")).unwrap();
        let mut buf = [0u8; 6];
        copy.read_exact_at(&mut buf, 100 << 20).unwrap();
        assert_eq!(&buf, b"middle");
        copy.read_exact_at(&mut buf[..3], (256 << 20) - 3).unwrap();
        assert_eq!(&buf[..3], b"end");
        let names: Vec<_> = std::fs::read_dir(&dst).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left");
    }

    #[test]
    fn remove_all_never_follows_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("victim"), "v").unwrap();
        std::fs::create_dir_all(d.path().join("t/a/b")).unwrap();
        std::fs::write(d.path().join("t/a/b/f"), "").unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("t/a/out")).unwrap();
        let dir = beneath::open_dir_path(d.path()).unwrap();
        remove_all(dir.as_fd(), b"t").unwrap();
        assert!(!d.path().join("t").exists());
        assert!(outside.path().join("victim").exists());
    }
}
