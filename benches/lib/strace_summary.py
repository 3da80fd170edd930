#!/usr/bin/env python3
"""Summarises `strace -f -tt -T -o FILE` traces of sandbox startups (benches/startup-profile.sh).

    strace_summary.py LABEL=TRACE[,TRACE...] [LABEL=TRACE[,TRACE...]...]

Several traces of one label are runs of the same command: the first is shown in detail, the
timeline shows the median duration of each segment over all of them.

For each trace: the processes (role by depth in the process tree: 0 = the tool's first process,
1 = the process in the new namespaces, 2 = the payload), how many syscalls each made and how long
each lived; the top syscalls per process; a timeline between milestones (namespaces created, id
maps written, first mount, pivot_root, landlock, seccomp, payload exec, exit) with the syscalls
made in each segment; and a list of things worth a look (files read on the hot path, repeated
calls). Then a side-by-side count per syscall across the traces.

Times under strace are inflated: every syscall stops the tracee twice. Use them to rank steps,
the syscall counts to compare tools, and perf stat / hyperfine for real durations.
"""

import collections
import re
import sys

LINE = re.compile(r"^(\d+)\s+(\d+):(\d+):(\d+\.\d+)\s+(.*)$")
CALL = re.compile(r"^([a-z_0-9]+)\((.*)$")
RESUMED = re.compile(r"^<\.\.\. ([a-z_0-9]+) resumed>")


def ts(h, m, s):
    return int(h) * 3600 + int(m) * 60 + float(s)


class Proc:
    def __init__(self, pid):
        self.pid = pid
        self.parent = None
        self.first = None
        self.last = None
        self.calls = collections.Counter()
        self.n = 0
        self.execs = []


def parse(path):
    procs = {}
    events = []  # (time, pid, name, text)
    with open(path, errors="replace") as f:
        for raw in f:
            m = LINE.match(raw.rstrip("\n"))
            if not m:
                continue
            pid = int(m.group(1))
            t = ts(m.group(2), m.group(3), m.group(4))
            rest = m.group(5)
            p = procs.setdefault(pid, Proc(pid))
            p.first = t if p.first is None else p.first
            p.last = t
            if rest.startswith("+++") or rest.startswith("---") or RESUMED.match(rest):
                # clone's child pid shows up in the resumed line
                r = RESUMED.match(rest)
                if r and r.group(1) in ("clone", "clone3", "fork", "vfork"):
                    cm = re.search(r"=\s*(\d+)", rest)
                    if cm:
                        events.append((t, pid, "clone-ret", cm.group(1)))
                continue
            c = CALL.match(rest)
            if not c:
                continue
            name = c.group(1)
            p.calls[name] += 1
            p.n += 1
            events.append((t, pid, name, rest))
            if name == "execve":
                p.execs.append(rest)
    # Parents. A clone's return value is the child's pid in the *caller's* PID namespace, which
    # is not the host pid strace prints once the caller is inside a new PID namespace; so match a
    # return value to a traced pid where it exists, and otherwise give the child to the process
    # whose clone call came last before the child's first line.
    clone_calls = [(t, pid) for t, pid, name, text in events if name in ("clone", "clone3", "fork", "vfork")]
    for t, pid, name, text in events:
        if name in ("clone", "clone3", "fork", "vfork", "clone-ret"):
            m = re.search(r"=\s*(\d+)", text) if name != "clone-ret" else None
            child = int(text) if name == "clone-ret" else (int(m.group(1)) if m else None)
            if child in procs and procs[child].parent is None and child != pid:
                procs[child].parent = pid
    order = sorted(procs.values(), key=lambda p: p.first)
    for p in order[1:]:
        if p.parent is None:
            before = [cpid for t, cpid in clone_calls if t <= p.first and cpid != p.pid]
            p.parent = before[-1] if before else order[0].pid
    return procs, events


def depth(procs, pid):
    d = 0
    while procs[pid].parent is not None and d < 10:
        pid = procs[pid].parent
        d += 1
    return d


