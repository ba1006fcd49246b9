#!/usr/bin/env bash
# Compares pgsplit with direct PostgreSQL and with PgBouncer (transaction pooling) on this machine.
#
#   benches/compare.sh [--duration S] [--repeat N] [--quick] [--no-build] [--only SECTIONS]
#                      [--idle-counts N,M] [--storm-count N] [--results DIR] [--quiet-wait S] [--quiet-budget S]
#                      [--workers N]
#
#   --duration S      seconds of each pgbench run (default 15)
#   --repeat N        runs of each configuration; the median is reported (default 2)
#   --quick           --duration 5 --repeat 1 --idle-counts 200,1000 --storm-count 500
#   --no-build        use the existing target/release/pgsplit
#   --only SECTIONS   comma-separated subset of: throughput,latency,idle,storm (default all)
#   --idle-counts     ascending totals of idle connections held open (default 1000,5000)
#   --storm-count     simultaneous SCRAM logins in the login storm (default 2000)
#   --results DIR     where logs, raw pgbench output and summary.md go (default: a new /tmp dir)
#   --quiet-wait S    before each run, wait up to S seconds (default 30; 0: never) until the machine's
#                     CPUs are < 25% busy for a second, since builds and tests of other people share them
#   --quiet-budget S  stop waiting once S seconds of waiting have been spent in all (default 600)
#   --workers N       pgsplit's `workers` (data threads; default: proxy.toml's, 0 = one per core)
#
# What it does:
#   1. builds pgsplit (release), starts the cluster of scripts/cluster.sh if it is down (and stops
#      it again at the end), and loads pgbench data at scale 10 into database app once (kept
#      between runs when it is already there), waits until the replica has replayed it, and
#      reads the tables into both nodes' caches (pg_prewarm);
#   2. starts pgsplit (RUST_LOG=info, log in DIR/pgsplit.log) and PgBouncer 1.x in transaction
#      mode (as the postgres OS user, SCRAM auth_file from pg_authid, log in DIR/pgbouncer.log),
#      each on a free port;
#   3. pgbench -S -n -j 2 -T S, -M simple|prepared, -c 10|100, interleaving direct, pgsplit and
#      PgBouncer for each repetition; TPS medians, ratio to direct, failed transactions and
#      aborted clients (a failing run is recorded, not fatal);
#   4. added latency: pgbench -S -c 1 -j 1, prepared (and simple), average latency minus direct;
#   5. memory per idle client: VmRSS of each proxy before and with N idle connections
#      (benches/clients.py with asyncpg);
#   6. login storm: N clients log in with SCRAM at once, SELECT 1, close (wall time), with asyncpg
#      and with the standard-library client of benches/clients.py.
#   Everything it started is stopped on exit, also on failure or Ctrl-C.
#
# Prints a markdown report on stdout (also saved as DIR/summary.md); progress goes to stderr.
# Direct PostgreSQL is the primary; PgBouncer points at the primary only; pgsplit sends these
# read-only queries to the replica. All traffic stays on 127.0.0.1.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$REPO_ROOT/benches
HOST=127.0.0.1
PG_BINDIR=/usr/lib/postgresql/15/bin
export PATH=$PG_BINDIR:$PATH
# clients.py needs asyncpg: the drivers venv that scripts/test.sh installs has it pinned, a bare
# Debian python3 does not.
PYTHON=${PGSPLIT_BENCH_PYTHON:-${PGSPLIT_DRIVERS_DIR:-/opt/pgsplit-drivers}/venv/bin/python}
[[ -x $PYTHON ]] || PYTHON=python3

DURATION=15
REPEAT=2
BUILD=1
SECTIONS=throughput,latency,idle,storm
IDLE_COUNTS=1000,5000
STORM_COUNT=2000
RESULTS=
SCALE=10
QUIET_WAIT=30
QUIET_BUDGET=600
QUIET_PCT=25
WORKERS=

usage() {
    sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while (($#)); do
    case $1 in
    --duration) DURATION=${2:?}; shift 2 ;;
    --repeat) REPEAT=${2:?}; shift 2 ;;
    --quick) DURATION=5 REPEAT=1 IDLE_COUNTS=200,1000 STORM_COUNT=500; shift ;;
    --no-build) BUILD=0; shift ;;
    --only) SECTIONS=${2:?}; shift 2 ;;
    --idle-counts) IDLE_COUNTS=${2:?}; shift 2 ;;
    --storm-count) STORM_COUNT=${2:?}; shift 2 ;;
    --results) RESULTS=${2:?}; shift 2 ;;
    --quiet-wait) QUIET_WAIT=${2:?}; shift 2 ;;
    --quiet-budget) QUIET_BUDGET=${2:?}; shift 2 ;;
    --workers) WORKERS=${2:?}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "unknown option: $1" >&2; usage ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $REPEAT =~ ^[1-9][0-9]*$ && $QUIET_WAIT =~ ^[0-9]+$ ]] || usage

