//! Waiting for the sandbox: one poll loop over the first process's pidfd, the forwarded
//! signals, the sandbox's channel and the network helper, with the wall-clock limit as its
//! timeout.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::signalfd::SignalFd;

use super::outcome::End;
use super::terminal::Relay;
use super::watchdog::{self, Crossed, Watchdog};
use crate::cgroup::RunCgroup;
use crate::error::Error;
use crate::sandbox::channel::{self, Fact, Record};
use crate::sys;

/// The wall-clock limit's state: running, then terminating (SIGTERM sent), then killed.
pub(super) enum Clock {
    Unlimited,
    Running { deadline: Instant, grace: Duration },
    Terminating { kill_at: Instant },
    Killed,
}

impl Clock {
    pub(super) fn new(start: Instant, limit: Option<Duration>, grace: Duration) -> Clock {
        // A limit beyond what the clock can represent is no limit.
        match limit.and_then(|l| start.checked_add(l)) {
            Some(deadline) => Clock::Running { deadline, grace },
            None => Clock::Unlimited,
        }
    }

    /// When the clock acts next, if ever.
    fn next(&self) -> Option<Instant> {
        match self {
            Clock::Running { deadline, .. } => Some(*deadline),
            Clock::Terminating { kill_at } => Some(*kill_at),
            Clock::Unlimited | Clock::Killed => None,
        }
    }
}

/// Milliseconds until `until` (-1: forever), rounded up so that the poll does not wake a hair
/// early and spin.
fn timeout_ms(until: Option<Instant>, now: Instant) -> libc::c_int {
    match until {
        None => -1,
        Some(t) => {
            let ms = t.saturating_duration_since(now).as_millis();
            (ms + 1).min(i32::MAX as u128) as libc::c_int
        }
    }
}

/// How often the loop asks whether the sandbox ended where it has no pidfd to poll.
pub(super) const CHILD_POLL: Duration = Duration::from_millis(10);

/// The network namespace's helper, reaped however the run ends. Without sbx's egress it only
/// creates the namespace and hands it over; with it, it stays to make sockets inside until the
/// run ends (see `sandbox::netns`), and is killed then if still there.
pub(super) struct Helper {
    pid: Option<libc::pid_t>,
    /// Watched too, so that it is reaped as soon as it is done, not at the end of the run.
    pidfd: Option<OwnedFd>,
}

impl Helper {
    pub(super) fn new(pid: Option<libc::pid_t>) -> Helper {
        Helper {
            pid,
            pidfd: pid.and_then(|h| sys::pidfd_open(h).ok()),
        }
    }

    fn poll_fd(&self) -> RawFd {
        self.pidfd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Whether it may be running with no pidfd to tell when it ends.
    fn unwatched(&self) -> bool {
        self.pid.is_some() && self.pidfd.is_none()
    }

    fn reap(&mut self) {
        if let Some(h) = self.pid
            && let Ok(Some(_)) = sys::wait4(h, libc::WNOHANG)
        {
            self.pid = None;
        }
        self.pidfd = None;
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            // Not reaped yet, so the pid is still the helper's.
            let _ = sys::kill(pid, libc::SIGKILL);
            let _ = sys::wait4(pid, 0);
        }
    }
}

/// The records the sandbox sends, read as they arrive.
pub(super) struct Channel {
    fd: OwnedFd,
    pub(super) records: Vec<Record>,
    eof: bool,
}

impl Channel {
    pub(super) fn new(fd: OwnedFd) -> Channel {
        let _ = nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        Channel {
            fd,
            records: Vec::new(),
            eof: false,
        }
    }

    /// The fd to poll: none once the pipe reached end of file (it would poll ready forever).
    fn poll_fd(&self) -> RawFd {
        if self.eof { -1 } else { self.fd.as_raw_fd() }
    }

    /// Whether init reported that the sandbox is done.
    fn finished(&self) -> bool {
        self.records.contains(&Record::Fact(Fact::Finished))
    }

    /// Reads what arrived. Once the first process was reaped every writer is gone; the pipe
    /// is non-blocking all the same, against a stray one.
    pub(super) fn read(&mut self) {
        if !self.eof {
            self.eof = channel::receive(self.fd.as_raw_fd(), &mut self.records);
        }
    }
}

/// What the loop watches.
pub(super) struct Watch<'a> {
    pub pid: libc::pid_t,
    /// None without pidfd_open: the loop then polls wait4 every [`CHILD_POLL`].
    pub pidfd: Option<OwnedFd>,
    pub signals: SignalFd,
    pub channel: Channel,
    pub helper: Helper,
    pub clock: Clock,
    pub cgroup: Option<&'a RunCgroup>,
    pub relay: Option<&'a Relay>,
    /// Return as soon as init reports the end (see `Supervision::return_before_teardown`).
    pub early: bool,
    /// Whole-sandbox limits where no cgroup holds them.
    pub watchdog: Option<Watchdog>,
    /// The limit the watchdog found crossed (the sandbox was killed for it).
    pub crossed: Option<Crossed>,
    /// When the command has run long enough for the supervisor to drop its setup's code
    /// (`sys::release_code`); None once done.
    pub settle: Option<Instant>,
}

