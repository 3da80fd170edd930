#!/usr/bin/env bash
# Real workloads (issue #18 item 4): each row times one real job without a sandbox, under sbx with
# the matching built-in profile, and under bubblewrap with the same isolation, in one interleaved
# run, and prints the ratios to no sandbox (target ≤ 1.03). See benches/README.md.
#
#   benches/workloads.sh                         every row (about 25 minutes on 2 cores, 3 runs)
#   ONLY=make,pytest,git-clone benches/workloads.sh   a subset
#
# Rows: cargo (cargo build --offline --release of ripgrep), make (make -j2 of lua5.4 from Debian
# sources), pytest (attrs' own test suite from its sdist), npm (npm ci --offline of express),
# git-clone (git clone --local --no-hardlinks of a generated repository), git-log
# (git log -p | wc -l of the same).
#
# Inputs are fetched once into BENCH_CACHE (crates.io, Debian's source archive, PyPI, npm) and
# reused by later runs; a missing tool or a failed download is a SKIP row in the table, never a
# silent pass. Every timed command runs as the unprivileged user (as root: uid 65534 via
# setpriv), from a fresh copy of its tree set up before each run (untimed). Knobs (environment):
#   RUNS=3 WARMUP=1          timed runs per command (interleaved, the order rotating), untimed first runs
#   ONLY=cargo,make,pytest,npm,git-clone,git-log
#   BENCH_CACHE=/var/cache/sbx-bench   the inputs (kept between runs; delete it to refetch)
#   BENCH_DIR=/var/tmp/sbx-bench-work      binaries, work trees, raw results (remade every run)
#   RIPGREP_VERSION=14.1.1 ATTRS_VERSION=26.1.0 EXPRESS_VERSION=4.21.2 DEBIAN_MIRROR=http://deb.debian.org/debian
#   BENCH_UID=65534 BENCH_GID=65534
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

RUNS=${RUNS:-3}
WARMUP=${WARMUP:-1}
ONLY=${ONLY:-cargo,make,pytest,npm,git-clone,git-log}
BENCH_DIR=${BENCH_DIR:-/var/tmp/sbx-bench-work}
BENCH_CACHE=${BENCH_CACHE:-/var/cache/sbx-bench}
RIPGREP_VERSION=${RIPGREP_VERSION:-14.1.1}
ATTRS_VERSION=${ATTRS_VERSION:-26.1.0}
PYTEST_VERSION=${PYTEST_VERSION:-9.2.0}
HYPOTHESIS_VERSION=${HYPOTHESIS_VERSION:-6.170.27}
EXPRESS_VERSION=${EXPRESS_VERSION:-4.21.2}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}

want() { [[ ",$ONLY," == *",$1,"* ]]; }

# shellcheck source=benches/lib/common.sh
. "$here/lib/common.sh"
bench_setup bwrap python3 setpriv
log "inputs cached in BENCH_CACHE=$BENCH_CACHE (delete it to fetch again); work and raw results in $BENCH_DIR"
mkdir -p "$BENCH_CACHE"
chmod 0755 "$BENCH_CACHE"
PY=/usr/bin/python3
skips=$res/skips.tsv notes=()
: >"$skips"

# skip ROW REASON: a visible SKIP row in the table.
skip() {
    log "SKIP $1: $2"
    printf '%s\t%s\n' "$1" "$2" >>"$skips"
}

