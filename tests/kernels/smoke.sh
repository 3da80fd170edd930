# The smoke suite run inside each test VM (busybox sh, as root; see smoke-lib.sh).
#
# One line per check:   check NAME EXPECTED_EXIT [OPTIONS] -- COMMAND...
# COMMAND runs as uid 1000 in /home/user/work ($WORK), in a cgroup delegated to that user.
# EXPECTED_EXIT: 0 | 3 | 1,137 (any of) | !0,!125 (none of) | any. OPTIONS: --out RE, --no-out
# RE, --err RE, --no-err RE (extended regexes on stdout/stderr), --after 'SHELL' (must succeed
# afterwards), --require 'SHELL' (else SKIP), --cgroup session|none, --cwd DIR, --timeout SECS,
# --show. Plain shell lines between checks do the setup (as root).

# shellcheck source=smoke-lib.sh
. /usr/share/sbx-smoke/smoke-lib.sh
suite_info

# Kernels without landlock (5.10): sbx refuses every built-in profile unless the user opts in
# with --landlock best-effort (the no-landlock-* checks below see that refusal, with the real
# binary). Every other check runs sbx with the opt-in, through a shim first in the user's PATH.
if ! grep -qw landlock /sys/kernel/security/lsm; then
  mkdir -p /usr/local/sbin
  cat >/usr/local/sbin/sbx <<'SHIM'
#!/bin/sh
case $1 in
profile | doctor | completions | man | changes | apply | why | help | -V | --version | -h | --help)
  exec /usr/local/bin/sbx "$@" ;;
learn) shift; exec /usr/local/bin/sbx learn --landlock best-effort "$@" ;;
esac
exec /usr/local/bin/sbx --landlock best-effort "$@"
SHIM
  chmod 0755 /usr/local/sbin/sbx
  info landlock-opt-in "no landlock here: checks run sbx --landlock best-effort (no-landlock-* run it without)"
fi
memory_info
# Overlayfs mounts in a user namespace from Linux 5.11 on; before, sbx refuses overlays (125).
kv=$(uname -r | awk -F. '{ print $1 * 1000 + $2 }')

# --- basics --------------------------------------------------------------------------------
check version 0 --out '^sbx ' -- sbx --version
check true 0 -- sbx -- /bin/true
check exit-3 3 -- sbx -- sh -c 'exit 3'
check not-found 127 -- sbx -- /nonexistent/command
check uid-1000 0 --out '^1000$' -- sbx -- id -u
check cwd 0 --out "^$WORK\$" -- sbx -- pwd
check workdir-write 0 --after "test -e $WORK/written && rm $WORK/written" \
  -- sbx -- sh -c 'echo x > written'
# Past 250 ms the supervisor and init unmap their setup's code (#18): both go on from what
# the kernel maps back, and the hog below is then caught by the watchdog after its own release.
check settled 3 --out '^after$' -- sbx -- sh -c 'sleep 1; echo after; exit 3'

# --- every built-in profile ----------------------------------------------------------------
profiles=$(as_user --cgroup none sbx profile list 2>/dev/null | awk '{print $1}')
[ -n "$profiles" ] || profiles="default net-off net-on strict ci cargo python node make shell"
for p in $profiles; do
  check "profile-$p" 0 --out '^ok$' -- sbx --profile "$p" -- sh -c 'echo ok'
done

# --- limits --------------------------------------------------------------------------------
check timeout 124 --timeout 30 -- sbx --timeout 1s -- sleep 10
check limit-processes 0 --out '^ok$' -- sbx --limit processes=64 -- sh -c 'echo ok'
check memory 0 --out '^ok$' -- sbx --memory 64M -- sh -c 'echo ok'
check memory-no-cgroup 0 --out '^ok$' --cgroup session -- sbx --memory 64M -- sh -c 'echo ok'
check memory-cgroup-required 0 --out '^ok$' \
  -- sbx --memory 64M --limit cgroup=required -- sh -c 'echo ok'
