#!/usr/bin/env bash
# The pgsplit demo: a local primary and streaming replica, pgsplit in front, and psql showing
# that plain reads are answered by the replica while writes and transactions go to the primary.
#
#   scripts/demo.sh            run the demo, then keep pgsplit running until Ctrl-C
#   scripts/demo.sh --exit     run the demo and stop everything it started (for CI)
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
EXIT_AFTER=0
[[ ${1:-} == --exit ]] && EXIT_AFTER=1

# shellcheck source=scripts/test.sh
source scripts/test.sh
ensure_packages
ensure_cargo

echo "== building pgsplit (release)"
cargo build --release --quiet

echo "== starting the local primary and replica"
scripts/cluster.sh start
eval "$(scripts/cluster.sh env)"
PG_BIN=${PGSPLIT_PG_BINDIR:-$(pg_config --bindir)}
export PATH="$PG_BIN:$PATH"

LOG=$(mktemp -t pgsplit-demo.XXXXXX.log)
echo "== starting pgsplit on 127.0.0.1:6432 (log: $LOG)"
./target/release/pgsplit serve --config proxy.toml >"$LOG" 2>&1 &
PROXY_PID=$!
cleanup() {
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    if ((EXIT_AFTER)); then
        scripts/cluster.sh stop >/dev/null || true
    fi
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    pg_isready -q -h 127.0.0.1 -p 6432 && break
    sleep 0.1
done

export PGPASSWORD=app
run() {
    echo
    echo "pgsplit> $1"
    psql "postgresql://app@127.0.0.1:6432/app" -X -v ON_ERROR_STOP=1 -c "$1"
}
run "select pg_is_in_recovery() as answered_by_replica, inet_server_port() as server_port"
run "create table if not exists demo_notes (id serial primary key, note text, at timestamptz default now())"
run "insert into demo_notes (note) values ('written through pgsplit') returning id, pg_is_in_recovery() as on_replica, inet_server_port() as server_port"
run "begin; select pg_is_in_recovery() as in_transaction_on_replica, inet_server_port() as server_port; commit;"
run "select nextval('demo_notes_id_seq') as nextval_needs_the_primary, inet_server_port() as server_port"
sleep 0.2
run "select count(*) as notes, inet_server_port() as server_port from demo_notes"

echo
echo "== what pgsplit measured (pgsplit report; also http://127.0.0.1:9930/stats and psql -d pgsplit -c 'SHOW QUERIES')"
./target/release/pgsplit report --url http://127.0.0.1:9930 --limit 6 || true

echo
echo "Reads went to the replica (port ${PGSPLIT_REPLICA_PORT:-15433}), writes and transactions to the primary (port ${PGSPLIT_PRIMARY_PORT:-15432})."
echo "Point an application at:  DATABASE_URL=postgresql://app:app@127.0.0.1:6432/app"
echo "Stats: http://127.0.0.1:9930/stats   Prometheus: http://127.0.0.1:9930/metrics"
if ((EXIT_AFTER)); then
    exit 0
fi
echo "pgsplit keeps running; press Ctrl-C to stop."
wait "$PROXY_PID"
