//! The user namespace's id maps and limits, written by the sandbox's first process for
//! itself. An unprivileged process may map exactly its own uid and gid, one line each, and must
//! deny setgroups before writing the gid map.

use std::os::fd::RawFd;

use super::channel::{self, Fact, Failure, Step};
use crate::plan::Plan;
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
/// holding CAP_SYS_RESOURCE there that sees the host's /proc: /proc/sys/user is the opener's
/// namespace. Before the root is built, which takes transient mount namespaces (`open_tree`):
/// with nesting, `max_mnt_namespaces` is a share of the caller's, never a count.
/// Where the plan allows (`userns_optional`), a read-only /proc/sys leaves them all out, and
/// the supervisor is told.
pub fn set_limits(plan: &Plan, report: RawFd) -> Result<(), Failure> {
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