# dd's 128 MiB buffer is over the limit: malloc fails (exit 1, RLIMIT_DATA) or the OOM killer
# ends it (137, cgroup memory.max).
check memory-enforced 1,137 --no-out . --show \
  -- sbx --memory 64M -- dd if=/dev/zero of=/dev/null bs=128M count=1

# --- the sandbox as a whole (#19): memory and processes summed over every process, with the
# delegated cgroup and without (the session cgroup is not delegated: sbx's watchdog holds them).
# Four dd's each hold a 40 MiB buffer (blocked writing into a pipe nobody reads): 160 MiB in all.
hog='for i in 1 2 3 4; do (dd if=/dev/zero bs=40M count=1 2>/dev/null | sleep 20) & done; wait'
check memory-whole-cgroup 137 --timeout 60 --err 'OOM killer' \
  -- sbx --memory 100M -- sh -c "$hog"
check memory-whole-watchdog 137 --cgroup session --timeout 60 --err 'memory' \
  -- sbx --memory 100M -- sh -c "$hog"
check memory-whole-watchdog-settled 137 --cgroup session --timeout 60 --err 'memory' \
  -- sbx --memory 100M -- sh -c "sleep 1; $hog"
# A fork bomb stops at the limit (busybox sh gives up at the first failed fork) and nothing of
# it is left once sbx is done; the watchdog's kill of a bomb that sits at the limit is tested
# on the development host (tests/limits.rs).
bomb='i=0; while [ $i -lt 200 ]; do sleep 20 & i=$((i+1)); done; wait'
check processes-bounded '!0,!125' --cgroup session --timeout 60 --err "can't fork" \
  --after '[ -z "$(pgrep -u 1000)" ]' -- sbx --limit processes=32 -- sh -c "$bomb"
check processes-bounded-cgroup '!0,!125' --timeout 60 --err "can't fork" \
  --after '[ -z "$(pgrep -u 1000)" ]' -- sbx --limit processes=32 -- sh -c "$bomb"
# One tmpfs budget: 12 MiB into /tmp, then 12 MiB into $HOME, with 16 MiB for both.
fill='dd if=/dev/zero of=/tmp/a bs=1M count=12 2>/dev/null; dd if=/dev/zero of=$HOME/b bs=1M count=12 2>/dev/null && echo over || echo stopped'
check tmpfs-budget 0 --out '^stopped$' -- sbx --limit tmpfs_size=16M -- sh -c "$fill"
check dev-read-only '!0,!125' --after "true" -- sbx -- sh -c 'echo x > /dev/planted'
# The user namespace's own limits: half the host's inotify instances, no nested namespace.
half=$(($(cat /proc/sys/user/max_inotify_instances) / 2))
check userns-inotify-share 0 --out "^$half\$" -- sbx -- cat /proc/sys/user/max_inotify_instances
check userns-no-nesting 0 --out '^0$' -- sbx -- cat /proc/sys/user/max_user_namespaces

# --- the workspace (#19): what host tools run is read-only, or ends the run when created -----
mkdir -p "$WORK/.git" && chown 1000:1000 "$WORK/.git"
check protect-git-read-only '!0,!125' --after "test ! -e $WORK/.git/config" \
  -- sbx -- sh -c 'echo "[core] fsmonitor = touch /tmp/pwned" > .git/config'
check protect-created 137 --err 'protected' \
  --after "test ! -e $WORK/.envrc && ls -a $WORK | grep -q '^.envrc.sbx-refused-' && rm -f $WORK/.envrc.sbx-refused-*" \
  -- sbx -- sh -c 'echo "touch /tmp/pwned" > .envrc; sleep 10'
rm -rf "$WORK/.git"

# --- overlays: writes land in a throwaway layer, the host directory stays as it was ---------
rm -f "$WORK/f"
if [ "$kv" -ge 5011 ]; then
  check overlay 0 --out '^x$' --after "test ! -e $WORK/f" \
    -- sbx --overlay "$WORK" -- sh -c 'echo x > f && cat f'
  check tmp-overlay 0 --out '^x$' --after "test ! -e $WORK/f" \
    -- sbx --tmp-overlay "$WORK" -- sh -c 'echo x > f && cat f'
