//! The deny list as classic BPF, with the syscall number found by binary search.
//!
//! seccompiler compiles a rule set to a linear chain: every call not on the list walks past
//! every listed number. The kernel pays for that length at install time, not only per call:
//! it JIT-compiles every instruction and emulates the filter for each syscall number of each
//! architecture to fill its constant-action cache, so a long chain costs every start (the
//! figures are in benches/README.md, "Measured design choices"). Here
//! the number line is cut into runs with one answer each (neighbouring denied numbers share
//! one), found by a balanced tree of `jge` tests: a call reaches its answer in about
//! log2(runs) steps, and the program is less than half as long.
//!
//! Layout: architecture check, number load, x32 guard (x86_64), then the tree. An inner
//! node is `jge K` jumping over its left subtree, or, when that is out of a conditional
//! jump's 255-instruction reach, `jge K` onto a `ja`. Every leaf ends in its own return.

use std::collections::BTreeMap;

use seccompiler::sock_filter;

const LD_W_ABS: u16 = 0x20;
const JA: u16 = 0x05;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
/// The low 32 bits of argument `i` (little-endian; the ABI passes these arguments as int).
fn arg_low(i: u8) -> u32 {
    16 + 8 * u32::from(i)
}

/// A test of the low 32 bits of one argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Eq(u32),
    Ne(u32),
    /// Any bit of the mask set (`arg & mask != 0`).
    AnyBit(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cond {
    pub arg: u8,
    pub check: Check,
}

/// What a listed syscall gets: `ret` always, or `ret` when all conditions of any one rule
/// hold (and the call is allowed otherwise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Always(u32),
    AnyRule(Vec<Vec<Cond>>, u32),
}

/// The filter's frame: who it is for and what happens outside the table.
pub struct Frame {
    /// `AUDIT_ARCH_*` of the native architecture; any other gets `foreign`.
    pub arch: u32,
    pub foreign: u32,
    /// x86_64 only: what numbers with the x32 bit (`nr >= 0x40000000`) get.
    pub x32: Option<u32>,
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// A conditional jump's offset; blocks are built small enough that this never fails.
fn near(offset: usize) -> u8 {
    u8::try_from(offset).expect("a rule block longer than a BPF jump")
}

pub fn compile(frame: &Frame, table: &BTreeMap<u32, Verdict>) -> Vec<sock_filter> {
    let mut out = vec![
        stmt(LD_W_ABS, ARCH),
        jump(JEQ_K, frame.arch, 1, 0),
        stmt(RET_K, frame.foreign),
        stmt(LD_W_ABS, NR),
    ];
    if let Some(x32) = frame.x32 {
        out.push(jump(JGE_K, 0x4000_0000, 0, 1));
        out.push(stmt(RET_K, x32));
    }
    tree(&segments(table), &mut out);
    out
}

/// The number line cut into runs with one answer each: (first number, answer; None is
/// allow). Neighbouring numbers with the same unconditional answer share a run.
fn segments(table: &BTreeMap<u32, Verdict>) -> Vec<(u32, Option<&Verdict>)> {
    let mut out: Vec<(u32, Option<&Verdict>)> = vec![(0, None)];
    let mut next = 0u32;
    for (&nr, verdict) in table {
        let last = out.last().map(|s| s.1);
        let extends =
            nr == next && matches!(verdict, Verdict::Always(_)) && last == Some(Some(verdict));
        if !extends {
            if nr != next {
                out.push((next, None));
            }
            out.push((nr, Some(verdict)));
        }
        next = nr.saturating_add(1);
    }
    out.push((next, None));
    // A run of allow may have been opened at 0 and at once replaced: drop empty runs.
    out.dedup_by(|b, a| {
        if a.0 == b.0 {
            *a = *b;
            true
        } else {
            false
        }
    });
    out
}

/// The subtree for `segs` (sorted, at least one); the accumulator holds the syscall number.
fn tree(segs: &[(u32, Option<&Verdict>)], out: &mut Vec<sock_filter>) {
    if let [(_, verdict)] = segs {
        leaf(*verdict, out);
        return;
    }
    let (left, right) = segs.split_at(segs.len() / 2);
    let mut low = Vec::new();
    tree(left, &mut low);
    // nr >= the right half's first number: jump over the left half.
    match u8::try_from(low.len()) {
        Ok(over) => out.push(jump(JGE_K, right[0].0, over, 0)),
        Err(_) => {
            // Too far for a conditional jump: go through an unconditional one.
            out.push(jump(JGE_K, right[0].0, 0, 1));
            out.push(stmt(JA, low.len() as u32));
        }
    }
    out.extend(low);
    tree(right, out);
}

/// One run's answer; always ends in a return.
fn leaf(verdict: Option<&Verdict>, out: &mut Vec<sock_filter>) {
    let allow = libc::SECCOMP_RET_ALLOW;
    let (rules, ret) = match verdict {
        None => return out.push(stmt(RET_K, allow)),
        Some(Verdict::Always(ret)) => return out.push(stmt(RET_K, *ret)),
        Some(Verdict::AnyRule(rules, ret)) => (rules, *ret),
    };
    for rule in rules {
        let mut code = Vec::new();
        let mut loaded = None;
        for cond in rule {
            // The accumulator still holds this argument unless a mask changed it.
            if loaded != Some(cond.arg) {
                code.push(stmt(LD_W_ABS, arg_low(cond.arg)));
                loaded = Some(cond.arg);
            }
            code.push(match cond.check {
                Check::Eq(v) | Check::Ne(v) => jump(JEQ_K, v, 0, 0),
                Check::AnyBit(mask) => jump(JSET_K, mask, 0, 0),
            });
        }
        code.push(stmt(RET_K, ret));
        // A failed condition jumps past this rule's return, to the next rule.
        let end = code.len();
        let mut checks = rule.iter().map(|c| c.check);
        for (i, ins) in code.iter_mut().enumerate() {
            if ins.code != JEQ_K && ins.code != JSET_K {
                continue;
            }
            let to_next = near(end - i - 1);
            match checks.next() {
                Some(Check::Ne(_)) => ins.jt = to_next,
                _ => ins.jf = to_next,
            }
        }
        out.extend(code);
    }
    out.push(stmt(RET_K, allow));
}
