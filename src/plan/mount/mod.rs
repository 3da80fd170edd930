//! The mount list: profile entries become an ordered list of primitive operations on the new
//! root. The plan decides every directory that must be created, checks that each one lies in
//! a tmpfs that sbx itself mounted (sbx never creates anything on the host), and decides every
//! mount's attributes; the sandbox only replays the ops.
//!
//! `request` reads the profile into requests (`source` decides where a host directory is
//! mounted, `overlaid` keeps writable binds off what overlays show), `tree` places them in
//! order (with `overlay` for overlayfs mounts), `op` is the language the sandbox replays,
//! `path` the path rules.

mod hide;
mod op;
mod overlaid;
mod overlay;
mod path;
mod protect;
mod request;
mod source;
mod tree;
mod view;

use std::path::{Path, PathBuf};

pub use hide::HidePlan;
pub use op::{MountAttrs, Op, OpInfo};
pub use protect::{Guard, MAX_GUARDS, ProtectPlan};
pub use tree::{Grant, GrantRule};
pub use view::{Seen, View};

use super::error::PlanError;
use crate::overlay::Layers;
use crate::profile::Filesystem;
#[cfg(test)]
use crate::profile::{DevMode, Sourced};
use path::is_within;
use tree::Builder;

/// Where the host's root is while the new root is built (see `sandbox::rootfs`).
pub const OLD_ROOT: &str = "/oldroot";
/// Where the new root is while it is built.
pub const NEW_ROOT: &str = "/newroot";

pub struct Layout {
    pub ops: Vec<Op>,
    /// The writable overlays' layers on the host.
    pub overlays: Vec<Layers>,
    /// Landlock grants for every mount sbx makes, parents first.
    pub grants: Vec<GrantRule>,
    pub info: Vec<OpInfo>,
    pub warnings: Vec<String>,
    /// A sandbox path where the tmpfs store is bound, if there is a store.
    pub store: Option<String>,
    /// Protected paths that are not there to cover: names the supervisor watches for.
    pub guards: Vec<Guard>,
    /// Protected paths covered by a read-only bind, as the sandbox names them.
    pub protected: Vec<String>,
    /// Hidden paths covered by an empty stand-in, as the sandbox names them.
    pub hidden: Vec<String>,
    /// The tree the sandbox starts with, for questions asked from the host.
    pub view: View,
    /// Binds by sandbox destination: (destination, host source), for mapping the cwd.
    binds: Vec<(String, PathBuf)>,
    /// The destinations of overlays among `binds`.
    overlaid: Vec<String>,
    /// Every mount destination, for telling which mount covers a path.
    mount_points: Vec<String>,
}

impl Layout {
    /// The sandbox path at which the host directory `host` is visible, if it is: through an
    /// overlay first (where the command's writes are seen), else through the bind of the
    /// deepest source that shows it.
    pub fn sandbox_path_of(&self, host: &str) -> Option<String> {
        let host = Path::new(host);
        let mut shown: Vec<&(String, PathBuf)> = self
            .binds
            .iter()
            .filter(|(_, src)| host.starts_with(src))
            .collect();
        shown.sort_by_key(|(dst, src)| {
            let overlay = self.overlaid.contains(dst);
            std::cmp::Reverse((overlay, src.components().count()))
        });
        shown.into_iter().find_map(|(dst, src)| {
            let rest = host.strip_prefix(src).ok()?;
            let inside = if rest.as_os_str().is_empty() {
                dst.clone()
            } else {
                Path::new(dst).join(rest).to_string_lossy().into_owned()
            };
            // Another mount deeper than this one but above the path would hide it.
            let covering = self
                .mount_points
                .iter()
                .filter(|m| is_within(&inside, m))
                .max_by_key(|m| m.len())?;
            (covering == dst).then_some(inside)
        })
    }
}

/// Builds the ordered op list. `tmpfs_size` caps every tmpfs sbx mounts for the command;
/// writable overlays keep their layers under `overlay_root`.
pub fn build(
    fs: &Filesystem,
    pid_ns: bool,
    tmpfs_size: Option<u64>,
    overlay_root: Option<&Path>,
) -> Result<Layout, PlanError> {
    let mut warnings = Vec::new();
    let (requests, guards) = request::requests(fs, pid_ns, &mut warnings)?;
    let mut b = Builder::new(tmpfs_size, overlay_root.map(Path::to_path_buf));
    for r in requests {
        b.place(r)?;
    }
    b.seal();
    let view = View::new(&b.nodes, &b.binds, &b.ops);
    Ok(Layout {
        view,
        overlays: b.layers,
        ops: b.ops,
        grants: b.grants,
        info: b.info,
        warnings,
        store: b.store_seen_at,
        guards,
        protected: b.protected,
        hidden: b.hidden,
        binds: b.binds,
        overlaid: b.overlaid,
        mount_points: b.mount_points,
    })
}

#[cfg(test)]
mod tests;
