//! The supervisor: the sbx process itself, in the host's namespaces. It starts the sandbox,
//! relays signals, enforces the wall-clock limit, waits (`wait`), and turns what happened into
//! the facts for the exit code, the message and the run report (`outcome`). With a pty it
//! relays the terminal (`terminal`); without one, it puts back the terminal modes the command
//! changed (`tty_modes`).

pub mod guard;
pub mod janitor;
mod outcome;
pub mod terminal;
mod tty_modes;
mod wait;
pub mod watchdog;

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

pub use outcome::Outcome;

use crate::cgroup::{self, RunCgroup};
use crate::egress::Egress;
use crate::error::Error;
use crate::intercept::Interceptor;
use crate::plan::{Plan, ProxyPlan};
use crate::profile::Enforcement;
use crate::proxy::Proxy;
use crate::sandbox::{self, SpawnOptions};
use crate::sys;
use outcome::Records;
use terminal::Pending;
use tty_modes::TtyModes;
use wait::{Channel, Clock, Helper, Watch};

/// How the supervisor treats the calling process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Supervision {
    /// Relay SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2 sent to this process to the command
    /// (the CLI does; a library caller usually does not). They are blocked on the calling
    /// thread only while the sandbox runs.
    pub forward_signals: bool,
    /// Return as soon as init reports that the command has ended and every other process of
    /// the sandbox is dead, without waiting for init's own exit and the kernel's teardown of
    /// the namespaces (as bubblewrap does). Init is then left unreaped, to exit on its own: for
    /// a caller that exits right away (the CLI does), not for a long-lived one, which would
    /// collect a zombie per run. With a cgroup, which must be empty to be removed, sbx still
    /// waits for init's exit; the cgroup's janitor is then the one left to exit on its own,
    /// after it has closed the protected paths' watch and the sandbox's mount namespace (a
    /// close that waits for the kernel and a teardown, benches/README.md "Runs in a cgroup"):
    /// it outlives sbx by those milliseconds only. The janitors (of the cgroup, of a private
    /// overlay layer) then wait as forks of the calling process, which suits a process as
    /// small as sbx's: in a large program such a fork would keep a copy of every page the
    /// program writes during the run (`supervisor::janitor`).
    pub return_before_teardown: bool,
    /// Give the command a pty of its own when the profile leaves `process.pty` unset and the
    /// run is interactive (`terminal::interactive`): the CLI does, so that Ctrl-C and Ctrl-Z
    /// reach the foreground job of a shell; a library caller's terminal is its own business.
    pub pty_when_interactive: bool,
    /// Before the sandbox's first process is cloned, return the stack that the setup no
    /// longer uses (`sys::release_dead_stack`) and unmap this process's code and read-only
    /// data (`sys::release_code`), and unmap them again once the command has run
    /// `sys::SETTLE_MS`: the CLI does, its code and main thread's stack being sbx's; a library
    /// caller's are its own (and its debugger's breakpoints would go with the code).
    ///
    /// Before the clone: the argument parser's, the profiles' and the plan's code, mapped
    /// 64 KiB around each first use, would otherwise stay mapped through the setup while init
    /// maps its own; what the supervisor runs next maps back on its first use. Σ PSS of sbx's
    /// processes at its peak 1,721-1,746 → 1,524 KiB (benches/README.md).
    pub release_code: bool,
}