else
  check overlay 125 --no-out . --err 'needs Linux >= 5.11' --after "test ! -e $WORK/f" \
    -- sbx --overlay "$WORK" -- sh -c 'echo x > f && cat f'
  check tmp-overlay 125 --no-out . --err 'needs Linux >= 5.11' --after "test ! -e $WORK/f" \
    -- sbx --tmp-overlay "$WORK" -- sh -c 'echo x > f && cat f'
fi

# sbx apply: kept outside the working directory (sbx refuses layers the command can write),
# then copied onto the tree through openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS).
rm -f "$WORK/applied"
apply_cmd='k=/tmp/kept.$$; sbx --overlay "$PWD" --keep-changes "$k" -- sh -c "echo x > applied" && sbx apply "$k"; r=$?; rm -rf "$k"; exit $r'
if [ "$kv" -ge 5011 ]; then
  check overlay-apply 0 --after "grep -q x $WORK/applied && rm -f $WORK/applied" -- sh -c "$apply_cmd"
else
  check overlay-apply 125 --err 'needs Linux >= 5.11' --after "test ! -e $WORK/applied" -- sh -c "$apply_cmd"
fi
mkdir -p "$WORK/ws" && chown 1000:1000 "$WORK/ws"
check overlay-kept-in-workdir 125 --err 'which the command can write' \
  -- sbx --overlay "$WORK/ws" --keep-changes "$WORK/kept" -- true
rm -rf "$WORK/ws"

# --- network -------------------------------------------------------------------------------
mkdir -p /srv/www /srv/other
echo sbx-proxy-ok >/srv/www/file
echo must-not-leak >/srv/other/file
httpd -p 127.0.0.1:8080 -h /srv/www
httpd -p 127.0.0.1:8081 -h /srv/other
up='wget -q -O - http://127.0.0.1:8080/file && wget -q -O - http://127.0.0.1:8081/file'
check net-host 0 --require "$up" --out '^sbx-proxy-ok$' \
  -- sbx --net host -- wget -q -O - http://127.0.0.1:8080/file
check net-none 1 --require "$up" --no-out . --show \
  -- sbx --net none -- wget -q -O - http://127.0.0.1:8080/file
check proxy-allowed 0 --require "$up" --out '^sbx-proxy-ok$' \
  -- sbx --net proxy --allow 127.0.0.1:8080 -- wget -q -O - http://127.0.0.1:8080/file
check proxy-denied '!0,!125' --require "$up" --no-out must-not-leak --show \
  -- sbx --net proxy --allow 127.0.0.1:8080 -- wget -q -O - http://127.0.0.1:8081/file

# --- --net on: a network namespace of its own; connect(2) goes to sbx (seccomp user
# notification), which reads the address (process_vm_readv), refuses internal ones with
# ECONNREFUSED and connects the others itself, handing the command's socket (pidfd_getfd) to
# its relay inside. The VM has no network but lo, so the "outside" is an internal address
# added to the VM's lo, reachable only when --allow lists it exactly.
mkdir -p /srv/inner
echo sbx-relay-ok >/srv/inner/file
ip addr add 10.9.9.9/32 dev lo
httpd -p 10.9.9.9:8082 -h /srv/inner
nc -ll -p 8083 -e echo sbx-nc-ok &
inner='wget -q -O - http://10.9.9.9:8082/file && nc 10.9.9.9 8083 </dev/null | grep -q sbx-nc-ok'
# The controls: uid 1000 without sbx reaches both (the host's loopback and the inner address).
check net-on-control-bare 0 --require "$up && $inner" --out '^sbx-proxy-ok$' \
  -- wget -q -O - http://127.0.0.1:8080/file
check net-on-control-bare-inner 0 --require "$up && $inner" --out '^sbx-relay-ok$' \
  -- wget -q -O - http://10.9.9.9:8082/file
