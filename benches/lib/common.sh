# Shared setup of benches/run.sh and benches/startup-profile.sh (sourced, not run).
#
# After `bench_setup TOOL...`: the tools are installed, sbx is built in release mode and copied
# with the helpers into $BENCH_DIR (world-accessible, under /tmp: root's home is 0700), and
#   $bin $work $home $res   the directories (work, home and results belong to the bench user)
#   $sbx                    the copied sbx binary
#   as_user=(...)           prefix that runs a command as the unprivileged user, in a clean env
#   $bench_user $run_as_desc
#   $sbx_startup $bwrap_prefix $bwrap_startup   the startup commands, as strings split by words
# and the shell is in $work. Variables read: BENCH_DIR BENCH_UID BENCH_GID CARGO_TARGET_DIR.

BENCH_UID=${BENCH_UID:-65534}
BENCH_GID=${BENCH_GID:-65534}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# ensure_tools TOOL... : install what is missing with apt-get (one `apt-get update` first).
ensure_tools() {
    local -A pkg_of=([bwrap]=bubblewrap [hyperfine]=hyperfine [gcc]=gcc [make]=make
        [python3]=python3 [ip]=iproute2 [setpriv]=util-linux [unshare]=util-linux [strace]=strace)
    local missing=() tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg_of[$tool]:-$tool}")
    done
    ((${#missing[@]} == 0)) && return 0
    if ((EUID != 0)); then
        die "missing: ${missing[*]} (install them, e.g. sudo apt-get install ${missing[*]})"
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Where `cargo build --release` put sbx under target directory $1: .cargo/config.toml builds
# for the host triple (static glibc), so target/<triple>/release/sbx, unless overridden.
release_binary() {
    local host
    host=$(rustc -vV | sed -n 's/^host: //p')
    if [[ -x $1/$host/release/sbx ]]; then
        echo "$1/$host/release/sbx"
    else
        echo "$1/release/sbx"
    fi
}

bench_setup() {
    ensure_tools "$@"
    command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust with rustup)"

    log "building sbx (cargo build --release)"
    (cd "$repo" && cargo build --release)
    local built
    built=$(release_binary "${CARGO_TARGET_DIR:-$repo/target}")
    [[ -x $built ]] || die "no release binary of sbx after the build ($built)"

    if [[ -e $BENCH_DIR ]]; then
        [[ -f $BENCH_DIR/.sbx-bench ]] || die "$BENCH_DIR exists and is not a previous run's directory; set BENCH_DIR"
        rm -rf "$BENCH_DIR"
    fi
    mkdir -p "$BENCH_DIR"/{bin,work,home,results}
    touch "$BENCH_DIR/.sbx-bench"
    bin=$BENCH_DIR/bin work=$BENCH_DIR/work home=$BENCH_DIR/home res=$BENCH_DIR/results
    install -m 0755 "$built" "$bin/sbx"
    install -m 0755 "$here/lib/scale.sh" "$bin/scale.sh"
    printf '# diagnostic only: the default profile without landlock and seccomp\n[security]\nlandlock = "off"\nseccomp = "off"\n' >"$bin/no-lsm.toml"
    chmod 0755 "$BENCH_DIR" "$bin"
    chmod 0644 "$bin/no-lsm.toml"

    if ((EUID == 0)); then
        chown -R "$BENCH_UID:$BENCH_GID" "$work" "$home" "$res"
        bench_user=$(getent passwd "$BENCH_UID" | cut -d: -f1 || true)
        bench_user=${bench_user:-uid$BENCH_UID}
        as_user=(setpriv "--reuid=$BENCH_UID" "--regid=$BENCH_GID" --clear-groups)
        run_as_desc="$bench_user (uid $BENCH_UID, via setpriv from root)"
    else
        bench_user=$(id -un)
        as_user=()
        run_as_desc="$bench_user (uid $EUID)"
    fi
    # A clean, identical environment for every command; HOME is a directory the user owns.
    as_user+=(env -i "HOME=$home" "PATH=/usr/local/bin:/usr/bin:/bin" "USER=$bench_user"
        "LOGNAME=$bench_user" "LANG=C.UTF-8" "TMPDIR=/tmp")
    cd "$work"

    sbx=$bin/sbx
    sbx_startup="$sbx --profile net-off -- /bin/true"
    # bubblewrap with the isolation of sbx's default / net-off profile (profiles/default.toml):
    # every namespace, /usr /etc /opt read-only, the merged-/usr links, a fresh /proc, a minimal
    # /dev, tmpfs /tmp /var/tmp $HOME, the working directory read-write, the hostname, a cleared
    # environment, a new session.
    bwrap_prefix="bwrap --unshare-all --die-with-parent --new-session --clearenv \
--ro-bind /usr /usr --ro-bind /etc /etc --ro-bind-try /opt /opt \
--symlink usr/bin /bin --symlink usr/sbin /sbin --symlink usr/lib /lib --symlink usr/lib64 /lib64 \
--proc /proc --dev /dev --tmpfs /tmp --tmpfs /var/tmp --tmpfs $home \
--bind $work $work --chdir $work --hostname sbx --setenv PATH /usr/bin:/bin"
    bwrap_startup="$bwrap_prefix /bin/true"
}

# check_runs NAME CMD... : the tool must start a sandbox at all, or the numbers mean nothing.
check_runs() {
    local name=$1 out
    shift
    if ! out=$("${as_user[@]}" "$@" 2>&1); then
        printf '%s\n' "$out" >&2
        die "$name cannot start a sandbox as $bench_user: $*"
    fi
}

# The version of sbx binary $1 and the commit of $repo it was built from (", uncommitted
# changes" when the tree differs), for the tables.
sbx_version_of() {
    local v commit
    v=$("$1" --version 2>/dev/null | head -1 || echo sbx)
    if commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null); then
        if [[ -n $(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null || true) ]]; then
            commit+=", uncommitted changes"
        fi
        v+=" ($commit)"
    fi
    printf '%s\n' "$v"
}
