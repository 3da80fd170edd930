//! The run report: one JSON document written when the run ends (`--json-status`). Its schema
//! is documented in README.md; bump `SCHEMA` on any incompatible change. `build` fills it
//! from the plan and the outcome; `destination` writes it.

mod build;
mod destination;

use serde::Serialize;

pub(crate) use build::{Context, after_run, before_run};
pub use destination::Destination;

pub const SCHEMA: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Exited,
    Signaled,
    Timeout,
    Oom,
    /// The watchdog killed the sandbox: its memory crossed `limits.memory`.
    MemoryLimit,
    /// The watchdog killed the sandbox: its tasks reached `limits.processes`.
    ProcessLimit,
    /// The command created a protected path (`filesystem.protect`): the sandbox was killed and
    /// what it created moved aside.
    ProtectedPath,
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
    /// rlimit | cgroup | watchdog | supervisor | tmpfs | userns
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
    /// The paths host tools run or trust, and what the command did to them.
    pub protect: ProtectStatus,
    /// The credentials hidden from the command (`filesystem.hide`).
    pub hide: HideStatus,
    /// When sbx's watchdog held the whole-sandbox limits (no cgroup): the largest it measured.
    pub watchdog: Option<WatchdogStatus>,
    /// What the command changed under each writable overlay.
    pub changes: Vec<crate::overlay::ChangeSet>,
    pub degradations: Vec<String>,
    /// With `--trace-denials`: the paths the command named that the sandbox refused (null
    /// without it: nothing was observed).
    pub denials: Option<Vec<DenialStatus>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DenialStatus {
    /// The path as the command named it inside the sandbox.
    pub path: String,
    /// What was refused: see (the host's file is not shown there), read, write or exec.
    pub access: &'static str,
    /// Why, as `sbx why` says it.
    pub reason: String,
    /// The profile file:line and key that decide, or sbx's own layout.
    pub decided_by: String,
    /// The line that would allow it, if one can.
    pub fix: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ProtectStatus {
    /// `filesystem.protect` in effect, as written (relative to each writable bind).
    pub entries: Vec<String>,
    /// Protected paths that exist: read-only in the sandbox.
    pub read_only: Vec<String>,
    /// Protected paths that did not exist: watched, the run ends if one appears.
    pub watched: Vec<String>,
    /// Protected paths the command created, and where sbx moved them.
    pub created: Vec<ProtectedCreated>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct HideStatus {
    /// `filesystem.hide` in effect (host paths).
    pub entries: Vec<String>,
    /// The sandbox paths covered by an empty read-only stand-in.
    pub hidden: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProtectedCreated {
    pub path: String,
    /// Where it is on the host now, moved aside (null: it could not be moved or is gone).
    pub moved_to: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WatchdogStatus {
    /// Anonymous memory of the sandbox's processes plus its tmpfs store, at the largest sample.
    pub peak_memory_bytes: u64,
    /// Tasks (threads) at the largest sample.
    pub peak_tasks: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct NetworkStatus {
    /// none | host | on | proxy
    pub mode: &'static str,
    /// With on or proxy: the allowlist as written.
    pub allow: Vec<String>,
    /// With proxy: what the proxy let through or refused.
    pub proxy: Option<crate::proxy::ProxyStats>,
    /// With on or proxy: the connections sbx made out for any program, and what it refused.
    pub connections: Option<crate::egress::EgressStats>,
    /// One line naming what the network refused during the run (the proxy's and sbx's egress
    /// refusals), which sbx prints when the command fails; null when nothing was refused.
    pub refused: Option<String>,
}
