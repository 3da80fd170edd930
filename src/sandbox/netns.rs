//! The sandbox's network namespace, created beside the root rather than in the clone.
//!
//! A network namespace is the dearest namespace to create (the kernel registers a loopback
//! device, sysctl tables and per-namespace state for every protocol: as much as all the
//! others together, see benches/README.md). Created by the clone it would sit
//! on the start's critical path. Instead, right after the clone, the supervisor forks a
//! helper that enters the sandbox's user namespace (as the namespace's owner it may), creates
//! the network namespace there, brings lo up and hands a descriptor of it to init over a
//! socket, while init builds the root on another CPU; init joins it with setns(2) once the
//! root is built. The helper stays in the host's PID namespace, so it takes no PID in the
//! sandbox's, runs only sbx's code and is gone (reaped by the supervisor) before init needs
//! the namespace; it reports a failure on the report pipe like a step of init's.

use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

use super::channel::{self, Failure, Step};
use crate::exit::EXIT_SBX_FAILED;
use crate::sys;

/// Forks the helper from the supervisor, for the sandbox whose init is `init`. `sock` is the
/// helper's end of the socket to init, `report` the write end of the report pipe; every other
/// descriptor is closed in the helper. Returns the helper's pid (the supervisor's child).
#[allow(unsafe_code)] // clone_fork: the one unsafe call of the sandbox side
pub fn spawn_helper(init: libc::pid_t, sock: RawFd, report: RawFd) -> sys::SysResult<libc::pid_t> {
    let supervisor = nix::unistd::getpid().as_raw();
    // SAFETY: the child runs `helper`, which never allocates, takes no lock and ends in _exit
    // (the supervisor may have other threads).
    match unsafe { sys::clone_fork(0) }? {
        0 => helper(init, supervisor, sock, report),
        pid => Ok(pid),
    }
}

/// The helper's whole life. Never returns; never allocates (the supervisor may have other
/// threads, whose locks a forked child must not touch).
fn helper(init: libc::pid_t, supervisor: libc::pid_t, sock: RawFd, report: RawFd) -> ! {
    let fail = |step, e| -> ! {
        channel::send(report, Failure::new(step, e));
        sys::exit(EXIT_SBX_FAILED)
    };
    let mut keep = [sock, report];
    keep.sort_unstable();
    if let Err(e) = sys::close_all_except(&keep) {
        fail(Step::NetNamespace, e)
    }
    // Die with the supervisor; a supervisor gone before the prctl is caught by the check.
    if sys::set_pdeathsig(libc::SIGKILL).is_err() || sys::getppid() != supervisor {
        sys::exit(EXIT_SBX_FAILED);
    }
    // Not yet waited for by the supervisor, so the pid still names init: as a pidfd, or
    // (without pidfd_open) as /proc/PID, which a reused pid could misname no more than it
    // could the pidfd opened from it.
    let user = match sys::pidfd_open(init) {
        Ok(pidfd) => pidfd.into_raw_fd(),
        Err(sys::Errno::ENOSYS) => {
            sys::open_namespace(init, b"user").unwrap_or_else(|e| fail(Step::NetNamespace, e))
        }
        Err(e) => fail(Step::NetNamespace, e),
    };
    let joined = sys::setns(user, libc::CLONE_NEWUSER);
    sys::close(user);
    if let Err(e) = joined {
        fail(Step::NetNamespace, e)
    }
    if let Err(e) = sys::unshare(libc::CLONE_NEWNET) {
        fail(Step::NetNamespace, e)
    }
    // A private network namespace always gets a working loopback.
    if let Err(e) = sys::loopback_up() {
        fail(Step::Loopback, e)
    }
    // The helper is still in the host's mount and PID namespaces: this is its own entry.
    let net = sys::open(c"/proc/self/ns/net", libc::O_RDONLY | libc::O_CLOEXEC, 0)
        .unwrap_or_else(|e| fail(Step::NetNamespace, e));
    if let Err(e) = sys::send_fd(sock, net) {
        fail(Step::NetNamespace, e)
    }
    sys::exit(0)
}

/// In init, once the root is built: waits for the helper's namespace and joins it. A helper
/// that failed has already said why on the report pipe.
pub fn join(sock: RawFd) -> Result<(), Failure> {
    let net = match sys::recv_fd(sock) {
        Ok(Some(fd)) => fd,
        // The helper ended without a namespace: its own report says why (or it was killed).
        Ok(None) => return Err(Failure::new(Step::NetNamespace, sys::Errno::ESRCH)),
        Err(e) => return Err(Failure::new(Step::NetNamespace, e)),
    };
    sys::close(sock);
    sys::setns(net.as_raw_fd(), libc::CLONE_NEWNET).map_err(|e| Failure::new(Step::NetNamespace, e))
}
