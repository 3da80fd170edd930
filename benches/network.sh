#!/usr/bin/env bash
# What sbx's network modes cost, side by side in one run, over this machine's own addresses only:
# bulk TCP throughput from a server on the host to a client in the sandbox, connection setup
# latency, and the startup cost of --net on / proxy over --net none. See benches/README.md.
#
#   benches/network.sh        BULK_MIB=300 BULK_RUNS=5 CONN_N=500 CONN_ROUNDS=3 STARTUP_RUNS=300
#
# Modes (client side; the server is a python3 process on the host, run as the bench user):
#   no sandbox        the client connects to the server on 127.0.0.1 (the reference of every ratio)
#   --net host        the same, in a sandbox sharing the host's network
#   on, mapped        --net on --allow 127.0.0.1:PORT: sbx's listener inside at 127.0.0.1:PORT,
#                     joined to the host port with splice(2)
#   on, relay         --net on --allow ADDR:PORT, ADDR the host's first global IPv4 address: the
#                     sandbox's connect(2) is intercepted, sbx connects from the host and relays
#   proxy, CONNECT    --net proxy --allow ADDR:PORT, the client speaks HTTP CONNECT to $HTTP_PROXY
#   proxy, raw        the same sandbox, the client connects directly (intercepted as in on, relay)
# Each bulk run and each latency round is a fresh sandbox; the modes alternate their order round
# by round so that background load hits them alike. Figures are medians. A mode that cannot
# connect is reported as failed, and the others are still measured; nothing is asserted.
#
# Knobs (environment):
#   BULK_MIB=300 BULK_RUNS=5          size of one transfer, transfers per mode
#   CONN_N=500 CONN_WARMUP=20 CONN_ROUNDS=3   connections per sandbox (after uncounted warm-up ones), sandboxes per mode
#   CONN_MAX_S=15                     a sandbox stops its connections after this many seconds (a
#                                     mode that stalls each connection still ends in minutes)
#   STARTUP_RUNS=300 STARTUP_ROUNDS=10        hyperfine runs per command, split into rounds
#   NET_ADDR=                         the non-loopback address of the relay rows (default: the first
#                                     global IPv4 address of `ip -4 -o addr`); must be this machine's
#   BENCH_DIR=/tmp/sbx-bench BENCH_UID=65534 BENCH_GID=65534
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

BULK_MIB=${BULK_MIB:-300}
BULK_RUNS=${BULK_RUNS:-5}
CONN_N=${CONN_N:-500}
CONN_WARMUP=${CONN_WARMUP:-20}
CONN_ROUNDS=${CONN_ROUNDS:-3}
CONN_MAX_S=${CONN_MAX_S:-15}
STARTUP_RUNS=${STARTUP_RUNS:-300}
STARTUP_ROUNDS=${STARTUP_ROUNDS:-10}
BENCH_DIR=${BENCH_DIR:-/tmp/sbx-bench}
PY=python3

# shellcheck source=benches/lib/common.sh
. "$here/lib/common.sh"
bench_setup hyperfine python3 setpriv ip
install -m 0644 "$here/lib/netbench.py" "$work/netbench.py"

# The host's own non-loopback address, for the rows where sbx connects out itself.
addr=${NET_ADDR:-$(ip -4 -o addr show scope global | awk '{ split($4, a, "/"); print a[1]; exit }')}
if [[ -n $addr ]] && ! ip -4 -o addr | grep -qw "inet $addr"; then
    die "NET_ADDR=$addr is not an address of this machine"
fi

