//! Whose profile files sbx believes. A profile decides what the sandbox may do (it can turn
//! seccomp and landlock off, or bind the whole home writable), so a file that someone else
//! wrote, or could rewrite, is refused: the rule OpenSSH's StrictModes applies to
//! `authorized_keys`. The file and every directory above it, up to a stop, must be owned by
//! the caller or root and writable by no one else; a sticky directory (`/tmp`) may be
//! writable by others, since they cannot rename or replace what is not theirs in it.
//!
//! The stop is the configuration root (`$XDG_CONFIG_HOME/sbx`) for a profile found there by
//! name; for a profile named by path it is `/`: that path can be anywhere, and a directory
//! anyone can write anywhere above it lets them swap the file. OpenSSH stops at the home
//! directory because its files live there; a profile path need not.
//!
//! The file is opened once and its owner and mode are read from that descriptor (fstat), so the
//! text that is parsed is the text that was checked; the directories are checked by path after
//! the open, and once they pass nobody else can change them.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a profile is not trusted.
#[derive(Debug)]
pub enum Distrust {
    /// `path` belongs to another user.
    Owner { path: PathBuf, uid: u32 },
    /// `path` can be written by its group or by everyone.
    Writable { path: PathBuf, by: &'static str },
    /// The profile is not a regular file (a FIFO would block the read; a device is no profile).
    NotAFile { path: PathBuf },
}

impl Distrust {
    /// The file or directory at fault.
    pub fn path(&self) -> &Path {
        match self {
            Distrust::Owner { path, .. }
            | Distrust::Writable { path, .. }
            | Distrust::NotAFile { path } => path,
        }
    }

    /// What the user can do about it.
    pub fn fix(&self) -> String {
        use crate::text::escape_path as esc;
        match self {
            Distrust::Owner { .. } => {
                "if you trust the profile, copy it into a directory of your own and name the copy"
                    .into()
            }
            Distrust::Writable { path, .. } => format!("chmod go-w {}", esc(path)),
            Distrust::NotAFile { .. } => "name a TOML file".into(),
        }
    }
}

impl fmt::Display for Distrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Distrust::Owner { uid, .. } => write!(f, "is owned by uid {uid}, neither you nor root"),
            Distrust::Writable { by, .. } => write!(f, "is writable by {by}"),
            Distrust::NotAFile { .. } => write!(f, "is not a regular file"),
        }
    }
}

/// Why a profile could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    Untrusted(Distrust),
}

/// A profile read from a file that passed the checks.
pub struct Trusted {
    /// The path with every symlink resolved: what `extends` resolves against.
    pub canonical: PathBuf,
    pub text: String,
}

/// Reads the profile at `path` for the user `uid`, if it and the directories above it, up to
/// `stop` (or `/` when the file does not lie beneath `stop`), pass the checks.
pub fn read(path: &Path, stop: Option<&Path>, uid: u32) -> Result<Trusted, ReadError> {
    let canonical = path.canonicalize().map_err(ReadError::Io)?;
    // O_NONBLOCK: opening a FIFO must not wait for a writer; the type is checked next.
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&canonical)
        .map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::Untrusted(Distrust::NotAFile { path: canonical }));
    }
    check(&canonical, &meta, uid).map_err(ReadError::Untrusted)?;
    let stop = stop
        .and_then(|s| s.canonicalize().ok())
        .filter(|s| canonical.starts_with(s));
    for dir in canonical.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(ReadError::Io)?;
        check(dir, &meta, uid).map_err(ReadError::Untrusted)?;
        if stop.as_deref() == Some(dir) {
            break;
        }
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(ReadError::Io)?;
    Ok(Trusted { canonical, text })
}

