//! Executes a plan: one module per stage, in kernel order. The process that `spawn` clones is
//! created in every planned namespace but the network one, and runs the steps listed in
//! `setup::first_process`; it becomes the sandbox's PID 1 (`init`), which spawns the command
//! (`exec::payload`). A helper creates the network namespace beside it (see `netns`).

pub mod channel;
mod confine;
mod exec;
mod init;
mod netns;
mod rootfs;
mod setup;
mod userns;
mod watch;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

pub use netns::{EgressSocket, UDP_REQUEST, egress_socket_name, egress_sockets};

use crate::plan::Plan;
use crate::sys;

/// The running sandbox as the supervisor sees it.
pub struct Spawned {
    pub pid: libc::pid_t,
    /// Read end of the channel (see `channel`).
    pub report: OwnedFd,
    /// Write end of the lifeline: when the supervisor dies it closes, and the sandbox knows.
    pub lifeline: OwnedFd,
    /// The supervisor's end of the socket on which init hands over what it opened inside for
    /// the supervisor: the proxy's listener, the pty's master, the tmpfs store and the
    /// interception's seccomp listener (by number, see `setup::intercept`), in that order.
    pub handover: Option<OwnedFd>,
    /// The supervisor's end of the socket on which the helper sends sbx's egress sockets (see
    /// `netns::egress_sockets`).
    pub egress: Option<OwnedFd>,
    /// Whether the process was born in [`SpawnOptions::cgroup`] (clone3's CLONE_INTO_CGROUP):
    /// Ok(false) without a cgroup to start in; Err(errno) when clone3 refused (the process was
    /// cloned the classic way, and the supervisor still has to move it there).
    pub in_cgroup: Result<bool, sys::Errno>,
    /// The network namespace's helper's descriptors, kept until `start_net_helper`; None
    /// without a network namespace.
    pending: Option<PendingHelper>,
}

/// What the network namespace's helper is handed: the report pipe's write end, its end of
/// the socket to init and of the egress socket.
struct PendingHelper {
    report: OwnedFd,
    net: OwnedFd,
    egress: Option<OwnedFd>,
}

impl Spawned {
    /// Forks the network namespace's helper (see `netns`), if the plan has a network
    /// namespace, and closes the supervisor's copy of the report pipe's write end (which the
    /// helper needs). Called once init has its go byte: the fork copies the supervisor's page
    /// tables, which is time init would otherwise wait for. Returns the helper's pid, a child
    /// of the supervisor to reap.
    pub fn start_net_helper(&mut self, plan: &Plan) -> Result<Option<libc::pid_t>, sys::Errno> {
        let Some(p) = self.pending.take() else {
            return Ok(None);
        };
        let (net, report) = (p.net.as_raw_fd(), p.report.as_raw_fd());
        netns::spawn_helper(plan, self.pid, net, report, raw(&p.egress)).map(Some)
    }
}

/// What the sandbox's first process is handed: its ends of the channels to the supervisor.
#[derive(Clone, Copy)]
struct ChildEnds {
    report: RawFd,
    lifeline: RawFd,
    handover: Option<RawFd>,
    /// Init's end of the socket on which the network namespace arrives (see `netns`).
    net: Option<RawFd>,
    late_cgroupns: bool,
    pty: bool,
    store: bool,
    release_stack: bool,
    watch: Option<RawFd>,
}

/// How the supervisor wants the sandbox started.
#[derive(Clone, Copy, Debug)]
pub struct SpawnOptions {
    /// The supervisor will move the process into a cgroup after the clone; a cgroup namespace
    /// is rooted where its creator stands, so the process creates it itself once it has been
    /// moved (it waits for the supervisor's go byte first).
    pub late_cgroupns: bool,
    /// Open a pty in the sandbox's own devpts for the command's terminal, and hand its master
    /// over for the relay.
    pub pty: bool,
    /// Hand over a descriptor of the tmpfs store, for the watchdog to measure.
    pub store: bool,
    /// The caller is sbx's CLI on its main thread: init may return its setup's dead stack
    /// before it waits (`sys::release_dead_stack`), as the supervisor did before the clone.
    pub release_stack: bool,
    /// The run's cgroup (its process leaf, open), to create the process in.
    pub cgroup: Option<RawFd>,
    /// An inotify instance for init's watch over the protected paths, made by the caller,
    /// which gives a second reference to a process nobody waits for: closing the last
    /// reference waits for the kernel's mark reaper (see `watch`). None: init makes its own.
    pub watch: Option<RawFd>,
}

