//! Resource limits: the profile's values become numbers and mechanisms here. rlimits are
//! applied by the sandbox's first process before init forks the command; the wall clock is
//! the supervisor's; a cgroup, when delegated, adds whole-sandbox budgets.

use std::time::Duration;

use nix::sys::resource::Resource;

use super::error::PlanError;
use crate::profile::{Count, Enforcement, Limits, Size, Span};

/// The fraction of the caller's per-user kernel limits a sandbox takes by default.
pub const DEFAULT_HOST_SHARE: f64 = 0.5;

/// The grace period between SIGTERM and SIGKILL when the wall-clock limit fires.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    pub name: &'static str,
    pub resource: Resource,
    pub value: u64,
}

/// What the cgroup would enforce, if one is available.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupWants {
    pub memory_max: Option<u64>,
    pub pids_max: Option<u64>,
    /// (quota, period) in microseconds.
    pub cpu_max: Option<(u64, u64)>,
}

impl CgroupWants {
    pub fn is_empty(&self) -> bool {
        *self == CgroupWants::default()
    }
}

impl From<CgroupWants> for crate::cgroup::Limits {
    fn from(w: CgroupWants) -> Self {
        crate::cgroup::Limits {
            memory_max: w.memory_max,
            pids_max: w.pids_max,
            cpu_max: w.cpu_max,
        }
    }
}

/// One of the sandbox's user-namespace limits (`/proc/sys/user/max_*`), written by its first
/// process while it still holds its capabilities there. The kernel counts these per user
/// across user namespaces, so the sandbox's own limit caps what it can take from the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsernsLimit {
    /// The sysctl's name, e.g. `max_inotify_instances`.
    pub name: &'static str,
    pub path: std::ffi::CString,
    pub value: u64,
    /// The value as written.
    pub text: Vec<u8>,
}

/// The per-user counters shared with the host: the sandbox gets `share` of the caller's.
const SHARED: [&str; 4] = [
    "max_inotify_instances",
    "max_inotify_watches",
    "max_fanotify_groups",
    "max_fanotify_marks",
];

/// The namespace counters: with nesting, the sandbox gets `share` of the caller's.
const NAMESPACES: [&str; 8] = [
    "max_user_namespaces",
    "max_mnt_namespaces",
    "max_pid_namespaces",
    "max_net_namespaces",
    "max_ipc_namespaces",
    "max_uts_namespaces",
    "max_cgroup_namespaces",
    "max_time_namespaces",
];

