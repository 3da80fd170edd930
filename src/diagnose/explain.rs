//! The plan in words: `--explain` prints every aspect of it, one item per line, and `-v`
//! logs the protections it applies. Both only read the plan. Paths, names and values from
//! profiles and the command line are shown escaped: one item stays one line.

use std::ffi::CStr;

use crate::plan::{Op, OpInfo, Plan};
use crate::profile::Enforcement;
use crate::text::{escape, escape_bytes};

/// A C string of the plan, escaped.
fn shown(s: &CStr) -> String {
    escape_bytes(s.to_bytes())
}

/// One line naming every protection layer the plan applies.
pub fn protections(plan: &Plan) -> String {
    let mut out = vec![format!("namespaces {}", plan.namespaces.names().join(", "))];
    match &plan.landlock {
        Some(l) => out.push(format!(
            "landlock {} at ABI {} ({} path rules{}{})",
            l.mode,
            l.kernel_abi,
            l.rules.len(),
            match l.scoped() {
                "" => String::new(),
                what => format!(", {what} scoped"),
            },
            if l.connect_ports.is_some() || l.bind_ports.is_some() {
                ", TCP port rules"
            } else {
                ""
            },
        )),
        None => out.push(match plan.landlock_mode {
            Enforcement::Off => "landlock off".into(),
            mode => format!("landlock {mode}, not applied: this kernel has none"),
        }),
    }
    match &plan.seccomp {
        Some(s) => out.push(format!(
            "seccomp deny list ({} entries, action {:?})",
            s.denied.len(),
            s.action
        )),
        None => out.push("seccomp off".into()),
    }
    out.push("all capabilities dropped".into());
    out.push("no_new_privs".into());
    if plan.new_session {
        out.push("new session".into());
    }
    out.join("; ")
}

fn op_line(op: &Op, info: &OpInfo) -> String {
    let flags = op.describe();
    let from = info
        .host_path
        .as_ref()
        .map(|h| format!(" <- {}", escape(h)))
        .unwrap_or_default();
    format!(
        "{} {}{} [{}]",
        info.what,
        escape(&info.sandbox_path),
        from,
        flags
    )
}

