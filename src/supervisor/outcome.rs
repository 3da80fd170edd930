//! What happened to a run, decoded from the sandbox's records and the first process's wait
//! status: how it ended, what failed, what landlock enforced, the time and memory it used.

use std::time::Duration;

use super::guard::Tripped;
use super::watchdog::{Crossed, Sample};
use crate::cgroup;
use crate::exit::{EXIT_SBX_FAILED, Ending};
use crate::proxy::ProxyStats;
use crate::sandbox::channel::{Fact, Failure, LandlockOutcome, Milestone, Record};

/// CPU time and peak memory of the sandbox's processes (those its init waited for).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub user: Duration,
    pub system: Duration,
    /// Peak resident set of the largest process, in bytes.
    pub max_rss: u64,
}

impl Usage {
    pub(super) fn from_rusage(r: &libc::rusage) -> Usage {
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
    /// sbx's egress counts, with `network.mode = "on"` or `"proxy"`.
    pub egress: Option<crate::egress::EgressStats>,
    /// The paths the command named, when the run was observed.
    pub observed: Option<crate::intercept::Observed>,
    /// The whole-sandbox limit the watchdog killed the sandbox for.
    pub crossed: Option<Crossed>,
    /// Whether the watchdog held the limits, and the largest sample it took.
    pub watchdog: Option<Sample>,
    /// Protected paths the command created (the sandbox was killed for it).
    pub protected: Vec<Tripped>,
}

/// How the supervisor learned that the sandbox ended.
pub(super) enum End {
    /// The first process was reaped: its raw wait status and resource usage.
    Reaped(libc::c_int, libc::rusage),
    /// Init reported the end (`Fact::Finished`) and is still exiting.
    Reported,
}

/// The records, read for what the outcome needs.
pub(super) struct Records(pub Vec<Record>);

impl Records {
    fn facts(&self) -> impl Iterator<Item = &Fact> {
        self.0.iter().filter_map(|r| match r {
            Record::Fact(f) => Some(f),
            Record::Failure(_) => None,
        })
    }

    pub(super) fn failure(&self) -> Option<Failure> {
        self.0.iter().find_map(|r| match r {
            Record::Failure(f) => Some(*f),
            Record::Fact(_) => None,
        })
    }

    pub(super) fn payload(&self) -> Option<Ending> {
        self.facts().find_map(|f| match f {
            Fact::PayloadStatus(s) => Some(Ending::from_status(*s)),
            _ => None,
        })
    }

    pub(super) fn landlock(&self) -> Option<LandlockOutcome> {
        self.facts().find_map(|f| match f {
            Fact::Landlock(l) => Some(*l),
            _ => None,
        })
    }

    /// Usage as init reported it, if it did.
    fn usage(&self) -> Option<Usage> {
        let find = |want: fn(&Fact) -> Option<u64>| self.facts().find_map(want);
        Some(Usage {
            user: Duration::from_micros(find(|f| match f {
                Fact::UserTime(us) => Some(*us),
                _ => None,
            })?),
            system: Duration::from_micros(find(|f| match f {
                Fact::SystemTime(us) => Some(*us),
                _ => None,
            })?),
            max_rss: find(|f| match f {
                Fact::PeakRss(kib) => Some(*kib),
                _ => None,
            })? * 1024,
        })
    }

    /// The guards of protected paths init reported tripped.
    /// The optional steps the sandbox left out, as failures (the step and the errno).
    pub(super) fn skipped(&self) -> Vec<Failure> {
        self.facts()
            .filter_map(|f| match f {
                Fact::Skipped(step, errno) => Some(Failure {
                    step: *step,
                    index: 0,
                    errno: *errno,
                }),
                _ => None,
            })
            .collect()
    }

    pub(super) fn protected(&self) -> Vec<usize> {
        self.facts()
            .filter_map(|f| match f {
                Fact::Protected(i) => Some(*i as usize),
                _ => None,
            })
            .collect()
    }

    /// The newer system calls the sandbox's first process replaced by classic ones.
    pub(super) fn fallbacks(&self) -> crate::sys::Fallbacks {
        self.facts()
            .filter_map(|f| match f {
                Fact::Fallbacks(bits) => Some(crate::sys::Fallbacks::from_bits_truncate(*bits)),
                _ => None,
            })
            .fold(crate::sys::Fallbacks::empty(), |a, b| a | b)
    }

    /// The setup milestones, as (name, µs since `t0`).
    pub(super) fn milestones(&self, t0: u32) -> Vec<(&'static str, u32)> {
        self.facts()
            .filter_map(|f| match f {
                Fact::Milestone(m, at) => Some((Milestone::name(*m), at.wrapping_sub(t0))),
                _ => None,
            })
            .collect()
    }

    /// How the first process ended and what it used.
    pub(super) fn ending(&self, end: End) -> (Ending, Usage) {
        match end {
            End::Reaped(status, rusage) => {
                (Ending::from_status(status), Usage::from_rusage(&rusage))
            }
            // Init exits as the command did (see `init::finish`).
            End::Reported => (
                Ending::Exited(self.payload().map_or(EXIT_SBX_FAILED, Ending::code)),
                self.usage().unwrap_or_default(),
            ),
        }
    }
}
