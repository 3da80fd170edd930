//! The run report: one JSON document written when the run ends (`--json-status`). Its schema
//! is documented in README.md; bump `SCHEMA` on any incompatible change.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::PathBuf;

use serde::Serialize;

use crate::plan::Plan;
use crate::supervisor::{Ending, LandlockOutcome, Outcome};

pub const SCHEMA: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Exited,
    Signaled,
    Timeout,
    Oom,
    SetupFailed,
    ExecFailed,
}

#[derive(Clone, Debug, Serialize)]
pub struct LandlockStatus {
    /// required | best-effort | off
    pub mode: String,
    /// The kernel's landlock ABI (0: none).
    pub abi: i32,
    /// full | partial | none | not_applied
    pub enforced: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct SeccompStatus {
    pub rules: usize,
    pub action: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct LimitStatus {
    pub name: String,
    /// Bytes, a count, or seconds; as a number.
    pub value: u64,
    /// rlimit | cgroup | supervisor | tmpfs
    pub via: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunStatus {
    pub schema: u32,
    pub sbx_version: &'static str,
    pub command: Vec<String>,
    pub profiles: Vec<String>,
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: Reason,
    pub setup_error: Option<String>,
    pub wall_time_s: f64,
    pub user_cpu_s: f64,
    pub system_cpu_s: f64,
    pub peak_memory_bytes: Option<u64>,
    /// rusage (largest process) | cgroup (whole sandbox)
    pub peak_memory_source: Option<String>,
    pub namespaces: Vec<&'static str>,
    pub landlock: LandlockStatus,
    pub seccomp: Option<SeccompStatus>,
    pub limits: Vec<LimitStatus>,
    pub cgroup: Option<String>,
    pub network: NetworkStatus,
    /// What the command changed under each writable overlay.
    pub changes: Vec<crate::overlay::ChangeSet>,
    pub degradations: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NetworkStatus {
    /// none | host | proxy
    pub mode: &'static str,
    /// With proxy: the allowlist and what the proxy let through or refused.
    pub allow: Vec<String>,
    pub proxy: Option<crate::proxy::ProxyStats>,
}

fn network(plan: &Plan, outcome: Option<&Outcome>) -> NetworkStatus {
    NetworkStatus {
        mode: match (&plan.proxy, plan.namespaces.net) {
            (Some(_), _) => "proxy",
            (None, true) => "none",
            (None, false) => "host",
        },
        allow: plan
            .proxy
            .as_ref()
            .map(|p| p.entries.clone())
            .unwrap_or_default(),
        proxy: outcome.and_then(|o| o.proxy.clone()),
    }
}

/// Where the report goes: `-` for stderr, digits for an inherited fd, else a file path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Stderr,
    Fd(i32),
    File(PathBuf),
}

impl Destination {
    pub fn parse(s: &str) -> Destination {
        if s == "-" {
            Destination::Stderr
        } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse()
                .map(Destination::Fd)
                .unwrap_or(Destination::File(s.into()))
        } else {
            Destination::File(s.into())
        }
    }

    pub fn write(&self, status: &RunStatus) -> std::io::Result<()> {
        self.write_json(status)
    }

    /// Writes any value as pretty JSON followed by a newline.
    pub fn write_json<T: Serialize>(&self, value: &T) -> std::io::Result<()> {
        let mut text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
        text.push(b'\n');
        match self {
            Destination::Stderr => std::io::stderr().lock().write_all(&text),
            Destination::Fd(fd) => {
                // SAFETY: the caller handed this fd to sbx for the report; ManuallyDrop keeps it
                // open for whoever else holds it.
                let f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(*fd) });
                (&*f).write_all(&text)
            }
            Destination::File(p) => std::fs::write(p, &text),
        }
    }
}

fn landlock(plan: &Plan, outcome: Option<&Outcome>, abi: i32) -> LandlockStatus {
    let enforced = match (&plan.landlock, outcome.and_then(|o| o.landlock)) {
        (None, _) => "not_applied",
        (Some(_), Some(LandlockOutcome::Full)) => "full",
        (Some(_), Some(LandlockOutcome::Partial)) => "partial",
        (Some(_), Some(LandlockOutcome::None)) => "none",
        (Some(_), None) => "not_applied",
    };
    LandlockStatus {
        mode: match &plan.landlock {
            Some(l) => format!("{:?}", l.mode)
                .to_lowercase()
                .replace("besteffort", "best-effort"),
            None => "off".into(),
        },
        abi,
        enforced: enforced.into(),
    }
}

