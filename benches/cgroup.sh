#!/usr/bin/env bash
# What a run's own cgroup costs: sbx started from a delegated cgroup v2 subtree, with the run's
# cgroup (`--limit cgroup=required`) and without (`cgroup=off`), in one interleaved hyperfine
# run. The limits are lifted so that no controller is needed (this covers hosts whose hierarchy
# has none): what is measured is the cgroup's creation, the sandbox's start in it and its
# removal. See benches/README.md ("Runs in a cgroup").
#
#   benches/cgroup.sh             STARTUP_RUNS=200 (as root: it delegates a subtree to the user)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
STARTUP_RUNS=${STARTUP_RUNS:-200}
BENCH_DIR=${BENCH_DIR:-/tmp/sbx-bench}
PY=python3

# shellcheck source=benches/lib/common.sh
. "$here/lib/common.sh"
bench_setup hyperfine python3 setpriv

((EUID == 0)) || die "run as root: it delegates a cgroup subtree to uid $BENCH_UID"
mount=
for m in /sys/fs/cgroup /sys/fs/cgroup/unified; do
    if [[ $(stat -f -c %T "$m" 2>/dev/null) == cgroup2fs ]]; then mount=$m; break; fi
done
[[ -n $mount ]] || die "no cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified"
cg=$mount/sbx-bench-cgroup-$$
mkdir "$cg"
# Kills what is left in the subtree (a run interrupted, a janitor still closing its watch),
# then removes it, deepest first, retrying for up to 2 s while the killed processes go.
cleanup() {
    echo 1 >"$cg/cgroup.kill" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        find "$cg" -depth -mindepth 1 -type d -exec rmdir {} + 2>/dev/null || true
        rmdir "$cg" 2>/dev/null && return
        sleep 0.02
    done
    echo "cgroup.sh: could not remove $cg" >&2
}
trap cleanup EXIT
for f in "" cgroup.procs cgroup.subtree_control cgroup.threads; do
    chown "$BENCH_UID:$BENCH_GID" "$cg/$f"
done

common="--profile net-off --limit memory=unlimited --limit processes=unlimited"
with="$sbx $common --limit cgroup=required -- /bin/true"
without="$sbx $common --limit cgroup=off -- /bin/true"
# in_cgroup CMD...: CMD (and all it starts) inside the delegated subtree; the move is root's
# (it leaves the root cgroup), then CMD drops to the user.
in_cgroup() { sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$cg" "${as_user[@]}" "$@"; }
# shellcheck disable=SC2086  # the command string is split on purpose, as hyperfine -N does
in_cgroup $with >/dev/null 2>&1 || die "sbx cannot run with its own cgroup in $cg: $with"

log "startup from $cg: the run's own cgroup vs none ($STARTUP_RUNS runs each, interleaved in 10 rounds)"
per=$(((STARTUP_RUNS + 9) / 10))
for round in $(seq 1 10); do
    if ((round % 2)); then pair=(-n cgroup "$with" -n none "$without"); else pair=(-n none "$without" -n cgroup "$with"); fi
    # hyperfine, and so every sbx it starts, runs inside the delegated subtree.
    in_cgroup hyperfine -N -i --style none --warmup 5 --runs "$per" \
        --export-json "$res/cgroup.r$round.json" "${pair[@]}" >/dev/null 2>&1
done
left=$(find "$cg" -mindepth 1 -maxdepth 1 -type d | wc -l)
"$PY" - "$res" "$left" <<'PY'
import json, glob, statistics, sys
times = {"cgroup": [], "none": []}
for f in glob.glob(sys.argv[1] + "/cgroup.r*.json"):
    for r in json.load(open(f))["results"]:
        times[r["command"]] += r["times"]
c, n = (statistics.median(times[k]) * 1000 for k in ("cgroup", "none"))
print(f"startup, median of {len(times['cgroup'])} runs each: with the run's cgroup {c:.2f} ms, "
      f"without {n:.2f} ms, difference {c - n:.2f} ms (ratio {c / n:.2f})")
print(f"run cgroups left behind: {sys.argv[2]}")
PY
