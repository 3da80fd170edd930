//! Profile entries become mount requests: what goes where, with which attributes, before they
//! are ordered and placed (see `tree`). Bind sources are resolved on the host here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::op::MountAttrs;
use super::overlaid;
use super::path::{clean_absolute, depth};
use super::source::{self, Claim};
use crate::plan::error::PlanError;
use crate::profile::{
    BindSpec, DevMode, Filesystem, Origin, Overlay, OverlayMode, ProcMode, Sourced, lexical,
};

/// A mount, directory, link or file wanted at `dst`, before ordering.
#[derive(Clone, Debug)]
pub struct Request {
    pub dst: String,
    pub kind: Kind,
    pub origin: Option<Origin>,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Overlay {
        /// Host directories, highest first.
        lowers: Vec<PathBuf>,
        mode: OverlayMode,
    },
    Bind {
        src: PathBuf,
        is_dir: bool,
        attrs: MountAttrs,
    },
    Tmpfs {
        mode: u32,
        attrs: MountAttrs,
    },
    Proc,
    Devpts,
    Dir,
    Symlink(String),
    File(String),
    /// An empty read-only stand-in over a hidden path (see `hide`).
    Hide {
        is_dir: bool,
    },
    /// A symlink to where a source was mounted, from the spelling an entry used for it (see
    /// `source`); placed last, and only in sbx's own tmpfs. `as_host`: the link is all the
    /// entry needed, and reads as the host's own (`/bin -> usr/bin`).
    Alias {
        target: String,
        as_host: bool,
    },
}

/// A bind of host data: never setuid, never device nodes.
pub fn bind_attrs(readonly: bool) -> MountAttrs {
    let base = MountAttrs::NOSUID | MountAttrs::NODEV;
    if readonly {
        base | MountAttrs::RDONLY
    } else {
        base
    }
}

/// sbx's own /dev nodes: the only binds whose device nodes work.
const DEVICE_NODE: MountAttrs = MountAttrs::NOSUID;
/// Every tmpfs sbx mounts for the command, but /dev: the command's writable storage.
pub const TMPFS: MountAttrs = super::op::STORE_ATTRS;
/// /dev: device nodes (bound in), nothing executable, and read-only once populated.
pub const DEV_TMPFS: MountAttrs = MountAttrs::NOSUID.union(MountAttrs::NOEXEC);
pub const PROC: MountAttrs = MountAttrs::NOSUID
    .union(MountAttrs::NODEV)
    .union(MountAttrs::NOEXEC);
pub const DEVPTS: MountAttrs = MountAttrs::NOSUID.union(MountAttrs::NOEXEC);
/// A private devpts instance (`gid=5` is refused in a user namespace).
pub const DEVPTS_DATA: &std::ffi::CStr = c"newinstance,ptmxmode=0666,mode=0620";

/// Every request of the profile, parents before children, and the guards of protected paths
/// that are not there to cover.
pub fn requests(
    fs: &Filesystem,
    pid_ns: bool,
    warnings: &mut Vec<String>,
) -> Result<(Vec<Request>, Vec<super::protect::Guard>), PlanError> {
    let (mut requests, aliases) = bind_requests(fs, warnings)?;
    let protections = super::protect::protections(fs, &requests)?;
    requests.extend(protections.binds);
    let hidden = super::hide::hidings(fs, &requests)?;
    requests.extend(hidden);
    let reserved = |requests: &[Request], dst: &str, owner: &str| -> Result<(), PlanError> {
        match requests.iter().find(|r| r.dst == dst) {
            Some(r) => Err(PlanError::Invalid {
                origin: r.origin.clone().unwrap_or_default(),
                message: format!(
                    "{dst} is managed by filesystem.{owner}; set {owner} off to mount your own"
                ),
            }),
            None => Ok(()),
        }
    };
    let proc_on = fs.proc.unwrap_or(ProcMode::Fresh) != ProcMode::Off;
    if proc_on {
        reserved(&requests, "/proc", "proc")?;
    }
    let dev_on = fs.dev.unwrap_or(DevMode::Minimal) == DevMode::Minimal;
    if dev_on {
        reserved(&requests, "/dev", "dev")?;
    }
    if proc_on {
        // A fresh proc needs a PID namespace owned by our user namespace; without one (as with
        // proc = "host", which turns it off) the host's /proc is bound instead, recursively,
        // with whatever masks it has (it then shows the host's processes).
        requests.push(Request {
            dst: "/proc".into(),
            kind: if pid_ns {
                Kind::Proc
            } else {
                Kind::Bind {
                    src: "/proc".into(),
                    is_dir: true,
                    attrs: bind_attrs(false),
                }
            },
            origin: None,
        });
    }
    if dev_on {
        requests.extend(dev_requests());
    }
    for d in &fs.dirs {
        let origin = Some(d.origin.clone());
        requests.push(Request {
            dst: clean_absolute(&d.value, &origin, "directory")?,
            kind: Kind::Dir,
            origin,
        });
    }
    let merged = |key| {
        Some(Origin {
            profile: "the merged profile".into(),
            key,
        })
    };
    for (path, target) in &fs.symlinks {
        let origin = merged("filesystem.symlinks");
        if target.is_empty() || target.contains('\0') {
            return Err(PlanError::merged(
                "filesystem.symlinks",
                format!("symlink {path:?} has an empty or invalid target"),
            ));
        }
        requests.push(Request {
            dst: clean_absolute(path, &origin, "symlink")?,
            kind: Kind::Symlink(target.clone()),
            origin,
        });
    }
    for (path, content) in &fs.files {
        let origin = merged("filesystem.files");
        requests.push(Request {
            dst: clean_absolute(path, &origin, "file")?,
            kind: Kind::File(content.clone()),
            origin,
        });
    }
    // Parents before children; equal depths keep their order (binds, tmpfs, proc, dev,
    // dirs, symlinks, files).
    requests.sort_by_key(|r| depth(&r.dst));
    let mut dup = std::collections::HashSet::new();
    for r in &requests {
        if !dup.insert(r.dst.as_str()) && !matches!(r.kind, Kind::Dir) {
            return Err(PlanError::Invalid {
                origin: r.origin.clone().unwrap_or_default(),
                message: format!("{} is given twice (as a mount, symlink or file)", r.dst),
            });
        }
    }
    requests.extend(aliases);
    Ok((requests, protections.guards))
}

