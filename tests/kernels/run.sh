#!/usr/bin/env bash
# Boots Debian's cloud kernels under QEMU and runs sbx's smoke suite (smoke.sh) inside each
# as uid 1000, then prints a table of checks by kernel. See README.md.
#
#   tests/kernels/run.sh [--kernels 5.10,6.1,6.12] [--sbx PATH] [--only REGEX]
#                        [--report-only] [--refresh] [--boot-timeout SECS]
#
# Downloads (kernels, busybox-static) go through apt with a private sources list, state and
# cache under $SBX_KERNEL_CACHE (default: <repo>/target/kernels); the machine's apt
# configuration is never touched. Exit: 0 when no check FAILed (or --report-only), 1 when one
# did, 2 on a usage or harness error.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${SBX_KERNEL_CACHE:-$repo/target/kernels}
mirror=${SBX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${SBX_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

kernels=5.10,6.1,6.12
sbx=$repo/target/x86_64-unknown-linux-gnu/release/sbx
sbx_given=0
report_only=0
refresh=0
only=
boot_timeout=240
# -cx16: QEMU 7.2's TCG (Debian 12) double-faults 6.12 guests in SLUB's per-cpu cmpxchg16b
# (kmem_cache_alloc, on the first fork). Without CX16 the kernel takes its plain path.
qemu_cpu=${SBX_QEMU_CPU:-max,-cx16}

usage() {
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

Options:
  --kernels LIST       comma-separated subset of 5.10,6.1,6.12 (default: all)
  --sbx PATH           the static sbx binary to test (default: target/x86_64-unknown-linux-gnu/
                       release/sbx, built with `cargo build --release` if missing)
  --only REGEX         run only the checks whose name matches REGEX (extended regex)
  --report-only        print the table and exit 0 even when a check FAILed
  --refresh            look up the newest kernel packages again (and download them if new)
  --boot-timeout SECS  kill a VM that has not powered off after SECS (default 240): a FAIL
EOF
}

while [ $# -gt 0 ]; do
  case $1 in
  --kernels) kernels=${2:?--kernels needs a list}; shift 2 ;;
  --kernels=*) kernels=${1#*=}; shift ;;
  --sbx) sbx=${2:?--sbx needs a path}; sbx_given=1; shift 2 ;;
  --sbx=*) sbx=${1#*=}; sbx_given=1; shift ;;
  --only) only=${2:?--only needs a regex}; shift 2 ;;
  --only=*) only=${1#*=}; shift ;;
  --report-only) report_only=1; shift ;;
  --refresh) refresh=1; shift ;;
  --boot-timeout) boot_timeout=${2:?--boot-timeout needs seconds}; shift 2 ;;
  --boot-timeout=*) boot_timeout=${1#*=}; shift ;;
  -h | --help) usage; exit 0 ;;
  *) echo "run.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

# kernel_def KEY: sets suites (the Debian suites to look in) and prefix (what the versioned
# image package's name must start with). The image is the one the suites' newest
# linux-image-cloud-amd64 meta-package depends on: its -unsigned build when there is one.
kernel_def() {
  case $1 in
  5.10) suites="bullseye bullseye-security"; prefix=linux-image-5.10. ;;
  6.1) suites="bookworm bookworm-security"; prefix=linux-image-6.1. ;;
  6.12) suites="bookworm-backports"; prefix=linux-image-6.12. ;;
  *) return 1 ;;
  esac
}

IFS=, read -r -a keys <<<"$kernels"
for k in "${keys[@]}"; do
  kernel_def "$k" || { echo "run.sh: unknown kernel '$k' (known: 5.10, 6.1, 6.12)" >&2; exit 2; }
done
[[ $boot_timeout =~ ^[0-9]+$ ]] || { echo "run.sh: --boot-timeout needs seconds" >&2; exit 2; }

start=$(date +%s)
mkdir -p "$cache/logs" "$cache/debs"
cache=$(cd "$cache" && pwd)
downloaded=0 # bytes fetched by this run

