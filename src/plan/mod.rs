//! The resolved plan: everything the sandboxed processes need, computed before any fork, so
//! that the child only replays a list of system calls. Building a plan reads the host (bind
//! sources, the working directory) but changes nothing.
//!
//! [`Plan::build`] is the one place the profile is read; each sub-plan decides one aspect
//! (namespaces, network, limits, mounts, the command, landlock, seccomp), and everything after
//! the plan asks it rather than the profile.

mod error;
mod exec;
pub mod landlock;
pub mod limits;
mod mount;
mod namespaces;
mod network;
pub mod seccomp;
mod workspace;

use std::ffi::{CString, OsString};

pub use error::{PlanError, WorkspaceRisk};
pub use exec::{ExecPlan, PathReport, path_report};
pub use mount::{Guard, HidePlan, MAX_GUARDS, MountAttrs, Op, OpInfo, ProtectPlan, Seen, View};
pub use namespaces::NamespaceSet;
pub use network::{Egress, NetworkPlan, ProxyPlan, nameservers};

use crate::profile::{Enforcement, ProcMode, ProfileFile, Vars};

/// Settings of a run that are not profile keys.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub command: Vec<OsString>,
    /// The kernel's landlock ABI (`sys::landlock_abi()`), 0 when unavailable.
    pub landlock_abi: i32,
    /// Where writable overlays keep their upper layers (a private directory of the run, or
    /// the --keep-changes directory).
    pub overlay_root: Option<std::path::PathBuf>,
    /// Record the paths the command names (`sbx learn`, `--trace-denials`).
    pub observe: bool,
}

/// sbx's seccomp listener: the calls init hands to the supervisor before the command starts.
#[derive(Debug)]
pub struct Interception {
    pub program: seccompiler::BpfProgram,
    /// connect(2) and the sends that name an address, for sbx's egress.
    pub egress: bool,
    /// The calls that name a path, recorded (see `intercept`).
    pub files: bool,
}

#[derive(Debug)]
pub struct Plan {
    pub namespaces: NamespaceSet,
    /// Contents for `/proc/self/uid_map` and `gid_map`: one line each.
    pub uid_map: Vec<u8>,
    pub gid_map: Vec<u8>,
    pub map_root: bool,
    /// Filesystem operations in order, with paths as the setup process sees them.
    pub ops: Vec<Op>,
    /// What each op is, for messages; same index as `ops`.
    pub op_info: Vec<OpInfo>,
    pub hostname: Option<CString>,
    /// The hostname is left out where the environment refuses it (a trailing `?`): it is a
    /// label, and the UTS namespace stays private either way.
    pub hostname_optional: bool,
    pub new_session: bool,
    pub as_pid_1: bool,
    /// Relay the terminal through a pty (when sbx's stdin is a terminal): `Some(true)` always,
    /// `Some(false)` never, `None` (the profile says nothing) when the caller asks for it and
    /// the run is interactive (see `Supervision::pty_when_interactive`).
    pub pty: Option<bool>,
    /// The sandbox reports setup milestones with timestamps (for -v).
    pub trace: bool,
    pub exec: ExecPlan,
    pub network: NetworkPlan,
    /// The writable overlays' layers, for the change report.
    pub overlays: Vec<crate::overlay::Layers>,
    /// The paths inside writable binds that host tools run or trust (`filesystem.protect`).
    pub protect: ProtectPlan,
    /// The credentials covered by empty stand-ins (`filesystem.hide`).
    pub hide: HidePlan,
    /// A sandbox path where the sandbox's tmpfs store is bound: what the supervisor measures
    /// the store's usage by (see `supervisor::watchdog`).
    pub store: Option<CString>,
    /// `security.landlock`; `landlock` is None when it is off or this kernel has none.
    pub landlock_mode: Enforcement,
    pub landlock: Option<landlock::LandlockPlan>,
    pub seccomp: Option<seccomp::SeccompPlan>,
    /// sbx's seccomp listener, if anything goes through it.
    pub interception: Option<Interception>,
    pub limits: limits::LimitsPlan,

