//! Entries beneath a directory descriptor, one name at a time. The layer and the host tree may
//! both be changed by a sandboxed process while sbx reads or writes them, so nothing here takes
//! a path: every open names one component of a directory already open, resolves with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` (openat2; `O_NOFOLLOW` on one component where the
//! kernel has no openat2, which is the same for a single name), and what was opened is checked
//! against what was listed (device, inode and type) before it is used. Paths of any depth work,
//! because no call ever sees more than one name.

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

/// Why an entry could not be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtError {
    Errno(Errno),
    /// What was opened is not what was listed: something replaced it in between.
    Changed,
    /// Not one plain name (a `/`, `.`, `..` or nothing).
    NotAName,
}

impl From<Errno> for AtError {
    fn from(e: Errno) -> AtError {
        AtError::Errno(e)
    }
}

impl fmt::Display for AtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AtError::Errno(e) => write!(f, "{} ({e:?})", e.desc()),
            AtError::Changed => f.write_str("it was replaced while sbx read it"),
            AtError::NotAName => f.write_str("not a plain file name"),
        }
    }
}

impl std::error::Error for AtError {}

impl From<AtError> for std::io::Error {
    fn from(e: AtError) -> std::io::Error {
        match e {
            AtError::Errno(e) => e.into(),
            e => std::io::Error::other(e),
        }
    }
}

pub type AtResult<T> = Result<T, AtError>;

/// Set once openat2 answered ENOSYS (kernels before 5.6): single names are then opened with
/// openat and `O_NOFOLLOW`.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

fn name_of(name: &[u8]) -> AtResult<&OsStr> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(AtError::NotAName);
    }
    Ok(OsStr::from_bytes(name))
}

/// Opens the entry `name` of `dir` without following a symlink (`O_CLOEXEC | O_NOFOLLOW` are
/// added to `flags`).
pub fn open_at(dir: BorrowedFd<'_>, name: &[u8], flags: OFlag, mode: Mode) -> AtResult<OwnedFd> {
    let name = name_of(name)?;
    let flags = flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    let once = || {
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let mut how = OpenHow::new().flags(flags).resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
            if flags.contains(OFlag::O_CREAT) {
                how = how.mode(mode);
            }
            match nix::fcntl::openat2(dir, name, how) {
                Err(Errno::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
                r => return r,
            }
        }
        nix::fcntl::openat(dir, name, flags, mode)
    };
    retry_emfile(once).map_err(AtError::from)
}

/// Opens the entry `name` of `dir`, which was listed as `st`, and checks that it is still that
/// entry.
pub fn open_same(
    dir: BorrowedFd<'_>,
    name: &[u8],
    st: &FileStat,
    flags: OFlag,
) -> AtResult<OwnedFd> {
    let fd = open_at(dir, name, flags, Mode::empty())?;
    let now = nix::sys::stat::fstat(&fd)?;
    if same(&now, st) {
        Ok(fd)
    } else {
        Err(AtError::Changed)
    }
}

/// The entry `name` of `dir` itself (a symlink is not followed).
pub fn stat_at(dir: BorrowedFd<'_>, name: &[u8]) -> AtResult<FileStat> {
    let name = name_of(name)?;
    Ok(nix::sys::stat::fstatat(
        dir,
        name,
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?)
}

/// The target of the symlink `name` of `dir`, as bytes.
pub fn readlink_at(dir: BorrowedFd<'_>, name: &[u8]) -> AtResult<Vec<u8>> {
    let name = name_of(name)?;
    Ok(nix::fcntl::readlinkat(dir, name)?.into_vec())
}

/// The names in the open directory `dir` (not `.` and `..`), sorted by their bytes.
pub fn names(dir: &OwnedFd) -> AtResult<Vec<Vec<u8>>> {
    let dup = retry_emfile(|| {
        dir.try_clone()
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    })?;
    let mut d = nix::dir::Dir::from_fd(dup)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let n = e?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            out.push(n);
        }
    }
    out.sort();
    Ok(out)
}

/// The same file: device, inode and type.
pub fn same(a: &FileStat, b: &FileStat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino && kind(a) == kind(b)
}

pub fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT)
}

pub fn is_dir(st: &FileStat) -> bool {
    kind(st) == SFlag::S_IFDIR
}

