//! Files sbx writes on the host because of a run: the run report, the change report, the kept
//! layers' record. Such a file often lies in a directory the sandbox can write (the working
//! directory), so by the time the run ends its name may be a symlink to any file of the user,
//! a fifo that would block sbx, or a directory. A [`HostFile`] therefore opens its directory
//! before the command starts and never opens the final name: it writes a new file under a
//! temporary name (`O_CREAT|O_EXCL|O_NOFOLLOW`) and renames it over the final name, which
//! replaces a directory entry and follows nothing. A final name that is anything but a regular
//! file is refused with one message; a hard link planted there is replaced, not written
//! through.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat, readlinkat, renameat};
use nix::sys::stat::{Mode, SFlag, fstatat};
use nix::unistd::{AccessFlags, UnlinkatFlags, faccessat, unlinkat};
use serde::Serialize;

use crate::text::{escape_os, escape_path};

/// What sits at a name where a regular file (or nothing) was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// With its target.
    Symlink(OsString),
    Directory,
    Fifo,
    Socket,
    Device,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Symlink(to) => write!(f, "a symbolic link (to {})", escape_os(to)),
            Found::Directory => f.write_str("a directory"),
            Found::Fifo => f.write_str("a fifo"),
            Found::Socket => f.write_str("a socket"),
            Found::Device => f.write_str("a device"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostFileError {
    #[error("{}: names a directory, not a file", escape_path(path))]
    NoName { path: PathBuf },
    #[error(
        "{}: cannot use the directory {}: {} ({errno:?}); it must exist and be writable \
         before the run",
        escape_path(path),
        escape_path(dir),
        errno.desc()
    )]
    Dir {
        path: PathBuf,
        dir: PathBuf,
        errno: Errno,
    },
    #[error(
        "{} is {found}, not a regular file: refused, nothing written (sbx replaces only a \
         regular file: it never writes through a link, or into a fifo, a directory or a \
         device, which a sandboxed command can plant)",
        escape_path(path)
    )]
    NotAFile { path: PathBuf, found: Found },
    #[error("{}: cannot {step}: {} ({errno:?})", escape_path(path), errno.desc())]
    Io {
        path: PathBuf,
        step: &'static str,
        errno: Errno,
    },
    #[error("{}: cannot encode the JSON: {source}", escape_path(path))]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// A file to be written on the host after the run, through its directory opened before it.
#[derive(Debug)]
pub struct HostFile {
    dir: OwnedFd,
    name: OsString,
    /// As the user named it, for messages.
    path: PathBuf,
}