/// The caller's value of a counter (read in sbx's own namespace); None where this kernel has
/// no such counter.
fn host_value(name: &str) -> Option<u64> {
    let mut buf = [0u8; 32];
    let n = std::fs::File::open(format!("/proc/sys/user/{name}"))
        .and_then(|mut f| std::io::Read::read(&mut f, &mut buf))
        .ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

/// The sandbox's user-namespace limits: `share` of the
/// caller's per-user counters. Without nesting, no user namespace at all, which is what keeps
/// every other kind from being created too: with its capabilities dropped, the command could
/// only make one inside a user namespace of its own. Each counter costs a few system calls at
/// every start, so the others are left alone then.
pub fn userns_limits(share: f64, nested: bool) -> Vec<UsernsLimit> {
    let part = |v: u64| ((v as f64) * share).floor() as u64;
    let shared = SHARED
        .iter()
        .filter_map(|name| Some((*name, part(host_value(name)?))));
    let namespaces: Vec<(&'static str, u64)> = match nested {
        true => NAMESPACES
            .iter()
            .filter_map(|name| Some((*name, part(host_value(name)?))))
            .collect(),
        false => std::path::Path::new("/proc/sys/user/max_user_namespaces")
            .exists()
            .then_some(("max_user_namespaces", 0))
            .into_iter()
            .collect(),
    };
    shared
        .chain(namespaces)
        .map(|(name, value)| UsernsLimit {
            name,
            path: std::ffi::CString::new(format!("/proc/sys/user/{name}")).expect("no NUL"),
            value,
            text: value.to_string().into_bytes(),
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct LimitsPlan {
    pub rlimits: Vec<Rlimit>,
    pub wall_time: Option<Duration>,
    pub kill_grace: Duration,
    pub tmpfs_size: Option<u64>,
    pub cgroup_mode: Enforcement,
    pub cgroup: CgroupWants,
    /// The sandbox's own user-namespace limits (filled in once the namespaces are known).
    pub userns: Vec<UsernsLimit>,
    /// Left out where /proc/sys is read-only: with `proc = "host"` (the mode for a
    /// container's masked /proc, whose /proc/sys is read-only too) while seccomp denies
    /// creating namespaces, which the limits back up.
    pub userns_optional: bool,
    /// The fraction of the caller's per-user kernel limits the sandbox may take.
    pub host_share: f64,
    /// The limits a user set (not a built-in profile's defaults): what cannot be enforced of
    /// these as asked is a warning.
    pub explicit: Vec<&'static str>,
    /// A user's limits lowered to what the host allows: printed as warnings.
    pub warnings: Vec<String>,
    /// The built-in defaults lowered so: for -v and the run report only.
    pub degraded: Vec<String>,
}

/// The hard limit sbx itself runs under: an unprivileged process cannot raise it.
fn hard_limit(resource: Resource) -> u64 {
    nix::sys::resource::getrlimit(resource).map_or(libc::RLIM_INFINITY, |(_, hard)| hard)
}

/// The budget of the sandbox's tmpfs store when the profile sets none: a quarter of the
/// machine's RAM, at most 4 GiB (tmpfs pages are RAM, and the store holds /tmp, $HOME, ...).
pub fn default_tmpfs_size() -> u64 {
    const MAX: u64 = 4 << 30;
    match crate::sys::total_ram() / 4 {
        0 => MAX,
        quarter => quarter.min(MAX),
    }
}

pub fn build(l: &Limits) -> Result<LimitsPlan, PlanError> {
    l.check().map_err(|(key, m)| PlanError::merged(key, m))?;
    let size = |v: &Option<Size>| v.as_ref().and_then(Size::bytes);
    let span = |v: &Option<Span>| v.as_ref().and_then(Span::duration);
    let memory = size(&l.memory);
    let processes = l.processes.and_then(Count::value);
    let cpu_secs = span(&l.cpu_time).map(|d| d.as_secs().max(1));
    let cpu_max = l
        .cpus
        .map(|c| ((c * 100_000.0).round().max(1000.0) as u64, 100_000));

    let explicit: Vec<&'static str> = crate::profile::LIMIT_KEYS
        .into_iter()
        .filter(|k| l.explicit.contains(k))
        .collect();
    let (mut warnings, mut degraded) = (Vec::new(), Vec::new());
    let mut rlimits = Vec::new();
    for (name, resource, value) in [
        ("memory", Resource::RLIMIT_DATA, memory),
        ("processes", Resource::RLIMIT_NPROC, processes),
        (
            "open_files",
            Resource::RLIMIT_NOFILE,
            l.open_files.and_then(Count::value),
        ),
        ("file_size", Resource::RLIMIT_FSIZE, size(&l.file_size)),
        ("cpu_time", Resource::RLIMIT_CPU, cpu_secs),
        ("stack", Resource::RLIMIT_STACK, size(&l.stack)),
        ("core", Resource::RLIMIT_CORE, size(&l.core)),
    ] {
        let Some(mut value) = value else { continue };
        let hard = hard_limit(resource);
        if hard != libc::RLIM_INFINITY && value > hard {
            let note = format!(
                "limits.{name} = {value} is above the hard limit sbx runs under ({hard}); using {hard}"
            );
            match explicit.contains(&name) {
                true => warnings.push(note),
                false => degraded.push(format!("{note} (a built-in profile's default)")),
            }
            value = hard;
        }
        rlimits.push(Rlimit {
            name,
            resource,
            value,
        });
    }
    Ok(LimitsPlan {
        rlimits,
        wall_time: span(&l.wall_time),
        kill_grace: l
            .kill_grace
            .as_ref()
            .map_or(Some(DEFAULT_KILL_GRACE), Span::duration)
            .unwrap_or(DEFAULT_KILL_GRACE),
        tmpfs_size: match &l.tmpfs_size {
            Some(s) => s.bytes(),
            None => Some(default_tmpfs_size()),
        },
        cgroup_mode: l.cgroup.unwrap_or(Enforcement::BestEffort),
        cgroup: CgroupWants {
            memory_max: memory,
            pids_max: processes,
            cpu_max,
        },
        userns: Vec::new(),
        host_share: l.host_share.unwrap_or(DEFAULT_HOST_SHARE),
        explicit,
        userns_optional: false,
        warnings,
        degraded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(toml_text: &str) -> Result<Limits, String> {
        let p = crate::profile::Loader::parse("t.toml", &format!("[limits]\n{toml_text}\n"))
            .map_err(|e| e.to_string())?;
        Ok(p.limits)
    }

    #[test]
    fn bad_values_name_the_key() {
        // Values that do not parse are refused when the profile is read, at their position.
        for (text, key) in [
            ("memory = \"-1G\"", "memory"),
            ("memory = \"12 parsecs\"", "memory"),
            ("wall_time = \"soon\"", "wall_time"),
            ("tmpfs_size = \"1Q\"", "tmpfs_size"),
        ] {
            let e = limits(text).unwrap_err();
            assert!(e.starts_with("t.toml:2:") && e.contains(key), "{text}: {e}");
        }
        // Values that parse but cannot work are refused by the plan, naming the key.
        for (text, key) in [
            ("memory = \"0\"", "limits.memory"),
            ("processes = 0", "limits.processes"),
            ("wall_time = \"0s\"", "limits.wall_time"),
            ("cpus = -1.0", "limits.cpus"),
        ] {
            let e = build(&limits(text).unwrap()).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn rlimits_and_cgroup_wants() {
        let l =
            limits("memory = \"1G\"\nprocesses = 64\ncore = \"0\"\ncpus = 1.5\nwall_time = \"1s\"")
                .unwrap();
        let p = build(&l).unwrap();
        let get = |n: &str| p.rlimits.iter().find(|r| r.name == n).map(|r| r.value);
        assert_eq!(get("memory"), Some(1 << 30));
        assert_eq!(get("processes"), Some(64));
        assert_eq!(get("core"), Some(0));
        assert_eq!(p.cgroup.cpu_max, Some((150_000, 100_000)));
        assert_eq!(p.cgroup.memory_max, Some(1 << 30));
        assert_eq!(p.wall_time, Some(Duration::from_secs(1)));
        assert_eq!(p.kill_grace, DEFAULT_KILL_GRACE);
        assert_eq!(p.cgroup_mode, Enforcement::BestEffort);
    }

    #[test]
    fn a_limit_above_the_hard_limit_is_lowered_with_a_warning_if_the_user_set_it() {
        let hard = hard_limit(Resource::RLIMIT_NOFILE);
        if hard == libc::RLIM_INFINITY || hard == u64::MAX {
            eprintln!("NOTE: RLIMIT_NOFILE has no hard limit here; clamping not checked");
            return;
        }
        // A built-in profile's default: lowered, noted for -v and the report only.
        let default = Limits {
            open_files: Some(Count::Limit(hard + 1)),
            ..Default::default()
        };
        let p = build(&default).unwrap();
        assert_eq!(p.rlimits[0].value, hard);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(p.degraded.len(), 1, "{:?}", p.degraded);
        // The same value set by the user: one warning.
        let mut users = default.clone();
        users.mark_explicit();
        let p = build(&users).unwrap();
        assert_eq!(p.rlimits[0].value, hard);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(p.degraded.is_empty(), "{:?}", p.degraded);
        assert_eq!(p.explicit, ["open_files"]);
    }
}
