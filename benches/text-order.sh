#!/usr/bin/env bash
# Writes .cargo/text-order.txt, the order in which the release link places sbx's functions
# (src/build.rs hands it to lld), from the functions real starts of sbx call. Why: the kernel
# maps code 64 KiB around each page first run, so scattered hot functions keep the whole text
# resident in the supervisor and in init (benches/README.md, "Text order").
#
#   benches/text-order.sh          rebuild the list (run it after a rustc or dependency update,
#                                  or when --check says the list is stale)
#   benches/text-order.sh --check  how many listed functions this toolchain's build has;
#                                  exit 1 under 90 % (run by .ci/run)
#
# It builds sbx with the release profile into its own target directory, with symbols kept
# (`-C strip=none` in RUSTFLAGS: the symbols' hashes follow the profile, not RUSTFLAGS, so
# the names match those of a plain `cargo build --release`), then runs each start below under
# benches/lib/text-trace (ptrace breakpoints on every function; seconds per run) as uid
# 65534. Needs root (the tracer reads sbx's undumpable processes), cc, nm and python3.
# Variables: TEXT_ORDER_TARGET, the build's target directory (default target/text-order).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
build=${TEXT_ORDER_TARGET:-$repo/target/text-order}
list=$repo/.cargo/text-order.txt
die() { printf 'text-order.sh: %s\n' "$*" >&2; exit 1; }

mode=write
case ${1:-} in
    --check) mode=check ;;
    "") ;;
    *) die "unknown argument $1 (use --check or nothing)" ;;
esac
host=$(rustc -vV | sed -n 's/^host: //p')
if [[ $host != x86_64-unknown-linux-gnu ]]; then
    [[ $mode == check ]] && { echo "text order: not used on $host builds, nothing to check"; exit 0; }
    die "the text order applies to x86_64-unknown-linux-gnu builds only (this host: $host)"
fi
tools=(nm python3)
[[ $mode == write ]] && tools+=(cc)
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
if [[ $mode == write ]] && ((EUID != 0)); then
    die "run as root: the tracer must read sbx's undumpable processes (sbx itself runs as uid 65534)"
fi

echo "building sbx with symbols into $build"
(cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static -C strip=none" \
    cargo build --release --locked --quiet --target-dir "$build")
binary=$build/$host/release/sbx
nm --defined-only "$binary" >"$build/symbols"

if [[ $mode == check ]]; then
    [[ -f $list ]] || die "no $list"
    # src/build.rs passes the list only where this toolchain's linker takes it.
    if ! grep -qs symbol-ordering-file "$build"/"$host"/release/build/sbx-*/output; then
        echo "text order: this toolchain's linker does not take the list (src/build.rs), nothing to check"
        exit 0
    fi
    python3 "$here/lib/text_order.py" check "$build/symbols" "$list" ||
        die "the text order is stale for $(rustc -V): run benches/text-order.sh and commit .cargo/text-order.txt"
    exit 0
fi

# The runs happen in a directory uid 65534 can reach (a clone under /root is closed to it).
dir=$(mktemp -d /tmp/sbx-text-order.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cc -O2 -Wall -o "$dir/text-trace" "$here/lib/text-trace.c"
install -m 0755 "$binary" "$dir/sbx"
awk '$2 ~ /^[tTwWiI]$/ {print $1}' "$build/symbols" >"$dir/addresses"
mkdir -p "$dir/work" "$dir/home"
chown 65534:65534 "$dir/work" "$dir/home"
chmod 0755 "$dir"

# The starts whose functions go first: the default profile, the profiles the benchmarks and
# CI use, a command line that binds, sets and limits. Later runs add only what earlier ones
# did not call.
runs=(
    "-- /bin/true"
    "--profile net-off -- /bin/true"
    "--profile ci -- /bin/true"
    "--profile strict -- /bin/true"
    "--ro-bind /usr/share --setenv A=1 --memory 64M --limit processes=64 -- /bin/true"
    # A command that outlives the watchdog's first samples and the settle (sys::SETTLE_MS):
    # what the supervisor runs while it waits, which maps back after its code release.
    "--memory 64M -- /bin/sleep 0.4"
)
# The caller's environment: sbx sorts and filters it, and a short one skips the sort. A map
# built from a sorted list runs code that only some lengths reach (a B-tree rebalances its
# last node when that node comes out short), and the variables a CI job or a user's shell
# has are any number: the last start runs again with 1 to 12 more, and with 60 more, so
# that every length's code is in the list (one missed this way mapped 124 KiB more).
traces=()
tracer_flags=()
trace() { # NAME ENV... -- SBX-ARGS...
    local name=$1 extra=()
    shift
    while [[ $1 != -- ]]; do extra+=("$1"); shift; done
    shift
    (cd "$dir/work" && env HOME="$dir/home" "${extra[@]}" \
        "$dir/text-trace" "$dir/addresses" "$dir/trace.$name" "${tracer_flags[@]}" -- "$dir/sbx" "$@") ||
        die "sbx $* failed under the tracer"
    traces+=("$dir/trace.$name")
}
for i in "${!runs[@]}"; do
    read -ra args <<<"${runs[$i]}"
    trace "$i" -- "${args[@]}"
done
more=()
for n in $(seq 1 60); do
    more+=("SBX_TEXT_ORDER_VARIABLE_$n=$n")
    ((n <= 12 || n == 60)) && trace "env-$n" "${more[@]}" -- "${args[@]}"
done
# glibc picks its string functions (memcpy, strlen, strcmp...) by the CPU it runs on: this
# host's AVX-512 variants are not the ones a CPU without AVX-512 runs (many CI runners, QEMU's
# TCG in the kernel matrix), and each variant missing from the list mapped its own 64 KiB
# (Σ VmHWM +324 KiB with AVX-512 masked). The last start runs again with the wider vector
# extensions masked (glibc.cpu.hwcaps), so that every level's variants are in the list.
avx512=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD
trace isa-avx2 GLIBC_TUNABLES=glibc.cpu.hwcaps=$avx512 -- "${args[@]}"
trace isa-sse GLIBC_TUNABLES=glibc.cpu.hwcaps=$avx512,-AVX2,-AVX,-FMA -- "${args[@]}"
# Linux 5.10 has no landlock, no mount_setattr and no CLOSE_RANGE_CLOEXEC: sbx takes its
# fallbacks there (classic binds, descriptors listed from /proc/self/fd), whose code missing
# from the list mapped 572 KiB more in init (VmHWM 848 -> 1,420 KiB under such a filter on
# this host). The default profile and the last start run again with 5.10's system calls only
# (landlock best effort: the default requires it). What only these runs call goes after
# everything else (text_order.py --fallback): in the middle of the groups it cost init 60 KiB
# on this host, where none of it runs.
usual=("${traces[@]}")
traces=()
tracer_flags=(--linux-5.10)
trace old-kernel -- --landlock best-effort -- /bin/true
trace old-kernel-last -- --landlock best-effort "${args[@]}"
python3 "$here/lib/text_order.py" write "$build/symbols" "$list" "$(rustc -V)" "${usual[@]}" \
    --fallback "${traces[@]}"
echo "wrote $list"
