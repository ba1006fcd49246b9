#!/usr/bin/env bash
# Repeated-read workload with the result cache: direct PostgreSQL vs pgsplit (cache on) vs
# pgsplit (cache off), same machine, same run.
#
#   benches/cache.sh [--duration S] [--repeat N] [--clients C] [--no-build] [--results DIR]
#
# Needs the cluster of scripts/cluster.sh running. Creates table pgsplit_bench_hot (1,000 rows)
# in database app, then runs two pgbench scripts, each with -M prepared, -c C (default 10), -j 2:
#   point:     SELECT ... WHERE id = :id over a hot set of 100 ids
#   dashboard: top 20 by score above a threshold (10 distinct thresholds), ORDER BY + LIMIT
# Direct runs go to the primary (as pgbench would without a proxy). Reports TPS medians, the
# ratio to direct, p99 latency from pgbench's per-transaction log, and the cache hit rate from
# pgsplit's /stats. Progress on stderr, a markdown table on stdout (also DIR/summary.md).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh
HOST=$BENCH_HOST
DURATION=15
REPEAT=2
CLIENTS=10
RESULTS=

bench_options "duration repeat clients" "$@"
RESULTS=${RESULTS:-$(mktemp -d /tmp/pgsplit-cache-bench.XXXXXX)}
mkdir -p "$RESULTS"
log() { echo "[cache-bench] $*" >&2; }

WORK=$RESULTS
bench_binary

export PGPASSWORD=app
psql_app() { psql -X -q -h $HOST -p "$PRIMARY_PORT" -U app -d app -v ON_ERROR_STOP=1 "$@"; }
psql_app -c "drop table if exists pgsplit_bench_hot;
  create table pgsplit_bench_hot (id int primary key, name text, score int, payload text);
  insert into pgsplit_bench_hot
    select i, 'lead ' || i, (i * 7919) % 1000, repeat(md5(i::text), 4) from generate_series(1, 1000) i;
  create index on pgsplit_bench_hot (score);
  analyze pgsplit_bench_hot;"
# Let the replica replay it before pgsplit sends reads there.
lsn=$(psql_app -Atc "select pg_current_wal_insert_lsn()")
until [ "$(psql -X -h $HOST -p "$REPLICA_PORT" -U app -d app -Atc "select pg_last_wal_replay_lsn() >= '$lsn'")" = t ]; do sleep 0.1; done

cat > "$RESULTS/point.sql" <<'SQL'
\set id random(1, 100)
SELECT id, name, score, payload FROM pgsplit_bench_hot WHERE id = :id;
SQL
cat > "$RESULTS/dashboard.sql" <<'SQL'
\set t random(1, 10) * 50
SELECT id, name, score FROM pgsplit_bench_hot WHERE score > :t ORDER BY score DESC, id LIMIT 20;
SQL

start_cached() { # name cache_enabled -> PORT_<name>, STATS_<name>
    pgsplit_config "$1" "[pool]
primary_size = 20
replica_size = 20
[cache]
enabled = $2"
    start_pgsplit "$1" "$WORK/$1.toml"
    eval "PORT_$1=$PORT; STATS_$1=$STATS"
}

start_cached cached true
start_cached uncached false

# run target script rep -> "tps p99_ms"
run() {
    local target=$1 script=$2 rep=$3 port out
    case $target in
        direct) port=$PRIMARY_PORT ;;
        cached) port=$PORT_cached ;;
        uncached) port=$PORT_uncached ;;
    esac
    out=$RESULTS/$target-$script-$rep
    mkdir -p "$out"
    (cd "$out" && pgbench -n -h $HOST -p "$port" -U app -M prepared -c "$CLIENTS" -j 2 \
        -T "$DURATION" -f "$RESULTS/$script.sql" --log --log-prefix=tx app > pgbench.out 2>&1) || true
    local tps p99
    tps=$(awk '/^tps = /{print $3}' "$out/pgbench.out" | tail -1)
    # Per-transaction log: field 3 is the latency in microseconds.
    p99=$(cat "$out"/tx.* 2>/dev/null | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END{if(NR){i=int(NR*0.99); if(i<1)i=1; printf "%.3f", a[i]/1000}}')
    rm -f "$out"/tx.*
    echo "${tps:-0} ${p99:-0}"
}

{
echo "| workload | target | TPS (median of $REPEAT) | × direct | p99 ms | cache hit rate |"
echo "|---|---|---:|---:|---:|---:|"
} > "$RESULTS/summary.md"

for script in point dashboard; do
    declare -A TPS=() P99=()
    for rep in $(seq "$REPEAT"); do
        for target in direct cached uncached; do
            log "$script rep $rep: $target"
            read -r tps p99 < <(run $target $script "$rep")
            TPS[$target]+="$tps "
            P99[$target]+="$p99 "
        done
    done
    hit=$(curl -s "http://127.0.0.1:$STATS_cached/stats" | python3 -c 'import json,sys; c=json.load(sys.stdin)["cache"]; print("%.1f%% (%d hits, %d misses)" % (100*(c["hit_rate"] or 0), c["hits"], c["misses"]))')
    direct=$(echo "${TPS[direct]}" | tr ' ' '\n' | grep . | median)
    for target in direct cached uncached; do
        t=$(echo "${TPS[$target]}" | tr ' ' '\n' | grep . | median)
        p=$(echo "${P99[$target]}" | tr ' ' '\n' | grep . | median)
        ratio=$(awk -v a="$t" -v b="$direct" 'BEGIN{printf "%.2f", (b>0)? a/b : 0}')
        rate="–"
        [ "$target" = cached ] && rate="$hit (cumulative)"
        echo "| $script | $target | $t | $ratio | $p | $rate |" >> "$RESULTS/summary.md"
    done
done
cat "$RESULTS/summary.md"
log "results in $RESULTS"
