# The machinery of the in-VM smoke suite (busybox sh), sourced by smoke.sh. See README.md.
#
# The suite itself runs as root (it sets up servers and cgroups); every command a check tests
# runs as uid 1000 ("user", HOME=/home/user) through su, never as root.
#
# Console protocol (one line each, read by run.sh):
#   SBXINFO <key> <value...>
#   SBXCHECK <name> PASS|FAIL|SKIP <detail...>
#   SBXDONE ...                     (printed by init when the suite returns)

SMOKE_DIR=/usr/share/sbx-smoke
USER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORK=/home/user/work
CHECK_TIMEOUT=60 # seconds a check may take before it is killed and FAILs
OUT=/run/sbx-smoke
mkdir -p "$OUT"
# Optional settings from run.sh: SBX_ONLY (an extended regex: run only the checks it matches).
SBX_ONLY=
# shellcheck disable=SC1091 # written by run.sh into the initramfs
[ -r "$SMOKE_DIR/config" ] && . "$SMOKE_DIR/config"

info() { # info KEY VALUE...
  key=$1
  shift
  echo "SBXINFO $key $(echo "$*" | tr '\r\n\t' '   ' | cut -c1-300)"
}

_result() { # _result NAME STATE DETAIL
  echo "SBXCHECK $1 $2 $(echo "$3" | tr '\r\n\t' '   ' | cut -c1-160)"
}

# _dump LABEL FILE: the first lines of a check's output, for humans reading the log.
_dump() {
  [ -s "$2" ] || return 0
  echo "    --- $1"
  head -n 25 "$2" | sed 's/^/    | /'
}

# as_user [--cgroup delegated|session|none] [--cwd DIR] [--timeout SECS] CMD...: run CMD as
# uid 1000 with a clean environment, SIGKILLed after SECS (if given). --cgroup: start it in a
# fresh cgroup delegated to uid 1000 (like `systemd-run --user --scope -p Delegate=yes`; the
# default), in the root-owned login session cgroup (no delegation), or wherever the suite is.
as_user() {
  _cg=delegated
  _cwd=$WORK
  _kill=
  while :; do
    case $1 in
    --cgroup) _cg=$2; shift 2 ;;
    --cwd) _cwd=$2; shift 2 ;;
    --timeout) _kill="timeout -s KILL $2"; shift 2 ;;
    *) break ;;
    esac
  done
  _cgdir=
  case $_cg in
  delegated)
    if [ -n "${SBX_VM_CG_DELEGATED:-}" ]; then
      _n=$((${_n:-0} + 1))
      _cgdir=$SBX_VM_CG_DELEGATED/run-$$-$_n.scope
      if ! mkdir "$_cgdir" || ! chown 1000:1000 "$_cgdir" "$_cgdir/cgroup.procs" \
        "$_cgdir/cgroup.subtree_control" "$_cgdir/cgroup.threads"; then
        echo "as_user: cannot make the delegated cgroup $_cgdir" >&2
        return 125
      fi
    fi
    ;;
  session) _cgdir=${SBX_VM_CG_SESSION:-} ;;
  none) ;;
  *) echo "as_user: bad --cgroup $_cg" >&2; return 125 ;;
  esac
  # timeout runs env, which execs sh, which moves itself into the cgroup and execs su, which
  # execs sh, which execs CMD: one process, the one that timeout kills. (busybox has no
  # setuidgid; its su, run by root, asks no password. The "--" keeps su from taking CMD's
  # options for its own.)
  # shellcheck disable=SC2016 # $1, $$ and $@ are the inner shell's
  $_kill env -i PATH="$USER_PATH" TERM=dumb LANG=C sh -c '
    if [ -n "$1" ]; then echo $$ >"$1/cgroup.procs" || exit 125; fi
    shift
    exec su -s /bin/sh user -c "cd \"\$0\" && exec \"\$@\"" -- "$@"' \
    as_user "$_cgdir" "$_cwd" "$@"
  _rc=$?
  case $_cgdir in
  */run-*.scope)
    # Kill what is left (after a timeout), then remove the run cgroup with what sbx made
    # below it (its supervisor leaf), deepest first.
    [ -e "$_cgdir/cgroup.kill" ] && echo 1 >"$_cgdir/cgroup.kill" 2>/dev/null
    find "$_cgdir" -depth -type d -exec rmdir {} \; 2>/dev/null
    ;;
  esac
  return $_rc
}

# _expect_ok CODE SPEC: whether exit CODE matches SPEC, a comma-separated list of N (exactly
# N), !N (anything but N) or "any". Any N matches; else all !N must hold.
_expect_ok() {
  _code=$1
  _pos=0
  _negok=1
  for _e in $(echo "$2" | tr ',' ' '); do
    case $_e in
    any) return 0 ;;
    !*) [ "$_code" = "${_e#!}" ] && _negok=0 ;;
    *) _pos=1; [ "$_code" = "$_e" ] && return 0 ;;
    esac
  done
  [ $_pos = 0 ] && [ $_negok = 1 ]
}

