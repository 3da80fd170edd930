//! Placing requests in the new root: the `Builder` walks each destination's parents, creates
//! the missing ones in sbx's own tmpfs (never on the host), emits the ops, and records what
//! landlock grants beneath each mount.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use super::op::{MountAttrs, Op, OpInfo};
use super::path::cstr;
use super::request::{DEV_TMPFS, DEVPTS, DEVPTS_DATA, Kind, PROC, Request, TMPFS};
use super::{NEW_ROOT, OLD_ROOT};
use crate::overlay::Layers;
use crate::plan::error::PlanError;
use crate::profile::Origin;

/// What landlock grants beneath a mount (see `plan::landlock`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Read and execute: read-only binds.
    ReadExec,
    /// Everything: read-write binds and tmpfs mounts.
    Full,
    /// Read, write and device ioctls, no execute: /dev.
    Device,
    /// Read and write, no execute: /proc.
    Proc,
}

impl Grant {
    /// What a mount with these attributes grants: the attributes decide both.
    fn of(attrs: MountAttrs, dst: &str) -> Grant {
        if !attrs.contains(MountAttrs::NODEV) {
            Grant::Device
        } else if dst == "/proc" {
            Grant::Proc
        } else if attrs.contains(MountAttrs::RDONLY) {
            Grant::ReadExec
        } else {
            Grant::Full
        }
    }
}

#[derive(Clone, Debug)]
pub struct GrantRule {
    /// The path inside the sandbox (after pivot_root).
    pub path: String,
    pub grant: Grant,
    pub is_dir: bool,
}

/// The sandbox's view of what it has already placed at a path.
#[derive(Clone, Debug)]
pub(super) enum Node {
    /// A directory in a tmpfs that sbx mounted: children may be created.
    OwnDir,
    /// The root of a bind of this host directory: children must already exist on the host.
    HostDir(PathBuf),
    /// A bind of a host file, a symlink, a file or a special filesystem: nothing goes inside.
    Leaf(&'static str),
}

/// Where the store lives while the root is built: in the scratch tmpfs, outside the new root
/// (see `sandbox::rootfs`). Once the scratch is detached only the binds into it remain.
const STORE: &str = "/sbx-store";

#[derive(Default)]
pub(super) struct Builder {
    /// The budget of the store: every writable tmpfs of the sandbox together.
    pub(super) tmpfs_size: Option<u64>,
    /// Directories made in the store so far; None until the store is mounted.
    store: Option<usize>,
    /// The first place the store is bound in the sandbox, to measure it by.
    pub(super) store_seen_at: Option<String>,
    /// The protected paths placed as read-only binds.
    pub(super) protected: Vec<String>,
    /// The hidden paths covered by an empty stand-in.
    pub(super) hidden: Vec<String>,
    /// Where writable overlays keep their layers on the host.
    pub(super) overlay_root: Option<PathBuf>,
    pub(super) layers: Vec<Layers>,

    pub(super) nodes: BTreeMap<String, Node>,
    pub(super) ops: Vec<Op>,
    pub(super) grants: Vec<GrantRule>,
    pub(super) info: Vec<OpInfo>,
    pub(super) binds: Vec<(String, PathBuf)>,
    /// The destinations of overlays among `binds`.
    pub(super) overlaid: Vec<String>,
    pub(super) mount_points: Vec<String>,
    /// Mounts to make read-only once everything is placed.
    sealed: Vec<Request>,
}

impl Builder {
    pub(super) fn new(tmpfs_size: Option<u64>, overlay_root: Option<PathBuf>) -> Builder {
        Builder {
            tmpfs_size,
            overlay_root,
            ..Default::default()
        }
    }

    pub(super) fn push(&mut self, op: Op, what: &'static str, r: &Request, host: Option<&Path>) {
        self.ops.push(op);
        self.info.push(OpInfo {
            what,
            sandbox_path: r.dst.clone(),
            host_path: host.map(|h| h.display().to_string()),
            origin: r.origin.clone(),
        });
    }

