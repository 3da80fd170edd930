//! Filling the run report: from the plan and the supervisor's outcome after a run, or from
//! the error alone when the run never started.

use super::{
    HideStatus, LandlockStatus, LimitStatus, NetworkStatus, ProtectStatus, ProtectedCreated,
    Reason, RunStatus, SCHEMA, SeccompStatus, WatchdogStatus,
};
use crate::exit::{EXIT_SBX_FAILED, Ending};
use crate::plan::Plan;
use crate::sandbox::channel::LandlockOutcome;
use crate::supervisor::Outcome;

fn network(plan: &Plan, outcome: Option<&Outcome>) -> NetworkStatus {
    let proxy = outcome.and_then(|o| o.proxy.clone());
    let connections = outcome.and_then(|o| o.egress.clone());
    let refused = refused(
        proxy.iter().flat_map(|p| &p.denied_hosts),
        connections.iter().flat_map(|c| &c.denied_destinations),
    );
    NetworkStatus {
        mode: plan.network.name(),
        allow: plan.network.allow().to_vec(),
        proxy,
        connections,
        refused,
    }
}

/// What the network refused, in one line: each destination once, the first few named. The
/// destinations come from the sandbox, so they are escaped.
fn refused<'a>(
    proxy: impl Iterator<Item = &'a String>,
    direct: impl Iterator<Item = &'a String>,
) -> Option<String> {
    const SHOWN: usize = 5;
    let mut all: Vec<&str> = Vec::new();
    for d in proxy.chain(direct) {
        if !all.contains(&d.as_str()) {
            all.push(d);
        }
    }
    if all.is_empty() {
        return None;
    }
    let mut named: Vec<String> = all
        .iter()
        .take(SHOWN)
        .map(|d| crate::text::escape(d))
        .collect();
    if all.len() > SHOWN {
        named.push(format!("{} more", all.len() - SHOWN));
    }
    Some(format!(
        "the sandbox's network refused {} (network.allow, --allow HOST:PORT, decides; -v logs \
         each refusal)",
        named.join(", ")
    ))
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
        mode: plan.landlock_mode.to_string(),
        abi,
        enforced: enforced.into(),
    }
}

fn limits(plan: &Plan, cgroup_used: bool, watchdog: bool) -> Vec<LimitStatus> {
    let entry = |name: &str, value: u64, via: &str| LimitStatus {
        name: name.into(),
        value,
        via: via.into(),
    };
    let mut out: Vec<LimitStatus> = plan
        .limits
        .rlimits
        .iter()
        .map(|r| entry(r.name, r.value, "rlimit"))
        .collect();
    if let Some(w) = plan.limits.wall_time {
        out.push(entry("wall_time", w.as_secs(), "supervisor"));
    }
    if let Some(t) = plan.limits.tmpfs_size {
        out.push(entry("tmpfs_size", t, "tmpfs"));
    }
    let c = plan.limits.cgroup;
    let whole_sandbox = match (cgroup_used, watchdog) {
        (true, _) => Some("cgroup"),
        (false, true) => Some("watchdog"),
        (false, false) => None,
    };
    if let Some(via) = whole_sandbox {
        for (name, v) in [("memory", c.memory_max), ("processes", c.pids_max)] {
            if let Some(value) = v {
                out.push(entry(name, value, via));
            }
        }
    }
    if let (true, Some((quota, _))) = (cgroup_used, c.cpu_max) {
        out.push(entry("cpus", quota, "cgroup"));
    }
    for l in &plan.limits.userns {
        out.push(entry(l.name.trim_start_matches("max_"), l.value, "userns"));
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
        exit_code: EXIT_SBX_FAILED,
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
            connections: None,
            refused: None,
        },
        protect: ProtectStatus::default(),
        hide: HideStatus::default(),
        watchdog: None,
        degradations: Vec::new(),
        denials: None,
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
        (
            Reason::Signaled
            | Reason::Timeout
            | Reason::Oom
            | Reason::MemoryLimit
            | Reason::ProcessLimit
            | Reason::ProtectedPath,
            Ending::Signaled(n),
        ) => Some(n),
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
        limits: limits(plan, ctx.cgroup.is_some(), outcome.watchdog.is_some()),
        cgroup: ctx.cgroup,
        changes: ctx.changes,
        network: network(plan, Some(outcome)),
        protect: ProtectStatus {
            entries: plan.protect.entries.clone(),
            read_only: plan.protect.read_only.clone(),
            watched: plan
                .protect
                .guards
                .iter()
                .map(|g| g.shown.clone())
                .collect(),
            created: outcome
                .protected
                .iter()
                .map(|t| ProtectedCreated {
                    path: t.path.clone(),
                    moved_to: t.moved_to.clone(),
                })
                .collect(),
        },
        hide: HideStatus {
            entries: plan.hide.entries.clone(),
            hidden: plan.hide.hidden.clone(),
        },
        watchdog: outcome.watchdog.map(|w| WatchdogStatus {
            peak_memory_bytes: w.memory,
            peak_tasks: w.tasks,
        }),
        degradations: ctx.degradations,
        denials: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
