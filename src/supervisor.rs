//! The supervisor: the sbx process itself, in the host's namespaces. It starts the sandbox,
//! relays signals, enforces the wall-clock limit, waits, and turns what happened into an exit
//! code, a message and the facts for the run report.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::cgroup::{self, RunCgroup};
use crate::error::Error;
use crate::plan::Plan;
use crate::profile::Enforcement;
use crate::proxy::{Proxy, ProxyStats};
use crate::sandbox::report::{self, Failure, Step};

use crate::sandbox::{self, SpawnOptions, sys};
use crate::terminal::Pending;

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
    /// collect a zombie per run. Ignored when the run has a cgroup, which must be empty to be
    /// removed.
    pub return_before_teardown: bool,
}

/// How the supervisor learned that the sandbox ended.
enum End {
    /// The first process was reaped: its raw wait status and resource usage.
    Reaped(libc::c_int, libc::rusage),
    /// Init reported the end (`Step::Finished`) and is still exiting.
    Reported,
}

/// The records the sandbox sends, read as they arrive.
struct Reports {
    fd: RawFd,
    records: Vec<Failure>,
    eof: bool,
}

impl Reports {
    /// The fd to poll: none once the pipe reached end of file (it would poll ready forever).
    fn poll_fd(&self) -> RawFd {
        if self.eof { -1 } else { self.fd }
    }

    fn read(&mut self) {
        if !self.eof {
            self.eof = report::receive(self.fd, &mut self.records);
        }
    }

    fn find(&self, step: Step) -> Option<&Failure> {
        self.records.iter().find(|r| r.step == step)
    }

    /// Usage as init reported it, if it did.
    fn usage(&self) -> Option<Usage> {
        let micros = |step| self.find(step).map(|r| Duration::from_micros(r.value()));
        Some(Usage {
            user: micros(Step::UserTime)?,
            system: micros(Step::SystemTime)?,
            max_rss: self.find(Step::PeakRss)?.value() * 1024,
        })
    }
}

/// How the sandbox's first process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
}

impl Ending {
    /// The exit code sbx passes on: the code, or 128+N for signal N.
    pub fn code(self) -> i32 {
        match self {
            Ending::Exited(c) => c,
            Ending::Signaled(n) => 128 + n,
        }
    }

    fn from_status(status: libc::c_int) -> Ending {
        if libc::WIFSIGNALED(status) {
            Ending::Signaled(libc::WTERMSIG(status))
        } else {
            Ending::Exited(libc::WEXITSTATUS(status))
        }
    }
}

/// How far landlock was enforced, as the sandbox reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LandlockOutcome {
    Full,
    Partial,
    None,
}

/// CPU time and peak memory of the sandbox's processes (those its init waited for).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub user: Duration,
    pub system: Duration,
    /// Peak resident set of the largest process, in bytes.
    pub max_rss: u64,
}

