#!/usr/bin/env bash
# Benchmark: credshift's online cutover of N accounts (default 1,000,000)
# against the baseline of one hand-written INSERT … SELECT per target
# credential, on SQLite and on PostgreSQL, on fresh copies of the same data in
# the same run. Prints the machine, per-run figures, the medians, the ratio
# credshift/baseline and whether each target is met:
#   ratio ≤ 0.8 on SQLite, ≤ 1.10 on PostgreSQL at 1,000,000 accounts (≤ 1.25 below),
#   peak RSS of credshift ≤ 64 MiB, p99 batch transaction ≤ 100 ms.
#
#   bench/cutover.sh [--quick] [--runs N] [--db sqlite|postgres|both] [--perf] ...
#
# What is timed: `credshift apply -f DIR --store URL` with the example policy
# and cutover (examples/2018-split, batchSize 1000), the whole process; and
# the baseline's two statements (sqlite3 / psql, each its own transaction).
# What is not: generating hashes and members, importing them, copying the
# database for each run, checking the result.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
    echo "usage: bench/cutover.sh [options]"
    usage_common
    echo "  --perf           after the measured runs, one extra credshift run per database"
    echo "                   under 'perf record -a -g' (not counted); its report is printed"
}
parse_common "$@"
check_tools
init_work
build_credshift
prepare_members
# The first generated member and its login password, to check a copied hash verifies.
read -r FIRST_LOGIN FIRST_PW < <("$PY" - "$WORK/members.csv" "$WORK/hashes.tsv" <<'EOF'
import csv, sys
row = next(r for i, r in enumerate(csv.reader(open(sys.argv[1]))) if i == 1)
pw = {h: p for p, h in (l.rstrip("\n").split("\t", 1) for l in open(sys.argv[2]))}
print(row[0], pw[row[2]])
EOF
)

setup_manifests

run_baseline() { # db run
    local db=$1 run=$2 where prefix
    where=$(fresh_copy "$db" "b_${db}_$run")
    prefix="$WORK/baseline-$db-$run"
    sync
    [ "$db" = postgres ] && pg_wal_reset
    case $db in
        sqlite)
            # The same settings credshift's connections use.
            timed "$prefix" sqlite3 "$where" "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                $BASELINE_SQL_SUPPORT; $BASELINE_SQL_CONNECTION;"
            ;;
        postgres)
            timed "$prefix" psql -X -q -v ON_ERROR_STOP=1 -d "$PG_BASE/$where" \
                -c "$BASELINE_SQL_SUPPORT" -c "$BASELINE_SQL_CONNECTION"
            ;;
    esac
    [ "$db" = postgres ] && { pg_wal_read; T_WRITE_MIB=$PG_WAL_MIB; }
    local c; c=$(counts "$db" "$where")
    [ "$c" = "$N $N $N" ] || { echo "baseline $db run $run: counts $c, expected $N $N $N" >&2; exit 2; }
    record db="$db" run="$run" kind=baseline accounts="$N" wall="$T_WALL" rss_kib="$T_RSS_KIB" \
        written_mib="$T_WRITE_MIB"
    log "$db run $run: baseline ${T_WALL}s"
    drop_copy "$db" "$where"
}

