#!/usr/bin/env bash
# Benchmark: verify goodput of the API under overload. An open-loop client
# (examples/open_loop.rs: requests at a fixed rate, whatever the answers, over
# keep-alive connections) offers FACTOR (default 3) times the raw argon2 verify rate
# of the same cores (examples/argon2_rate.rs, measured side by side), and the
# API must keep answering "ok" at ≥ 90 % of raw while it sheds the rest with
# 503 + Retry-After at once. Shed and other answers are counted; the server's
# peak RSS, thread count and CPU split (hashing threads against the rest, and
# the CPU of one hash there against the raw reference's) are read from /proc
# at the end of each run.
#
#   bench/overload.sh [--quick] [--runs N] [--db sqlite|postgres|both]
#                     [--seconds S] [--rounds R] [--factor F] [--bin PATH] ...
#
# Timed: answers within windows of S seconds (default 6), each API window
# next to a raw window of the same length (R = 6 pairs per figure,
# alternating which goes first). Not timed: making the hashes and members,
# loading the store, starting the server.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

SECONDS_PER_WINDOW=6
ROUNDS=6
FACTOR=3
ACCOUNTS=20000
DBS=sqlite
rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_PER_WINDOW=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --factor) FACTOR=$2; shift ;;
        *) rest+=("$1") ;;
    esac
    shift
done
usage() {
    echo "usage: bench/overload.sh [options]"
    usage_common
    echo "  --seconds S      length of each measured window (default 6)"
    echo "  --rounds R       raw/API window pairs per figure (default 6)"
    echo "  --factor F       offered load as a multiple of the raw rate (default 3)"
    echo "(--accounts defaults to 20,000 here; --db to sqlite)"
}
parse_common "${rest[@]+"${rest[@]}"}"
check_tools
command -v curl >/dev/null || { echo "curl needed: apt-get install -y curl" >&2; exit 2; }
init_work
build_credshift
RAW_BIN=$(release_example argon2_rate)
LOAD_BIN=$(release_example open_loop)
prepare_members
sample_members 2000
api_tokens
manifests "$WORK/steady" "2099-01-01T00:00:00Z"
trap 'stop_serve; cleanup' EXIT
for db in $DBS; do load_base "$db"; done

offer() { # tag rate db -> JSON line in $WORK/offer-TAG.json; CPU into $WORK/cpu-TAG-prefix
    measured "${1%-*}" "$3" "$LOAD_BIN" "$PORT" "$WORK/token" "$WORK/sample.tsv" "$REALM" \
        support-portal "$2" "$SECONDS_PER_WINDOW" >"$WORK/offer-$1.json"
}

# pairs TAG: ROUNDS pairs of a raw window and an API window offered FACTOR
# times the rate of the raw window next to it (the one before it in odd
# rounds, a fresh one after in even rounds, measured first there too);
# appends "raw offered ok_rate shed_rate other errors p50 p99" lines.
pairs() {
    local tag=$1 db=$2 r raw rate j
    for r in $(seq 1 "$ROUNDS"); do
        raw=$(raw)
        rate=$(awk -v r="$raw" -v f="$FACTOR" 'BEGIN{printf "%.1f", r*f}')
        offer "$tag-$r" "$rate" "$db"
        if [ $((r % 2)) = 0 ]; then
            # The raw figure of this pair is the one after its API window.
            raw=$(raw)
        fi
        j="$WORK/offer-$tag-$r.json"
        echo "$raw $rate $(field "$j" ok_rate) $(field "$j" shed_rate) $(field "$j" other) \
$(field "$j" errors) $(field "$j" p50_ms) $(field "$j" p99_ms)" >>"$WORK/pairs-$tag"
    done
}

# summary TAG -> "ratio raw ok shed other errors p99 rounds": medians (sums for counts).
summary() {
    "$PY" - "$WORK/pairs-$1" <<'PY'
import statistics as st, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
m = lambda i: st.median(r[i] for r in rows)
print(f"{st.median(r[2] / r[0] for r in rows):.3f} {m(0):.1f} {m(2):.1f} {m(3):.1f} "
      f"{int(sum(r[4] for r in rows))} {int(sum(r[5] for r in rows))} {m(7):.1f} {len(rows)}")
PY
}

for run in $(seq 1 "$RUNS"); do
    for db in $DBS; do
        where=$(fresh_copy "$db" "o_${db}_$run")
        start_serve "$(url_of "$db" "$where")" "$WORK/steady" "overload-$db-$run"
        pairs "overload-$db-$run" "$db"
        read -r cpu_hash cpu_server cpu_load cpu_db cpu_rest cpu_idle < <(cpu_shares "overload-$db-$run")
        rss=$(awk '/^VmHWM:/{printf "%.1f", $2/1024}' "/proc/$SERVE_PID/status")
        threads=$(ls "/proc/$SERVE_PID/task" | wc -l)
        shed_total=$(curl -fsS "http://127.0.0.1:$PORT/metrics" | awk '/^credshift_api_hash_shed_total /{print $2}')
        # Where the server's CPU went (it idles in the raw windows), and the
        # CPU of one hash in its hashing threads and in the raw reference.
        read -r hash_share api_ms raw_ms < <(server_split)
        stop_serve
        drop_copy "$db" "$where"
        read -r ratio raw ok shed other errors p99 rounds < <(summary "overload-$db-$run")
        log "$db run $run: goodput/raw $ratio (raw $raw/s, ok $ok/s, shed $shed/s, offered ${FACTOR}x; peak RSS $rss MiB, $threads threads; hashing threads $hash_share of the server's CPU, $api_ms ms per hash against $raw_ms raw; machine CPU: hashing $cpu_hash, server other $cpu_server, load $cpu_load, database $cpu_db, rest $cpu_rest, idle $cpu_idle)"
        record db="$db" run="$run" raw="$raw" ok="$ok" ratio="$ratio" shed="$shed" \
            shed_total="${shed_total:-0}" other="$other" errors="$errors" p99_ms="$p99" \
            rounds="$rounds" rss_mib="$rss" threads="$threads" factor="$FACTOR" \
            hash_share="$hash_share" api_hash_ms="$api_ms" raw_hash_ms="$raw_ms" \
            cpu_hash="$cpu_hash" cpu_server="$cpu_server" cpu_load="$cpu_load" \
            cpu_db="$cpu_db" cpu_rest="$cpu_rest" cpu_idle="$cpu_idle"
    done
done

echo "# credshift overload benchmark: $N members, $RUNS runs of $ROUNDS window pairs of ${SECONDS_PER_WINDOW}s, offered ${FACTOR}x raw$([ "$QUICK" = 1 ] && echo ' (quick)')"
echo
cat "$WORK/machine.txt"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## Setup (not timed)"
cat "$WORK/loads.txt"
echo "members: real argon2id PHC strings (m=19456,t=2,p=1); the load verifies the"
echo "support-portal purpose for 2,000 random members with their right passwords."
echo
"$PY" "$BENCH_DIR/report.py" overload "$WORK/results.jsonl"