# The host's loopback: a 127.0.0.1 destination is the sandbox's own lo (nothing listens there)
# unless --allow 127.0.0.1:PORT maps the host's port in.
check net-on-host-loopback '!0,!125' --require "$up" --no-out sbx-proxy-ok --show \
  -- sbx --net on -- wget -q -O - http://127.0.0.1:8080/file
check net-on-host-loopback-nc '!0,!125' --require "$up" --no-out . --show \
  -- sbx --net on -- nc 127.0.0.1 8083
check net-on-allow-loopback 0 --require "$up" --out '^sbx-proxy-ok$' \
  -- sbx --net on --allow 127.0.0.1:8080 -- wget -q -O - http://127.0.0.1:8080/file
check net-on-allow-loopback-other '!0,!125' --require "$up" --no-out must-not-leak --show \
  -- sbx --net on --allow 127.0.0.1:8080 -- wget -q -O - http://127.0.0.1:8081/file
# An internal address (10/8) is refused by sbx: ECONNREFUSED, counted in the report.
check net-on-internal-refused '!0,!125' --require "$inner" --no-out sbx-relay-ok \
  --err 'Connection refused' --show -- sbx --net on -- wget -q -O - http://10.9.9.9:8082/file
check net-on-internal-refused-nc '!0,!125' --require "$inner" --no-out . \
  --err 'Connection refused' -- sbx --net on -- nc 10.9.9.9 8083
# Listed exactly, it goes out through sbx's connect and relay (splice), for HTTP and raw TCP.
check net-on-allow-internal 0 --require "$inner" --out '^sbx-relay-ok$' \
  -- sbx --net on --allow 10.9.9.9:8082 -- wget -q -O - http://10.9.9.9:8082/file
check net-on-allow-internal-nc 0 --require "$inner" --out '^sbx-nc-ok$' \
  -- sbx --net on --allow 10.9.9.9:8083 -- nc 10.9.9.9 8083
# Another port of the listed address stays refused.
check net-on-allow-other-port '!0,!125' --require "$inner" --no-out . --err 'Connection refused' \
  -- sbx --net on --allow 10.9.9.9:8082 -- nc 10.9.9.9 8083
# A stand-in for the internet: a network namespace behind a veth pair (veth.ko, loaded by init)
# holding 198.51.100.7 (TEST-NET-2: documentation only, and the VM has no NIC: nothing leaves
# it). Not an internal range and not an address of the VM's own network: --net on's default
# path, where sbx connects out from the host's network without any --allow.
mkdir -p /srv/public
echo sbx-public-ok >/srv/public/file
# (busybox's ip names the peer itself, veth0 or so: found by its link to sbx-inet0)
if ip link add sbx-inet0 type veth peer name sbx-inet1; then
  peer=$(ip -o link | sed -n 's/^[0-9]*: *\([^@:]*\)@sbx-inet0.*/\1/p' | head -n1)
  unshare -n sleep 100000 &
  inet_pid=$!
  i=0
  while [ "$(readlink /proc/$inet_pid/ns/net)" = "$(readlink /proc/self/ns/net)" ] && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  ip link set "$peer" netns "$inet_pid"
  ip addr add 198.51.100.1/24 dev sbx-inet0
  ip link set sbx-inet0 up
  nsenter -t "$inet_pid" -n sh -c "ip link set lo up && ip addr add 198.51.100.7/24 dev $peer &&
    ip link set $peer up && httpd -p 198.51.100.7:8084 -h /srv/public"
  nsenter -t "$inet_pid" -n nc -ll -p 8085 -e echo sbx-public-nc-ok &
  sleep 1
fi
pub='ip link show sbx-inet0 >/dev/null && wget -q -O - http://198.51.100.7:8084/file | grep -q sbx-public-ok'
check net-on-control-bare-public 0 --require "$pub" --out '^sbx-public-nc-ok$' -- nc 198.51.100.7 8085
check net-on-public 0 --require "$pub" --out '^sbx-public-ok$' \
  -- sbx --net on -- wget -q -O - http://198.51.100.7:8084/file
