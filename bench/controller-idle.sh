#!/usr/bin/env bash
# Benchmark: `credshift controller` idle with 100 CredentialPolicies and 100
# CredentialCutovers (issue 8: RSS at most 32 MiB), and the time from
# `kubectl apply` of those 200 objects to all of them Ready / at their phase,
# against a real kube-apiserver + etcd (kube-testenv, `make testenv`).
#
#   bench/controller-idle.sh [--runs N] [--accounts N] [--idle S] [--completed K] ...
#
# Each run starts, one after the other (the order rotates from run to run),
# three controllers, each on a fresh API server (CRDs installed, namespace
# `bench`) and a fresh copy of its SQLite store:
#   zero        the store with the members, no objects: the process's own floor
#   objects     the store with the members; 100 policies + 100 cutovers applied
#   emptystore  an empty store (schema only); the same 200 objects applied
# and samples the controller's VmRSS every second over an idle window.
#
# The objects: policy i (i = 0..99) is examples/2018-split/policy.yaml for
# realm `realm-NNN`, cutover i is examples/2018-split/cutover.yaml referencing
# it. The first K cutovers (default 50) keep the example's `at`
# (2018-04-18T00:00:00+09:00): they are due when applied, the controller
# backfills their realm and they end Completed (retainSource 720h keeps the
# source, so they then wait 30 days). The others get an `at` 30 days ahead and
# stay Scheduled (requeued for their instant, never polled). A controller in
# service sees both: history that is done and splits that are planned.
# The members (default 10,000, login + mail, real argon2id PHC strings) are
# spread evenly over the 100 realms and imported with `credshift accounts
# import`, one realm at a time (not timed).
#
# What is timed, from the start of one `kubectl apply -f` of all 200 objects
# (client-side apply, as an operator types it): until that apply returns;
# until every policy is Ready; until every cutover is at its expected phase
# (Completed or Scheduled, named by a label). A watcher per kind
# (controller_idle.py watch: list + watch straight on the API server, opened
# before the apply) timestamps each object when it is first seen and when it
# first meets its condition, so per-object latencies (creation → Ready) come
# out too. Side by side on the same API server, in the same run, with the
# same watchers, no controller behind them (the API server's floors): one
# apply of 200 ConfigMaps holding the same YAML, and one apply of the same
# 200 objects into a namespace the controller does not watch; each until a
# watch has seen every object. Before the controller's apply on odd runs,
# after it on even runs. The controller's /metrics give the reconciles it ran.
#
# What is sampled: /proc/PID/status of the controller (VmRSS, VmHWM, RssAnon,
# RssFile, Threads) every second for --idle seconds (default 90: the window
# holds one of the policies' 60 s status refreshes), starting once every
# object is at its phase (zero: once the controller is ready). Printed: the
# median, max and VmHWM; the 32 MiB target (met/MISSED); the ratio of the
# idle RSS with the 200 objects to the idle RSS with none; where the RSS
# lives (/proc/PID/smaps by kind of mapping) for the last run; with
# --heap-stats, SQLite's and malloc's share (through gdb).
#
# Not timed: making hashes and members, importing them, starting API servers
# and installing the CRDs, copying stores. Every process this script starts
# (API servers, controllers, watchers) is stopped on exit, also on failure.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

ACCOUNTS=10000
IDLE=90
OBJECTS=100
COMPLETED=50
TIMEOUT=600
PHASES_ALL="zero objects emptystore"
PHASES=$PHASES_ALL
CTRL_ENV=()
HEAP_STATS=0
NS=bench
CM_NS=bench-cm
FLOOR_NS=bench-floor
IDENTITY=bench-controller

