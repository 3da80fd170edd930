//! The user namespace's id maps, written by the sandbox's first process for itself. An
//! unprivileged process may map exactly its own uid and gid, one line each, and must deny
//! setgroups before writing the gid map.

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
