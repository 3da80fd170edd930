//! The channel from the sandbox's processes to the supervisor: fixed-size records on a pipe.
//! The sandbox cannot allocate or format, so it sends numbers; the supervisor turns them into
//! words. A record is either a failure (the step that failed, which item of it, the errno) or
//! a fact the supervisor needs (how the command ended, what landlock enforced, CPU time...).

use std::os::fd::RawFd;

use crate::sys;

/// Declares `Step` and its decoder from one list, so that the two cannot disagree.
macro_rules! steps {
    ($( $(#[$doc:meta])* $name:ident, )*) => {
        /// A setup step that can fail, in the order they run.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u32)]
        pub enum Step { $( $(#[$doc])* $name, )* }

        impl Step {
            fn from_u32(v: u32) -> Option<Step> {
                const ALL: &[Step] = &[$(Step::$name,)*];
                ALL.get(v as usize).copied()
            }
        }
    };
}

steps! {
    // The first process (see `setup::first_process`).
    /// Blocking the signals init will forward (or, in init, creating its signalfd).
    Signals,
    Lifeline,
    CgroupNamespace,
    /// Marking inherited descriptors close-on-exec (in the first process, while /proc is the
    /// host's), or closing them (in init, once the payload is forked).
    CloseFds,
    Setgroups,
    UidMap,
    GidMap,
    /// One of the user namespace's own limits; the index says which.
    UsernsLimit,
    MakePrivate,
    MountScratch,
    EnterScratch,
    PivotScratch,
    /// One op of the plan; the record's index says which.
    Op,
    DetachHost,
    PivotRoot,
    DetachScratch,
    RootReadOnly,
    /// Creating the network namespace (in the supervisor's helper, see `sandbox::netns`), or
    /// joining it.
    NetNamespace,
    Loopback,
    /// sbx's sockets in the sandbox's network (network.mode "on" or "proxy", in the helper):
    /// a nameserver's address on `lo`, the DNS sockets, the relay, a mapped host port; the
    /// index says which (see `netns::egress_sockets`).
    EgressSockets,
    Hostname,
    /// Watching the protected paths that do not exist; the index says which.
    Protect,
    ProxyListener,
    /// Installing the seccomp listener that hands connect(2) to the supervisor.
    Interception,
    Pty,
    /// Handing the tmpfs store over to the supervisor's watchdog.
    Store,
    NotDumpable,
    Landlock,
    NoNewPrivs,
    DropCapabilities,
    Rlimit,
    // Init.
    ForkPayload,
    // The payload (see `exec::payload`).
    PayloadSignals,
    Setsid,
    Terminal,
    Chdir,
    Seccomp,
    Exec,
}

/// A failure inside the sandbox: the step, which item of it (the op, the rlimit, the landlock
/// rule), and the errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub step: Step,
    pub index: u32,
    pub errno: i32,
}

impl Failure {
    pub fn new(step: Step, errno: sys::Errno) -> Failure {
        Failure::at(step, 0, errno)
    }

    pub fn at(step: Step, index: usize, errno: sys::Errno) -> Failure {
        Failure {
            step,
            index: index as u32,
            errno: errno as i32,
        }
    }
}

/// Points of the setup that `-v` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Milestone {
    IdsMapped,
    RootBuilt,
    Confined,
    Exec,
}

impl Milestone {
    const ALL: [Milestone; 4] = [
        Milestone::IdsMapped,
        Milestone::RootBuilt,
        Milestone::Confined,
        Milestone::Exec,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Milestone::IdsMapped => "ids mapped",
            Milestone::RootBuilt => "root built",
            Milestone::Confined => "confined",
            Milestone::Exec => "exec",
        }
    }
}

/// How far landlock was enforced, as the sandbox's first process saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum LandlockOutcome {
    None,
    Partial,
    Full,
}

/// What the sandbox tells the supervisor besides failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fact {
    /// A setup milestone reached, at CLOCK_MONOTONIC µs (low 32 bits); sent only with -v.
    Milestone(Milestone, u32),
    /// What landlock enforced.
    Landlock(LandlockOutcome),
    /// The command's raw wait status, sent by init as it exits.
    PayloadStatus(i32),
    /// CPU time in user mode of init and everything it reaped, in µs.
    UserTime(u64),
    /// The same in kernel mode.
    SystemTime(u64),
    /// The peak resident set of the largest of them, in KiB.
    PeakRss(u64),
    /// Init has killed and reaped every other process of the sandbox; all that is left is its
    /// own exit (and the kernel's teardown of the namespaces).
    Finished,
    /// A protected path appeared (the guard's index): init ended the command.
    Protected(u32),
    /// The newer system calls the first process found missing and replaced
    /// (`sys::Fallbacks`); sent once the root is built, when there are any.
    Fallbacks(u32),
    /// A step the plan marks optional failed (with this errno) and was left out: the run
    /// goes on without it (a hostname the environment refuses).
    Skipped(Step, i32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    Failure(Failure),
    Fact(Fact),
}

impl From<Failure> for Record {
    fn from(f: Failure) -> Record {
        Record::Failure(f)
    }
}

impl From<Fact> for Record {
    fn from(f: Fact) -> Record {
        Record::Fact(f)
    }
}

/// Tags of facts on the wire; failures use their step's number, which stays below.
const FACT: u32 = 0x1000;

impl Record {
    /// Three words: the tag, then two words of payload.
    fn encode(self) -> [u32; 3] {
        let split = |v: u64| [v as u32, (v >> 32) as u32];
        let fact = |n: u32, [a, b]: [u32; 2]| [FACT + n, a, b];
        match self {
            Record::Failure(f) => [f.step as u32, f.index, f.errno as u32],
            Record::Fact(Fact::Milestone(m, at)) => fact(0, [m as u32, at]),
            Record::Fact(Fact::Landlock(l)) => fact(1, [l as u32, 0]),
            Record::Fact(Fact::PayloadStatus(s)) => fact(2, [s as u32, 0]),
            Record::Fact(Fact::UserTime(us)) => fact(3, split(us)),
            Record::Fact(Fact::SystemTime(us)) => fact(4, split(us)),
            Record::Fact(Fact::PeakRss(kib)) => fact(5, split(kib)),
            Record::Fact(Fact::Finished) => fact(6, [0, 0]),
            Record::Fact(Fact::Protected(i)) => fact(7, [i, 0]),
            Record::Fact(Fact::Fallbacks(bits)) => fact(8, [bits, 0]),
            Record::Fact(Fact::Skipped(step, errno)) => fact(9, [step as u32, errno as u32]),
        }
    }

    fn decode([tag, a, b]: [u32; 3]) -> Option<Record> {
        let wide = u64::from(a) | (u64::from(b) << 32);
        let fact = match tag.checked_sub(FACT) {
            None => {
                return Some(Record::Failure(Failure {
                    step: Step::from_u32(tag)?,
                    index: a,
                    errno: b as i32,
                }));
            }
            Some(0) => Fact::Milestone(*Milestone::ALL.get(a as usize)?, b),
            Some(1) => Fact::Landlock(match a {
                0 => LandlockOutcome::None,
                1 => LandlockOutcome::Partial,
                2 => LandlockOutcome::Full,
                _ => return None,
            }),
            Some(2) => Fact::PayloadStatus(a as i32),
            Some(3) => Fact::UserTime(wide),
            Some(4) => Fact::SystemTime(wide),
            Some(5) => Fact::PeakRss(wide),
            Some(6) => Fact::Finished,
            Some(7) => Fact::Protected(a),
            Some(8) => Fact::Fallbacks(a),
            Some(9) => Fact::Skipped(Step::from_u32(a)?, b as i32),
            Some(_) => return None,
        };
        Some(Record::Fact(fact))
    }
}

const RECORD: usize = 12;

/// The most records one write carries; a pipe write of up to PIPE_BUF bytes is atomic, so
/// the reader sees all of them or none.
pub const BATCH: usize = 8;

/// Sends one record; a pipe write of this size is atomic.
pub fn send(fd: RawFd, r: impl Into<Record>) {
    send_all(fd, &[r.into()]);
}

/// Sends up to [`BATCH`] records in one atomic write (more are ignored).
pub fn send_all(fd: RawFd, records: &[Record]) {
    let mut buf = [0u8; RECORD * BATCH];
    let n = records.len().min(BATCH);
    for (chunk, r) in buf.chunks_exact_mut(RECORD).zip(&records[..n]) {
        for (bytes, word) in chunk.chunks_exact_mut(4).zip(r.encode()) {
            bytes.copy_from_slice(&word.to_ne_bytes());
        }
    }
    let _ = sys::write_all(fd, &buf[..n * RECORD]);
}

/// Sends a milestone when the plan asks for timing (-v).
pub fn milestone(fd: RawFd, trace: bool, m: Milestone) {
    if trace {
        send(fd, Fact::Milestone(m, sys::monotonic_us()));
    }
}

/// Reads the records available now into `out`; true once the pipe reached end of file.
/// A partial or unknown record is ignored.
pub fn receive(fd: RawFd, out: &mut Vec<Record>) -> bool {
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
        if let Some(r) = Record::decode([word(0), word(4), word(8)]) {
            out.push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, OwnedFd};

    /// Every record until end of file.
    fn receive_all(fd: RawFd) -> Vec<Record> {
        let mut out = Vec::new();
        receive(fd, &mut out);
        out
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        sys::pipe().unwrap()
    }

    #[test]
    fn records_round_trip_through_a_pipe() {
        let (r, w) = pipe();
        let a = Failure::at(Step::Op, 7, sys::Errno::ENOENT);
        let b = Failure::new(Step::Exec, sys::Errno::EACCES);
        send(w.as_raw_fd(), a);
        send(w.as_raw_fd(), b);
        drop(w);
        assert_eq!(receive_all(r.as_raw_fd()), vec![a.into(), b.into()]);
    }

    #[test]
    fn every_step_and_fact_decodes_to_itself() {
        for n in 0..200 {
            if let Some(step) = Step::from_u32(n) {
                assert_eq!(step as u32, n);
                let f = Record::Failure(Failure::at(step, 3, sys::Errno::EPERM));
                assert_eq!(Record::decode(f.encode()), Some(f));
            }
        }
        assert_eq!(
            Step::from_u32(Step::Exec as u32 + 1),
            None,
            "Exec is the last step"
        );
        for m in Milestone::ALL {
            let r = Record::Fact(Fact::Milestone(m, 12345));
            assert_eq!(Record::decode(r.encode()), Some(r));
        }
    }

    #[test]
    fn a_batch_arrives_whole_and_facts_keep_64_bits() {
        let (r, w) = pipe();
        let big = (7u64 << 32) | 0xdead_beef;
        let batch = [
            Fact::UserTime(big).into(),
            Fact::PeakRss(4096).into(),
            Fact::Landlock(LandlockOutcome::Partial).into(),
            Fact::PayloadStatus(-1).into(),
            Fact::Fallbacks(0b1011).into(),
            Fact::Finished.into(),
            Fact::Skipped(Step::Hostname, libc::EPERM).into(),
        ];
        send_all(w.as_raw_fd(), &batch);
        drop(w);
        assert_eq!(receive_all(r.as_raw_fd()), batch.to_vec());
    }
}
