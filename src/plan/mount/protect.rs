//! The paths inside writable binds that host tools run or trust later (`filesystem.protect`):
//! an existing one becomes a read-only bind over itself; one that does not exist (or is a
//! symlink, which no mount can cover) becomes a guard, a name watched for in its parent
//! directory (by the sandbox's init, see `sandbox::init`; the supervisor checks and moves aside
//! what appeared, see `supervisor::guard`), since nothing can be mounted where nothing is and
//! sbx never creates anything on the host.

use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::request::{Kind, Request, bind_attrs};
use crate::plan::error::PlanError;
use crate::profile::{Filesystem, Sourced};

/// The most guards a run can have (init watches them without allocating).
pub const MAX_GUARDS: usize = 64;

/// A protected name that is not there to cover: the run ends if it appears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guard {
    /// The host directory to watch: it exists and is a real directory.
    pub dir: PathBuf,
    /// The name in it that must not appear (or change, for a symlink).
    pub name: OsString,
    /// The protected path as the sandbox names it, for messages.
    pub shown: String,
    /// What is there now (a symlink), as (device, inode): replacing it counts too.
    pub existing: Option<(u64, u64)>,
    /// The directory as the sandbox sees it, where init watches.
    pub inside: CString,
    /// The guarded path as the sandbox sees it, which init checks when its watch overflowed.
    pub path_inside: CString,
}

/// The protected paths of a run, for the supervisor, `--explain` and the report.
#[derive(Clone, Debug, Default)]
pub struct ProtectPlan {
    /// The entries in effect, as the profiles wrote them (relative to each writable bind).
    pub entries: Vec<String>,
    /// Protected paths that exist, read-only in the sandbox (sandbox paths).
    pub read_only: Vec<String>,
    /// Protected paths that do not exist: the run ends if one appears.
    pub guards: Vec<Guard>,
}

impl ProtectPlan {
    /// The entries that apply inside the directory shown at `dst`, relative to it.
    pub fn relative_to(&self, dst: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| relative(e, dst))
            .map(|r| r.to_string_lossy().into_owned())
            .collect()
    }
}

/// What protecting the profile's paths takes: read-only binds and guards.
#[derive(Debug, Default)]
pub struct Protections {
    pub binds: Vec<Request>,
    pub guards: Vec<Guard>,
}

/// The relative path an entry names inside the writable bind at `dst`; None when it names a
/// path outside that bind.
fn relative(entry: &str, dst: &str) -> Option<PathBuf> {
    let rel = match entry.strip_prefix('/') {
        None => Path::new(entry).to_path_buf(),
        Some(_) => Path::new(entry)
            .strip_prefix(dst)
            .ok()
            .filter(|r| !r.as_os_str().is_empty())?
            .to_path_buf(),
    };
    rel.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(rel)
}

/// `core.hooksPath` of the repository whose worktree is `root`, when it lies inside it: the
/// hooks host git runs from there (husky's `.husky`, for one).
fn hooks_path(root: &Path) -> Option<String> {
    let config = std::fs::read_to_string(root.join(".git/config")).ok()?;
    let mut in_core = false;
    for line in config.lines().map(str::trim) {
        if line.starts_with('[') {
            in_core = line.eq_ignore_ascii_case("[core]");
        } else if in_core
            && let Some((k, v)) = line.split_once('=')
            && k.trim().eq_ignore_ascii_case("hookspath")
        {
            let v = v.trim().trim_matches('"');
            let rel = v.strip_prefix("./").unwrap_or(v);
            return (!rel.is_empty() && !rel.starts_with('/') && !rel.starts_with('~'))
                .then(|| rel.trim_end_matches('/').to_string());
        }
    }
    None
}