/// The resolved plan, for `--explain`: one section per aspect, one item per line.
pub fn explain(plan: &Plan) -> String {
    let mut s = String::new();
    let ns = plan.namespaces.names().join(", ");
    s.push_str(&format!("namespaces: {ns}\n"));
    s.push_str(&format!(
        "uid map: {}\ngid map: {}\n",
        String::from_utf8_lossy(&plan.uid_map).trim(),
        String::from_utf8_lossy(&plan.gid_map).trim()
    ));
    s.push_str("mounts:\n");
    for (i, (op, info)) in plan.ops.iter().zip(&plan.op_info).enumerate() {
        s.push_str(&format!("  {:>3}. {}\n", i + 1, op_line(op, info)));
    }
    s.push_str("  then: pivot_root, the host's root detached, / made read-only\n");
    let p = &plan.protect;
    if !p.entries.is_empty() {
        s.push_str(&format!(
            "protected (filesystem.protect: {}):\n",
            escape(&p.entries.join(", "))
        ));
        for path in &p.read_only {
            s.push_str(&format!("  {} read-only\n", escape(path)));
        }
        for g in &p.guards {
            let how = match g.existing {
                Some(_) => "a symlink: replacing it ends the run",
                None => "absent: creating it ends the run",
            };
            s.push_str(&format!("  {} {how}\n", escape(&g.shown)));
        }
    }
    let h = &plan.hide;
    if !h.entries.is_empty() {
        s.push_str(&format!(
            "hidden (filesystem.hide, {} entries; missing or unseen ones need nothing):\n",
            h.entries.len()
        ));
        for path in &h.hidden {
            s.push_str(&format!(
                "  {} empty, read-only\n",
                crate::text::escape(path)
            ));
        }
        if h.hidden.is_empty() {
            s.push_str("  none is visible in this sandbox\n");
        }
    }
    s.push_str(&format!(
        "hostname: {}{}\n",
        plan.hostname
            .as_ref()
            .map(|h| shown(h))
            .unwrap_or_else(|| "(host's)".into()),
        if plan.hostname_optional {
            " (left out where the environment refuses sethostname)"
        } else {
            ""
        }
    ));
    s.push_str(&format!("network: {}\n", escape(&plan.network.describe())));
    s.push_str("environment:\n");
    for e in &plan.exec.envp {
        s.push_str(&format!("  {}\n", shown(e)));
    }
    s.push_str("limits:\n");
    for r in &plan.limits.rlimits {
        s.push_str(&format!("  {} = {} (rlimit)\n", r.name, r.value));
    }
    if let Some(w) = plan.limits.wall_time {
        s.push_str(&format!(
            "  wall_time = {}s (kill_grace {}s)\n",
            w.as_secs_f64(),
            plan.limits.kill_grace.as_secs_f64()
        ));
    }
    if let Some(t) = plan.limits.tmpfs_size {
        s.push_str(&format!("  tmpfs_size = {t}\n"));
    }
    let c = plan.limits.cgroup;
    for (name, v) in [("memory", c.memory_max), ("processes", c.pids_max)] {
        if let Some(v) = v {
            s.push_str(&format!(
                "  {name} = {v} for the whole sandbox (its cgroup where one is delegated, else \
                 sbx's watchdog)\n"
            ));
        }
    }
    if let Some((quota, period)) = c.cpu_max {
        s.push_str(&format!(
            "  cpus = {} (cpu.max of its cgroup where one is delegated; not enforced without one)\n",
            quota as f64 / period as f64
        ));
    }
    s.push_str(&format!("  cgroup = {}\n", plan.limits.cgroup_mode));
    for l in &plan.limits.userns {
        s.push_str(&format!(
            "  {} = {} (user namespace{})\n",
            l.name.trim_start_matches("max_"),
            l.value,
            if plan.limits.userns_optional {
                "; left out where /proc/sys is read-only"
            } else {
                ""
            }
        ));
    }
    match &plan.landlock {
        Some(l) => {
            s.push_str(&format!(
                "landlock: {} at ABI {}{}\n",
                l.mode,
                l.kernel_abi,
                match l.scoped() {
                    "" => String::new(),
                    what => format!(", {what} scoped"),
                }
            ));
            for (path, access) in &l.rules {
                let rights: Vec<String> = access.iter().map(|a| format!("{a:?}")).collect();
                s.push_str(&format!("  {} {}\n", shown(path), rights.join("|")));
            }
            if let Some(p) = &l.connect_ports {
                s.push_str(&format!("  tcp connect ports {p:?}\n"));
            }
            if let Some(p) = &l.bind_ports {
                s.push_str(&format!("  tcp bind ports {p:?}\n"));
            }
        }
        None => match plan.landlock_mode {
            Enforcement::Off => s.push_str("landlock: off\n"),
            mode => s.push_str(&format!(
                "landlock: {mode}, not applied: this kernel has none\n"
            )),
        },
    }
    match &plan.seccomp {
        Some(sc) => s.push_str(
            &format!(
                "seccomp: deny list, action {:?}, {} entries: {}\n",
                sc.action,
                sc.denied.len(),
                sc.denied.join(" ")
            )
            .to_lowercase(),
        ),
        None => s.push_str("seccomp: off\n"),
    }
    s.push_str(&format!(
        "capabilities: all dropped; no_new_privs; new session: {}; terminal: {}\n",
        plan.new_session,
        match plan.pty {
            Some(true) => "a pty of its own, relayed (when stdin is a terminal)",
            Some(false) => "inherited stdio",
            None =>
                "a pty of its own, relayed, when stdin, stdout and stderr are a terminal \
                     and sbx is in its foreground; else inherited stdio",
        }
    ));
    s.push_str(&format!(
        "command: {} (cwd {}{})\n",
        plan.exec
            .argv
            .iter()
            .map(|a| shown(a))
            .collect::<Vec<_>>()
            .join(" "),
        shown(&plan.exec.cwd),
        if plan.as_pid_1 { ", as PID 1" } else { "" }
    ));
    // What a run prints as warnings, e.g. a source reached through a symlink, or a writable
    // bind made read-only because an overlay shows that directory.
    if !plan.warnings.is_empty() {
        s.push_str("warnings:\n");
        for w in &plan.warnings {
            s.push_str(&format!("  {}\n", escape(w)));
        }
    }
    // What a run names in -v and the report only: what this host lacks that the profile
    // accepts running without.
    if !plan.degradations.is_empty() {
        s.push_str("degraded on this host:\n");
        for d in &plan.degradations {
            s.push_str(&format!("  {}\n", escape(d)));
        }
    }
    s
}
