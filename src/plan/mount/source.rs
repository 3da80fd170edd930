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
    /// The warning given when the source was reached through a symlink, if one was.
    pub note: Option<String>,
    /// It replaced another entry's claim on the same place (which then needs its mount).
    pub replaced: bool,
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
        kind: Kind::Alias {
            target: real.to_string(),
            as_host: false,
        },
        origin: Some(origin.clone()),
    };
    Ok((real.to_string(), Some(alias)))
}

/// The host's own text of the symlink at `asked` (`usr/bin` for `/bin`), when following it
/// once leads to `canonical`, so that the sandbox's link reads as the host's; else None.
fn link_text(asked: &str, canonical: &Path) -> Option<String> {
    let text = std::fs::read_link(asked).ok()?;
    let text = text.to_str()?;
    let parent = Path::new(asked).parent()?;
    let mut to = std::path::PathBuf::new();
    for c in parent.join(text).components() {
        match c {
            std::path::Component::ParentDir => {
                to.pop();
            }
            std::path::Component::CurDir => {}
            c => to.push(c),
        }
    }
    (to == canonical).then(|| text.to_string())
}

/// Takes out the read-only binds of a source reached through a symlink whose directory
/// another mount already shows where it is, read-only (a bind of its own path above it) or
/// through an overlay: the link, placed in sbx's tmpfs as the host has it, is all such an
/// entry needs. This is how `ro = ["/bin?"]` beside `/usr` gives the link `/bin -> usr/bin`
/// where /usr is merged and a bind of the real directory where it is not (Alpine, busybox
/// images), with no second mount of /usr/bin and no warning. Links whose entry mounts
/// nothing of its own read as the host's (`usr/bin`, not `/usr/bin`).
pub fn linked_only(by_dst: &mut BTreeMap<String, Claim>, aliases: &mut [Request]) {
    let shown: Vec<String> = by_dst
        .values()
        .filter(|c| c.asked != c.request.dst && !c.replaced && shown_above(by_dst, &c.request))
        .map(|c| c.request.dst.clone())
        .collect();
    for dst in shown {
        if let Some(c) = by_dst.remove(&dst) {
            tracing::debug!("{} is a link to {dst}, shown there already", c.asked);
        }
    }
    // Every link whose own entry mounts nothing (shown above, or another entry names the
    // directory itself, as `/lib` beside `/lib64 -> lib`) reads as the host's.
    for a in aliases.iter_mut() {
        let Kind::Alias { target, as_host } = &mut a.kind else {
            continue;
        };
        if by_dst
            .get(target.as_str())
            .is_some_and(|c| c.asked == a.dst)
        {
            continue;
        }
        if let Some(text) = link_text(&a.dst, Path::new(target.as_str())) {
            *target = text;
        }
        *as_host = true;
    }
}

/// Whether `r`, a read-only bind, shows a directory that the deepest other mount above it
/// already shows at the same path, never writable.
fn shown_above(by_dst: &BTreeMap<String, Claim>, r: &Request) -> bool {
    let Kind::Bind { src, attrs, .. } = &r.kind else {
        return false;
    };
    if !attrs.contains(MountAttrs::RDONLY) {
        return false;
    }
    let above = by_dst
        .values()
        .filter(|c| c.request.dst != r.dst && super::path::is_within(&r.dst, &c.request.dst))
        .max_by_key(|c| c.request.dst.len());
    let Some(above) = above else {
        return false;
    };
    let at_own_path = |top: &Path| Path::new(&above.request.dst) == top && src.starts_with(top);
    match &above.request.kind {
        Kind::Bind { src: s, attrs, .. } => attrs.contains(MountAttrs::RDONLY) && at_own_path(s),
        Kind::Overlay { lowers, .. } => at_own_path(&lowers[0]),
        _ => false,
    }
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
/// not undone by the profile's writable `${CWD}`; alike, the entry naming the directory itself.
pub fn claim(by_dst: &mut BTreeMap<String, Claim>, c: Claim) {
    if let Some(old) = by_dst.get(&c.request.dst)
        && old.asked != c.asked
    {
        let (kept, new) = (keeps_host(&old.request.kind), keeps_host(&c.request.kind));
        // Alike, the entry that names the directory itself stays; the other one's spelling
        // is a link to it (`/lib64 -> lib` beside `/lib`).
        let named = |c: &Claim| c.asked == c.request.dst;
        if kept > new || (kept == new && named(old) && !named(&c)) {
            return;
        }
    }
    let mut c = c;
    c.replaced = by_dst.contains_key(&c.request.dst);
    by_dst.insert(c.request.dst.clone(), c);
}

impl Builder {
    /// Places the symlink from a spelling of a source to where it is mounted, when that
    /// spelling lies in sbx's own tmpfs and nothing is there yet; otherwise leaves it (inside
    /// a bind the host's own symlink is there, and an explicit mount there decides).
    pub(super) fn alias(&mut self, r: &Request, target: &str, as_host: bool) {
        if self.nodes.contains_key(&r.dst) || !matches!(self.parents(r), Ok(None)) {
            tracing::debug!("no link from {} to {target}: not in sbx's tmpfs", r.dst);
            return;
        }
        let op = Op::Symlink {
            target: std::ffi::CString::new(target).expect("paths were checked for NUL"),
            path: cstr(NEW_ROOT, Path::new(&r.dst)),
        };
        let what = if as_host {
            "symlink"
        } else {
            "symlink to the resolved source"
        };
        self.push(op, what, r, None);
        self.nodes.insert(r.dst.clone(), Node::Leaf("symlink"));
    }
}