    pub(super) fn fail(r: &Request, message: String) -> PlanError {
        PlanError::Invalid {
            origin: r.origin.clone().unwrap_or_else(|| Origin {
                profile: "sbx's built-in layout".into(),
                key: "filesystem",
            }),
            message,
        }
    }

    /// Makes sure every ancestor of `r.dst` exists, creating those in sbx's tmpfs. Returns
    /// the host path of `r.dst` when it falls inside a bind, or None inside sbx's tmpfs.
    pub(super) fn parents(&mut self, r: &Request) -> Result<Option<PathBuf>, PlanError> {
        let mut host: Option<PathBuf> = None;
        let mut cur = String::new();
        let comps: Vec<&str> = r.dst.split('/').filter(|c| !c.is_empty()).collect();
        for comp in &comps[..comps.len().saturating_sub(1)] {
            cur.push('/');
            cur.push_str(comp);
            match (self.nodes.get(&cur).cloned(), &host) {
                (Some(Node::OwnDir), _) => host = None,
                (Some(Node::HostDir(src)), _) => host = Some(src),
                (Some(Node::Leaf(what)), _) => {
                    return Err(Self::fail(
                        r,
                        format!("{} cannot be placed: {cur} is a {what}", r.dst),
                    ));
                }
                (None, None) => {
                    let path = cstr(NEW_ROOT, Path::new(&cur));
                    let sub = Request {
                        dst: cur.clone(),
                        ..r.clone()
                    };
                    self.push(
                        Op::Mkdir { path, mode: 0o755 },
                        "create directory",
                        &sub,
                        None,
                    );
                    self.nodes.insert(cur.clone(), Node::OwnDir);
                }
                (None, Some(base)) => {
                    let next = base.join(comp);
                    match std::fs::symlink_metadata(&next) {
                        Ok(m) if m.is_dir() => host = Some(next),
                        Ok(m) if m.file_type().is_symlink() => {
                            return Err(Self::fail(
                                r,
                                format!(
                                    "{} cannot be placed: {} is a symlink on the host, and sbx \
                                     does not follow symlinks when placing mounts",
                                    r.dst,
                                    next.display()
                                ),
                            ));
                        }
                        _ => {
                            return Err(Self::fail(
                                r,
                                format!(
                                    "{} cannot be placed: {} is not a directory on the host, \
                                     and sbx never creates paths on the host",
                                    r.dst,
                                    next.display()
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(host.map(|h| h.join(comps.last().copied().unwrap_or(""))))
    }

    /// Creates the mount point of `r` when it lies in sbx's tmpfs, or checks that it exists
    /// with the right type when it lies inside a bind.
    fn mount_point(&mut self, r: &Request, host_here: Option<&Path>) -> Result<(), PlanError> {
        let exists = self.nodes.contains_key(&r.dst);
        let is_mount = !matches!(r.kind, Kind::Dir | Kind::Symlink(_) | Kind::File(_));
        let wants_dir = match &r.kind {
            Kind::Bind { is_dir, .. } | Kind::Hide { is_dir } => *is_dir,
            Kind::Symlink(_) | Kind::File(_) => false,
            _ => true,
        };
        match (host_here, is_mount) {
            (Some(h), true) => {
                // The mount point is inside a bind: it must already exist with the right type.
                let ok = std::fs::symlink_metadata(h)
                    .map(|m| !m.file_type().is_symlink() && m.is_dir() == wants_dir)
                    .unwrap_or(false);
                if !ok {
                    return Err(Self::fail(
                        r,
                        format!(
                            "{} cannot be mounted: its mount point {} does not exist on the host \
                             as a {} (or is a symlink), and sbx never creates paths on the host",
                            r.dst,
                            h.display(),
                            if wants_dir { "directory" } else { "file" }
                        ),
                    ));
                }
            }
            (Some(h), false) => {
                return Err(Self::fail(
                    r,
                    format!(
                        "{} would be created on the host at {}; only paths in sbx's own tmpfs \
                         (not inside a bind) can be created",
                        r.dst,
                        h.display()
                    ),
                ));
            }
            (None, true) if !exists => {
                let path = cstr(NEW_ROOT, Path::new(&r.dst));
                if wants_dir {
                    let op = Op::Mkdir { path, mode: 0o755 };
                    self.push(op, "create directory", r, None);
                } else {
                    self.push(Op::Touch { path }, "create mount point", r, None);
                }
            }
            (None, _) => {}
        }
        Ok(())
    }

    pub(super) fn place(&mut self, r: Request) -> Result<(), PlanError> {
        if let Kind::Alias { target, as_host } = &r.kind {
            self.alias(&r, target, *as_host);
            return Ok(());
        }
        let host_here = self.parents(&r)?;
        self.mount_point(&r, host_here.as_deref())?;
        let exists = self.nodes.contains_key(&r.dst);
        let dst = cstr(NEW_ROOT, Path::new(&r.dst));
        match r.kind.clone() {
            Kind::Bind { src, is_dir, attrs } => {
                let op = Op::Bind {
                    src: cstr(OLD_ROOT, &src),
                    dst,
                    attrs,
                };
                let protect = r
                    .origin
                    .as_ref()
                    .is_some_and(|o| o.key == "filesystem.protect");
                let what = match (protect, attrs.contains(MountAttrs::RDONLY)) {
                    (true, _) => "protected read-only bind",
                    (false, true) => "read-only bind",
                    (false, false) => "bind",
                };
                if protect {
                    self.protected.push(r.dst.clone());
                }
                self.push(op, what, &r, Some(&src));
                self.grant(&r.dst, Grant::of(attrs, &r.dst), is_dir);
                self.binds.push((r.dst.clone(), src.clone()));
                let node = if is_dir {
                    Node::HostDir(src)
                } else {
                    Node::Leaf("bound file")
                };
                self.mounted(&r.dst, node);
            }
            Kind::Tmpfs { mode, attrs } if attrs == DEV_TMPFS => {
                // Only mount points and links go in; it is sealed read-only at the end.
                let data = CString::new(format!("mode={mode:o},size=64k")).expect("no NUL");
                self.push(Op::Tmpfs { dst, data, attrs }, "tmpfs", &r, None);
                self.grant(&r.dst, Grant::of(attrs, &r.dst), true);
                self.mounted(&r.dst, Node::OwnDir);
                self.sealed.push(r.clone());
            }
            Kind::Tmpfs { mode, attrs } => {
                // One budget for all the sandbox's writable storage: each tmpfs the profile
                // asks for is a directory of one store, bound into place.
                let src = self.store_dir(&r, mode);
                let op = Op::StoreBind { src, dst };
                let from = Path::new("the sandbox's tmpfs store");
                self.push(op, "tmpfs", &r, Some(from));
                self.store_seen_at.get_or_insert_with(|| r.dst.clone());
                self.grant(&r.dst, Grant::of(attrs, &r.dst), true);
                self.mounted(&r.dst, Node::OwnDir);
            }
            Kind::Overlay { lowers, mode } => self.overlay(&r, dst, lowers, mode)?,
            Kind::Hide { is_dir } => {
                self.hide(&r, dst, is_dir);
                let what = "path hidden by filesystem.hide (`!PATH` lifts it)";
                self.mounted(&r.dst, Node::Leaf(what));
            }
            Kind::Proc => {
                self.push(Op::Proc { dst, attrs: PROC }, "proc", &r, None);
                self.grant(&r.dst, Grant::Proc, true);
                self.mounted(&r.dst, Node::Leaf("proc mount"));
            }
            Kind::Devpts => {
                let op = Op::Devpts {
                    dst,
                    data: DEVPTS_DATA.to_owned(),
                    attrs: DEVPTS,
                };
                self.push(op, "devpts", &r, None);
                self.mounted(&r.dst, Node::Leaf("devpts mount"));
            }
            Kind::Dir => match self.nodes.get(&r.dst) {
                Some(Node::OwnDir) | Some(Node::HostDir(_)) => {}
                Some(Node::Leaf(what)) => {
                    return Err(Self::fail(&r, format!("{} is already a {what}", r.dst)));
                }
                None => {
                    let op = Op::Mkdir {
                        path: dst,
                        mode: 0o755,
                    };
                    self.push(op, "create directory", &r, None);
                    self.nodes.insert(r.dst.clone(), Node::OwnDir);
                }
            },
            Kind::Symlink(target) => {
                if exists {
                    return Err(Self::fail(&r, format!("{} already exists", r.dst)));
                }
                let target = CString::new(target).expect("checked for NUL");
                self.push(Op::Symlink { target, path: dst }, "symlink", &r, None);
                self.nodes.insert(r.dst.clone(), Node::Leaf("symlink"));
            }
            Kind::Alias { .. } => {}
            Kind::File(content) => {
                if exists {
                    return Err(Self::fail(&r, format!("{} already exists", r.dst)));
                }
                let op = Op::File {
                    path: dst,
                    content: content.into_bytes(),
                };
                self.push(op, "file", &r, None);
                self.nodes.insert(r.dst.clone(), Node::Leaf("file"));
            }
        }
        Ok(())
    }

    /// A new directory of the store with `mode`, mounting the store first if need be.
    pub(super) fn store_dir(&mut self, r: &Request, mode: u32) -> CString {
        let n = match self.store {
            Some(n) => n,
            None => {
                let path = CString::new(STORE).expect("no NUL");
                let size = self
                    .tmpfs_size
                    .map(|s| format!(",size={s}"))
                    .unwrap_or_default();
                let data = CString::new(format!("mode=0700{size}")).expect("no NUL");
                let store = Request {
                    dst: STORE.into(),
                    ..r.clone()
                };
                let mkdir = Op::Mkdir {
                    path: path.clone(),
                    mode: 0o700,
                };
                self.push(mkdir, "create directory", &store, None);
                let op = Op::Tmpfs {
                    dst: path,
                    data,
                    attrs: TMPFS,
                };
                self.push(op, "scratch tmpfs store", &store, None);
                0
            }
        };
        self.store = Some(n + 1);
        let path = CString::new(format!("{STORE}/{n}")).expect("no NUL");
        let mkdir = Op::Mkdir {
            path: path.clone(),
            mode,
        };
        let at = Request {
            dst: format!("{STORE}/{n}"),
            ..r.clone()
        };
        self.push(mkdir, "create directory", &at, None);
        path
    }

    /// Seals what must be read-only once populated (/dev), after every other op.
    pub(super) fn seal(&mut self) {
        for r in std::mem::take(&mut self.sealed) {
            let path = cstr(NEW_ROOT, Path::new(&r.dst));
            self.push(Op::Seal { path }, "read-only", &r, None);
        }
    }

    pub(super) fn grant(&mut self, path: &str, grant: Grant, is_dir: bool) {
        self.grants.push(GrantRule {
            path: path.to_string(),
            grant,
            is_dir,
        });
    }

    /// Records an overlay of host `src` at `dst`: whatever was placed beneath it is hidden now.
    pub(super) fn mounted_host_dir(&mut self, dst: &str, src: PathBuf) {
        self.binds.push((dst.to_string(), src.clone()));
        self.overlaid.push(dst.to_string());
        self.mounted(dst, Node::HostDir(src));
    }

    fn mounted(&mut self, dst: &str, node: Node) {
        let inner = format!("{dst}/");
        self.nodes.retain(|p, _| !p.starts_with(&inner));
        self.nodes.insert(dst.to_string(), node);
        self.mount_points.push(dst.to_string());
    }
}
