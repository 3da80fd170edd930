//! The seccomp policy: a deny list compiled to BPF before any fork. The filter is a deny list
//! (everything else is allowed) so that ordinary programs run unchanged. It is made of parts,
//! chained into one program (one JIT compilation at install time), the first part that does
//! not allow a call deciding:
//!
//! 1. a guard for x32 numbers (`nr | 0x40000000`), which carry the x86_64 architecture tag
//!    and would otherwise match no rule and be allowed (hand-written: seccompiler cannot
//!    express "nr >= X");
//! 2. `clone3` answered with ENOSYS, because its flags sit behind a pointer that BPF cannot
//!    read: libc then falls back to `clone`, whose flags the deny list inspects;
//! 3. the deny list (seccompiler's Rust API, from libc's syscall numbers); it kills any call
//!    made with a foreign architecture, such as 32-bit `int 0x80`;
//! 4. names a profile adds (seccompiler's JSON frontend, whose table checks the names).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction as SA, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use serde_json::{Value, json};

use super::PlanError;
use crate::profile::{Origin, Seccomp, SeccompAction, SeccompMode, Security};

/// Denied whatever their arguments: (name, number on this architecture).
pub const DENY_ALWAYS: &[(&str, libc::c_long)] = &[
    ("setns", libc::SYS_setns),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("reboot", libc::SYS_reboot),
    ("syslog", libc::SYS_syslog),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
];

/// Namespace flags refused in `clone` and `unshare` (CLONE_NEWTIME included).
const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    0x80, // CLONE_NEWTIME
];

const PER_QUERY: u64 = 0xffff_ffff;

#[derive(Debug, Clone)]
pub struct SeccompPlan {
    /// Installed in order (one program, chained from the parts described above).
    pub programs: Vec<BpfProgram>,
    /// Names on the final deny list (conditional rules included), for `-v` and reports.
    pub denied: Vec<String>,
    pub action: SeccompAction,
}

fn origin(key: &'static str) -> Origin {
    Origin {
        profile: "the merged profile".into(),
        key,
    }
}

fn arch() -> TargetArch {
    if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else if cfg!(target_arch = "riscv64") {
        TargetArch::riscv64
    } else {
        TargetArch::x86_64
    }
}

/// A 32-bit comparison: the kernel ABI passes these arguments as `int`, and a 64-bit compare
/// could be dodged with garbage in the upper half.
fn dword(index: u8, op: SeccompCmpOp, val: u64) -> SeccompCondition {
    SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, val).expect("argument index below 6")
}

/// The conditional rules: (syscall, number, AND-ed conditions); rules of one syscall are OR-ed.
fn conditional_rules(
    nested_userns: bool,
) -> Vec<(&'static str, libc::c_long, Vec<SeccompCondition>)> {
    use SeccompCmpOp::{Eq, MaskedEq, Ne};
    let mut rules = Vec::new();
    if !nested_userns {
        for &flag in NAMESPACE_FLAGS {
            rules.push((
                "clone",
                libc::SYS_clone,
                vec![dword(0, MaskedEq(flag), flag)],
            ));
            rules.push((
                "unshare",
                libc::SYS_unshare,
                vec![dword(0, MaskedEq(flag), flag)],
            ));
        }
    }
    for req in [libc::TIOCSTI, libc::TIOCLINUX] {
        rules.push(("ioctl", libc::SYS_ioctl, vec![dword(1, Eq, req)]));
    }
    let families = [
        libc::AF_UNIX,
        libc::AF_INET,
        libc::AF_INET6,
        libc::AF_NETLINK,
    ];
    rules.push((
        "socket",
        libc::SYS_socket,
        families.iter().map(|f| dword(0, Ne, *f as u64)).collect(),
    ));
    // Netlink only for NETLINK_ROUTE (ip, getifaddrs); without capabilities it cannot change
    // anything, and the other families reach kernel subsystems (audit, uevents, ...).
    rules.push((
        "socket",
        libc::SYS_socket,
        vec![
            dword(0, Eq, libc::AF_NETLINK as u64),
            dword(2, Ne, libc::NETLINK_ROUTE as u64),
        ],
    ));
    rules.push((
        "personality",
        libc::SYS_personality,
        vec![dword(0, Ne, 0), dword(0, Ne, PER_QUERY)],
    ));
    rules
}

fn action(action: SeccompAction) -> SA {
    match action {
        SeccompAction::Errno => SA::Errno(libc::EPERM as u32),
        SeccompAction::Kill => SA::KillProcess,
        SeccompAction::Log => SA::Log,
    }
}

/// Compiles one deny program from syscall numbers (no JSON on this path: it runs every time).
fn program(rules: BTreeMap<i64, Vec<SeccompRule>>, on_match: SA) -> Result<BpfProgram, PlanError> {
    SeccompFilter::new(rules, SA::Allow, on_match, arch())
        .and_then(BpfProgram::try_from)
        .map_err(|e| {
            PlanError::invalid(
                &origin("seccomp"),
                format!("cannot build the seccomp filter: {e}"),
            )
        })
}

fn action_json(action: SeccompAction) -> Value {
    match action {
        SeccompAction::Errno => json!({ "errno": libc::EPERM }),
        SeccompAction::Kill => json!("kill_process"),
        SeccompAction::Log => json!("log"),
    }
}

