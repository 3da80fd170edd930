//! The user namespace's id maps and limits, written by the sandbox's first process for
//! itself. An unprivileged process may map exactly its own uid and gid, one line each, and must
//! deny setgroups before writing the gid map.

use super::channel::{Failure, Step};
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
pub fn set_limits(plan: &Plan) -> Result<(), Failure> {
    for (i, l) in plan.limits.userns.iter().enumerate() {
        sys::write_file(&l.path, 0, &l.text).map_err(|e| Failure::at(Step::UsernsLimit, i, e))?;
    }
    Ok(())
}
