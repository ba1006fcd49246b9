#!/usr/bin/env bash
# 80/20 read/write mix through pgsplit: share of SELECTs that ran on the replica, and TPS, with the
# replica-position wait on (max_replica_wait_ms = 5, the default) and off (0: the polled position
# alone decides, as before the wait existed), same run, same machine.
#
#   benches/read_write_mix.sh [--duration S] [--clients "10 100"] [--no-build] [--results DIR]
#
# Needs the cluster of scripts/cluster.sh running (pg_stat_statements is loaded there). Creates
# table pgsplit_bench_rw (1,000 rows) in database app; pgbench runs 80 % `SELECT v ... WHERE id = :id`
# and 20 % `UPDATE ... SET v = v + 1 WHERE id = :id`, -M simple and -M prepared, -j 2. The SELECTs
# are counted with pg_stat_statements on both nodes (reset before each run), so the figure is what
# the servers executed, not what pgsplit believes. Markdown table on stdout (also DIR/summary.md).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh
HOST=$BENCH_HOST
DURATION=10
CLIENTS="10 100"
RESULTS=

bench_options "duration clients" "$@"
RESULTS=${RESULTS:-$(mktemp -d /tmp/pgsplit-rw-bench.XXXXXX)}
mkdir -p "$RESULTS"
log() { echo "[rw-bench] $*" >&2; }

WORK=$RESULTS
bench_binary

export PGPASSWORD=postgres
psql_on() { local port=$1; shift; psql -X -q -h $HOST -p "$port" -U postgres -d app -v ON_ERROR_STOP=1 "$@"; }
psql_on "$PRIMARY_PORT" -c "drop table if exists pgsplit_bench_rw;
  create table pgsplit_bench_rw (id int primary key, v bigint not null default 0);
  insert into pgsplit_bench_rw select i, 0 from generate_series(1, 1000) i;
  grant select, update on pgsplit_bench_rw to app;
  analyze pgsplit_bench_rw;"
lsn=$(psql_on "$PRIMARY_PORT" -Atc "select pg_current_wal_insert_lsn()")
until [ "$(psql_on "$REPLICA_PORT" -Atc "select pg_last_wal_replay_lsn() >= '$lsn'")" = t ]; do sleep 0.1; done

cat > "$RESULTS/read.sql" <<'SQL'
\set id random(1, 1000)
SELECT v FROM pgsplit_bench_rw WHERE id = :id;
SQL
cat > "$RESULTS/write.sql" <<'SQL'
\set id random(1, 1000)
UPDATE pgsplit_bench_rw SET v = v + 1 WHERE id = :id;
SQL

start_mix() { # name wait_ms -> PORT_<name>
    pgsplit_config "$1" "[pool]
primary_size = 50
replica_size = 100
[replication]
max_replica_wait_ms = $2"
    start_pgsplit "$1" "$WORK/$1.toml"
    eval "PORT_$1=$PORT"
}
start_mix wait 5
start_mix nowait 0

selects_on() { # port -> SELECT calls since the last reset
    psql_on "$1" -Atc "select coalesce(sum(calls), 0) from pg_stat_statements
        where query like 'SELECT v FROM pgsplit_bench_rw%'"
}

{
echo "| clients | protocol | max_replica_wait_ms | TPS | SELECTs on replica | on primary | replica share |"
echo "|---:|---|---:|---:|---:|---:|---:|"
} > "$RESULTS/summary.md"

for c in $CLIENTS; do
    for mode in simple prepared; do
        for target in nowait wait; do
            port_var=PORT_$target
            wait=5; [ $target = nowait ] && wait=0
            log "$c clients, $mode, wait $wait"
            psql_on "$PRIMARY_PORT" -Atc "select pg_stat_statements_reset()" > /dev/null
            psql_on "$REPLICA_PORT" -Atc "select pg_stat_statements_reset()" > /dev/null
            out=$RESULTS/$target-$mode-$c.out
            PGPASSWORD=app pgbench -n -h $HOST -p "${!port_var}" -U app -M "$mode" -c "$c" -j 2 \
                -T "$DURATION" -f "$RESULTS/read.sql@8" -f "$RESULTS/write.sql@2" app > "$out" 2>&1 || true
            tps=$(awk '/^tps = /{printf "%.0f", $3}' "$out" | tail -1)
            on_r=$(selects_on "$REPLICA_PORT"); on_p=$(selects_on "$PRIMARY_PORT")
            share=$(awk -v r="$on_r" -v p="$on_p" 'BEGIN{printf "%.1f %%", (r+p)? 100*r/(r+p) : 0}')
            echo "| $c | $mode | $wait | ${tps:-0} | $on_r | $on_p | $share |" >> "$RESULTS/summary.md"
        done
    done
done
cat "$RESULTS/summary.md"
log "results in $RESULTS"