/// The protections for every writable directory bind among `requests`.
pub fn protections(fs: &Filesystem, requests: &[Request]) -> Result<Protections, PlanError> {
    let mut out = Protections::default();
    let entries = fs.protected();
    if entries.is_empty() {
        return Ok(out);
    }
    for r in requests {
        let Kind::Bind {
            src,
            is_dir: true,
            attrs,
        } = &r.kind
        else {
            continue;
        };
        if attrs.contains(super::op::MountAttrs::RDONLY) || r.dst == "/proc" {
            continue;
        }
        let hooks =
            hooks_path(src).map(|h| Sourced::new(h, "core.hooksPath", "filesystem.protect"));
        // `.git` is looked up once, not once per `.git/...` entry.
        let mut seen = Lookups::default();
        for entry in entries.iter().copied().chain(hooks.as_ref()) {
            let Some(rel) = relative(&entry.value, &r.dst) else {
                if entry.value.starts_with('/') {
                    continue;
                }
                return Err(PlanError::invalid(
                    &entry.origin,
                    format!(
                        "{:?}: a protected path is relative to each writable bind (no `.` or \
                         `..`), or an absolute path inside one",
                        entry.value
                    ),
                ));
            };
            protect(src, &r.dst, &rel, entry, requests, &mut seen, &mut out);
        }
    }
    // A path inside another protected, existing path is covered by that one's bind.
    let covered: Vec<String> = out.binds.iter().map(|b| format!("{}/", b.dst)).collect();
    out.binds
        .retain(|b| !covered.iter().any(|c| b.dst.starts_with(c.as_str())));
    out.guards
        .retain(|g| !covered.iter().any(|c| g.shown.starts_with(c.as_str())));
    out.binds.dedup_by(|a, b| a.dst == b.dst);
    out.guards.dedup();
    if out.guards.len() > MAX_GUARDS {
        return Err(PlanError::merged(
            "filesystem.protect",
            format!(
                "{} protected paths to watch across the writable binds; at most {MAX_GUARDS}",
                out.guards.len()
            ),
        ));
    }
    Ok(out)
}

/// What the host paths of one bind are (None: nothing there), looked up once each.
#[derive(Default)]
struct Lookups(HashMap<PathBuf, Option<std::fs::Metadata>>);

impl Lookups {
    fn get(&mut self, host: &Path) -> Option<std::fs::Metadata> {
        self.0
            .entry(host.to_path_buf())
            .or_insert_with(|| std::fs::symlink_metadata(host).ok())
            .clone()
    }
}

/// Protects `rel` inside the bind of host `src` at `dst`: walks down until the path ends (a
/// bind) or stops existing as a directory (a guard on that name).
fn protect(
    src: &Path,
    dst: &str,
    rel: &Path,
    entry: &Sourced,
    requests: &[Request],
    seen: &mut Lookups,
    out: &mut Protections,
) {
    let shown = |p: &Path| Path::new(dst).join(p).to_string_lossy().into_owned();
    let mut dir = src.to_path_buf();
    let mut sofar = PathBuf::new();
    let comps: Vec<_> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        let name = c.as_os_str();
        sofar.push(name);
        let host = dir.join(name);
        let meta = seen.get(&host);
        let last = i + 1 == comps.len();
        match meta {
            Some(m) if m.is_dir() && !last => dir = host,
            // The path itself, or a file where a directory is expected (a worktree's or a
            // submodule's `.git` file, which names the real one): read-only as it is.
            Some(m) if !m.file_type().is_symlink() && (last || !m.is_dir()) => {
                let dst = shown(&sofar);
                // The profile mounts something of its own there: that decides.
                if requests.iter().any(|r| r.dst == dst) {
                    return;
                }
                out.binds.push(Request {
                    dst,
                    kind: Kind::Bind {
                        src: host,
                        is_dir: m.is_dir(),
                        attrs: bind_attrs(true),
                    },
                    origin: Some(entry.origin.clone()),
                });
                return;
            }
            // Missing, or a symlink: nothing to cover, so its name in the last real directory
            // is watched.
            other => {
                let existing = other
                    .filter(|m| m.file_type().is_symlink())
                    .map(|m| (m.dev(), m.ino()));
                let parent = sofar.parent().unwrap_or(Path::new(""));
                let cstring = |s: String| CString::new(s).expect("paths were checked for NUL");
                out.guards.push(Guard {
                    dir,
                    name: name.to_os_string(),
                    shown: shown(&sofar),
                    existing,
                    inside: cstring(shown(parent)),
                    path_inside: cstring(shown(&sofar)),
                });
                return;
            }
        }
    }
}
