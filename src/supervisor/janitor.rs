//! What sbx leaves on the host during a run (a private overlay layer in `$TMPDIR`, the run's
//! cgroup) is removed by sbx at the end; a janitor removes it if sbx itself is killed first.
//! The janitor is forked before the sandbox starts and waits on a channel whose only writer is
//! sbx: "done" means the run is over and sbx cleaned up itself (the janitor leaves); end of
//! file without it means sbx died, and the janitor cleans up with a shell. It holds nothing
//! else of sbx's (not its terminal, not its output) but, when started with
//! [`Janitor::start_for_command`], init's inotify instance and the sandbox's mount namespace,
//! whose last closes wait for the kernel or take it a while: the janitor closes them as it
//! exits, and sbx does not wait for that.
//!
//! Unless the caller sets `Supervision::return_before_teardown` (the `sbx` command does), the
//! fork execs the shell at once: a fork of a library caller's program that lived through the
//! run would keep a copy of every page the program writes meanwhile. For the command, whose
//! memory is small, the fork itself waits, and execs the shell only if sbx dies: the shell's
//! start (an exec and a dynamic link, ≈ 0.5 ms of CPU) had run beside the sandbox's setup in
//! every run with a cgroup, on the CPU init needed (benches/README.md, "Runs in a cgroup").
//! That fork is named `janitor`, so that `pkill -x sbx` or `killall sbx` spares it.

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
    /// sbx's end of the channel (a pipe, or a socket pair for a janitor that holds
    /// descriptors) the janitor waits on.
    pipe: Option<OwnedFd>,
    pid: libc::pid_t,
    /// Started by [`Janitor::start_for_command`]: dismissing it does not wait for its exit (it
    /// is left to its new parent once sbx exits, which the caller does right away), and it
    /// takes descriptors to hold.
    for_command: bool,
}

/// The descriptor a janitor started by [`Janitor::start_for_command`] keeps for the shell.
const KEPT_FD: libc::c_int = 3;

/// How the janitor waits for sbx's word.
#[derive(Clone, Copy)]
enum Waiting {
    /// As the shell, exec'd at once (a library caller's program).
    InTheShell,
    /// As a fork of sbx, holding `keep` if given; the shell only if sbx dies (the command).
    InTheFork { keep: Option<RawFd> },
}

impl Janitor {
    /// Starts a janitor for `dirs` and `cgroups`; None when there is nothing to clean or it
    /// cannot start (the run goes on: this only covers sbx being killed).
    pub fn start(dirs: &[PathBuf], cgroups: &[PathBuf]) -> Option<Janitor> {
        Self::start_with(dirs, cgroups, Waiting::InTheShell)
    }

    /// [`Janitor::start`] for the `sbx` command, which exits as soon as the run is over: the
    /// janitor waits as a fork of sbx (see the module's doc), keeps `keep` open until it exits,
    /// and dismissing it does not wait for that exit, so that a close of `keep` that waits is
    /// the janitor's alone.
    pub fn start_for_command(
        dirs: &[PathBuf],
        cgroups: &[PathBuf],
        keep: Option<RawFd>,
    ) -> Option<Janitor> {
        Self::start_with(dirs, cgroups, Waiting::InTheFork { keep })
    }

    /// Gives a janitor started by [`Janitor::start_for_command`] `fd` to hold until it exits
    /// (the sandbox's mount namespace: its last close tears the sandbox's mounts down, ≈ 0.2 ms
    /// that init's exit, which sbx waits for with a cgroup, then does not spend). A janitor
    /// that execs its shell at once takes nothing.
    pub fn hold(&self, fd: RawFd) -> sys::SysResult {
        match (&self.pipe, self.for_command) {
            (Some(channel), true) => sys::send_fd(channel.as_raw_fd(), fd),
            _ => Ok(()),
        }
    }

    fn start_with(dirs: &[PathBuf], cgroups: &[PathBuf], waiting: Waiting) -> Option<Janitor> {
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
        // The fork receives descriptors to hold (`Janitor::hold`) on the same channel.
        let (read, write) = match waiting {
            Waiting::InTheShell => sys::pipe().ok()?,
            Waiting::InTheFork { .. } => sys::stream_socketpair().ok()?,
        };
        let pid = Self::fork(read.as_raw_fd(), null, waiting, &argv, &env);
        sys::close(null);
        Some(Janitor {
            pipe: Some(write),
            pid: pid?,
            for_command: matches!(waiting, Waiting::InTheFork { .. }),
        })
    }

    #[allow(unsafe_code)] // clone_fork: the child only waits, moves descriptors and execs
    fn fork(
        read: libc::c_int,
        null: libc::c_int,
        waiting: Waiting,
        argv: &[*const libc::c_char],
        env: &[*const libc::c_char],
    ) -> Option<libc::pid_t> {
        // The child only calls async-signal-safe setsid, recvmsg, dup2, fcntl, close_range and
        // execve (or open, getdents64, close), on arguments built before.
        // SAFETY: as above; the child ends in execve or _exit.
        match unsafe { sys::clone_fork(0) } {
            Ok(0) => {
                // A new session: a Ctrl-C or hangup meant for sbx does not reach the janitor.
                // Its own name and no blocked signal, as the shell it was before: a kill by
                // sbx's name spares it, and one meant for it reaches it.
                let _ = sys::setsid();
                let _ = sys::set_name(c"janitor");
                let _ = sys::set_sigmask(&sys::empty_sigset());
                let keep = match waiting {
                    Waiting::InTheShell => None,
                    Waiting::InTheFork { keep } => {
                        let mut held = [read, null, keep.unwrap_or(read)];
                        held.sort_unstable();
                        let _ = sys::close_all_except(&held);
                        // A descriptor to hold comes with a zero byte (`Janitor::hold`); the
                        // byte alone (the kernel refused the descriptor) changes nothing;
                        // "done" ends the wait. At end of file, or an error, the shell's own
                        // `read` takes over the channel.
                        let mut mounts = None;
                        loop {
                            match sys::recv_byte_and_fd(read) {
                                Ok((Some(b'd'), _)) => sys::exit(0),
                                Ok((Some(_), Some(fd))) => mounts = Some(fd),
                                Ok((Some(_), None)) => {}
                                _ => break,
                            }
                        }
                        // The shell must not keep the sandbox's mounts (host paths) busy.
                        drop(mounts);
                        keep
                    }
                };
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
/// is reaped (one started by [`Janitor::start_for_command`] is left to exit on its own).
impl Drop for Janitor {
    fn drop(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            let _ = sys::write_all(pipe.as_raw_fd(), b"done\n");
            drop(pipe);
            if !self.for_command {
                let _ = sys::wait4(self.pid, 0);
            }
        }
    }
}
