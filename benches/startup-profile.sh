#!/usr/bin/env bash
# Where does sbx's startup time go? Profiles one `sbx --profile net-off -- /bin/true` (and the
# equivalent bubblewrap run, for comparison) as an unprivileged user:
#
#   1. `strace -f -c`: syscall counts of the whole run, sbx and bwrap
#   2. `strace -f -tt -T`, summarised by lib/strace_summary.py: syscalls per process (supervisor,
#      init, payload), a timeline between milestones (namespaces, id maps, mounts, pivot_root,
#      landlock, seccomp, exec), files read on the hot path, and counts side by side
#   3. untraced CPU and wall time per start: hyperfine (user/system of the process tree) for sbx,
#      bwrap, unshare and sbx variants that isolate a cost (--version, no cgroup probe, no
#      landlock/seccomp); `perf stat -r N` (page faults, task-clock) if perf is available
#   4. `perf record` over N runs (if perf can sample): user-space CPU by library and symbol
#
#   benches/startup-profile.sh           (PERF_RUNS=100 TRACE_RUNS=5 by default)
#
# Output goes to stdout; the raw traces stay in $BENCH_DIR/results (default
# /tmp/sbx-bench-profile/results). Timings under strace are inflated (each syscall stops the
# process twice): rank steps with them, compare tools by syscall counts, and take durations
# from perf stat / benches/run.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
BENCH_DIR=${BENCH_DIR:-/tmp/sbx-bench-profile}
PERF_RUNS=${PERF_RUNS:-100}
TRACE_RUNS=${TRACE_RUNS:-5}

# shellcheck source=benches/lib/common.sh
. "$here/lib/common.sh"
bench_setup bwrap strace hyperfine python3 setpriv unshare

# shellcheck disable=SC2086
check_runs sbx $sbx_startup
# shellcheck disable=SC2086
check_runs bwrap $bwrap_startup

section() { printf '\n######## %s\n' "$*"; }

section "environment"
echo "kernel $(uname -r); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs"
echo "run as $run_as_desc; sbx: $("$sbx" --version | head -1); $(bwrap --version); $(strace -V | head -1)"
echo "sbx:   $sbx_startup"
echo "bwrap: $bwrap_startup"

# Warm the page cache and dentries first, so the traces show steady-state starts.
for _ in 1 2 3; do
    # shellcheck disable=SC2086
    "${as_user[@]}" $sbx_startup >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    "${as_user[@]}" $bwrap_startup >/dev/null 2>&1 || true
done

section "1. strace -f -c (syscall counts and kernel time of the whole run)"
for tool in sbx bwrap; do
    if [[ $tool == sbx ]]; then cmd=$sbx_startup; else cmd=$bwrap_startup; fi
    echo
    echo "--- $tool"
    # shellcheck disable=SC2086
    "${as_user[@]}" strace -f -c -o "$res/$tool.count" $cmd >/dev/null 2>&1 || true
    head -n 40 "$res/$tool.count"
done

section "2. strace -f -tt -T over $TRACE_RUNS runs each, summarised"
traces=()
for tool in sbx bwrap unshare; do
    case $tool in
        sbx) cmd=$sbx_startup ;;
        bwrap) cmd=$bwrap_startup ;;
        unshare) cmd="unshare -Urpinmuf /bin/true" ;;
    esac
    files=()
    for ((i = 1; i <= TRACE_RUNS; i++)); do
        # shellcheck disable=SC2086
        "${as_user[@]}" strace -f -tt -T -o "$res/$tool.$i.trace" $cmd >/dev/null 2>"$res/$tool.stderr" || true
        files+=("$res/$tool.$i.trace")
    done
    traces+=("$tool=$(IFS=,; echo "${files[*]}")")
done
python3 "$here/lib/strace_summary.py" "${traces[@]}"
echo
echo "full traces: $res/{sbx,bwrap,unshare}.N.trace"

section "3. CPU and wall time per start, without tracing"
if command -v hyperfine >/dev/null 2>&1; then
    echo "--- hyperfine, $PERF_RUNS runs each (User/System = CPU of the whole process tree)"
    "${as_user[@]}" hyperfine -N -i --style basic --warmup 10 --runs "$PERF_RUNS" \
        -n sbx "$sbx_startup" -n bwrap "$bwrap_startup" -n unshare "unshare -Urpinmuf /bin/true" \
        -n "sbx --version" "$sbx --version" -n "sbx, cgroup probe off" "$sbx --profile net-off --limit cgroup=off -- /bin/true" \
        -n "sbx, no landlock/seccomp" "$sbx --profile net-off --profile $bin/no-lsm.toml -- /bin/true" 2>&1 |
        grep -E '^Benchmark|Time \(|Range' || true
