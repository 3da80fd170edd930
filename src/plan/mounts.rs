//! The mount list: profile entries become an ordered list of primitive operations on the new
//! root. The plan decides every directory that must be created and checks that each one lies
//! in a tmpfs that sbx itself mounted: sbx never creates anything on the host.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Component, Path, PathBuf};

use super::PlanError;
use crate::overlay::Layers;
use crate::profile::{BindSpec, DevMode, Filesystem, Origin, Overlay, OverlayMode, Sourced};

/// Where the host's root is while the new root is built (see `sandbox::rootfs`).
pub const OLD_ROOT: &str = "/oldroot";
/// Where the new root is while it is built.
pub const NEW_ROOT: &str = "/newroot";

/// Attributes applied to a bind mount, recursively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindFlags {
    pub readonly: bool,
    /// Device nodes keep working (only for sbx's own /dev entries).
    pub devices: bool,
}

/// One primitive step of building the root, with paths as the setup process sees them
/// (`/newroot/...` for the sandbox, `/oldroot/...` for the host).
#[derive(Clone, Debug)]
pub enum Op {
    Mkdir {
        path: CString,
        mode: u32,
    },
    /// An empty file to bind a file onto.
    Touch {
        path: CString,
    },
    Bind {
        src: CString,
        dst: CString,
        flags: BindFlags,
    },
    Tmpfs {
        dst: CString,
        data: CString,
        nodev: bool,
        noexec: bool,
    },
    Proc {
        dst: CString,
    },
    Devpts {
        dst: CString,
    },
    Symlink {
        target: CString,
        path: CString,
    },
    File {
        path: CString,
        content: Vec<u8>,
    },
    /// An overlayfs mount; `data` names its layers (and `userxattr`).
    Overlay {
        dst: CString,
        data: CString,
        readonly: bool,
    },
}

/// What an op means to the user: the sandbox path, the host path, and who asked for it.
#[derive(Clone, Debug)]
pub struct OpInfo {
    pub what: &'static str,
    pub sandbox_path: String,
    pub host_path: Option<String>,
    pub origin: Option<Origin>,
}

/// The sandbox's view of what it has already placed at a path.
#[derive(Clone, Debug)]
enum Node {
    /// A directory in a tmpfs that sbx mounted: children may be created.
    OwnDir,
    /// The root of a bind of this host directory: children must already exist on the host.
    HostDir(PathBuf),
    /// A bind of a host file, a symlink, a file or a special filesystem: nothing goes inside.
    Leaf(&'static str),
}

/// A request before ordering.
#[derive(Clone, Debug)]
struct Request {
    dst: String,
    kind: Kind,
    origin: Option<Origin>,
}

#[derive(Clone, Debug)]
enum Kind {
    Overlay {
        /// Host directories, highest first.
        lowers: Vec<PathBuf>,
        mode: OverlayMode,
    },
    Bind {
        src: PathBuf,
        is_dir: bool,
        flags: BindFlags,
    },
    Tmpfs {
        mode: u32,
        nodev: bool,
        noexec: bool,
    },
    Proc,
    Devpts,
    Dir,
    Symlink(String),
    File(String),
}

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

#[derive(Clone, Debug)]
pub struct GrantRule {
    /// The path inside the sandbox (after pivot_root).
    pub path: String,
    pub grant: Grant,
    pub is_dir: bool,
}

pub struct Layout {
    pub ops: Vec<Op>,
    /// The writable overlays' layers on the host.
    pub overlays: Vec<Layers>,
    /// Landlock grants for every mount sbx makes, parents first.
    pub grants: Vec<GrantRule>,
    pub info: Vec<OpInfo>,
    pub warnings: Vec<String>,
    /// Binds by sandbox destination: (destination, host source), for mapping the cwd.
    binds: Vec<(String, PathBuf)>,
    /// Every mount destination, for telling which mount covers a path.
    mount_points: Vec<String>,
}

impl Layout {
    /// The sandbox path at which the host directory `host` is visible, if it is.
    pub fn sandbox_path_of(&self, host: &str) -> Option<String> {
        let host = Path::new(host);
        let (dst, src) = self
            .binds
            .iter()
            .filter(|(_, src)| host.starts_with(src))
            .max_by_key(|(_, src)| src.components().count())?;
        let rest = host.strip_prefix(src).ok()?;
        let inside = if rest.as_os_str().is_empty() {
            dst.clone()
        } else {
            Path::new(dst).join(rest).to_string_lossy().into_owned()
        };
        // Another mount deeper than the bind but above the path would hide it.
        let covering = self
            .mount_points
            .iter()
            .filter(|m| is_within(&inside, m))
            .max_by_key(|m| m.len())?;
        (covering == dst).then_some(inside)
    }
}

fn is_within(path: &str, dir: &str) -> bool {
    dir == "/" || path == dir || path.starts_with(&format!("{dir}/"))
}

/// Checks that `path` is absolute and plain: no `.`, `..` or empty components.
fn clean_absolute(path: &str, origin: &Option<Origin>, what: &str) -> Result<String, PlanError> {
    let bad = |why: &str| {
        let message = format!("{what} {path:?} {why}");
        match origin {
            Some(o) => PlanError::invalid(o, message),
            None => PlanError::Other(message),
        }
    };
    if !path.starts_with('/') {
        return Err(bad("is not an absolute path"));
    }
    if path.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let mut out = String::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => {
                out.push('/');
                out.push_str(&n.to_string_lossy());
            }
            Component::CurDir | Component::ParentDir | Component::Prefix(_) => {
                return Err(bad("must not contain `.` or `..`"));
            }
        }
    }
    Ok(if out.is_empty() { "/".into() } else { out })
}

