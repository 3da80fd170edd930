//! Where a bind or overlay of a host directory goes. A source is resolved once, here, to the
//! directory it names; without a destination of its own it is mounted where that directory
//! really is, so that `$PWD` reached through a symlink, `$PWD/.` and `$PWD/` all mount the
//! same directory at the same place as `${CWD}` (which is canonical), and one mount replaces
//! the other instead of standing beside it. The spelling used stays reachable: a symlink to
//! the mount is left there when it lies in sbx's own tmpfs (inside a bind the host's own
//! symlink already leads there).

use std::collections::BTreeMap;
use std::path::Path;

use super::NEW_ROOT;
use super::op::{MountAttrs, Op};
use super::path::cstr;
use super::request::{Kind, Request};
use super::tree::{Builder, Node};
use crate::plan::error::PlanError;
use crate::profile::Origin;

/// A mount request and the destination its entry asked for, as written (without `.` and
/// trailing `/`): two entries asking alike are one place named twice in one layer, two that
/// only resolve alike name one directory through a symlink.
pub struct Claim {
    pub request: Request,
    pub asked: String,
}

/// The destination of a source that resolves to `canonical`: `asked` when the entry names
/// one, else the canonical path, with a symlink request from the spelling used to it.
pub fn destination(
    asked: &str,
    own_destination: bool,
    canonical: &Path,
    origin: &Origin,
) -> Result<(String, Option<Request>), PlanError> {
    if own_destination {
        return Ok((asked.to_string(), None));
    }
    let Some(real) = canonical.to_str() else {
        return Err(PlanError::invalid(
            origin,
            format!(
                "{asked} resolves to {}, which is not UTF-8: give it a destination (SRC:DST)",
                canonical.display()
            ),
        ));
    };
    if real == asked {
        return Ok((asked.to_string(), None));
    }
    let alias = Request {
        dst: asked.to_string(),
        kind: Kind::Alias(real.to_string()),
        origin: Some(origin.clone()),
    };
    Ok((real.to_string(), Some(alias)))
}

/// How far an entry keeps the host directory at its destination from being written.
fn keeps_host(kind: &Kind) -> u8 {
    match kind {
        Kind::Overlay { .. } => 3,
        Kind::Bind { attrs, .. } if attrs.contains(MountAttrs::RDONLY) => 2,
        Kind::Tmpfs { .. } => 1,
        _ => 0,
    }
}

/// Records `c` at its destination. An entry asking for the same place as an earlier one
/// replaces it (within one layer the lists come in the order tmpfs, ro, rw, overlay, so host
/// data wins over an empty tmpfs and an overlay over a bind). An entry that only resolves to
/// the same place, through a symlink, may come from any layer: the one that keeps the host
/// unwritten wins, so that `--ro-bind` or `--overlay` of `$PWD` reached through a symlink is
/// not undone by the profile's writable `${CWD}`.
pub fn claim(by_dst: &mut BTreeMap<String, Claim>, c: Claim) {
    if let Some(old) = by_dst.get(&c.request.dst)
        && old.asked != c.asked
        && keeps_host(&old.request.kind) > keeps_host(&c.request.kind)
    {
        return;
    }
    by_dst.insert(c.request.dst.clone(), c);
}

impl Builder {
    /// Places the symlink from a spelling of a source to where it is mounted, when that
    /// spelling lies in sbx's own tmpfs and nothing is there yet; otherwise leaves it (inside
    /// a bind the host's own symlink is there, and an explicit mount there decides).
    pub(super) fn alias(&mut self, r: &Request, target: &str) {
        if self.nodes.contains_key(&r.dst) || !matches!(self.parents(r), Ok(None)) {
            tracing::debug!("no link from {} to {target}: not in sbx's tmpfs", r.dst);
            return;
        }
        let op = Op::Symlink {
            target: std::ffi::CString::new(target).expect("paths were checked for NUL"),
            path: cstr(NEW_ROOT, Path::new(&r.dst)),
        };
        self.push(op, "symlink to the resolved source", r, None);
        self.nodes.insert(r.dst.clone(), Node::Leaf("symlink"));
    }
}
