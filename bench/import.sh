#!/usr/bin/env bash
# Benchmark: `credshift accounts import --realm wakwak FILE` of N generated
# members (default 1,000,000; login + mail credentials, real argon2id PHC
# strings) into an empty store, on SQLite and on PostgreSQL, against the
# baseline of the database's own bulk load of the same file into the same
# empty schema (sqlite3 .import / psql COPY into a staging table, INSERT …
# SELECT, ANALYZE: one transaction, no validation, no per-row outcome, no
# audit), side by side in each run. Prints the machine, per-run figures and
# the medians: rows per second, the ratio and peak RSS.
#
#   bench/import.sh [--quick] [--runs N] [--db sqlite|postgres|both] [--exclusive] ...
#
# --exclusive times `accounts import --exclusive` (a first load nothing else
# writes to: on SQLite no pause between batches for other writers).
#
# Timed: the whole import process (connect, migrate the empty store, parse,
# insert in batches of 500, ANALYZE at the end). Not timed: making the file.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

EXCLUSIVE=()
rest=()
for arg in "$@"; do
    case "$arg" in
        --exclusive) EXCLUSIVE=(--exclusive) ;;
        *) rest+=("$arg") ;;
    esac
done
usage() {
    echo "usage: bench/import.sh [options]"
    usage_common
    echo "  --exclusive      time accounts import --exclusive (no pause between batches on SQLite)"
}
parse_common "${rest[@]+"${rest[@]}"}"
check_tools
init_work
build_credshift
prepare_members
FILE_SIZE=$(du -h "$WORK/members.csv" | cut -f1)

baseline() { # db run
    local db=$1 run=$2 where t0 t1
    case $db in
        sqlite) where="$WORK/bulk-$run.db"; "$BIN" store migrate --store "sqlite://$where" >/dev/null ;;
        postgres) where="bulk_$run"; pg_sql postgres "CREATE DATABASE $where"
            "$BIN" store migrate --store "$PG_BASE/$where" >/dev/null ;;
    esac
    sync
    t0=$(date +%s%N)
    bulk_load "$db" "$where"
    t1=$(date +%s%N)
    BASE_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
    local c; c=$(counts "$db" "$where")
    [ "$c" = "0 0 $N" ] || { echo "baseline $db run $run: counts $c, expected 0 0 $N" >&2; exit 2; }
    case $db in
        sqlite) rm -f "$where" "$where-wal" "$where-shm" ;;
        postgres) pg_drop "$where" ;;
    esac
    log "$db run $run: baseline bulk load ${BASE_WALL}s"
}

for run in $(seq 1 "$RUNS"); do
    for db in $DBS; do
        baseline "$db" "$run"
        case $db in
            sqlite) where="$WORK/import-$run.db"; url="sqlite://$where" ;;
            postgres) where="import_$run"; pg_sql postgres "CREATE DATABASE $where"; url="$PG_BASE/$where" ;;
        esac
        prefix="$WORK/import-$db-$run"
        sync
        timed "$prefix" "$BIN" accounts import --store "$url" --realm wakwak "${EXCLUSIVE[@]}" "$WORK/members.csv"
        expected="imported $N, updated 0, unchanged 0, kept as stored 0, failed 0"
        if [ "$(cat "$prefix.out")" != "$expected" ]; then
            echo "$db run $run: unexpected summary: $(cat "$prefix.out")" >&2
            exit 2
        fi
        record db="$db" run="$run" rows="$N" wall="$T_WALL" rss_kib="$T_RSS_KIB" baseline="$BASE_WALL"
        log "$db run $run: ${T_WALL}s, peak RSS $((T_RSS_KIB / 1024)) MiB"
        case $db in
            sqlite) rm -f "$where" "$where-wal" "$where-shm" ;;
            postgres) pg_drop "$where" ;;
        esac
    done
done

echo "# credshift import benchmark: $N rows ($FILE_SIZE CSV), $RUNS runs$([ "$QUICK" = 1 ] && echo ' (quick)')"
echo
cat "$WORK/machine.txt"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "each row: login_id, base_email, login and mail as real argon2id PHC strings"
echo "(m=19456,t=2,p=1); default --batch-size 500${EXCLUSIVE:+, --exclusive}; empty store each run."
echo "PostgreSQL with its default settings (fsync, synchronous_commit on)${BENCH_PG_OPTS:+, plus $BENCH_PG_OPTS}."
echo
"$PY" "$BENCH_DIR/report.py" import "$WORK/results.jsonl"