/// The StrictModes rule for one file or directory.
fn check(path: &Path, meta: &Metadata, uid: u32) -> Result<(), Distrust> {
    let owner = meta.uid();
    if owner != uid && owner != 0 {
        return Err(Distrust::Owner {
            path: path.to_path_buf(),
            uid: owner,
        });
    }
    let mode = meta.mode();
    let sticky = meta.is_dir() && mode & libc::S_ISVTX != 0;
    let by = if mode & 0o002 != 0 {
        "everyone"
    } else if mode & 0o020 != 0 {
        "its group"
    } else {
        return Ok(());
    };
    if sticky {
        return Ok(());
    }
    Err(Distrust::Writable {
        path: path.to_path_buf(),
        by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// dir/cfg/sbx/profiles/p.toml, all 0755/0644 and the caller's.
    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cfg/sbx");
        std::fs::create_dir_all(root.join("profiles")).unwrap();
        let file = root.join("profiles/p.toml");
        std::fs::write(&file, "description = \"p\"\n").unwrap();
        chmod(&file, 0o644);
        (dir, root, file)
    }

    fn refusal(file: &Path, stop: Option<&Path>) -> Distrust {
        match read(file, stop, me()) {
            Err(ReadError::Untrusted(d)) => d,
            Err(ReadError::Io(e)) => panic!("io error: {e}"),
            Ok(_) => panic!("{} was trusted", file.display()),
        }
    }

    #[test]
    fn an_own_profile_in_own_directories_is_read() {
        let (_d, root, file) = tree();
        let t = read(&file, Some(&root), me()).unwrap();
        assert_eq!(t.text, "description = \"p\"\n");
        assert_eq!(t.canonical, file.canonicalize().unwrap());
    }

    #[test]
    fn a_profile_writable_by_group_or_others_is_refused() {
        let (_d, root, file) = tree();
        chmod(&file, 0o664);
        let d = refusal(&file, Some(&root));
        assert!(
            matches!(&d, Distrust::Writable { by: "its group", path } if path.ends_with("p.toml")),
            "{d}"
        );
        chmod(&file, 0o646);
        let d = refusal(&file, Some(&root));
        assert!(d.to_string().contains("writable by everyone"), "{d}");
        assert!(d.fix().contains("chmod go-w"), "{}", d.fix());
    }

    #[test]
    fn a_writable_directory_up_to_the_stop_is_refused_and_above_it_not() {
        let (d, root, file) = tree();
        chmod(&root.join("profiles"), 0o777);
        let e = refusal(&file, Some(&root));
        assert!(
            matches!(&e, Distrust::Writable { path, .. } if path.ends_with("profiles")),
            "{e}"
        );
        chmod(&root.join("profiles"), 0o755);
        chmod(&root, 0o775);
        assert!(matches!(
            refusal(&file, Some(&root)),
            Distrust::Writable { .. }
        ));
        chmod(&root, 0o755);
        // Above the configuration root the directories are not the profile's business...
        chmod(&d.path().join("cfg"), 0o777);
        read(&file, Some(&root), me()).unwrap();
        // ...but a profile named by path is checked up to `/`.
        assert!(matches!(refusal(&file, None), Distrust::Writable { .. }));
        chmod(&d.path().join("cfg"), 0o755);
    }

    #[test]
    fn a_sticky_world_writable_directory_is_accepted() {
        let (d, _root, file) = tree();
        chmod(&d.path().join("cfg"), 0o1777);
        read(&file, None, me()).unwrap();
    }

    #[test]
    fn another_owner_is_refused_and_root_is_trusted() {
        let (_d, root, file) = tree();
        if me() == 0 {
            // The runner is root: hand the file to a stranger and read it as a third user.
            std::os::unix::fs::chown(&file, Some(12345), None).unwrap();
            let e = match read(&file, Some(&root), 65534) {
                Err(ReadError::Untrusted(d)) => d,
                _ => panic!("a stranger's profile was trusted"),
            };
            assert!(matches!(e, Distrust::Owner { uid: 12345, .. }), "{e}");
            assert!(e.to_string().contains("uid 12345"), "{e}");
            assert_eq!(e.path(), file.canonicalize().unwrap());
            // The directories are root's: trusted by everyone, so the owner reads it.
            read(&file, Some(&root), 12345).unwrap();
        } else {
            // Who owns the file is fixed; reading as someone else tests the same rule.
            let e = match read(&file, Some(&root), me() + 1) {
                Err(ReadError::Untrusted(d)) => d,
                _ => panic!("trusted for another user"),
            };
            assert!(matches!(e, Distrust::Owner { .. }), "{e}");
        }
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let (_d, root, _file) = tree();
        let fifo = root.join("profiles/fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert!(matches!(
            refusal(&fifo, Some(&root)),
            Distrust::NotAFile { .. }
        ));
    }
}