fn cstr(prefix: &str, path: &Path) -> CString {
    let mut bytes = prefix.as_bytes().to_vec();
    let s = path.as_os_str().as_encoded_bytes();
    if s != b"/" {
        bytes.extend_from_slice(s);
    }
    CString::new(bytes).expect("paths were checked for NUL")
}

fn depth(path: &str) -> usize {
    path.split('/').filter(|c| !c.is_empty()).count()
}

/// Reads the bind lists, resolving sources on the host.
fn bind_requests(fs: &Filesystem, warnings: &mut Vec<String>) -> Result<Vec<Request>, PlanError> {
    // Within one layer a destination in several lists resolves rw > ro > tmpfs: the entry
    // asking for host data wins over an empty tmpfs (e.g. `${CWD}` = `${HOME}`).
    let mut by_dst: BTreeMap<String, Request> = BTreeMap::new();
    for entry in &fs.tmpfs {
        let origin = Some(entry.origin.clone());
        if entry.value.contains(':') || entry.value.ends_with('?') {
            return Err(PlanError::invalid(
                &entry.origin,
                format!("{:?}: a tmpfs entry is just a path", entry.value),
            ));
        }
        let dst = clean_absolute(&entry.value, &origin, "tmpfs path")?;
        let sticky = matches!(dst.as_str(), "/tmp" | "/var/tmp" | "/dev/shm");
        let kind = Kind::Tmpfs {
            mode: if sticky { 0o1777 } else { 0o755 },
            nodev: true,
            noexec: false,
        };
        by_dst.insert(dst.clone(), Request { dst, kind, origin });
    }
    for (list, readonly) in [(&fs.ro, true), (&fs.rw, false)] {
        for entry in list {
            if let Some(r) = bind_request(entry, readonly, warnings)? {
                by_dst.insert(r.dst.clone(), r);
            }
        }
    }
    for o in &fs.overlay {
        if let Some(r) = overlay_request(o)? {
            by_dst.insert(r.dst.clone(), r);
        }
    }
    Ok(by_dst.into_values().collect())
}

/// overlayfs separates layers with `:` and options with `,`: paths holding them (or `\`)
/// cannot be named in its mount data.
fn overlay_safe(p: &Path) -> bool {
    !p.as_os_str()
        .as_encoded_bytes()
        .iter()
        .any(|b| matches!(b, b':' | b',' | b'\\' | b'\n'))
}

