//! What sbx leaves on the host during a run (a private overlay layer in `$TMPDIR`, the run's
//! cgroup) is removed by sbx at the end; a janitor removes it if sbx itself is killed first.
//! The janitor is a shell forked before the sandbox starts, blocked reading a pipe whose only
//! writer is sbx: a line means the run is over and sbx cleaned up itself (the janitor leaves);
//! end of file without a line means sbx died, and the janitor cleans up. It holds nothing else
//! of sbx's (not its terminal, not its output), except, when started with
//! [`Janitor::start_keeping`], one descriptor whose last close may wait (init's inotify
//! instance): the janitor closes it as it exits, and sbx does not wait for that.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::sys;

/// Directories to remove; then cgroups, removed once their processes are gone.
const SCRIPT: &str = r#"read -r _ && exit 0
dirs=true
for p in "$@"; do
  if [ "$p" = -- ]; then dirs=false; continue; fi
  if $dirs; then
    [ -d "$p" ] && chmod -R u+rwx "$p" && rm -rf "$p"
  else
    i=0
    while [ -d "$p" ] && [ $i -lt 50 ]; do rmdir "$p/sandbox" "$p" 2>/dev/null; sleep 0.1; i=$((i+1)); done
  fi
done"#;

pub struct Janitor {
    /// The write end of the pipe the janitor waits on.
    pipe: Option<OwnedFd>,
    pid: libc::pid_t,
    /// Whether dismissing it waits for its exit (else it is left to its new parent once sbx
    /// exits, which the caller does right away).
    reap: bool,
}

/// The descriptor a janitor started by [`Janitor::start_keeping`] holds.
const KEPT_FD: libc::c_int = 3;

impl Janitor {
    /// Starts a janitor for `dirs` and `cgroups`; None when there is nothing to clean or it
    /// cannot start (the run goes on: this only covers sbx being killed).
    pub fn start(dirs: &[PathBuf], cgroups: &[PathBuf]) -> Option<Janitor> {
        Self::start_with(dirs, cgroups, None)
    }

    /// [`Janitor::start`] for a caller that exits as soon as the run is over (the CLI): the
    /// janitor also keeps `fd` open until it exits, and dismissing it does not wait for that
    /// exit, so that the close of `fd` that waits is the janitor's alone.
    pub fn start_keeping(dirs: &[PathBuf], cgroups: &[PathBuf], fd: RawFd) -> Option<Janitor> {
        Self::start_with(dirs, cgroups, Some(fd))
    }

    fn start_with(dirs: &[PathBuf], cgroups: &[PathBuf], keep: Option<RawFd>) -> Option<Janitor> {
        if dirs.is_empty() && cgroups.is_empty() {
            return None;
        }
        let cstr = |b: &[u8]| CString::new(b).ok();
        let mut args: Vec<CString> = vec![cstr(b"sh")?, cstr(b"-c")?, cstr(SCRIPT.as_bytes())?];
        args.push(cstr(b"sh")?);
        for d in dirs {
            args.push(cstr(d.as_os_str().as_bytes())?);
        }
        args.push(cstr(b"--")?);
        for c in cgroups {
            args.push(cstr(c.as_os_str().as_bytes())?);
        }
        let argv: Vec<*const libc::c_char> = args
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let env = [c"PATH=/usr/bin:/bin".as_ptr(), std::ptr::null()];
        let null = sys::open(c"/dev/null", libc::O_RDWR, 0).ok()?;
        let (read, write) = sys::pipe().ok()?;
        let pid = Self::fork(read.as_raw_fd(), null, keep, &argv, &env);
        sys::close(null);
        Some(Janitor {
            pipe: Some(write),
            pid: pid?,
            reap: keep.is_none(),
        })
    }

    #[allow(unsafe_code)] // clone_fork: the child only moves descriptors and execs
    fn fork(
        read: libc::c_int,
        null: libc::c_int,
        keep: Option<RawFd>,
        argv: &[*const libc::c_char],
        env: &[*const libc::c_char],
    ) -> Option<libc::pid_t> {
        // The child only calls async-signal-safe dup2, fcntl, close_range, setsid and execve
        // (or open, getdents64, close), on arguments built before.
        // SAFETY: as above; the child ends in execve or _exit.
        match unsafe { sys::clone_fork(0) } {
            Ok(0) => {
                let ok = sys::dup_to(read, 0).and_then(|_| sys::dup_to(null, 1));
                let ok = ok
                    .and_then(|_| sys::dup_to(null, 2))
                    .and_then(|_| match keep {
                        Some(fd) => sys::dup_to_inherited(fd, KEPT_FD),
                        None => Ok(()),
                    });
                if ok.is_ok() {
                    let kept = [0, 1, 2, KEPT_FD];
                    let kept = &kept[..if keep.is_some() { 4 } else { 3 }];
                    // Without close_range a failure to list /proc/self/fd leaves sbx's own
                    // descriptors to a helper of sbx's: not worth losing the clean-up for.
                    let _ = sys::close_all_except(kept);
                    // A new session: a Ctrl-C meant for sbx does not reach the janitor.
                    let _ = sys::setsid();
                    sys::execve(c"/bin/sh", argv, env);
                }
                sys::exit(127)
            }
            Ok(pid) => Some(pid),
            Err(e) => {
                tracing::debug!("janitor: cannot fork: {}", e.desc());
                None
            }
        }
    }
}

/// Dropped when sbx has cleaned up itself: the janitor leaves without touching anything, and
/// is reaped (one started by [`Janitor::start_keeping`] is left to exit on its own).
impl Drop for Janitor {
    fn drop(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            let _ = sys::write_all(pipe.as_raw_fd(), b"done\n");
            drop(pipe);
            if self.reap {
                let _ = sys::wait4(self.pid, 0);
            }
        }
    }
}
