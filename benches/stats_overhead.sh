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
export PGPASSWORD=app
source benches/lib.sh
bench_options "duration repeat clients mode section" "$@"
bench_binary
WORK=$(mktemp -d)
trap 'bench_cleanup; rm -rf "$WORK"' EXIT

start() { # name enabled -> PORT, PID
    # Only the `enabled` key of the chosen section.
    sed "/^\[$SECTION\]/,/^\[/ s/^enabled = true/enabled = $2/" proxy.toml >"$WORK/$1.toml"
    start_pgsplit "$1" "$WORK/$1.toml"
}

start on true
ON=$PORT ON_PID=$PID
start off false
OFF=$PORT OFF_PID=$PID
run() { pgbench_cpu "$1" "$2" -S -M "$MODE" -c "$CLIENTS" -j 2 -T "$DURATION"; }

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
