//! The resolved plan: everything the sandboxed processes need, computed before any fork, so
//! that the child only replays a list of system calls. Building a plan reads the host (bind
//! sources, the working directory) but changes nothing.

mod command;
pub mod landlock;
pub mod limits;
mod mounts;
pub mod seccomp;

use std::ffi::{CString, OsString};

pub use command::ExecPlan;
pub use mounts::{BindFlags, Op, OpInfo};

use crate::profile::{NetMode, Origin, ProfileFile, Vars};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{origin}: bind source {path} does not exist (append `?` to make it optional)")]
    MissingSource { origin: Origin, path: String },
    #[error("{origin}: {message}")]
    Invalid { origin: Origin, message: String },
    #[error("{0}")]
    Other(String),
}

impl PlanError {
    pub(crate) fn invalid(origin: &Origin, message: impl Into<String>) -> PlanError {
        PlanError::Invalid {
            origin: origin.clone(),
            message: message.into(),
        }
    }
}

/// Which namespaces the sandbox gets besides the user namespace, which it always gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceSet {
    pub pid: bool,
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    pub cgroup: bool,
}

impl NamespaceSet {
    /// The namespaces created, by their usual names (the user and mount ones always).
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = vec!["user", "mount"];
        for (on, name) in [
            (self.pid, "pid"),
            (self.net, "net"),
            (self.ipc, "ipc"),
            (self.uts, "uts"),
            (self.cgroup, "cgroup"),
        ] {
            if on {
                v.push(name);
            }
        }
        v
    }

    pub fn clone_flags(&self) -> libc::c_int {
        let mut f = libc::CLONE_NEWUSER | libc::CLONE_NEWNS;
        for (on, flag) in [
            (self.pid, libc::CLONE_NEWPID),
            (self.net, libc::CLONE_NEWNET),
            (self.ipc, libc::CLONE_NEWIPC),
            (self.uts, libc::CLONE_NEWUTS),
            (self.cgroup, libc::CLONE_NEWCGROUP),
        ] {
            if on {
                f |= flag;
            }
        }
        f
    }
}

/// Command-line settings that are not profile keys.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub command: Vec<OsString>,
    /// The kernel's landlock ABI (`sandbox::sys::landlock_abi()`), 0 when unavailable.
    pub landlock_abi: i32,
    /// Where writable overlays keep their upper layers (a private directory of the run, or
    /// the --keep-changes directory).
    pub overlay_root: Option<std::path::PathBuf>,
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
    pub new_session: bool,
    pub as_pid_1: bool,
    /// Relay the terminal through a pty (when sbx's stdin is a terminal).
    pub pty: bool,
    /// The sandbox reports setup milestones with timestamps (for -v).
    pub trace: bool,
    pub exec: ExecPlan,
    pub proxy: Option<ProxyPlan>,
    /// The writable overlays' layers, for the change report.
    pub overlays: Vec<crate::overlay::Layers>,
    pub landlock: Option<landlock::LandlockPlan>,
    pub seccomp: Option<seccomp::SeccompPlan>,
    pub limits: limits::LimitsPlan,

    /// Notes for the user (e.g. the working directory is not visible).
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn build(profile: &ProfileFile, vars: &Vars, opts: &RunOptions) -> Result<Plan, PlanError> {
        let cli = Origin {
            profile: "the merged profile".into(),
            key: "",
        };
        let ns = &profile.namespaces;
        let mode = profile.network.mode;
        let net_ns = match (ns.net, mode) {
            (Some(true), Some(NetMode::Host)) => {
                return Err(PlanError::invalid(
                    &Origin {
                        key: "network.mode",
                        ..cli
                    },
                    "mode = \"host\" conflicts with namespaces.net = true",
                ));
            }
            (Some(false), Some(NetMode::Proxy)) => {
                return Err(PlanError::invalid(
                    &Origin {
                        key: "network.mode",
                        ..cli
                    },
                    "mode = \"proxy\" needs namespaces.net = true",
                ));
            }
            (Some(false), Some(NetMode::None)) => {
                return Err(PlanError::invalid(
                    &Origin {
                        key: "network.mode",
                        ..cli
                    },
                    "mode = \"none\" needs namespaces.net = true",
                ));
            }
            (_, Some(NetMode::Host)) | (Some(false), _) => false,
            _ => true,
        };
        let namespaces = NamespaceSet {
            pid: ns.pid.unwrap_or(true),
            net: net_ns,
            ipc: ns.ipc.unwrap_or(true),
            uts: ns.uts.unwrap_or(true),
            cgroup: ns.cgroup.unwrap_or(true),
        };
        let map_root = profile.process.map_root.unwrap_or(false);
        let inside = |id: u32| if map_root { 0 } else { id };
        let euid = nix::unistd::geteuid().as_raw();
        let egid = nix::unistd::getegid().as_raw();
        let uid_map = format!("{} {} 1\n", inside(euid), euid).into_bytes();
        let gid_map = format!("{} {} 1\n", inside(egid), egid).into_bytes();

        let limits = limits::build(&profile.limits)?;
        let mut layout = mounts::build(
            &profile.filesystem,
            namespaces.pid,
            limits.tmpfs_size,
            opts.overlay_root.as_deref(),
        )?;
        let mut warnings = std::mem::take(&mut layout.warnings);
        warnings.extend(limits.warnings.iter().cloned());

        let hostname = match &profile.process.hostname {
            Some(h) if namespaces.uts && !h.is_empty() => {
                if h.len() > 64 || h.contains('\0') || h.contains('/') {
                    return Err(PlanError::invalid(
                        &Origin {
                            key: "process.hostname",
                            ..cli
                        },
                        format!("{h:?} is not a valid hostname (at most 64 bytes, no NUL or /)"),
                    ));
                }
                Some(CString::new(h.as_str()).expect("checked for NUL"))
            }
            _ => None,
        };

        let cwd = match &profile.process.chdir {
            Some(dir) => {
                if !dir.starts_with('/') {
                    return Err(PlanError::invalid(
                        &Origin {
                            key: "process.chdir",
                            ..cli
                        },
                        format!("{dir:?} is not an absolute path inside the sandbox"),
                    ));
                }
                dir.clone()
            }
            None => match layout.sandbox_path_of(&vars.cwd) {
                Some(p) => p,
                None => {
                    warnings.push(format!(
                        "the working directory {} is not visible in the sandbox; starting in /",
                        vars.cwd
                    ));
                    "/".to_string()
                }
            },
        };

        let proxy = ProxyPlan::build(&profile.network)?;
        let mut env = profile.env.clone();
        if let Some(p) = &proxy {
            env.set.extend(p.environment());
        }
        let exec = ExecPlan::build(&env, vars, &opts.command, &cwd)?;
        // Without a network namespace abstract unix sockets are shared with the host, and
        // without a PID namespace so are signal targets: landlock's scoping closes both.
        let shares = !namespaces.net || !namespaces.pid;
        let landlock = landlock::build(
            &profile.security,
            &profile.network,
            &layout.grants,
            shares,
            opts.landlock_abi,
        )?;
        if let Some(l) = &landlock {
            for d in &l.degraded {
                warnings.push(format!("landlock is best-effort here: not enforced: {d}"));
            }
        } else if profile.security.landlock == Some(crate::profile::Enforcement::BestEffort) {
            warnings.push("landlock is best-effort and this kernel has none: not applied".into());
        }
        let seccomp = seccomp::build(&profile.security, &profile.seccomp)?;
        Ok(Plan {
            namespaces,
            uid_map,
            gid_map,
            map_root,
            ops: layout.ops,
            op_info: layout.info,
            hostname,
            new_session: profile.process.new_session.unwrap_or(true),
            as_pid_1: profile.process.as_pid_1.unwrap_or(false),
            pty: profile.process.pty.unwrap_or(false),
            trace: tracing::enabled!(tracing::Level::INFO),
            overlays: std::mem::take(&mut layout.overlays),
            exec,
            proxy,
            landlock,
            seccomp,
            limits,
            warnings,
        })
    }
}