# cached NAME FUNCTION: run FUNCTION (as root or the caller, online) to fill $BENCH_CACHE/NAME
# unless a previous run finished it; its output goes to $res/setup-NAME.log.
cached() {
    local d=$BENCH_CACHE/$1
    [[ -f $d/ready ]] && return 0
    log "fetching the inputs of $1 into $d (once)"
    rm -rf "$d" && mkdir -p "$d" && chmod 0755 "$d"
    if ("$2" "$d") >"$res/setup-$1.log" 2>&1; then
        chmod -R a+rX "$d"
        touch "$d/ready"
    else
        tail -5 "$res/setup-$1.log" >&2
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

# ripgrep's sources and its locked dependencies, fetched by cargo into a private CARGO_HOME, and
# the toolchain hard-linked out of rustup's home (/root is 0700; cp -a where links cannot be made).
fetch_cargo() {
    local d=$1 sysroot ch=$1/cargo-home
    sysroot=$(rustc --print sysroot)
    cp -al "$sysroot" "$d/sysroot" 2>/dev/null || cp -a "$sysroot" "$d/sysroot"
    mkdir -p "$d/get/src" "$ch"
    printf '[package]\nname = "get-ripgrep"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nripgrep = "=%s"\n' \
        "$RIPGREP_VERSION" >"$d/get/Cargo.toml"
    echo 'fn main() {}' >"$d/get/src/main.rs"
    CARGO_HOME=$ch cargo fetch --manifest-path "$d/get/Cargo.toml"
    cp -a "$ch"/registry/src/*/"ripgrep-$RIPGREP_VERSION" "$d/ripgrep"
    [[ -f $d/ripgrep/Cargo.lock ]] || { echo "ripgrep's crate has no Cargo.lock"; return 1; }
    (cd "$d/ripgrep" && CARGO_HOME=$ch cargo fetch --locked)
    rm -rf "$d/get"
}

# lua5.4's Debian source package, with a private sources list and apt state (never the machine's):
# the upstream tarball it carries. Debian's patches route the build through libtool for
# debian/rules; upstream's Makefile builds with `make linux` alone.
fetch_make() {
    local d=$1
    mkdir -p "$d/apt/state/lists/partial" "$d/apt/cache/archives/partial" "$d/src" "$d/lua"
    echo "deb-src $DEBIAN_MIRROR $DEBIAN_SUITE main" >"$d/apt/sources.list"
    local o=(-o "Dir::Etc::SourceList=$d/apt/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
        -o "Dir::State=$d/apt/state" -o "Dir::Cache=$d/apt/cache")
    apt-get "${o[@]}" update
    (cd "$d/src" && apt-get "${o[@]}" source --download-only lua5.4)
    tar -xzf "$d"/src/lua5.4_*.orig.tar.gz -C "$d/lua" --strip-components=1
    [[ -f $d/lua/src/Makefile ]] || { echo "no src/Makefile in lua5.4's upstream tarball"; return 1; }
    rm -rf "$d/apt"
}

# attrs' sdist and a venv (the system python, readable by every user) with pytest and hypothesis.
fetch_pytest() {
    local d=$1
    /usr/bin/python3 -m venv "$d/venv"
    "$d/venv/bin/pip" install -q --no-cache-dir "pytest==$PYTEST_VERSION" \
        "hypothesis==$HYPOTHESIS_VERSION" "attrs==$ATTRS_VERSION"
    "$d/venv/bin/pip" download -q --no-cache-dir --no-binary attrs --no-deps "attrs==$ATTRS_VERSION" -d "$d/dl"
    tar -xzf "$d/dl/attrs-$ATTRS_VERSION.tar.gz" -C "$d"
    mv "$d/attrs-$ATTRS_VERSION" "$d/attrs"
    rm -rf "$d/dl"
}

# express's published package with its dev dependencies (its test tools) locked, and npm's
# cache filled by one online `npm ci`.
fetch_npm() {
    local d=$1
    command -v npm >/dev/null || { echo "npm is not installed"; return 1; }
    mkdir -p "$d/get"
    (cd "$d/get" && npm pack -q "express@$EXPRESS_VERSION" --cache "$d/cache")
    mkdir -p "$d/project"
    tar -xzf "$d/get"/express-*.tgz -C "$d/project" --strip-components=1
    (cd "$d/project" && npm install --package-lock-only --ignore-scripts --no-audit --no-fund --cache "$d/cache" \
        && npm ci --ignore-scripts --no-audit --no-fund --cache "$d/cache" && rm -rf node_modules)
    rm -rf "$d/get"
}

# A large repository generated here (nothing of this size is reachable offline): one commit per
# crate version in cargo's registry cache, each adding its unpacked sources, so that `git log -p`
# prints every line of real Rust code once. Needs the cargo inputs.
fetch_git() {
    local d=$1 src n=0 c
    src=$(find "$BENCH_CACHE/cargo/cargo-home/registry/src" -mindepth 1 -maxdepth 1 -type d | head -1)
    [[ -n $src ]] || { echo "no crate sources (the cargo inputs are missing)"; return 1; }
    git init -q -b main "$d/work"
    for c in "$src"/*/; do
        c=$(basename "$c")
        cp -a "$src/$c" "$d/work/$c"
        git -C "$d/work" add -A "$c"
        GIT_AUTHOR_DATE="@$((1700000000 + n * 3600)) +0000" GIT_COMMITTER_DATE="@$((1700000000 + n * 3600)) +0000" \
            git -C "$d/work" -c user.name=bench -c user.email=bench@sbx.invalid commit -q -m "add $c"
        n=$((n + 1))
    done
    git clone -q --bare "$d/work" "$d/repo.git"
    git -C "$d/repo.git" gc -q
    rm -rf "$d/work"
    echo "$n commits, $(du -sh "$d/repo.git" | cut -f1) packed" >"$d/about"
}

# ---------------------------------------------------------------------------------------------
# The rows: NAME TREE PREPARE SBX-OPTIONS BWRAP-OPTIONS ENV COMMAND
#   TREE      a cached directory copied to $work/NAME before every run (or "-": an empty one)
#   PREPARE   run in $work/NAME after the copy, untimed, as the bench user (or "")
#   ENV       K=V ... given to all three alike (sbx: --setenv, bwrap: --setenv)
#   COMMAND   run with sh -c in $work/NAME, the cwd and only writable directory of the sandbox
# ---------------------------------------------------------------------------------------------
rows=()
row() { rows+=("$@"); }
base_path=/usr/local/bin:/usr/bin:/bin

if want cargo; then
    if ! command -v cargo >/dev/null || ! command -v rustc >/dev/null; then
        skip cargo "cargo/rustc not found"
    elif ! cached cargo fetch_cargo; then
        skip cargo "could not fetch ripgrep $RIPGREP_VERSION and its dependencies (log: $res/setup-cargo.log)"
    else
        c=$BENCH_CACHE/cargo
        # CARGO_HOME is a copy of the cache's in the work tree, made before every run (cargo
        # writes lock files and its cache tracker there): bubblewrap 0.8 has no --tmp-overlay
        # for the cargo profile's throwaway ~/.cargo, and this way all three do the same.
        row cargo "$c/ripgrep" "cp -a $c/cargo-home .cargo-home" \
            "--profile cargo --ro-bind $c/sysroot" "--ro-bind $c/sysroot $c/sysroot" \
            "PATH=$c/sysroot/bin:$base_path CARGO_HOME=$work/cargo/.cargo-home CARGO_NET_OFFLINE=true" \
            "cargo build --offline --release --locked -q"
    fi
fi

if want make; then
    if ! command -v gcc >/dev/null || ! command -v make >/dev/null; then
        skip make "gcc/make not found"
    elif ! cached make fetch_make; then
        skip make "apt-get source lua5.4 failed (log: $res/setup-make.log)"
    else
        row make "$BENCH_CACHE/make/lua" "" "--profile make" "" "PATH=$base_path" \
            "make -s -j2 linux >/dev/null"
    fi
fi

if want pytest; then
    if ! cached pytest fetch_pytest; then
        skip pytest "could not make a venv with pytest and hypothesis, or fetch attrs $ATTRS_VERSION (log: $res/setup-pytest.log)"
    else
        p=$BENCH_CACHE/pytest
        # The default profile: the python profile's network is the proxy to PyPI, and its
        # allowlist refuses --net none. Its environment is given to all three. pytest's summary
        # line goes to the run's log (some of attrs' tests fail the same way everywhere).
        row pytest "$p/attrs" "" "--ro-bind $p/venv" "--ro-bind $p/venv $p/venv" \
            "PATH=$base_path PYTHONPATH=src PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1" \
            "$p/venv/bin/python -m pytest -q -p no:cacheprovider tests | tail -n 1"
    fi
fi

if want npm; then
    if ! command -v npm >/dev/null; then
        skip npm "npm not installed (apt-get install npm)"
    elif ! cached npm fetch_npm; then
        skip npm "could not fetch express $EXPRESS_VERSION and its dependencies from npm (log: $res/setup-npm.log)"
    else
        n=$BENCH_CACHE/npm
        # npm writes to its cache even offline (logs, index): a copy in the work tree, made before
        # every run. The default profile: the node profile's network is the proxy to npm's
        # registry, and its allowlist refuses --net none; its environment is given to all three.
        row npm "$n/project" "cp -a $n/cache .npm-cache" "" "" \
            "PATH=$base_path npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false" \
            "npm ci --offline --ignore-scripts --cache .npm-cache >/dev/null"
    fi
fi

if want git-clone || want git-log; then
    if ! command -v git >/dev/null; then
        want git-clone && skip git-clone "git not found"
        want git-log && skip git-log "git not found"
    elif [[ ! -f $BENCH_CACHE/cargo/ready ]]; then
        want git-clone && skip git-clone "the generated repository needs the cargo inputs (crate sources)"
        want git-log && skip git-log "the generated repository needs the cargo inputs (crate sources)"
    elif ! cached git fetch_git; then
        want git-clone && skip git-clone "could not generate the repository (log: $res/setup-git.log)"
        want git-log && skip git-log "could not generate the repository (log: $res/setup-git.log)"
    else
        g=$BENCH_CACHE/git
        # --no-hardlinks: link(2) across a bind mount fails with EXDEV, and with an explicit --local
        # git then stops; all three copy the objects alike. The repository belongs to the bench
        # user: git refuses another user's repository ("dubious ownership").
        if ((EUID == 0)); then chown -R "$BENCH_UID:$BENCH_GID" "$g/repo.git"; fi
        want git-clone && row git-clone - "" "--ro-bind $g/repo.git" "--ro-bind $g/repo.git $g/repo.git" \
            "PATH=$base_path" \
            "git clone -q --local --no-hardlinks $g/repo.git clone"
        want git-log && row git-log - "git clone -q --local --no-hardlinks $g/repo.git clone" \
            "" "" "PATH=$base_path" \
            "git -C clone log -p | wc -l >/dev/null"
    fi
fi

# ---------------------------------------------------------------------------------------------
# The interleaved runs
# ---------------------------------------------------------------------------------------------
times=$res/times.tsv
: >"$times"
printf 'workload\ttool\trun\tseconds\tstatus\n' >"$times"
{
    echo "runs=$RUNS warmup=$WARMUP"
    echo "bwrap base: $bwrap_prefix (with this row's directory instead of $work)"
} >"$res/settings.txt"

# the command line of TOOL for row fields, as an array in $cmd
build_cmd() {
    local tool=$1 dir=$2 sbx_opts=$3 bwrap_opts=$4 envs=$5 command=$6 kv
    cmd=("${as_user[@]}")
    case $tool in
        none)
            # shellcheck disable=SC2206
            cmd+=($envs sh -c "$command")
            ;;
        sbx)
            cmd+=("$sbx")
            # shellcheck disable=SC2206
            cmd+=($sbx_opts)
            for kv in $envs; do cmd+=(--setenv "$kv"); done
            cmd+=(-- sh -c "$command")
            ;;
        bwrap)
            cmd+=(bwrap --unshare-all --die-with-parent --new-session --clearenv
                --ro-bind /usr /usr --ro-bind /etc /etc --ro-bind-try /opt /opt
                --symlink usr/bin /bin --symlink usr/sbin /sbin --symlink usr/lib /lib --symlink usr/lib64 /lib64
                --proc /proc --dev /dev --tmpfs /tmp --tmpfs /var/tmp --tmpfs "$home")
            # shellcheck disable=SC2206
            cmd+=($bwrap_opts --bind "$dir" "$dir" --chdir "$dir" --hostname sbx
                --setenv HOME "$home" --setenv USER "$bench_user" --setenv LOGNAME "$bench_user"
                --setenv LANG C.UTF-8)
            for kv in $envs; do cmd+=(--setenv "${kv%%=*}" "${kv#*=}"); done
            cmd+=(-- sh -c "$command")
            ;;
    esac
}

