#!/usr/bin/env bash
# What sbx's watchdog costs (it holds memory and processes for the whole sandbox where no cgroup
# is delegated): startup with and without it, in one interleaved hyperfine run, and the CPU the
# supervisor spends while the command idles. See benches/README.md.
#
#   benches/watchdog.sh             STARTUP_RUNS=300 IDLE_SECONDS=10 IDLE_RUNS=3
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
STARTUP_RUNS=${STARTUP_RUNS:-300}
IDLE_SECONDS=${IDLE_SECONDS:-10}
IDLE_RUNS=${IDLE_RUNS:-3}
BENCH_DIR=${BENCH_DIR:-/tmp/sbx-bench}
PY=python3

# shellcheck source=benches/lib/common.sh
. "$here/lib/common.sh"
bench_setup hyperfine python3 setpriv

# The default limits (memory, processes) arm the watchdog; lifting both leaves nothing to watch.
on="$sbx --profile net-off --limit cgroup=off -- /bin/true"
off="$sbx --profile net-off --limit cgroup=off --limit memory=unlimited --limit processes=unlimited -- /bin/true"

log "startup: watchdog armed vs not ($STARTUP_RUNS runs each, interleaved in 10 rounds)"
per=$(((STARTUP_RUNS + 9) / 10))
: >"$res/watchdog-startup.txt"
for round in $(seq 1 10); do
    if ((round % 2)); then pair=(-n on "$on" -n off "$off"); else pair=(-n off "$off" -n on "$on"); fi
    "${as_user[@]}" hyperfine -N -i --style none --warmup 5 --runs "$per" \
        --export-json "$res/watchdog.r$round.json" "${pair[@]}" >/dev/null 2>&1
done
"$PY" - "$res" <<'PY'
import json, glob, statistics, sys
times = {"on": [], "off": []}
for f in glob.glob(sys.argv[1] + "/watchdog.r*.json"):
    for r in json.load(open(f))["results"]:
        times[r["command"]] += r["times"]
on, off = (statistics.median(times[k]) * 1000 for k in ("on", "off"))
print(f"startup, median of {len(times['on'])} runs: watchdog armed {on:.3f} ms, not armed {off:.3f} ms, ratio {on / off:.3f}")
PY

log "idle: supervisor CPU while the command sleeps ${IDLE_SECONDS}s ($IDLE_RUNS runs each)"
"$PY" - "$IDLE_SECONDS" "$IDLE_RUNS" "${as_user[@]}" -- "$sbx" <<'PY'
import os, subprocess, sys, time
secs, runs = float(sys.argv[1]), int(sys.argv[2])
rest = sys.argv[3:]
sep = rest.index("--")
prefix, sbx = rest[:sep], rest[sep + 1]
tick = os.sysconf("SC_CLK_TCK")
def cpu_ms(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1000 / tick
def supervisor(cmd):
    # prefix is setpriv ... env ...: it execs, so the child's pid becomes sbx's.
    p = subprocess.Popen(prefix + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(secs - 0.3)
    used = cpu_ms(p.pid)
    p.wait()
    return used
for name, extra in (("armed", []), ("not armed", ["--limit", "memory=unlimited", "--limit", "processes=unlimited"])):
    samples = [supervisor([sbx, "--limit", "cgroup=off", *extra, "--", "sleep", str(secs)]) for _ in range(runs)]
    # /proc/PID/stat counts in clock ticks (10 ms): the figure is a bound, not a measurement.
    print(f"idle {secs:.0f} s, watchdog {name}: supervisor CPU {min(samples):.0f}-{max(samples):.0f} ms "
          f"(at most {max(samples) / secs / 10:.2f}% of a CPU; the clock tick is {1000 / tick:.0f} ms)")
PY