/// A whiteout in an upper layer (mounted with `userxattr`): a character device 0:0.
pub fn is_whiteout(st: &FileStat) -> bool {
    kind(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

/// A directory of the upper layer that replaced the lower one (`user.overlay.opaque=y`).
pub fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 4];
    crate::sys::fgetxattr(dir, c"user.overlay.opaque", &mut buf) == Ok(1) && buf[0] == b'y'
}

/// Whether the open file carries file capabilities (`security.capability`).
pub fn has_capabilities(fd: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 64];
    match crate::sys::fgetxattr(fd, c"security.capability", &mut buf) {
        Ok(n) => n > 0,
        Err(e) => e == Errno::ERANGE,
    }
}

/// `dir`, `file`, `symlink` or `other`, as the change report names them.
pub fn type_name(st: &FileStat) -> &'static str {
    match kind(st) {
        SFlag::S_IFDIR => "dir",
        SFlag::S_IFREG => "file",
        SFlag::S_IFLNK => "symlink",
        _ => "other",
    }
}

/// Runs `f`, and once more after raising the soft limit on open files to the hard one when it
/// ran out of descriptors: a deep tree holds one per level, and apply one per file it copies.
pub fn retry_emfile<T>(mut f: impl FnMut() -> nix::Result<T>) -> nix::Result<T> {
    match f() {
        Err(Errno::EMFILE) if raise_open_files() => f(),
        r => r,
    }
}

fn raise_open_files() -> bool {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok(),
        _ => false,
    }
}

/// The directory at `path`, opened to read it (symlinks on the way are followed: the path is
/// the user's or the run's own, and callers check what they got).
pub fn open_dir_path(path: &std::path::Path) -> AtResult<OwnedFd> {
    retry_emfile(|| {
        nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    })
    .map_err(AtError::from)
}

/// Which file `fd` is.
pub fn stat_fd(fd: &impl AsFd) -> AtResult<FileStat> {
    Ok(nix::sys::stat::fstat(fd.as_fd())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_names_are_opened() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("sub", d.path().join("link")).unwrap();
        let root = open_dir_path(d.path()).unwrap();
        let dir = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        assert!(open_at(root.as_fd(), b"sub", dir, Mode::empty()).is_ok());
        for bad in [&b"sub/."[..], b"..", b".", b""] {
            assert_eq!(
                open_at(root.as_fd(), bad, dir, Mode::empty()).unwrap_err(),
                AtError::NotAName,
                "{bad:?}"
            );
        }
        assert!(open_at(root.as_fd(), b"link", dir, Mode::empty()).is_err());
    }

    #[test]
    fn without_openat2_a_single_name_is_still_never_followed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("sub", d.path().join("link")).unwrap();
        let root = open_dir_path(d.path()).unwrap();
        let dir = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        // As on a kernel before 5.6 (other tests may take this path meanwhile: it is
        // equivalent for one name, which is the point).
        NO_OPENAT2.store(true, Ordering::Relaxed);
        let sub = open_at(root.as_fd(), b"sub", dir, Mode::empty());
        let link = open_at(root.as_fd(), b"link", dir, Mode::empty());
        let dotdot = open_at(root.as_fd(), b"..", dir, Mode::empty());
        NO_OPENAT2.store(false, Ordering::Relaxed);
        assert!(sub.is_ok());
        assert!(
            matches!(link, Err(AtError::Errno(Errno::ELOOP | Errno::ENOTDIR))),
            "{link:?}"
        );
        assert_eq!(dotdot.unwrap_err(), AtError::NotAName);
    }

    #[test]
    fn a_replaced_entry_is_noticed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), "1").unwrap();
        let root = open_dir_path(d.path()).unwrap();
        let st = stat_at(root.as_fd(), b"f").unwrap();
        std::fs::remove_file(d.path().join("f")).unwrap();
        std::fs::create_dir(d.path().join("keep-inode-busy")).unwrap();
        std::fs::write(d.path().join("f"), "2").unwrap();
        let r = open_same(root.as_fd(), b"f", &st, OFlag::O_RDONLY);
        // The inode may be reused by the new file; the check is only as good as (dev, ino).
        if let Err(e) = r {
            assert_eq!(e, AtError::Changed);
        }
        std::fs::remove_file(d.path().join("f")).unwrap();
        std::os::unix::fs::symlink("keep-inode-busy", d.path().join("f")).unwrap();
        assert!(open_same(root.as_fd(), b"f", &st, OFlag::O_RDONLY).is_err());
    }
}
