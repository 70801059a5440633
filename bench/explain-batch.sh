#!/usr/bin/env bash
# One backfill batch on PostgreSQL, statement by statement: EXPLAIN (ANALYZE,
# BUFFERS, WAL) of each statement `copy_range` runs (src/store/cutovers.rs),
# for the batch of 1000 accounts in the middle of the realm, in a transaction
# that is rolled back, on the same data as bench/cutover.sh. This is how the
# plans behind BENCHMARKS.md's cutover figures were read; run it when a batch
# gets slower.
#
#   bench/explain-batch.sh [--quick | --accounts N] [--order scattered|sorted]
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
usage() { echo "usage: bench/explain-batch.sh [options]"; usage_common; }
parse_common "$@"
DBS=postgres
check_tools
init_work
build_credshift
pg_start
N=$ACCOUNTS
make_hashes 8
gen_members "$N" "$WORK/members.csv"
load_base postgres
pg_sql postgres "ALTER DATABASE bench_base ALLOW_CONNECTIONS true"

lo=$(pg_sql bench_base "SELECT id FROM accounts ORDER BY id OFFSET $((N / 2)) LIMIT 1")
range="s.account_id > $lo AND s.account_id <= \$last AND a.id > $lo AND a.id <= \$last"
insert() { # the one statement for every target
    echo "INSERT INTO credentials (account_id, name, hash, set_at, set_via, must_change, version) \
SELECT s.account_id, t.name, s.hash, s.set_at, 'cutover:x', s.must_change, 1 \
FROM credentials s JOIN accounts a ON a.id = s.account_id \
CROSS JOIN (SELECT 'support' AS name UNION ALL SELECT 'connection') AS t \
WHERE a.realm = '$REALM' AND s.name = 'login' AND ${range//\$last/:last} \
ON CONFLICT (account_id, name) DO NOTHING"
}
echo "# one backfill batch of 1000 accounts after account id $lo, of $N"
psql -X -q -v ON_ERROR_STOP=1 -d "$PG_BASE/bench_base" <<SQL | grep -E '^(#|---|[A-Z]|.*(Planning|Execution) Time|.*Buffers:|.*WAL:|.*-> )' \
    | sed 's/  */ /g' | cut -c1-150
BEGIN;
\\echo '--- 1. the batch bound'
EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF) SELECT MAX(account_id), COUNT(*) FROM (SELECT s.account_id
  FROM credentials s JOIN accounts a ON a.id = s.account_id
  WHERE s.name = 'login' AND a.realm = '$REALM' AND s.account_id > $lo AND a.id > $lo
  ORDER BY s.account_id LIMIT 1000) AS batch;
SELECT MAX(account_id) AS last FROM (SELECT s.account_id FROM credentials s JOIN accounts a ON a.id = s.account_id
  WHERE s.name = 'login' AND a.realm = '$REALM' AND s.account_id > $lo AND a.id > $lo
  ORDER BY s.account_id LIMIT 1000) AS batch \\gset
\\echo '--- 2. insert support and connection'
EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF) $(insert);
ROLLBACK;
SQL