# fresh TREE PREPARE DIR: the row's work tree as a new copy, owned by the bench user
fresh() {
    local tree=$1 prepare=$2 dir=$3
    rm -rf "$dir"
    if [[ $tree == - ]]; then mkdir -p "$dir"; else cp -a "$tree" "$dir"; fi
    if ((EUID == 0)); then chown -R "$BENCH_UID:$BENCH_GID" "$dir"; fi
    if [[ -n $prepare ]]; then (cd "$dir" && "${as_user[@]}" sh -c "$prepare" >/dev/null 2>&1); fi
    sync
}

tools=(none sbx bwrap)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for ((i = 0; i < ${#rows[@]}; i += 7)); do
    name=${rows[i]} tree=${rows[i + 1]} prepare=${rows[i + 2]}
    dir=$work/$name
    log "$name: $WARMUP untimed + $RUNS timed runs of each of ${tools[*]}"
    failed=
    for ((r = 1 - WARMUP; r <= RUNS; r++)); do
        for ((k = 0; k < 3; k++)); do
            # the order rotates every run: none sbx bwrap, sbx bwrap none, bwrap none sbx...
            tool=${tools[(k + r + WARMUP) % 3]}
            build_cmd "$tool" "$dir" "${rows[i + 3]}" "${rows[i + 4]}" "${rows[i + 5]}" "${rows[i + 6]}"
            fresh "$tree" "$prepare" "$dir"
            printf '\r    %s: run %d/%d, %s    ' "$name" "$r" "$RUNS" "$tool" >&2
            t0=$(date +%s%N)
            set +e
            (cd "$dir" && "${cmd[@]}") >"$res/$name.$tool.r$r.log" 2>&1
            status=$?
            set -e
            t1=$(date +%s%N)
            if ((status != 0)); then
                failed+=" $tool"
                printf '\n' >&2
                log "$name: $tool exited $status (log: $res/$name.$tool.r$r.log)"
                tail -5 "$res/$name.$tool.r$r.log" >&2
            fi
            if ((r >= 1)); then
                printf '%s\t%s\t%d\t%s\t%d\n' "$name" "$tool" "$r" \
                    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')" "$status" >>"$times"
            fi
        done
    done
    printf '\n' >&2
    rm -rf "$dir"
    [[ -z $failed ]] || notes+=("$name: failed runs of$failed (logs in $res)")
done

# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
export BENCH_SBX_VERSION=$(sbx_version_of "$sbx")
export BENCH_BWRAP_VERSION=$(bwrap --version 2>/dev/null | head -1)
export BENCH_USER=$run_as_desc BENCH_RUNS=$RUNS BENCH_WARMUP=$WARMUP BENCH_CACHE
export BENCH_VERSIONS="ripgrep $RIPGREP_VERSION; lua5.4 from Debian $DEBIAN_SUITE; attrs $ATTRS_VERSION (pytest $PYTEST_VERSION, hypothesis $HYPOTHESIS_VERSION); express $EXPRESS_VERSION; $(git --version 2>/dev/null); generated repository: $(cat "$BENCH_CACHE/git/about" 2>/dev/null || echo none)"
notes+=("load average (1, 5, 15 min) at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs")
notes+=("raw results (times.tsv, each run's output): $res")
BENCH_NOTES=$(printf '%s\n' "${notes[@]}")
export BENCH_NOTES
"$PY" "$here/lib/workloads_report.py" "$res" "$here/results/workloads-latest.md"
