#!/usr/bin/env bash
# consistency = "global" (issue 21): the 80/20 read/write mix through two pgsplit instances at once,
# against table_lsn on one instance and global on one instance, at the same total client count.
#
#   benches/global.sh [--duration S] [--clients N] [--protocols "prepared simple"] [--debug] [--no-build] [--results DIR]
#
# --clients is per instance (default 10: 10 + 10 through the two instances, 20 through one).
# --debug uses target/debug/pgsplit (no release build; TPS then says little, shares still hold).
# Needs the cluster of scripts/cluster.sh (pg_stat_statements is loaded there). Creates table
# pgsplit_bench_rw (1,000 rows) in database app; pgbench runs 80 % `SELECT v ... WHERE id = :id`
# and 20 % `UPDATE ... SET v = v + 1 WHERE id = :id`, -j 2 per pgbench. Counted per run:
#   - SELECTs on the replica and on the primary, from pg_stat_statements on both nodes (reset first);
#   - position queries per 1,000 reads: the primary's count of pgsplit's position query
#     (pg_stat_statements) per 1,000 SELECTs, and the instances' own /stats figure;
#   - TPS, summed over the instances.
# Targets (issue 21, 10 clients per instance): >= 90 % of SELECTs on the replica, <= 50 position
# queries per 1,000 reads. Markdown table on stdout (also DIR/summary.md).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh
HOST=$BENCH_HOST
DURATION=10
CLIENTS=10
PROTOCOLS="prepared simple"
RESULTS=

bench_options "duration clients protocols debug!" "$@"
[[ ${DEBUG:-0} != 1 ]] || BIN=${BIN:-$PWD/target/debug/pgsplit}
RESULTS=${RESULTS:-$(mktemp -d /tmp/pgsplit-global-bench.XXXXXX)}
mkdir -p "$RESULTS"
log() { echo "[global-bench] $*" >&2; }

WORK=$RESULTS
if [[ ${BIN:-} == */debug/pgsplit && ${NO_BUILD:-0} != 1 ]]; then
    cargo build --quiet
fi
bench_binary

export PGPASSWORD=postgres
psql_on() { local port=$1; shift; psql -X -q -h $HOST -p "$port" -U postgres -d app -v ON_ERROR_STOP=1 "$@"; }
psql_on "$PRIMARY_PORT" -c "drop table if exists pgsplit_bench_rw;
  create table pgsplit_bench_rw (id int primary key, v bigint not null default 0);
  insert into pgsplit_bench_rw select i, 0 from generate_series(1, 1000) i;
  grant select, update on pgsplit_bench_rw to app;
  analyze pgsplit_bench_rw;"
wait_for_replica

cat > "$RESULTS/read.sql" <<'SQL'
\set id random(1, 1000)
SELECT v FROM pgsplit_bench_rw WHERE id = :id;
SQL
cat > "$RESULTS/write.sql" <<'SQL'
\set id random(1, 1000)
UPDATE pgsplit_bench_rw SET v = v + 1 WHERE id = :id;
SQL

start_instance() { # name consistency -> PORT_<name>, STATS_<name>
    pgsplit_config "$1" "[pool]
primary_size = 50
replica_size = 100
[replication]
consistency = \"$2\""
    start_pgsplit "$1" "$WORK/$1.toml"
    eval "PORT_$1=$PORT; STATS_$1=$STATS"
}
start_instance ga global
start_instance gb global
start_instance tl table_lsn

calls_on() { # port pattern -> calls since the last reset
    psql_on "$1" -Atc "select coalesce(sum(calls), 0) from pg_stat_statements where query like '$2'"
}
stat() { # instance -> "position_queries position_reads"
    local s=STATS_$1
    curl -s "http://127.0.0.1:${!s}/stats" | jq -r '"\(.consistency.position_queries) \(.consistency.position_reads)"'
}
reset_stats() { local s=STATS_$1; curl -s -X POST "http://127.0.0.1:${!s}/stats/reset" > /dev/null || true; }

{
echo "| setup | protocol | clients | TPS | SELECTs on replica | on primary | replica share | position queries / 1,000 reads (primary's count) | (/stats) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
} > "$RESULTS/summary.md"

run() { # label protocol instances... (each gets $CLIENTS clients; one instance gets 2x)
    local label=$1 mode=$2; shift 2
    local instances=("$@") per=$CLIENTS
    [ ${#instances[@]} = 1 ] && per=$((CLIENTS * 2))
    log "$label, $mode, ${#instances[@]} instance(s) x $per clients, ${DURATION}s"
    psql_on "$PRIMARY_PORT" -Atc "select pg_stat_statements_reset()" > /dev/null
    psql_on "$REPLICA_PORT" -Atc "select pg_stat_statements_reset()" > /dev/null
    for i in "${instances[@]}"; do reset_stats "$i"; done
    local bench=() i
    for i in "${instances[@]}"; do
        local p=PORT_$i
        PGPASSWORD=app pgbench -n -h $HOST -p "${!p}" -U app -M "$mode" -c "$per" -j 2 \
            -T "$DURATION" -f "$RESULTS/read.sql@8" -f "$RESULTS/write.sql@2" app \
            > "$RESULTS/$label-$mode-$i.out" 2>&1 &
        bench+=($!)
    done
    for b in "${bench[@]}"; do wait "$b" || true; done
    local tps=0 q=0 r=0
    for i in "${instances[@]}"; do
        t=$(awk '/^tps = /{printf "%.0f", $3}' "$RESULTS/$label-$mode-$i.out" | tail -1)
        tps=$((tps + ${t:-0}))
        read -r qi ri <<< "$(stat "$i")"
        q=$((q + qi)); r=$((r + ri))
    done
    local on_r on_p pos
    on_r=$(calls_on "$REPLICA_PORT" 'SELECT v FROM pgsplit_bench_rw%')
    on_p=$(calls_on "$PRIMARY_PORT" 'SELECT v FROM pgsplit_bench_rw%')
    pos=$(calls_on "$PRIMARY_PORT" 'SELECT pg_current_wal_insert_lsn()::text')
    local share per_k own
    share=$(awk -v r="$on_r" -v p="$on_p" 'BEGIN{printf "%.1f %%", (r+p)? 100*r/(r+p) : 0}')
    per_k=$(awk -v q="$pos" -v r="$on_r" -v p="$on_p" 'BEGIN{printf "%.1f", (r+p)? 1000*q/(r+p) : 0}')
    own=$(awk -v q="$q" -v r="$r" 'BEGIN{ if (r) printf "%.1f", 1000*q/r; else printf "-" }')
    echo "| $label | $mode | ${#instances[@]} x $per | $tps | $on_r | $on_p | $share | $per_k | $own |" >> "$RESULTS/summary.md"
}

for mode in $PROTOCOLS; do
    run "global, two instances" "$mode" ga gb
    run "global, one instance" "$mode" ga
    run "table_lsn, one instance" "$mode" tl
done
cat "$RESULTS/summary.md"
log "results in $RESULTS"
