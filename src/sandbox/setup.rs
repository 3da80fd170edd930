//! The sandbox's first process, from the clone to init or the command: every step in the
//! order it runs, one line each. A step that fails is reported on the channel and the process
//! exits 125; nothing here allocates (the process may be a fork of a multi-threaded program).

use std::os::fd::RawFd;

use super::channel::{self, Fact, Failure, Milestone, Step};
use super::exec::{self, Argv};
use super::watch::Watch;
use super::{ChildEnds, confine, init, netns, rootfs, userns};
use crate::plan::Plan;
use crate::sys;

/// Runs one step, naming it in the failure.
fn step(s: Step, f: impl FnOnce() -> sys::SysResult) -> Result<(), Failure> {
    f().map_err(|e| Failure::new(s, e))
}

pub(super) fn first_process(plan: &Plan, argv: &Argv, ends: ChildEnds) -> ! {
    let report = ends.report;
    let mark = |m| channel::milestone(report, plan.trace, m);
    let steps = || -> Result<(Option<RawFd>, Option<Watch>), Failure> {
        // A PID namespace's init drops signals it neither handles nor blocks: block what init
        // will forward before anything else, so a signal sent during setup waits for it.
        step(Step::Signals, || sys::block_signals(&init::signals()))?;
        lifeline(ends.lifeline)?;
        if ends.late_cgroupns {
            step(Step::CgroupNamespace, || {
                sys::unshare(libc::CLONE_NEWCGROUP)
            })?;
        }
        // Every descriptor inherited from the caller goes at the command's execve; marked now,
        // while /proc is still the host's, for a kernel without close_range's CLOEXEC flag,
        // where they are listed from /proc/self/fd (see `sys::cloexec_from`). What this
        // process opens later is close-on-exec from the start.
        step(Step::CloseFds, || sys::cloexec_from(3))?;
        userns::write_id_maps(plan)?;
        // Before any mount: nothing this namespace mounts may propagate to the caller's.
        step(Step::MakePrivate, || {
            sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        })?;
        // On init's path before the root is built: the network helper's namespace takes
        // longer than the root anyway, so init has the time (see benches/README.md).
        userns::set_limits(plan, report)?;
        mark(Milestone::IdsMapped);
        rootfs::build(plan)?;
        mark(Milestone::RootBuilt);
        let fallbacks = sys::fallbacks();
        if !fallbacks.is_empty() {
            channel::send(report, Fact::Fallbacks(fallbacks.bits()));
        }
        // Before the command exists, so that nothing it creates goes unseen.
        let watch = match plan.as_pid_1 {
            false => Watch::start(plan, ends.watch)?,
            true => None,
        };
        if let Some(sock) = ends.net {
            netns::join(sock)?;
        }
        if let Some(name) = &plan.hostname {
            match sys::sethostname(name) {
                // A label, not a protection: the UTS namespace stays the sandbox's own.
                Err(e) if plan.hostname_optional => {
                    channel::send(report, Fact::Skipped(Step::Hostname, e as i32))
                }
                r => r.map_err(|e| Failure::new(Step::Hostname, e))?,
            }
        }
        if let (Some(proxy), Some(sock)) = (plan.network.proxy(), ends.handover) {
            // The listener lives in the sandbox's network namespace; the supervisor serves it
            // from outside, where the allowed hosts can be reached.
            hand_over(
                Step::ProxyListener,
                sock,
                sys::loopback_listener(proxy.port),
            )?;
        }
        let pty = match (ends.pty, ends.handover) {
            (true, Some(sock)) => Some(open_pty(sock)?),
            _ => None,
        };
        if let (true, Some(store), Some(sock)) = (ends.store, &plan.store, ends.handover) {
            let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
            hand_over(Step::Store, sock, sys::open(store, flags, 0))?;
        }
        if let (Some(i), Some(sock)) = (&plan.interception, ends.handover) {
            intercept(&i.program, sock)?;
        }
        if !plan.as_pid_1 {
            // Init stays inside with the payload: it must not be a target for ptrace or
            // /proc/1/mem writes.
            step(Step::NotDumpable, || sys::prctl(libc::PR_SET_DUMPABLE, 0))?;
        }
        confine::landlock(plan, report)?;
        step(Step::NoNewPrivs, sys::set_no_new_privs)?;
        step(Step::DropCapabilities, sys::drop_capabilities)?;
        // rlimits go on last, after every step that might need more than the command gets;
        // the payload inherits them from init.
        for (i, r) in plan.limits.rlimits.iter().enumerate() {
            nix::sys::resource::setrlimit(r.resource, r.value, r.value)
                .map_err(|e| Failure::at(Step::Rlimit, i, e))?;
        }
        mark(Milestone::Confined);
        Ok((pty, watch))
    };
    let (pty, watch) = match steps() {
        Ok(done) => done,
        Err(f) => {
            channel::send(report, f);
            sys::exit(crate::exit::EXIT_SBX_FAILED)
        }
    };
    sys::close(ends.lifeline);
    if let Some(h) = ends.handover {
        sys::close(h);
    }
    if plan.as_pid_1 {
        exec::payload(plan, argv, report, None, pty)
    }
    init::run(plan, argv, report, (pty, watch), ends.release_stack)
}

