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

# Sets PORT and PID; not called in $(...), whose subshell would lose PIDS and leak the proxy.
start() { # name enabled
    local stats
    PORT=$(free_port)
    stats=$(free_port)
    # Only the `enabled` key of the chosen section.
    sed "/^\[$SECTION\]/,/^\[/ s/^enabled = true/enabled = $2/" proxy.toml >"$WORK/$1.toml"
    PGSPLIT_LISTEN=127.0.0.1:$PORT PGSPLIT_STATS_LISTEN=127.0.0.1:$stats \
        "$BIN" serve --config "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 100); do pg_isready -q -h 127.0.0.1 -p "$PORT" && break; sleep 0.1; done
}

start on true
ON=$PORT ON_PID=$PID
start off false
OFF=$PORT OFF_PID=$PID
# The proxy's own CPU time (user + system, clock ticks), which other load on a shared machine
# disturbs far less than TPS.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
run() { # port pid -> "tps cpu_us_per_transaction"
    local before out
    before=$(ticks "$2")
    out=$(pgbench -n -S -M "$MODE" -c "$CLIENTS" -j 2 -T "$DURATION" -h 127.0.0.1 -p "$1" -U app app 2>/dev/null)
    awk -v t0="$before" -v t1="$(ticks "$2")" -v hz="$(getconf CLK_TCK)" '
        /^tps/ { tps = $3 } /actually processed/ { split($NF, a, "/"); n = a[1] }
        END { printf "%.0f %.1f\n", tps, (t1 - t0) / hz * 1e6 / (n > 0 ? n : 1) }' <<<"$out"
}
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Warm both (connections, caches), then alternate which goes first.
run "$ON" "$ON_PID" >/dev/null
run "$OFF" "$OFF_PID" >/dev/null
: >"$WORK/on" && : >"$WORK/off"
for i in $(seq "$REPEAT"); do
    if ((i % 2)); then
        run "$ON" "$ON_PID" >>"$WORK/on"; run "$OFF" "$OFF_PID" >>"$WORK/off"
    else
        run "$OFF" "$OFF_PID" >>"$WORK/off"; run "$ON" "$ON_PID" >>"$WORK/on"
    fi
done
on=$(cut -d' ' -f1 "$WORK/on" | median)
off=$(cut -d' ' -f1 "$WORK/off" | median)
on_cpu=$(cut -d' ' -f2 "$WORK/on" | median)
off_cpu=$(cut -d' ' -f2 "$WORK/off" | median)
printf '| %s | pgbench -S -M %s -c %s, %s x %ss: tps (proxy CPU µs per transaction) | median tps | median CPU µs/tx |\n|---|---|---:|---:|\n' \
    "$SECTION" "$MODE" "$CLIENTS" "$REPEAT" "$DURATION"
printf '| on  | %s | %.0f | %.1f |\n' "$(awk '{ printf "%s (%s) ", $1, $2 }' "$WORK/on")" "$on" "$on_cpu"
printf '| off | %s | %.0f | %.1f |\n' "$(awk '{ printf "%s (%s) ", $1, $2 }' "$WORK/off")" "$off" "$off_cpu"
awk -v a="$on" -v b="$off" -v ca="$on_cpu" -v cb="$off_cpu" -v s="$SECTION" 'BEGIN {
    printf "\n%s overhead: %.1f%% of TPS, %.1f%% more proxy CPU per transaction\n", s, (b - a) / b * 100, (ca - cb) / cb * 100 }'