/// Reads the bind lists, resolving sources on the host: the requests, and the symlinks from
/// the spellings of sources to where they are mounted.
fn bind_requests(
    fs: &Filesystem,
    warnings: &mut Vec<String>,
) -> Result<(Vec<Request>, Vec<Request>), PlanError> {
    // Within one layer a destination in several lists resolves rw > ro > tmpfs: the entry
    // asking for host data wins over an empty tmpfs (e.g. `${CWD}` = `${HOME}`).
    let mut by_dst: BTreeMap<String, Claim> = BTreeMap::new();
    let mut aliases = Vec::new();
    for entry in &fs.tmpfs {
        let origin = Some(entry.origin.clone());
        if entry.value.contains(':') || entry.value.ends_with('?') {
            return Err(PlanError::invalid(
                &entry.origin,
                format!("{:?}: a tmpfs entry is just a path", entry.value),
            ));
        }
        let dst = clean_absolute(&entry.value, &origin, "tmpfs path")?;
        if dst == "/" {
            // The root is always a fresh tmpfs of sbx's (and stays read-only): this is
            // `${HOME}` of a caller whose home is / (a uid without passwd entry).
            tracing::debug!("tmpfs / skipped: the sandbox's root is a tmpfs already");
            continue;
        }
        let sticky = matches!(dst.as_str(), "/tmp" | "/var/tmp" | "/dev/shm");
        let kind = Kind::Tmpfs {
            mode: if sticky { 0o1777 } else { 0o755 },
            attrs: TMPFS,
        };
        let asked = dst.clone();
        let request = Request { dst, kind, origin };
        let note = None;
        source::claim(
            &mut by_dst,
            Claim {
                request,
                asked,
                note,
                replaced: false,
            },
        );
    }
    for (list, readonly) in [(&fs.ro, true), (&fs.rw, false)] {
        for entry in list {
            if let Some((c, alias)) = bind_request(entry, readonly)? {
                source::claim(&mut by_dst, c);
                aliases.extend(alias);
            }
        }
    }
    for o in &fs.overlay {
        if let Some((c, alias)) = overlay_request(o)? {
            source::claim(&mut by_dst, c);
            aliases.extend(alias);
        }
    }
    source::linked_only(&mut by_dst, &mut aliases);
    // Said of the entries that are mounted: not of an entry that another replaced, nor of a
    // link that was all an entry needed.
    warnings.extend(by_dst.values().filter_map(|c| c.note.clone()));
    let requests = by_dst.into_values().map(|c| c.request).collect();
    Ok((overlaid::cover(requests, warnings), aliases))
}

/// A resolved bind or overlay, and the symlink from the spelling it was given, if any.
type Resolved = Option<(Claim, Option<Request>)>;

