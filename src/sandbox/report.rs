//! Fixed-size records that the sandboxed processes send to the supervisor over a pipe. The
//! child cannot allocate or format, so it sends numbers; the supervisor turns them into words.

use std::os::fd::RawFd;

use super::sys;

/// The setup step that failed, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    Lifeline = 1,
    Setgroups,
    UidMap,
    GidMap,
    MakePrivate,
    MountScratch,
    EnterScratch,
    PivotScratch,
    /// One op of the plan; the record's index says which.
    Op,
    RootReadOnly,
    DetachHost,
    PivotRoot,
    DetachScratch,
    Hostname,
    Loopback,
    DropPrivileges,
    ForkPayload,
    Signals,
    Setsid,
    Chdir,
    Exec,
    Landlock,
    NoNewPrivs,
    Seccomp,
    Rlimit,
    CgroupNamespace,
    ProxyListener,
    Pty,
    /// Not a failure: a setup milestone (errno: which, index: CLOCK_MONOTONIC in µs, low 32
    /// bits), sent only when the supervisor traces (-v).
    Timing,
    /// Not a failure: the command's raw wait status (index), sent by init as it exits.
    PayloadStatus,
    /// Not a failure: landlock's enforcement status (index: 0 none, 1 partial, 2 full).
    LandlockStatus,
    /// Not a failure: CPU time in user mode of init and everything it reaped, in µs (index:
    /// low 32 bits, errno: high 32 bits).
    UserTime,
    /// Not a failure: the same in kernel mode.
    SystemTime,
    /// Not a failure: the peak resident set of the largest of them, in KiB (index).
    PeakRss,
    /// Not a failure: init has killed and reaped every other process of the sandbox; all that
    /// is left is its own exit (and the kernel's teardown of the namespaces).
    Finished,
    /// Creating the network namespace (in the supervisor's helper, see `sandbox::netns`).
    NetNamespace,
}

impl Step {
    /// Every step, in discriminant order.
    const ALL: [Step; 36] = {
        use Step::*;
        [
            Lifeline,
            Setgroups,
            UidMap,
            GidMap,
            MakePrivate,
            MountScratch,
            EnterScratch,
            PivotScratch,
            Op,
            RootReadOnly,
            DetachHost,
            PivotRoot,
            DetachScratch,
            Hostname,
            Loopback,
            DropPrivileges,
            ForkPayload,
            Signals,
            Setsid,
            Chdir,
            Exec,
            Landlock,
            NoNewPrivs,
            Seccomp,
            Rlimit,
            CgroupNamespace,
            ProxyListener,
            Pty,
            Timing,
            PayloadStatus,
            LandlockStatus,
            UserTime,
            SystemTime,
            PeakRss,
            Finished,
            NetNamespace,
        ]
    };

    fn from_u32(v: u32) -> Option<Step> {
        Step::ALL.into_iter().find(|s| *s as u32 == v)
    }
}

/// A failure inside the sandbox: the step, which op (for `Step::Op`), and the errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub step: Step,
    pub index: u32,
    pub errno: i32,
}

impl Failure {
    /// True for records that report a failure rather than a fact.
    pub fn is_failure(&self) -> bool {
        !matches!(
            self.step,
            Step::LandlockStatus
                | Step::PayloadStatus
                | Step::Timing
                | Step::UserTime
                | Step::SystemTime
                | Step::PeakRss
                | Step::Finished
        )
    }

    /// A record that carries a fact rather than a failure.
    pub fn fact(step: Step, value: u64) -> Failure {
        Failure {
            step,
            index: value as u32,
            errno: (value >> 32) as i32,
        }
    }

    /// The 64-bit value of a record made by [`Failure::fact`].
    pub fn value(&self) -> u64 {
        u64::from(self.index) | (u64::from(self.errno as u32) << 32)
    }

    pub fn new(step: Step, errno: sys::Errno) -> Failure {
        Failure {
            step,
            index: 0,
            errno: errno as i32,
        }
    }