fn limits(plan: &Plan, cgroup_used: bool) -> Vec<LimitStatus> {
    let mut out: Vec<LimitStatus> = plan
        .limits
        .rlimits
        .iter()
        .map(|r| LimitStatus {
            name: r.name.into(),
            value: r.value,
            via: "rlimit".into(),
        })
        .collect();
    if let Some(w) = plan.limits.wall_time {
        out.push(LimitStatus {
            name: "wall_time".into(),
            value: w.as_secs(),
            via: "supervisor".into(),
        });
    }
    if let Some(t) = plan.limits.tmpfs_size {
        out.push(LimitStatus {
            name: "tmpfs_size".into(),
            value: t,
            via: "tmpfs".into(),
        });
    }
    if cgroup_used {
        let c = plan.limits.cgroup;
        for (name, v) in [
            ("memory", c.memory_max),
            ("processes", c.pids_max),
            ("cpus", c.cpu_max.map(|(q, _)| q)),
        ] {
            if let Some(value) = v {
                out.push(LimitStatus {
                    name: name.into(),
                    value,
                    via: "cgroup".into(),
                });
            }
        }
    }
    out
}

/// Everything known about a run that never started (a bad profile, a plan error).
pub fn before_run(command: &[String], profiles: &[String], error: &str) -> RunStatus {
    RunStatus {
        schema: SCHEMA,
        sbx_version: env!("CARGO_PKG_VERSION"),
        command: command.to_vec(),
        profiles: profiles.to_vec(),
        exit_code: 125,
        signal: None,
        reason: Reason::SetupFailed,
        setup_error: Some(error.to_string()),
        wall_time_s: 0.0,
        user_cpu_s: 0.0,
        system_cpu_s: 0.0,
        peak_memory_bytes: None,
        peak_memory_source: None,
        namespaces: Vec::new(),
        landlock: LandlockStatus {
            mode: "unknown".into(),
            abi: 0,
            enforced: "not_applied".into(),
        },
        seccomp: None,
        limits: Vec::new(),
        cgroup: None,
        changes: Vec::new(),
        network: NetworkStatus {
            mode: "none",
            allow: Vec::new(),
            proxy: None,
        },
        degradations: Vec::new(),
    }
}

/// Facts the supervisor gathers besides the outcome.
pub struct Context<'a> {
    pub command: &'a [String],
    pub profiles: &'a [String],
    pub landlock_abi: i32,
    pub exit_code: i32,
    pub reason: Reason,
    pub error: Option<String>,
    pub cgroup: Option<String>,
    pub changes: Vec<crate::overlay::ChangeSet>,
    pub cgroup_peak: Option<u64>,
    pub degradations: Vec<String>,
}

pub fn after_run(plan: &Plan, outcome: &Outcome, ctx: Context<'_>) -> RunStatus {
    let signal = match (ctx.reason, outcome.payload.unwrap_or(outcome.ending)) {
        (Reason::Signaled | Reason::Timeout | Reason::Oom, Ending::Signaled(n)) => Some(n),
        _ => None,
    };
    let (peak, source) = match ctx.cgroup_peak {
        Some(p) => (Some(p), Some("cgroup".to_string())),
        None => (Some(outcome.usage.max_rss), Some("rusage".to_string())),
    };
    RunStatus {
        schema: SCHEMA,
        sbx_version: env!("CARGO_PKG_VERSION"),
        command: ctx.command.to_vec(),
        profiles: ctx.profiles.to_vec(),
        exit_code: ctx.exit_code,
        signal,
        reason: ctx.reason,
        setup_error: ctx.error,
        wall_time_s: outcome.wall_time.as_secs_f64(),
        user_cpu_s: outcome.usage.user.as_secs_f64(),
        system_cpu_s: outcome.usage.system.as_secs_f64(),
        peak_memory_bytes: peak,
        peak_memory_source: source,
        namespaces: plan.namespaces.names(),
        landlock: landlock(plan, Some(outcome), ctx.landlock_abi),
        seccomp: plan.seccomp.as_ref().map(|s| SeccompStatus {
            rules: s.denied.len(),
            action: format!("{:?}", s.action).to_lowercase(),
        }),
        limits: limits(plan, ctx.cgroup.is_some()),
        cgroup: ctx.cgroup,
        changes: ctx.changes,
        network: network(plan, Some(outcome)),
        degradations: ctx.degradations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(Destination::parse("-"), Destination::Stderr);
        assert_eq!(Destination::parse("3"), Destination::Fd(3));
        assert_eq!(Destination::parse("./3"), Destination::File("./3".into()));
        assert_eq!(
            Destination::parse("/tmp/r.json"),
            Destination::File("/tmp/r.json".into())
        );
    }

    #[test]
    fn setup_failure_report_serializes() {
        let s = before_run(&["true".into()], &["default".into()], "bad profile");
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["reason"], "setup_failed");
        assert_eq!(v["exit_code"], 125);
        assert_eq!(v["setup_error"], "bad profile");
    }
}