usage() {
    cat <<EOF
usage: bench/controller-idle.sh [options]
  --runs N         runs (default 3); each starts fresh API servers and controllers
  --accounts N     members in the store, spread over the realms (default 10,000)
  --idle S         seconds of idle sampling per controller (default 90)
  --completed K    cutovers (of 100) due at apply and run to Completed (default 50);
                   the rest are Scheduled 30 days ahead
  --phases LIST    which controllers to run, of: $PHASES_ALL (default all)
  --env K=V        an environment variable for the controller, e.g.
                   MALLOC_ARENA_MAX=2 or TOKIO_WORKER_THREADS=1 (repeatable; for
                   investigating what bounds the RSS)
  --timeout S      give up waiting for Ready after S seconds (default 600)
  --heap-stats     after each idle window, attach gdb to the controller: SQLite's heap,
                   what sqlite3_release_memory() frees, glibc's malloc_stats() and the
                   RSS malloc_trim(0) gives back (investigation; the idle figures are
                   taken before)
  --quick          --accounts 1000 --idle 20 (development)
  --bin PATH       use this credshift binary instead of building
                   (default: cargo build --release --locked)
  --keep           keep the work directory (also BENCH_KEEP=1)
Environment: BENCH_WORK (parent of the work dir, default /tmp), TESTENV_DIR
  (kube-testenv and kubectl; default \$CARGO_TARGET_DIR/testenv, made by \`make testenv\`).
EOF
}

common=()
while [ $# -gt 0 ]; do
    case "$1" in
        --idle) IDLE=$2; shift ;;
        --completed) COMPLETED=$2; shift ;;
        --phases) PHASES=$2; shift ;;
        --env) CTRL_ENV+=("$2"); shift ;;
        --timeout) TIMEOUT=$2; shift ;;
        --heap-stats) HEAP_STATS=1 ;;
        --quick) QUICK=1; ACCOUNTS=1000; IDLE=20 ;;
        --runs|--accounts|--bin) common+=("$1" "$2"); shift ;;
        --keep|-h|--help) common+=("$1") ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
parse_common ${common[@]+"${common[@]}"}
for ph in $PHASES; do
    case " $PHASES_ALL " in *" $ph "*) ;; *) echo "--phases: $ph is not one of $PHASES_ALL" >&2; exit 2 ;; esac
done
for v in IDLE COMPLETED TIMEOUT ACCOUNTS RUNS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "${v,,}: not a number: ${!v}" >&2; exit 2; }
done
[ "$COMPLETED" -le "$OBJECTS" ] || { echo "--completed: at most $OBJECTS" >&2; exit 2; }
[ "$IDLE" -ge 5 ] || { echo "--idle: at least 5 seconds" >&2; exit 2; }
for kv in ${CTRL_ENV[@]+"${CTRL_ENV[@]}"}; do
    [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || { echo "--env: expected K=V, got $kv" >&2; exit 2; }
done

TESTENV_DIR=${TESTENV_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/testenv}
KTE=$TESTENV_DIR/kube-testenv
KUBECTL=$TESTENV_DIR/kubectl
for b in "$KTE" "$KUBECTL"; do
    [ -x "$b" ] || { echo "$b not found: run \`make testenv\` (needs Go)" >&2; exit 2; }
done
if [ "$HEAP_STATS" = 1 ]; then
    command -v gdb >/dev/null || { echo "--heap-stats needs gdb: apt-get install -y gdb" >&2; exit 2; }
fi
command -v curl >/dev/null || { echo "curl needed: apt-get install -y curl" >&2; exit 2; }
command -v sqlite3 >/dev/null || { echo "sqlite3 CLI needed: apt-get install -y sqlite3" >&2; exit 2; }

HELPER=$BENCH_DIR/controller_idle.py

# ---------------------------------------------------------------- processes

API_PID=""
API_FD=""
WATCHES=()
API_DIR=""
KUBECONFIG_PATH=""
CTRL_PID=""
CTRL_PORT=""
CTRL_LOG=""

now_ns() { date +%s%N; }
secs_since() { awk -v a="$1" -v b="${2:-$(now_ns)}" 'BEGIN{printf "%.3f", (b-a)/1e9}'; }

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" --cache-dir "$API_DIR/kube-cache" "$@"; }

# Waits up to $1 seconds for PID $2 to exit; 0 if it did.
wait_exit() {
    local i
    for ((i = 0; i < $1 * 10; i++)); do
        kill -0 "$2" 2>/dev/null || return 0
        sleep 0.1
    done
    ! kill -0 "$2" 2>/dev/null
}

stop_pid() { # pid seconds-before-KILL
    local pid=$1
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_exit "$2" "$pid" || { log "process $pid still alive after SIGTERM; SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }
    fi
    wait "$pid" 2>/dev/null || true
}

# A fresh kube-testenv in DIR (its state under DIR, removed with the work
# dir). It runs with --watch-stdin on a FIFO this shell holds open: it stops
# when the FIFO closes, which happens however this script exits.
start_apiserver() {
    API_DIR=$1
    mkdir -p "$API_DIR/state"
    mkfifo "$API_DIR/stdin"
    "$KTE" --dir "$API_DIR/state" --watch-stdin <"$API_DIR/stdin" >"$API_DIR/stdout" 2>"$API_DIR/stderr" &
    API_PID=$!
    exec {API_FD}>"$API_DIR/stdin"
    local t0 line=""
    t0=$(now_ns)
    while :; do
        line=$(head -1 "$API_DIR/stdout" 2>/dev/null || true)
        case "$line" in READY\ *) break ;; esac
        if ! kill -0 "$API_PID" 2>/dev/null; then
            echo "kube-testenv exited before READY; stderr:" >&2; tail -30 "$API_DIR/stderr" >&2; exit 2
        fi
        if [ "$(secs_since "$t0" | cut -d. -f1)" -ge 180 ]; then
            echo "kube-testenv not READY in 180 s; stderr:" >&2; tail -30 "$API_DIR/stderr" >&2; exit 2
        fi
        sleep 0.1
    done
    KUBECONFIG_PATH=${line#READY }
    log "kube-testenv ready in $(secs_since "$t0")s (pid $API_PID)"
    kc apply -f "$ROOT/crds" >/dev/null
    kc wait --for=condition=Established --timeout=60s \
        crd/credentialpolicies.credshift.dev crd/credentialcutovers.credshift.dev >/dev/null
    # Discovery and OpenAPI publish the new kinds a moment after Established.
    local kind
    for kind in credentialpolicy credentialcutover; do
        t0=$(now_ns)
        until kc explain "$kind" >/dev/null 2>&1; do
            [ "$(secs_since "$t0" | cut -d. -f1)" -lt 60 ] || { echo "$kind not in discovery in 60 s" >&2; exit 2; }
            sleep 0.25
        done
    done
    kc create namespace "$NS" >/dev/null
    kc create namespace "$CM_NS" >/dev/null
    kc create namespace "$FLOOR_NS" >/dev/null
    # Warm kubectl's discovery cache for ConfigMaps as the CR apply's is warm.
    kc get configmaps -n "$CM_NS" >/dev/null 2>&1
    kc config view --raw --minify -o json >"$API_DIR/kubeconfig.json"
}

stop_apiserver() {
    [ -n "$API_PID" ] || return 0
    if [ -n "$API_FD" ]; then exec {API_FD}>&-; API_FD=""; fi
    # EOF on stdin: a graceful stop (about 1 s, cut short after 5 s).
    wait_exit 10 "$API_PID" || stop_pid "$API_PID" 5
    wait "$API_PID" 2>/dev/null || true
    API_PID=""
}

# start_controller STORE_URL LOG: the controller as in a pod (default log
# level warn, default lease and progress settings), watching namespace
# $NS; returns once it holds the lease and /readyz answers 200. Sets
# CTRL_PID, CTRL_PORT, T_START_READY.
start_controller() {
    local url=$1 t0 holder code
    CTRL_LOG=$2
    CTRL_PORT=$(free_port)
    t0=$(now_ns)
    env ${CTRL_ENV[@]+"${CTRL_ENV[@]}"} KUBECONFIG="$KUBECONFIG_PATH" CREDSHIFT_STORE="$url" \
        "$BIN" controller --namespace "$NS" --lease-namespace "$NS" --identity "$IDENTITY" \
        --health-addr "127.0.0.1:$CTRL_PORT" >/dev/null 2>"$CTRL_LOG" &
    CTRL_PID=$!
    while :; do
        kill -0 "$CTRL_PID" 2>/dev/null || { echo "controller exited; log:" >&2; cat "$CTRL_LOG" >&2; exit 2; }
        holder=$(kc get lease credshift-controller -n "$NS" -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null || true)
        [ "$holder" = "$IDENTITY" ] && break
        [ "$(secs_since "$t0" | cut -d. -f1)" -lt 120 ] || { echo "controller not leader in 120 s; log:" >&2; cat "$CTRL_LOG" >&2; exit 2; }
        sleep 0.1
    done
    # As leader, /readyz answers 200 once both watch caches hold their first list.
    while :; do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$CTRL_PORT/readyz" || true)
        [ "$code" = 200 ] && break
        kill -0 "$CTRL_PID" 2>/dev/null || { echo "controller exited; log:" >&2; cat "$CTRL_LOG" >&2; exit 2; }
        [ "$(secs_since "$t0" | cut -d. -f1)" -lt 120 ] || { echo "controller not ready in 120 s; log:" >&2; cat "$CTRL_LOG" >&2; exit 2; }
        sleep 0.05
    done
    T_START_READY=$(secs_since "$t0")
    log "controller pid $CTRL_PID leader and ready in ${T_START_READY}s"
}

# The controller's /metrics (reconciles by kind) into FILE.
scrape() { curl -s "http://127.0.0.1:$CTRL_PORT/metrics" >"$1" || : >"$1"; }

stop_controller() {
    [ -n "$CTRL_PID" ] || return 0
    stop_pid "$CTRL_PID" 10
    CTRL_PID=""
}

bench_cleanup() {
    local rc=$?
    set +e
    local w
    for w in ${WATCHES[@]+"${WATCHES[@]}"}; do kill -TERM "${w%%:*}" 2>/dev/null; done
    stop_controller
    stop_apiserver
    (exit "$rc")
    cleanup
}

# ---------------------------------------------------------------- measuring

# start_watch NAME PATH UNTIL DIR: a watcher (controller_idle.py watch) on
# one collection, straight on the API server; returns once its watch is open.
start_watch() {
    local name=$1 path=$2 until=$3 dir=$4 t0
    "$PY" "$HELPER" watch --kubeconfig-json "$API_DIR/kubeconfig.json" --path "$path" \
        --until "$until" --count "$OBJECTS" --timeout "$TIMEOUT" \
        --ready "$dir/$name.ready" --out "$dir/$name.json" 2>"$dir/$name.err" &
    WATCHES+=("$!:$name")
    t0=$(now_ns)
    until [ -f "$dir/$name.ready" ]; do
        if ! kill -0 "$!" 2>/dev/null; then echo "watcher $name failed:" >&2; cat "$dir/$name.err" >&2; exit 2; fi
        [ "$(secs_since "$t0" | cut -d. -f1)" -lt 60 ] || { echo "watcher $name not open in 60 s" >&2; exit 2; }
        sleep 0.05
    done
}

# end_watches DIR: waits for every watcher; fails with what they said.
end_watches() {
    local w pid name
    for w in "${WATCHES[@]}"; do
        pid=${w%%:*}; name=${w#*:}
        if ! wait "$pid"; then
            echo "watcher $name: $(cat "$1/$name.err")" >&2
            kc get credentialpolicies,credentialcutovers -n "$NS" >&2 || true
            tail -20 "$CTRL_LOG" >&2
            exit 2
        fi
    done
    WATCHES=()
}

# watched DIR NAME T0 -> "median last lat_median lat_max": seconds from T0
# until half of the objects, and all of them, had met the watcher's
# condition; per object, from its creation (as the watch saw it) until it
# met the condition: median and max.
watched() {
    "$PY" -c 'import json, sys
d = json.load(open(sys.argv[1]))
t0 = int(sys.argv[2])
print("%.3f %.3f %.3f %.3f" % ((d["median"] - t0) / 1e9, (d["last"] - t0) / 1e9,
                               d["latency_median"] / 1e9, d["latency_max"] / 1e9))' "$1/$2.json" "$3"
}

# apply_crs NS UNTIL_POLICIES UNTIL_CUTOVERS DIR PREFIX: a watcher on each
# kind in NS (PREFIXpolicies, PREFIXcutovers), then one kubectl apply of the
# 200 objects into NS; returns when both watchers are done. Sets T0 and T1
# (ns) around the apply.
apply_crs() {
    local ns=$1 dir=$4 prefix=$5
    local base="/apis/credshift.dev/v1alpha1/namespaces/$ns"
    WATCHES=()
    start_watch "${prefix}policies" "$base/credentialpolicies" "$2" "$dir"
    start_watch "${prefix}cutovers" "$base/credentialcutovers" "$3" "$dir"
    T0=$(now_ns)
    kc apply -n "$ns" -f "$WORK/objects.yaml" >"$dir/${prefix}apply.out"
    T1=$(now_ns)
    end_watches "$dir"
}

# The API server's floors, with no controller behind them: one apply of 200
# ConfigMaps holding the same YAML (namespace $CM_NS), and one apply of the
# same 200 objects into a namespace the controller does not watch
# ($FLOOR_NS), each until a watch has seen every object. Sets CM_APPLY,
# CM_VISIBLE, CRF_APPLY, CRF_VISIBLE.
floors() { # dir
    local dir=$1 t0 t1
    WATCHES=()
    start_watch configmaps "/api/v1/namespaces/$CM_NS/configmaps" exists "$dir"
    t0=$(now_ns)
    kc apply -n "$CM_NS" -f "$WORK/configmaps.yaml" >"$dir/cm-apply.out"
    t1=$(now_ns)
    end_watches "$dir"
    CM_APPLY=$(secs_since "$t0" "$t1")
    read -r _ CM_VISIBLE _ _ < <(watched "$dir" configmaps "$t0")
    log "$OBJECTS ConfigMaps: apply ${CM_APPLY}s, all seen by a watch ${CM_VISIBLE}s"
    apply_crs "$FLOOR_NS" exists exists "$dir" floor-
    CRF_APPLY=$(secs_since "$T0" "$T1")
    local a b
    read -r _ a _ _ < <(watched "$dir" floor-policies "$T0")
    read -r _ b _ _ < <(watched "$dir" floor-cutovers "$T0")
    CRF_VISIBLE=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", (a > b ? a : b)}')
    log "$((2 * OBJECTS)) objects, no controller: apply ${CRF_APPLY}s, all seen by a watch ${CRF_VISIBLE}s"
}

# apply_objects DIR: one kubectl apply of the 200 objects; watches until
# every policy is Ready and every cutover at the phase its label names. Sets
# T_APPLY, T_POLICIES(_MED), T_CUTOVERS(_MED), T_ALL: seconds from the start
# of the apply (_MED: until half of them were); L_POLICIES_MED/_MAX,
# L_CUTOVERS_MED/_MAX: per object, from its creation to Ready / its phase.
apply_objects() {
    local dir=$1
    apply_crs "$NS" ready phase "$dir" ""
    T_APPLY=$(secs_since "$T0" "$T1")
    read -r T_POLICIES_MED T_POLICIES L_POLICIES_MED L_POLICIES_MAX < <(watched "$dir" policies "$T0")
    read -r T_CUTOVERS_MED T_CUTOVERS L_CUTOVERS_MED L_CUTOVERS_MAX < <(watched "$dir" cutovers "$T0")
    T_ALL=$(awk -v a="$T_POLICIES" -v b="$T_CUTOVERS" 'BEGIN{printf "%.3f", (a > b ? a : b)}')
    log "$((2 * OBJECTS)) objects: apply ${T_APPLY}s; policies Ready ${T_POLICIES}s (half ${T_POLICIES_MED}s); cutovers at phase ${T_CUTOVERS}s (half ${T_CUTOVERS_MED}s); per object: policy ${L_POLICIES_MED}s (max ${L_POLICIES_MAX}s), cutover ${L_CUTOVERS_MED}s (max ${L_CUTOVERS_MAX}s)"
}

# The state the API server shows must be the expected one.
check_objects() { # dir per-realm
    kc get credentialpolicies -n "$NS" -o json >"$1/policies.json"
    kc get credentialcutovers -n "$NS" -o json >"$1/cutovers.json"
    "$PY" "$HELPER" check "$1/policies.json" "$1/cutovers.json" "$2" >&2
}

# heap_stats DIR LOG_LINES: through gdb, in three steps with VmRSS after each:
# SQLite's heap (sqlite3_memory_used) and glibc's malloc_stats(); then
# sqlite3_release_memory (drops the unpinned page cache of every connection);
# then malloc_trim(0) (gives free pages of every arena back) and malloc_stats()
# again. malloc_stats() writes to the controller's stderr (its log): those
# lines are moved out of the log into DIR/heap.txt.
heap_stats() {
    local dir=$1 skip=$2 r0 r1 r2 out
    out="$dir/gdb.out"
    vmrss() { awk '/^VmRSS/{print $2}' "/proc/$CTRL_PID/status"; }
    g() { gdb -p "$CTRL_PID" -batch -nx "$@" -ex detach >>"$out" 2>&1; }
    : >"$out"
    r0=$(vmrss)
    g -ex 'print (long long)sqlite3_memory_used()' -ex 'call (void)malloc_stats()' \
        -ex 'print (long long)sqlite3_memory_used()' || { log "gdb failed: $(tail -3 "$out")"; return 0; }
    g -ex 'print (int)sqlite3_release_memory(1073741824)' -ex 'print (long long)sqlite3_memory_used()'
    sleep 0.5
    r1=$(vmrss)
    g -ex 'call (int)malloc_trim(0)' -ex 'call (void)malloc_stats()'
    sleep 0.5
    r2=$(vmrss)
    local v
    mapfile -t v < <(grep -E '^\$[0-9]+ = ' "$out" | sed 's/^[^=]*= //')
    {
        echo "SQLite heap (sqlite3_memory_used): $((v[0] / 1024)) KiB; sqlite3_release_memory freed $((v[2] / 1024)) KiB, leaving $((v[3] / 1024)) KiB"
        echo "VmRSS: $r0 KiB; after sqlite3_release_memory $r1 KiB; after malloc_trim(0) $r2 KiB (given back in all: $((r0 - r2)) KiB)"
        tail -n +"$((skip + 1))" "$CTRL_LOG" | "$PY" -c '
import re, sys
blocks = re.split(r"^Arena 0:$", sys.stdin.read(), flags=re.M)[1:]
for label, b in zip(("before malloc_trim", "after malloc_trim "), blocks):
    arenas = len(re.findall(r"^Arena \d+:$", b, flags=re.M)) + 1
    tot = b.split("Total (incl. mmap):")[1]
    sysb = int(re.search(r"system bytes\s*=\s*(\d+)", tot).group(1))
    used = int(re.search(r"in use bytes\s*=\s*(\d+)", tot).group(1))
    print(f"malloc_stats {label}: {arenas} arenas; system {sysb // 1024} KiB, in use {used // 1024} KiB, "
          f"free but held {(sysb - used) // 1024} KiB")'
    } >"$dir/heap.txt"
    head -n "$skip" "$CTRL_LOG" >"$CTRL_LOG.own"
    mv "$CTRL_LOG.own" "$CTRL_LOG"
}

run_phase() { # run phase
    local run=$1 phase=$2 dir store members objects=0 per_realm words lines
    dir="$WORK/run$run-$phase"
    mkdir -p "$dir"
    log "run $run: $phase"
    case $phase in
        zero|objects) store="$dir/store.db"; cp "$WORK/members.db" "$store"; members=$ACCOUNTS ;;
        emptystore) store="$dir/store.db"; cp "$WORK/empty.db" "$store"; members=0 ;;
    esac
    per_realm=$((members / OBJECTS))
    start_apiserver "$dir/apiserver"
    start_controller "sqlite://$store" "$dir/controller.log"
    local extra=()
    if [ "$phase" != zero ]; then
        objects=$((2 * OBJECTS))
        if [ $((run % 2)) = 1 ]; then floors "$dir"; fi
        apply_objects "$dir"
        if [ $((run % 2)) = 0 ]; then floors "$dir"; fi
        check_objects "$dir" "$per_realm"
        extra=(t_apply="$T_APPLY" t_policies="$T_POLICIES" t_policies_med="$T_POLICIES_MED"
            t_cutovers="$T_CUTOVERS" t_cutovers_med="$T_CUTOVERS_MED" t_all="$T_ALL"
            l_policies_med="$L_POLICIES_MED" l_policies_max="$L_POLICIES_MAX"
            l_cutovers_med="$L_CUTOVERS_MED" l_cutovers_max="$L_CUTOVERS_MAX"
            cm_apply="$CM_APPLY" cm_visible="$CM_VISIBLE" crf_apply="$CRF_APPLY" crf_visible="$CRF_VISIBLE")
    fi
    scrape "$dir/metrics-ready.txt"
    log "run $run: $phase: sampling RSS for ${IDLE}s"
    "$PY" "$HELPER" sample "$CTRL_PID" "$IDLE" "$dir/samples.jsonl"
    scrape "$dir/metrics-idle.txt"
    "$PY" "$HELPER" smaps "$CTRL_PID" >"$dir/smaps.txt"
    kill -0 "$CTRL_PID" 2>/dev/null || { echo "controller died while idle; log:" >&2; cat "$CTRL_LOG" >&2; exit 2; }
    if [ "$phase" != zero ]; then check_objects "$dir" "$per_realm"; fi
    words="$("$PY" "$HELPER" summary "$dir/samples.jsonl") \
$("$PY" "$HELPER" metrics apply /dev/null "$dir/metrics-ready.txt") \
$("$PY" "$HELPER" metrics idle "$dir/metrics-ready.txt" "$dir/metrics-idle.txt")"
    # At the default level (warn) a controller doing well logs nothing.
    lines=$(wc -l <"$CTRL_LOG")
    if [ "$HEAP_STATS" = 1 ]; then heap_stats "$dir" "$lines"; fi
    stop_controller
    stop_apiserver
    # shellcheck disable=SC2086
    record run="$run" phase="$phase" members="$members" objects="$objects" \
        t_start_ready="$T_START_READY" log_lines="$lines" $words ${extra[@]+"${extra[@]}"}
    log "run $run: $phase: $(echo "$words" | tr -s ' \n' ' ')"
    rm -f "$store" "$store-wal" "$store-shm"
}

# ---------------------------------------------------------------- main

init_work
trap bench_cleanup EXIT
build_credshift
machine_description >"$WORK/machine.txt"

log "making 8 argon2id hashes with credshift accounts set-password"
make_hashes 8
"$BIN" store migrate --store "sqlite://$WORK/empty.db" >/dev/null
cp "$WORK/empty.db" "$WORK/members.db"
if [ "$ACCOUNTS" -gt 0 ]; then
    log "generating $ACCOUNTS members; importing them into $OBJECTS realms with credshift accounts import"
    gen_members "$ACCOUNTS" "$WORK/members.csv"
    "$PY" "$HELPER" split-members --objects "$OBJECTS" "$WORK/members.csv" "$WORK/realms"
    t0=$(now_ns)
    for i in $(seq 0 $((OBJECTS - 1))); do
        realm=$(printf 'realm-%03d' "$i")
        "$BIN" accounts import --store "sqlite://$WORK/members.db" --realm "$realm" \
            "$WORK/realms/$realm.csv" >/dev/null
    done
    log "imported in $(secs_since "$t0")s"
    rm -rf "$WORK/realms" "$WORK/members.csv"
fi
sqlite3 "$WORK/members.db" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
got=$(sqlite3 "$WORK/members.db" "SELECT COUNT(*) || ' ' || COUNT(DISTINCT realm) FROM accounts")
want="$ACCOUNTS $([ "$ACCOUNTS" -gt 0 ] && echo "$OBJECTS" || echo 0)"
[ "$got" = "$want" ] || { echo "member store: accounts/realms $got, expected $want" >&2; exit 2; }
STORE_SIZE=$(du -h "$WORK/members.db" | cut -f1)

FUTURE=$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%S+00:00)
"$PY" "$HELPER" manifests --objects "$OBJECTS" --completed "$COMPLETED" --future "$FUTURE" \
    --policy "$ROOT/examples/2018-split/policy.yaml" --cutover "$ROOT/examples/2018-split/cutover.yaml" \
    --crs "$WORK/objects.yaml" --configmaps "$WORK/configmaps.yaml"

read -ra phase_list <<<"$PHASES"
for run in $(seq 1 "$RUNS"); do
    # Rotate the order, so that no controller always runs first.
    n=${#phase_list[@]}
    for ((k = 0; k < n; k++)); do
        run_phase "$run" "${phase_list[$(((k + run - 1) % n))]}"
    done
done

echo "# credshift controller idle benchmark: $OBJECTS policies + $OBJECTS cutovers, $RUNS run(s)$([ "$QUICK" = 1 ] && echo ' (quick)')"
echo
cat "$WORK/machine.txt"
echo "kube-apiserver: kube-testenv (in-process etcd + kube-apiserver) $(awk '$1 == "k8s.io/kubernetes" {print $2}' "$ROOT/tests/testenv/go.mod"); kubectl $("$KUBECTL" version --client -o json 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])' 2>/dev/null || echo '?')"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## Setup"
echo "store: SQLite; $ACCOUNTS members (login + mail, real argon2id PHC strings) over $OBJECTS realms,"
echo "  imported with credshift accounts import ($STORE_SIZE file); 'empty store' = schema only"
echo "objects: $OBJECTS CredentialPolicies (examples/2018-split/policy.yaml, realm-000..) and $OBJECTS"
echo "  CredentialCutovers (cutover.yaml): $COMPLETED due at apply (at 2018-04-18, backfilled by the"
echo "  controller to Completed), $((OBJECTS - COMPLETED)) Scheduled at $FUTURE; one kubectl apply (client-side)"
echo "controller: credshift controller, one replica, default flags (log level warn, lease 15 s,"
echo "  progress interval 1 s), --namespace $NS; idle window ${IDLE} s, VmRSS sampled every second"
echo "  ${CTRL_ENV[*]+extra environment: ${CTRL_ENV[*]}}"
echo
"$PY" "$HELPER" report "$WORK/results.jsonl"
for ph in $PHASES; do
    f="$WORK/run$RUNS-$ph/smaps.txt"
    [ -f "$f" ] || continue
    echo
    echo "## Where the RSS lives, run $RUNS, $ph, at the end of the idle window (/proc/PID/smaps)"
    cat "$f"
    if [ -f "$WORK/run$RUNS-$ph/heap.txt" ]; then
        echo "through gdb (--heap-stats):"
        cat "$WORK/run$RUNS-$ph/heap.txt"
    fi
done
noisy=()
for ph in $PHASES; do
    for run in $(seq 1 "$RUNS"); do
        f="$WORK/run$run-$ph/controller.log"
        if [ -s "$f" ]; then noisy+=("$f"); fi
    done
done
if [ ${#noisy[@]} -gt 0 ]; then
    echo
    echo "## The controller logged (level warn and above; first lines):"
    for f in "${noisy[@]}"; do echo "${f#"$WORK"/}:"; head -5 "$f" | cut -c1-300; done
fi