ROLES = {0: "supervisor / launcher (host namespaces)", 1: "init (new namespaces, PID 1)", 2: "payload"}


def ms(x):
    return f"{x * 1000:7.2f} ms"


MILESTONES = [
    ("namespaces created (clone/unshare with CLONE_NEW*)", lambda n, t: n in ("clone", "clone3", "unshare") and "CLONE_NEW" in t),
    ("uid_map written", lambda n, t: n in ("openat", "open") and "uid_map" in t),
    ("first mount", lambda n, t: n in ("mount", "fsmount", "open_tree", "move_mount")),
    ("pivot_root (last)", None),
    ("landlock_restrict_self", lambda n, t: n == "landlock_restrict_self"),
    ("payload fork (clone without CLONE_NEW*)", None),
    ("seccomp filter installed (first)", lambda n, t: n == "seccomp" or ("PR_SET_SECCOMP" in t)),
    ("payload execve", None),
    ("payload exit", None),
]


def timeline(procs, events):
    t0 = events[0][0] if events else 0
    marks = []
    seen = set()
    last_pivot = None
    payload_exec = None
    fork_no_ns = None
    root = min(procs.values(), key=lambda p: p.first).pid
    for i, (t, pid, name, text) in enumerate(events):
        if name == "pivot_root":
            last_pivot = i
        if name == "execve" and pid != root and payload_exec is None and depth(procs, pid) >= 1:
            payload_exec = i
        if name in ("clone", "clone3", "fork", "vfork") and "CLONE_NEW" not in text and pid != root \
                and fork_no_ns is None:
            fork_no_ns = i
        for label, pred in MILESTONES:
            if pred and label not in seen and pred(name, text):
                seen.add(label)
                marks.append((i, label))
    if last_pivot is not None:
        marks.append((last_pivot, "pivot_root (last)"))
    if fork_no_ns is not None:
        marks.append((fork_no_ns, "payload fork (clone without CLONE_NEW*)"))
    if payload_exec is not None:
        marks.append((payload_exec, "payload execve"))
        ppid = events[payload_exec][1]
        ends = [i for i, e in enumerate(events) if e[1] == ppid and e[2] == "exit_group"]
        if ends:
            marks.append((ends[-1], "payload exit"))
    marks.sort()
    rows = []
    prev_i, prev_label = 0, "start (tool execve)"
    for i, label in marks + [(len(events) - 1, "end (last syscall)")]:
        if i < prev_i:
            continue
        seg = events[prev_i:i]
        by_pid = collections.Counter(e[1] for e in seg)
        rows.append((events[prev_i][0] - t0, events[i][0] - events[prev_i][0], len(seg), prev_label, label,
                     ", ".join(f"{pid}:{n}" for pid, n in by_pid.most_common())))
        prev_i, prev_label = i, label
    return rows


def notable(procs, events):
    out = []
    opened = collections.Counter()
    for t, pid, name, text in events:
        if name in ("openat", "open", "openat2", "statx", "newfstatat", "access", "readlink", "connect"):
            m = re.search(r'"([^"]+)"', text)
            if m:
                opened[(name, m.group(1))] += 1
    interesting = ("/proc/self/mountinfo", "/proc/self/maps", "/etc/passwd", "/etc/group",
                   "nscd", "cgroup", "/etc/nsswitch.conf", "/sys/", "ld.so", ".toml", "/proc/sys")
    for (name, path), n in sorted(opened.items(), key=lambda x: (-x[1], x[0])):
        if any(k in path for k in interesting):
            out.append(f"{name} {path}" + (f" ×{n}" if n > 1 else ""))
    tot = collections.Counter()
    for p in procs.values():
        tot.update(p.calls)
    caps = sum(1 for e in events if e[2] == "prctl" and "PR_CAPBSET_DROP" in e[3])
    if caps:
        out.append(f"prctl(PR_CAPBSET_DROP) ×{caps} (one call per capability)")
    nnp = sum(1 for e in events if e[2] == "prctl" and "PR_SET_NO_NEW_PRIVS" in e[3])
    if nnp > 1:
        out.append(f"prctl(PR_SET_NO_NEW_PRIVS) ×{nnp}")
    for name in ("seccomp", "landlock_add_rule", "mkdir", "mount", "open_tree", "move_mount", "mount_setattr",
                 "symlink", "openat2", "umount2", "pivot_root", "brk", "mmap", "mprotect"):
        if tot[name]:
            out.append(f"{name} ×{tot[name]}")
    return out


