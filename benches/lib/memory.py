#!/usr/bin/env python3
"""Peak resident memory of a sandbox tool's own processes (benches/run.sh, comparison c).

    memory.py --label sbx --runs 5 --out FILE.json [--payload-comm sleep] [--copies N] -- CMD...

Starts CMD (for example `setpriv ... sbx -- /usr/bin/sleep 1`) RUNS times. While it runs, it
walks the process tree under CMD's pid every few milliseconds and, for every process except the
payload (a process whose comm is --payload-comm), records VmHWM and VmRSS from
/proc/PID/status and Pss from /proc/PID/smaps_rollup: its largest value (the setup's peak) and
its value in the last sample before the payload ends (what the tool keeps while it waits). For sbx the tree is the supervisor and its
init (PID 1 of the sandbox); for bubblewrap the monitor and its init.

VmHWM is each process's own peak; the sum over the tool's processes is the reported figure (it
counts pages shared between them -- the libc, the binary's text, the copy-on-write pages init
inherits from the supervisor -- once per process, so it is an upper bound). Pss divides shared
pages among their users and is the fairer "what it costs the machine" figure; it is sampled, not a
peak: the largest sum of one sample's processes, and the sum in the last sample. Setpriv and env
exec the next program, so CMD's pid is the tool's first process.

Until the payload runs, the tree is sampled back to back (a sample takes 0.1-0.3 ms), then every
5 ms: a tool may let go of pages during its setup (sbx unmaps its code before it clones), and
the largest sum can be the first process alone, before any child exists. Samples taken while
the first process is still setpriv or env are left out.

A child that shares its parent's address space (sbx's payload between its spawn and its
`execve`: CLONE_VM, as `posix_spawn`) is counted once, with its parent: its status and
smaps_rollup show the same memory again. kcmp(2) tells (KCMP_VM); it needs ptrace access to
both processes (root has it; sbx's init is not dumpable), and where it is refused or missing
every process counts, which memory.py says once on stderr.
"""

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time


# Programs that exec the tool: while one is in the tree, the tool has not started.
LAUNCHERS = ("setpriv", "env")


def read_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("Name", "VmHWM", "VmRSS", "PPid", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = value.strip()
    except OSError:
        return None
    return out


def read_pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def rss_by_mapping(pid, top=5):
    """Resident KiB per mapped file ([heap], [stack], [anon] for the rest), largest first."""
    agg = {}
    current = None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):
                    fields = line.split()
                    current = fields[5] if len(fields) > 5 else "[anon]"
                elif first == "Rss:":
                    agg[current] = agg.get(current, 0) + int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return []
    return sorted(((k, v) for k, v in agg.items() if v), key=lambda kv: -kv[1])[:top]


_libc = ctypes.CDLL(None, use_errno=True)
SYS_KCMP = {"x86_64": 312, "aarch64": 272}.get(os.uname().machine)
KCMP_VM = 1


_kcmp_refused = []


def same_memory(pid, other):
    """True when pid and other share one address space (kcmp answers 0)."""
    if SYS_KCMP is None or other is None:
        return False
    r = _libc.syscall(SYS_KCMP, pid, other, KCMP_VM, 0, 0)
    if r < 0 and ctypes.get_errno() in (1, 13, 38) and not _kcmp_refused:
        # EPERM, EACCES, ENOSYS: a process sharing its parent's memory would count twice.
        _kcmp_refused.append(True)
        print(f"memory.py: kcmp refused ({os.strerror(ctypes.get_errno())}): a child sharing "
              "its parent's memory counts twice", file=sys.stderr)
    return r == 0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def kib(value):
    # "1234 kB"
    try:
        return int(value.split()[0])
    except (AttributeError, IndexError, ValueError):
        return 0


