#!/usr/bin/env bash
# Cost of issue 19 (session-state pinning, write reach, clock/user dependencies, uncacheable
# reasons): pgsplit at a base commit against the working tree, cache on, same machine, same run.
#
#   benches/tenant_cost.sh [--base REF] [--duration S] [--clients C] [--demo S] [--no-build] [--results DIR]
#
# REF defaults to dc0916d^ (main before issue 19's first change). For each build:
#   - pgbench -S (simple and prepared), -c C (10), -j 2, S seconds (10): TPS and pgsplit's CPU
#     per transaction (benches/lib.sh);
#   - server statements per pgbench transaction, from pg_stat_statements on both nodes (reset
#     before each run): a -S transaction is one SELECT, so anything above 1 is a round trip
#     pgsplit added (settings replay, position probes, catalog reads);
#   - the demo (scripts/demo.sh --exit --duration S, 30 by default; 0 skips it): its cache hit rate.
# Needs the cluster of scripts/cluster.sh (pg_stat_statements loaded there) and pgbench tables
# (pgbench -i -s 1 when missing). Progress on stderr, a markdown table on stdout (also
# DIR/summary.md). Run it on a quiet machine: the two builds share the cores.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/lib.sh
source "$REPO_ROOT/benches/lib.sh"
BASE=dc0916d^
DURATION=10
CLIENTS=10
DEMO=30
RESULTS=
bench_options "base duration clients demo" "$@"
WORK=${RESULTS:-$(mktemp -d /tmp/pgsplit-tenant-cost.XXXXXX)}
mkdir -p "$WORK"
log() { echo "[tenant-cost] $*" >&2; }

# The base build lives in a worktree of its own, with its own target dir.
BASE_TREE=/tmp/pgsplit-tenant-cost-base
BASE_SHA=$(git -C "$REPO_ROOT" rev-parse "$BASE")
if [ "$(git -C "$BASE_TREE" rev-parse HEAD 2>/dev/null || true)" != "$BASE_SHA" ]; then
    git -C "$REPO_ROOT" worktree remove --force "$BASE_TREE" 2>/dev/null || rm -rf "$BASE_TREE"
    git -C "$REPO_ROOT" worktree add --detach "$BASE_TREE" "$BASE_SHA" >&2
fi
bench_binary
declare -A BINS=([current]=$BIN [base]=$BASE_TREE/target/release/pgsplit)
declare -A TREE=([current]=$REPO_ROOT [base]=$BASE_TREE)
if [ "${NO_BUILD:-0}" != 1 ]; then
    log "building $BASE ($BASE_SHA)"
    (cd "$BASE_TREE" && cargo build --release --quiet)
fi

su() { PGPASSWORD=postgres psql -X -q -h "$BENCH_HOST" -p "$1" -U postgres -d app -v ON_ERROR_STOP=1 "${@:2}"; }
if ! su "$PRIMARY_PORT" -Atc "select 'pgbench_accounts'::regclass" >/dev/null 2>&1; then
    log "creating pgbench tables (scale 1)"
    PGPASSWORD=app pgbench -i -s 1 -q -h "$BENCH_HOST" -p "$PRIMARY_PORT" -U app app >&2
    wait_for_replica
fi
# Statement calls since the last reset, pg_stat_statements' own excluded.
statements() { su "$1" -Atc "select coalesce(sum(calls), 0) from pg_stat_statements where query not ilike '%pg_stat_statements%'"; }

{
echo "| build | protocol | TPS | pgsplit CPU µs/tx | server statements per tx | extra round trips per tx | demo cache hit rate |"
echo "|---|---|---:|---:|---:|---:|---:|"
} > "$WORK/summary.md"

export PGPASSWORD=app
for name in base current; do
    BIN=${BINS[$name]}
    pgsplit_config "$name" $'[pool]\nprimary_size = 20\nreplica_size = 20\n[cache]\nenabled = true'
    start_pgsplit "$name" "$WORK/$name.toml"
    hit=n/a
    for mode in simple prepared; do
        log "$name: pgbench -S -M $mode, $CLIENTS clients, ${DURATION}s"
        su "$PRIMARY_PORT" -Atc "select pg_stat_statements_reset()" >/dev/null
        su "$REPLICA_PORT" -Atc "select pg_stat_statements_reset()" >/dev/null
        read -r tps cpu < <(pgbench_cpu "$PORT" "$PID" -S -M "$mode" -c "$CLIENTS" -j 2 -T "$DURATION")
        tx=$(awk -v t="$tps" -v d="$DURATION" 'BEGIN{printf "%.0f", t * d}')
        calls=$(($(statements "$PRIMARY_PORT") + $(statements "$REPLICA_PORT")))
        per=$(awk -v c="$calls" -v t="$tx" 'BEGIN{printf "%.3f", (t > 0 ? c / t : 0)}')
        extra=$(awk -v p="$per" 'BEGIN{printf "%.3f", p - 1}')
        if [ "$mode" = prepared ] && [ "$DEMO" != 0 ]; then
            kill "$PID" 2>/dev/null || true
            log "$name: demo, ${DEMO}s"
            (cd "${TREE[$name]}" && scripts/demo.sh --exit --duration "$DEMO") > "$WORK/$name-demo.out" 2>&1 || true
            hit=$(grep -oE 'hit rate [0-9.]+%' "$WORK/$name-demo.out" | tail -1 | awk '{print $3}')
        fi
        echo "| $name | $mode | $tps | $cpu | $per | $extra | ${hit:-n/a} |" >> "$WORK/summary.md"
    done
done
cat "$WORK/summary.md"
log "results in $WORK"