    /// The tree the sandbox starts with, for explaining failures from the host.
    pub view: View,
    /// Notes for the user (e.g. the working directory is not visible), printed as warnings.
    pub warnings: Vec<String>,
    /// What -v says about the run that is neither a warning nor a fallback (PATH entries the
    /// sandbox does not show).
    pub notes: Vec<String>,
    /// Fallbacks the user did not ask for, which the profile accepts (a layer this kernel
    /// lacks, a built-in limit lowered to the hard limit): named in -v and the run report only.
    pub degradations: Vec<String>,
}

impl Plan {
    pub fn build(profile: &ProfileFile, vars: &Vars, opts: &RunOptions) -> Result<Plan, PlanError> {
        let network = NetworkPlan::build(profile)?;
        let namespaces = NamespaceSet::build(
            &profile.namespaces,
            network.needs_namespace(),
            profile.filesystem.proc,
        );
        let map_root = profile.process.map_root.unwrap_or(false);
        let (uid_map, gid_map) = namespaces::id_maps(map_root);
        let mut limits = limits::build(&profile.limits)?;
        let nested = profile.security.nested_userns.unwrap_or(false);
        limits.userns = limits::userns_limits(limits.host_share, nested);
        let filesystem = workspace::apply(&profile.filesystem, vars)?;
        let mut layout = mount::build(
            &filesystem,
            namespaces.pid,
            limits.tmpfs_size,
            opts.overlay_root.as_deref(),
        )?;
        let mut warnings = std::mem::take(&mut layout.warnings);
        warnings.extend(limits.warnings.iter().cloned());
        let mut degradations = limits.degraded.clone();
        let (hostname, hostname_optional) = hostname(profile, namespaces.uts)?;
        let cwd = working_directory(profile, vars, &layout, &mut warnings)?;
        let mut env = profile.env.clone();
        if let Some(p) = network.proxy() {
            env.set.extend(p.environment());
        }
        let exec = ExecPlan::build(&env, vars, &opts.command, &cwd)?;
        let notes = path_notes(&exec, &layout.view, vars, &mut warnings);
        // Without a network namespace abstract unix sockets are shared with the host, and
        // without a PID namespace so are signal targets: landlock's scoping closes both.
        let shared = landlock::Shared {
            abstract_sockets: !namespaces.net,
            signals: !namespaces.pid,
        };
        let landlock = landlock::build(
            &profile.security,
            &profile.network,
            &layout.grants,
            shared,
            opts.landlock_abi,
        )?;
        degradations.extend(landlock.degraded);
        let seccomp = seccomp::build(&profile.security, &profile.seccomp)?;
        let egress = network.egress().is_some();
        let interception = (egress || opts.observe).then(|| Interception {
            program: seccomp::interception_program(egress, opts.observe),
            egress,
            files: opts.observe,
        });
        limits.userns_optional =
            profile.filesystem.proc == Some(ProcMode::Host) && seccomp.is_some() && !nested;
        let protect = ProtectPlan {
            entries: profile
                .filesystem
                .protected()
                .iter()
                .map(|e| e.value.clone())
                .collect(),
            read_only: std::mem::take(&mut layout.protected),
            guards: std::mem::take(&mut layout.guards),
        };
        for o in &mut layout.overlays {
            o.protected = protect.relative_to(&o.destination);
        }
        let hide = HidePlan {
            entries: (profile.filesystem.hidden().iter())
                .map(|e| e.value.clone())
                .collect(),
            hidden: std::mem::take(&mut layout.hidden),
        };
        Ok(Plan {
            namespaces,
            uid_map,
            gid_map,
            map_root,
            ops: layout.ops,
            op_info: layout.info,
            hostname,
            hostname_optional,
            new_session: profile.process.new_session.unwrap_or(true),
            as_pid_1: profile.process.as_pid_1.unwrap_or(false),
            pty: profile.process.pty,
            trace: tracing::enabled!(tracing::Level::INFO),
            overlays: std::mem::take(&mut layout.overlays),
            protect,
            hide,
            store: layout
                .store
                .take()
                .map(|s| CString::new(s).expect("paths were checked for NUL")),
            exec,
            network,
            landlock_mode: profile.security.landlock.unwrap_or(Enforcement::Required),
            landlock: landlock.plan,
            seccomp,
            interception,
            limits,
            view: std::mem::take(&mut layout.view),
            warnings,
            notes,
            degradations,
        })
    }

