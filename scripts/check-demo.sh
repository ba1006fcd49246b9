#!/usr/bin/env bash
# Checks the output of `scripts/demo.sh --exit` (a file, or standard input): the report shows the
# workload's top queries with percentiles and routes, pools with efficiency, every target judged,
# a cache hit rate above 0 and the planted N+1 burst, the only loop found, with its data flow and fix.
#
#   scripts/demo.sh --exit --duration 15 | tee demo.log && scripts/check-demo.sh demo.log
#
# Which check depends on which piece of work is said beside it; each failure names itself.
set -euo pipefail

LOG=$(cat "${1:-/dev/stdin}")
failed=0
check() {
    local what=$1 pattern=$2
    if grep -Eq -- "$pattern" <<<"$LOG"; then
        echo "[demo check] ok: $what"
    else
        echo "[demo check] FAILED: $what (no line matching /$pattern/)" >&2
        failed=1
    fi
}
# The section of the report from a heading to the next blank line.
section() {
    awk -v h="$1" '$0 ~ "^"h {on=1; next} on && /^$/ {exit} on {print}' <<<"$LOG"
}

# The workload and the report (this branch).
check "the workload ran and finished" '^workload done: [1-9][0-9]* statements'
check "the workload's progress line read pgsplit's stats" 'QPS [0-9]+ · p90 [0-9.]+ ms'
check "top queries with p50/p90/p99 and route" '^ *# +calls +errors +rows +total ms +mean +p50 +p90 +p99 +route'
# (The report shortens query text to its line, so only the start of each statement is matched.)
check "property search among the top queries" 'SELECT id, address, city, price, bedrooms, bathrooms, property_type FROM properties'
check "active-leads dashboard query among the top queries" 'SELECT id, contact_id, name, email, phone, ml_score, created_at FROM leads WHERE status'
check "reads answered by the replica" 'replica [1-9][0-9]*% / primary'
check "writes answered by the primary" 'replica 0% / primary 100%'
check "pools with efficiency" '^ *pool +size/max +busy +waiting +acquire p95 ms +efficiency'
check "a pool with a measured efficiency" '[0-9]+/[0-9]+ +[0-9]+ +[0-9]+ +[0-9.]+ +[0-9.]+%'
check "p90 target judged" '^ *(P90|p90)[^|]*(✓ met|✗ missed)'
check "pool efficiency target judged" '^ *[Pp]ool efficiency.*(✓ met|✗ missed)'
check "no stale read of a just-written row (issue 12)" '^consistency check: [1-9][0-9]* reads .*, 0 stale$'
check "DATABASE_URL printed" 'DATABASE_URL=postgresql://app:app@'
check "dashboard URL printed" '^Dashboard: +http://'

# Needs the result cache (issue 5): the cache answers the repeated dashboard summary.
check "cache hit rate above 0 (issue 5: result cache)" '^  hit rate ([1-9][0-9.]*|0\.[0-9]*[1-9][0-9]*)%'
check "cache hit-rate target judged (issue 5: result cache)" '^ *[Cc]ache hit rate.*(✓ met|✗ missed)'

# Needs N+1 detection (issue 6): the planted loop (leads, then conversations per lead) is found.
n1=$(section "N\\+1 bursts")
if grep -Eq 'query: .*FROM conversations WHERE contact_id' <<<"$n1" &&
    grep -Eq 'fix: +[^ ]' <<<"$n1"; then
    echo "[demo check] ok: the planted N+1 burst with a suggested fix (issue 6: N+1 detection)"
else
    echo "[demo check] FAILED: the planted N+1 burst (conversations per lead) with a suggested fix (issue 6: N+1 detection); the section was:" >&2
    echo "$n1" >&2
    failed=1
fi
# Needs data-flow confirmation (issue 15): the planted loop is the only n_plus_one finding (the
# independent lookups after list queries are none), named by its columns with the exact fix.
loops=$(grep -Ec '^ +[0-9]+ +n_plus_one ' <<<"$n1" || true)
loop_queries=$(awk '/^ +[0-9]+ +n_plus_one /{getline; print}' <<<"$n1")
if [[ $loops == 1 ]] && grep -Eq 'query: .*FROM conversations WHERE contact_id' <<<"$loop_queries" &&
    grep -Eq '^ +flow: +conversations\.contact_id takes leads\.contact_id$' <<<"$n1" &&
    grep -Eq '^ +fix: +conversations\.contact_id takes leads\.contact_id: ' <<<"$n1"; then
    echo "[demo check] ok: exactly the planted loop as n_plus_one, with its data flow and fix (issue 15)"
else
    echo "[demo check] FAILED: exactly one n_plus_one finding, the planted loop with flow conversations.contact_id takes leads.contact_id (issue 15); found $loops; the section was:" >&2
    echo "$n1" >&2
    failed=1
fi
check "N+1 target judged (issue 6: N+1 detection)" '^ *N\+1 bursts.*(✓ met|✗ missed)'

exit "$failed"