def summarise(label, runs):
    """runs: [(procs, events)] of the same command; the first one is shown in detail."""
    procs, events = runs[0]
    total = sum(p.n for p in procs.values())
    spans = sorted((max(p.last for p in pr.values()) - min(p.first for p in pr.values())) for pr, _ in runs if pr)
    span = spans[len(spans) // 2] if spans else 0
    totals = sorted(sum(p.n for p in pr.values()) for pr, _ in runs)
    print(f"\n=== {label}: {total} syscalls in {len(procs)} processes; median {span * 1000:.1f} ms under "
          f"strace over {len(runs)} traced runs (syscall totals {totals[0]}..{totals[-1]}) ===")
    print(f"  {'pid':>7}  {'role':<42} {'syscalls':>8}  {'lived':>10}  top syscalls")
    for p in sorted(procs.values(), key=lambda p: p.first):
        d = depth(procs, p.pid)
        role = ROLES.get(d, f"depth {d}")
        top = ", ".join(f"{n} {c}" for n, c in p.calls.most_common(6))
        print(f"  {p.pid:>7}  {role:<42} {p.n:>8}  {ms(p.last - p.first)}  {top}")
        if d == 2 and p.execs:
            idx = [i for i, e in enumerate(events) if e[1] == p.pid and e[2] == "execve"]
            before = sum(1 for e in events[:idx[0]] if e[1] == p.pid)
            print(f"  {'':>7}  {'  of which before its execve (sandbox code)':<42} {before:>8}")
    # Timeline: median over the runs whose segments match the first run's.
    lines = [timeline(pr, ev) for pr, ev in runs]
    ref = lines[0]
    same = [tl for tl in lines if [(r[3], r[4]) for r in tl] == [(r[3], r[4]) for r in ref]]
    print(f"\n  timeline, median of {len(same)} runs (offset, duration, syscalls, segment; pid:count of the first run)")
    for k, row in enumerate(ref):
        starts = sorted(tl[k][0] for tl in same)
        durs = sorted(tl[k][1] for tl in same)
        print(f"  +{ms(starts[len(starts) // 2])}  {ms(durs[len(durs) // 2])}  {row[2]:>4}  {row[3]} -> {row[4]}   [{row[5]}]")
    print("\n  worth a look:")
    for line in notable(procs, events):
        print(f"    - {line}")


def main():
    traces = []
    for arg in sys.argv[1:]:
        label, _, paths = arg.partition("=")
        runs = [parse(p) for p in paths.split(",") if p]
        summarise(label, runs)
        traces.append((label, runs[0][0], runs[0][1]))
    if len(traces) > 1:
        print("\n=== syscall counts side by side (first traced run of each) ===")
        totals = []
        for label, procs, _ in traces:
            c = collections.Counter()
            for p in procs.values():
                c.update(p.calls)
            totals.append(c)
        names = sorted(set().union(*totals), key=lambda n: (-totals[0][n], n))
        print("  " + f"{'syscall':<24}" + "".join(f"{lab:>10}" for lab, _, _ in traces))
        print("  " + f"{'TOTAL':<24}" + "".join(f"{sum(c.values()):>10}" for c in totals))
        for n in names:
            print("  " + f"{n:<24}" + "".join(f"{c[n]:>10}" for c in totals))


if __name__ == "__main__":
    main()