def one_run(cmd, payload_comm, cwd, copies=1):
    procs = [subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(copies)]
    per_pid = {}  # pid -> {name, hwm, rss, pss}
    saw_payload = False
    peak_sum = 0
    while any(p.poll() is None for p in procs):
        # One snapshot of the trees; it only counts once every copy's payload runs, so that every
        # process of the tool has exec'd into its final image (before that, the first process
        # may still be setpriv or env, and the payload a not-yet-exec'd fork of init).
        snapshot, stack, payloads = [], [(p.pid, None) for p in procs], 0
        while stack:
            pid, parent = stack.pop()
            st = read_status(pid)
            if st is None:
                continue
            kids = children(pid)
            stack.extend((k, pid) for k in kids)
            if st.get("Name") == payload_comm and not kids:
                payloads += 1
                continue
            if same_memory(pid, parent):
                continue
            snapshot.append((pid, st, read_pss_kib(pid)))
        payload_now = payloads >= copies
        exec_done = snapshot and all(st.get("Name") not in LAUNCHERS for _, st, _ in snapshot)
        # The peak of the sum, sample by sample, from the tool's first instruction on: a sum of
        # each process's own peak would count a page twice when the supervisor lets go of it
        # (sys::release_code) and it becomes init's alone.
        if exec_done and all(pss is not None for _, _, pss in snapshot):
            peak_sum = max(peak_sum, sum(pss for _, _, pss in snapshot))
        if payload_now:
            saw_payload = True
            for pid, st, pss in snapshot:
                entry = per_pid.setdefault(pid, {"name": st.get("Name", "?"), "hwm": 0, "rss": 0, "pss": 0})
                entry["hwm"] = max(entry["hwm"], kib(st.get("VmHWM")))
                if kib(st.get("VmRSS")) >= entry["rss"]:
                    entry["rss"] = kib(st.get("VmRSS"))
                    entry["rss_anon"] = kib(st.get("RssAnon"))
                    entry["rss_file"] = kib(st.get("RssFile"))
                    entry["mappings"] = rss_by_mapping(pid)
                if pss is not None:
                    entry["pss"] = max(entry["pss"], pss)
                    entry["pss_last"] = pss
        if saw_payload:
            time.sleep(0.005)
    codes = [p.wait() for p in procs]
    rc = next((c for c in codes if c != 0), 0)
    return {
        "exit": rc,
        "copies": copies,
        "saw_payload": saw_payload,
        "processes": [dict(pid=p, **v) for p, v in sorted(per_pid.items())],
        "hwm_kib": sum(v["hwm"] for v in per_pid.values()),
        "rss_kib": sum(v["rss"] for v in per_pid.values()),
        "pss_kib": peak_sum,
        # The last sample while the payload still ran: what the tool keeps while it waits
        # (sbx drops its setup's code mappings after SETTLE_MS, see src/sys/process.rs).
        "pss_waiting_kib": sum(v.get("pss_last", 0) for v in per_pid.values()),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", required=True)
    ap.add_argument("--payload-comm", default="sleep")
    ap.add_argument("--cwd", default=None)
    ap.add_argument("--copies", type=int, default=1,
                    help="start this many copies at once; the figures are sums over all of them")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        ap.error("no command")
    runs = [one_run(cmd, args.payload_comm, args.cwd, args.copies) for _ in range(args.runs)]
    ok = [r for r in runs if r["exit"] == 0 and r["saw_payload"]]
    summary = {
        "label": args.label,
        "command": cmd,
        "copies": args.copies,
        "runs": runs,
        "ok_runs": len(ok),
        "max_hwm_kib": max((r["hwm_kib"] for r in ok), default=None),
        "median_hwm_kib": statistics.median([r["hwm_kib"] for r in ok]) if ok else None,
        "max_pss_kib": max((r["pss_kib"] for r in ok), default=None),
        "max_pss_waiting_kib": max((r["pss_waiting_kib"] for r in ok), default=None),
        "nprocs": max(len(r["processes"]) for r in ok) if ok else None,
    }
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    if not ok:
        print(f"memory.py: {args.label}: no successful run (exit codes {[r['exit'] for r in runs]})",
              file=sys.stderr)
        return 1
    procs = ", ".join(f"{p['name']} {p['hwm']} KiB" for p in ok[-1]["processes"][:4])
    if len(ok[-1]["processes"]) > 4:
        procs += f", … ({len(ok[-1]['processes'])} processes)"
    print(f"  {args.label}: peak sum VmHWM {summary['max_hwm_kib']} KiB "
          f"(Pss {summary['max_pss_kib']} KiB at its peak, {summary['max_pss_waiting_kib']} KiB while "
          f"the payload runs) over {len(ok)} runs; last run: {procs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