/// An overlay's request; None when its source is optional (`src = "…?"`) and missing.
fn overlay_request(o: &Overlay) -> Result<Resolved, PlanError> {
    let origin = Some(o.src.origin.clone());
    let (first, optional) = match o.src.value.strip_suffix('?') {
        Some(s) => (s, true),
        None => (o.src.value.as_str(), false),
    };
    if optional && std::fs::symlink_metadata(first).is_err() {
        return Ok(None);
    }
    let fail = |m: String| PlanError::invalid(&o.src.origin, m);
    let asked = clean_absolute(&o.destination(), &origin, "overlay destination")?;
    let own_destination = o.destination() != lexical(first);
    let root = || fail("an overlay cannot replace the sandbox's root".into());
    if asked == "/" {
        return Err(root());
    }
    let top = clean_absolute(first, &origin, "overlay source")?;
    let mut lowers = Vec::new();
    for src in std::iter::once(first).chain(o.lower.iter().map(String::as_str)) {
        let clean = clean_absolute(src, &origin, "overlay source")?;
        let canonical = std::fs::canonicalize(&clean).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PlanError::MissingSource {
                origin: o.src.origin.clone(),
                what: "overlay source",
                path: clean.clone(),
                // Only the top layer of a profile's overlay can be optional.
                fixed: (src == first && !o.src.origin.key.starts_with("--"))
                    .then(|| format!("{first}?")),
            },
            _ => fail(format!("overlay source {clean}: {e}")),
        })?;
        if !canonical.is_dir() {
            return Err(fail(format!("overlay source {clean} is not a directory")));
        }
        if !super::path::overlay_safe(&canonical) {
            return Err(fail(format!(
                "overlay source {} contains `:`, `,` or `\\`, which overlayfs cannot name",
                canonical.display()
            )));
        }
        lowers.push(canonical);
    }
    let (dst, alias) = source::destination(&asked, own_destination, &lowers[0], &o.src.origin)?;
    if dst == "/" {
        return Err(root());
    }
    let note =
        (lowers[0] != Path::new(&top)).then(|| resolved("overlay source", &top, &lowers[0], &dst));
    let request = Request {
        dst,
        kind: Kind::Overlay {
            lowers,
            mode: o.mode.unwrap_or(OverlayMode::Rw),
        },
        origin,
    };
    Ok(Some((
        Claim {
            request,
            asked,
            note,
            replaced: false,
        },
        alias,
    )))
}

/// The note that a source was reached through a symlink, and where it is mounted.
fn resolved(what: &str, asked: &str, canonical: &Path, dst: &str) -> String {
    let at = if Path::new(dst) == canonical {
        String::new()
    } else {
        format!(" at {dst}")
    };
    // A plan warning: kept raw for the report, escaped where it is printed.
    format!(
        "{what} {asked} resolves to {}; mounting that{at}",
        canonical.display()
    )
}

fn bind_request(entry: &Sourced, readonly: bool) -> Result<Resolved, PlanError> {
    let spec = BindSpec::parse(&entry.value);
    let origin = Some(entry.origin.clone());
    let src = clean_absolute(spec.src, &origin, "bind source")?;
    let asked = clean_absolute(spec.dst, &origin, "bind destination")?;
    let own_destination = lexical(spec.dst) != lexical(spec.src);
    let root = || {
        PlanError::invalid(
            &entry.origin,
            format!(
                "{:?} would bind over the sandbox's root and expose the whole host; \
                 run sbx from a project directory or give a destination",
                entry.value
            ),
        )
    };
    if asked == "/" {
        return Err(root());
    }
    let canonical = match std::fs::canonicalize(&src) {
        Ok(p) => p,
        Err(_) if spec.optional => {
            tracing::debug!(
                "skipping optional bind {}: missing",
                crate::text::escape(&src)
            );
            return Ok(None);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let fixed = match spec.src.strip_suffix('?') {
                Some(meant) if own_destination => format!("{meant}:{}?", spec.dst),
                _ => format!("{}?", entry.value),
            };
            return Err(PlanError::MissingSource {
                origin: entry.origin.clone(),
                what: "bind source",
                path: src,
                fixed: Some(fixed),
            });
        }
        Err(e) => {
            return Err(PlanError::invalid(
                &entry.origin,
                format!("bind source {src}: {e}"),
            ));
        }
    };
    let meta = std::fs::metadata(&canonical)
        .map_err(|e| PlanError::invalid(&entry.origin, format!("bind source {src}: {e}")))?;
    let (dst, alias) = source::destination(&asked, own_destination, &canonical, &entry.origin)?;
    if dst == "/" {
        return Err(root());
    }
    let note =
        (canonical != Path::new(&src)).then(|| resolved("bind source", &src, &canonical, &dst));
    let request = Request {
        dst,
        kind: Kind::Bind {
            src: canonical,
            is_dir: meta.is_dir(),
            attrs: bind_attrs(readonly),
        },
        origin,
    };
    Ok(Some((
        Claim {
            request,
            asked,
            note,
            replaced: false,
        },
        alias,
    )))
}

/// The minimal /dev: a tmpfs with the safe host nodes bound onto empty files, a private
/// devpts and shm. Device nodes cannot be created in a user namespace, hence the binds.
fn dev_requests() -> Vec<Request> {
    let mut out = vec![Request {
        dst: "/dev".into(),
        kind: Kind::Tmpfs {
            mode: 0o755,
            attrs: DEV_TMPFS,
        },
        origin: None,
    }];
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        out.push(Request {
            dst: format!("/dev/{node}"),
            kind: Kind::Bind {
                src: PathBuf::from(format!("/dev/{node}")),
                is_dir: false,
                attrs: DEVICE_NODE,
            },
            origin: None,
        });
    }
    out.push(Request {
        dst: "/dev/pts".into(),
        kind: Kind::Devpts,
        origin: None,
    });
    out.push(Request {
        dst: "/dev/shm".into(),
        kind: Kind::Tmpfs {
            mode: 0o1777,
            attrs: TMPFS,
        },
        origin: None,
    });
    for (name, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        out.push(Request {
            dst: format!("/dev/{name}"),
            kind: Kind::Symlink(target.into()),
            origin: None,
        });
    }
    out
}
