//! Who sbx runs as in the tests, and executables that identity can run. When the runner is
//! root (as in CI), sbx and the commands of the host side run as `nobody`, from copies of the
//! built binaries in a world-readable directory (the build tree may sit under a 0700 home).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The unprivileged identity used when the runner is root.
pub const NOBODY: u32 = 65534;

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The uid sbx runs as in tests.
pub fn test_uid() -> u32 {
    if is_root() {
        NOBODY
    } else {
        nix::unistd::geteuid().as_raw()
    }
}

pub fn test_gid() -> u32 {
    if is_root() {
        NOBODY
    } else {
        nix::unistd::getegid().as_raw()
    }
}

/// Runs a host command as the test uid: as `nobody` when the runner is root.
pub trait AsTestUid {
    fn as_test_uid(&mut self) -> &mut Self;
}

impl AsTestUid for Command {
    fn as_test_uid(&mut self) -> &mut Self {
        if is_root() {
            self.uid(NOBODY).gid(NOBODY);
        }
        self
    }
}

// ---- executables the test uid can run ----

/// Whether `path` is installed and the test uid can execute it.
pub fn usable(path: &str) -> bool {
    let r = Command::new("/bin/sh")
        .args(["-c", "test -x \"$0\"", path])
        .as_test_uid()
        .status();
    matches!(r, Ok(s) if s.success())
}

/// Copies the executable `src` to `dir/name`, `dir` and the copy with mode 0755, so that the
/// test uid can run it wherever `src` lives. The copy appears whole (a rename), so that
/// concurrent test binaries can share it; an existing copy is kept.
pub fn install_executable(src: &Path, dir: &Path, name: &str) -> PathBuf {
    let copy = dir.join(name);
    if !copy.exists() {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        std::fs::copy(src, &tmp).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &copy).unwrap();
    }
    copy
}

/// A directory of this test process in /tmp, world-readable, removed when the process exits
/// (the build tree may sit under a 0700 home, so executables the test uid runs live here).
fn process_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sbx-test-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        extern "C" fn remove() {
            let dir = std::env::temp_dir().join(format!("sbx-test-run-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(dir);
        }
        // SAFETY: `remove` is a plain function that runs once at exit; atexit only stores it.
        unsafe { libc::atexit(remove) };
        dir
    })
}

/// A copy of the build product `built` that the test uid can run, for this test process: a
/// hard link when the build tree and /tmp share a filesystem (instant), else a copy. It goes
/// when the process exits, so a test run leaves nothing in /tmp.
pub fn copy_per_build(built: &Path, _prefix: &str, name: &str) -> PathBuf {
    let copy = process_dir().join(name);
    if !copy.exists() && std::fs::hard_link(built, &copy).is_err() {
        return install_executable(built, process_dir(), name);
    }
    copy
}

/// This test binary, copied where the test uid can run it (to re-run it unprivileged); the
/// copy goes when the returned directory drops.
pub fn test_exe_copy(tag: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("sbx-{tag}-test-"))
        .tempdir_in("/tmp")
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let copy = install_executable(&exe, dir.path(), &format!("{tag}-test"));
    (dir, copy)
}
