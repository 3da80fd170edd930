//! The user namespace's id maps and limits, written by the sandbox's first process for
//! itself. An unprivileged process may map exactly its own uid and gid, one line each, and must
//! deny setgroups before writing the gid map.

use std::ffi::OsStr;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::channel::{self, Fact, Failure, Step};
use crate::plan::{Op, Plan};
use crate::sys;

pub fn write_id_maps(plan: &Plan) -> Result<(), Failure> {
    sys::write_file(c"/proc/self/setgroups", 0, b"deny")
        .map_err(|e| Failure::new(Step::Setgroups, e))?;
    sys::write_file(c"/proc/self/uid_map", 0, &plan.uid_map)
        .map_err(|e| Failure::new(Step::UidMap, e))?;
    sys::write_file(c"/proc/self/gid_map", 0, &plan.gid_map)
        .map_err(|e| Failure::new(Step::GidMap, e))?;
    Ok(())
}

/// Sets the user namespace's own limits (see `plan::limits::userns_limits`), from a process
/// holding CAP_SYS_RESOURCE there: /proc/sys/user is the opener's namespace. Before the root is
/// built, which takes transient mount namespaces (`open_tree`): with nesting,
/// `max_mnt_namespaces` is a share of the caller's, never a count.
/// Where the plan allows (`userns_optional`), a read-only /proc/sys leaves them all out, and
/// the supervisor is told.
pub fn set_limits(plan: &Plan, report: RawFd) -> Result<(), Failure> {
    if !plan.limits.userns.is_empty() {
        own_proc(plan);
    }
    for (i, l) in plan.limits.userns.iter().enumerate() {
        match sys::write_file(&l.path, 0, &l.text) {
            Ok(()) => {}
            Err(sys::Errno::EROFS) if plan.limits.userns_optional => {
                channel::send(report, Fact::Skipped(Step::UsernsLimit, libc::EROFS));
                return Ok(());
            }
            Err(e) => return Err(Failure::at(Step::UsernsLimit, i, e)),
        }
    }
    Ok(())
}

/// Mounts a proc of the sandbox's own over the host's /proc, in this private mount namespace,
/// for the limits' writes. The files are the opener's namespace's either way, but their
/// dentries belong to the proc they are reached through: through the host's, each sandbox
/// leaves a `user` directory in the host's /proc/sys until its user namespace is freed, which
/// the kernel does asynchronously after the sandbox has gone (after its network namespace).
/// Every lookup there walks them all under a global lock: started back to back, the
/// supervisor's reads took 60 µs each instead of 11 and init's writes 72 (strace -T, 200
/// starts; benches/README.md).
///
/// Best effort, and only an optimisation: where the mount is refused (no PID namespace of the
/// sandbox's own, a container's masked /proc), the host's /proc serves as before. Left
/// mounted (detaching it costs a grace period, ≈ 0.5 ms); it goes with the host's root. Not
/// where a bind takes its source from the host's /proc, which must stay the host's.
fn own_proc(plan: &Plan) {
    let host_proc = Path::new(OsStr::from_bytes(OLD_ROOT_PROC.to_bytes()));
    let from_host_proc = plan.ops.iter().any(|op| match op {
        Op::Bind { src, .. } => {
            let src = Path::new(OsStr::from_bytes(src.to_bytes()));
            src.starts_with(host_proc) || host_proc.starts_with(src)
        }
        _ => false,
    });
    if !from_host_proc {
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        let _ = sys::mount(Some(c"proc"), c"/proc", Some(c"proc"), flags, None);
    }
}

/// Where the host's /proc is seen from while the root is built (`plan::mount::OLD_ROOT`).
const OLD_ROOT_PROC: &std::ffi::CStr = c"/oldroot/proc";