check net-on-public-nc 0 --require "$pub" --out '^sbx-public-nc-ok$' -- sbx --net on -- nc 198.51.100.7 8085
check net-on-public-profile 0 --require "$pub" --out '^sbx-public-ok$' \
  -- sbx --profile net-on -- wget -q -O - http://198.51.100.7:8084/file
check net-on-report-public 0 --require "$pub" --out '"allowed": 1,' --out '"denied": 0,' \
  -- sbx --net on --json-status 1 -- wget -q -O /dev/null http://198.51.100.7:8084/file
check net-none-public 1 --require "$pub" --no-out . -- sbx --net none -- wget -q -O - http://198.51.100.7:8084/file
# The host's own address on that link (198.51.100.1, public-looking): refused, though uid 1000
# reaches the listener there bare.
check net-on-control-bare-host-address 0 --require "$pub" --out '^sbx-nc-ok$' -- nc 198.51.100.1 8083
check net-on-host-address-refused '!0,!125' --require "$pub" --no-out . --err 'Connection refused' \
  -- sbx --net on -- nc 198.51.100.1 8083
# --net proxy: a raw client (wget -Y off ignores the proxy) reaches no address sbx did not
# resolve for an allowed name, public or not.
check proxy-raw-public-refused '!0,!125' --require "$pub" --no-out sbx-public-ok --err 'Connection refused' \
  -- sbx --net proxy --allow 127.0.0.1:8080 -- wget -Y off -q -O - http://198.51.100.7:8084/file
# The sandbox's own loopback runs as made: a server and a client inside both sbx's sandbox.
check net-on-own-loopback 0 --out '^sbx-inside-ok$' \
  -- sbx --net on -- sh -c 'nc -l -p 9000 -e echo sbx-inside-ok & sleep 1; nc 127.0.0.1 9000 </dev/null; wait'
# The run report: the mode, the refused connection counted and named.
check net-on-report-denied 1 --require "$inner" --out '"mode": "on"' --out '"denied": 1,' \
  --out '"10\.9\.9\.9:8082"' -- sbx --net on --json-status 1 -- wget -q -O /dev/null http://10.9.9.9:8082/file
check net-on-report-allowed 0 --require "$inner" --out '"allowed": 1,' --out '"denied": 0,' \
  -- sbx --net on --allow 10.9.9.9:8082 --json-status 1 -- wget -q -O /dev/null http://10.9.9.9:8082/file
# DNS: sbx answers on 127.0.0.1:53 inside. The VM's resolv.conf names 127.0.0.1, where no
# nameserver runs (busybox has no dnsd): sbx's answer is then its own SERVFAIL, which no
# resolver without sbx would print (the bare control has nobody on port 53).
check net-on-dns-control-bare '!0' --show --no-out 'SERVFAIL' -- nslookup sbx-test.invalid 127.0.0.1
check net-on-dns-answered '!0,!125' --show --out 'SERVFAIL' \
  -- sbx --net on -- nslookup sbx-test.invalid 127.0.0.1
# A real answer relayed from the VM's nameserver needs one: busybox's dnsd, which Debian's
# busybox-static leaves out (the check then SKIPs, naming the missing applet).
check net-on-dns-upstream 0 --require 'busybox dnsd --help >/dev/null' \
  -- sbx --net on -- nslookup sbx-test.example
# --net proxy holds programs that ignore the proxy to its list: a name it does not allow gets
# NXDOMAIN from sbx (never asked upstream), a raw connection to an unlisted address ECONNREFUSED.
check proxy-dns-nxdomain '!0,!125' --show --out 'NXDOMAIN' \
  -- sbx --net proxy --allow 127.0.0.1:8080 -- nslookup not-allowed.example 127.0.0.1
check proxy-raw-refused '!0,!125' --require "$inner" --no-out . --err 'Connection refused' \
  -- sbx --net proxy --allow 127.0.0.1:8080 -- nc 10.9.9.9 8083

