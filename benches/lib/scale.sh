#!/usr/bin/env bash
# Starts N copies of a command at once and waits for all of them (benches/run.sh, comparison d).
#
#   scale.sh N FAILLOG CMD [ARGS...]
#
# Appends one line per batch to FAILLOG: "<launched> <failed>", then, for each failed copy,
# "  exit <code>: <first line of its stderr>". Always exits 0 so that hyperfine keeps timing
# (failures are counted from FAILLOG, not from hyperfine's exit codes).
set -uo pipefail
n=$1 log=$2
shift 2
errdir=$(mktemp -d "${TMPDIR:-/tmp}/sbx-scale.XXXXXX")
pids=()
for ((i = 0; i < n; i++)); do
    "$@" >/dev/null 2>"$errdir/$i" </dev/null &
    pids+=($!)
done
failed=0 details=""
for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then
        :
    else
        code=$?
        failed=$((failed + 1))
        details+="  exit $code: $(grep -v -m1 '^ *WARN' "$errdir/$i" | head -c 300)"$'\n'
    fi
done
{
    echo "$n $failed"
    printf '%s' "$details"
} >>"$log"
rm -rf "$errdir"
exit 0
