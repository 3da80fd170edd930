//! `sbx doctor`: what this host supports, and why not. File-based checks read below a root
//! directory (a test can point it at a fake `/proc/sys` and `/sys/fs/cgroup`); the live checks
//! start real sandboxes and run only against the real root.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::diagnose::host::Host;

mod environment;
mod live;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it (empty when nothing).
    pub fix: String,
}

impl Check {
    fn new(
        name: &'static str,
        status: Status,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name,
            status,
            detail: detail.into(),
            fix: fix.into(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    /// Whether the default profile can run here.
    pub default_profile_runs: bool,
}

fn read(root: &Path, rel: &str) -> Option<String> {
    fs::read_to_string(root.join(rel.trim_start_matches('/')))
        .ok()
        .map(|s| s.trim().to_string())
}

fn userns(root: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    match read(root, "/proc/sys/user/max_user_namespaces").and_then(|v| v.parse::<u64>().ok()) {
        Some(0) => out.push(Check::new(
            "user namespaces (max_user_namespaces)",
            Status::Fail,
            "user.max_user_namespaces = 0: user namespaces are disabled",
            "sysctl -w user.max_user_namespaces=15000 (and in /etc/sysctl.d/ to persist)",
        )),
        Some(n) => out.push(Check::new(
            "user namespaces (max_user_namespaces)",
            Status::Ok,
            format!("user.max_user_namespaces = {n}"),
            "",
        )),
        None => out.push(Check::new(
            "user namespaces (max_user_namespaces)",
            Status::Fail,
            "/proc/sys/user/max_user_namespaces is missing: the kernel lacks CONFIG_USER_NS",
            "use a kernel built with CONFIG_USER_NS=y",
        )),
    }
    if let Some(v) = read(root, "/proc/sys/kernel/unprivileged_userns_clone") {
        let ok = v == "1";
        out.push(Check::new(
            "unprivileged user namespaces (Debian sysctl)",
            if ok { Status::Ok } else { Status::Fail },
            format!("kernel.unprivileged_userns_clone = {v}"),
            if ok {
                ""
            } else {
                "sysctl -w kernel.unprivileged_userns_clone=1"
            },
        ));
    }
    if let Some(v) = read(
        root,
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
    ) {
        let ok = v == "0";
        out.push(Check::new(
            "unprivileged user namespaces (AppArmor)",
            if ok { Status::Ok } else { Status::Fail },
            format!("kernel.apparmor_restrict_unprivileged_userns = {v}"),
            if ok {
                String::new()
            } else {
                crate::diagnose::apparmor_profile()
            },
        ));
    }
    out
}

fn namespaces(root: &Path) -> Vec<Check> {
    ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup"]
        .into_iter()
        .map(|ns| {
            let present = root.join("proc/self/ns").join(ns).exists();
            Check::new(
                match ns {
                    "user" => "namespace: user",
                    "mnt" => "namespace: mount",
                    "pid" => "namespace: pid",
                    "net" => "namespace: net",
                    "ipc" => "namespace: ipc",
                    "uts" => "namespace: uts",
                    _ => "namespace: cgroup",
                },
                if present { Status::Ok } else { Status::Fail },
                if present {
                    format!("/proc/self/ns/{ns} present")
                } else {
                    format!("/proc/self/ns/{ns} missing: the kernel lacks this namespace type")
                },
                if present {
                    ""
                } else {
                    "turn this namespace off in the profile ([namespaces])"
                },
            )
        })
        .collect()
}

fn landlock(root: &Path, abi: i32) -> Check {
    let lsm = read(root, "/sys/kernel/security/lsm").unwrap_or_default();
    match abi {
        0 => Check::new(
            "landlock",
            Status::Fail,
            format!(
                "not available (LSMs: {})",
                if lsm.is_empty() { "unknown" } else { &lsm }
            ),
            "boot with landlock in lsm= (Linux >= 5.13), or set [security] landlock = \"best-effort\"",
        ),
        a if a < 4 => Check::new(
            "landlock",
            Status::Warn,
            format!("ABI {a}: no TCP port rules (ABI 4) and no socket/signal scoping (ABI 6)"),
            "a newer kernel (6.12+) enforces all of sbx's landlock rules",
        ),
        a if a < 6 => Check::new(
            "landlock",
            Status::Warn,
            format!("ABI {a}: no abstract-socket and signal scoping (ABI 6)"),
            "a newer kernel (6.12+); with --net host or pid = false use landlock = \"best-effort\"",
        ),
        a => Check::new("landlock", Status::Ok, format!("ABI {a}"), ""),
    }
}

fn seccomp(root: &Path) -> Check {
    match read(root, "/proc/sys/kernel/seccomp/actions_avail") {
        Some(a) if a.contains("errno") && a.contains("kill_process") => Check::new(
            "seccomp",
            Status::Ok,
            format!("filters available (actions: {a})"),
            "",
        ),
        Some(a) => Check::new(
            "seccomp",
            Status::Fail,
            format!("actions available: {a}"),
            "a kernel with CONFIG_SECCOMP_FILTER, or [security] seccomp = \"off\"",
        ),
        None => Check::new(
            "seccomp",
            Status::Fail,
            "/proc/sys/kernel/seccomp/actions_avail missing: no seccomp filters",
            "a kernel with CONFIG_SECCOMP_FILTER, or [security] seccomp = \"off\"",
        ),
    }
}

fn tiocsti(root: &Path) -> Check {
    match read(root, "/proc/sys/dev/tty/legacy_tiocsti").as_deref() {
        Some("1") => Check::new(
            "TIOCSTI",
            Status::Warn,
            "dev.tty.legacy_tiocsti = 1: a process sharing your terminal could push keystrokes; \
             sbx prevents it (new session, seccomp denies TIOCSTI)",
            "sysctl -w dev.tty.legacy_tiocsti=0 protects everything else too",
        ),
        Some(v) => Check::new(
            "TIOCSTI",
            Status::Ok,
            format!("dev.tty.legacy_tiocsti = {v}"),
            "",
        ),
        None => Check::new(
            "TIOCSTI",
            Status::Ok,
            "no legacy_tiocsti sysctl (kernel < 6.2)",
            "",
        ),
    }
}

fn newuidmap() -> Check {
    let found = ["/usr/bin/newuidmap", "/bin/newuidmap"]
        .iter()
        .find(|p| Path::new(p).exists());
    Check::new(
        "newuidmap",
        Status::Ok,
        match found {
            Some(p) => format!("{p} present (sbx does not need it: it maps only your own ids)"),
            None => "absent (sbx does not need it: it maps only your own ids)".into(),
        },
        "",
    )
}

fn cgroup() -> Check {
    match crate::cgroup::detect(&["memory", "pids", "cpu"]) {
        Ok(d) => Check::new(
            "cgroup v2 delegation",
            Status::Ok,
            format!("{} is delegated with memory, pids and cpu", d.own.display()),
            "",
        ),
        Err(e) => Check::new(
            "cgroup v2 delegation",
            Status::Warn,
            format!("{e}"),
            "without it, sbx's watchdog and rlimits hold limits.memory and limits.processes, and limits.cpus is not enforced; for cgroup limits run under `systemd-run --user --scope -p Delegate=yes`",
        ),
    }
}

/// Runs every check. `root` is `/` except in tests; live checks run only against `/`.
pub fn run(root: &Path) -> Report {
    let mut checks = userns(root);
    checks.extend(namespaces(root));
    let real = root == Path::new("/");
    let abi = if real {
        crate::sys::landlock_abi()
    } else {
        read(root, "/sys/kernel/security/landlock/abi")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    checks.push(landlock(root, abi));
    checks.push(seccomp(root));
    checks.push(tiocsti(root));
    checks.push(newuidmap());
    // What surrounds sbx, after the kernel's own checks.
    checks.extend(environment::checks(&Host::read(root)));
    if real {
        checks.push(cgroup());
    }
    let files_ok = !checks.iter().any(|c| c.status == Status::Fail);
    let runs = if real {
        let (live, runs) = live::live();
        checks.extend(live);
        runs
    } else {
        files_ok
    };
    Report {
        checks,
        default_profile_runs: runs,
    }
}

/// Text for people: one line per check, the fix indented below it.
pub fn render(r: &Report, color: bool) -> String {
    let mut s = String::new();
    for c in &r.checks {
        let (tag, code) = match c.status {
            Status::Ok => ("OK  ", "32"),
            Status::Warn => ("WARN", "33"),
            Status::Fail => ("FAIL", "31"),
        };
        if color {
            s.push_str(&format!("\x1b[{code}m{tag}\x1b[0m "));
        } else {
            s.push_str(tag);
            s.push(' ');
        }
        s.push_str(&format!("{}: {}\n", c.name, c.detail));
        if !c.fix.is_empty() && c.status != Status::Ok {
            s.push_str(&format!("     fix: {}\n", c.fix));
        }
    }
    let with_proc_host = r
        .checks
        .iter()
        .any(|c| c.name == live::WITH_PROC_HOST && c.status == Status::Ok);
    s.push_str(match (r.default_profile_runs, with_proc_host) {
        (true, _) => "\nThe default profile runs on this host.\n",
        (false, true) => {
            "\nThe default profile cannot run on this host as it is (see FAIL above); it runs \
             with --proc host.\n"
        }
        (false, false) => "\nThe default profile cannot run on this host: see FAIL above.\n",
    });
    s
}

/// The root that file checks read below: `SBX_DOCTOR_ROOT` for tests, else `/`.
pub fn root_from_env() -> PathBuf {
    std::env::var_os("SBX_DOCTOR_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

#[cfg(test)]
mod tests;