/// The run's cgroup, if the profile wants one and the host delegates one. Required fails the
/// run; best-effort falls back to the watchdog, which holds `memory` and `processes` for the
/// whole sandbox as documented, so the fallback is named in -v and the report only; a `cpus`
/// the user set is then not enforced at all, which is a warning.
fn run_cgroup(plan: &Plan) -> Result<(Option<RunCgroup>, Option<String>), Error> {
    let mode = plan.limits.cgroup_mode;
    let wants: cgroup::Limits = plan.limits.cgroup.into();
    if mode == Enforcement::Off {
        // Nothing but a cgroup limits cpu time per second: say so, as without a cgroup.
        if wants.cpu_max.is_some() && plan.limits.explicit.contains(&"cpus") {
            tracing::warn!("limits.cpus is not enforced: limits.cgroup is \"off\"");
        }
        return Ok((None, None));
    }
    if mode == Enforcement::BestEffort && wants.is_empty() {
        return Ok((None, None));
    }
    let attempt = cgroup::detect(&wants.controllers()).and_then(|d| RunCgroup::create(&d, &wants));
    match attempt {
        Ok(cg) => {
            tracing::info!("cgroup: {}", cg.path().display());
            Ok((Some(cg), None))
        }
        Err(e) if mode == Enforcement::Required => Err(Error::Cgroup(e)),
        Err(e) => {
            let note = fallback_note(&wants, &e.to_string());
            // One line either way: a `cpus` the user set is a warning, which carries the
            // whole note where -v asks for it (the short form points there); otherwise the
            // fallback is a detail for -v only.
            if wants.cpu_max.is_some() && plan.limits.explicit.contains(&"cpus") {
                if tracing::enabled!(tracing::Level::INFO) {
                    tracing::warn!("{note}");
                } else {
                    tracing::warn!(
                        "limits.cpus is not enforced: no usable delegated cgroup v2 subtree \
                         with the cpu controller (-v says why)"
                    );
                }
            } else {
                tracing::info!("degraded: {note}");
            }
            Ok((None, Some(note)))
        }
    }
}

/// What the watchdog holds instead of the cgroup, and what nothing holds.
fn fallback_note(wants: &cgroup::Limits, why: &str) -> String {
    let held: Vec<&str> = [
        ("limits.memory", wants.memory_max),
        ("limits.processes", wants.pids_max),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.map(|_| name))
    .collect();
    let mut parts = Vec::new();
    if !held.is_empty() {
        parts.push(format!(
            "sbx's watchdog holds {} for the whole sandbox",
            held.join(" and ")
        ));
    }
    if wants.cpu_max.is_some() {
        parts.push("limits.cpus is not enforced".to_string());
    }
    format!(
        "no usable delegated cgroup v2 subtree: {}: {why}",
        parts.join("; ")
    )
}

/// Receives one fd that init handed over.
fn receive(sock: &OwnedFd) -> Option<OwnedFd> {
    match sys::recv_fd(sock.as_raw_fd()) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!("cannot receive from the sandbox: {}", e.desc());
            None
        }
    }
}

/// Serves the listener init bound inside the sandbox.
fn start_proxy(p: &ProxyPlan, listener: OwnedFd) -> Option<Proxy> {
    match Proxy::start(listener, p.egress.allow.clone()) {
        Ok(proxy) => Some(proxy),
        Err(e) => {
            tracing::error!("proxy: cannot start: {e}");
            None
        }
    }
}

/// Takes init's seccomp listener: init sends its number, sbx duplicates it with
/// pidfd_getfd(2) and says so (see `sandbox::setup::intercept`). None if init failed first.
fn take_listener(init: libc::pid_t, sock: &OwnedFd) -> Result<Option<OwnedFd>, sys::Errno> {
    let mut number = [0u8; 4];
    match sys::read(sock.as_raw_fd(), &mut number) {
        Ok(4) => {}
        _ => return Ok(None),
    }
    let pidfd = sys::pidfd_open(init)?;
    let listener = sys::pidfd_getfd(pidfd.as_raw_fd(), i32::from_ne_bytes(number))?;
    sys::write_all(sock.as_raw_fd(), b"t")?;
    Ok(Some(listener))
}

/// Serves sbx's egress: the sockets the network helper made inside (the listener's network
/// calls come through `Interceptor`).
fn start_egress(plan: &crate::plan::Egress, helper: OwnedFd) -> Result<Option<Egress>, sys::Errno> {
    let mut sockets = Vec::new();
    for what in crate::sandbox::egress_sockets(plan) {
        if matches!(what, crate::sandbox::EgressSocket::Address(_)) {
            continue;
        }
        match receive(&helper) {
            Some(fd) => sockets.push((what, fd)),
            None => return Ok(None),
        }
    }
    Egress::start(plan, sockets, helper)
        .map(Some)
        .map_err(io_errno)
}