impl Watch<'_> {
    /// Runs until the sandbox ends; returns how it ended and whether the clock fired.
    pub(super) fn run(&mut self) -> Result<(End, bool), Error> {
        let mut timed_out = false;
        let fail = |what, errno| Error::Supervisor { what, errno };
        loop {
            let fds = [
                self.pidfd.as_ref().map_or(-1, AsRawFd::as_raw_fd),
                self.signals.as_raw_fd(),
                self.channel.poll_fd(),
                self.helper.poll_fd(),
            ];
            let now = Instant::now();
            let unwatched = self.pidfd.is_none().then(|| now + CHILD_POLL);
            let next = [
                self.clock.next(),
                self.watchdog.as_ref().map(Watchdog::due),
                unwatched,
                self.settle,
            ]
            .into_iter()
            .flatten()
            .min();
            let ready = match sys::poll_fds(fds, timeout_ms(next, now)) {
                Ok(r) => r,
                Err(sys::Errno::EINTR) => continue,
                Err(e) => {
                    let _ = sys::kill(self.pid, libc::SIGKILL);
                    return Err(fail("wait for signals", e));
                }
            };
            if ready[3] || self.helper.unwatched() {
                self.helper.reap();
            }
            if unwatched.is_some()
                && let Some(end) = self.reaped()?
            {
                return Ok((end, timed_out));
            }
            if ready == [false; 4] {
                let now = Instant::now();
                if self.clock.next().is_some_and(|t| t <= now) {
                    timed_out |= matches!(self.clock, Clock::Running { .. });
                    self.tick();
                }
                self.watch_limits(now);
                if self.settle.is_some_and(|t| t <= now) {
                    self.settle = None;
                    sys::release_code();
                }
                continue;
            }
            if ready[2] {
                self.channel.read();
                if self.early && self.channel.finished() {
                    return Ok((End::Reported, timed_out));
                }
            }
            if ready[0] {
                match self.reaped()? {
                    Some(end) => return Ok((end, timed_out)),
                    None => continue,
                }
            }
            if ready[1] {
                self.forward_signal()?;
            }
        }
    }

    /// The sandbox's end, if its first process has exited (and is now reaped).
    fn reaped(&self) -> Result<Option<End>, Error> {
        match sys::wait4(self.pid, libc::WNOHANG) {
            Ok(found) => Ok(found.map(|(status, rusage)| End::Reaped(status, rusage))),
            Err(errno) => Err(Error::Supervisor {
                what: "wait for the sandbox",
                errno,
            }),
        }
    }

    /// Samples the sandbox when due; kills it the first time a limit is crossed.
    fn watch_limits(&mut self, now: Instant) {
        let Some(w) = self.watchdog.as_mut().filter(|_| self.crossed.is_none()) else {
            return;
        };
        if let Some(crossed) = w.check(now) {
            tracing::debug!("watchdog: {crossed:?}: killing the sandbox");
            watchdog::kill_all(self.pid);
            self.crossed = Some(crossed);
        }
    }

    /// The clock's deadline passed: SIGTERM, then SIGKILL after the grace period.
    fn tick(&mut self) {
        self.clock = match std::mem::replace(&mut self.clock, Clock::Killed) {
            Clock::Running { grace, .. } => {
                tracing::warn!("wall_time reached: sending SIGTERM, SIGKILL in {grace:?}");
                let _ = sys::kill(self.pid, libc::SIGTERM);
                let now = Instant::now();
                Clock::Terminating {
                    kill_at: now.checked_add(grace).unwrap_or(now),
                }
            }
            Clock::Terminating { .. } => {
                // The first process is the PID namespace's init: its death takes every
                // process of the sandbox with it, daemons and new sessions included. A
                // cgroup reaches them even without a PID namespace.
                let _ = sys::kill(self.pid, libc::SIGKILL);
                if let Some(cg) = self.cgroup {
                    let _ = cg.kill_all();
                }
                Clock::Killed
            }
            other => other,
        };
    }

    fn forward_signal(&mut self) -> Result<(), Error> {
        let info = match self.signals.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) | Err(nix::errno::Errno::EINTR) => return Ok(()),
            Err(e) => {
                let _ = sys::kill(self.pid, libc::SIGKILL);
                return Err(Error::Supervisor {
                    what: "read signals",
                    errno: e,
                });
            }
        };
        let sig = info.ssi_signo as i32;
        if sig == libc::SIGWINCH {
            if let Some(r) = self.relay {
                r.resize();
            }
            return Ok(());
        }
        tracing::debug!(signal = sig, "forwarding signal");
        let _ = sys::kill(self.pid, sig);
        Ok(())
    }
}
