#!/usr/bin/env bash
# Why `credshift accounts import` starts slowly on PostgreSQL: shows the plan
# PostgreSQL keeps for the import's account look-up (src/store/import.rs,
# `select_accounts`: `… WHERE realm = $1 AND login_id IN ($2, …, $501)`), run
# the way sqlx runs it, as a named prepared statement, from an empty table on.
# After five executions PostgreSQL may switch to a generic plan; made while
# the table was nearly empty, that plan is a sequential scan, and it is kept
# until the table's statistics change (autovacuum's ANALYZE, about a minute
# in), so every batch until then scans the whole table twice.
#
#   bench/import-plan.sh [ROWS]    (default 50000; needs only PostgreSQL)
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
ROWS=${1:-50000}
DBS=postgres
check_tools
init_work
build_credshift
pg_start
pg_sql postgres "CREATE DATABASE plan"
"$BIN" store migrate --store "$PG_BASE/plan" >/dev/null

params=$(seq -s, -f '$%g' 2 501)
types=$(printf 'text%.0s,' $(seq 1 501)); types=${types%,}
values() { # from: 500 login IDs as literals
    seq -s, -f "'x%07g'" "$1" "$(($1 + 499))"
}
{
    echo "PREPARE sel ($types) AS SELECT id, login_id, base_email FROM accounts WHERE realm = \$1 AND login_id IN ($params);"
    # Six batches of 500 new accounts, each looked up as the import does.
    for b in 0 1 2 3 4 5; do
        from=$((b * 500))
        echo "EXECUTE sel ('wakwak', $(values "$from"));"
        echo "INSERT INTO accounts (realm, login_id, base_email, created_at, updated_at) SELECT 'wakwak', 'x' || lpad(g::text, 7, '0'), 'm@x.jp', 0, 0 FROM generate_series($from, $((from + 499))) g;"
    done
    echo "\\echo '--- after 6 batches (3,000 rows), the plan it keeps:'"
    echo "EXPLAIN EXECUTE sel ('wakwak', $(values 0));"
    echo "INSERT INTO accounts (realm, login_id, base_email, created_at, updated_at) SELECT 'wakwak', 'x' || lpad(g::text, 7, '0'), 'm@x.jp', 0, 0 FROM generate_series(3000, $ROWS - 1) g;"
    echo "\\echo '--- with $ROWS rows, still the same plan:'"
    echo "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) EXECUTE sel ('wakwak', $(values 40000));"
    echo "\\echo '--- the same query, planned for its parameters (an unnamed statement, or plan_cache_mode = force_custom_plan):'"
    echo "SET plan_cache_mode = force_custom_plan;"
    echo "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) EXECUTE sel ('wakwak', $(values 40000));"
} >"$WORK/plan.sql"
psql -X -q -v ON_ERROR_STOP=1 -d "$PG_BASE/plan" -f "$WORK/plan.sql" | grep -v '^ *Index Cond\|^ *Filter' | grep -v 'x00' || true