else
    echo "hyperfine is not installed (apt-get install hyperfine); skipped"
fi
echo
if ! command -v perf >/dev/null 2>&1; then
    echo "perf is not installed (Debian: apt-get install linux-perf); perf stat skipped"
elif ! "${as_user[@]}" perf stat -e task-clock true >/dev/null 2>&1; then
    echo "perf cannot count as $bench_user here (kernel.perf_event_paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo ?)); perf stat skipped"
else
    echo "--- perf stat -r $PERF_RUNS (page faults of all processes; perf's own overhead inflates 'elapsed')"
    for tool in sbx bwrap unshare "sbx --version"; do
        case $tool in
            sbx) cmd=$sbx_startup ;;
            bwrap) cmd=$bwrap_startup ;;
            unshare) cmd="unshare -Urpinmuf /bin/true" ;;
            "sbx --version") cmd="$sbx --version" ;;
        esac
        echo "$tool:"
        # shellcheck disable=SC2086
        "${as_user[@]}" perf stat -r "$PERF_RUNS" -e task-clock,page-faults,context-switches \
            $cmd 2>&1 >/dev/null | grep -E 'task-clock|page-faults|context-switches|elapsed' || true
    done
fi

section "4. perf record: user-space CPU of $PERF_RUNS sbx starts, by library and by symbol"
if command -v perf >/dev/null 2>&1 &&
    "${as_user[@]}" perf record -q -o "$res/perf-probe.data" -e cpu-clock:u true >/dev/null 2>&1; then
    prof_sbx=$sbx
    if ! readelf -S "$sbx" 2>/dev/null | grep -q '\.symtab'; then
        # The release profile strips the binary: build a copy with symbols, in its own target
        # directory so that the normal release build stays as it is.
        sym_target=${CARGO_TARGET_DIR:-$repo/target}/bench-symbols
        echo "(the release binary is stripped: building a copy with symbols in $sym_target)"
        if (cd "$repo" && CARGO_PROFILE_RELEASE_STRIP=none CARGO_TARGET_DIR=$sym_target \
            cargo build --release --quiet) >&2; then
            install -m 0755 "$(release_binary "$sym_target")" "$bin/sbx-symbols"
            prof_sbx=$bin/sbx-symbols
        else
            echo "(that build failed: symbols of sbx itself will show as addresses)"
        fi
    fi
    prof_cmd=${sbx_startup/#$sbx/$prof_sbx}
    "${as_user[@]}" perf record -q -F 20000 -e cpu-clock:u -o "$res/perf.data" -- \
        sh -c "for i in \$(seq $PERF_RUNS); do $prof_cmd 2>/dev/null; done" >/dev/null 2>&1 || true
    echo "--- by process and library (includes the payload, /bin/true, and the loop's shell)"
    "${as_user[@]}" perf report -i "$res/perf.data" --stdio --sort comm,dso 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -15 || true
    echo
    echo "--- sbx's processes, by symbol (all libraries)"
    "${as_user[@]}" perf report -i "$res/perf.data" --stdio --comms "$(basename "$prof_sbx" | cut -c1-15)" \
        --sort dso,sym 2>/dev/null | grep -v '^#' | grep -v '^$' | head -30 || true
    echo
    echo "--- sbx's own code, by crate / module (self time, share of all samples above)"
    "${as_user[@]}" perf report -i "$res/perf.data" --stdio --comms "$(basename "$prof_sbx" | cut -c1-15)" \
        --dsos "$(basename "$prof_sbx")" --sort sym 2>/dev/null | python3 -c '
import re, sys, collections
agg = collections.Counter()
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+\[\.\]\s+(.*)", line)
    if not m:
        continue
    sym = m.group(2).strip()
    # "<a::b::C as d::E>::f" -> the implementing type'"'"'s path; "a::b::f" -> a::b
    inner = re.match(r"<&?(?:mut )?([A-Za-z_][\w:]*)", sym)
    path = inner.group(1) if inner else sym
    parts = [p for p in path.split("::") if p]
    key = "::".join(parts[:2]) if parts and parts[0] == "sbx" else (parts[0] if parts else sym)
    if key.startswith("0x"):
        key = "(no symbol)"
    agg[key] += float(m.group(1))
for k, v in agg.most_common(15):
    print(f"    {v:6.2f}%  {k}")
' || true
    echo
    echo "--- sbx's own code, by symbol"
    "${as_user[@]}" perf report -i "$res/perf.data" --stdio --comms "$(basename "$prof_sbx" | cut -c1-15)" \
        --dsos "$(basename "$prof_sbx")" --sort sym 2>/dev/null | grep -v '^#' | grep -v '^$' | head -30 || true
else
    echo "perf record is not available or not permitted here; skipped"
fi