/// The source name of the tmpfs that becomes the sandbox's `/`: an sbx inside tells from its
/// mountinfo that it runs in one (see `diagnose::host`); `df /` shows it too.
pub const ROOT_SOURCE: &std::ffi::CStr = c"sbx";

/// Signals sent to sbx that the command receives.
pub const FORWARDED_SIGNALS: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Splits an optional pair.
fn unzip<A, B>(pair: Option<(A, B)>) -> (Option<A>, Option<B>) {
    pair.map_or((None, None), |(a, b)| (Some(a), Some(b)))
}

fn raw(fd: &Option<OwnedFd>) -> Option<RawFd> {
    fd.as_ref().map(AsRawFd::as_raw_fd)
}

/// Clones the sandbox's first process.
#[allow(unsafe_code)] // clone_fork: the one unsafe call of the sandbox side
pub fn spawn(plan: &Plan, opts: SpawnOptions) -> Result<Spawned, sys::Errno> {
    let argv = exec::Argv::new(plan);
    let (report_r, report_w) = sys::pipe()?;
    let (life_r, life_w) = sys::pipe()?;
    let handover = plan.interception.is_some() || opts.pty || opts.store;
    let (handover_ours, handover_theirs) = unzip(handover.then(sys::socketpair).transpose()?);
    let (net_helper_end, net_init_end) =
        unzip(plan.namespaces.net.then(sys::socketpair).transpose()?);
    let (egress_ours, egress_helper) = unzip(
        (plan.namespaces.net && plan.network.egress().is_some())
            .then(sys::socketpair)
            .transpose()?,
    );
    let mut flags = plan.namespaces.clone_flags();
    if opts.late_cgroupns {
        flags &= !libc::CLONE_NEWCGROUP;
    }
    // A helper creates it, beside the root (see `netns`).
    flags &= !libc::CLONE_NEWNET;
    // Born in the run's cgroup where the kernel can (Linux 5.7), rather than moved there: a
    // move waits for an RCU grace period. Any refusal takes the classic clone, whose own
    // error, if any, is the one to report; the supervisor then moves the process.
    let born_in = opts.cgroup.map(|cg| {
        // SAFETY: the child runs `setup::first_process`, which never allocates, takes no lock
        // and ends in execve or _exit.
        unsafe { sys::clone_fork_into_cgroup(flags, cg) }
    });
    let (forked, in_cgroup) = match born_in {
        Some(Ok(pid)) => (pid, Ok(true)),
        // SAFETY: as above.
        Some(Err(e)) => (unsafe { sys::clone_fork(flags) }?, Err(e)),
        // SAFETY: as above.
        None => (unsafe { sys::clone_fork(flags) }?, Ok(false)),
    };
    match forked {
        0 => {
            drop((report_r, life_w, handover_ours, net_helper_end));
            drop((egress_ours, egress_helper));
            let ends = ChildEnds {
                report: report_w.as_raw_fd(),
                lifeline: life_r.as_raw_fd(),
                handover: raw(&handover_theirs),
                net: raw(&net_init_end),
                late_cgroupns: opts.late_cgroupns,
                pty: opts.pty,
                store: opts.store,
                release_stack: opts.release_stack,
                watch: opts.watch,
            };
            setup::first_process(plan, &argv, ends)
        }
        pid => {
            drop((net_init_end, handover_theirs, life_r));
            // Without a helper, the report pipe's write end closes here.
            let pending = net_helper_end.map(|net| PendingHelper {
                report: report_w,
                net,
                egress: egress_helper,
            });
            Ok(Spawned {
                pid,
                report: report_r,
                lifeline: life_w,
                handover: handover_ours,
                egress: egress_ours,
                in_cgroup,
                pending,
            })
        }
    }
}
