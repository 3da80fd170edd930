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
//! 3. the deny list, from libc's syscall numbers, compiled by the `bpf` module into a binary
//!    search (the kernel emulates a filter at install time, so a linear chain would cost every
//!    start; benches/README.md has the figures); it kills any call made with a foreign
//!    architecture, such as 32-bit `int 0x80`;
//! 4. names a profile adds (seccompiler's JSON frontend, whose table checks the names).
//!
//! The first three are one program; the last, when there is one, is chained after it.

mod bpf;

use std::collections::BTreeMap;

use bpf::{Check, Cond, Verdict};
use seccompiler::{BpfProgram, TargetArch};
use serde_json::{Value, json};

use super::error::{PlanError, merged as origin};
use crate::profile::{Seccomp, SeccompAction, SeccompMode, Security};

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

const PER_QUERY: u32 = 0xffff_ffff;

#[derive(Debug, Clone)]
pub struct SeccompPlan {
    /// Installed in order (one program, chained from the parts described above).
    pub programs: Vec<BpfProgram>,
    /// Names on the final deny list (conditional rules included), for `-v` and reports.
    pub denied: Vec<String>,
    pub action: SeccompAction,
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
fn dword(arg: u8, check: Check) -> Cond {
    Cond { arg, check }
}

/// The conditional rules: (syscall, number, AND-ed conditions); rules of one syscall are OR-ed.
fn conditional_rules(nested_userns: bool) -> Vec<(&'static str, libc::c_long, Vec<Cond>)> {
    use Check::{Eq, Ne};
    let mut rules = Vec::new();
    if !nested_userns {
        // Any namespace flag at all: one `jset` instead of a rule per flag.
        let any_ns = Check::AnyBit(NAMESPACE_FLAGS.iter().fold(0, |a, f| a | *f as u32));
        rules.push(("clone", libc::SYS_clone, vec![dword(0, any_ns)]));
        rules.push(("unshare", libc::SYS_unshare, vec![dword(0, any_ns)]));
    }
    for req in [libc::TIOCSTI, libc::TIOCLINUX] {
        // TIOCSTI's type differs between libcs; the value is the same 32-bit request.
        rules.push(("ioctl", libc::SYS_ioctl, vec![dword(1, Eq(req as u32))]));
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
        families.iter().map(|f| dword(0, Ne(*f as u32))).collect(),
    ));
    // Netlink only for NETLINK_ROUTE (ip, getifaddrs); without capabilities it cannot change
    // anything, and the other families reach kernel subsystems (audit, uevents, ...).
    rules.push((
        "socket",
        libc::SYS_socket,
        vec![
            dword(0, Eq(libc::AF_NETLINK as u32)),
            dword(2, Ne(libc::NETLINK_ROUTE as u32)),
        ],
    ));
    rules.push((
        "personality",
        libc::SYS_personality,
        vec![dword(0, Ne(0)), dword(0, Ne(PER_QUERY))],
    ));
    rules
}

/// What a denied call gets back from the filter.
fn ret(action: SeccompAction) -> u32 {
    match action {
        SeccompAction::Errno => libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        SeccompAction::Kill => libc::SECCOMP_RET_KILL_PROCESS,
        SeccompAction::Log => libc::SECCOMP_RET_LOG,
    }
}