# ------------------------------------------------------------------------------ host tools
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing qemu-system-x86 (qemu-system-x86_64 is missing)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends qemu-system-x86 >"$cache/logs/qemu-install.log" 2>&1 ||
      { apt-get update -q && apt-get install -y -q --no-install-recommends qemu-system-x86; } \
        >>"$cache/logs/qemu-install.log" 2>&1 || true
  fi
  if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    echo "SKIP  all kernels: qemu-system-x86_64 is not installed and could not be installed" \
      "(run as root, or install the qemu-system-x86 package)"
    exit 0
  fi
fi
for tool in apt-get apt-cache dpkg-deb gzip timeout find; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIP  all kernels: '$tool' is missing on this host (needed to fetch and unpack Debian packages)"
    exit 0
  fi
done

# ------------------------------------------------------------------------------ sbx binary
if [ ! -x "$sbx" ]; then
  if [ $sbx_given = 1 ]; then
    echo "run.sh: --sbx $sbx: no such executable" >&2
    exit 2
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "SKIP  all kernels: $sbx is missing and cargo is not installed to build it"
    exit 0
  fi
  echo "== building sbx: cargo build --release"
  (cd "$repo" && cargo build --release)
  [ -x "$sbx" ] || { echo "run.sh: cargo build did not produce $sbx" >&2; exit 2; }
fi
# A snapshot: a rebuild during the run must not change what the VMs test.
cp "$sbx" "$cache/sbx.new" && mv "$cache/sbx.new" "$cache/sbx"
if command -v readelf >/dev/null 2>&1 && readelf -l "$cache/sbx" 2>/dev/null | grep -q 'program interpreter'; then
  echo "WARNING: $sbx is dynamically linked; the VMs have no libc, so it cannot run there"
fi

# ------------------------------------------------------------------------ private apt setup
# apt_for SUITE...: makes $cache/apt/SUITE+SUITE... (sources.list, lists, archives) and sets
# apt_opts to point apt-get/apt-cache there and nowhere else, apt_log to its log.
apt_for() {
  local name suite url dir
  name=$(IFS=+; echo "$*")
  dir=$cache/apt/$name
  mkdir -p "$dir/state/lists/partial" "$dir/cache/archives/partial"
  : >"$dir/sources.list.new"
  for suite in "$@"; do
    url=$mirror
    [[ $suite == *-security ]] && url=$security_mirror
    echo "deb [signed-by=$keyring] $url $suite main" >>"$dir/sources.list.new"
  done
  mv "$dir/sources.list.new" "$dir/sources.list"
  apt_opts=(
    -o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
    -o "Dir::State=$dir/state" -o "Dir::Cache=$dir/cache" -o Dir::State::status=/dev/null
    -o APT::Architecture=amd64 -o Debug::NoLocking=1
    -o Acquire::Languages=none -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::CNF::DefaultEnabled=false
    -o Acquire::Retries=2 -o APT::Sandbox::User="$(id -un)"
  )
  apt_log=$cache/logs/apt-$name.log
}

