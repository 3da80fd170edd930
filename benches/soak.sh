#!/usr/bin/env bash
# Reliability soak for sbx (issue 5): the full counts that `cargo test` reduces to fit CI.
#
#   benches/soak.sh                 # release build, full counts
#   SOAK_PROFILE=dev benches/soak.sh    # the debug build (faster to build, slower to run)
#   SOAK_ROUNDS=5 SOAK_FUZZ_CASES=100000 benches/soak.sh
#
# Runs, with SBX_SOAK=1 (read by tests/reliability.rs and tests/fuzz.rs):
#   - 200 runs of sbx SIGKILLed at random points of its first 50 ms: zero survivors
#   - 1000 sequential runs: no temp directory, host mount, fd or zombie left
#   - 64 concurrent sandboxes, SOAK_ROUNDS times (default 3)
#   - 200 runs each of the bind-source and mount-point symlink races
#   - the signal, I/O and hostile-filesystem tests once
#   - the fuzz properties with SOAK_FUZZ_CASES cases each (default 20000) and 200 bad argvs
# then prints a summary; exits non-zero if any step failed. Logs go to a temporary directory
# (printed). Run it as root (the tests drop sbx to `nobody`, as in CI) or as a normal user.
# SBX_SEED=N replays the random kill points and argvs of an earlier run.

set -euo pipefail

cd "$(dirname "$0")/.."

profile="${SOAK_PROFILE:-release}"
rounds="${SOAK_ROUNDS:-3}"
fuzz_cases="${SOAK_FUZZ_CASES:-20000}"
case "$profile" in
release) cargo_profile=(--release) ;;
dev) cargo_profile=() ;;
*)
    echo "soak: SOAK_PROFILE must be release or dev, not '$profile'" >&2
    exit 2
    ;;
esac

logs="$(mktemp -d "${TMPDIR:-/tmp}/sbx-soak.XXXXXX")"
echo "soak: profile $profile, logs in $logs"

echo "soak: building sbx and the tests ($profile)"
cargo build "${cargo_profile[@]}" --bin sbx
# Build once and run the test executables themselves: a source tree that changes while the
# soak runs (or fails to build for a moment) does not change what is being measured.
cargo test "${cargo_profile[@]}" --no-run --test reliability --test process --test hostile_fs --test fuzz 2>&1 | tee "$logs/build.log" | tail -n 3
exe() {
    sed -n "s|.*Executable tests/$1\.rs (\(.*\))\$|\1|p" "$logs/build.log" | tail -n 1
}
reliability_exe="$(exe reliability)"
process_exe="$(exe process)"
hostile_fs_exe="$(exe hostile_fs)"
fuzz_exe="$(exe fuzz)"
for e in "$reliability_exe" "$process_exe" "$hostile_fs_exe" "$fuzz_exe"; do
    if [ ! -x "$e" ]; then
        echo "soak: cannot find the test executables in the build output ($logs/build.log)" >&2
        exit 2
    fi
done

names=()
results=()
durations=()
notes=()
failed=0

# step NAME TEST-EXECUTABLE EXTRA-ENV -- LIBTEST-ARGS...
step() {
    local name="$1" exe="$2" extra="$3"
    shift 4
    local log="$logs/$(echo "$name" | tr ' /' '__').log"
    local start end rc
    echo "soak: $name ..."
    start=$(date +%s%N)
    set +e
    # CI=true would pin the fuzz budget; the soak sets its own counts.
    # shellcheck disable=SC2086 # $extra is zero or one VAR=value word
    env -u CI SBX_SOAK=1 $extra "$exe" --nocapture "$@" >"$log" 2>&1
    rc=$?
    set -e
    end=$(date +%s%N)
    local tenths=$(((end - start) / 100000000))
    names+=("$name")
    durations+=("$((tenths / 10)).$((tenths % 10))")
    if [ "$rc" -eq 0 ]; then
        results+=("ok")
    else
        results+=("FAILED")
        failed=1
    fi
    # The tests' own summary lines (counts, seeds, tallies), without the noise.
    notes+=("$(grep -E '^(supervisor death|no leaks|concurrency|bind source race|mount point race|large output|fuzz budget|arbitrary|TOML-shaped|mutated|built-ins|random argv|bad argv)' "$log" |
        grep -v 'runs (reduced' | sed 's/^/        /' || true)")
    if [ "$rc" -ne 0 ]; then
        echo "soak: $name FAILED (exit $rc); the failure:" >&2
        grep -E -A12 '^(thread .* panicked|failures:)' "$log" | head -n 40 >&2 || true
    fi
}

step "supervisor death x200" "$reliability_exe" "" -- --exact sbx_killed_at_random_points_leaves_no_sandbox_process
step "no leaks x1000" "$reliability_exe" "" -- --exact sequential_runs_leak_nothing
for r in $(seq 1 "$rounds"); do
    step "64 concurrent, round $r" "$reliability_exe" "" -- --exact sixty_four_concurrent_sandboxes_stay_apart
done
step "bind source race x200" "$reliability_exe" "" -- --exact bind_source_swapped_between_check_and_mount
step "mount point race x200" "$reliability_exe" "" -- --exact mount_point_swapped_with_a_symlink_during_setup
# The rest of reliability.rs, and the files its signal, I/O and hostile-filesystem tests moved to.
step "reliability, the rest" "$reliability_exe" "" -- \
    --skip sbx_killed_at_random_points_leaves_no_sandbox_process \
    --skip sequential_runs_leak_nothing \
    --skip sixty_four_concurrent_sandboxes_stay_apart \
    --skip bind_source_swapped_between_check_and_mount \
    --skip mount_point_swapped_with_a_symlink_during_setup
step "signals and I/O" "$process_exe" "" --
step "hostile fs" "$hostile_fs_exe" "" --
step "fuzz x$fuzz_cases" "$fuzz_exe" "SBX_FUZZ_CASES=$fuzz_cases" --

echo
echo "soak summary ($profile build; logs in $logs)"
for i in "${!names[@]}"; do
    printf '  %-8s %7ss  %s\n' "${results[$i]}" "${durations[$i]}" "${names[$i]}"
    if [ -n "${notes[$i]}" ]; then
        printf '%s\n' "${notes[$i]}"
    fi
done
if [ "$failed" -ne 0 ]; then
    echo "soak: FAILED" >&2
    exit 1
fi
echo "soak: all steps passed"