run_credshift() { # db run order
    local db=$1 run=$2 order=$3 where prefix url
    where=$(fresh_copy "$db" "c_${db}_$run")
    url=$(url_of "$db" "$where")
    prefix="$WORK/credshift-$db-$run"
    sync
    [ "$db" = postgres ] && pg_wal_reset
    timed "$prefix" "$BIN" apply -f "$WORK/manifests" --store "$url" \
        --log credshift=debug --log-format json
    [ "$db" = postgres ] && { pg_wal_read; T_WRITE_MIB=$PG_WAL_MIB; }
    local c; c=$(counts "$db" "$where")
    [ "$c" = "$N $N $N" ] || { echo "credshift $db run $run: counts $c, expected $N $N $N" >&2; exit 2; }
    grep -q 'Completed' "$prefix.out" || { echo "credshift $db run $run: not Completed" >&2; cat "$prefix.out" >&2; exit 2; }
    if [ "$run" = 1 ]; then
        # The copied hash is the real argon2id hash: the old password verifies
        # against the new credential.
        local v
        v=$(printf '%s\n' "$FIRST_PW" | "$BIN" accounts verify --store "$url" --realm "$REALM" \
            --credential support "$FIRST_LOGIN")
        [ "$v" = match ] || { echo "verify after the cutover: $v" >&2; exit 2; }
    fi
    local words
    words=$("$PY" "$BENCH_DIR/report.py" batches "$prefix.err")
    # shellcheck disable=SC2086
    record db="$db" run="$run" kind=credshift order="$order" accounts="$N" wall="$T_WALL" \
        rss_kib="$T_RSS_KIB" written_mib="$T_WRITE_MIB" $words
    log "$db run $run: credshift ${T_WALL}s, peak RSS $((T_RSS_KIB / 1024)) MiB, $words"
    drop_copy "$db" "$where"
}

profile_credshift() { # db
    local db=$1 where url out
    command -v perf >/dev/null || { log "perf not installed; no profile"; return; }
    where=$(fresh_copy "$db" "p_${db}")
    url=$(url_of "$db" "$where")
    out="$WORK/perf-$db"
    sync
    log "$db: profiling one extra credshift run with perf record -a -g (not counted)"
    perf record -q -a -g -o "$out.data" -- "$BIN" apply -f "$WORK/manifests" --store "$url" \
        >"$out.apply.out" 2>"$out.apply.err"
    perf report -q -i "$out.data" --stdio --no-children --sort comm,dso,symbol --percent-limit 1.5 \
        2>/dev/null | grep -v '^$' | grep -E '^ +[0-9]' | head -40 >"$out.txt" || true
    perf report -q -i "$out.data" --stdio --no-children --sort comm --percent-limit 0.5 \
        2>/dev/null | grep -E '^ +[0-9]' | head -10 >"$out.comm.txt" || true
    rm -f "$out.data"
    drop_copy "$db" "$where"
}

for db in $DBS; do load_base "$db"; done

for run in $(seq 1 "$RUNS"); do
    for db in $DBS; do
        # Alternate which goes first, so neither always meets a warmer cache.
        if [ $((run % 2)) = 1 ]; then
            run_baseline "$db" "$run"
            run_credshift "$db" "$run" second
        else
            run_credshift "$db" "$run" first
            run_baseline "$db" "$run"
        fi
    done
done

if [ "$PERF" = 1 ]; then
    for db in $DBS; do profile_credshift "$db"; done
fi

echo "# credshift cutover benchmark: $N accounts, $RUNS runs$([ "$QUICK" = 1 ] && echo ' (quick)')"
echo
cat "$WORK/machine.txt"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## Setup (not timed as part of the cutover)"
cat "$WORK/loads.txt"
echo "each member: login + mail credentials, real argon2id PHC strings (m=19456,t=2,p=1);"
echo "PostgreSQL with its default settings (fsync, synchronous_commit on; shared_buffers 128MB)"
echo "${BENCH_PG_OPTS:+plus: $BENCH_PG_OPTS}"
echo
"$PY" "$BENCH_DIR/report.py" cutover "$WORK/results.jsonl"
if [ "$PERF" = 1 ]; then
    for db in $DBS; do
        if [ -s "$WORK/perf-$db.txt" ]; then
            echo
            echo "## perf, $db: share of all CPU samples (system-wide) by process"
            cat "$WORK/perf-$db.comm.txt"
            echo "## perf, $db: by process, library, symbol (≥ 1.5 %)"
            cat "$WORK/perf-$db.txt"
        fi
    done
fi
