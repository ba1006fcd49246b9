#!/usr/bin/env bash
# Measures what per-query statistics cost: pgbench select-only through two pgsplit instances,
# one with [stats] enabled = true and one with enabled = false, interleaved, median of N runs.
# With --section n_plus_one it measures the N+1 detector the same way ([n_plus_one] enabled).
#
#   benches/stats_overhead.sh [--duration S] [--repeat N] [--clients C] [--mode prepared|simple]
#                             [--section stats|n_plus_one]
#
# Needs the local cluster (scripts/cluster.sh start) with pgbench tables (pgbench -i) in database app.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=10 REPEAT=3 CLIENTS=10 MODE=prepared SECTION=stats
while (($#)); do
    case $1 in
        --duration) DURATION=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --mode) MODE=$2; shift 2 ;;
        --section) SECTION=$2; shift 2 ;;
        *) echo "usage: $0 [--duration S] [--repeat N] [--clients C] [--mode prepared|simple] [--section stats|n_plus_one]" >&2; exit 2 ;;
    esac
done

PG_BIN=$(pg_config --bindir)
export PATH="$PG_BIN:$PATH" PGPASSWORD=app
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/pgsplit
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # name enabled
    local port stats
    port=$(free_port)
    stats=$(free_port)
    # Only the `enabled` key of the chosen section.
    sed "/^\[$SECTION\]/,/^\[/ s/^enabled = true/enabled = $2/" proxy.toml >"$WORK/$1.toml"
    PGSPLIT_LISTEN=127.0.0.1:$port PGSPLIT_STATS_LISTEN=127.0.0.1:$stats \
        "$BIN" serve --config "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do pg_isready -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done
    echo "$port"
}

ON=$(start on true)
OFF=$(start off false)
run() { # port -> tps
    pgbench -n -S -M "$MODE" -c "$CLIENTS" -j 2 -T "$DURATION" -h 127.0.0.1 -p "$1" -U app app 2>/dev/null |
        awk '/^tps/ { print $3 }'
}
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Warm both (connections, caches), then alternate which goes first.
run "$ON" >/dev/null
run "$OFF" >/dev/null
: >"$WORK/on" && : >"$WORK/off"
for i in $(seq "$REPEAT"); do
    if ((i % 2)); then
        run "$ON" >>"$WORK/on"; run "$OFF" >>"$WORK/off"
    else
        run "$OFF" >>"$WORK/off"; run "$ON" >>"$WORK/on"
    fi
done
on=$(median <"$WORK/on")
off=$(median <"$WORK/off")
printf '| %s | pgbench -S -M %s -c %s, median of %s x %ss | tps |\n|---|---|---|\n' "$SECTION" "$MODE" "$CLIENTS" "$REPEAT" "$DURATION"
printf '| on  | runs: %s | %.0f |\n' "$(paste -sd' ' "$WORK/on")" "$on"
printf '| off | runs: %s | %.0f |\n' "$(paste -sd' ' "$WORK/off")" "$off"
awk -v a="$on" -v b="$off" -v s="$SECTION" 'BEGIN { printf "\n%s overhead: %.1f%% of TPS\n", s, (b - a) / b * 100 }'