# --- with landlock relaxed to best-effort (what sbx could do on kernels short of its ABI) ----
mkdir -p /etc/sbx-smoke
printf '[security]\nlandlock = "best-effort"\n' >/etc/sbx-smoke/landlock-best-effort.toml
BE="--profile default --profile /etc/sbx-smoke/landlock-best-effort.toml"
# shellcheck disable=SC2086 # BE is a list of options
check best-effort-true 0 -- sbx $BE -- /bin/true
# Overlayfs mounts in a user namespace from Linux 5.11 on: before, the overlay is refused with
# one message naming the version (never replaced by a writable bind).
case $(uname -r) in
[1-4].* | 5.[0-9].* | 5.10.*)
  # shellcheck disable=SC2086
  check best-effort-overlay 125 --err 'needs Linux >= 5.11' --after "test ! -e $WORK/f" \
    -- sbx $BE --overlay "$WORK" -- sh -c 'echo x > f && cat f'
  ;;
*)
  # shellcheck disable=SC2086
  check best-effort-overlay 0 --out '^x$' --after "test ! -e $WORK/f" \
    -- sbx $BE --overlay "$WORK" -- sh -c 'echo x > f && cat f'
  ;;
esac
# shellcheck disable=SC2086
check best-effort-net-host 0 --require "$up" --out '^sbx-proxy-ok$' \
  -- sbx $BE --net host -- wget -q -O - http://127.0.0.1:8080/file
# shellcheck disable=SC2086
check best-effort-proxy 0 --require "$up" --out '^sbx-proxy-ok$' \
  -- sbx $BE --net proxy --allow 127.0.0.1:8080 -- wget -q -O - http://127.0.0.1:8080/file

# --- what this kernel's landlock lacks: refused or named, never printed on success (#13) ----
# Expectations come from the kernel, not from sbx: landlock needs 5.13 and `landlock` in the
# LSM list; ABI 5 (device ioctls) came with 6.10, ABI 6 (scoping) with 6.12.
kv=$(uname -r | awk -F. '{ print $1 * 1000 + $2 }')
ll='grep -qw landlock /sys/kernel/security/lsm'
# A default run prints nothing of its own, also where sbx falls back from the cgroup (the
# session cgroup is not delegated) or lowers a built-in limit to the hard limit it inherits.
check quiet-default 0 --require "$ll" --no-err . -- sbx -- true
check quiet-no-cgroup 0 --require "$ll" --cgroup session --no-err . -- sbx -- true
check quiet-net-on 0 --require "$ll" --no-err . -- sbx --profile net-on -- true
check quiet-net-on-allow 0 --require "$ll" --no-err . -- sbx --net on --allow 127.0.0.1:8080 -- true
check quiet-lowered-limit 0 --require "$ll" --no-err . --out '^1000$' \
  -- sh -c 'ulimit -n 1000 && sbx -- sh -c "ulimit -n"'
# ... but a limit the user set is one warning.
check warn-user-limit 0 --require "$ll" --err 'WARN limits.open_files = 2000 is above' \
  -- sh -c 'ulimit -n 1000 && sbx --limit open_files=2000 -- true'
# A 125 error comes alone, after the fallbacks were decided.
check error-alone 125 --require "$ll" --cgroup session --err '^sbx: ' --no-err 'WARN|INFO' \
  -- sbx --chdir /no/such/dir -- true
# Before 6.12: --net host runs without scoping abstract sockets (the host's network shares
# them), named once with -v and in the report; from 6.12 on nothing of it is degraded. On 5.10
# the shim's --landlock best-effort lets it run, so the same line shows there.
check net-host-degraded-v 0 --require "[ $kv -lt 6012 ]" --show \
  --err 'INFO degraded: abstract unix sockets: not scoped' -- sbx -v --net host -- true
check net-host-degraded-report 0 --require "[ $kv -lt 6012 ]" \
  --out '"abstract unix sockets: not scoped' -- sbx --net host --json-status 1 -- true
