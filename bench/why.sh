#!/usr/bin/env bash
# What bounds the cutover: replays credshift's backfill SQL (bench/replay.py:
# the statements of src/store/cutovers.rs, one transaction per 1000 accounts)
# straight through sqlite3 / psql, once in login-ID order (what credshift does)
# and once bounded by account id, each on a fresh copy of the same data, next
# to credshift itself and the one-statement-per-target baseline.
#
#   bench/why.sh [--quick] [--runs N] [--db sqlite|postgres|both] [--order scattered|sorted] ...
#
# Reading it: credshift ≈ replay(login) means the time is the database's, not
# credshift's; replay(id) ≪ replay(login) means the batch order is what costs.
# "written MiB": for SQLite what the process wrote to storage (WAL and
# checkpoints); for PostgreSQL the WAL the server wrote (pg_stat_wal).
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
    echo "usage: bench/why.sh [options]"
    usage_common
}
parse_common "$@"
check_tools
init_work
build_credshift
case " $DBS " in *" postgres "*) pg_start ;; esac
machine_description >"$WORK/machine.txt"
N=$ACCOUNTS
make_hashes 8
gen_members "$N" "$WORK/members.csv"
setup_manifests
for db in $DBS; do load_base "$db"; done

for db in $DBS; do
    for order in login id; do
        "$PY" "$BENCH_DIR/replay.py" --members "$WORK/members.csv" --order "$order" \
            --dialect "$db" >"$WORK/replay-$db-$order.sql"
    done
done

one() { # db run kind
    local db=$1 run=$2 kind=$3 where url prefix="$WORK/why-$1-$3-$2"
    where=$(fresh_copy "$db" "w_${db}_${kind//-/_}_$run")
    url=$(url_of "$db" "$where")
    sync
    [ "$db" = postgres ] && pg_wal_reset
    case "$db/$kind" in
        sqlite/baseline)
            timed "$prefix" sqlite3 "$where" "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                $BASELINE_SQL_SUPPORT; $BASELINE_SQL_CONNECTION;" ;;
        postgres/baseline)
            timed "$prefix" psql -X -q -v ON_ERROR_STOP=1 -d "$url" \
                -c "$BASELINE_SQL_SUPPORT" -c "$BASELINE_SQL_CONNECTION" ;;
        sqlite/replay-*)
            timed "$prefix" sqlite3 -bail -cmd "PRAGMA synchronous = FULL" -cmd "PRAGMA foreign_keys = ON" \
                "$where" ".read $WORK/replay-$db-${kind#replay-}.sql" ;;
        postgres/replay-*)
            timed "$prefix" psql -X -q -v ON_ERROR_STOP=1 -d "$url" -f "$WORK/replay-$db-${kind#replay-}.sql" ;;
        */credshift)
            timed "$prefix" "$BIN" apply -f "$WORK/manifests" --store "$url" ;;
    esac
    local c; c=$(counts "$db" "$where")
    [ "$c" = "$N $N $N" ] || { echo "$kind $db run $run: counts $c, expected $N $N $N" >&2; exit 2; }
    if [ "$db" = postgres ]; then
        pg_wal_read
        T_WRITE_MIB=$PG_WAL_MIB
    fi
    record db="$db" run="$run" kind="$kind" accounts="$N" wall="$T_WALL" written_mib="$T_WRITE_MIB"
    log "$db run $run: $kind ${T_WALL}s, wrote ${T_WRITE_MIB} MiB${PG_WAL_FPI:+ ($PG_WAL_FPI full-page images)}"
    PG_WAL_FPI=""
    drop_copy "$db" "$where"
}

for run in $(seq 1 "$RUNS"); do
    for db in $DBS; do
        for kind in baseline replay-login replay-id credshift; do one "$db" "$run" "$kind"; done
    done
done

echo "# what bounds the cutover: $N accounts, $RUNS runs, member order $ORDER"
echo
cat "$WORK/machine.txt"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$PY" - "$WORK/results.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
kinds = ["baseline", "replay-login", "replay-id", "credshift"]
print(f"{'db':<9} {'kind':<13} {'runs':>4} {'median s':>9} {'× baseline':>10} {'written MiB':>11}")
print("(written: SQLite = bytes the process wrote to storage; PostgreSQL = WAL bytes, pg_stat_wal)")
for db in ("sqlite", "postgres"):
    rs = [r for r in rows if r["db"] == db]
    if not rs:
        continue
    base = statistics.median(r["wall"] for r in rs if r["kind"] == "baseline")
    for k in kinds:
        ks = [r for r in rs if r["kind"] == k]
        w = statistics.median(r["wall"] for r in ks)
        mib = statistics.median(r["written_mib"] for r in ks)
        print(f"{db:<9} {k:<13} {len(ks):>4} {w:>9.2f} {w / base:>10.2f} {mib:>11.1f}")
EOF