impl Usage {
    fn from_rusage(r: &libc::rusage) -> Usage {
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
        Usage {
            user: tv(r.ru_utime),
            system: tv(r.ru_stime),
            max_rss: (r.ru_maxrss as u64) * 1024,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Outcome {
    /// How the sandbox's first process (init, or the command with --as-pid-1) ended.
    pub ending: Ending,
    /// How the command ended, as init saw it (None with --as-pid-1, or if init was killed).
    pub payload: Option<Ending>,
    /// The wall-clock limit fired.
    pub timed_out: bool,
    /// What went wrong inside before the command ran, if anything.
    pub failure: Option<Failure>,
    /// None when landlock was not attempted.
    pub landlock: Option<LandlockOutcome>,
    pub wall_time: Duration,
    pub usage: Usage,
    /// The run's cgroup, when one was used: its path and what it measured.
    pub cgroup: Option<(String, cgroup::Stats)>,
    /// What was asked for but could not be applied as asked.
    pub degradations: Vec<String>,
    /// The proxy's counts, with `network.mode = "proxy"`.
    pub proxy: Option<ProxyStats>,
}

/// The run's cgroup, if the profile wants one and the host delegates one. Best-effort
/// degrades to rlimits with one warning; required fails the run.
fn run_cgroup(plan: &Plan) -> Result<(Option<RunCgroup>, Option<String>), Error> {
    let mode = plan.limits.cgroup_mode;
    let wants: cgroup::Limits = plan.limits.cgroup.into();
    if mode == Enforcement::Off || (mode == Enforcement::BestEffort && wants.is_empty()) {
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
            let note = format!("cgroup limits not applied (rlimits only): {e}");
            tracing::warn!(
                "no usable delegated cgroup v2 subtree: {} limited by rlimits only (-v says why)",
                wants.controllers().join(", ")
            );
            tracing::info!("{note}");
            Ok((None, Some(note)))
        }
    }
}

/// Receives one fd that init handed over.
fn receive(sock: RawFd) -> Option<OwnedFd> {
    match sys::recv_fd(sock) {
        // SAFETY: recv_fd just received this fd; nothing else owns it.
        Ok(Some(fd)) => Some(unsafe { OwnedFd::from_raw_fd(fd) }),
        Ok(None) => None,
        Err(e) => {
            tracing::error!("cannot receive from the sandbox: {}", e.desc());
            None
        }
    }
}

/// Serves the listener init bound inside the sandbox.
fn start_proxy(p: &crate::plan::ProxyPlan, listener: OwnedFd) -> Option<Proxy> {
    match Proxy::start(listener, p.allow.clone()) {
        Ok(proxy) => Some(proxy),
        Err(e) => {
            tracing::error!("proxy: cannot start: {e}");
            None
        }
    }
}

/// Restores the signal mask when the supervisor is done, also on error paths.
struct MaskGuard(SigSet);

impl Drop for MaskGuard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

/// The wall-clock limit's state: running, then terminating (SIGTERM sent), then killed.
enum Clock {
    Unlimited,
    Running { deadline: Instant, grace: Duration },
    Terminating { kill_at: Instant },
    Killed,
}

impl Clock {
    fn timeout_ms(&self, now: Instant) -> libc::c_int {
        let until = match self {
            Clock::Running { deadline, .. } => *deadline,
            Clock::Terminating { kill_at } => *kill_at,
            Clock::Unlimited | Clock::Killed => return -1,
        };
        let ms = until.saturating_duration_since(now).as_millis();
        // Round up so that the poll does not wake a hair early and spin.
        (ms + 1).min(i32::MAX as u128) as libc::c_int
    }
}

/// The network namespace's helper, reaped however the run ends. It never blocks for long: it
/// only creates the namespace and hands it over, and any failure on the way ends it.
struct ReapOnDrop(Option<libc::pid_t>);

impl Drop for ReapOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = sys::wait4(pid, 0);
        }
    }
}

/// Runs the plan with signals forwarded, waiting for the sandbox's teardown.
pub fn run(plan: &Plan) -> Result<Outcome, Error> {
    run_with(
        plan,
        Supervision {
            forward_signals: true,
            return_before_teardown: false,
        },
    )
}

