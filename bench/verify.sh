#!/usr/bin/env bash
# Benchmark: member verifies through the HTTP API (`credshift serve`, POST
# /v1/verify, the default argon2id parameters m=19456,t=2,p=1) against the raw
# argon2 verify rate of the same cores (examples/argon2_rate.rs: one thread per
# core, the same PHC strings, nothing else), side by side in each run; then
# the API again while `credshift apply` runs a cutover of the same store.
# Target: API ≥ 95 % of raw; during the cutover, no failed verify. Where the
# machine's CPU went in the API windows, and the CPU of one hash in the
# server against raw, are read from /proc as bench/overload.sh does (the
# same harness, bench/lib.sh).
#
#   bench/verify.sh [--quick] [--runs N] [--db postgres|sqlite|both]
#                   [--seconds S] [--concurrency C] [--bin PATH] ...
#
# Timed: verifies answered "ok" within windows of S seconds (default 4, after
# a 1 s warm-up) from C (default 4 per core) keep-alive connections of wrk
# running bench/verify_load.lua on the same cores, each window next to a raw
# window of the same length (R = 10 pairs per figure, in the order raw-API,
# API-raw, raw-API, ... so that a drift of the machine favours neither; the
# figure is the median ratio of the pairs). Not timed: making the hashes and
# members, loading the store, starting the server.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

SECONDS_PER_WINDOW=4
ROUNDS=10
CONCURRENCY=$((4 * $(nproc)))
RAW_BIN=""
rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_PER_WINDOW=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --raw-bin) RAW_BIN=$2; shift ;;
        *) rest+=("$1") ;;
    esac
    shift
done
usage() {
    echo "usage: bench/verify.sh [options]"
    usage_common
    echo "  --seconds S      length of each measured window (default 4)"
    echo "  --rounds R       raw/API window pairs per figure (default 10)"
    echo "  --concurrency C  load connections (default 4 per core)"
    echo "  --raw-bin PATH   the argon2_rate example binary (default: built next to credshift)"
}
DBS=postgres
parse_common "${rest[@]+"${rest[@]}"}"
check_tools
command -v curl >/dev/null || { echo "curl needed: apt-get install -y curl" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk needed: apt-get install -y wrk" >&2; exit 2; }
init_work
build_credshift
[ -n "$RAW_BIN" ] || RAW_BIN=$(release_example argon2_rate)
prepare_members
sample_members 20000
api_tokens
manifests "$WORK/steady" "2099-01-01T00:00:00Z"
trap '[ -n "${APPLY_PID:-}" ] && kill "$APPLY_PID" 2>/dev/null; stop_serve; cleanup' EXIT

load() { # tag db -> JSON line in $WORK/load-TAG.json (after a 1 s warm-up); CPU into $WORK/cpu-TAG-prefix
    local script=(-s "$BENCH_DIR/verify_load.lua" "http://127.0.0.1:$PORT/" --
        "$WORK/token" "$WORK/sample.tsv" "$REALM" support-portal)
    wrk -t1 -c"$CONCURRENCY" -d1s "${script[@]}" >/dev/null
    measured "${1%-*}" "$2" wrk -t1 -c"$CONCURRENCY" -d"${SECONDS_PER_WINDOW}s" "${script[@]}" \
        >"$WORK/load-$1.out"
    tail -1 "$WORK/load-$1.out" >"$WORK/load-$1.json"
}

checkpoint_rows() { # db where
    case "$1" in
        sqlite) sqlite3 "$2" "SELECT COUNT(*) FROM cutover_checkpoints" 2>/dev/null || echo 0 ;;
        postgres) pg_sql "$2" "SELECT COUNT(*) FROM cutover_checkpoints" ;;
    esac
}

for db in $DBS; do load_base "$db"; done

# pairs TAG: ROUNDS pairs of S seconds of raw argon2 and S seconds of the API
# (serve already up), raw first in odd rounds and second in even ones, so
# both see the same machine; appends "raw api ok other p50 p99" lines to
# $WORK/pairs-TAG. The CPU this machine gives varies by minutes (other
# work), so only adjacent windows compare.
pairs() { # tag db
    local tag=$1 db=$2 r raw
    for r in $(seq 1 "$ROUNDS"); do
        if [ $((r % 2)) = 1 ]; then
            raw=$(raw)
            load "$tag-$r" "$db"
        else
            load "$tag-$r" "$db"
            raw=$(raw)
        fi
        local j="$WORK/load-$tag-$r.json"
        echo "$raw $(field "$j" rate) $(field "$j" ok) $(( $(field "$j" other) + $(field "$j" errors) )) \
$(field "$j" p50_ms) $(field "$j" p99_ms)" >>"$WORK/pairs-$tag"
        if [ -n "${APPLY_PID:-}" ] && ! kill -0 "$APPLY_PID" 2>/dev/null; then
            log "$tag: the cutover ended after $r of $ROUNDS rounds"
            break
        fi
    done
}