fn compile(filters: Value, key: &'static str) -> Result<Vec<(String, BpfProgram)>, PlanError> {
    let text = filters.to_string();
    let map = seccompiler::compile_from_json(text.as_bytes(), arch()).map_err(|e| {
        PlanError::invalid(
            &origin(key),
            format!("cannot build the seccomp filter: {e}"),
        )
    })?;
    let mut out: Vec<(String, BpfProgram)> = map.into_iter().collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Checks that every name is a syscall of this architecture.
fn check_names(names: &[String], key: &'static str) -> Result<(), PlanError> {
    if names.is_empty() {
        return Ok(());
    }
    let rules: Vec<Value> = names.iter().map(|n| json!({ "syscall": n })).collect();
    let filter = json!({ "check": {
        "mismatch_action": "allow",
        "match_action": { "errno": libc::EPERM },
        "filter": rules,
    }});
    compile(filter, key).map(drop).map_err(|_| {
        let bad: Vec<&str> = names
            .iter()
            .filter(|n| {
                let one = json!({ "c": { "mismatch_action": "allow", "match_action": "log",
                    "filter": [{ "syscall": n }] } });
                seccompiler::compile_from_json(one.to_string().as_bytes(), arch()).is_err()
            })
            .map(String::as_str)
            .collect();
        PlanError::invalid(
            &origin(key),
            format!(
                "unknown syscall name(s) for this architecture: {}",
                bad.join(", ")
            ),
        )
    })
}

/// Joins programs into one: each one's "allow" becomes a jump to the next, so the first
/// program with another answer decides. One program is one JIT compilation when it is
/// installed, instead of one per program.
fn chain(programs: Vec<BpfProgram>) -> BpfProgram {
    const RET_K: u16 = 0x06;
    const JA: u16 = 0x05;
    let count = programs.len();
    let mut out = BpfProgram::new();
    for (n, mut prog) in programs.into_iter().enumerate() {
        if n + 1 < count {
            let len = prog.len();
            for (i, ins) in prog.iter_mut().enumerate() {
                if ins.code == RET_K && ins.k == libc::SECCOMP_RET_ALLOW {
                    *ins = seccompiler::sock_filter {
                        code: JA,
                        jt: 0,
                        jf: 0,
                        k: (len - i - 1) as u32,
                    };
                }
            }
        }
        out.extend(prog);
    }
    out
}

/// The x32 guard, by hand: seccompiler cannot express "nr >= X".
#[cfg(target_arch = "x86_64")]
fn x32_guard(action: SeccompAction) -> BpfProgram {
    use seccompiler::sock_filter;
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JGE_K: u16 = 0x35;
    const RET_K: u16 = 0x06;
    const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    // `log` would let the call through: an x32 call is never allowed, so it gets EPERM.
    let deny = match action {
        SeccompAction::Kill => libc::SECCOMP_RET_KILL_PROCESS,
        SeccompAction::Errno | SeccompAction::Log => libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
    };
    let i = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        i(LD_W_ABS, 0, 0, 4), // arch
        i(JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        i(LD_W_ABS, 0, 0, 0), // nr
        i(JGE_K, 0, 1, X32_SYSCALL_BIT),
        i(RET_K, 0, 0, deny),
        i(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

pub fn build(security: &Security, cfg: &Seccomp) -> Result<Option<SeccompPlan>, PlanError> {
    if security.seccomp == Some(SeccompMode::Off) {
        return Ok(None);
    }
    check_names(&cfg.allow, "seccomp.allow")?;
    check_names(&cfg.deny, "seccomp.deny")?;
    if let Some(both) = cfg.allow.iter().find(|n| cfg.deny.contains(n)) {
        return Err(PlanError::invalid(
            &origin("seccomp.allow"),
            format!("`{both}` is both allowed and denied"),
        ));
    }
    let allowed = |n: &str| cfg.allow.iter().any(|a| a == n);
    let nested = security.nested_userns.unwrap_or(false);
    let chosen = cfg.action.unwrap_or(SeccompAction::Errno);

    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut denied: Vec<String> = Vec::new();
    for &(name, nr) in DENY_ALWAYS {
        if allowed(name) || (nested && name == "setns") {
            continue;
        }
        rules.insert(nr, Vec::new());
        denied.push(name.to_string());
    }
    for (name, nr, conds) in conditional_rules(nested) {
        if allowed(name) || cfg.deny.iter().any(|d| d == name) {
            continue;
        }
        let rule = SeccompRule::new(conds).map_err(|e| {
            PlanError::invalid(&origin("seccomp"), format!("seccomp rule for {name}: {e}"))
        })?;
        rules.entry(nr).or_default().push(rule);
        let label = format!("{name}(conditional)");
        if !denied.contains(&label) {
            denied.push(label);
        }
    }
    let mut programs = vec![program(rules, action(chosen))?];
    // Names the profile adds go through seccompiler's JSON frontend, whose table knows every
    // syscall of the architecture by name.
    let extra: Vec<&String> = cfg.deny.iter().filter(|n| !denied.contains(n)).collect();
    if !extra.is_empty() {
        let list: Vec<Value> = extra.iter().map(|n| json!({ "syscall": n })).collect();
        let filters = json!({ "extra": {
            "mismatch_action": "allow", "match_action": action_json(chosen), "filter": list } });
        programs.extend(
            compile(filters, "seccomp.deny")?
                .into_iter()
                .map(|(_, p)| p),
        );
        denied.extend(extra.into_iter().cloned());
    }
    if !allowed("clone3") {
        programs.push(program(
            [(libc::SYS_clone3, Vec::new())].into(),
            SA::Errno(libc::ENOSYS as u32),
        )?);
    }
    let action = chosen;
    // The x32 guard goes first: under `log` the deny list lets calls through, an x32 call never.
    #[cfg(target_arch = "x86_64")]
    programs.insert(0, x32_guard(action));
    let programs = vec![chain(programs)];

    Ok(Some(SeccompPlan {
        programs,
        denied,
        action,
    }))
}

#[cfg(test)]
mod tests;