fn io_errno(e: std::io::Error) -> sys::Errno {
    e.raw_os_error()
        .map_or(sys::Errno::EIO, sys::Errno::from_raw)
}

/// Restores the signal mask when the supervisor is done, also on error paths.
struct MaskGuard(SigSet);

impl Drop for MaskGuard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

/// Blocks the signals to forward on this thread, for a signalfd of the supervisor's.
fn block_forwarded(pty: bool, forward: bool) -> Result<(MaskGuard, SignalFd), Error> {
    let mut mask = SigSet::empty();
    if forward {
        for s in sandbox::FORWARDED_SIGNALS {
            mask.add(Signal::try_from(s).expect("a valid signal"));
        }
        if pty {
            mask.add(Signal::SIGWINCH);
        }
    }
    let mut old = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old)).map_err(
        |errno| Error::Supervisor {
            what: "block signals",
            errno,
        },
    )?;
    let guard = MaskGuard(old);
    let sfd =
        SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).map_err(|errno| Error::Supervisor {
            what: "create a signalfd",
            errno,
        })?;
    Ok((guard, sfd))
}

/// Runs the plan with signals forwarded, waiting for the sandbox's teardown.
pub fn run(plan: &Plan) -> Result<Outcome, Error> {
    run_with(
        plan,
        Supervision {
            forward_signals: true,
            return_before_teardown: false,
            pty_when_interactive: false,
            release_code: false,
        },
    )
}

