//! The profile as written in TOML. Every section is optional so that profiles can be layered
//! with `extends`; [`merge`](fn@super::merge) folds layers and the plan turns the result into
//! decisions.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::proc_mode::ProcMode;
use super::units::{Size, Span};

/// Where a value came from, so that an error about it can name the profile and the key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub profile: String,
    pub key: &'static str,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A profile's name is its path, which may hold anything a file name can.
        let profile = crate::text::Escaped(self.profile.as_bytes());
        write!(f, "{profile} (key {})", self.key)
    }
}

/// A string from a profile, tagged with its origin. Serialises as the bare string; equality
/// ignores the origin so that a profile shown and loaded back compares equal.
#[derive(Clone, Debug, Default)]
pub struct Sourced {
    pub value: String,
    pub origin: Origin,
    /// A bind or overlay whose source was written `${CWD}`: the working directory bound as
    /// the workspace, which the plan leaves out at `/` and refuses at `$HOME` or `/tmp` (see
    /// `plan::workspace`). An explicit path (`--bind .`) is not one.
    pub workspace: bool,
}

impl Sourced {
    pub fn new(value: impl Into<String>, profile: impl Into<String>, key: &'static str) -> Self {
        Sourced {
            value: value.into(),
            origin: Origin {
                profile: profile.into(),
                key,
            },
            workspace: false,
        }
    }
}