/// An overlay's request; None when its source is optional (`src = "…?"`) and missing.
fn overlay_request(o: &Overlay) -> Result<Option<Request>, PlanError> {
    let origin = Some(o.src.origin.clone());
    let (first, optional) = match o.src.value.strip_suffix('?') {
        Some(s) => (s, true),
        None => (o.src.value.as_str(), false),
    };
    if optional && std::fs::symlink_metadata(first).is_err() {
        return Ok(None);
    }
    let fail = |m: String| PlanError::invalid(&o.src.origin, m);
    let dst = clean_absolute(o.destination(), &origin, "overlay destination")?;
    if dst == "/" {
        return Err(fail("an overlay cannot replace the sandbox's root".into()));
    }
    let mut lowers = Vec::new();
    for src in std::iter::once(first).chain(o.lower.iter().map(String::as_str)) {
        let clean = clean_absolute(src, &origin, "overlay source")?;
        let canonical = std::fs::canonicalize(&clean).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PlanError::MissingSource {
                origin: o.src.origin.clone(),
                path: clean.clone(),
            },
            _ => fail(format!("overlay source {clean}: {e}")),
        })?;
        if !canonical.is_dir() {
            return Err(fail(format!("overlay source {clean} is not a directory")));
        }
        if !overlay_safe(&canonical) {
            return Err(fail(format!(
                "overlay source {} contains `:`, `,` or `\\`, which overlayfs cannot name",
                canonical.display()
            )));
        }
        lowers.push(canonical);
    }
    Ok(Some(Request {
        dst,
        kind: Kind::Overlay {
            lowers,
            mode: o.mode.unwrap_or(OverlayMode::Rw),
        },
        origin,
    }))
}

