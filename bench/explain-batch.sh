#!/usr/bin/env bash
# One backfill batch on PostgreSQL, statement by statement: EXPLAIN (ANALYZE,
# BUFFERS, WAL) of each statement `copy_range` runs (src/store/cutovers.rs),
# for the batch of 1000 accounts in the middle of the realm, in a transaction
# that is rolled back, on the same data as bench/cutover.sh. This is how the
# plans behind BENCHMARKS.md's cutover figures were read; run it when a batch
# gets slower. Then what the batch's insert pays for never overwriting a
# target: credshift's hashed NOT IN over the batch's range, the ON CONFLICT
# DO NOTHING it falls back to when a member's write commits inside the
# batch, a NOT EXISTS probe per row, and the same insert with no guard
# (what the baseline's INSERT … SELECT does): each on its own batch of 1000
# accounts, in its own transaction, the four alternating, 8 rounds, medians.
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
insert() { # [range] [variant] [lo] [hi]: the one statement for every target
    local where=${1:-${range//\$last/:last}} extra="" tail=""
    local lo=${3:-$lo} hi=${4:-:last}
    case ${2:-notin} in
        conflict) tail="ON CONFLICT (account_id, name) DO NOTHING" ;;
        plain) ;;
        notin)
            extra="AND (s.account_id, t.name) NOT IN (SELECT x.account_id, x.name FROM credentials x WHERE x.account_id > $lo AND x.account_id <= $hi)" ;;
        notexists)
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

# The same insert four ways, each on batches it alone writes (from the
# first account on), so that none finds another's rows.
mapfile -t bounds < <(pg_sql bench_base "SELECT id FROM accounts ORDER BY id" | awk 'NR % 1000 == 1')
{
    k=0
    for round in 1 2 3 4 5 6 7 8; do
        for variant in notin conflict plain notexists; do
            b=${bounds[$k]} e=${bounds[$((k + 1))]}
            echo "BEGIN;"
            echo "\\echo $variant"
            echo "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) $(insert "s.account_id > $b AND s.account_id <= $e AND a.id > $b AND a.id <= $e" "$variant" "$b" "$e");"
            echo "ROLLBACK;"
            k=$((k + 1))
        done
    done
} >"$WORK/variants.sql"
echo "--- 3. the insert of one batch (2000 rows), ms: median of 8 (each on its own batch)"
psql -X -q -d "$PG_BASE/bench_base" -f "$WORK/variants.sql" | "$PY" -c '
import re, statistics, sys
times, variant = {}, None
for line in sys.stdin:
    line = line.strip()
    if line in ("notin", "conflict", "plain", "notexists"):
        variant = line
    m = re.match(r"Execution Time: ([0-9.]+) ms", line)
    if m and variant:
        times.setdefault(variant, []).append(float(m.group(1)))
names = {"notin": "hashed NOT IN over the range (credshift)",
         "conflict": "ON CONFLICT DO NOTHING (its fallback)", "plain": "plain INSERT (the baseline)",
         "notexists": "NOT EXISTS probe per row"}
base = statistics.median(times["plain"])
for v in ("notin", "conflict", "plain", "notexists"):
    med = statistics.median(times[v])
    print(f"{names[v]:<42} {med:7.2f} ms  x{med / base:.2f}")
'