# summary TAG -> "ratio raw api failed p50 p99": medians over the rounds.
summary() {
    "$PY" - "$WORK/pairs-$1" <<'PY'
import statistics as st, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
m = lambda i: st.median(r[i] for r in rows)
print(f"{st.median(r[1] / r[0] for r in rows):.3f} {m(0):.1f} {m(1):.1f} "
      f"{int(sum(r[3] for r in rows))} {m(4):.1f} {m(5):.1f} {len(rows)}")
PY
}

for run in $(seq 1 "$RUNS"); do
    for db in $DBS; do
        # No cutover running (the example's cutover is scheduled for 2099).
        where=$(fresh_copy "$db" "v_${db}_$run")
        start_serve "$(url_of "$db" "$where")" "$WORK/steady" "steady-$db-$run"
        APPLY_PID=""
        pairs "steady-$db-$run" "$db"
        read -r cpu_hash cpu_server cpu_load cpu_db cpu_rest cpu_idle < <(cpu_shares "steady-$db-$run")
        read -r hash_share api_ms raw_ms < <(server_split)
        stop_serve
        drop_copy "$db" "$where"
        read -r ratio raw api failed p50 p99 rounds < <(summary "steady-$db-$run")
        log "$db run $run: API/raw $ratio (raw $raw/s, API $api/s over $rounds rounds)"

        # The same while `credshift apply` backfills the same store: both the
        # raw windows and the API windows share the cores with the backfill.
        where=$(fresh_copy "$db" "w_${db}_$run")
        url=$(url_of "$db" "$where")
        manifests "$WORK/live-$run" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        start_serve "$url" "$WORK/live-$run" "cutover-$db-$run"
        ( "$BIN" apply -f "$WORK/live-$run" --store "$url" >"$WORK/apply-$db-$run.out" 2>&1
          echo $? >"$WORK/apply-$db-$run.rc" ) &
        APPLY_PID=$!
        until [ "$(checkpoint_rows "$db" "$where")" -ge 1 ]; do
            kill -0 "$APPLY_PID" 2>/dev/null || break
            sleep 0.05
        done
        pairs "cutover-$db-$run" "$db"
        : >"$WORK/raw-cpu"
        wait "$APPLY_PID"
        APPLY_PID=""
        [ "$(cat "$WORK/apply-$db-$run.rc")" = 0 ] \
            || { echo "apply failed:" >&2; cat "$WORK/apply-$db-$run.out" >&2; exit 2; }
        c=$(counts "$db" "$where")
        [ "$c" = "$N $N $N" ] || { echo "$db run $run: after the cutover counts $c, expected $N $N $N" >&2; exit 2; }
        stop_serve
        drop_copy "$db" "$where"
        read -r cratio craw capi cfailed _ cp99 crounds < <(summary "cutover-$db-$run")
        log "$db run $run: during the cutover API/raw $cratio (raw $craw/s, API $capi/s over $crounds rounds)"
        record db="$db" run="$run" raw="$raw" api="$api" ratio="$ratio" cut_raw="$craw" cut="$capi" \
            cut_ratio="$cratio" cut_rounds="$crounds" failed=$((failed + cfailed)) \
            p50_ms="$p50" p99_ms="$p99" cut_p99_ms="$cp99" \
            hash_share="$hash_share" api_hash_ms="$api_ms" raw_hash_ms="$raw_ms" \
            cpu_hash="$cpu_hash" cpu_server="$cpu_server" cpu_load="$cpu_load" \
            cpu_db="$cpu_db" cpu_rest="$cpu_rest" cpu_idle="$cpu_idle"
    done
done

echo "# credshift verify benchmark: $N members, $RUNS runs of $ROUNDS window pairs of ${SECONDS_PER_WINDOW}s, $CONCURRENCY connections$([ "$QUICK" = 1 ] && echo ' (quick)')"
echo
cat "$WORK/machine.txt"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## Setup (not timed)"
cat "$WORK/loads.txt"
echo "members: login + mail, real argon2id PHC strings (m=19456,t=2,p=1, credshift's default);"
echo "the load verifies the support-portal purpose (routed to login before the cutover, dual read"
echo "during it) for 20,000 random members with their right passwords."
echo
"$PY" "$BENCH_DIR/report.py" verify "$WORK/results.jsonl"
