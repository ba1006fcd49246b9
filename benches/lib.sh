# Shared by the bench scripts (source it): proxy start-up against the local cluster, cleanup,
# free ports, the proxy's CPU per transaction, and medians. Not a script of its own.
#
# Callers set WORK (a directory for configs and logs) before start_pgsplit, and get PORT, STATS
# and PID back as globals: start_pgsplit must not run in $(...), whose subshell would lose PIDS
# and leak the proxy.

BENCH_HOST=127.0.0.1
PRIMARY_PORT=${PGSPLIT_PRIMARY_PORT:-15432}
REPLICA_PORT=${PGSPLIT_REPLICA_PORT:-15433}
export PATH="$(pg_config --bindir):$PATH"
PIDS=()

bench_cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap bench_cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# The release binary: BIN if set, else cargo build --release (unless NO_BUILD=1).
bench_binary() {
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    if [[ -z ${BIN:-} ]]; then
        [[ ${NO_BUILD:-0} == 1 ]] || (cd "$root" && cargo build --release --quiet)
        BIN=${CARGO_TARGET_DIR:-$root/target}/release/pgsplit
    fi
}

# A config for the local cluster with user app (admin) and database app, then EXTRA (TOML).
# pgsplit_config name [extra-toml] -> $WORK/name.toml
pgsplit_config() {
    cat >"$WORK/$1.toml" <<TOML
listen = "127.0.0.1:0"
[primary]
host = "127.0.0.1"
port = $PRIMARY_PORT
[[replicas]]
host = "127.0.0.1"
port = $REPLICA_PORT
[[users]]
name = "app"
password = "app"
admin = true
[[databases]]
name = "app"
${2:-}
TOML
}

# start_pgsplit name config-file -> PORT, STATS, PID; waits until it accepts connections.
start_pgsplit() {
    PORT=$(free_port)
    STATS=$(free_port)
    PGSPLIT_LISTEN=127.0.0.1:$PORT PGSPLIT_STATS_LISTEN=127.0.0.1:$STATS RUST_LOG=${RUST_LOG:-warn} \
        "$BIN" serve --config "$2" >"$WORK/$1.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 100); do pg_isready -q -h 127.0.0.1 -p "$PORT" && return 0; sleep 0.1; done
    echo "pgsplit $1 did not start; see $WORK/$1.log" >&2
    return 1
}

# The process's own CPU time (user + system, clock ticks): less disturbed by a shared machine
# than TPS.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# pgbench_cpu port pid pgbench-args... -> "tps cpu_us_per_transaction" of process pid.
pgbench_cpu() {
    local port=$1 pid=$2 before out
    shift 2
    before=$(ticks "$pid")
    out=$(pgbench -n -h 127.0.0.1 -p "$port" -U app "$@" app 2>/dev/null)
    awk -v t0="$before" -v t1="$(ticks "$pid")" -v hz="$(getconf CLK_TCK)" '
        /^tps/ { tps = $3 } /actually processed/ { split($NF, a, "/"); n = a[1] }
        END { printf "%.0f %.1f\n", tps, (t1 - t0) / hz * 1e6 / (n > 0 ? n : 1) }' <<<"$out"
}

# Waits until the replica has replayed everything the primary has so far.
wait_for_replica() {
    local lsn
    lsn=$(PGPASSWORD=postgres psql -X -h "$BENCH_HOST" -p "$PRIMARY_PORT" -U postgres -d app -Atc "select pg_current_wal_insert_lsn()")
    until [[ $(PGPASSWORD=postgres psql -X -h "$BENCH_HOST" -p "$REPLICA_PORT" -U postgres -d app -Atc "select pg_last_wal_replay_lsn() >= '$lsn'") == t ]]; do
        sleep 0.1
    done
}

# bench_options "duration clients ..." "$@": each `--NAME VALUE` (a name of the list, dashes for
# underscores) sets the upper-case variable; a name ending in `!` is a flag that sets it to 1.
# --no-build (NO_BUILD=1), --bin PATH and --results DIR are always accepted. Anything else
# prints the script's header comment and exits 2. Callers set the defaults first.
bench_options() {
    local names=" ${1//!/! } no_build! bin results "
    shift
    while (($#)); do
        local name=${1#--}
        name=${name//-/_}
        if [[ $1 != --* ]]; then
            bench_usage
        elif [[ $names == *" $name! "* ]]; then
            printf -v "${name^^}" 1
            shift
        elif [[ $names == *" $name "* && $# -ge 2 ]]; then
            printf -v "${name^^}" '%s' "$2"
            shift 2
        else
            bench_usage
        fi
    done
}

# The calling script's header comment (its lines 2 up to the first line not a comment).
bench_usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { print }' "$0" >&2
    exit 2
}