# The caller's libpq settings must not redirect pgbench/psql; pgsplit's address overrides
# (PGSPLIT_LISTEN, PGSPLIT_PRIMARY, ...) are set below. The cluster's ports are kept.
PRIMARY_PORT=${PGSPLIT_PRIMARY_PORT:-15432}
REPLICA_PORT=${PGSPLIT_REPLICA_PORT:-15433}
while read -r var; do
    case $var in
    PGSPLIT_CLUSTER_DIR | PGSPLIT_PRIMARY_PORT | PGSPLIT_REPLICA_PORT | PGSPLIT_CLUSTER_WAIT_SECONDS) ;;
    *) unset "$var" ;;
    esac
done < <(compgen -e | grep '^PG' || true)

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
has_section() { [[ ,$SECTIONS, == *,$1,* ]]; }

# Thousands of connections: the clients and the proxies inherit this.
ulimit -Hn 20000 2>/dev/null || true
ulimit -n 20000 || die "cannot raise the open-files limit to 20000 (hard limit $(ulimit -Hn))"

if [[ -z $RESULTS ]]; then
    RESULTS=$(mktemp -d /tmp/pgsplit-bench.XXXXXX)
else
    mkdir -p "$RESULTS"
fi
RESULTS=$(realpath "$RESULTS")
# PgBouncer runs as postgres and must reach its files below this directory.
chmod 0755 "$RESULTS"
RUNS_CSV=$RESULTS/runs.csv
echo "section,target,mode,clients,rep,exit,tps,latency_ms,failed,aborted,cpu_busy_before_pct,loadavg,proxy_cpu_us_per_tx" >"$RUNS_CSV"

# --- cleanup ----------------------------------------------------------------------------------
PGSPLIT_PID=
PGBOUNCER_PID=
CLUSTER_STARTED=0

stop_pid() {
    local pid=$1 name=$2 i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "$name (pid $pid) ignored SIGTERM for 5 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$PGSPLIT_PID" pgsplit
    stop_pid "$PGBOUNCER_PID" pgbouncer
    if ((CLUSTER_STARTED)); then
        log "stopping the cluster this script started"
        "$REPO_ROOT/scripts/cluster.sh" stop || true
    fi
    log "logs and raw output: $RESULTS"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ----------------------------------------------------------------------------------
USED_PORTS=" "
# pick_port VAR START: the first port >= START that nothing listens on, and not picked before.
pick_port() {
    local -n out=$1
    local p=$2
    while [[ $USED_PORTS == *" $p "* ]] || ss -Htln "sport = :$p" | grep -q .; do
        p=$((p + 1))
    done
    USED_PORTS+="$p "
    out=$p
}

# psql as the superuser over TCP (password postgres, see scripts/cluster.sh).
superuser_sql() {
    PGPASSWORD=postgres psql -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$1" -U postgres -d "$2" -At -c "$3"
}

wait_ready() {
    local name=$1 port=$2 pid=$3 i
    for ((i = 0; i < 100; i++)); do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        pg_isready -q -h "$HOST" -p "$port" -U app -d app -t 1 && return 0
        sleep 0.2
    done
    log "$name did not accept connections on port $port within 20 s"
    return 1
}

# Percent of all CPUs busy (not idle, not iowait) over the next second.
cpu_busy_pct() {
    local a b
    a=($(head -n1 /proc/stat))
    sleep 1
    b=($(head -n1 /proc/stat))
    awk -v u="$((b[1] + b[2] + b[3] + b[6] + b[7] + b[8] - a[1] - a[2] - a[3] - a[6] - a[7] - a[8]))" \
        -v i="$((b[4] + b[5] - a[4] - a[5]))" 'BEGIN { t = u + i; printf "%.0f", (t > 0 ? 100 * u / t : 0) }'
}

# Waits (up to QUIET_WAIT s) until other work on the machine leaves the CPUs mostly idle.
# Sets BUSY to the last measurement.
QUIET_WAITED=0
QUIET_TIMEOUTS=0
wait_quiet() {
    local start=$SECONDS
    BUSY=$(cpu_busy_pct)
    while ((BUSY >= QUIET_PCT && SECONDS - start < QUIET_WAIT && QUIET_WAITED + SECONDS - start < QUIET_BUDGET)); do
        BUSY=$(cpu_busy_pct)
    done
    QUIET_WAITED=$((QUIET_WAITED + SECONDS - start))
    if ((BUSY >= QUIET_PCT)); then
        QUIET_TIMEOUTS=$((QUIET_TIMEOUTS + 1))
        log "the CPUs are still ${BUSY}% busy after $((SECONDS - start))s of waiting; running anyway"
    fi
}

median() {
    printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk '
        { a[NR] = $1 }
        END {
            if (NR == 0) print "";
            else if (NR % 2) print a[(NR + 1) / 2];
            else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2;
        }'
}

fmt_num() { [[ -n $1 ]] && printf "%'.0f" "$1" || printf 'n/a'; }
ratio() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }' || printf 'n/a'; }

