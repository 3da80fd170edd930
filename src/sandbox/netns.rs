//! The sandbox's network namespace, created beside the root rather than in the clone.
//!
//! A network namespace is the dearest namespace to create (the kernel registers a loopback
//! device, sysctl tables and per-namespace state for every protocol: about half a
//! millisecond here, as much as all the others together). Created by the clone it would sit
//! on the start's critical path. Instead init forks a helper that creates it and brings lo
//! up while init builds the root on another CPU; init then joins it with setns(2) and ends
//! the helper before anything of the command runs. The helper runs only sbx's code, holds
//! nothing init did not give it, and dies with init.

use std::os::fd::RawFd;

use super::report::{Failure, Step};
use super::sys;

/// The helper, forked and (possibly) still working.
pub struct Pending {
    pid: libc::pid_t,
    pidfd: RawFd,
    /// Read end of the pipe on which the helper reports how it went.
    result: RawFd,
}

/// Forks the helper. Init calls this with every capability of the sandbox's user namespace,
/// which the helper inherits.
pub fn start(lo_up: bool) -> Result<Pending, Failure> {
    let fail = |e| Failure::new(Step::NetNamespace, e);
    let (r, w) = sys::pipe().map_err(fail)?;
    let parent = nix::unistd::getpid().as_raw();
    match sys::clone_fork(0) {
        Ok(0) => {
            sys::close(r);
            helper(w, parent, lo_up)
        }
        Ok(pid) => {
            sys::close(w);
            // Not yet waited for, so the pid still names the helper.
            match sys::pidfd_open(pid) {
                Ok(pidfd) => Ok(Pending {
                    pid,
                    pidfd,
                    result: r,
                }),
                Err(e) => {
                    end(pid);
                    sys::close(r);
                    Err(fail(e))
                }
            }
        }
        Err(e) => {
            sys::close(r);
            sys::close(w);
            Err(fail(e))
        }
    }
}

/// The helper's whole life: create the namespace, report, and wait to be killed (its
/// namespace must outlive the report until init has joined it).
fn helper(result: RawFd, parent: libc::pid_t, lo_up: bool) -> ! {
    // Die with init; a parent gone before the prctl is caught by the check after it.
    if sys::set_pdeathsig(libc::SIGKILL).is_err() || sys::getppid() != parent {
        sys::exit(125);
    }
    let errno = |r: sys::SysResult| r.err().map_or(0, |e| e as i32);
    let created = errno(sys::unshare(libc::CLONE_NEWNET));
    let up = match (created, lo_up) {
        (0, true) => errno(sys::loopback_up()),
        _ => 0,
    };
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&created.to_ne_bytes());
    buf[4..].copy_from_slice(&up.to_ne_bytes());
    let _ = sys::write_all(result, &buf);
    loop {
        sys::pause();
    }
}

/// Waits for the helper's report, moves init into the helper's network namespace, and ends
/// the helper (killed and reaped, so no process but init is left).
pub fn join(p: Pending) -> Result<(), Failure> {
    let mut buf = [0u8; 8];
    let read = sys::read(p.result, &mut buf);
    let word = |i: usize| i32::from_ne_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
    let errno = |e: i32| sys::Errno::from_raw(e);
    let joined = match read {
        Ok(8) if word(0) != 0 => Err(Failure::new(Step::NetNamespace, errno(word(0)))),
        Ok(8) if word(4) != 0 => Err(Failure::new(Step::Loopback, errno(word(4)))),
        Ok(8) => {
            sys::setns(p.pidfd, libc::CLONE_NEWNET).map_err(|e| Failure::new(Step::NetNamespace, e))
        }
        // The helper died without a word: it was killed, or its parent check failed.
        Ok(_) => Err(Failure::new(Step::NetNamespace, sys::Errno::ESRCH)),
        Err(e) => Err(Failure::new(Step::NetNamespace, e)),
    };
    end(p.pid);
    sys::close(p.pidfd);
    sys::close(p.result);
    joined
}

fn end(pid: libc::pid_t) {
    let _ = sys::kill(pid, libc::SIGKILL);
    let _ = sys::wait4(pid, 0);
}