# The server: one python3 process listening on 127.0.0.1 (and $addr), ports chosen by the kernel.
server_pid=
cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"${as_user[@]}" "$PY" "$work/netbench.py" serve "$res/ports" 127.0.0.1 ${addr:+"$addr"} \
    >"$res/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
    [[ -f $res/ports ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$res/server.log" >&2; die "the server did not start"; }
    sleep 0.05
done
[[ -f $res/ports ]] || die "the server did not report its ports"
lo_port=$(awk '$1 == "127.0.0.1" { print $2 }' "$res/ports")
addr_port=${addr:+$(awk -v a="$addr" '$1 == a { print $2 }' "$res/ports")}

# Mode table: name, sandbox prefix (words), destination host and port, client flag.
names=() prefix=() dest=() flag=() label=()
mode() { names+=("$1") label+=("$2") prefix+=("$3") dest+=("$4") flag+=("${5:-}"); }
mode none "no sandbox → 127.0.0.1" "" "127.0.0.1 $lo_port"
[[ -n $addr ]] && mode none-addr "no sandbox → $addr" "" "$addr $addr_port"
mode host "--net host" "$sbx --net host --" "127.0.0.1 $lo_port"
mode on-mapped "--net on, mapped 127.0.0.1:PORT" "$sbx --net on --allow 127.0.0.1:$lo_port --" "127.0.0.1 $lo_port"
if [[ -n $addr ]]; then
    mode on-relay "--net on, relay to $addr:PORT" "$sbx --net on --allow $addr:$addr_port --" "$addr $addr_port"
    mode proxy-connect "--net proxy, HTTP CONNECT" "$sbx --net proxy --allow $addr:$addr_port --" "$addr $addr_port" --connect
    mode proxy-raw "--net proxy, raw (intercepted)" "$sbx --net proxy --allow $addr:$addr_port --" "$addr $addr_port"
fi
notes=()
[[ -n $addr ]] || notes+=("no global IPv4 address on this machine: the relay and proxy rows were skipped")

# client I OP ARGS... : run netbench.py OP in mode I; its stdout is the measurement.
client() {
    local i=$1 op=$2
    shift 2
    # shellcheck disable=SC2086  # prefix and dest are word lists on purpose
    "${as_user[@]}" ${prefix[i]} python3 netbench.py "$op" ${dest[i]} "$@" ${flag[i]}
}

# Every mode must connect at all; one that cannot is reported and left out.
ok=()
for i in "${!names[@]}"; do
    if client "$i" conn 3 0 30 >/dev/null 2>"$res/check.${names[i]}.log"; then
        ok+=("$i")
    else
        log "${names[i]} cannot connect (log: $res/check.${names[i]}.log):"
        sed 's/^/    /' "$res/check.${names[i]}.log" >&2
        : >"$res/failed.${names[i]}"
    fi
done
# in_order R: the working modes, reversed every other round.
in_order() {
    if (($1 % 2)); then printf '%s\n' "${ok[@]}"; else printf '%s\n' "${ok[@]}" | tac; fi
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)

log "bulk: $BULK_MIB MiB from the host's server, $BULK_RUNS runs per mode, alternating"
bytes=$((BULK_MIB << 20))
echo "$bytes" >"$res/bulk.size"
for ((r = 1; r <= BULK_RUNS; r++)); do
    printf '\r    round %d/%d ' "$r" "$BULK_RUNS" >&2
    for i in $(in_order "$r"); do
        client "$i" bulk "$bytes" >>"$res/bulk.${names[i]}" 2>>"$res/bulk.log" ||
            die "bulk transfer failed in mode ${names[i]} (log: $res/bulk.log)"
    done
done
printf '\n' >&2

log "connect: $CONN_N sequential connections per sandbox, $CONN_ROUNDS sandboxes per mode"
for ((r = 1; r <= CONN_ROUNDS; r++)); do
    printf '\r    round %d/%d ' "$r" "$CONN_ROUNDS" >&2
    for i in $(in_order "$r"); do
        client "$i" conn "$CONN_N" "$CONN_WARMUP" "$CONN_MAX_S" >>"$res/conn.${names[i]}" 2>>"$res/conn.log" ||
            die "connections failed in mode ${names[i]} (log: $res/conn.log)"
    done
done
printf '\n' >&2

log "startup: --net none / on / proxy / host, $STARTUP_RUNS runs each in $STARTUP_ROUNDS rounds"
start=(none "$sbx --net none -- /bin/true"
    on "$sbx --net on -- /bin/true"
    proxy "$sbx --net proxy --allow x.test:443 -- /bin/true"
    host "$sbx --net host -- /bin/true")
for ((k = 0; k < ${#start[@]}; k += 2)); do
    # shellcheck disable=SC2086
    check_runs "${start[k]}" ${start[k + 1]}
done
per=$(((STARTUP_RUNS + STARTUP_ROUNDS - 1) / STARTUP_ROUNDS))
n=$((${#start[@]} / 2))
for ((r = 1; r <= STARTUP_ROUNDS; r++)); do
    printf '\r    round %d/%d ' "$r" "$STARTUP_ROUNDS" >&2
    args=()
    for ((k = 0; k < n; k++)); do
        if ((r % 2)); then j=$k; else j=$((n - 1 - k)); fi
        args+=(-n "${start[2 * j]}" "${start[2 * j + 1]}")
    done
    w=3
    ((r == 1)) && w=20
    "${as_user[@]}" hyperfine -N -i --style none --warmup "$w" --runs "$per" \
        --export-json "$res/startup.r$r.json" "${args[@]}" >>"$res/hyperfine.log" 2>&1 ||
        die "hyperfine failed (log: $res/hyperfine.log)"
done
printf '\n' >&2

cleanup
server_pid=
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

notes+=("bulk: one transfer of $BULK_MIB MiB per sandbox (connect to last byte), $BULK_RUNS per mode, modes alternating their order run by run; MB = 10^6 bytes; the client discards with recv_into a 1 MiB buffer, the server (python3, on the host, as $bench_user) sends from a 4 MiB buffer")
notes+=("bulk, diag streaming: the same transfers timed from the first byte received to the last (what the relay moves per second once the request is through), and the median wait for the first byte")
notes+=("connect: per connection connect(2), a 1-byte request, the 1-byte answer, close; $CONN_N per sandbox after $CONN_WARMUP uncounted (fewer where $CONN_MAX_S s were over first: n in the range column), $CONN_ROUNDS sandboxes per mode; diag connect(2) only: the same connections up to connect's return (with HTTP CONNECT: up to the proxy's 200 answer)")
notes+=("startup: hyperfine -N, $STARTUP_RUNS runs per command interleaved in $STARTUP_ROUNDS rounds (warm-up 20, then 3), \`sbx --net MODE -- /bin/true\` with the default profile; proxy = \`--net proxy --allow x.test:443\`")
notes+=("server: 127.0.0.1:$lo_port${addr:+ and $addr:$addr_port}; PORT in the mode names is the server's")
notes+=("load average (1, 5, 15 min) at the start: $load_start; at the end: $load_end on $(nproc) CPUs")
notes+=("raw results: $res")

modes_arg=()
for i in "${!names[@]}"; do modes_arg+=("${names[i]}=${label[i]}"); done
BENCH_SBX_VERSION=$("$sbx" --version 2>/dev/null || echo "sbx ?") \
    BENCH_HYPERFINE_VERSION=$(hyperfine --version 2>/dev/null || echo "hyperfine ?") \
    BENCH_USER=$run_as_desc BENCH_NOTES=$(printf '%s\n' "${notes[@]}") \
    "$PY" "$here/lib/netreport.py" "$res" "$here/results/network-latest.md" "${modes_arg[@]}"