check rights-degraded-v 0 --require "$ll && [ $kv -lt 6010 ]" \
  --err "INFO degraded: landlock's device-ioctl right" -- sbx -v -- true
check net-host-not-degraded 0 --require "$ll && [ $kv -ge 6012 ]" --no-err 'degraded' \
  -- sbx -v --net host -- true
# ... and refused where the profile requires the scoping (exit 125, the fix named).
printf '[security]\nscope_abstract_sockets = "required"\n' >/etc/sbx-smoke/scope-required.toml
check net-host-scope-refused 125 --require "[ $kv -lt 6012 ]" --show --err 'abstract unix sockets' \
  -- sbx --profile default --profile /etc/sbx-smoke/scope-required.toml --net host -- true
check net-host-scope-required 0 --require "$ll && [ $kv -ge 6012 ]" --no-err . \
  -- sbx --profile default --profile /etc/sbx-smoke/scope-required.toml --net host -- true
# --net on (the net-on profile) has a network namespace of its own: its abstract sockets are
# the sandbox's, nothing is degraded for them on any kernel, and -v says nothing of them.
# (5.10 too, through the shim's --landlock best-effort: landlock's absence is named, no more)
check net-on-not-degraded 0 --no-err 'abstract unix sockets' \
  -- sbx -v --profile net-on -- true
check net-on-not-degraded-report 0 --out '"mode": "on"' \
  --no-out 'abstract unix sockets' -- sbx --net on --json-status 1 -- true
check net-on-scope-required 0 --require "$ll" --no-err . \
  -- sbx --profile default --profile /etc/sbx-smoke/scope-required.toml --net on -- true
# Without landlock: one line naming the kernel needed and the switch; with the switch the
# landlock part no longer blocks (the mount path is another matter on 5.10).
check no-landlock-refused 125 --require "! $ll" --no-err 'WARN|INFO|hint' \
  --err '^sbx: .*Linux 5\.13.*--landlock best-effort' -- /usr/local/bin/sbx -- true
check no-landlock-switch-passes any --require "! $ll" --show --no-err 'landlock is required' \
  -- /usr/local/bin/sbx --landlock best-effort -- true
check no-landlock-switch 0 --require "! $ll" --out '^ok$' --no-err . \
  -- /usr/local/bin/sbx --landlock best-effort -- sh -c 'echo ok'
# Named whatever the mount path then does (exit any): no-landlock-switch checks the run.
check no-landlock-named any --require "! $ll" --err 'INFO degraded: landlock: not applied' \
  -- /usr/local/bin/sbx -v --landlock best-effort -- true

# --- binds without the new mount API (issue 13) ----------------------------------------------
# Linux 5.10 has no mount_setattr (5.12): sbx binds with mount(2), remounts every mount of the
# copy and moves it into place. The same checks hold on every kernel, whichever path runs.
mkdir -p /srv/ro-src/sub
echo top >/srv/ro-src/top
mount -t tmpfs -o mode=1777 sbx-smoke-sub /srv/ro-src/sub && echo inner >/srv/ro-src/sub/inner
# A read-only bind whose source holds a submount: the submount is there, and read-only too.
# shellcheck disable=SC2086
check mounts-ro-submount '!0,!125' --out '^inner$' --after 'test ! -e /srv/ro-src/sub/f' \
  -- sbx $BE --ro-bind /srv/ro-src:/r -- sh -c 'cat /r/sub/inner; echo x >/r/sub/f'
# shellcheck disable=SC2086
check mounts-ro-submount-flags 0 --out '^ro,nosuid,nodev' \
  -- sbx $BE --ro-bind /srv/ro-src:/r -- sh -c 'grep " /r/sub " /proc/self/mountinfo | cut -d" " -f6'
# The control: through a writable bind the same write lands on the host.
# shellcheck disable=SC2086
check mounts-rw-submount-control 0 --after 'test -e /srv/ro-src/sub/f && rm /srv/ro-src/sub/f' \
  -- sbx $BE --bind /srv/ro-src:/r -- sh -c 'echo x >/r/sub/f'
