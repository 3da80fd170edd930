//! Test harness: runs the real sbx binary as an unprivileged user. When the test runner is
//! root (as in CI), the spawned sbx is dropped to `nobody`, from a copy of the binary in a
//! world-readable directory (the build tree may sit under a 0700 home).

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

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

/// A copy of the sbx binary that the test uid can execute.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let built = PathBuf::from(env!("CARGO_BIN_EXE_sbx"));
        if !is_root() {
            return built;
        }
        // One copy per build of the binary, reused by every test file and every run.
        let meta = std::fs::metadata(&built).unwrap();
        let stamp = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let dir =
            std::env::temp_dir().join(format!("sbx-test-bin-{}-{}", stamp.as_nanos(), meta.len()));
        let copy = dir.join("sbx");
        if !copy.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let tmp = dir.join(format!("sbx.{}", std::process::id()));
            std::fs::copy(&built, &tmp).unwrap();
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::rename(&tmp, &copy).unwrap();
        }
        copy
    })
}

/// A directory owned by the test uid, removed when dropped.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        let dir = tempfile::Builder::new()
            .prefix("sbx-test-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        chown(dir.path());
        Workdir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a subdirectory owned by the test uid.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        chown(&p);
        p
    }

    /// Writes a file owned by the test uid.
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, content).unwrap();
        chown(&p);
        p
    }
}

pub fn chown(path: &Path) {
    if is_root() {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    }
}

/// A configured sbx invocation.
pub struct Sbx {
    pub cmd: Command,
    pub work: Workdir,
}

/// Starts building `sbx ARGS...` run from a fresh work directory, with a clean environment
/// (HOME inside the work directory) and as the unprivileged test uid.
pub fn sbx<I, S>(args: I) -> Sbx
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let work = Workdir::new();
    let home = work.subdir("home");
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .current_dir(work.path())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &home)
        .env("USER", "tester")
        .env("TMPDIR", work.path())
        .stdin(Stdio::null());
    if is_root() {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    Sbx { cmd, work }
}

pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub output: Output,
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Sbx {
    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Sbx {
        self.cmd.env(k, v);
        self
    }

    pub fn run(mut self) -> Ran {
        let output = self.cmd.output().expect("spawn sbx");
        let code = output.status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + output.status.signal().unwrap_or(0)
        });
        Ran {
            code,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            output,
        }
    }

    pub fn spawn(mut self) -> (std::process::Child, Workdir) {
        let child = self
            .cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sbx");
        (child, self.work)
    }
}

/// Runs `sbx ARGS... -- sh -c SCRIPT` and returns the result.
pub fn sh(args: &[&str], script: &str) -> Ran {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--", "sh", "-c", script]);
    sbx(all).run()
}

/// The inode of the host's namespace of kind `kind` (e.g. "pid"), as `readlink` prints it.
pub fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

/// Prints why a test is not checking something on this host, so a skip is never silent.
pub fn note_skip(test: &str, why: &str) {
    eprintln!("NOTE {test}: not checked on this host: {why}");
}
