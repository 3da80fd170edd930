//! Resource limits: human-unit strings from the profile become numbers here, each error naming
//! its key. rlimits are applied by the sandbox's init before it forks the command; the wall
//! clock is the supervisor's; a cgroup, when delegated, adds whole-sandbox budgets.

use std::time::Duration;

use super::PlanError;
use crate::profile::{Count, Enforcement, Limits, Origin};

/// The grace period between SIGTERM and SIGKILL when the wall-clock limit fires.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

/// setrlimit's resource argument: glibc gives it a type of its own, musl an int.
#[cfg(target_env = "gnu")]
pub type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
pub type Resource = libc::c_int;

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

#[derive(Clone, Debug)]
pub struct LimitsPlan {
    pub rlimits: Vec<Rlimit>,
    pub wall_time: Option<Duration>,
    pub kill_grace: Duration,
    pub tmpfs_size: Option<u64>,
    pub cgroup_mode: Enforcement,
    pub cgroup: CgroupWants,
    /// Notes about limits lowered to what the host allows.
    pub warnings: Vec<String>,
}

fn origin(key: &'static str) -> Origin {
    Origin {
        profile: "the merged profile".into(),
        key,
    }
}

fn bad(key: &'static str, message: String) -> PlanError {
    PlanError::invalid(&origin(key), message)
}

/// Parses a size with binary units (`512M` = 512 MiB); `unlimited` gives None.
pub fn parse_size(key: &'static str, text: &str, zero_ok: bool) -> Result<Option<u64>, PlanError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    let v = parse_size::Config::new()
        .with_binary()
        .parse_size(t)
        .map_err(|e| {
            bad(
                key,
                format!("{text:?} is not a size ({e}); write e.g. 512M, 2G or unlimited"),
            )
        })?;
    if v == 0 && !zero_ok {
        return Err(bad(
            key,
            format!("{text:?}: zero would make every run fail; use unlimited to lift the limit"),
        ));
    }
    Ok(Some(v))
}

/// Parses a duration (`90s`, `10m`, `1h 30m`); `unlimited` gives None.
pub fn parse_duration(
    key: &'static str,
    text: &str,
    zero_ok: bool,
) -> Result<Option<Duration>, PlanError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    let d = humantime::parse_duration(t).map_err(|e| {
        bad(
            key,
            format!("{text:?} is not a duration ({e}); write e.g. 90s, 10m or 1h"),
        )
    })?;
    if d.is_zero() && !zero_ok {
        return Err(bad(
            key,
            format!("{text:?}: a zero duration is meaningless here"),
        ));
    }
    Ok(Some(d))
}

fn count(key: &'static str, v: Option<Count>) -> Result<Option<u64>, PlanError> {
    match v.and_then(Count::value) {
        Some(0) => Err(bad(
            key,
            "0 would make every run fail; use \"unlimited\" to lift the limit".into(),
        )),
        v => Ok(v),
    }
}

/// The hard limit sbx itself runs under: an unprivileged process cannot raise it.
fn hard_limit(resource: Resource) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid out pointer.
    if unsafe { libc::getrlimit(resource, &mut r) } == 0 {
        r.rlim_max
    } else {
        libc::RLIM_INFINITY
    }
}

/// Checks the limits of one layer (a profile file, the command line) so that an error names
/// where the bad value was written rather than the merged result.
pub fn check(l: &Limits, who: &str) -> Result<(), PlanError> {
    build(l).map(drop).map_err(|e| match e {
        PlanError::Invalid { origin, message } => PlanError::Invalid {
            origin: Origin {
                profile: who.to_string(),
                ..origin
            },
            message,
        },
        e => e,
    })
}