umount /srv/ro-src/sub
# A symlink where a mount point goes is refused (never followed to /etc).
mkdir -p "$WORK/lw" && ln -sfn ../../../../etc "$WORK/lw/sub" && chown -hR 1000:1000 "$WORK/lw"
# shellcheck disable=SC2086
check mounts-symlink-mount-point 125 --err 'symlink' --after 'test -s /etc/passwd' \
  -- sbx $BE --bind "$WORK/lw:/w" --tmpfs /w/sub -- true
rm -rf "$WORK/lw"
# -v names the classic path exactly where it is taken (kernels before 5.12).
case $(uname -r) in
[1-4].* | 5.[0-9].* | 5.1[01].*)
  # shellcheck disable=SC2086
  check mounts-classic-named 0 --err 'the new mount API' -- sbx -v $BE -- true
  ;;
*)
  # shellcheck disable=SC2086
  check mounts-classic-named 0 --no-err 'replaced by classic calls' -- sbx -v $BE -- true
  ;;
esac

# --- containers and nesting (#13) -----------------------------------------------------------
# --proc host binds the /proc sbx sees, without a PID namespace (the mode for a container's
# masked /proc): ps and /dev/fd keep working.
# Without a PID namespace sbx scopes signals with landlock ABI 6 (6.12): before, --proc host is
# the user's opt-in to best-effort (the shim already opts in where there is no landlock at all).
ph=
if [ "$kv" -lt 6012 ] && grep -qw landlock /sys/kernel/security/lsm; then ph='--landlock best-effort'; fi
# shellcheck disable=SC2086
check proc-host 0 --out '^ok$' \
  -- sbx $ph --proc host -- sh -c 'ps >/dev/null && ls /dev/fd/ >/dev/null && echo ok'
# shellcheck disable=SC2086
check proc-host-refused-before-6.12 125 --require "[ $kv -lt 6012 ] && grep -qw landlock /sys/kernel/security/lsm" \
  --err 'landlock' -- sbx --proc host -- true
# sbx inside sbx: refused by the default profile with the fix named, run under nest.
check nested-default 125 --err 'profile nest' -- sbx -- sbx -- true
check nested-nest 0 --out '^sbx$' -- sbx --profile nest -- sbx -- hostname

# --- learn, why, trace-denials (#17) --------------------------------------------------------
# One run recorded through sbx's seccomp listener, a profile written over the base, the command
# run under it; a file beside what was learned stays out of reach.
mkdir -p /srv/learn/lib /srv/learn-other
echo learned >/srv/learn/lib/a && echo b >/srv/learn/lib/b && echo x >/srv/learn-other/x
chmod -R a+rX /srv/learn /srv/learn-other
# shellcheck disable=SC2086
check learn 0 --out '^learned$' --after "grep -q '\"/srv/learn/lib\"' $WORK/learned.toml" \
  -- sbx learn $BE -o "$WORK/learned.toml" -- sh -c 'cat /srv/learn/lib/a; cat /srv/learn/lib/b >/dev/null'
# shellcheck disable=SC2086
check learned-profile 0 --out '^learned$' -- sbx -p "$WORK/learned.toml" -- cat /srv/learn/lib/a
# shellcheck disable=SC2086
check learned-refuses-the-rest '!0,!125' --err 'No such file' \
  -- sbx -p "$WORK/learned.toml" -- cat /srv/learn-other/x
# shellcheck disable=SC2086
check why-usr-read-only 1 --out 'not writable' -- sbx why $BE /usr/bin/env --write
# shellcheck disable=SC2086
check trace-denials 3 --err 'the sandbox refused /srv/learn-other/x' \
  -- sbx $BE --trace-denials -- sh -c 'cat /srv/learn-other/x; exit 3'

# --- informational -------------------------------------------------------------------------
check doctor any -- sbx doctor # its output is in the log (suite_info)
