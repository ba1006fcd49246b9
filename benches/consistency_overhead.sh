#!/usr/bin/env bash
# What read-your-writes costs: pgbench tpcb-like and select-only through pgsplit with
# replication.consistency = table_lsn (default), session and none, alternating, same cluster.
#
#   benches/consistency_overhead.sh [pgsplit binary]
#
# Environment: PGSPLIT_PRIMARY / PGSPLIT_REPLICAS (host:port, default the local test cluster),
# CLIENTS (8), DURATION (15), ROUNDS (2), SCALE (10; pgbench -i is run on the primary first).
set -euo pipefail

BIN=${1:-target/release/pgsplit}
PRIMARY=${PGSPLIT_PRIMARY:-127.0.0.1:15432}
REPLICAS=${PGSPLIT_REPLICAS:-127.0.0.1:15433}
CLIENTS=${CLIENTS:-8}
SECONDS_EACH=${DURATION:-15}
ROUNDS=${ROUNDS:-2}
SCALE=${SCALE:-10}
PORT=${PORT:-16499}
STATS_PORT=$((PORT + 1))
WORK=$(mktemp -d)
trap 'kill "${PROXY_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

export PGPASSWORD=app
pgbench -i -q -s "$SCALE" -h "${PRIMARY%:*}" -p "${PRIMARY#*:}" -U app app >/dev/null 2>&1

run() {
    local mode=$1 script=$2
    sed "s/^consistency = .*/consistency = \"$mode\"/" proxy.toml >"$WORK/$mode.toml"
    PGSPLIT_LISTEN=127.0.0.1:$PORT PGSPLIT_STATS_LISTEN=127.0.0.1:$STATS_PORT \
        PGSPLIT_PRIMARY=$PRIMARY PGSPLIT_REPLICAS=$REPLICAS RUST_LOG=error \
        "$BIN" serve --config "$WORK/$mode.toml" >"$WORK/proxy.log" 2>&1 &
    PROXY_PID=$!
    for _ in $(seq 100); do
        pg_isready -q -h 127.0.0.1 -p "$PORT" && break
        sleep 0.1
    done
    local tps
    tps=$(pgbench -n -M prepared $script -c "$CLIENTS" -j 2 -T "$SECONDS_EACH" \
        -h 127.0.0.1 -p "$PORT" -U app app 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p' || true)
    if ! kill "$PROXY_PID" 2>/dev/null; then
        echo "pgsplit exited during the run; its log:" >&2
        cat "$WORK/proxy.log" >&2
    fi
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=
    printf '%-10s %-14s %s tps\n' "$mode" "${script#-b }" "$tps"
}

for _ in $(seq "$ROUNDS"); do
    for script in "-b tpcb-like" "-b select-only"; do
        for mode in table_lsn session none; do
            run "$mode" "$script"
        done
    done
done