    /// The host directories the command can write through a bind (read-write binds of host
    /// data; sbx's own tmpfs and the overlays' upper layers are not host data it names).
    pub fn writable_host_dirs(&self) -> Vec<std::path::PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::Bind { src, attrs, .. } if !attrs.contains(MountAttrs::RDONLY) => {
                    let host = src.as_bytes().strip_prefix(mount::OLD_ROOT.as_bytes())?;
                    let host = if host.is_empty() {
                        b"/".as_slice()
                    } else {
                        host
                    };
                    Some(std::ffi::OsStr::from_bytes(host).into())
                }
                _ => None,
            })
            .collect()
    }
}

/// What the sandbox's PATH search finds differently from the host's. A profile that passes
/// the host's PATH (ci) promises the host's commands: a command found elsewhere inside is a
/// warning. Under a PATH of the profile's own (default) a difference is by design, named with
/// -v only; then nothing is read unless -v is on.
fn path_notes(
    exec: &ExecPlan,
    view: &View,
    vars: &Vars,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let host_path = vars.env.get("PATH").map(String::as_str);
    let shared = host_path == Some(exec.search_path.as_str());
    let verbose = tracing::enabled!(tracing::Level::INFO);
    if !shared && !verbose {
        return Vec::new();
    }
    let report = exec::path_report(exec, view, host_path);
    let mut notes = Vec::new();
    if verbose && !report.hidden.is_empty() {
        notes.push(format!(
            "PATH entries not visible in the sandbox (the command is not looked up there): {}",
            report.hidden.join(", ")
        ));
    }
    match report.differs {
        Some(d) if shared => warnings.push(d),
        Some(d) => notes.push(d),
        None => {}
    }
    notes
}

/// The hostname to set, when the sandbox has a UTS namespace of its own, and whether it is
/// optional (a trailing `?`: left out where the environment refuses sethostname).
fn hostname(profile: &ProfileFile, uts: bool) -> Result<(Option<CString>, bool), PlanError> {
    let Some(asked) = profile.process.hostname.as_deref() else {
        return Ok((None, false));
    };
    let (h, optional) = match asked.strip_suffix('?') {
        Some(h) => (h, true),
        None => (asked, false),
    };
    if !uts || h.is_empty() {
        return Ok((None, false));
    }
    if h.len() > 64 || h.contains('\0') || h.contains('/') || h.ends_with('?') {
        return Err(PlanError::merged(
            "process.hostname",
            format!(
                "{asked:?} is not a valid hostname (at most 64 bytes, no NUL or /; one \
                 trailing ? makes it optional)"
            ),
        ));
    }
    let name = CString::new(h).expect("checked for NUL");
    Ok((Some(name), optional))
}

/// Where the command starts: `process.chdir`, else the caller's directory as the sandbox sees
/// it, else `/` (with a warning unless the caller's directory is `/`).
fn working_directory(
    profile: &ProfileFile,
    vars: &Vars,
    layout: &mount::Layout,
    warnings: &mut Vec<String>,
) -> Result<String, PlanError> {
    if let Some(dir) = &profile.process.chdir {
        if !dir.starts_with('/') {
            return Err(PlanError::merged(
                "process.chdir",
                format!("{dir:?} is not an absolute path inside the sandbox"),
            ));
        }
        return Ok(dir.clone());
    }
    Ok(match layout.sandbox_path_of(&vars.cwd) {
        Some(p) => p,
        // Started from / (see `workspace`): the sandbox's own root is where it starts.
        None if vars.cwd == "/" => "/".to_string(),
        None => {
            warnings.push(format!(
                "the working directory {} is not visible in the sandbox; starting in /",
                vars.cwd
            ));
            "/".to_string()
        }
    })
}
