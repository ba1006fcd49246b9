#!/usr/bin/env bash
# The pgsplit demo: a local primary and streaming replica, the seed's schema and data, pgsplit in
# front, a minute of the seed application's workload through it, then pgsplit's report.
#
#   scripts/demo.sh                  run the demo, then keep everything running until Ctrl-C
#   scripts/demo.sh --exit           run the demo and stop everything it started (for CI)
#   scripts/demo.sh --duration 15    seconds of workload (default 60; or DEMO_DURATION)
#
# Environment: DEMO_DURATION (60), DEMO_CLIENTS (8), DEMO_SCALE (seed-data --scale, 1),
# PGSPLIT_LISTEN (127.0.0.1:6432), PGSPLIT_STATS_LISTEN (127.0.0.1:9930), and the cluster's
# variables of scripts/cluster.sh (PGSPLIT_CLUSTER_DIR, PGSPLIT_PRIMARY_PORT, PGSPLIT_REPLICA_PORT).
# It stops only what it started: a cluster that was already running is left running.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
EXIT_AFTER=0
DURATION=${DEMO_DURATION:-60}
while (($#)); do
    case $1 in
    --exit) EXIT_AFTER=1 ;;
    --duration)
        DURATION=${2:?--duration needs seconds}
        shift
        ;;
    --duration=*) DURATION=${1#--duration=} ;;
    -h | --help)
        sed -n '2,12p' "$0"
        exit 0
        ;;
    *)
        echo "demo: unknown argument $1 (try --help)" >&2
        exit 2
        ;;
    esac
    shift
done
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || {
    echo "demo: --duration must be a positive number of seconds" >&2
    exit 2
}
CLIENTS=${DEMO_CLIENTS:-8}
SCALE=${DEMO_SCALE:-1}
LISTEN=${PGSPLIT_LISTEN:-127.0.0.1:6432}
STATS_LISTEN=${PGSPLIT_STATS_LISTEN:-127.0.0.1:9930}
export PGSPLIT_LISTEN=$LISTEN PGSPLIT_STATS_LISTEN=$STATS_LISTEN

# shellcheck source=scripts/test.sh
source scripts/test.sh
ensure_packages
ensure_cargo

echo "== building pgsplit (release)"
cargo build --release --quiet
TARGET_DIR=${CARGO_TARGET_DIR:-target}
PGSPLIT=$TARGET_DIR/release/pgsplit

CLUSTER_STARTED=0
if ! scripts/cluster.sh status >/dev/null 2>&1; then
    echo "== starting the local primary and replica"
    scripts/cluster.sh start
    CLUSTER_STARTED=1
else
    echo "== the local primary and replica are already running (left running afterwards)"
fi
eval "$(scripts/cluster.sh env)"
PG_BIN=${PGSPLIT_PG_BINDIR:-$(pg_config --bindir)}
export PATH="$PG_BIN:$PATH"
# The control plane talks to the primary directly; the workload goes through pgsplit.
PRIMARY_URL=postgres://app:app@$PGSPLIT_PRIMARY/app
APP_URL=postgresql://app:app@$LISTEN/app
STATS_URL=http://$STATS_LISTEN

PROXY_PID=
DEMO_CONFIG=
cleanup() {
    [[ -n $DEMO_CONFIG ]] && rm -f "$DEMO_CONFIG"
    true
    if [[ -n $PROXY_PID ]]; then
        kill "$PROXY_PID" 2>/dev/null || true
        wait "$PROXY_PID" 2>/dev/null || true
    fi
    if ((CLUSTER_STARTED)); then
        scripts/cluster.sh stop >/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== pgsplit migrate (the seed's schema and its 16 indexes)"
"$PGSPLIT" migrate --database-url "$PRIMARY_URL"

leads=$(psql "$PRIMARY_URL" -XAtq -c "select count(*) from leads")
if [[ $leads == 0 ]]; then
    echo "== pgsplit seed-data --scale $SCALE"
    "$PGSPLIT" seed-data --database-url "$PRIMARY_URL" --scale "$SCALE"
else
    echo "== seed data present ($leads leads); not reloading it"
fi

LOG=$(mktemp -t pgsplit-demo.XXXXXX.log)
# The documented defaults, with the result cache on (it is off by default: see README).
DEMO_CONFIG=$(mktemp -t pgsplit-demo.XXXXXX.toml)
awk '/^\[/{section=$0} section=="[cache]" && /^enabled = false$/{print "enabled = true"; next} {print}' \
    proxy.toml >"$DEMO_CONFIG"
echo "== starting pgsplit on $LISTEN, stats and dashboard on $STATS_URL, result cache on (log: $LOG)"
"$PGSPLIT" serve --config "$DEMO_CONFIG" >"$LOG" 2>&1 &
PROXY_PID=$!
ready=0
for _ in $(seq 1 100); do
    if pg_isready -q -h "${LISTEN%:*}" -p "${LISTEN##*:}"; then
        ready=1
        break
    fi
    kill -0 "$PROXY_PID" 2>/dev/null || break
    sleep 0.1
done
if ((!ready)); then
    echo "demo: pgsplit did not start; its log:" >&2
    cat "$LOG" >&2
    exit 1
fi

echo
echo "== the seed application's workload: $CLIENTS clients for $DURATION s (dashboard: $STATS_URL/)"
"$PGSPLIT" workload --database-url "$APP_URL" --stats-url "$STATS_URL" \
    --duration "$DURATION" --clients "$CLIENTS"

echo
echo "== pgsplit report (also $STATS_URL/stats, psql -d pgsplit -c 'SHOW QUERIES')"
"$PGSPLIT" report --url "$STATS_URL" --limit 12

echo
echo "Point psql or an application at:  DATABASE_URL=$APP_URL"
echo "Dashboard:                        $STATS_URL/"
echo "Stats JSON: $STATS_URL/stats   Prometheus: $STATS_URL/metrics"
if ((EXIT_AFTER)); then
    exit 0
fi
echo "pgsplit keeps running; press Ctrl-C to stop everything the demo started."
wait "$PROXY_PID"