/// The program of sbx's seccomp listener. With `egress` (`network.mode = "on"` and
/// `"proxy"`): connect(2), sendto(2) with an address, sendmsg(2) and sendmmsg(2) of the native
/// architecture go to sbx's supervisor, which makes the allowed connections out and sets up the
/// allowed datagram destinations (see `egress`). With `files` (`sbx learn`, `--trace-denials`):
/// the calls that name a path, which sbx records and lets run as made (see `intercept::files`).
/// Every other call, and other architectures' calls, run as made: a socket lives in the
/// sandbox's network namespace, where it reaches nothing outside, and a path is held by the
/// mounts and landlock whatever sbx saw.
pub fn interception_program(egress: bool, files: bool) -> BpfProgram {
    let frame = bpf::Frame {
        arch: audit_arch(),
        foreign: libc::SECCOMP_RET_ALLOW,
        x32: cfg!(target_arch = "x86_64").then_some(libc::SECCOMP_RET_ALLOW),
    };
    let notify = libc::SECCOMP_RET_USER_NOTIF;
    let mut table: BTreeMap<u32, Verdict> = BTreeMap::new();
    if files {
        for nr in crate::intercept::PATH_CALLS
            .iter()
            .chain(crate::intercept::LEGACY_PATH_CALLS)
        {
            table.insert(*nr as u32, Verdict::Always(notify));
        }
    }
    if egress {
        // sendto's address pointer is tested on its low half only: a call that slips past (a
        // pointer whose low 32 bits are 0) runs as made, inside the sandbox's network.
        let with_address = vec![vec![Cond {
            arg: 4,
            check: Check::Ne(0),
        }]];
        table.insert(libc::SYS_connect as u32, Verdict::Always(notify));
        table.insert(
            libc::SYS_sendto as u32,
            Verdict::AnyRule(with_address, notify),
        );
        table.insert(libc::SYS_sendmsg as u32, Verdict::Always(notify));
        table.insert(libc::SYS_sendmmsg as u32, Verdict::Always(notify));
    }
    bpf::compile(&frame, &table)
}

/// `AUDIT_ARCH_*` of the architecture sbx is built for (64-bit, little-endian).
fn audit_arch() -> u32 {
    const LE_64: u32 = 0x8000_0000 | 0x4000_0000;
    let machine = if cfg!(target_arch = "aarch64") {
        183 // EM_AARCH64
    } else if cfg!(target_arch = "riscv64") {
        243 // EM_RISCV
    } else {
        62 // EM_X86_64
    };
    machine | LE_64
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

/// What x32 numbers (`nr | 0x40000000`, which carry the x86_64 architecture tag) get. `log`
/// would let the call through: an x32 call is never allowed, so it gets EPERM.
fn x32_answer(action: SeccompAction) -> Option<u32> {
    let deny = match action {
        SeccompAction::Kill => libc::SECCOMP_RET_KILL_PROCESS,
        SeccompAction::Errno | SeccompAction::Log => libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
    };
    cfg!(target_arch = "x86_64").then_some(deny)
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

    let deny = ret(chosen);
    let mut table: BTreeMap<u32, Verdict> = BTreeMap::new();
    let mut denied: Vec<String> = Vec::new();
    for &(name, nr) in DENY_ALWAYS {
        if allowed(name) || (nested && name == "setns") {
            continue;
        }
        table.insert(nr as u32, Verdict::Always(deny));
        denied.push(name.to_string());
    }
    for (name, nr, conds) in conditional_rules(nested) {
        if allowed(name) || cfg.deny.iter().any(|d| d == name) {
            continue;
        }
        if let Verdict::AnyRule(rules, _) = table
            .entry(nr as u32)
            .or_insert_with(|| Verdict::AnyRule(Vec::new(), deny))
        {
            rules.push(conds);
        }
        let label = format!("{name}(conditional)");
        if !denied.contains(&label) {
            denied.push(label);
        }
    }
    // clone3 hides its flags behind a pointer: ENOSYS sends libc back to clone, whose flags
    // the rules above read. A profile that denies clone3 outright gets its own action.
    if !allowed("clone3") && !cfg.deny.iter().any(|d| d == "clone3") {
        table.insert(
            libc::SYS_clone3 as u32,
            Verdict::Always(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        );
    }
    let frame = bpf::Frame {
        arch: audit_arch(),
        foreign: libc::SECCOMP_RET_KILL_PROCESS,
        x32: x32_answer(chosen),
    };
    let mut programs = vec![bpf::compile(&frame, &table)];
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
    let programs = vec![chain(programs)];

    Ok(Some(SeccompPlan {
        programs,
        denied,
        action: chosen,
    }))
}

#[cfg(test)]
mod tests;