/// `network.mode = "proxy"`: where the proxy listens inside, and what it lets through.
#[derive(Clone, Debug)]
pub struct ProxyPlan {
    pub port: u16,
    pub allow: crate::proxy::Allowlist,
    /// The entries as written, for messages and the report.
    pub entries: Vec<String>,
}

impl ProxyPlan {
    pub const DEFAULT_PORT: u16 = 3128;

    fn build(n: &crate::profile::Network) -> Result<Option<ProxyPlan>, PlanError> {
        let origin = |key| Origin {
            profile: "the merged profile".into(),
            key,
        };
        if n.mode != Some(NetMode::Proxy) {
            if !n.allow.is_empty() {
                return Err(PlanError::invalid(
                    &origin("network.allow"),
                    "an allowlist needs network.mode = \"proxy\" (--net proxy)",
                ));
            }
            return Ok(None);
        }
        let rules = n
            .allow
            .iter()
            .map(|e| crate::proxy::Rule::parse(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| PlanError::invalid(&origin("network.allow"), m.to_string()))?;
        let port = n.proxy_port.unwrap_or(Self::DEFAULT_PORT);
        if port == 0 {
            return Err(PlanError::invalid(
                &origin("network.proxy_port"),
                "0 is not a port",
            ));
        }
        Ok(Some(ProxyPlan {
            port,
            allow: crate::proxy::Allowlist::new(rules),
            entries: n.allow.clone(),
        }))
    }

    /// The variables that point clients at the proxy (both spellings, as tools differ).
    pub fn environment(&self) -> Vec<(String, String)> {
        let http = format!("http://127.0.0.1:{}", self.port);
        let socks = format!("socks5h://127.0.0.1:{}", self.port);
        let mut v = Vec::new();
        for (k, val) in [
            ("HTTP_PROXY", &http),
            ("HTTPS_PROXY", &http),
            ("ALL_PROXY", &socks),
            ("NO_PROXY", &String::new()),
        ] {
            v.push((k.to_string(), val.clone()));
            v.push((k.to_lowercase(), val.clone()));
        }
        v
    }
}