# _first_error FILE: the line of sbx's stderr that says most: the first one mentioning an
# error, else the first non-empty one.
_first_error() {
  _l=$(grep -m1 -iE 'error|fail|denied|not permitted|unsupported|cannot|refused' "$1")
  [ -n "$_l" ] || _l=$(grep -m1 . "$1")
  echo "$_l"
}

_nl='
'

# _unmatched RES FILE: prints the first of RES (one extended regex a line) that no line of FILE
# matches, and succeeds; fails when every one matches (or there are none).
_unmatched() {
  [ -n "$1" ] || return 1
  echo "$1" | while IFS= read -r _r; do
    grep -qE "$_r" "$2" || { echo "$_r"; exit 0; }
  done | grep -m1 .
}

# check NAME EXPECT [OPTIONS] -- CMD...
#   NAME     [A-Za-z0-9._-]+, the row of the table
#   EXPECT   the exit codes that pass: 0, 3, 1,137, !0,!125 or any (see _expect_ok)
#   CMD      run as uid 1000 (see as_user), stdin /dev/null, in $WORK unless --cwd
# OPTIONS
#   --out RE          stdout must match the extended regex RE (grep -E); repeatable (each)
#   --no-out RE       stdout must not match RE
#   --err RE          stderr must match RE; repeatable (each)
#   --no-err RE       stderr must not match RE
#   --cwd DIR         run CMD in DIR
#   --cgroup MODE     delegated (default), session or none (see as_user)
#   --timeout SECS    kill the check after SECS (default $CHECK_TIMEOUT): FAIL
#   --require SHELL   run SHELL (as root) first; if it fails the check is a SKIP
#   --after SHELL     run SHELL (as root) after CMD; if it fails the check FAILs
#   --show            always print CMD's output into the log (not only on FAIL)
check() {
  _name=$1
  _want=$2
  shift 2
  _outre='' _nooutre='' _errre='' _noerrre='' _ccwd=$WORK _ccg=delegated _tmo=$CHECK_TIMEOUT
  _req='' _after='' _show=0
  while [ $# -gt 0 ]; do
    case $1 in
    --out) _outre="$_outre${_outre:+$_nl}$2"; shift 2 ;;
    --no-out) _nooutre=$2; shift 2 ;;
    --err) _errre="$_errre${_errre:+$_nl}$2"; shift 2 ;;
    --no-err) _noerrre=$2; shift 2 ;;
    --cwd) _ccwd=$2; shift 2 ;;
    --cgroup) _ccg=$2; shift 2 ;;
    --timeout) _tmo=$2; shift 2 ;;
    --require) _req=$2; shift 2 ;;
    --after) _after=$2; shift 2 ;;
    --show) _show=1; shift ;;
    --) shift; break ;;
    *) _result "$_name" FAIL "suite error: unknown check option $1"; return 0 ;;
    esac
  done
  if [ -n "$SBX_ONLY" ] && ! echo "$_name" | grep -qE "$SBX_ONLY"; then
    return 0
  fi
  case $_name in
  *[!A-Za-z0-9._-]* | "") _result "bad-name" FAIL "suite error: bad check name '$_name'"; return 0 ;;
  esac
  if [ $# -eq 0 ]; then
    _result "$_name" FAIL "suite error: no command"
    return 0
  fi
  if [ -n "$_req" ] && ! sh -c "$_req" >"$OUT/$_name.req" 2>&1; then
    _result "$_name" SKIP "requirement failed: $_req: $(grep -m1 . "$OUT/$_name.req")"
    return 0
  fi

  echo "=== check $_name (want exit $_want): $*"
  _t0=$(date +%s)
  as_user --cgroup "$_ccg" --cwd "$_ccwd" --timeout "$_tmo" "$@" \
    </dev/null >"$OUT/$_name.out" 2>"$OUT/$_name.err"
  _rc=$?
  _secs=$(($(date +%s) - _t0))

  _why=
  if [ $_rc = 137 ] && [ $_secs -ge "$_tmo" ]; then
    _why="check timed out after ${_tmo}s (killed)"
  elif ! _expect_ok $_rc "$_want"; then
    _why="exit $_rc (want $_want): $(_first_error "$OUT/$_name.err")"
  elif _re=$(_unmatched "$_outre" "$OUT/$_name.out"); then
    _why="stdout does not match /$_re/: $(grep -m1 . "$OUT/$_name.out")"
  elif [ -n "$_nooutre" ] && grep -qE "$_nooutre" "$OUT/$_name.out"; then
    _why="stdout matches /$_nooutre/: $(grep -m1 -E "$_nooutre" "$OUT/$_name.out")"
  elif _re=$(_unmatched "$_errre" "$OUT/$_name.err"); then
    _why="stderr does not match /$_re/: $(grep -m1 . "$OUT/$_name.err")"
  elif [ -n "$_noerrre" ] && grep -qE "$_noerrre" "$OUT/$_name.err"; then
    _why="stderr matches /$_noerrre/: $(grep -m1 -E "$_noerrre" "$OUT/$_name.err")"
  elif [ -n "$_after" ] && ! sh -c "$_after" >"$OUT/$_name.after" 2>&1; then
    _why="after-check failed: $_after $(grep -m1 . "$OUT/$_name.after")"
  fi

  if [ -n "$_why" ] || [ $_show = 1 ]; then
    _dump stdout "$OUT/$_name.out"
    _dump stderr "$OUT/$_name.err"
  fi
  if [ -n "$_why" ]; then
    _result "$_name" FAIL "$_why"
  else
    _result "$_name" PASS "exit $_rc, ${_secs}s"
  fi
  return 0
}