impl PartialEq for Sourced {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Serialize for Sourced {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Sourced {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|value| Sourced {
            value,
            origin: Origin::default(),
            workspace: false,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extends: Vec<String>,
    #[serde(default)]
    pub namespaces: Namespaces,
    #[serde(default)]
    pub filesystem: Filesystem,
    #[serde(default)]
    pub env: Env,
    #[serde(default)]
    pub process: Process,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub security: Security,
    #[serde(default)]
    pub seccomp: Seccomp,
}

/// A count limit: a number, or `"unlimited"` to lift a limit an earlier layer set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    Limit(u64),
    Unlimited,
}

impl Count {
    pub fn value(self) -> Option<u64> {
        match self {
            Count::Limit(n) => Some(n),
            Count::Unlimited => None,
        }
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Count::Limit(n) => s.serialize_u64(*n),
            Count::Unlimited => s.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative whole number or \"unlimited\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(Count::Limit(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Count, E> {
                u64::try_from(v).map(Count::Limit).map_err(|_| {
                    E::custom(format!(
                        "{v} is negative; expected a count or \"unlimited\""
                    ))
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Count, E> {
                if v == "unlimited" {
                    Ok(Count::Unlimited)
                } else {
                    Err(E::custom(format!(
                        "{v:?}: expected a count or \"unlimited\""
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Resource limits. Sizes (`512M`, `2G`; binary units) and durations (`90s`, `10m`) are parsed
/// as the profile is read; `"unlimited"` lifts a limit an earlier layer set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock time before the command is sent SIGTERM (then killed after `kill_grace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time: Option<Span>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_grace: Option<Span>,
    /// Memory per process (RLIMIT_DATA) and for the whole sandbox (memory.max) with a cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// Processes and threads (RLIMIT_NPROC, counted per user namespace; pids.max).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Count>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<Count>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time: Option<Span>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core: Option<Size>,
    /// Size of every tmpfs sbx mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_size: Option<Size>,
    /// CPU bandwidth in cores (cpu.max; needs a cgroup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Whether a delegated cgroup v2 subtree is required, used when present, or not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Enforcement>,
    /// The fraction of the caller's per-user kernel limits (inotify instances and watches,
    /// fanotify groups and marks) the sandbox may take; the rest stays with the caller's other
    /// programs. 0.5 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_share: Option<f64>,
    /// The keys a user set: not part of the profile's text.
    #[serde(skip)]
    pub explicit: super::limit::ExplicitKeys,
}

impl Limits {
    /// Checks the values that parse but make no sense (a zero memory limit would make every
    /// run fail): the `[limits]` key at fault and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let nonzero_size = |key, v: &Option<Size>| match v.as_ref().and_then(Size::bytes) {
            Some(0) => Err((
                key,
                format!(
                    "{:?}: zero would make every run fail; use unlimited to lift the limit",
                    v.as_ref().map(ToString::to_string).unwrap_or_default()
                ),
            )),
            _ => Ok(()),
        };
        let nonzero_span = |key, v: &Option<Span>| match v.as_ref().and_then(Span::duration) {
            Some(d) if d.is_zero() => Err((
                key,
                format!(
                    "{:?}: a zero duration is meaningless here",
                    v.as_ref().map(ToString::to_string).unwrap_or_default()
                ),
            )),
            _ => Ok(()),
        };
        let nonzero_count = |key, v: Option<Count>| match v {
            Some(Count::Limit(0)) => Err((
                key,
                "0 would make every run fail; use \"unlimited\" to lift the limit".to_string(),
            )),
            _ => Ok(()),
        };
        nonzero_size("limits.memory", &self.memory)?;
        nonzero_size("limits.file_size", &self.file_size)?;
        nonzero_size("limits.stack", &self.stack)?;
        nonzero_size("limits.tmpfs_size", &self.tmpfs_size)?;
        nonzero_span("limits.wall_time", &self.wall_time)?;
        nonzero_span("limits.cpu_time", &self.cpu_time)?;
        nonzero_count("limits.processes", self.processes)?;
        nonzero_count("limits.open_files", self.open_files)?;
        match self.cpus {
            Some(c) if !(c.is_finite() && c > 0.0 && c <= 4096.0) => {
                return Err((
                    "limits.cpus",
                    format!("{c} is not a number of CPUs (e.g. 1.5)"),
                ));
            }
            _ => {}
        }
        match self.host_share {
            Some(f) if !(f.is_finite() && f > 0.0 && f <= 1.0) => Err((
                "limits.host_share",
                format!("{f} is not a fraction above 0 and at most 1 (e.g. 0.5)"),
            )),
            _ => Ok(()),
        }
    }
}

/// The user namespace is always created; these switch the others.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespaces {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uts: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DevMode {
    /// A tmpfs with null, zero, full, random, urandom, tty, a private devpts and shm.
    Minimal,
    /// No /dev at all.
    None,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    /// Read-only binds, `SRC[:DST]`, a trailing `?` for optional.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ro: Vec<Sourced>,
    /// Read-write binds, same syntax as `ro`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rw: Vec<Sourced>,
    /// Fresh tmpfs mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<Sourced>,
    /// Empty directories created in the sandbox's own tmpfs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<Sourced>,
    /// Paths inside every writable directory bind that host tools execute or trust (`.git`,
    /// `.envrc`, ...): read-only inside when they exist, and the run ends if the command creates
    /// one. Relative to each writable bind, or absolute (a sandbox path); `!PATH` lifts an entry
    /// an earlier layer made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protect: Vec<Sourced>,
    /// Host paths that hold credentials (`${HOME}/.netrc`, `${HOME}/.ssh`, ...): wherever a
    /// bind or overlay makes one visible, an empty read-only file or directory covers it.
    /// Absolute host paths; `!PATH` lifts an entry an earlier layer made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hide: Vec<Sourced>,
    /// Symlinks: path in the sandbox = target.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub symlinks: BTreeMap<String, String>,
    /// Small files: path in the sandbox = content.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<DevMode>,
    /// Where /proc comes from (see [`ProcMode`]); `host` also turns the PID namespace off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proc: Option<ProcMode>,
    /// Keep the writable overlays' upper layers in this directory (like --keep-changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<String>,
    /// Overlays (`[[filesystem.overlay]]`); kept last so that TOML output stays valid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlay: Vec<Overlay>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverlayMode {
    /// Writes land in a private upper layer, reported and optionally kept.
    Rw,
    /// The layers merged, read-only.
    Ro,
    /// Writes land in a tmpfs (size-limited by `tmpfs_size`) and vanish.
    Tmp,
}

/// A host directory seen through overlayfs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// The host directory (the top lower layer).
    pub src: Sourced,
    /// Where it appears in the sandbox (default: the same path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<OverlayMode>,
    /// More host directories merged below `src`, highest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lower: Vec<String>,
}

impl Overlay {
    /// Where it is asked to be mounted, as written: `dst`, else the source (without its
    /// optional mark `?`). The plan mounts a default destination where the source really is.
    pub fn destination(&self) -> String {
        super::spec::lexical(
            self.dst
                .as_deref()
                .unwrap_or_else(|| self.src.value.trim_end_matches('?')),
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Env {
    /// Host variables passed through; a trailing `*` matches a prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unset: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_session: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chdir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_root: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_pid_1: Option<bool>,
    /// Relay the terminal through a pseudo-terminal of the sandbox's own, so that an
    /// interactive shell keeps job control and Ctrl-C in its new session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pty: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NetMode {
    /// A private network namespace with only `lo`, up.
    None,
    /// The host's network, shared.
    Host,
    /// The internet, not the host: a private network namespace whose connections out are made
    /// by sbx, to public addresses only (and the exceptions in `allow`).
    On,
    /// A private network namespace whose only way out is sbx's proxy, to the hosts in `allow`;
    /// programs that ignore the proxy are held to the same list.
    Proxy,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<NetMode>,
    /// With `mode = "proxy"`: `HOST:PORT` entries the sandbox may reach (`*.domain`, port `*`).
    /// With `mode = "on"`: the internal addresses it may reach besides the internet
    /// (`10.0.0.5:5432`); with either, `127.0.0.1:PORT` maps that host port in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// With `mode = "proxy"`: the port of the proxy on the sandbox's 127.0.0.1 (default 3128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_port: Option<u16>,
    /// TCP ports the command may connect to (landlock, ABI >= 4); absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ports: Option<Vec<u16>>,
    /// TCP ports the command may bind (landlock, ABI >= 4); absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_ports: Option<Vec<u16>>,
}

/// How strictly a layer is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    /// The run fails (125) when the kernel cannot enforce it.
    Required,
    /// Applied as far as the kernel allows; what was not is reported.
    BestEffort,
    /// Not applied.
    Off,
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Enforcement::Required => "required",
            Enforcement::BestEffort => "best-effort",
            Enforcement::Off => "off",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeccompMode {
    /// sbx's deny list, adjusted by the `[seccomp]` section.
    Default,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeccompAction {
    /// Fail the call with EPERM.
    Errno,
    /// Kill the process.
    Kill,
    /// Allow the call but log it to the kernel's audit log (for writing profiles).
    Log,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock: Option<Enforcement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<SeccompMode>,
    /// Let the command create user namespaces of its own (relaxes the seccomp rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nested_userns: Option<bool>,
    /// Whether landlock must keep the host's abstract unix sockets out of reach when the
    /// sandbox shares the host's network (ABI 6, Linux 6.12); unset: as `landlock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_abstract_sockets: Option<Enforcement>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seccomp {
    /// Syscalls taken off the deny list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Syscalls denied in addition to the default list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<SeccompAction>,
}

impl Filesystem {
    /// The lists of path entries, with their keys: the one table that origin stamping and
    /// variable expansion both walk.
    pub fn path_lists_mut(&mut self) -> [(&mut Vec<Sourced>, &'static str); 6] {
        [
            (&mut self.ro, "filesystem.ro"),
            (&mut self.rw, "filesystem.rw"),
            (&mut self.tmpfs, "filesystem.tmpfs"),
            (&mut self.dirs, "filesystem.dirs"),
            (&mut self.protect, "filesystem.protect"),
            (&mut self.hide, "filesystem.hide"),
        ]
    }

    /// The protected paths in effect: the entries no later `!PATH` lifted.
    pub fn protected(&self) -> Vec<&Sourced> {
        in_effect(&self.protect)
    }

    /// The hidden paths in effect: the entries no later `!PATH` lifted.
    pub fn hidden(&self) -> Vec<&Sourced> {
        in_effect(&self.hide)
    }
}

/// The entries of a list that `!PATH` entries can lift which are in effect (after merging,
/// a lifted path is only there as its `!PATH`).
fn in_effect(list: &[Sourced]) -> Vec<&Sourced> {
    list.iter().filter(|e| !e.value.starts_with('!')).collect()
}

impl ProfileFile {
    /// Tags every path-like string with the profile it came from.
    pub fn stamp_origins(&mut self, profile: &str) {
        let fs = &mut self.filesystem;
        for (list, key) in fs.path_lists_mut() {
            for entry in list.iter_mut() {
                entry.origin = Origin {
                    profile: profile.to_string(),
                    key,
                };
            }
        }
        for o in fs.overlay.iter_mut() {
            o.src.origin = Origin {
                profile: profile.to_string(),
                key: "filesystem.overlay",
            };
        }
    }
}