# apt_update: refreshes the package lists of the current apt_for setup (once per run).
declare -A updated=()
apt_update() {
  local dir=${apt_opts[1]#Dir::Etc::SourceList=}
  [ -n "${updated[$dir]:-}" ] && return 0
  : >"$apt_log"
  apt-get "${apt_opts[@]}" -q update >>"$apt_log" 2>&1 || return 1
  # "Fetched 8643 kB in 1s (...)": count the index downloads too.
  local fetched
  fetched=$(awk '/^Fetched [0-9.]+ [kMG]?B/ {
    n = $2; u = $3; f = (u == "kB") ? 1e3 : (u == "MB") ? 1e6 : (u == "GB") ? 1e9 : 1
    printf "%d\n", n * f }' "$apt_log" | head -n1)
  downloaded=$((downloaded + ${fetched:-0}))
  # apt-get update exits 0 when a source failed; a suite without a Packages list is a failure.
  grep -qE '^(W|E): Failed to fetch' "$apt_log" && return 1
  updated[$dir]=1
}

# apt_fetch PACKAGE DIR: downloads PACKAGE's candidate .deb into DIR (unless there already);
# sets fetched_deb to its path.
apt_fetch() {
  local pkg=$1 dir=$2 before
  before=$(find "$dir" -maxdepth 1 -name "${pkg}_*.deb" | sort)
  (cd "$dir" && apt-get "${apt_opts[@]}" -q download "$pkg") >>"$apt_log" 2>&1 || return 1
  fetched_deb=$(find "$dir" -maxdepth 1 -name "${pkg}_*.deb" -printf '%T@ %p\n' | sort -rn |
    head -n1 | cut -d' ' -f2-)
  [ -n "$fetched_deb" ] || return 1
  if [ "$before" != "$(find "$dir" -maxdepth 1 -name "${pkg}_*.deb" | sort)" ]; then
    downloaded=$((downloaded + $(stat -c %s "$fetched_deb")))
    echo "   downloaded ${fetched_deb##*/} ($(($(stat -c %s "$fetched_deb") / 1024)) KiB)"
  fi
}

# deb_id DEB: "PACKAGE VERSION"
deb_id() {
  echo "$(dpkg-deb -f "$1" Package) $(dpkg-deb -f "$1" Version)"
}

# ---------------------------------------------------------------------------------- busybox
# fetch_busybox: $cache/busybox/busybox, from bookworm's busybox-static. Sets bb or bb_error.
fetch_busybox() {
  bb=$cache/busybox/busybox
  bb_error=
  [ -x "$bb" ] && [ -s "$cache/busybox/package" ] && [ $refresh = 0 ] && return 0
  apt_for bookworm bookworm-security
  apt_update || { bb_error="apt-get update failed (see $apt_log)"; return 1; }
  local deb tmp
  apt_fetch busybox-static "$cache/debs" ||
    { bb_error="download of busybox-static failed (see $apt_log)"; return 1; }
  deb=$fetched_deb
  tmp=$cache/busybox/x
  rm -rf "$tmp" && mkdir -p "$tmp"
  dpkg-deb -x "$deb" "$tmp"
  cp "$tmp/bin/busybox" "$bb.new" && chmod 0755 "$bb.new" && mv "$bb.new" "$bb"
  deb_id "$deb" >"$cache/busybox/package"
  rm -rf "$tmp"
}

# ---------------------------------------------------------------------------------- kernels
# fetch_kernel KEY: $cache/KEY/{vmlinuz,overlay.ko,package}. Sets fetch_error on failure.
fetch_kernel() {
  local key=$1 dir=$cache/$1 meta=linux-image-cloud-amd64 dep pkg deb tmp ko
  fetch_error=
  kernel_def "$key"
  # (a cache from before veth.ko was taken along has no veth.note: unpack the .deb again)
  if [ -s "$dir/package" ] && [ -s "$dir/vmlinuz" ] && [ -e "$dir/veth.note" ] && [ $refresh = 0 ]; then
    return 0
  fi
  mkdir -p "$dir"
  # shellcheck disable=SC2086 # suites is a word list
  apt_for $suites
  apt_update || { fetch_error="apt-get update failed for $suites (see $apt_log)"; return 1; }
  dep=$(apt-cache "${apt_opts[@]}" depends --no-recommends --no-suggests "$meta" 2>>"$apt_log" |
    sed -n 's/^ *Depends: \(linux-image-[^ ]*\).*/\1/p' | head -n1)
  if [[ $dep != "$prefix"* ]]; then
    fetch_error="$meta in $suites depends on '${dep:-nothing}', not $prefix*"
    return 1
  fi
  # The unsigned build when the index has it and the pool serves it (bullseye-security's
  # index lists unsigned images whose .deb is missing: 404), else the signed one: the same
  # kernel with a signature appended.
  deb=
  for pkg in "$dep-unsigned" "$dep"; do
    apt-cache "${apt_opts[@]}" show "$pkg" >/dev/null 2>&1 || continue
    echo "   $key: fetching $pkg"
    if apt_fetch "$pkg" "$cache/debs"; then
      deb=$fetched_deb
      break
    fi
    echo "   $key: download of $pkg failed (see $apt_log)"
    fetch_error="${fetch_error:+$fetch_error; }download of $pkg failed"
  done
  if [ -z "$deb" ]; then
    fetch_error="${fetch_error:-no $dep in the index} (see $apt_log)"
    return 1
  fi
  fetch_error=
  tmp=$dir/x
  rm -rf "$tmp" && mkdir -p "$tmp"
  dpkg-deb -x "$deb" "$tmp" || { fetch_error="dpkg-deb -x $deb failed"; return 1; }
  cp "$(find "$tmp/boot" -name 'vmlinuz-*' | head -n1)" "$dir/vmlinuz" ||
    { fetch_error="no /boot/vmlinuz-* in $pkg"; return 1; }
  rm -f "$dir/overlay.ko" "$dir/overlay.note"
  ko=$(find "$tmp" -path '*/kernel/fs/overlayfs/overlay.ko*' | head -n1)
  case $ko in
  *.ko) cp "$ko" "$dir/overlay.ko" ;;
  *.ko.xz) xz -dc "$ko" >"$dir/overlay.ko" 2>/dev/null || "$bb" unxz -c "$ko" >"$dir/overlay.ko" ;;
  *.ko.zst) zstd -qdc "$ko" >"$dir/overlay.ko" ||
    { fetch_error="overlay.ko.zst needs zstd on the host"; return 1; } ;;
  *.ko.gz) gzip -dc "$ko" >"$dir/overlay.ko" ;;
  "") echo "no overlay.ko in $pkg (built in?)" >"$dir/overlay.note" ;;
  *) fetch_error="cannot unpack $ko"; return 1 ;;
  esac
  [ -z "$ko" ] || echo "${ko##*/}" >"$dir/overlay.note"
  # veth, for the suite's stand-in for the internet (a network namespace behind a veth pair).
  rm -f "$dir/veth.ko" "$dir/veth.note"
  ko=$(find "$tmp" -path '*/kernel/drivers/net/veth.ko*' | head -n1)
  case $ko in
  *.ko) cp "$ko" "$dir/veth.ko" ;;
  *.ko.xz) xz -dc "$ko" >"$dir/veth.ko" 2>/dev/null || "$bb" unxz -c "$ko" >"$dir/veth.ko" ;;
  *.ko.zst) zstd -qdc "$ko" >"$dir/veth.ko" || rm -f "$dir/veth.ko" ;;
  *.ko.gz) gzip -dc "$ko" >"$dir/veth.ko" ;;
  esac
  echo "${ko:+${ko##*/}}${ko:-no veth.ko in $pkg (built in?)}" >"$dir/veth.note"
  deb_id "$deb" >"$dir/package"
  rm -rf "$tmp"
}