/// Dies with the supervisor. The supervisor sends one byte when the process may go on (after
/// placing it in a cgroup); end of file means it died. A death between clone and prctl is
/// caught by the hang-up check after the byte: getppid() cannot help, because a PID
/// namespace's first process sees a parent of 0.
fn lifeline(fd: RawFd) -> Result<(), Failure> {
    step(Step::Lifeline, || sys::set_pdeathsig(libc::SIGKILL))?;
    match sys::read_byte(fd) {
        Ok(true) if !sys::peer_gone(fd) => Ok(()),
        _ => sys::exit(crate::exit::EXIT_SBX_FAILED),
    }
}

/// Hands connect(2) and the sends that name an address, of init and everything it forks, to
/// the supervisor, which makes the allowed connections out from the host's network (see
/// `egress`), and with `sbx learn` the calls that name a path (see `intercept`). Installed with init's capabilities, before no_new_privs, and last of what init
/// hands over: its own sendmsg(2) would wait for a listener the supervisor does not have yet.
/// So the listener goes by number (a plain write), the supervisor takes it with
/// pidfd_getfd(2) and says so, and init closes its copy.
fn intercept(prog: &[seccompiler::sock_filter], sock: RawFd) -> Result<(), Failure> {
    let fail = |e| Failure::new(Step::Interception, e);
    let listener = sys::seccomp_listener(prog).map_err(fail)?;
    let taken = sys::write_all(sock, &listener.to_ne_bytes()).and_then(|_| sys::read_byte(sock));
    sys::close(listener);
    match taken.map_err(fail)? {
        true => Ok(()),
        false => Err(fail(sys::Errno::EPIPE)),
    }
}

/// Sends a descriptor opened inside to the supervisor, and closes it here.
fn hand_over(s: Step, sock: RawFd, opened: sys::SysResult<RawFd>) -> Result<(), Failure> {
    let fd = opened.map_err(|e| Failure::new(s, e))?;
    let sent = sys::send_fd(sock, fd);
    sys::close(fd);
    sent.map_err(|e| Failure::new(s, e))
}

/// The command's pty, from the sandbox's own devpts so that its name resolves inside (ttyname,
/// `tty`); the supervisor relays through the master. Returns the slave.
fn open_pty(sock: RawFd) -> Result<RawFd, Failure> {
    let (master, slave) = sys::open_pty().map_err(|e| Failure::new(Step::Pty, e))?;
    hand_over(Step::Pty, sock, Ok(master))?;
    Ok(slave)
}