# --- 1. build, cluster, data --------------------------------------------------------------------
cd "$REPO_ROOT"
PGSPLIT_BIN=$REPO_ROOT/target/release/pgsplit
if ((BUILD)); then
    log "cargo build --release"
    if ! cargo build --release >"$RESULTS/build.log" 2>&1; then
        [[ -x $PGSPLIT_BIN ]] || die "the build failed and there is no earlier binary; see $RESULTS/build.log"
        log "warning: the build failed (see $RESULTS/build.log); using the earlier binary from $(date -r "$PGSPLIT_BIN" '+%F %T')"
        BUILD_NOTE="the build of the current tree failed; the earlier binary from $(date -r "$PGSPLIT_BIN" '+%F %T') was used"
    fi
fi
[[ -x $PGSPLIT_BIN ]] || die "no $PGSPLIT_BIN; run without --no-build"
BUILD_NOTE=${BUILD_NOTE:-"binary built $(date -r "$PGSPLIT_BIN" '+%F %T')"}

if ! "$REPO_ROOT/scripts/cluster.sh" status >/dev/null 2>&1; then
    log "starting the cluster"
    CLUSTER_STARTED=1
    "$REPO_ROOT/scripts/cluster.sh" start >&2
fi

have_scale=$(PGPASSWORD=app psql -X -h "$HOST" -p "$PRIMARY_PORT" -U app -d app -At -c \
    "SELECT CASE WHEN to_regclass('public.pgbench_branches') IS NULL THEN 0
                 ELSE (SELECT count(*) FROM public.pgbench_branches) END" 2>/dev/null || echo 0)
if [[ $have_scale != "$SCALE" ]]; then
    log "pgbench -i -s $SCALE (found scale ${have_scale:-0})"
    PGPASSWORD=app pgbench -i -s "$SCALE" -q -h "$HOST" -p "$PRIMARY_PORT" -U app app >"$RESULTS/pgbench-init.log" 2>&1 ||
        die "pgbench -i failed: $(tail -n 5 "$RESULTS/pgbench-init.log")"
fi
target_lsn=$(superuser_sql "$PRIMARY_PORT" postgres "SELECT pg_current_wal_lsn()")
log "waiting for the replica to replay $target_lsn"
for ((i = 0; ; i++)); do
    replayed=$(superuser_sql "$REPLICA_PORT" app \
        "SELECT pg_last_wal_replay_lsn() >= '$target_lsn'::pg_lsn
                AND (SELECT count(*) FROM pgbench_branches) = $SCALE" 2>/dev/null || true)
    [[ $replayed == t ]] && break
    ((i < 300)) || die "the replica did not replay the pgbench data within 300 s"
    sleep 1
done
# Both nodes' caches are warmed before anything is measured: after a cluster start the replica is
# cold, and only pgsplit reads it (direct and PgBouncer read the primary), so its first cells
# stalled 50-90 ms per read on disk (2026-12-06: 316 TPS in the first pgsplit cell).
if superuser_sql "$PRIMARY_PORT" app "CREATE EXTENSION IF NOT EXISTS pg_prewarm" >/dev/null 2>&1; then
    for port in "$PRIMARY_PORT" "$REPLICA_PORT"; do
        superuser_sql "$port" app "SELECT pg_prewarm(c) FROM unnest(array['pgbench_accounts',
            'pgbench_accounts_pkey', 'pgbench_branches', 'pgbench_tellers']::regclass[]) c" >/dev/null 2>&1 ||
            log "warning: could not prewarm the node on port $port"
    done
    log "prewarmed the pgbench tables on both nodes"
