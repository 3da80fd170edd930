#!/usr/bin/env bash
# sbx benchmark suite: startup vs bubblewrap and the kernel floor, runtime overhead vs no sandbox,
# memory of sbx's own processes, and 64 sandboxes at once. See benches/README.md.
#
#   benches/run.sh                      everything (a few minutes on a 2-core machine)
#   ONLY=startup,memory benches/run.sh  a subset: startup, runtime, memory, scale
#
# It builds sbx in release mode, installs bubblewrap, hyperfine (and gcc, make) with apt-get if they
# are missing (as root), runs every comparison with warm-up and repeated, interleaved runs, and
# prints one table of medians and ratios, also written to benches/results/latest.md. A missed
# target is reported, never an error: the exit status is non-zero only if the suite itself could
# not run (build failure, sbx or bwrap unable to start a sandbox at all).
#
# Every sandboxed command runs as an unprivileged user: run as root, the script drops to uid/gid
# 65534 (nobody) with setpriv, and works from copies of the binaries in a world-accessible
# directory under /tmp. Knobs (environment):
#   STARTUP_RUNS=200 STARTUP_WARMUP=20 STARTUP_ROUNDS=10   startup: runs per command, split in rounds
#   RUNTIME_RUNS=10                                         runtime: runs per command (alternating)
#   GETPPID_ITERS=5000000 STAT_ITERS=1000000                syscall loop sizes
#   PROJECT_FILES=40 PROJECT_FUNCS=6                        size of the generated C project
#   MEM_RUNS=5 SCALE_N=64 SCALE_RUNS=10                     memory samples; scale batch size, batches
#   DIAG=1                                                  extra startup rows that locate the cost
#   BENCH_DIR=/tmp/sbx-bench BENCH_UID=65534 BENCH_GID=65534
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

STARTUP_RUNS=${STARTUP_RUNS:-200}
STARTUP_WARMUP=${STARTUP_WARMUP:-20}
STARTUP_ROUNDS=${STARTUP_ROUNDS:-10}
RUNTIME_RUNS=${RUNTIME_RUNS:-10}
GETPPID_ITERS=${GETPPID_ITERS:-5000000}
STAT_ITERS=${STAT_ITERS:-1000000}
PROJECT_FILES=${PROJECT_FILES:-40}
PROJECT_FUNCS=${PROJECT_FUNCS:-6}
MEM_RUNS=${MEM_RUNS:-5}
SCALE_N=${SCALE_N:-64}
SCALE_RUNS=${SCALE_RUNS:-10}
DIAG=${DIAG:-1}
ONLY=${ONLY:-startup,runtime,memory,scale}
BENCH_DIR=${BENCH_DIR:-/tmp/sbx-bench}

want() { [[ ",$ONLY," == *",$1,"* ]]; }

# shellcheck source=benches/lib/common.sh
. "$here/lib/common.sh"
bench_setup bwrap hyperfine gcc make python3 setpriv unshare
PY=python3
gcc -O2 -o "$work/sysloop" "$here/lib/sysloop.c"
bash "$here/lib/gen-project.sh" "$work/proj" "$PROJECT_FILES" "$PROJECT_FUNCS"
if ((EUID == 0)); then chown -R "$BENCH_UID:$BENCH_GID" "$work"; fi

notes=()
# shellcheck disable=SC2086  # the command strings are split on purpose, as hyperfine -N does
check_runs sbx $sbx_startup
# shellcheck disable=SC2086
check_runs bwrap $bwrap_startup
unshare_cmd="unshare -Urpinmuf /bin/true"
if ! "${as_user[@]}" unshare -Urpinmuf /bin/true >/dev/null 2>&1; then
    unshare_cmd="unshare -Urpinmuf --mount-proc /bin/true"
    notes+=("the kernel floor runs \`$unshare_cmd\`: plain \`unshare -Urpinmuf /bin/true\` failed as $bench_user")
    # shellcheck disable=SC2086
    check_runs unshare $unshare_cmd
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
hf_log=$res/hyperfine.log
: >"$hf_log"