# build_initrd KEY: $cache/KEY/initrd.gz with busybox, init, sbx, the suite and overlay.ko.
build_initrd() {
  local key=$1 dir=$cache/$1 root applet
  root=$dir/initrd.d
  rm -rf "$root"
  mkdir -p "$root/bin" "$root/payload" "$root/proc" "$root/sys" "$root/dev" "$root/newroot"
  cp "$bb" "$root/bin/busybox"
  for applet in $("$bb" --list-full); do
    mkdir -p "$root/$(dirname "$applet")"
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
  done
  cp "$here/init" "$root/init"
  chmod 0755 "$root/init"
  cp "$cache/sbx" "$here/smoke.sh" "$here/smoke-lib.sh" "$root/payload/"
  [ -s "$dir/overlay.ko" ] && cp "$dir/overlay.ko" "$root/payload/"
  [ -s "$dir/veth.ko" ] && cp "$dir/veth.ko" "$root/payload/"
  # For smoke-lib.sh (POSIX sh): the value single-quoted.
  printf "SBX_ONLY='%s'\n" "${only//\'/\'\\\'\'}" >"$root/payload/config"
  (cd "$root" && find . | "$bb" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 >"$dir/initrd.gz.new"
  mv "$dir/initrd.gz.new" "$dir/initrd.gz"
  rm -rf "$root"
}

# boot KEY: runs the VM; the console goes to $cache/logs/KEY.log. Sets boot_rc, boot_secs.
boot() {
  local key=$1 dir=$cache/$1 log=$cache/logs/$1.log t0
  t0=$(date +%s)
  boot_rc=0
  # shellcheck disable=SC2086 # qemu_cpu is one word
  timeout -k 10 "$boot_timeout" qemu-system-x86_64 -accel tcg -cpu $qemu_cpu -m 2048 -smp 2 \
    -nographic -no-reboot -nic none \
    -kernel "$dir/vmlinuz" -initrd "$dir/initrd.gz" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1" </dev/null >"$log" 2>&1 || boot_rc=$?
  boot_secs=$(($(date +%s) - t0))
}

# ------------------------------------------------------------------------------- the runs
declare -A cell=() detail=() kinfo=()
checks=()
add_check() { # keeps the first-seen order of check names
  local c
  for c in "${checks[@]}"; do [ "$c" = "$1" ] && return 0; done
  checks+=("$1")
}
add_check boot

fetch_busybox || true
for key in "${keys[@]}"; do
  echo "== $key"
  if [ -n "$bb_error" ]; then
    cell[$key|boot]=SKIP
    detail[$key|boot]="busybox: $bb_error"
    echo "$key  SKIP  busybox: $bb_error"
    continue
  fi
  if ! fetch_kernel "$key"; then
    cell[$key|boot]=SKIP
    detail[$key|boot]="download failed: $fetch_error"
    echo "$key  SKIP  download failed: $fetch_error"
    continue
  fi
  kinfo[$key|package]=$(cat "$cache/$key/package")
  kinfo[$key|overlay]=$(cat "$cache/$key/overlay.note" 2>/dev/null || true)
  build_initrd "$key"
  log=$cache/logs/$key.log
  echo "   $key: booting ${kinfo[$key|package]} (log: $log)"
  boot "$key"

  done_line=$(tr -d '\r' <"$log" | grep -m1 -oE 'SBXDONE.*' || true)
  while IFS= read -r line; do
    set -f
    # shellcheck disable=SC2086 # split the protocol line into words
    set -- $line
    set +f
    case $1 in
    SBXCHECK)
      [ $# -ge 3 ] || continue
      name=$2
      add_check "$name"
      cell[$key|$name]=$3
      shift 3
      detail[$key|$name]="$*"
      ;;
    SBXINFO)
      [ $# -ge 2 ] || continue
      name=$2
      shift 2
      kinfo[$key|$name]="$*"
      ;;
    esac
  done < <(tr -d '\r' <"$log" | grep -oE 'SBX(CHECK|INFO) .*')

  if [ -n "$done_line" ] && [ "$done_line" != "SBXDONE init-failed" ]; then
    cell[$key|boot]=PASS
    detail[$key|boot]="${boot_secs}s"
  else
    cell[$key|boot]=FAIL
    # The console's last words (without terminal escapes and qemu's own farewell).
    last=$(tr -d '\r' <"$log" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g' |
      grep -v -e '^\s*$' -e '^qemu-system-x86_64: terminating' | tail -n1 | cut -c1-100)
    if [ "$boot_rc" = 124 ] || [ "$boot_rc" = 137 ]; then
      detail[$key|boot]="no SBXDONE: killed after ${boot_timeout}s; last line: $last"
    elif [ "$done_line" = "SBXDONE init-failed" ]; then
      detail[$key|boot]="init failed: ${kinfo[$key|init-error]:-?}"
    else
      detail[$key|boot]="no SBXDONE (qemu exit $boot_rc after ${boot_secs}s); last line: $last"
    fi
  fi
  echo "   $key: ${cell[$key|boot]} in ${boot_secs}s"
done

# ----------------------------------------------------------------------------------- report
echo
echo "Kernels"
for key in "${keys[@]}"; do
  if [ -z "${kinfo[$key|package]:-}" ]; then
    printf '  %-5s %s\n' "$key" "SKIP: ${detail[$key|boot]:-}"
    continue
  fi
  printf '  %-5s %s (uname -r %s)\n' "$key" "${kinfo[$key|package]}" "${kinfo[$key|release]:-?}"
  printf '        %s; lsm: %s\n' "${kinfo[$key|landlock]:-landlock: ?}" "${kinfo[$key|lsm]:-?}"
  printf '        %s; overlay module: %s; sbx doctor exit %s\n' "${kinfo[$key|userns]:-userns ?}" \
    "${kinfo[$key|overlay]:-none}" "${kinfo[$key|doctor-exit]:-?}"
  printf '        memory: %s\n' "${kinfo[$key|memory]:-?}"
  printf '        log: %s\n' "$cache/logs/$key.log"
done

echo
w=24
for c in "${checks[@]}"; do [ ${#c} -ge $w ] && w=$((${#c} + 1)); done
printf "%-${w}s" check
for key in "${keys[@]}"; do printf '  %-6s' "$key"; done
echo
pass=0 fail=0 skip=0
for c in "${checks[@]}"; do
  printf "%-${w}s" "$c"
  for key in "${keys[@]}"; do
    v=${cell[$key|$c]:-}
    if [ -z "$v" ]; then
      # A column without the row: the VM never got there, or was never booted.
      case ${cell[$key|boot]:-} in
      SKIP) v=SKIP ;;
      *) v=- ;;
      esac
    fi
    case $v in
    PASS) pass=$((pass + 1)) ;;
    FAIL) fail=$((fail + 1)) ;;
    SKIP) skip=$((skip + 1)) ;;
    esac
    printf '  %-6s' "$v"
  done
  echo
