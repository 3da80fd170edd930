#!/usr/bin/env python3
"""Table of benches/network.sh: reads RES/bulk.MODE, RES/conn.MODE, RES/startup.r*.json.

  netreport.py RES OUT.md MODE=LABEL...

Prints the table and writes it, with the date, kernel and CPU, to OUT.md. Medians throughout;
every ratio is to the mode `none` (no sandbox), whose row reads 1.000.
"""
import glob
import json
import os
import statistics
import sys

from report import system_info  # benches/lib/report.py: date, kernel, CPU as run.sh prints them

HEADER = ["measurement", "median", "range", "ratio to no sandbox", "target", "met"]
BULK_TARGET = 0.8  # the target on loopback-sized transfers: ≥ 0.8× no sandbox
STARTUP_TARGET_MS = 1.0  # --net on at most +1 ms over --net none


def read_columns(path):
    """The lines of whitespace-separated numbers of PATH, as columns; [] if there is none."""
    try:
        with open(path) as f:
            return [list(col) for col in zip(*([float(x) for x in line.split()] for line in f if line.strip()))]
    except FileNotFoundError:
        return []


def main():
    res, md_out, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
    modes = [p.split("=", 1) for p in pairs]
    rows = []

    def failed(name):
        return os.path.exists(f"{res}/failed.{name}")

    # Bulk throughput, MB/s (10^6 bytes): higher is better, ratio = mode / no sandbox.
    with open(f"{res}/bulk.size") as f:
        size = int(f.read())
    rate, stream, first = {}, {}, {}
    for name, _ in modes:
        cols = read_columns(f"{res}/bulk.{name}")
        if cols:
            rate[name] = [size / t / 1e6 for t in cols[0]]
            stream[name] = [size / (t - f) / 1e6 for t, f in zip(*cols)]
            first[name] = [f * 1e3 for f in cols[1]]
    base = statistics.median(rate["none"]) if "none" in rate else None
    sbase = statistics.median(stream["none"]) if "none" in stream else None
    for name, label in modes:
        sbx_net = name.startswith(("on", "proxy"))  # the new modes, which the target is about
        target = f"≥ {BULK_TARGET:.2f}" if sbx_net else "info"
        if failed(name) or name not in rate:
            rows.append([f"bulk: {label}", "failed", "", "", target, "NO" if sbx_net else "—"])
            continue
        med = statistics.median(rate[name])
        ratio = med / base if base else float("nan")
        met = ("yes" if ratio >= BULK_TARGET else "NO") if sbx_net else "—"
        rows.append([f"bulk: {label}", f"{med:,.0f} MB/s", f"{min(rate[name]):,.0f}–{max(rate[name]):,.0f}",
                     f"{ratio:.3f}", target, met])
    for name, label in modes:
        if name in stream:
            med = statistics.median(stream[name])
            rows.append([f"  diag: streaming: {label}", f"{med:,.0f} MB/s",
                         f"first byte after {statistics.median(first[name]):,.1f} ms",
                         f"{med / sbase:.3f}" if sbase else "", "info", "—"])

    # Connection latency, µs per connection: lower is better, ratio = mode / no sandbox.
    conn = {name: read_columns(f"{res}/conn.{name}") for name, _ in modes}
    full = max((len(c[0]) for c in conn.values() if c), default=0)
    for col, what in ((1, "connect: {}"),
                      (0, "  diag: connect(2) only: {}")):
        lat = {name: sorted(c[col]) for name, c in conn.items() if c}
        base = statistics.median(lat["none"]) if "none" in lat else None
        for name, label in modes:
            if name not in lat:
                rows.append([what.format(label), "failed", "", "", "info", "—"])
                continue
            xs = lat[name]
            med = statistics.median(xs)
            p10, p90 = xs[len(xs) // 10], xs[len(xs) * 9 // 10]
            short = f"n={len(xs)}, " if len(xs) < full else ""  # stopped by the time cap
            rows.append([what.format(label), f"{med:,.0f} µs", f"{short}p10–p90 {p10:,.0f}–{p90:,.0f}",
                         f"{med / base:.3f}" if base else "", "info", "—"])

    # Startup: hyperfine rounds merged; the difference to --net none is what the target is about.
    times = {}
    for path in sorted(glob.glob(f"{res}/startup.r*.json")):
        with open(path) as f:
            for r in json.load(f)["results"]:
                times.setdefault(r["command"], []).extend(r["times"])
    if "none" in times:
        none = statistics.median(times["none"]) * 1e3
        for name, what in (("none", "--net none"), ("on", "--net on"),
                           ("proxy", "--net proxy --allow x.test:443"), ("host", "--net host")):
            if name not in times:
                continue
            ts = sorted(t * 1e3 for t in times[name])
            med = statistics.median(ts)
            diff = med - none
            p10, p90 = ts[len(ts) // 10], ts[len(ts) * 9 // 10]
            if name == "none":
                value, target, met = f"{med:.2f} ms", "reference", "—"
            else:
                value = f"{med:.2f} ms ({diff:+.2f} ms)"
                target = f"≤ +{STARTUP_TARGET_MS:.0f} ms" if name == "on" else "info"
                met = ("yes" if diff <= STARTUP_TARGET_MS else "NO") if name == "on" else "—"
            rows.append([f"startup: {what} (vs none)", value, f"p10–p90 {p10:.2f}–{p90:.2f}",
                         f"{med / none:.3f} (to none)", target, met])

    notes = [n for n in os.environ.get("BENCH_NOTES", "").split("\n") if n]
    info = system_info()

    widths = [max(len(r[i]) for r in [HEADER] + rows) for i in range(len(HEADER))]
    print()
    print(f"sbx network benchmarks — {info['date']} — kernel {info['kernel']} — {info['cpu']}")
    print()
    for k, r in enumerate([HEADER] + rows):
        print("  ".join(c.rjust(widths[i]) if i in (1, 2, 3) else c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
    print()
    for n in notes:
        print(f"  * {n}")

    esc = lambda s: s.replace("|", "\\|")
    md = [
        "# sbx network benchmark results",
        "",
        f"- date: {info['date']}",
        f"- kernel: {info['kernel']}",
        f"- CPU: {info['cpu']}",
        f"- sbx: {os.environ.get('BENCH_SBX_VERSION', '?')}; {os.environ.get('BENCH_HYPERFINE_VERSION', 'hyperfine ?')}",
        f"- run as: {os.environ.get('BENCH_USER', '?')}, produced by `benches/network.sh`",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join(["---", "---:", "---:", "---:", "---", "---"]) + "|",
    ]
    md += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    md += ["", "Bulk: higher is better; connect and startup: lower is better. Medians of all runs.", ""]
    md += [f"- {n}" for n in notes] + [""]
    os.makedirs(os.path.dirname(os.path.abspath(md_out)), exist_ok=True)
    with open(md_out, "w") as f:
        f.write("\n".join(md))
    print()
    print(f"written: {md_out}")


if __name__ == "__main__":
    main()
