#!/usr/bin/env bash
# The 60-second frozen-replica run (CI freezes it 20 s): 9 readers (simple, unnamed extended and
# prepared) and 20 new clients through pgsplit while every process of the replica is stopped
# (SIGSTOP). Prints the run's figures; fails if a read fails or waits longer than 2 × the health
# check timeout (1 s here), if the frozen replica is used or unbanned, or if it is not back in
# use within 10 s of SIGCONT.
#
#   benches/frozen.sh [seconds]      (default 60; the cluster is tests/bounds.rs's own, ports 31636/31637)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/cluster.sh env)"
export PATH="$PGSPLIT_PG_BINDIR:$PATH"
PGSPLIT_FROZEN_SECONDS=${1:-60} cargo test --release --test bounds -- frozen_replica --nocapture
