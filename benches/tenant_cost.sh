#!/usr/bin/env bash
# Cost of issue 19 (session-state pinning, write reach, uncacheable reasons): pgsplit at a base
# commit against the working tree, cache on, same machine, same run.
#
#   benches/tenant_cost.sh [--base REF] [--duration S] [--clients C] [--demo S] [--no-build] [--results DIR]
#
# REF defaults to dc0916d^ (main before issue 19's first change). For each build:
#   - pgbench -S (simple and prepared), -c C (10), -j 2, S seconds (10): TPS;
#   - server statements per pgbench transaction, from pg_stat_statements on both nodes (reset
#     before each run): a -S transaction is one SELECT, so anything above 1 is a round trip
#     pgsplit added (settings replay, position probes, catalog reads);
#   - the demo (scripts/demo.sh --exit --duration S, 30 by default; 0 skips it): its cache hit rate.
# Needs the cluster of scripts/cluster.sh (pg_stat_statements loaded there) and pgbench tables
# (created with pgbench -i -s 1 when missing). Progress on stderr, a markdown table on stdout
# (also DIR/summary.md). Run it on a quiet machine: the two builds share the cores.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOST=127.0.0.1
PRIMARY_PORT=${PGSPLIT_PRIMARY_PORT:-15432}
REPLICA_PORT=${PGSPLIT_REPLICA_PORT:-15433}
export PATH=${PGSPLIT_PG_BINDIR:-/usr/lib/postgresql/15/bin}:$PATH
BASE=dc0916d^
DURATION=10
CLIENTS=10
DEMO=30
BUILD=1
RESULTS=
while [ $# -gt 0 ]; do
    case $1 in
        --base) BASE=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --demo) DEMO=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --results) RESULTS=$2; shift 2 ;;
        *) sed -n '2,16p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    esac
done
RESULTS=${RESULTS:-$(mktemp -d /tmp/pgsplit-tenant-cost.XXXXXX)}
mkdir -p "$RESULTS"
log() { echo "[tenant-cost] $*" >&2; }

# The base build lives in a worktree of its own (its own target dir: the two never mix).
BASE_TREE=/tmp/pgsplit-tenant-cost-base
BASE_SHA=$(git -C "$REPO_ROOT" rev-parse "$BASE")
if [ ! -d "$BASE_TREE" ] || [ "$(git -C "$BASE_TREE" rev-parse HEAD 2>/dev/null)" != "$BASE_SHA" ]; then
    git -C "$REPO_ROOT" worktree remove --force "$BASE_TREE" 2>/dev/null || rm -rf "$BASE_TREE"
    git -C "$REPO_ROOT" worktree add --detach "$BASE_TREE" "$BASE_SHA" >&2
fi
if [ "$BUILD" = 1 ]; then
    log "building the working tree and $BASE ($BASE_SHA)"
    (cd "$REPO_ROOT" && cargo build --release --quiet)
    (cd "$BASE_TREE" && cargo build --release --quiet)
fi
declare -A BIN=([base]=$BASE_TREE/target/release/pgsplit [current]=$REPO_ROOT/target/release/pgsplit)
declare -A TREE=([base]=$BASE_TREE [current]=$REPO_ROOT)

export PGPASSWORD=app
psql_on() { psql -X -q -h $HOST -p "$1" -U postgres -d app -v ON_ERROR_STOP=1 "${@:2}"; }
if ! PGPASSWORD=postgres psql_on "$PRIMARY_PORT" -Atc "select 'pgbench_accounts'::regclass" >/dev/null 2>&1; then
    log "creating pgbench tables (scale 1)"
    pgbench -i -s 1 -q -h $HOST -p "$PRIMARY_PORT" -U app app >&2
    sleep 1
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_pgsplit() { # build -> PORT
    local name=$1 stats
    PORT=$(free_port); stats=$(free_port)
    cat > "$RESULTS/$name.toml" <<TOML
listen = "127.0.0.1:$PORT"
[primary]
host = "127.0.0.1"
port = $PRIMARY_PORT
[[replicas]]
host = "127.0.0.1"
port = $REPLICA_PORT
[pool]
primary_size = 20
replica_size = 20
[[users]]
name = "app"
password = "app"
admin = true
[[databases]]
name = "app"
[stats]
listen = "127.0.0.1:$stats"
[cache]
enabled = true
TOML
    RUST_LOG=warn "${BIN[$name]}" serve --config "$RESULTS/$name.toml" > "$RESULTS/$name.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        pg_isready -q -h $HOST -p "$PORT" && break
        sleep 0.1
    done
}

statements() { # port -> statement calls since the last reset, pg_stat_statements' own excluded
    PGPASSWORD=postgres psql_on "$1" -Atc "select coalesce(sum(calls), 0) from pg_stat_statements
        where query not ilike '%pg_stat_statements%'"
}

{
echo "| build | protocol | TPS | server statements per transaction | extra round trips per transaction | demo cache hit rate |"
echo "|---|---|---:|---:|---:|---:|"
} > "$RESULTS/summary.md"

for name in base current; do
    start_pgsplit "$name"
    hit=n/a
    for mode in simple prepared; do
        log "$name: pgbench -S -M $mode, $CLIENTS clients, ${DURATION}s"
        PGPASSWORD=postgres psql_on "$PRIMARY_PORT" -Atc "select pg_stat_statements_reset()" >/dev/null
        PGPASSWORD=postgres psql_on "$REPLICA_PORT" -Atc "select pg_stat_statements_reset()" >/dev/null
        out=$RESULTS/$name-$mode.out
        pgbench -n -S -h $HOST -p "$PORT" -U app -M "$mode" -c "$CLIENTS" -j 2 -T "$DURATION" app > "$out" 2>&1 || true
        tps=$(awk '/^tps = /{printf "%.0f", $3}' "$out" | tail -1)
        tx=$(awk '/number of transactions actually processed/{split($NF, a, "/"); print a[1]}' "$out")
        calls=$(( $(statements "$PRIMARY_PORT") + $(statements "$REPLICA_PORT") ))
        per=$(awk -v c="$calls" -v t="${tx:-0}" 'BEGIN{printf "%.3f", t? c/t : 0}')
        extra=$(awk -v p="$per" 'BEGIN{printf "%.3f", p - 1}')
        if [ "$mode" = prepared ] && [ "$DEMO" != 0 ]; then
            kill "${PIDS[-1]}" 2>/dev/null || true
            log "$name: demo, ${DEMO}s"
            (cd "${TREE[$name]}" && scripts/demo.sh --exit --duration "$DEMO") > "$RESULTS/$name-demo.out" 2>&1 || true
            hit=$(grep -oE 'hit rate [0-9.]+%' "$RESULTS/$name-demo.out" | tail -1 | awk '{print $3}')
        fi
        echo "| $name | $mode | ${tps:-0} | $per | $extra | ${hit:-n/a} |" >> "$RESULTS/summary.md"
    done
done
cat "$RESULTS/summary.md"
log "results in $RESULTS"