# memory_info: a figure, not a check (benchmarks do not assert): the resident peak of sbx's
# supervisor and init (its child named sbx; with `--cgroup none` there is no cgroup janitor,
# whose fork would be another) during `sbx -- sleep 1` on this kernel (benches/README.md,
# "Text order"), and their summed Pss (a walk of the page tables) at 0.2 s, while the setup's
# code is still mapped, and at 0.6 s, after the settle (sys::SETTLE_MS). Before 6.2 (5.10,
# 6.1) a process's RSS counters lag its last page faults (up to 64 of them), so VmHWM there is
# a lower bound; Pss is exact everywhere.
memory_info() {
  # As root, which may read init's smaps_rollup (its user namespace's owner may not). The
  # supervisor is the first process named sbx below as_user's (busybox su forks).
  as_user --cgroup none sbx -- sleep 1 >/dev/null 2>&1 &
  _w=$!
  _sbx_child() { # PID: its child named sbx
    for _c in $(cat /proc/$1/task/$1/children 2>/dev/null); do
      [ "$(cat /proc/$_c/comm 2>/dev/null)" = sbx ] && echo "$_c"
    done
  }
  _p=
  for _try in 1 2 3 4 5 6 7 8 9 10; do
    _p=$_w
    while [ -n "$_p" ] && [ "$(cat /proc/$_p/comm 2>/dev/null)" != sbx ]; do
      _p=$(cat /proc/$_p/task/$_p/children 2>/dev/null | cut -d' ' -f1)
    done
    [ -n "$_p" ] && break
    sleep 0.02
  done
  _init() { _sbx_child "$_p"; }
  _sum() { # FILE FIELD: the field's KiB in the supervisor's and init's FILE, summed
    _t=0
    for _q in $_p $(_init); do
      _t=$((_t + $(awk -v f="$2:" '$1 == f { print $2 }' /proc/$_q/$1 2>/dev/null || echo 0)))
    done
    echo $_t
  }
  sleep 0.2
  _pss1=$(_sum smaps_rollup Pss)
  sleep 0.4
  _i=$(_init)
  _s=$(awk '/^VmHWM/ { print $2 }' /proc/$_p/status)
  _ih=$(awk '/^VmHWM/ { print $2 }' /proc/${_i:-0}/status 2>/dev/null)
  _pss2=$(_sum smaps_rollup Pss)
  wait $_w
  info memory "VmHWM during sbx -- sleep 1: supervisor $_s KiB, init ${_ih:-?} KiB," \
    "sum $((_s + ${_ih:-0})) KiB; Pss sum at 0.2 s $_pss1 KiB, at 0.6 s $_pss2 KiB"
}

# suite_info: what the kernel offers, for the report's header.
suite_info() {
  info release "$(uname -r)"
  info version "$(uname -v)"
  info lsm "$(cat /sys/kernel/security/lsm 2>/dev/null || echo unknown)"
  info userns "max_user_namespaces=$(cat /proc/sys/user/max_user_namespaces 2>/dev/null)" \
    "unprivileged_userns_clone=$(cat /proc/sys/kernel/unprivileged_userns_clone 2>/dev/null || echo n/a)"
  info cgroup "controllers: $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
  info overlay "$(grep -w overlay /proc/filesystems | tr -s '\t ' ' ')"
  info suite-uid "$(as_user --cgroup none id)"
  info sbx "$(as_user --cgroup none sbx --version 2>&1)"
  # The landlock line of sbx doctor (the kernel has no other plain place for the ABI).
  as_user sbx doctor >"$OUT/doctor.txt" 2>&1
  echo "SBXINFO doctor-exit $?"
  info landlock "$(grep -m1 -i landlock "$OUT/doctor.txt" | sed 's/^ *//')"
  echo "=== sbx doctor (as uid 1000)"
  sed 's/^/    | /' "$OUT/doctor.txt"
}