# bench GROUP ROUNDS RUNS_PER_ROUND WARMUP_FIRST_ROUND WARMUP_LATER [--prepare CMD] NAME CMD [NAME CMD...]
# Runs hyperfine ROUNDS times over all commands, reversing their order every other round, so
# that a change of background load hits every command alike; report.py merges the rounds.
bench() {
    local group=$1 rounds=$2 per=$3 w1=$4 wn=$5
    shift 5
    local prep=()
    if [[ $1 == --prepare ]]; then
        prep=(--prepare "$2")
        shift 2
    fi
    local pairs=("$@") n=$(($# / 2)) r i k w args
    for ((r = 1; r <= rounds; r++)); do
        w=$wn
        ((r == 1)) && w=$w1
        args=()
        for ((k = 0; k < n; k++)); do
            if ((r % 2)); then i=$k; else i=$((n - 1 - k)); fi
            args+=(-n "${pairs[2 * i]}" "${pairs[2 * i + 1]}")
        done
        printf '\r    %s: round %d/%d ' "$group" "$r" "$rounds" >&2
        echo "### $group round $r" >>"$hf_log"
        if ! "${as_user[@]}" hyperfine -N -i --style basic --warmup "$w" --runs "$per" "${prep[@]}" \
            --export-json "$res/$group.r$r.json" "${args[@]}" >>"$hf_log" 2>&1; then
            printf '\n' >&2
            tail -20 "$hf_log" >&2
            die "hyperfine failed in $group (log: $hf_log)"
        fi
    done
    printf '\n' >&2
}

# ---------------------------------------------------------------------------------------------
# a. Startup
# ---------------------------------------------------------------------------------------------
if want startup; then
    log "startup: sbx vs bubblewrap vs $unshare_cmd ($STARTUP_RUNS runs each)"
    per=$(((STARTUP_RUNS + STARTUP_ROUNDS - 1) / STARTUP_ROUNDS))
    cmds=(sbx "$sbx_startup" bwrap "$bwrap_startup" unshare "$unshare_cmd")
    if ((DIAG)); then
        cmds+=("diag:sbx --version" "$sbx --version"
            "diag:sbx, cgroup probe off" "$sbx --profile net-off --limit cgroup=off -- /bin/true"
            "diag:sbx, no landlock/seccomp" "$sbx --profile net-off --profile $bin/no-lsm.toml -- /bin/true")
    fi
    bench startup "$STARTUP_ROUNDS" "$per" "$STARTUP_WARMUP" 3 "${cmds[@]}"
fi

# ---------------------------------------------------------------------------------------------
# b. Runtime overhead vs no sandbox (one run of each per round: strictly alternating)
# ---------------------------------------------------------------------------------------------
if want runtime; then
    log "runtime: sbx vs no sandbox ($RUNTIME_RUNS runs each)"
    bench getppid "$RUNTIME_RUNS" 1 1 0 \
        none "./sysloop getppid $GETPPID_ITERS" sbx "$sbx -- ./sysloop getppid $GETPPID_ITERS"
    bench stat "$RUNTIME_RUNS" 1 1 0 \
        none "./sysloop stat $STAT_ITERS" sbx "$sbx -- ./sysloop stat $STAT_ITERS"
    walk="sh -c 'find /usr -type f 2>/dev/null | wc -l'"
    bench find "$RUNTIME_RUNS" 1 1 0 none "$walk" sbx "$sbx -- $walk"
    bench make "$RUNTIME_RUNS" 1 1 0 --prepare "make -s -C proj clean" \
        none "make -s -C proj -j2" sbx "$sbx -- make -s -C proj -j2"
    if ((DIAG)); then
        # The per-call cost, robust to other load: the fastest of many 1000-call batches (sysloop ns).
        log "runtime: cost of one syscall in and out of the sandbox (fastest batch)"
        : >"$res/ns.txt"
        for mode in getppid stat open; do
            for _ in 1 2; do
                echo "none $mode $("${as_user[@]}" ./sysloop ns "$mode")" >>"$res/ns.txt"
                echo "sbx $mode $("${as_user[@]}" "$sbx" -- ./sysloop ns "$mode" 2>/dev/null)" >>"$res/ns.txt"
                echo "seccomp-floor $mode $("${as_user[@]}" ./sysloop ns "$mode" --seccomp-floor)" >>"$res/ns.txt"
                echo "landlock-floor $mode $("${as_user[@]}" ./sysloop ns "$mode" --landlock-floor)" >>"$res/ns.txt"
                echo "landlock-ro-floor $mode $("${as_user[@]}" ./sysloop ns "$mode" --landlock-ro-floor)" >>"$res/ns.txt"
                echo "both-floor $mode $("${as_user[@]}" ./sysloop ns "$mode" --both-floor)" >>"$res/ns.txt"
            done
        done
    fi
fi

# ---------------------------------------------------------------------------------------------
# c. Memory of the tool's own processes while the command runs
# ---------------------------------------------------------------------------------------------
if want memory; then
    log "memory: peak RSS of sbx's processes (supervisor + init) and bubblewrap's"
    # shellcheck disable=SC2086
    "$PY" "$here/lib/memory.py" --label sbx --runs "$MEM_RUNS" --out "$res/memory-sbx.json" --cwd "$work" \
        -- "${as_user[@]}" "$sbx" -- /usr/bin/sleep 1 || notes+=("memory: sbx sampling failed")
    # shellcheck disable=SC2086
    "$PY" "$here/lib/memory.py" --label bwrap --runs "$MEM_RUNS" --out "$res/memory-bwrap.json" --cwd "$work" \
        -- "${as_user[@]}" $bwrap_prefix /usr/bin/sleep 1 || notes+=("memory: bwrap sampling failed")
    log "memory: $SCALE_N sandboxes at once, summed"
    # shellcheck disable=SC2086
    "$PY" "$here/lib/memory.py" --label sbx --runs 2 --copies "$SCALE_N" --out "$res/memory-sbx-$SCALE_N.json" \
        --cwd "$work" -- "${as_user[@]}" "$sbx" -- /usr/bin/sleep 3 || notes+=("memory: sbx ×$SCALE_N sampling failed")
    # shellcheck disable=SC2086
    "$PY" "$here/lib/memory.py" --label bwrap --runs 2 --copies "$SCALE_N" --out "$res/memory-bwrap-$SCALE_N.json" \
        --cwd "$work" -- "${as_user[@]}" $bwrap_prefix /usr/bin/sleep 3 || notes+=("memory: bwrap ×$SCALE_N sampling failed")
fi

# ---------------------------------------------------------------------------------------------
# d. Scale: SCALE_N sandboxes started at once
# ---------------------------------------------------------------------------------------------
if want scale; then
    log "scale: $SCALE_N sandboxes at once, $SCALE_RUNS batches each"
    bench scale "$SCALE_RUNS" 1 1 0 \
        sbx "bash $bin/scale.sh $SCALE_N $res/scale-sbx.fail $sbx_startup" \
        bwrap "bash $bin/scale.sh $SCALE_N $res/scale-bwrap.fail $bwrap_startup"
fi

# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
export BENCH_SBX_VERSION=$(sbx_version_of "$sbx")
export BENCH_BWRAP_VERSION=$(bwrap --version 2>/dev/null | head -1)
export BENCH_HYPERFINE_VERSION=$(hyperfine --version 2>/dev/null | head -1)
export BENCH_USER=$run_as_desc
export BENCH_UNSHARE_CMD=$unshare_cmd
export BENCH_STARTUP_ROUNDS=$STARTUP_ROUNDS BENCH_STARTUP_WARMUP=$STARTUP_WARMUP
export BENCH_RUNTIME_RUNS=$RUNTIME_RUNS BENCH_GETPPID_ITERS=$GETPPID_ITERS BENCH_STAT_ITERS=$STAT_ITERS
export BENCH_PROJECT_FILES=$PROJECT_FILES BENCH_SCALE_N=$SCALE_N
notes+=("load average (1, 5, 15 min) at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs (other work on the machine moves absolute times; the interleaved rounds keep it from skewing one side of a ratio)")
notes+=("raw results (hyperfine JSON per round, memory samples, scale logs): $res")
BENCH_NOTES=$(printf '%s\n' "${notes[@]}")
export BENCH_NOTES
"$PY" "$here/lib/report.py" "$res" "$here/results/latest.md"