    pub fn at(step: Step, index: usize, errno: sys::Errno) -> Failure {
        Failure {
            step,
            index: index as u32,
            errno: errno as i32,
        }
    }
}

const RECORD: usize = 12;

/// Sends a failure record; a pipe write of this size is atomic.
pub fn send(fd: RawFd, f: Failure) {
    send_all(fd, &[f]);
}

/// The most records one write carries; a pipe write of up to PIPE_BUF bytes is atomic, so
/// the reader sees all of them or none.
const BATCH: usize = 8;

/// Sends up to [`BATCH`] records in one atomic write (more are ignored).
pub fn send_all(fd: RawFd, records: &[Failure]) {
    let mut buf = [0u8; RECORD * BATCH];
    let n = records.len().min(BATCH);
    for (chunk, f) in buf.chunks_exact_mut(RECORD).zip(&records[..n]) {
        chunk[0..4].copy_from_slice(&(f.step as u32).to_ne_bytes());
        chunk[4..8].copy_from_slice(&f.index.to_ne_bytes());
        chunk[8..12].copy_from_slice(&f.errno.to_ne_bytes());
    }
    let _ = sys::write_all(fd, &buf[..n * RECORD]);
}

/// Reads the records available now into `out`; true once the pipe reached end of file.
/// A partial or unknown record is ignored.
pub fn receive(fd: RawFd, out: &mut Vec<Failure>) -> bool {
    let mut buf = [0u8; RECORD];
    loop {
        match sys::read(fd, &mut buf) {
            Ok(RECORD) => {}
            Ok(0) => return true,
            // A short record: the writer died mid-way, which a pipe write this small rules out.
            Ok(_) => continue,
            Err(_) => return false,
        }
        let word = |i: usize| u32::from_ne_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
        if let Some(step) = Step::from_u32(word(0)) {
            out.push(Failure {
                step,
                index: word(4),
                errno: word(8) as i32,
            });
        }
    }
}

/// Setup milestones reported with `Step::Timing`.
pub const MILESTONES: [&str; 4] = ["ids mapped", "root built", "confined", "exec"];

/// Sends a milestone record when the plan asks for tracing.
pub fn milestone(fd: RawFd, trace: bool, which: usize) {
    if trace {
        send(
            fd,
            Failure {
                step: Step::Timing,
                index: sys::monotonic_us(),
                errno: which as i32,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record until end of file.
    fn receive_all(fd: RawFd) -> Vec<Failure> {
        let mut out = Vec::new();
        receive(fd, &mut out);
        out
    }

    #[test]
    fn every_step_is_listed_once_in_order() {
        for (i, s) in Step::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i + 1, "{s:?}");
        }
        assert_eq!(
            Step::ALL.last(),
            Some(&Step::NetNamespace),
            "a new step must join ALL"
        );
    }

    #[test]
    fn records_round_trip_through_a_pipe() {
        let (r, w) = sys::pipe().unwrap();
        let a = Failure::at(Step::Op, 7, sys::Errno::ENOENT);
        let b = Failure::new(Step::Exec, sys::Errno::EACCES);
        send(w, a);
        send(w, b);
        sys::close(w);
        assert_eq!(receive_all(r), vec![a, b]);
        sys::close(r);
    }

    #[test]
    fn a_batch_arrives_whole_and_facts_keep_64_bits() {
        let (r, w) = sys::pipe().unwrap();
        let big = (7u64 << 32) | 0xdead_beef;
        let batch = [
            Failure::fact(Step::UserTime, big),
            Failure::fact(Step::PeakRss, 4096),
            Failure::fact(Step::Finished, 0),
        ];
        send_all(w, &batch);
        sys::close(w);
        let got = receive_all(r);
        sys::close(r);
        assert_eq!(got, batch.to_vec());
        assert_eq!(got[0].value(), big);
        assert!(got.iter().all(|f| !f.is_failure()));
    }
}