/// Runs the plan. The sandbox's end is watched through a pidfd, not SIGCHLD, so this works
/// from any thread of a multi-threaded program.
pub fn run_with(plan: &Plan, how: Supervision) -> Result<Outcome, Error> {
    // Decided first, from at most a few ioctls on the standard descriptors (one when stdin is
    // not a terminal), because the signals to block depend on it.
    let pty = plan
        .pty
        .unwrap_or_else(|| how.pty_when_interactive && terminal::interactive());
    let (_restore, signals) = block_forwarded(pty, how.forward_signals)?;
    let (cgroup, cgroup_note) = run_cgroup(plan)?;
    // With a cgroup to remove, the supervisor waits for init's exit, where closing the last
    // reference to the protected paths' inotify instance would wait for the kernel's mark
    // reaper (8 ms, benches/README.md "Runs in a cgroup"). For a caller that exits right away,
    // the instance is made here and the janitor, which nobody waits for, keeps a reference.
    let watch = (cgroup.is_some()
        && how.return_before_teardown
        && !plan.as_pid_1
        && !plan.protect.guards.is_empty())
    .then(sys::inotify_instance)
    .and_then(Result::ok);
    // Dropped (dismissed) once the cgroup is removed below, after the run.
    let janitor = cgroup.as_ref().and_then(|cg| {
        let run = [cg.path().to_path_buf()];
        match how.return_before_teardown {
            true => janitor::Janitor::start_for_command(
                &[],
                &run,
                watch.as_ref().map(AsRawFd::as_raw_fd),
            ),
            false => janitor::Janitor::start(&[], &run),
        }
    });
    // The protected paths' directories, opened before the sandbox can change them.
    let guard = guard::Guard::new(&plan.protect)?;
    // Read before the sandbox can change them; put back once it is gone, or on any error path.
    let mut tty = TtyModes::take();
    let terminal = match pty {
        true => Pending::take().map_err(|errno| Error::Supervisor {
            what: "read the terminal's settings",
            errno,
        })?,
        false => None,
    };
    let start = Instant::now();
    let t0 = sys::monotonic_us();
    // Without a cgroup, the watchdog holds the whole-sandbox limits.
    let watched = match cgroup {
        Some(_) => (None, None),
        None => (plan.limits.cgroup.memory_max, plan.limits.cgroup.pids_max),
    };
    let opts = SpawnOptions {
        late_cgroupns: cgroup.is_some() && plan.namespaces.cgroup,
        pty: terminal.is_some(),
        store: watched.0.is_some() && plan.store.is_some(),
        release_stack: how.release_code,
        cgroup: cgroup.as_ref().map(RunCgroup::dir_fd),
        // Without the janitor's reference, init makes its own instance.
        watch: (watch.as_ref())
            .filter(|_| janitor.is_some())
            .map(AsRawFd::as_raw_fd),
    };
    if how.release_code {
        sys::release_dead_stack();
        sys::release_code();
    }
    let spawned = sandbox::spawn(plan, opts);
    // Init and the janitor hold the watch now; the network helper, forked next, must not.
    drop(watch);
    let mut spawned = spawned.map_err(|errno| Error::Spawn {
        errno,
        flags: plan.namespaces,
    })?;
    let pid = spawned.pid;
    tracing::debug!(pid, "sandbox started");
    let abandon = |e: Error| {
        let _ = sys::kill(pid, libc::SIGKILL);
        let _ = sys::wait4(pid, 0);
        e
    };
    if let Some(cg) = &cgroup {
        match spawned.in_cgroup {
            Ok(true) => {
                tracing::info!("the sandbox started in its cgroup (clone3's CLONE_INTO_CGROUP)")
            }
            Ok(false) => {}
            Err(errno) => {
                match sys::clone_into_cgroup_missing() {
                    true => tracing::info!(
                        "clone3's CLONE_INTO_CGROUP is missing (Linux 5.7; ENOSYS or E2BIG): the \
                         sandbox is moved into its cgroup after the clone, which waits for the kernel"
                    ),
                    false => tracing::info!(
                        "clone3 into the cgroup was refused ({}): the sandbox is moved into its \
                         cgroup after the clone",
                        errno.desc()
                    ),
                }
                cg.add_process(pid).map_err(|e| abandon(Error::Cgroup(e)))?;
            }
        }
    }
    sys::write_all(spawned.lifeline.as_raw_fd(), b"g").map_err(|errno| {
        abandon(Error::Supervisor {
            what: "start the sandbox",
            errno,
        })
    })?;
    let helper = Helper::new(spawned.start_net_helper(plan).map_err(|errno| {
        abandon(Error::Spawn {
            errno,
            flags: plan.namespaces,
        })
    })?);
    // With a cgroup sbx waits for init's exit; the janitor takes over the teardown of the
    // sandbox's mounts by holding its mount namespace (benches/README.md, "Runs in a cgroup").
    // Opened while init builds the root, before it makes itself non-dumpable; should sbx come
    // too late, init's exit tears them down as before.
    if let (Some(j), true) = (&janitor, how.return_before_teardown) {
        let held = std::ffi::CString::new(format!("/proc/{pid}/ns/mnt"))
            .map_err(|_| sys::Errno::EINVAL)
            .and_then(|path| sys::open_owned(&path, libc::O_RDONLY))
            .and_then(|ns| j.hold(ns.as_raw_fd()));
        if let Err(errno) = held {
            tracing::debug!("the janitor holds no mounts: {}", errno.desc());
        }
    }
    // init hands over, in order, the proxy's listener, the pty's master, the tmpfs store and the
    // interception's seccomp listener. If it failed before, there is nothing to serve: its own
    // failure report says why.
    let handover = spawned.handover;
    let proxy = plan
        .network
        .proxy()
        .and_then(|p| Some((p, receive(handover.as_ref()?)?)))
        .and_then(|(p, fd)| start_proxy(p, fd));
    let relay = terminal
        .and_then(|t| Some((t, receive(handover.as_ref()?)?)))
        .and_then(|(t, master)| match t.attach(master) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!("terminal relay: {}", e.desc());
                None
            }
        });
    let store = opts.store.then(|| receive(handover.as_ref()?)).flatten();
    let serve_failed = |errno| {
        abandon(Error::Supervisor {
            what: "serve the sandbox's network (sbx's egress) or its observation",
            errno,
        })
    };
    let listener = match (&plan.interception, &handover) {
        (Some(_), Some(sock)) => take_listener(pid, sock).map_err(serve_failed)?,
        _ => None,
    };
    let egress = match (plan.network.egress(), &listener, spawned.egress) {
        (Some(e), Some(_), Some(helper)) => start_egress(e, helper).map_err(serve_failed)?,
        _ => None,
    };
    let interceptor = match (listener, &plan.interception) {
        (Some(l), Some(i)) => Some(
            Interceptor::start(l, egress.as_ref().map(Egress::shared), i.files)
                .map_err(|e| serve_failed(io_errno(e)))?,
        ),
        _ => None,
    };
    drop(handover);
    // The sandbox's first process is our child and not yet waited for: its pid cannot have
    // been reused, so the pidfd names it. Without pidfd_open (a seccomp filter answering
    // ENOSYS), the loop asks wait4 about that same child at short intervals instead.
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => Some(fd),
        Err(sys::Errno::ENOSYS) => {
            tracing::info!(
                "pidfd_open is missing (ENOSYS): checking the sandbox's end every {} ms",
                wait::CHILD_POLL.as_millis()
            );
            None
        }
        Err(errno) => {
            return Err(abandon(Error::Supervisor {
                what: "watch the sandbox (pidfd_open, Linux 5.3)",
                errno,
            }));
        }
    };
    let mut watch = Watch {
        pid,
        pidfd,
        signals,
        channel: Channel::new(spawned.report),
        helper,
        clock: Clock::new(start, plan.limits.wall_time, plan.limits.kill_grace),
        cgroup: cgroup.as_ref(),
        relay: relay.as_ref(),
        early: how.return_before_teardown && cgroup.is_none(),
        watchdog: watchdog::Watchdog::new(pid, watched.0, watched.1, store, start),
        crossed: None,
        settle: how
            .release_code
            .then(|| start.checked_add(Duration::from_millis(sys::SETTLE_MS as u64)))
            .flatten(),
    };
    let (end, timed_out) = watch.run()?;
    let wall_time = start.elapsed();
    watch.channel.read();
    let records = Records(std::mem::take(&mut watch.channel.records));
    let crossed = watch.crossed;
    let watchdog = watch.watchdog.as_ref().map(|w| w.peak);
    drop(watch);
    // The sandbox is gone (init killed what was left): nothing races the move aside.
    let protected = guard
        .map(|g| g.defuse(&records.protected()))
        .unwrap_or_default();
    if let Some(r) = relay {
        r.finish();
    }
    tty.restore();
    let proxy = proxy.map(Proxy::stop);
    let observed = interceptor.and_then(Interceptor::stop);
    let egress = egress.map(Egress::stop);
    let cgroup = cgroup.map(|cg| {
        let stats = cg.stats();
        let path = cg.path().display().to_string();
        if let Err(e) = cg.kill_all().and_then(|_| cg.remove()) {
            tracing::warn!("cgroup cleanup: {e}");
        }
        (path, stats)
    });
    drop(janitor);
    let milestones: Vec<String> = records
        .milestones(t0)
        .into_iter()
        .map(|(name, us)| format!("{name} +{:.2} ms", f64::from(us) / 1000.0))
        .collect();
    if !milestones.is_empty() {
        tracing::info!("setup since clone: {}", milestones.join(", "));
    }
    let fallbacks = records.fallbacks();
    if !fallbacks.is_empty() {
        let names: Vec<&str> = fallbacks.names().collect();
        tracing::info!(
            "missing here (old kernel, or a seccomp filter answering ENOSYS), replaced by \
             classic calls with the same guarantees: {}",
            names.join("; ")
        );
    }
    drop(spawned.lifeline);
    let skipped: Vec<String> = (records.skipped().iter())
        .map(|f| crate::diagnose::skipped(plan, f))
        .collect();
    for s in &skipped {
        tracing::info!("{s}");
    }
    let (ending, usage) = records.ending(end);
    Ok(Outcome {
        ending,
        payload: records.payload(),
        timed_out,
        failure: records.failure(),
        landlock: records.landlock(),
        wall_time,
        usage,
        cgroup,
        proxy,
        egress,
        observed,
        crossed,
        watchdog,
        protected,
        degradations: cgroup_note.into_iter().chain(skipped).collect(),
    })
}
