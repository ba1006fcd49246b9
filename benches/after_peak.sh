#!/usr/bin/env bash
# A pool that grew at a peak must not slow the light load after it: `pgbench -S -M simple -c 10`
# through a pgsplit that has just served a 100-client burst (its pools hold ~100 idle servers)
# against the same run through a fresh pgsplit, interleaved, median of N runs. With LIFO reuse
# the light load keeps to a few warm servers; FIFO spread it over every cold one (issue 20: 37 %
# fewer TPS). Also prints each proxy's pool sizes (SHOW POOLS) after the runs.
#
#   benches/after_peak.sh [--duration S] [--repeat N] [--clients C] [--burst B] [--bin PATH]
#
# --bin runs a given pgsplit binary (default: cargo build --release). Needs the local cluster
# (scripts/cluster.sh start); creates the pgbench tables in database app if they are missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=10 REPEAT=3 CLIENTS=10 BURST=100 BIN=
export PGPASSWORD=app
source benches/lib.sh
bench_options "duration repeat clients burst" "$@"
bench_binary
PRIMARY=${PGSPLIT_PRIMARY:-127.0.0.1:15432}
if ! psql -X -q -h "${PRIMARY%:*}" -p "${PRIMARY##*:}" -U app -d app -c 'select 1 from pgbench_accounts limit 1' >/dev/null 2>&1; then
    pgbench -i -q -s 10 -h "${PRIMARY%:*}" -p "${PRIMARY##*:}" -U app app
fi
WORK=$(mktemp -d)
trap 'bench_cleanup; rm -rf "$WORK"' EXIT

start() { start_pgsplit "$1" proxy.toml; }

start fresh
FRESH=$PORT FRESH_PID=$PID
start peaked
PEAKED=$PORT PEAKED_PID=$PID
run() { pgbench_cpu "$1" "$2" -S -M simple -c "$CLIENTS" -j 2 -T "$DURATION"; }
pools() { # port -> "role:size" per pool of user app
    psql -X -At -F'|' -h 127.0.0.1 -p "$1" -U app -d pgsplit -c 'SHOW POOLS' |
        awk -F'|' '$1 ~ /^app@/ { printf "%s:%s ", $2, $4 }'
}

# The peak: BURST clients at once on one proxy only; the other is warmed with the light load.
pgbench -n -S -M simple -c "$BURST" -j 2 -T 5 -h 127.0.0.1 -p "$PEAKED" -U app app >/dev/null 2>&1
run "$FRESH" "$FRESH_PID" >/dev/null
echo "pools after the burst: peaked $(pools "$PEAKED"), fresh $(pools "$FRESH")"
: >"$WORK/fresh" && : >"$WORK/peaked"
for i in $(seq "$REPEAT"); do
    if ((i % 2)); then
        run "$PEAKED" "$PEAKED_PID" >>"$WORK/peaked"; run "$FRESH" "$FRESH_PID" >>"$WORK/fresh"
    else
        run "$FRESH" "$FRESH_PID" >>"$WORK/fresh"; run "$PEAKED" "$PEAKED_PID" >>"$WORK/peaked"
    fi
done
fresh=$(cut -d' ' -f1 "$WORK/fresh" | median)
peaked=$(cut -d' ' -f1 "$WORK/peaked" | median)
fresh_cpu=$(cut -d' ' -f2 "$WORK/fresh" | median)
peaked_cpu=$(cut -d' ' -f2 "$WORK/peaked" | median)
printf '| proxy | pgbench -S -M simple -c %s, %s x %ss: tps (proxy CPU µs per transaction) | median tps | median CPU µs/tx |\n|---|---|---:|---:|\n' \
    "$CLIENTS" "$REPEAT" "$DURATION"
printf '| after a %s-client burst | %s | %.0f | %.1f |\n' "$BURST" "$(awk '{ printf "%s (%s) ", $1, $2 }' "$WORK/peaked")" "$peaked" "$peaked_cpu"
printf '| fresh | %s | %.0f | %.1f |\n' "$(awk '{ printf "%s (%s) ", $1, $2 }' "$WORK/fresh")" "$fresh" "$fresh_cpu"
echo "pools after the runs: peaked $(pools "$PEAKED"), fresh $(pools "$FRESH")"
awk -v a="$peaked" -v b="$fresh" 'BEGIN {
    d = (a - b) / b * 100
    printf "\nafter the peak: %+.1f%% TPS against a fresh proxy (target: within 5%%)\n", d
    exit (d < -5 || d > 5) }'
