//! The user namespace's id maps and limits, written by the sandbox's first process for
//! itself. An unprivileged process may map exactly its own uid and gid, one line each, and must
//! deny setgroups before writing the gid map.

use std::os::fd::RawFd;

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

/// The most user-namespace limits sbx sets (see `plan::limits::userns_limits`).
pub const MAX_LIMITS: usize = 16;

/// The user namespace's limit files, opened while this process still sees the host's /proc
/// (the sandbox may have none), written once the root is built.
pub struct LimitFiles([RawFd; MAX_LIMITS]);

/// Opens the user namespace's limit files: /proc/sys/user is the namespace of the opener.
pub fn open_limits(plan: &Plan) -> Result<LimitFiles, Failure> {
    let mut fds = [-1; MAX_LIMITS];
    for (i, l) in plan.limits.userns.iter().take(MAX_LIMITS).enumerate() {
        fds[i] = sys::open(&l.path, libc::O_WRONLY, 0)
            .map_err(|e| Failure::at(Step::UsernsLimit, i, e))?;
    }
    Ok(LimitFiles(fds))
}

/// Sets the limits, while this process still holds CAP_SYS_RESOURCE in the namespace. After
/// the root is built: setting it up takes transient mount namespaces (`open_tree`), and the
/// network namespace is the helper's to create, so the counts are final only now.
pub fn write_limits(plan: &Plan, files: LimitFiles) -> Result<(), Failure> {
    for (i, (l, fd)) in plan.limits.userns.iter().zip(files.0).enumerate() {
        let written = sys::write_all(fd, &l.text);
        sys::close(fd);
        written.map_err(|e| Failure::at(Step::UsernsLimit, i, e))?;
    }
    Ok(())
}