/// Runs the plan. The sandbox's end is watched through a pidfd, not SIGCHLD, so this works
/// from any thread of a multi-threaded program.
pub fn run_with(plan: &Plan, how: Supervision) -> Result<Outcome, Error> {
    let mut mask = SigSet::empty();
    if how.forward_signals {
        for s in crate::sandbox::FORWARDED_SIGNALS {
            mask.add(Signal::try_from(s).expect("a valid signal"));
        }
        if plan.pty {
            mask.add(Signal::SIGWINCH);
        }
    }
    let mut old = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old)).map_err(
        |e| Error::Supervisor {
            what: "block signals",
            errno: e,
        },
    )?;
    let _restore = MaskGuard(old);
    let sfd =
        SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).map_err(|e| Error::Supervisor {
            what: "create a signalfd",
            errno: e,
        })?;

    let (cgroup, cgroup_note) = run_cgroup(plan)?;
    let terminal = if plan.pty {
        Pending::take().map_err(|e| Error::Supervisor {
            what: "read the terminal's settings",
            errno: e,
        })?
    } else {
        None
    };
    let start = Instant::now();
    let t0 = sys::monotonic_us();
    let opts = SpawnOptions {
        late_cgroupns: cgroup.is_some() && plan.namespaces.cgroup,
        pty: terminal.is_some(),
    };
    let spawned = sandbox::spawn(plan, opts).map_err(|errno| Error::Spawn {
        errno,
        flags: plan.namespaces,
    })?;

    let pid = spawned.pid;
    tracing::debug!(pid, "sandbox started");
    let mut helper = ReapOnDrop(spawned.net_helper);
    // Watched too, so that it is reaped as soon as it is done, not at the end of the run.
    let mut helper_fd = helper.0.and_then(|h| sys::pidfd_open(h).ok()).map(|fd| {
        // SAFETY: a fresh fd from pidfd_open, owned here.
        unsafe { OwnedFd::from_raw_fd(fd) }
    });
    let placed = match &cgroup {
        Some(cg) => cg.add_process(pid).map_err(Error::Cgroup),
        None => Ok(()),
    };
    let go = placed.and_then(|_| {
        sys::write_all(spawned.lifeline_fd, b"g").map_err(|errno| Error::Supervisor {
            what: "start the sandbox",
            errno,
        })
    });
    if let Err(e) = go {
        let _ = sys::kill(pid, libc::SIGKILL);
        let _ = sys::wait4(pid, 0);
        sys::close(spawned.report_fd);
        sys::close(spawned.lifeline_fd);
        if let Some(fd) = spawned.handover_fd {
            sys::close(fd);
        }
        return Err(e);
    }
    // init hands over, in order, the proxy's listener and the pty's master. If it failed
    // before, there is nothing to serve: its own failure report says why.
    let proxy = plan
        .proxy
        .as_ref()
        .and_then(|p| Some((p, receive(spawned.handover_fd?)?)))
        .and_then(|(p, fd)| start_proxy(p, fd));
    let relay = terminal
        .and_then(|t| Some((t, receive(spawned.handover_fd?)?)))
        .and_then(|(t, master)| match t.attach(master) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!("terminal relay: {}", e.desc());
                None
            }
        });
    if let Some(fd) = spawned.handover_fd {
        sys::close(fd);
    }

    // A limit beyond what the clock can represent is no limit.
    let mut clock = match plan.limits.wall_time.and_then(|l| start.checked_add(l)) {
        Some(deadline) => Clock::Running {
            deadline,
            grace: plan.limits.kill_grace,
        },
        None => Clock::Unlimited,
    };
    let mut timed_out = false;
    // The sandbox's first process is our child and not yet waited for: its pid cannot have
    // been reused, so the pidfd names it.
    let pidfd = match sys::pidfd_open(pid) {
        // SAFETY: a fresh fd from pidfd_open, owned here.
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
        Err(e) => {
            let _ = sys::kill(pid, libc::SIGKILL);
            let _ = sys::wait4(pid, 0);
            return Err(Error::Supervisor {
                what: "watch the sandbox (pidfd_open, Linux 5.3)",
                errno: e,
            });
        }
    };
    // SAFETY: the fd is owned by `spawned` and stays open until it is closed below.
    let report_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(spawned.report_fd) };
    let _ = nix::fcntl::fcntl(
        report_fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let mut reports = Reports {
        fd: spawned.report_fd,
        records: Vec::new(),
        eof: false,
    };
    let early = how.return_before_teardown && cgroup.is_none();
    let end = loop {
        let helper_poll = helper_fd.as_ref().map_or(-1, |fd| fd.as_raw_fd());
        let ready = match sys::poll_fds(
            [
                pidfd.as_raw_fd(),
                sfd.as_raw_fd(),
                reports.poll_fd(),
                helper_poll,
            ],
            clock.timeout_ms(Instant::now()),
        ) {
            Ok(r) => r,
            Err(sys::Errno::EINTR) => continue,
            Err(e) => {
                let _ = sys::kill(pid, libc::SIGKILL);
                return Err(Error::Supervisor {
                    what: "wait for signals",
                    errno: e,
                });
            }
        };
        if ready[3] {
            if let Some(h) = helper.0
                && let Ok(Some(_)) = sys::wait4(h, libc::WNOHANG)
            {
                helper.0 = None;
            }
            helper_fd = None;
        }
        if ready == [false; 4] {
            clock = match clock {
                Clock::Running { grace, .. } => {
                    timed_out = true;
                    tracing::warn!("wall_time reached: sending SIGTERM, SIGKILL in {grace:?}");
                    let _ = sys::kill(pid, libc::SIGTERM);
                    let now = Instant::now();
                    Clock::Terminating {
                        kill_at: now.checked_add(grace).unwrap_or(now),
                    }
                }
                Clock::Terminating { .. } => {
                    // The first process is the PID namespace's init: its death takes every
                    // process of the sandbox with it, daemons and new sessions included. A
                    // cgroup reaches them even without a PID namespace.
                    let _ = sys::kill(pid, libc::SIGKILL);
                    if let Some(cg) = &cgroup {
                        let _ = cg.kill_all();
                    }
                    Clock::Killed
                }
                other => other,
            };
            continue;
        }
        if ready[2] {
            reports.read();
            if early && reports.find(Step::Finished).is_some() {
                break End::Reported;
            }
        }
        if ready[0] {
            match sys::wait4(pid, libc::WNOHANG) {
                Ok(Some((status, rusage))) => break End::Reaped(status, rusage),
                Ok(None) => continue,
                Err(e) => {
                    return Err(Error::Supervisor {
                        what: "wait for the sandbox",
                        errno: e,
                    });
                }
            }
        }
        if !ready[1] {
            continue;
        }
        let info = match sfd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                let _ = sys::kill(pid, libc::SIGKILL);
                return Err(Error::Supervisor {
                    what: "read signals",
                    errno: e,
                });
            }
        };
        let sig = info.ssi_signo as i32;
        if sig == libc::SIGWINCH {
            if let Some(r) = &relay {
                r.resize();
            }
            continue;
        }
        tracing::debug!(signal = sig, "forwarding signal");
        let _ = sys::kill(pid, sig);
    };
    let wall_time = start.elapsed();
    if let Some(r) = relay {
        r.finish();
    }
    let proxy = proxy.map(Proxy::stop);
    let cgroup = cgroup.map(|cg| {
        let stats = cg.stats();
        let path = cg.path().display().to_string();
        if let Err(e) = cg.kill_all().and_then(|_| cg.remove()) {
            tracing::warn!("cgroup cleanup: {e}");
        }
        (path, stats)
    });

    // Once the first process was reaped every writer is gone; the pipe is non-blocking all
    // the same, against a stray one.
    reports.read();
    let usage_reported = reports.usage();
    let records = reports.records;
    let milestones: Vec<String> = records
        .iter()
        .filter(|r| r.step == Step::Timing)
        .filter_map(|r| {
            let name = report::MILESTONES.get(r.errno as usize)?;
            Some(format!(
                "{name} +{:.2} ms",
                f64::from(r.index.wrapping_sub(t0)) / 1000.0
            ))
        })
        .collect();
    if !milestones.is_empty() {
        tracing::info!("setup since clone: {}", milestones.join(", "));
    }
    sys::close(spawned.report_fd);
    sys::close(spawned.lifeline_fd);
    let failure = records.iter().find(|r| r.is_failure()).copied();
    let payload = records
        .iter()
        .find(|r| r.step == Step::PayloadStatus)
        .map(|r| Ending::from_status(r.index as libc::c_int));
    let (ending, usage) = match end {
        End::Reaped(status, rusage) => (Ending::from_status(status), Usage::from_rusage(&rusage)),
        // Init exits as the command did (see `init::status_to_code`).
        End::Reported => (
            Ending::Exited(payload.map_or(crate::api::EXIT_SBX_FAILED, Ending::code)),
            usage_reported.unwrap_or_default(),
        ),
    };
    let landlock = records
        .iter()
        .find(|r| r.step == Step::LandlockStatus)
        .map(|r| match r.index {
            2 => LandlockOutcome::Full,
            1 => LandlockOutcome::Partial,
            _ => LandlockOutcome::None,
        });
    Ok(Outcome {
        ending,
        payload,
        timed_out,
        failure,
        landlock,
        wall_time,
        usage,
        cgroup,
        proxy,
        degradations: cgroup_note.into_iter().collect(),
    })
}