pub fn build(l: &Limits) -> Result<LimitsPlan, PlanError> {
    let memory = match &l.memory {
        Some(s) => parse_size("limits.memory", s, false)?,
        None => None,
    };
    let processes = count("limits.processes", l.processes)?;
    let open_files = count("limits.open_files", l.open_files)?;
    let size = |key, v: &Option<String>, zero_ok| match v {
        Some(s) => parse_size(key, s, zero_ok),
        None => Ok(None),
    };
    let file_size = size("limits.file_size", &l.file_size, false)?;
    let stack = size("limits.stack", &l.stack, false)?;
    let core = size("limits.core", &l.core, true)?;
    let tmpfs_size = size("limits.tmpfs_size", &l.tmpfs_size, false)?;
    let cpu_time = match &l.cpu_time {
        Some(s) => parse_duration("limits.cpu_time", s, false)?,
        None => None,
    };
    let wall_time = match &l.wall_time {
        Some(s) => parse_duration("limits.wall_time", s, false)?,
        None => None,
    };
    let kill_grace = match &l.kill_grace {
        Some(s) => parse_duration("limits.kill_grace", s, true)?.unwrap_or(DEFAULT_KILL_GRACE),
        None => DEFAULT_KILL_GRACE,
    };
    let cpu_max = match l.cpus {
        Some(c) if !(c.is_finite() && c > 0.0 && c <= 4096.0) => {
            return Err(bad(
                "limits.cpus",
                format!("{c} is not a number of CPUs (e.g. 1.5)"),
            ));
        }
        Some(c) => Some(((c * 100_000.0).round().max(1000.0) as u64, 100_000)),
        None => None,
    };

    let mut warnings = Vec::new();
    let mut rlimits = Vec::new();
    let cpu_secs = cpu_time.map(|d| d.as_secs().max(1));
    for (name, resource, value) in [
        ("memory", libc::RLIMIT_DATA, memory),
        ("processes", libc::RLIMIT_NPROC, processes),
        ("open_files", libc::RLIMIT_NOFILE, open_files),
        ("file_size", libc::RLIMIT_FSIZE, file_size),
        ("cpu_time", libc::RLIMIT_CPU, cpu_secs),
        ("stack", libc::RLIMIT_STACK, stack),
        ("core", libc::RLIMIT_CORE, core),
    ] {
        let Some(mut value) = value else { continue };
        let hard = hard_limit(resource);
        if hard != libc::RLIM_INFINITY && value > hard {
            warnings.push(format!(
                "limits.{name} = {value} is above the hard limit sbx runs under ({hard}); using {hard}"
            ));
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
        wall_time,
        kill_grace,
        tmpfs_size,
        cgroup_mode: l.cgroup.unwrap_or(Enforcement::BestEffort),
        cgroup: CgroupWants {
            memory_max: memory,
            pids_max: processes,
            cpu_max,
        },
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_use_human_units() {
        assert_eq!(parse_size("k", "512M", false).unwrap(), Some(512 << 20));
        assert_eq!(parse_size("k", "2G", false).unwrap(), Some(2 << 30));
        assert_eq!(parse_size("k", "unlimited", false).unwrap(), None);
        assert_eq!(parse_size("k", "0", true).unwrap(), Some(0));
        assert_eq!(
            parse_duration("k", "90s", false).unwrap(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration("k", "10m", false).unwrap(),
            Some(Duration::from_secs(600))
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        for (limits, key) in [
            (
                Limits {
                    memory: Some("-1G".into()),
                    ..Default::default()
                },
                "limits.memory",
            ),
            (
                Limits {
                    memory: Some("12 parsecs".into()),
                    ..Default::default()
                },
                "limits.memory",
            ),
            (
                Limits {
                    memory: Some("0".into()),
                    ..Default::default()
                },
                "limits.memory",
            ),
            (
                Limits {
                    processes: Some(Count::Limit(0)),
                    ..Default::default()
                },
                "limits.processes",
            ),
            (
                Limits {
                    wall_time: Some("soon".into()),
                    ..Default::default()
                },
                "limits.wall_time",
            ),
            (
                Limits {
                    wall_time: Some("0s".into()),
                    ..Default::default()
                },
                "limits.wall_time",
            ),
            (
                Limits {
                    tmpfs_size: Some("1Q".into()),
                    ..Default::default()
                },
                "limits.tmpfs_size",
            ),
            (
                Limits {
                    cpus: Some(-1.0),
                    ..Default::default()
                },
                "limits.cpus",
            ),
        ] {
            let e = build(&limits).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn rlimits_and_cgroup_wants() {
        let l = Limits {
            memory: Some("1G".into()),
            processes: Some(Count::Limit(64)),
            core: Some("0".into()),
            cpus: Some(1.5),
            wall_time: Some("1s".into()),
            ..Default::default()
        };
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
    fn limits_above_the_hard_limit_are_lowered_with_a_warning() {
        let hard = hard_limit(libc::RLIMIT_NOFILE);
        if hard == libc::RLIM_INFINITY || hard == u64::MAX {
            eprintln!("NOTE: RLIMIT_NOFILE has no hard limit here; clamping not checked");
            return;
        }
        let p = build(&Limits {
            open_files: Some(Count::Limit(hard + 1)),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.rlimits[0].value, hard);
        assert_eq!(p.warnings.len(), 1);
    }
}