impl HostFile {
    /// Opens the directory that will hold `path`, and checks that it is writable and that
    /// `path` is absent or a regular file. Call it before the command starts.
    pub fn prepare(path: &Path) -> Result<HostFile, HostFileError> {
        let bytes = path.as_os_str().as_bytes();
        let name = match path.file_name() {
            Some(n) if !bytes.ends_with(b"/") && !bytes.ends_with(b"/.") => n.to_os_string(),
            _ => {
                return Err(HostFileError::NoName {
                    path: path.to_path_buf(),
                });
            }
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir_error = |errno| HostFileError::Dir {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            errno,
        };
        let fd = openat(
            AT_FDCWD,
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(dir_error)?;
        // A directory the file cannot be created in is better said now than after the run.
        faccessat(
            &fd,
            ".",
            AccessFlags::W_OK | AccessFlags::X_OK,
            AtFlags::empty(),
        )
        .map_err(dir_error)?;
        let file = HostFile::in_dir(fd, &name, path.to_path_buf());
        file.check()?;
        Ok(file)
    }

    /// The file `name` in a directory sbx opened itself; `path` names it in messages.
    pub fn in_dir(dir: OwnedFd, name: &OsStr, path: PathBuf) -> HostFile {
        HostFile {
            dir,
            name: name.to_os_string(),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `value` as pretty JSON and a newline.
    pub fn write_json<T: Serialize>(&self, value: &T) -> Result<(), HostFileError> {
        let mut text =
            serde_json::to_vec_pretty(value).map_err(|source| HostFileError::Encode {
                path: self.path.clone(),
                source,
            })?;
        text.push(b'\n');
        self.write(&text)
    }

    /// Replaces the file with `content`, as a new file renamed over the final name.
    pub fn write(&self, content: &[u8]) -> Result<(), HostFileError> {
        let (tmp, fd) = self.create_temporary()?;
        let written = std::fs::File::from(fd)
            .write_all(content)
            .map_err(|e| self.io("write a temporary file", errno_of(&e)))
            .and_then(|()| self.check())
            .and_then(|()| {
                renameat(&self.dir, tmp.as_os_str(), &self.dir, self.name.as_os_str()).map_err(
                    // Something other than a file took the name since the check: say what.
                    |errno| match self.check() {
                        Err(e) => e,
                        Ok(()) => self.io("rename the temporary file into place", errno),
                    },
                )
            });
        if written.is_err() {
            let _ = unlinkat(&self.dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        written
    }

    /// A new, empty file under a name of its own in the directory.
    fn create_temporary(&self) -> Result<(OsString, OwnedFd), HostFileError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut last = Errno::EEXIST;
        for attempt in 0..16u32 {
            let tmp = OsString::from(format!(
                ".sbx-{}-{nanos:x}-{attempt}.tmp",
                std::process::id()
            ));
            match openat(
                &self.dir,
                tmp.as_os_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o666),
            ) {
                Ok(fd) => return Ok((tmp, fd)),
                // The name is taken (by anything, a planted symlink included): try another.
                Err(Errno::EEXIST) => last = Errno::EEXIST,
                Err(e) => return Err(self.io("create a temporary file", e)),
            }
        }
        Err(self.io("create a temporary file", last))
    }

    /// Whether the final name is absent or a regular file, without following it.
    fn check(&self) -> Result<(), HostFileError> {
        let st = match fstatat(
            &self.dir,
            self.name.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(self.io("look at it", e)),
        };
        let found = match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFREG => return Ok(()),
            SFlag::S_IFLNK => Found::Symlink(
                readlinkat(&self.dir, self.name.as_os_str()).unwrap_or_else(|_| "?".into()),
            ),
            SFlag::S_IFDIR => Found::Directory,
            SFlag::S_IFIFO => Found::Fifo,
            SFlag::S_IFSOCK => Found::Socket,
            _ => Found::Device,
        };
        Err(HostFileError::NotAFile {
            path: self.path.clone(),
            found,
        })
    }

    fn io(&self, step: &'static str, errno: Errno) -> HostFileError {
        HostFileError::Io {
            path: self.path.clone(),
            step,
            errno,
        }
    }
}

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn prepared(path: &Path) -> HostFile {
        HostFile::prepare(path).unwrap_or_else(|e| panic!("prepare {}: {e}", path.display()))
    }

    /// The names in `d`, to show that no temporary file is left behind.
    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn creates_and_replaces_a_regular_file() {
        let d = dir();
        let p = d.path().join("r.json");
        prepared(&p).write(b"one").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        let f = prepared(&p);
        f.write_json(&[1, 2]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "[\n  1,\n  2\n]\n");
        assert_eq!(names(d.path()), ["r.json"]);
    }

    #[test]
    fn refuses_what_replaced_the_file_after_prepare_and_leaves_it() {
        let d = dir();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let absent = d.path().join("absent");
        let p = d.path().join("r.json");
        type Plant<'a> = Box<dyn Fn(&Path) + 'a>;
        let plants: Vec<(&str, Plant)> = vec![
            (
                "a symbolic link (to ",
                Box::new(|p| std::os::unix::fs::symlink(&victim, p).unwrap()),
            ),
            (
                "a symbolic link (to ",
                Box::new(|p| std::os::unix::fs::symlink(&absent, p).unwrap()),
            ),
            (
                "a fifo",
                Box::new(|p| nix::unistd::mkfifo(p, Mode::from_bits_truncate(0o600)).unwrap()),
            ),
            ("a directory", Box::new(|p| std::fs::create_dir(p).unwrap())),
        ];
        for (found, plant) in plants {
            let f = prepared(&p);
            plant(&p);
            let e = f.write(b"report").unwrap_err();
            assert!(matches!(e, HostFileError::NotAFile { .. }), "{e:?}");
            let shown = e.to_string();
            assert!(shown.contains(found) && shown.contains("r.json"), "{shown}");
            assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
            assert!(!absent.exists(), "followed a dangling link");
            // What was planted stays; nothing else is left.
            assert!(std::fs::symlink_metadata(&p).is_ok());
            assert_eq!(names(d.path()), ["r.json", "victim"], "{found}");
            let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir(&p));
        }
    }

    #[test]
    fn a_planted_hard_link_is_replaced_not_written_through() {
        let d = dir();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let p = d.path().join("r.json");
        let f = prepared(&p);
        std::fs::hard_link(&victim, &p).unwrap();
        f.write(b"report").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&p).unwrap(), b"report");
        let (a, b) = (
            std::fs::metadata(&victim).unwrap(),
            std::fs::metadata(&p).unwrap(),
        );
        assert_ne!(a.ino(), b.ino());
    }

    #[test]
    fn writes_into_the_directory_opened_before_even_if_it_was_moved() {
        let d = dir();
        let sub = d.path().join("out");
        std::fs::create_dir(&sub).unwrap();
        let elsewhere = d.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let f = prepared(&sub.join("r.json"));
        std::fs::rename(&sub, d.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &sub).unwrap();
        f.write(b"report").unwrap();
        assert!(names(&elsewhere).is_empty(), "followed the new symlink");
        assert_eq!(
            std::fs::read(d.path().join("moved/r.json")).unwrap(),
            b"report"
        );
    }

    #[test]
    fn bad_paths_are_refused_before_anything_is_written() {
        let d = dir();
        let missing = d.path().join("missing/r.json");
        let e = HostFile::prepare(&missing).unwrap_err();
        assert!(
            matches!(
                e,
                HostFileError::Dir {
                    errno: Errno::ENOENT,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("missing"), "{e}");
        for p in [
            d.path().join("x/"),
            d.path().join("x/."),
            PathBuf::from("/"),
        ] {
            let e = HostFile::prepare(&p).unwrap_err();
            assert!(matches!(e, HostFileError::NoName { .. }), "{p:?}: {e:?}");
        }
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let e = HostFile::prepare(&sub).unwrap_err();
        assert!(
            matches!(
                &e,
                HostFileError::NotAFile {
                    found: Found::Directory,
                    ..
                }
            ),
            "{e:?}"
        );
        std::os::unix::fs::symlink(d.path().join("t"), d.path().join("link")).unwrap();
        let e = HostFile::prepare(&d.path().join("link")).unwrap_err();
        assert!(e.to_string().contains("a symbolic link (to "), "{e}");
        assert!(!d.path().join("t").exists());
    }

    #[test]
    fn a_relative_name_is_in_the_current_directory() {
        let f = prepared(Path::new("no-such-report-file.json"));
        assert_eq!(f.path(), Path::new("no-such-report-file.json"));
    }

    #[test]
    fn a_symlink_target_is_shown_escaped() {
        let e = HostFileError::NotAFile {
            path: "r".into(),
            found: Found::Symlink("/x\x1b[2J".into()),
        };
        assert!(e.to_string().contains("(to /x\\e[2J)"), "{e}");
    }
}