done

# FAILs and SKIPs, grouped per kernel by their detail (without the "(want N)" part): one
# cause that breaks many checks is printed once, with the checks it broke.
notes=0
for key in "${keys[@]}"; do
  declare -A members=()
  order=()
  for c in "${checks[@]}"; do
    v=${cell[$key|$c]:-}
    case $v in FAIL | SKIP) ;; *) continue ;; esac
    # (the VM cut the detail at a fixed length: compare no more than what every one kept)
    d=$(echo "${detail[$key|$c]:-}" | sed 's/ (want [^)]*)//; s/, [0-9]*s$//' | cut -c1-130)
    g="$v|$d"
    [ -n "${members[$g]:-}" ] || order+=("$g")
    members[$g]="${members[$g]:-}${members[$g]:+, }$c"
  done
  for g in "${order[@]}"; do
    [ $notes = 0 ] && { echo; echo "Failures and skips (kernel, state, checks, then the first line of the cause)"; notes=1; }
    printf '  %-5s %s  %s\n' "$key" "${g%%|*}" "${members[$g]}" | fold -s -w 110 | sed 's/ *$//; 2,$s/^/              /'
    printf '              %s\n' "${g#*|}"
  done
  unset members
done
echo
end=$(date +%s)
echo "wall time $((end - start))s; downloaded this run: $((downloaded / 1024)) KiB; cache: $cache"
echo "$pass passed, $fail failed, $skip skipped"
if [ $fail -gt 0 ] && [ $report_only = 0 ]; then
  exit 1
fi
exit 0