else
    log "warning: no pg_prewarm; the replica starts cold"
fi

# --- 2. the proxies -----------------------------------------------------------------------------
pick_port PGSPLIT_PORT 6433
pick_port STATS_PORT 9931
pick_port PGBOUNCER_PORT $((PGSPLIT_PORT + 1))

start_pgsplit() {
    sed -e "s/^listen = .*/listen = \"$HOST:$PGSPLIT_PORT\"/" \
        -e "/^\[stats\]/,\$ s/^listen = .*/listen = \"$HOST:$STATS_PORT\"/" \
        -e "${WORKERS:+s/^workers = .*/workers = $WORKERS/}" \
        "$REPO_ROOT/proxy.toml" >"$RESULTS/pgsplit.toml"
    NO_COLOR=1 RUST_LOG=${RUST_LOG:-info} \
        PGSPLIT_LISTEN=$HOST:$PGSPLIT_PORT PGSPLIT_STATS_LISTEN=$HOST:$STATS_PORT \
        PGSPLIT_PRIMARY=$HOST:$PRIMARY_PORT PGSPLIT_REPLICAS=$HOST:$REPLICA_PORT \
        "$PGSPLIT_BIN" serve --config "$RESULTS/pgsplit.toml" >>"$RESULTS/pgsplit.log" 2>&1 &
    PGSPLIT_PID=$!
    wait_ready pgsplit "$PGSPLIT_PORT" "$PGSPLIT_PID" ||
        die "pgsplit did not start; last lines of its log:"$'\n'"$(tail -n 20 "$RESULTS/pgsplit.log")"
    log "pgsplit pid $PGSPLIT_PID on $HOST:$PGSPLIT_PORT (stats $HOST:$STATS_PORT)"
}

