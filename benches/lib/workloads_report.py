#!/usr/bin/env python3
"""The table of benches/workloads.sh: medians and ratios to no sandbox, and the SKIP rows.

    workloads_report.py RESULTS_DIR MARKDOWN_OUT

RESULTS_DIR holds times.tsv (workload, tool, run, seconds, exit status: one line per timed run)
and skips.tsv (workload, reason). Settings and notes come from BENCH_* environment variables set
by workloads.sh. A missed target or a failed run is reported, never an error.
"""

import os
import platform
import statistics
import sys
import time

TARGET = 1.03
ORDER = ["cargo", "make", "pytest", "npm", "git-clone", "git-log"]
WHAT = {
    "cargo": "`cargo build --offline --release` of ripgrep (sbx `--profile cargo`)",
    "make": "`make -j2 linux` of lua5.4 from Debian sources (sbx `--profile make`)",
    "pytest": "`pytest` of attrs' own test suite, no network (sbx default profile, the python profile's environment)",
    "npm": "`npm ci --offline` of express with its dev dependencies (sbx default profile, the node profile's environment)",
    "git-clone": "`git clone --local --no-hardlinks` of a generated repository (sbx default profile)",
    "git-log": "`git log -p | wc -l` of the same clone (sbx default profile)",
}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    res, out = sys.argv[1], sys.argv[2]
    runs = {}
    with open(os.path.join(res, "times.tsv")) as f:
        next(f)
        for line in f:
            name, tool, _run, sec, status = line.rstrip("\n").split("\t")
            e = runs.setdefault(name, {}).setdefault(tool, {"t": [], "fail": 0})
            e["t"].append(float(sec))
            e["fail"] += int(status) != 0
    skips = {}
    with open(os.path.join(res, "skips.tsv")) as f:
        for line in f:
            name, reason = line.rstrip("\n").split("\t", 1)
            skips[name] = reason

    head = ["workload", "no sandbox", "sbx", "sbx / none", "bwrap", "bwrap / none",
            f"sbx target ≤ {TARGET:.2f}"]
    rows = []
    for name in ORDER + sorted(set(runs) - set(ORDER)):
        if name in skips:
            rows.append([name, "SKIP", "SKIP", "—", "SKIP", "—", "SKIP: " + skips[name]])
            continue
        if name not in runs:
            continue
        r = runs[name]

        def med(tool):
            e = r.get(tool)
            return statistics.median(e["t"]) if e and e["t"] else None

        def cell(tool):
            e = r.get(tool)
            if not e or not e["t"]:
                return "—"
            s = f"{med(tool):.2f} s ({min(e['t']):.2f}–{max(e['t']):.2f})"
            return s + (f", {e['fail']} failed" if e["fail"] else "")

        def rat(tool):
            a, b = med(tool), med("none")
            return a / b if a is not None and b else None

        fails = sum(e["fail"] for e in r.values())
        rs, rb = rat("sbx"), rat("bwrap")
        if fails:
            met = "FAILED runs: see notes"
        elif rs is None:
            met = "—"
        else:
            met = "yes" if rs <= TARGET else "NO"
        rows.append([name, cell("none"), cell("sbx"), "—" if rs is None else f"{rs:.3f}",
                     cell("bwrap"), "—" if rb is None else f"{rb:.3f}", met])

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    table = "\n".join(lines)
    print(table)

    env = os.environ.get
    md = ["# sbx workload benchmark results", "",
          f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
          f"- kernel: {platform.release()}",
          f"- CPU: {cpu_model()}, {os.cpu_count()} CPUs",
          f"- sbx: {env('BENCH_SBX_VERSION', '?')}; {env('BENCH_BWRAP_VERSION', '?')}",
          f"- run as: {env('BENCH_USER', '?')}, produced by `benches/workloads.sh`",
          f"- inputs: {env('BENCH_VERSIONS', '?')} (cached in {env('BENCH_CACHE', '?')})",
          f"- {env('BENCH_RUNS', '?')} timed runs per command after {env('BENCH_WARMUP', '?')} untimed, "
          "interleaved (the order of no sandbox / sbx / bwrap rotating every run), each from a fresh "
          "copy of its tree; cells are the median wall time (min–max)",
          "", table, "",
          "Ratios are medians over the no-sandbox median (lower is better); sbx's and bwrap's times "
          "include their startup.", ""]
    md += [f"- {WHAT[n]}" for n in ORDER]
    md += [f"- {n}" for n in env("BENCH_NOTES", "").splitlines() if n]
    with open(out, "w") as f:
        f.write("\n".join(md) + "\n")
    print(f"\nwritten to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