fn bind_request(
    entry: &Sourced,
    readonly: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<Request>, PlanError> {
    let spec = BindSpec::parse(&entry.value);
    let origin = Some(entry.origin.clone());
    let src = clean_absolute(spec.src, &origin, "bind source")?;
    let dst = clean_absolute(spec.dst, &origin, "bind destination")?;
    if dst == "/" {
        return Err(PlanError::invalid(
            &entry.origin,
            format!(
                "{:?} would bind over the sandbox's root and expose the whole host; \
                 run sbx from a project directory or give a destination",
                entry.value
            ),
        ));
    }
    let canonical = match std::fs::canonicalize(&src) {
        Ok(p) => p,
        Err(_) if spec.optional => {
            tracing::debug!("skipping optional bind {src}: missing");
            return Ok(None);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PlanError::MissingSource {
                origin: entry.origin.clone(),
                path: src,
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
    if canonical != Path::new(&src) {
        warnings.push(format!(
            "bind source {src} resolves to {}; binding that",
            canonical.display()
        ));
    }
    Ok(Some(Request {
        dst,
        kind: Kind::Bind {
            src: canonical,
            is_dir: meta.is_dir(),
            flags: BindFlags {
                readonly,
                devices: false,
            },
        },
        origin,
    }))
}

/// The minimal /dev: a tmpfs with the safe host nodes bound onto empty files, a private
/// devpts and shm. Device nodes cannot be created in a user namespace, hence the binds.
fn dev_requests() -> Vec<Request> {
    let mut out = vec![Request {
        dst: "/dev".into(),
        kind: Kind::Tmpfs {
            mode: 0o755,
            nodev: false,
            noexec: true,
        },
        origin: None,
    }];
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        out.push(Request {
            dst: format!("/dev/{node}"),
            kind: Kind::Bind {
                src: PathBuf::from(format!("/dev/{node}")),
                is_dir: false,
                flags: BindFlags {
                    readonly: false,
                    devices: true,
                },
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
            nodev: true,
            noexec: false,
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

/// Builds the ordered op list. `tmpfs_size` caps every tmpfs sbx mounts for the command;
/// writable overlays keep their layers under `overlay_root`.
pub fn build(
    fs: &Filesystem,
    pid_ns: bool,
    tmpfs_size: Option<u64>,
    overlay_root: Option<&Path>,
) -> Result<Layout, PlanError> {
    let mut warnings = Vec::new();
    let mut requests = bind_requests(fs, &mut warnings)?;
    let reserved = |dst: &str, origin: &Option<Origin>, owner: &str| -> Result<(), PlanError> {
        match requests.iter().find(|r| r.dst == dst) {
            Some(r) => Err(PlanError::Invalid {
                origin: r
                    .origin
                    .clone()
                    .or_else(|| origin.clone())
                    .unwrap_or_default(),
                message: format!(
                    "{dst} is managed by filesystem.{owner}; set {owner} off to mount your own"
                ),
            }),
            None => Ok(()),
        }
    };
    let proc_on = fs.proc.unwrap_or(true);
    if proc_on {
        reserved("/proc", &None, "proc")?;
    }
    let dev_on = fs.dev.unwrap_or(DevMode::Minimal) == DevMode::Minimal;
    if dev_on {
        reserved("/dev", &None, "dev")?;
    }
    if proc_on {
        // A fresh proc needs a PID namespace owned by our user namespace; without one the
        // host's /proc is bound instead (it then shows the host's processes).
        requests.push(Request {
            dst: "/proc".into(),
            kind: if pid_ns {
                Kind::Proc
            } else {
                Kind::Bind {
                    src: "/proc".into(),
                    is_dir: true,
                    flags: BindFlags {
                        readonly: false,
                        devices: false,
                    },
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
    for (path, target) in &fs.symlinks {
        let origin = Some(Origin {
            profile: "the merged profile".into(),
            key: "filesystem.symlinks",
        });
        if target.is_empty() || target.contains('\0') {
            return Err(PlanError::invalid(
                origin.as_ref().unwrap(),
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
        let origin = Some(Origin {
            profile: "the merged profile".into(),
            key: "filesystem.files",
        });
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
    let mut b = Builder {
        tmpfs_size,
        overlay_root: overlay_root.map(Path::to_path_buf),
        ..Default::default()
    };
    for r in requests {
        b.place(r)?;
    }
    Ok(Layout {
        overlays: b.layers,
        ops: b.ops,
        grants: b.grants,
        info: b.info,
        warnings,
        binds: b.binds,
        mount_points: b.mount_points,
    })
}

#[derive(Default)]
struct Builder {
    tmpfs_size: Option<u64>,
    /// Where writable overlays keep their layers on the host.
    overlay_root: Option<PathBuf>,
    layers: Vec<Layers>,

    nodes: BTreeMap<String, Node>,
    ops: Vec<Op>,
    grants: Vec<GrantRule>,
    info: Vec<OpInfo>,
    binds: Vec<(String, PathBuf)>,
    mount_points: Vec<String>,
}

impl Builder {
    fn push(&mut self, op: Op, what: &'static str, r: &Request, host: Option<&Path>) {
        self.ops.push(op);
        self.info.push(OpInfo {
            what,
            sandbox_path: r.dst.clone(),
            host_path: host.map(|h| h.display().to_string()),
            origin: r.origin.clone(),
        });
    }

    fn fail(r: &Request, message: String) -> PlanError {
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
    fn parents(&mut self, r: &Request) -> Result<Option<PathBuf>, PlanError> {
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
                    let path = cstr(super::mounts::NEW_ROOT, Path::new(&cur));
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

    fn place(&mut self, r: Request) -> Result<(), PlanError> {
        let host_here = self.parents(&r)?;
        let exists = self.nodes.contains_key(&r.dst);
        let dst = cstr(NEW_ROOT, Path::new(&r.dst));
        let is_mount = !matches!(r.kind, Kind::Dir | Kind::Symlink(_) | Kind::File(_));
        let wants_dir = match &r.kind {
            Kind::Bind { is_dir, .. } => *is_dir,
            Kind::Symlink(_) | Kind::File(_) => false,
            _ => true,
        };
        match (&host_here, is_mount) {
            (Some(h), true) => {
                // The mount point is inside a bind: it must already exist with the right type.
                let ok = std::fs::symlink_metadata(h)
                    .map(|m| !m.file_type().is_symlink() && m.is_dir() == wants_dir)
                    .unwrap_or(false);
                if !ok {
                    return Err(Self::fail(
                        &r,
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
                    &r,
                    format!(
                        "{} would be created on the host at {}; only paths in sbx's own tmpfs \
                         (not inside a bind) can be created",
                        r.dst,
                        h.display()
                    ),
                ));
            }
            (None, true) if !exists => {
                if wants_dir {
                    self.push(
                        Op::Mkdir {
                            path: dst.clone(),
                            mode: 0o755,
                        },
                        "create directory",
                        &r,
                        None,
                    );
                } else {
                    self.push(
                        Op::Touch { path: dst.clone() },
                        "create mount point",
                        &r,
                        None,
                    );
                }
            }
            (None, _) => {}
        }
        match r.kind.clone() {
            Kind::Bind { src, is_dir, flags } => {
                let op = Op::Bind {
                    src: cstr(OLD_ROOT, &src),
                    dst,
                    flags,
                };
                let what = if flags.readonly {
                    "read-only bind"
                } else {
                    "bind"
                };
                self.push(op, what, &r, Some(&src));
                let grant = match (flags.devices, flags.readonly, r.dst.as_str()) {
                    (true, _, _) => Grant::Device,
                    (_, _, "/proc") => Grant::Proc,
                    (_, true, _) => Grant::ReadExec,
                    (_, false, _) => Grant::Full,
                };
                self.grant(&r.dst, grant, is_dir);
                self.binds.push((r.dst.clone(), src.clone()));
                let node = if is_dir {
                    Node::HostDir(src)
                } else {
                    Node::Leaf("bound file")
                };
                self.mounted(&r.dst, node);
            }
            Kind::Tmpfs {
                mode,
                nodev,
                noexec,
            } => {
                let data = match self.tmpfs_size {
                    Some(size) => format!("mode={mode:o},size={size}"),
                    None => format!("mode={mode:o}"),
                };
                let data = CString::new(data).expect("no NUL");
                self.push(
                    Op::Tmpfs {
                        dst,
                        data,
                        nodev,
                        noexec,
                    },
                    "tmpfs",
                    &r,
                    None,
                );
                // Only sbx's /dev tmpfs keeps device nodes working; it is noexec.
                let grant = if nodev { Grant::Full } else { Grant::Device };
                self.grant(&r.dst, grant, true);
                self.mounted(&r.dst, Node::OwnDir);
            }
            Kind::Overlay { lowers, mode } => self.overlay(&r, dst, lowers, mode)?,
            Kind::Proc => {
                self.push(Op::Proc { dst }, "proc", &r, None);
                self.grant(&r.dst, Grant::Proc, true);
                self.mounted(&r.dst, Node::Leaf("proc mount"));
            }
            Kind::Devpts => {
                self.push(Op::Devpts { dst }, "devpts", &r, None);
                self.mounted(&r.dst, Node::Leaf("devpts mount"));
            }
            Kind::Dir => match self.nodes.get(&r.dst) {
                Some(Node::OwnDir) | Some(Node::HostDir(_)) => {}
                Some(Node::Leaf(what)) => {
                    return Err(Self::fail(&r, format!("{} is already a {what}", r.dst)));
                }
                None => {
                    self.push(
                        Op::Mkdir {
                            path: dst,
                            mode: 0o755,
                        },
                        "create directory",
                        &r,
                        None,
                    );
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
            Kind::File(content) => {
                if exists {
                    return Err(Self::fail(&r, format!("{} already exists", r.dst)));
                }
                self.push(
                    Op::File {
                        path: dst,
                        content: content.into_bytes(),
                    },
                    "file",
                    &r,
                    None,
                );
                self.nodes.insert(r.dst.clone(), Node::Leaf("file"));
            }
        }
        Ok(())
    }

    /// An overlay: the layers' mount data, plus the scratch tmpfs or empty directory that
    /// holds a temporary upper layer or stands in as the second lower layer.
    fn overlay(
        &mut self,
        r: &Request,
        dst: CString,
        lowers: Vec<PathBuf>,
        mode: OverlayMode,
    ) -> Result<(), PlanError> {
        let n = self.ops.len();
        let scratch = format!("/sbx-overlay-{n}");
        let scratch_c = CString::new(scratch.clone()).expect("no NUL");
        let lowerdir = lowers
            .iter()
            .map(|l| format!("{OLD_ROOT}{}", l.display()))
            .collect::<Vec<_>>()
            .join(":");
        let data = match mode {
            OverlayMode::Rw => {
                let Some(root) = self.overlay_root.clone() else {
                    return Err(Self::fail(
                        r,
                        "a writable overlay needs a directory for its upper layer".into(),
                    ));
                };
                if lowers
                    .iter()
                    .any(|l| root.starts_with(l) || l.starts_with(&root))
                {
                    return Err(Self::fail(
                        r,
                        format!(
                            "the upper layer's directory {} and the overlay source nest; set TMPDIR \
                             (or --keep-changes) outside the overlaid tree",
                            root.display()
                        ),
                    ));
                }
                if !overlay_safe(&root) {
                    return Err(Self::fail(
                        r,
                        format!(
                            "{} contains `:`, `,` or `\\`, which overlayfs cannot name",
                            root.display()
                        ),
                    ));
                }
                let base = root.join(self.layers.len().to_string());
                let layers = Layers {
                    destination: r.dst.clone(),
                    source: lowers[0].clone(),
                    upper: base.join("upper"),
                    work: base.join("work"),
                };
                let data = format!(
                    "lowerdir={lowerdir},upperdir={OLD_ROOT}{},workdir={OLD_ROOT}{},userxattr",
                    layers.upper.display(),
                    layers.work.display()
                );
                self.layers.push(layers);
                data
            }
            OverlayMode::Tmp => {
                self.push(
                    Op::Mkdir {
                        path: scratch_c.clone(),
                        mode: 0o700,
                    },
                    "create directory",
                    r,
                    None,
                );
                let size = self
                    .tmpfs_size
                    .map(|s| format!(",size={s}"))
                    .unwrap_or_default();
                let tmp_data = CString::new(format!("mode=0700{size}")).expect("no NUL");
                self.push(
                    Op::Tmpfs {
                        dst: scratch_c,
                        data: tmp_data,
                        nodev: true,
                        noexec: false,
                    },
                    "overlay scratch tmpfs",
                    r,
                    None,
                );
                for sub in ["upper", "work"] {
                    let path = CString::new(format!("{scratch}/{sub}")).expect("no NUL");
                    self.push(Op::Mkdir { path, mode: 0o755 }, "create directory", r, None);
                }
                format!(
                    "lowerdir={lowerdir},upperdir={scratch}/upper,workdir={scratch}/work,userxattr"
                )
            }
            OverlayMode::Ro if lowers.len() == 1 => {
                // overlayfs wants an upper layer or two lower ones: an empty one fills in.
                self.push(
                    Op::Mkdir {
                        path: scratch_c,
                        mode: 0o555,
                    },
                    "create directory",
                    r,
                    None,
                );
                format!("lowerdir={lowerdir}:{scratch},userxattr")
            }
            OverlayMode::Ro => format!("lowerdir={lowerdir},userxattr"),
        };
        let data = CString::new(data).expect("paths were checked for NUL");
        let readonly = mode == OverlayMode::Ro;
        let what = match mode {
            OverlayMode::Rw => "overlay",
            OverlayMode::Ro => "read-only overlay",
            OverlayMode::Tmp => "temporary overlay",
        };
        self.push(
            Op::Overlay {
                dst,
                data,
                readonly,
            },
            what,
            r,
            Some(&lowers[0]),
        );
        self.grant(
            &r.dst,
            if readonly {
                Grant::ReadExec
            } else {
                Grant::Full
            },
            true,
        );
        self.binds.push((r.dst.clone(), lowers[0].clone()));
        self.mounted(&r.dst, Node::HostDir(lowers[0].clone()));
        Ok(())
    }

    fn grant(&mut self, path: &str, grant: Grant, is_dir: bool) {
        self.grants.push(GrantRule {
            path: path.to_string(),
            grant,
            is_dir,
        });
    }

    fn mounted(&mut self, dst: &str, node: Node) {
        let inner = format!("{dst}/");
        self.nodes.retain(|p, _| !p.starts_with(&inner));
        self.nodes.insert(dst.to_string(), node);
        self.mount_points.push(dst.to_string());
    }
}

#[cfg(test)]
mod tests;