start_pgbouncer() {
    local dir=$RESULTS/pgbouncer verifier
    verifier=$(superuser_sql "$PRIMARY_PORT" postgres "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
    [[ $verifier == SCRAM-SHA-256\$* ]] || die "app has no SCRAM verifier in pg_authid"
    install -d -o postgres -g postgres -m 0700 "$dir"
    printf '"app" "%s"\n' "$verifier" | install -o postgres -g postgres -m 0600 /dev/stdin "$dir/userlist.txt"
    sed -e "s|@PORT@|$PGBOUNCER_PORT|" -e "s|@DIR@|$dir|" -e "s|@PRIMARY_PORT@|$PRIMARY_PORT|" \
        "$BENCH_DIR/pgbouncer.ini.in" | install -o postgres -g postgres -m 0600 /dev/stdin "$dir/pgbouncer.ini"
    # PgBouncer refuses to run as root; setpriv execs it, so $! is PgBouncer's own pid.
    (cd / && exec setpriv --reuid=postgres --regid=postgres --init-groups \
        /usr/sbin/pgbouncer "$dir/pgbouncer.ini") >>"$RESULTS/pgbouncer.log" 2>&1 &
    PGBOUNCER_PID=$!
    wait_ready pgbouncer "$PGBOUNCER_PORT" "$PGBOUNCER_PID" ||
        die "pgbouncer did not start; last lines of its log:"$'\n'"$(tail -n 20 "$RESULTS/pgbouncer.log")"
    log "pgbouncer pid $PGBOUNCER_PID on $HOST:$PGBOUNCER_PORT"
}

start_pgsplit
start_pgbouncer

declare -A PORT=([direct]=$PRIMARY_PORT [replica]=$REPLICA_PORT [pgsplit]=$PGSPLIT_PORT [pgbouncer]=$PGBOUNCER_PORT)
declare -A PID=([pgsplit]=$PGSPLIT_PID [pgbouncer]=$PGBOUNCER_PID)
TARGETS=(direct pgsplit pgbouncer)
declare -A NAME=([direct]="direct (primary)" [replica]="direct (replica)" [pgsplit]=pgsplit [pgbouncer]=PgBouncer)
# The latency section also measures the replica directly: pgsplit's queries run there.
LAT_TARGETS=(direct replica pgsplit pgbouncer)
NOTES=()

# Restarts a proxy that died, once per section, and notes it in the report.
ensure_alive() {
    local t=$1
    [[ $t == direct || $t == replica ]] && return 0
    kill -0 "${PID[$t]}" 2>/dev/null && return 0
    NOTES+=("$t (pid ${PID[$t]}) was found not running in the $2 section and was restarted")
    log "error: $t (pid ${PID[$t]}) has exited; restarting it"
    if [[ $t == pgsplit ]]; then start_pgsplit; PID[pgsplit]=$PGSPLIT_PID; else start_pgbouncer; PID[pgbouncer]=$PGBOUNCER_PID; fi
}

# Per-cell results: space-separated values over the repetitions.
declare -A TPS LAT CPU FAILED ABORTED BADEXIT FIRST_ERR
CLK_TCK=$(getconf CLK_TCK)

# User + system CPU ticks of a process and all its threads so far ("" for direct targets).
cpu_ticks() {
    [[ -n ${PID[$1]:-} && -r /proc/${PID[$1]}/stat ]] || return 0
    # Fields after the command name (which may hold spaces): utime and stime are 12th and 13th.
    sed -E 's/^.*\) //' "/proc/${PID[$1]}/stat" | awk '{ print $12 + $13 }'
}

# run_pgbench SECTION TARGET MODE CLIENTS JOBS REP
run_pgbench() {
    local section=$1 t=$2 mode=$3 c=$4 j=$5 rep=$6 out rc=0 tps lat failed aborted key load
    local ticks_before ticks_after txns cpu=
    key="$section|$t|$mode|$c"
    out=$RESULTS/pgbench-$section-$t-$mode-c$c-r$rep.log
    local attempt
    for ((attempt = 1; ; attempt++)); do
        ensure_alive "$t" "$section"
        ((QUIET_WAIT == 0)) && BUSY=$(cpu_busy_pct) || wait_quiet
        load=$(cut -d' ' -f1-3 /proc/loadavg)
        rc=0
        ticks_before=$(cpu_ticks "$t")
        PGPASSWORD=app timeout --kill-after=10 $((DURATION + 60)) \
            pgbench -n -S -M "$mode" -c "$c" -j "$j" -T "$DURATION" -h "$HOST" -p "${PORT[$t]}" -U app app \
            >"$out" 2>&1 || rc=$?
        ticks_after=$(cpu_ticks "$t")
        # A proxy that exited during the run (a crash, or a signal from someone else's cleanup on
        # this shared machine) spoils the run: keep its output, note it, restart and run it again.
        if [[ $t != direct && $t != replica ]] && ! kill -0 "${PID[$t]}" 2>/dev/null && ((attempt < 3)); then
            mv "$out" "${out%.log}-attempt$attempt.log"
            NOTES+=("$t (pid ${PID[$t]}) exited during run $rep of $section -M $mode -c $c (attempt $attempt; run repeated). Last lines of its log: \`$(grep -v 'slow query' "$RESULTS/$t.log" | tail -n 3 | tr '\n' ' ' | cut -c1-400)\`")
            log "error: $t exited during the run; repeating it"
            continue
        fi
        break
    done
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$out")
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' "$out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
    aborted=$(grep -cE 'client [0-9]+ (script [0-9]+ )?aborted' "$out" || true)
    txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
    if [[ -n $ticks_before && -n $ticks_after && ${txns:-0} -gt 0 ]]; then
        cpu=$(awk -v d=$((ticks_after - ticks_before)) -v hz="$CLK_TCK" -v n="$txns" 'BEGIN { printf "%.1f", d * 1e6 / hz / n }')
        CPU[$key]+="$cpu "
    fi
    TPS[$key]+="$tps "
    LAT[$key]+="$lat "
    FAILED[$key]=$((${FAILED[$key]:-0} + ${failed:-0}))
    ABORTED[$key]=$((${ABORTED[$key]:-0} + aborted))
    if ((rc != 0)); then
        BADEXIT[$key]=$((${BADEXIT[$key]:-0} + 1))
        ((rc == 124 || rc == 137)) && FIRST_ERR[$key]=${FIRST_ERR[$key]:-"pgbench hung: killed after $((DURATION + 60)) s"}
    fi
    if [[ -z ${FIRST_ERR[$key]:-} ]] && { ((rc != 0)) || ((aborted > 0)) || [[ ${failed:-0} != 0 ]]; }; then
        FIRST_ERR[$key]=$(grep -m1 -E 'error|ERROR|FATAL|aborted' "$out" | sed 's/^pgbench: //' | cut -c1-200 || true)
    fi
    echo "$section,$t,$mode,$c,$rep,$rc,$tps,$lat,${failed:-},$aborted,$BUSY,$load,$cpu" >>"$RUNS_CSV"
    log "$section $t -M $mode -c $c run $rep: tps=${tps:-none} lat=${lat:-none}ms cpu/tx=${cpu:-n/a}µs exit=$rc failed=${failed:-?} aborted=$aborted (cpu ${BUSY}% busy before, load $load)"
}

# Failure summary of one cell: "0" or what went wrong, for the table.
failures() {
    local key=$1 f=${FAILED[$1]:-0} a=${ABORTED[$1]:-0} b=${BADEXIT[$1]:-0} s
    if ((f == 0 && a == 0 && b == 0)); then
        echo 0
        return
    fi
    s="$f failed txns"
    ((a)) && s+=", $a clients aborted"
    ((b)) && s+=", pgbench exit≠0 in $b/$REPEAT runs"
    echo "$s"
}

# --- 3. throughput ------------------------------------------------------------------------------
CONFIGS=("simple 10" "simple 100" "prepared 10" "prepared 100")
if has_section throughput; then
    for cfg in "${CONFIGS[@]}"; do
        read -r mode c <<<"$cfg"
        for ((rep = 1; rep <= REPEAT; rep++)); do
            for t in "${TARGETS[@]}"; do
                run_pgbench throughput "$t" "$mode" "$c" 2 "$rep"
            done
        done
    done
fi

# --- 4. added latency ---------------------------------------------------------------------------
LAT_MODES=(prepared simple)
if has_section latency; then
    for mode in "${LAT_MODES[@]}"; do
        for ((rep = 1; rep <= REPEAT; rep++)); do
            for t in "${LAT_TARGETS[@]}"; do
                run_pgbench latency "$t" "$mode" 1 1 "$rep"
            done
        done
    done
fi

# --- 5. idle clients, 6. login storm -----------------------------------------------------------
declare -A IDLE STORM
if has_section idle; then
    for t in pgsplit pgbouncer; do
        ensure_alive "$t" idle
        ((QUIET_WAIT == 0)) || wait_quiet
        log "idle connections to $t: $IDLE_COUNTS (asyncpg)"
        out=$RESULTS/idle-$t.jsonl
        timeout --kill-after=10 900 "$PYTHON" "$BENCH_DIR/clients.py" idle --client asyncpg \
            --port "${PORT[$t]}" --pid "${PID[$t]}" --counts "$IDLE_COUNTS" >"$out" 2>"$RESULTS/idle-$t.err" || {
            rc=$?
            NOTES+=("idle-client test against $t exited with status $rc: $(tail -n 3 "$RESULTS/idle-$t.err" | tr '\n' ' ' | cut -c1-300)")
        }
        cat "$out" >&2
        kill -0 "${PID[$t]}" 2>/dev/null || NOTES+=("$t exited during the idle-client test")
        IDLE[$t]=$out
        sleep 2
    done
fi

STORM_CLIENTS=(raw asyncpg)
if has_section storm; then
    for client in "${STORM_CLIENTS[@]}"; do
        for ((rep = 1; rep <= REPEAT; rep++)); do
            for t in pgsplit pgbouncer; do
                ensure_alive "$t" storm
                ((QUIET_WAIT == 0)) || wait_quiet
                out=$RESULTS/storm-$t-$client-r$rep.json
                timeout --kill-after=10 300 "$PYTHON" "$BENCH_DIR/clients.py" storm --client "$client" \
                    --port "${PORT[$t]}" --count "$STORM_COUNT" >"$out" 2>"$RESULTS/storm-$t-$client-r$rep.err" || {
                    rc=$?
                    NOTES+=("login storm ($client) against $t exited with status $rc: $(tail -n 3 "$RESULTS/storm-$t-$client-r$rep.err" | tr '\n' ' ' | cut -c1-300)")
                }
                log "storm $t $client run $rep: $(cat "$out")"
                STORM[$t|$client]+="$out "
                sleep 2
            done
        done
    done
fi

for t in pgsplit pgbouncer; do
    kill -0 "${PID[$t]}" 2>/dev/null || NOTES+=("$t was not running at the end of the benchmark")
done

# --- report -------------------------------------------------------------------------------------
report() {
    local mode c key d s b t
    echo "## pgsplit vs PgBouncer vs direct PostgreSQL"
    echo
    echo "- $(date -u '+%F %T UTC'), $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -n1)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM"
    echo "- pgsplit $(git -C "$REPO_ROOT" rev-parse --short HEAD)$(git -C "$REPO_ROOT" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' + uncommitted changes in src/'), $BUILD_NOTE, workers = ${WORKERS:-$(sed -n 's/^workers = //p' "$REPO_ROOT/proxy.toml")}; $(postgres --version 2>/dev/null || "$PG_BINDIR/postgres" --version); $(pgbouncer --version | head -n1)"
    echo "- pgbench -n -S, scale $SCALE, -T $DURATION s, median of $REPEAT interleaved runs (direct, pgsplit, PgBouncer in turn)"
    echo "- **direct** = the primary (127.0.0.1:$PRIMARY_PORT). **pgsplit** sends these read-only queries to the streaming"
    echo "  replica (127.0.0.1:$REPLICA_PORT). **PgBouncer** (transaction mode, pool 50) points at the primary only: it does not split reads."
    echo "- Everything (clients, proxies, both servers) shares the same $(nproc) cores, also with other people's builds and tests:"
    echo "  each pgbench run waited up to ${QUIET_WAIT}s for the CPUs to be < ${QUIET_PCT}% busy (at most ${QUIET_BUDGET}s in all; waited ${QUIET_WAITED}s; $QUIET_TIMEOUTS runs started on a busy machine; per-run CPU busy % in runs.csv)."
    echo
    if has_section throughput; then
        echo "### Throughput (TPS, pgbench -S -j 2)"
        echo
        echo "| mode | clients | direct | pgsplit | pgsplit / direct | pgsplit failures | PgBouncer | PgBouncer / direct | PgBouncer failures |"
        echo "|---|---:|---:|---:|---:|---|---:|---:|---|"
        for cfg in "${CONFIGS[@]}"; do
            read -r mode c <<<"$cfg"
            d=$(median ${TPS[throughput|direct|$mode|$c]:-})
            s=$(median ${TPS[throughput|pgsplit|$mode|$c]:-})
            b=$(median ${TPS[throughput|pgbouncer|$mode|$c]:-})
            echo "| $mode | $c | $(fmt_num "$d")$( [[ $(failures "throughput|direct|$mode|$c") == 0 ]] || echo ' (direct failed!)') | $(fmt_num "$s") | $(ratio "$s" "$d") | $(failures "throughput|pgsplit|$mode|$c") | $(fmt_num "$b") | $(ratio "$b" "$d") | $(failures "throughput|pgbouncer|$mode|$c") |"
        done
        echo
        echo "Runs (TPS each): $(for cfg in "${CONFIGS[@]}"; do read -r mode c <<<"$cfg"; for t in "${TARGETS[@]}"; do printf '%s %s c%s: %s; ' "$t" "$mode" "$c" "$(echo ${TPS[throughput|$t|$mode|$c]:-})"; done; done)"
        echo
    fi
    if has_section throughput || has_section latency; then
        echo "### Proxy CPU per transaction (µs: the proxy process's user + system time over pgbench's transactions, median)"
        echo
        echo "| section | mode | clients | pgsplit | PgBouncer | pgsplit / PgBouncer |"
        echo "|---|---|---:|---:|---:|---:|"
        local cells=()
        has_section throughput && cells+=("${CONFIGS[@]/#/throughput }")
        has_section latency && for mode in "${LAT_MODES[@]}"; do cells+=("latency $mode 1"); done
        for cell in "${cells[@]}"; do
            read -r section mode c <<<"$cell"
            s=$(median ${CPU[$section|pgsplit|$mode|$c]:-})
            b=$(median ${CPU[$section|pgbouncer|$mode|$c]:-})
            echo "| $section | $mode | $c | ${s:-n/a} | ${b:-n/a} | $(ratio "$s" "$b") |"
        done
        echo
        echo "PgBouncer's prepared rows fail (it has no prepared-statement support in transaction mode here), so its prepared CPU is per transaction of a failing run."
        echo
    fi
    if has_section latency; then
        echo "### Added latency, one client (pgbench -S -c 1 -j 1, latency average)"
        echo
        echo "| mode | target | latency avg (ms) | added vs direct primary (µs) | TPS | failures |"
        echo "|---|---|---:|---:|---:|---|"
        for mode in "${LAT_MODES[@]}"; do
            d=$(median ${LAT[latency|direct|$mode|1]:-})
            for t in "${LAT_TARGETS[@]}"; do
                key="latency|$t|$mode|1"
                s=$(median ${LAT[$key]:-})
                local added=n/a
                if [[ $t == direct ]]; then
                    added="—"
                elif [[ $t == replica ]]; then
                    added="($(awk -v a="$s" -v b="$d" 'BEGIN { printf "%+.0f", (a - b) * 1000 }'))"
                elif [[ -n $s && -n $d ]]; then
                    added=$(awk -v a="$s" -v b="$d" 'BEGIN { printf "%+.0f", (a - b) * 1000 }')
                fi
                echo "| $mode | ${NAME[$t]} | ${s:-n/a} | $added | $(fmt_num "$(median ${TPS[$key]:-})") | $(failures "$key") |"
            done
        done
        echo
        echo "pgsplit sends these queries to the replica, PgBouncer to the primary; the replica's own difference to the primary is shown in parentheses."
        echo
    fi
    if has_section idle; then
        echo "### Memory per idle client (VmRSS of the proxy process, asyncpg clients that ran SELECT 1 once)"
        echo
        echo "| proxy | open connections | logged in | failed | RSS before (KiB) | RSS with them (KiB) | per client (KiB) | sample SELECT 1 ok | errors |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
        for t in pgsplit pgbouncer; do
            if [[ ! -s ${IDLE[$t]:-/nonexistent} ]]; then
                echo "| ${NAME[$t]} | $IDLE_COUNTS | — | — | — | — | — | — | no result (see notes) |"
                continue
            fi
            jq -r --arg name "${NAME[$t]}" \
                '"| \($name) | \(.count) | \(.ok) | \(.failed) | \(.rss_before_kib) | \(.rss_kib) | \(.per_client_kib // "n/a") | \(.checked_alive)/\(.checked) | \(.errors | to_entries | map("\(.value)× \(.key)") | join("; ") | if . == "" then "—" else . end) |"' \
                "${IDLE[$t]}"
        done
        echo
    fi
    if has_section storm; then
        echo "### Login storm: $STORM_COUNT SCRAM logins at once (asyncio.gather), each SELECT 1 then close"
        echo
        echo "| proxy | client | wall time, median (s) | runs (s) | client CPU in runs (s) | ok | failed | errors |"
        echo "|---|---|---:|---|---|---:|---:|---|"
        for client in "${STORM_CLIENTS[@]}"; do
            for t in pgsplit pgbouncer; do
                local files=${STORM[$t|$client]:-} walls cpus ok failed errs
                walls=$(cat $files /dev/null 2>/dev/null | jq -r '.wall_s' | tr '\n' ' ')
                cpus=$(cat $files /dev/null 2>/dev/null | jq -r '.client_cpu_s' | tr '\n' ' ')
                ok=$(cat $files /dev/null 2>/dev/null | jq -r '.ok' | paste -sd/ -)
                failed=$(cat $files /dev/null 2>/dev/null | jq -r '.failed' | paste -sd/ -)
                errs=$(cat $files /dev/null 2>/dev/null | jq -r '.errors | to_entries[] | "\(.value)× \(.key)"' | head -n 2 | paste -sd';' - | cut -c1-250)
                echo "| ${NAME[$t]} | $client | $(median $walls) | ${walls% } | ${cpus% } | ${ok:-—} | ${failed:-—} | ${errs:-—} |"
            done
        done
        echo
        echo "Clients: *raw* is the standard-library client of benches/clients.py (full SCRAM exchange per login, salted password derived once);"
        echo "*asyncpg* derives the salted password (PBKDF2, 4096 rounds) in the client for every login, which costs the shared CPU several ms per login."
        echo "Client CPU is the user+system time of the Python client process during the timed part: on 2 shared cores it bounds the wall time from below."
        echo
    fi
    if ((${#NOTES[@]})); then
        echo "### Problems"
        echo
        printf -- '- %s\n' "${NOTES[@]}"
        echo
    fi
    local errs
    errs=$(grep -E ' (WARN|ERROR) ' "$RESULTS/pgsplit.log" | sed -E 's/^[^ ]+ +//; s/(duration_ms|peer)=[^ ]+/\1=*/g' | sort | uniq -c | sort -rn | head -n 10 || true)
    if [[ -n $errs ]]; then
        echo "### pgsplit log: warnings and errors (count, message)"
        echo
        echo '```'
        echo "$errs"
        echo '```'
        echo
    fi
    echo "Raw pgbench output, proxy logs and per-run CSV: $RESULTS"
}

report | tee "$RESULTS/summary.md"
