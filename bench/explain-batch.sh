#!/usr/bin/env bash
# One backfill batch on PostgreSQL, statement by statement: EXPLAIN (ANALYZE,
# BUFFERS, WAL) of each statement `copy_range` runs (src/store/cutovers.rs),
# for the batch of 1000 accounts in the middle of the realm, in a transaction
# that is rolled back, on the same data as bench/cutover.sh. This is how the
# plans behind BENCHMARKS.md's cutover figures were read; run it when a batch
# gets slower. Then what the batch's insert pays for never overwriting a
# target (ON CONFLICT DO NOTHING), against the same insert without it (what
# the baseline's INSERT … SELECT does) and with NOT EXISTS instead: each on
# its own batch of 1000 accounts, the three alternating, 8 rounds, medians.
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
insert() { # [range] [variant]: the one statement for every target
    local where=${1:-${range//\$last/:last}} extra="" tail="ON CONFLICT (account_id, name) DO NOTHING"
    case ${2:-conflict} in
        plain) tail="" ;;
        notexists) tail=""
            extra="AND NOT EXISTS (SELECT 1 FROM credentials x WHERE x.account_id = s.account_id AND x.name = t.name)" ;;
    esac
    echo "INSERT INTO credentials (account_id, name, hash, set_at, set_via, must_change, version) \
SELECT s.account_id, t.name, s.hash, s.set_at, 'cutover:x', s.must_change, 1 \
FROM credentials s JOIN accounts a ON a.id = s.account_id \
CROSS JOIN (SELECT 'support' AS name UNION ALL SELECT 'connection') AS t \
WHERE a.realm = '$REALM' AND s.name = 'login' AND $where $extra $tail"
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

# The same insert three ways, each on batches it alone writes (from the
# first account on), so that none finds another's rows.
mapfile -t bounds < <(pg_sql bench_base "SELECT id FROM accounts ORDER BY id" | awk 'NR % 1000 == 1')
{
    echo "BEGIN;"
    k=0
    for round in 1 2 3 4 5 6 7 8; do
        for variant in conflict plain notexists; do
            echo "\\echo $variant"
            echo "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) $(insert "s.account_id > ${bounds[$k]} AND s.account_id <= ${bounds[$((k + 1))]} AND a.id > ${bounds[$k]} AND a.id <= ${bounds[$((k + 1))]}" "$variant");"
            k=$((k + 1))
        done
    done
    echo "ROLLBACK;"
} >"$WORK/variants.sql"
echo "--- 3. the insert of one batch (2000 rows), ms: median of 8 (each on its own batch)"
psql -X -q -d "$PG_BASE/bench_base" -f "$WORK/variants.sql" | "$PY" -c '
import re, statistics, sys
times, variant = {}, None
for line in sys.stdin:
    line = line.strip()
    if line in ("conflict", "plain", "notexists"):
        variant = line
    m = re.match(r"Execution Time: ([0-9.]+) ms", line)
    if m and variant:
        times.setdefault(variant, []).append(float(m.group(1)))
names = {"conflict": "ON CONFLICT DO NOTHING (credshift)", "plain": "plain INSERT (the baseline)",
         "notexists": "NOT EXISTS instead"}
base = statistics.median(times["plain"])
for v in ("conflict", "plain", "notexists"):
    med = statistics.median(times[v])
    print(f"{names[v]:<38} {med:7.2f} ms  x{med / base:.2f}")
'
