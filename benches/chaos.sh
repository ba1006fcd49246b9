#!/usr/bin/env bash
# The 60-second chaos run (CI runs 20 s): TPC-B clients, pgbench -S simple/prepared and tpcb-like
# through pgsplit while backends are terminated every 100 ms, the primary restarts and the replica
# is frozen (SIGSTOP) for 15 % of the run. Prints the run's figures; fails on any protocol violation,
# a balance mismatch or an acknowledged COMMIT missing from pgbench_history.
#
#   benches/chaos.sh [seconds]       (default 60; the cluster is tests/chaos.rs's own, ports 31436/31437)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/cluster.sh env)"
export PATH="$PGSPLIT_PG_BINDIR:$PATH"
PGSPLIT_CHAOS_SECONDS=${1:-60} cargo test --release --test chaos -- chaos_keeps_protocol_and_balances --nocapture
