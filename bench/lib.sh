# shellcheck shell=bash disable=SC2034  # (variables here are used by the scripts that source it)
# Shared by bench/cutover.sh and bench/import.sh: flags, the release build,
# the machine description, a throwaway PostgreSQL server, real argon2id
# hashes, generated member files, and timing with peak RSS.
#
# Source it; it sets `set -euo pipefail` and installs an EXIT trap that stops
# the PostgreSQL server and removes the work directory (BENCH_KEEP=1 keeps it).

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
PY=${PYTHON:-python3}

# Nothing from the caller's environment may change what credshift does.
for v in $(compgen -v CREDSHIFT_ || true); do unset "$v"; done
unset RUST_LOG DATABASE_URL || true

# ---------------------------------------------------------------- flags

ACCOUNTS=1000000
RUNS=3
DBS="sqlite postgres"
QUICK=0
PERF=0
ORDER=scattered
LOAD_WITH_IMPORT=0
REALM=wakwak

usage_common() {
    cat <<EOF
  --quick          100,000 accounts instead of 1,000,000
  --accounts N     number of generated accounts
  --runs N         runs per measurement (median reported; default 3)
  --db D           sqlite, postgres or both (default both)
  --bin PATH       use this credshift binary instead of building
                   (default: cargo build --release --locked)
  --keep           keep the work directory (also BENCH_KEEP=1)
  --load-with-import  (cutover.sh, explain-batch.sh) make the base database with credshift
                   accounts import instead of bulk SQL into credshift's schema
  --order O        member file order: scattered (default: login-ID order unrelated
                   to file order, so account ids and login IDs do not correlate)
                   or sorted (file sorted by login ID)
Environment: BENCH_WORK (parent of the work dir, default /tmp),
  BENCH_PG_OPTS (extra postgres -c options), PG_BIN (PostgreSQL bin dir).
EOF
}

parse_common() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --quick) QUICK=1; ACCOUNTS=100000 ;;
            --accounts) ACCOUNTS=$2; shift ;;
            --runs) RUNS=$2; shift ;;
            --db)
                case "$2" in
                    sqlite|postgres) DBS=$2 ;;
                    both) DBS="sqlite postgres" ;;
                    *) echo "--db: sqlite, postgres or both" >&2; exit 2 ;;
                esac
                shift ;;
            --bin) CREDSHIFT_BIN=$2; shift ;;
            --keep) BENCH_KEEP=1 ;;
            --perf) PERF=1 ;;
            --load-with-import) LOAD_WITH_IMPORT=1 ;;
            --order)
                case "$2" in scattered|sorted) ORDER=$2 ;; *) echo "--order: scattered or sorted" >&2; exit 2 ;; esac
                shift ;;
            -h|--help) usage; exit 0 ;;
            *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
        esac
        shift
    done
}

# ---------------------------------------------------------------- work dir and cleanup

WORK=""
PG_DIR=""
PG_RUN_AS=()
PG_BIN_DIR=""

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

cleanup() {
    local rc=$?
    set +e
    pg_stop
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "${BENCH_KEEP:-0}" = 1 ]; then
            log "kept $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit $rc
}

init_work() {
    WORK=$(mktemp -d "${BENCH_WORK:-/tmp}/credshift-bench.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    : >"$WORK/results.jsonl"
    log "work dir $WORK"
}

# ---------------------------------------------------------------- build

build_credshift() {
    if [ -n "${CREDSHIFT_BIN:-}" ]; then
        BIN=$CREDSHIFT_BIN
    else
        local target=${CARGO_TARGET_DIR:-$ROOT/target}
        log "cargo build --release --locked (target dir $target)"
        (cd "$ROOT" && CARGO_TARGET_DIR=$target cargo build --release --locked --quiet)
        BIN=$target/release/credshift
    fi
    [ -x "$BIN" ] || { echo "no credshift binary at $BIN" >&2; exit 2; }
}

# ---------------------------------------------------------------- machine

machine_description() {
    local cpu sqlite_bundled
    cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
    sqlite_bundled=$(awk '/^name = "libsqlite3-sys"/{getline; print $3}' "$ROOT/Cargo.lock" | tr -d '"')
    echo "## Machine"
    echo "date (UTC):   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc:        $(nproc)"
    echo "CPU:          ${cpu:-unknown}"
    echo "kernel:       $(uname -sr)"
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (at start; other work on the machine skews the figures)"
    echo "memory:"
    free -h | sed 's/^/  /'
    echo "disk (work):  $(df -h "$WORK" | awk 'NR==2{print $1" "$2" total, "$4" free"}')"
    echo "credshift:    $("$BIN" --version 2>/dev/null || echo '?') ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock migrations 2>/dev/null || echo ', src modified'))"
    echo "rustc:        $(rustc --version 2>/dev/null || echo '?')"
    echo "PostgreSQL:   $("${PG_BIN_DIR:-$(pg_bin_dir)}/postgres" --version 2>/dev/null || echo '?')"
    echo "SQLite:       credshift bundles libsqlite3-sys ${sqlite_bundled:-?}; baseline sqlite3 CLI $(sqlite3 --version | cut -d' ' -f1)"
    echo "python:       $("$PY" --version 2>&1)"
    if command -v wrk >/dev/null; then echo "wrk:          $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"; fi
    echo
}

# ---------------------------------------------------------------- PostgreSQL

pg_bin_dir() {
    if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -1 || true)
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
    d=$(command -v initdb || true)
    [ -n "$d" ] && dirname "$d"
}

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts a throwaway server (initdb + pg_ctl in a temp dir on a free loopback
# port), like tests/support/postgres.rs; as root it runs as `postgres` (or
# `nobody`). Unlike the tests' server it keeps PostgreSQL's durable defaults
# (fsync, synchronous_commit, full_page_writes on): commits cost what they
# cost in production. BENCH_PG_OPTS adds `-c` options.
pg_start() {
    PG_BIN_DIR=$(pg_bin_dir)
    [ -n "$PG_BIN_DIR" ] || { echo "initdb/pg_ctl not found: apt-get install -y postgresql" >&2; exit 2; }
    PG_DIR=$(mktemp -d "${BENCH_WORK:-/tmp}/credshift-bench-pg.XXXXXX")
    PG_RUN_AS=()
    if [ "$(id -u)" = 0 ]; then
        local user
        for user in postgres nobody; do
            if id "$user" >/dev/null 2>&1; then PG_RUN_AS=(runuser -u "$user" --); break; fi
        done
        [ ${#PG_RUN_AS[@]} -gt 0 ] || { echo "root, and no postgres/nobody user" >&2; exit 2; }
        chown -R "${PG_RUN_AS[2]}" "$PG_DIR"
    fi
    PG_PORT=$(free_port)
    "${PG_RUN_AS[@]}" "$PG_BIN_DIR/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 \
        --no-locale >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; exit 2; }
    "${PG_RUN_AS[@]}" "$PG_BIN_DIR/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-p $PG_PORT -h 127.0.0.1 -k $PG_DIR ${BENCH_PG_OPTS:-}" start >/dev/null \
        || { cat "$PG_DIR/server.log" >&2; exit 2; }
    PG_BASE="postgres://postgres@127.0.0.1:$PG_PORT"
    log "PostgreSQL on port $PG_PORT ($PG_DIR)"
}

pg_stop() {
    if [ -n "$PG_DIR" ] && [ -d "$PG_DIR/data" ]; then
        "${PG_RUN_AS[@]}" "$PG_BIN_DIR/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
    fi
    PG_DIR=""
}

# psql DB SQL... : each -c is its own transaction.
pg_sql() {
    local db=$1; shift
    local args=()
    for s in "$@"; do args+=(-c "$s"); done
    psql -X -q -v ON_ERROR_STOP=1 -At -d "$PG_BASE/$db" "${args[@]}"
}

# A fresh copy of a template database (file copy: no WAL for the copy).
pg_copy() {
    local template=$1 name=$2 i
    for i in 1 2 3 4 5; do
        if pg_sql postgres "CREATE DATABASE $name TEMPLATE $template STRATEGY FILE_COPY" 2>"$WORK/pgcopy.err"; then
            return 0
        fi
        sleep 2
    done
    cat "$WORK/pgcopy.err" >&2
    exit 2
}

# WAL written by the whole server between pg_wal_reset and pg_wal_read
# (pg_stat_wal; one thing runs at a time here): sets PG_WAL_MIB, PG_WAL_FPI
# (full-page images: pages first touched since the last checkpoint).
pg_wal_reset() { pg_sql postgres "SELECT pg_stat_reset_shared('wal')" >/dev/null; }
pg_wal_read() {
    sleep 1 # let the exited backends' statistics land
    read -r PG_WAL_MIB PG_WAL_FPI < <(pg_sql postgres \
        "SELECT round(wal_bytes / 1048576.0, 1) || ' ' || wal_fpi FROM pg_stat_wal")
}

pg_drop() { pg_sql postgres "DROP DATABASE IF EXISTS $1" >/dev/null; }

# ---------------------------------------------------------------- data

# N real argon2id PHC strings (OWASP defaults m=19456,t=2,p=1), made by
# credshift itself (`accounts set-password`), with their passwords:
# $WORK/hashes.tsv holds `password<TAB>hash` lines.
make_hashes() {
    local n=$1 db="$WORK/hashes.db" i
    {
        echo "login_id,base_email,login"
        for i in $(seq 1 "$n"); do
            printf 'hh%07d,h%d@wakwak.example.jp,$1$1gX4bIp9$gPaGv77vYGg2MTJZbL8uD0\n' "$i" "$i"
        done
    } >"$WORK/hashes.csv"
    "$BIN" accounts import --store "sqlite://$db" --realm wakwak "$WORK/hashes.csv" >/dev/null
    : >"$WORK/hashes.tsv"
    for i in $(seq 1 "$n"); do
        local pw="bench-pass-$i-$RANDOM$RANDOM"
        printf '%s\n' "$pw" | "$BIN" accounts set-password --store "sqlite://$db" --realm wakwak \
            --credential login "$(printf 'hh%07d' "$i")" >/dev/null
        local hash
        hash=$(sqlite3 "$db" "SELECT c.hash FROM credentials c JOIN accounts a ON a.id = c.account_id \
            WHERE a.login_id = '$(printf 'hh%07d' "$i")' AND c.name = 'login'")
        case "$hash" in
            '$argon2id$v=19$m=19456,t=2,p=1$'*) ;;
            *) echo "unexpected hash from set-password: $hash" >&2; exit 2 ;;
        esac
        printf '%s\t%s\n' "$pw" "$hash" >>"$WORK/hashes.tsv"
    done
    rm -f "$db" "$db-wal" "$db-shm" "$WORK/hashes.csv"
}

# The common start of a data benchmark: PostgreSQL if asked for, the machine
# description, 8 real argon2id hashes and $ACCOUNTS generated members in
# $WORK/members.csv (none of it timed). Sets N.
prepare_members() {
    case " $DBS " in *" postgres "*) pg_start ;; esac
    machine_description >"$WORK/machine.txt"
    N=$ACCOUNTS
    log "making 8 argon2id hashes with credshift accounts set-password"
    make_hashes 8
    log "generating $N members"
    gen_members "$N" "$WORK/members.csv"
}

# gen_members N FILE: the member CSV (login_id,base_email,login,mail).
gen_members() {
    "$PY" "$BENCH_DIR/gen_members.py" --accounts "$1" --hashes "$WORK/hashes.tsv" --out "$2" \
        --order "$ORDER"
}

# ---------------------------------------------------------------- timing

# timed OUTPREFIX CMD...: runs CMD with stdout/stderr to OUTPREFIX.out/.err;
# sets T_WALL (seconds, wall clock), T_RSS_KIB (peak RSS of CMD) and
# T_WRITE_MIB (what CMD itself wrote to storage: SQLite's writes, not a
# PostgreSQL server's), from GNU time's getrusage. Fails the benchmark if
# CMD fails.
timed() {
    local prefix=$1; shift
    local t0 t1 rc=0
    t0=$(date +%s%N)
    /usr/bin/time -f '%M %O' -o "$prefix.time" "$@" >"$prefix.out" 2>"$prefix.err" || rc=$?
    t1=$(date +%s%N)
    if [ $rc -ne 0 ]; then
        echo "command failed (exit $rc): $*" >&2
        tail -20 "$prefix.err" >&2
        exit 2
    fi
    T_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
    read -r T_RSS_KIB T_WRITE_MIB < <(tail -1 "$prefix.time")
    T_WRITE_MIB=$(awk -v b="$T_WRITE_MIB" 'BEGIN{printf "%.1f", b*512/1048576}')
}

# record KEY=VALUE...: one JSON object per line in results.jsonl.
record() {
    "$PY" - "$@" >>"$WORK/results.jsonl" <<'EOF'
import json, sys
out = {}
for kv in sys.argv[1:]:
    k, v = kv.split("=", 1)
    try:
        v = float(v) if "." in v else int(v)
    except ValueError:
        pass
    out[k] = v
print(json.dumps(out))
EOF
}

check_tools() {
    if [ ! -x /usr/bin/time ]; then
        echo "/usr/bin/time (GNU time) is needed for peak RSS: apt-get install -y time" >&2
        exit 2
    fi
    command -v sqlite3 >/dev/null || { echo "sqlite3 CLI needed: apt-get install -y sqlite3" >&2; exit 2; }
    case " $DBS " in
        *" postgres "*) command -v psql >/dev/null \
            || { echo "psql needed: apt-get install -y postgresql" >&2; exit 2; } ;;
    esac
}

# ---------------------------------------------------------------- the cutover data set
# (cutover.sh, explain-batch.sh; N is set by the script)

# The example policy and cutover (batchSize 1000), without the demo members.
setup_manifests() {
    mkdir -p "$WORK/manifests"
    cp "$ROOT/examples/2018-split/policy.yaml" "$ROOT/examples/2018-split/cutover.yaml" "$WORK/manifests/"
}

BASELINE_SQL_SUPPORT="INSERT INTO credentials (account_id, name, hash, set_at, set_via, must_change, version) \
SELECT c.account_id, 'support', c.hash, c.set_at, 'baseline', c.must_change, 1 \
FROM credentials c JOIN accounts a ON a.id = c.account_id WHERE a.realm = '$REALM' AND c.name = 'login'"
BASELINE_SQL_CONNECTION=${BASELINE_SQL_SUPPORT//\'support\'/\'connection\'}

url_of() { # db name-or-path
    case "$1" in
        sqlite) echo "sqlite://$2" ;;
        postgres) echo "$PG_BASE/$2" ;;
    esac
}

count_sql="SELECT (SELECT COUNT(*) FROM credentials WHERE name = 'support') || ' ' || \
(SELECT COUNT(*) FROM credentials WHERE name = 'connection') || ' ' || \
(SELECT COUNT(*) FROM credentials WHERE name = 'login')"

counts() { # db where
    case "$1" in
        sqlite) sqlite3 "$2" "$count_sql" ;;
        postgres) pg_sql "$2" "$count_sql" ;;
    esac
}

# The base database: credshift's schema (`credshift store migrate`), then the
# member file bulk-loaded with plain SQL (COPY / .import into a staging table,
# then INSERT … SELECT in file order, so that account ids follow the file as
# with `credshift accounts import`; login + mail per member, set via `import`).
# Bulk SQL keeps the setup short; bench/import.sh measures credshift's import.
# With --load-with-import the base is made by `credshift accounts import`.
LOAD_T=1522540800000 # 2018-04-01T00:00:00Z in Unix ms
load_sql() { # order-column -> the two INSERT statements, ';'-terminated
    cat <<SQL
INSERT INTO accounts (realm, login_id, base_email, created_at, updated_at, state)
SELECT '$REALM', login_id, base_email, $LOAD_T, $LOAD_T, 'active' FROM bench_stage ORDER BY $1;
INSERT INTO credentials (account_id, name, hash, set_at, set_via, must_change, version)
SELECT id, name, hash, $LOAD_T, 'import', 0, 1 FROM (
  SELECT a.id AS id, 'login' AS name, s.login AS hash FROM bench_stage s
    JOIN accounts a ON a.realm = '$REALM' AND a.login_id = s.login_id
  UNION ALL
  SELECT a.id, 'mail', s.mail FROM bench_stage s
    JOIN accounts a ON a.realm = '$REALM' AND a.login_id = s.login_id) AS c
ORDER BY id, name;
SQL
}

check_base() { # "support connection login" counts
    [ "$1" = "0 0 $N" ] || { echo "base database: counts $1, expected 0 0 $N" >&2; exit 2; }
}

# bulk_load db where: the member file into a migrated empty store with plain
# SQL in one transaction (sqlite3 .import / psql COPY into a staging table,
# then INSERT … SELECT), then ANALYZE. The base of the cutover runs, and the
# baseline that bench/import.sh compares `credshift accounts import` with.
bulk_load() {
    local db=$1 where=$2
    case $db in
        sqlite)
            sqlite3 -bail "$where" >/dev/null <<SQL
PRAGMA foreign_keys = ON;
PRAGMA synchronous = FULL;
CREATE TEMP TABLE bench_stage (login_id TEXT, base_email TEXT, login TEXT, mail TEXT);
.import --csv --skip 1 $WORK/members.csv bench_stage
BEGIN;
$(load_sql rowid)
COMMIT;
ANALYZE;
SQL
            ;;
        postgres)
            psql -X -q -v ON_ERROR_STOP=1 -d "$PG_BASE/$where" >/dev/null <<SQL
CREATE TEMP TABLE bench_stage (n BIGINT GENERATED ALWAYS AS IDENTITY,
    login_id TEXT, base_email TEXT, login TEXT, mail TEXT);
\copy bench_stage (login_id, base_email, login, mail) FROM '$WORK/members.csv' WITH (FORMAT csv, HEADER true)
BEGIN;
$(load_sql n)
COMMIT;
ANALYZE;
SQL
            ;;
    esac
}

load_base() {
    local db=$1 t0 t1 how="bulk SQL into credshift's schema"
    [ "$LOAD_WITH_IMPORT" = 1 ] && how="credshift accounts import"
    log "$db: loading $N members into the base database with $how (not timed)"
    t0=$(date +%s)
    case $db in
        sqlite)
            BASE_SQLITE="$WORK/base.db"
            if [ "$LOAD_WITH_IMPORT" = 1 ]; then
                "$BIN" accounts import --store "sqlite://$BASE_SQLITE" --realm "$REALM" \
                    "$WORK/members.csv" >/dev/null
            else
                "$BIN" store migrate --store "sqlite://$BASE_SQLITE" >/dev/null
                bulk_load sqlite "$BASE_SQLITE"
                sqlite3 "$BASE_SQLITE" "VACUUM;" >/dev/null
            fi
            sqlite3 "$BASE_SQLITE" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
            check_base "$(counts sqlite "$BASE_SQLITE")"
            ;;
        postgres)
            pg_sql postgres "CREATE DATABASE bench_base"
            if [ "$LOAD_WITH_IMPORT" = 1 ]; then
                "$BIN" accounts import --store "$PG_BASE/bench_base" --realm "$REALM" \
                    "$WORK/members.csv" >/dev/null
            else
                "$BIN" store migrate --store "$PG_BASE/bench_base" >/dev/null
                bulk_load postgres bench_base
            fi
            # Settled, as a database in service would be; then closed to
            # connections so that autovacuum leaves the template alone.
            pg_sql bench_base "VACUUM (ANALYZE)" "CHECKPOINT"
            check_base "$(counts postgres bench_base)"
            pg_sql postgres "ALTER DATABASE bench_base ALLOW_CONNECTIONS false"
            ;;
    esac
    t1=$(date +%s)
    log "$db: loaded in $((t1 - t0))s"
    echo "$db: $N members loaded with $how in $((t1 - t0))s" >>"$WORK/loads.txt"
}

# fresh_copy db tag -> prints the sqlite path or postgres database name
fresh_copy() {
    local db=$1 tag=$2
    case $db in
        sqlite) cp "$BASE_SQLITE" "$WORK/$tag.db"; echo "$WORK/$tag.db" ;;
        postgres) pg_copy bench_base "$tag"; echo "$tag" ;;
    esac
}

drop_copy() {
    case $1 in
        sqlite) rm -f "$2" "$2-wal" "$2-shm" ;;
        postgres) pg_drop "$2" ;;
    esac
}

# ---------------------------------------------------------------- the API
# (verify.sh, overload.sh)

# sample_members N: N random members of $WORK/members.csv with their
# passwords, as `login_id<TAB>password` lines in $WORK/sample.tsv.
sample_members() {
    "$PY" - "$WORK/members.csv" "$WORK/hashes.tsv" "$WORK/sample.tsv" "$1" <<'PY'
import csv, random, sys
pw = {h: p for p, h in (l.rstrip("\n").split("\t", 1) for l in open(sys.argv[2]))}
rows = list(csv.reader(open(sys.argv[1])))[1:]
with open(sys.argv[3], "w") as out:
    for r in random.Random(7).sample(rows, min(int(sys.argv[4]), len(rows))):
        out.write(f"{r[0]}\t{pw[r[2]]}\n")
PY
}

# api_tokens: a portal token in $WORK/token and its token file.
api_tokens() {
    TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
    printf '%s\n' "$TOKEN" >"$WORK/token"
    cat >"$WORK/tokens.yaml" <<YAML
tokens:
  - name: portal
    channel: portal
    realms: [$REALM]
    sha256: $(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)
    administrator: false
YAML
}

# manifests DIR AT: the example policy and cutover, the cutover at AT.
manifests() {
    mkdir -p "$1"
    cp "$ROOT/examples/2018-split/policy.yaml" "$1/"
    sed "s|^  at: .*|  at: \"$2\"|" "$ROOT/examples/2018-split/cutover.yaml" >"$1/cutover.yaml"
    grep -q "at: \"$2\"" "$1/cutover.yaml" || { echo "could not set the cutover's at" >&2; exit 2; }
}

SERVE_PID=""
stop_serve() {
    if [ -n "$SERVE_PID" ]; then
        kill "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
        SERVE_PID=""
    fi
}

# start_serve URL MANIFESTS TAG [FLAG...]: credshift serve on a free $PORT.
start_serve() {
    local url=$1 dir=$2 tag=$3
    shift 3
    PORT=$(free_port)
    # The policy has self-service recovery, so serve needs a sealing key.
    CREDSHIFT_OUTBOX_KEY=$(head -c 32 /dev/urandom | base64) \
        "$BIN" serve -f "$dir" --store "$url" --tokens "$WORK/tokens.yaml" --listen "127.0.0.1:$PORT" \
        "$@" >"$WORK/serve-$tag.out" 2>"$WORK/serve-$tag.err" &
    SERVE_PID=$!
    local i
    for i in $(seq 1 300); do
        if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then return 0; fi
        kill -0 "$SERVE_PID" 2>/dev/null || { cat "$WORK/serve-$tag.err" >&2; exit 2; }
        sleep 0.1
    done
    echo "serve not ready after 30 s" >&2
    exit 2
}

# field FILE KEY: one value of a JSON object in FILE.
field() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }

# raw: the physical limit, $RAW_BIN (examples/argon2_rate.rs) over one window
# of $SECONDS_PER_WINDOW on $WORK/hashes.tsv: prints verifies per second and
# appends "verifies cpu_seconds" to $WORK/raw-cpu.
raw() {
    /usr/bin/time -f '%U %S' -o "$WORK/raw.time" \
        "$RAW_BIN" "$WORK/hashes.tsv" "$SECONDS_PER_WINDOW" >"$WORK/raw.txt"
    echo "$(sed -n 's/.*verifies=\([0-9]*\).*/\1/p' "$WORK/raw.txt") \
$(awk '{print $1 + $2}' "$WORK/raw.time")" >>"$WORK/raw-cpu"
    sed -n 's/.*rate=\([0-9.]*\).*/\1/p' "$WORK/raw.txt"
}

# ---------------------------------------------------------------- where the CPU goes
# The verify benchmarks (verify.sh closed-loop, overload.sh open-loop) share
# one harness: the same server, raw reference, window pairs and CPU split.

# cpu_split PID -> "hashing_ticks other_ticks": the server's CPU so far, by
# its hashing threads (credshift-hash-N) and all its other threads.
cpu_split() {
    cat /proc/"$1"/task/*/stat | awk '{ t = $14 + $15; if ($2 ~ /credshift-hash/) h += t; else o += t }
        END { print h + 0, o + 0 }'
}

# db_ticks -> the CPU ticks of the PostgreSQL server so far (postmaster and
# its children); 0 on SQLite, which runs inside the API's process.
db_ticks() {
    local pm
    [ -n "${PG_DIR:-}" ] && [ -f "$PG_DIR/data/postmaster.pid" ] || { echo 0; return; }
    pm=$(head -1 "$PG_DIR/data/postmaster.pid")
    { cat "/proc/$pm/stat"; for c in $(pgrep -P "$pm"); do
        cat "/proc/$c/stat" 2>/dev/null; done; } | awk '{ t += $14 + $15 } END { print t + 0 }'
}

# ticks -> "busy total hash other db": the machine's busy and total CPU
# ticks (/proc/stat), the server's by hashing threads and the rest, and the
# database server's.
ticks() {
    local db=0
    [ "$1" = postgres ] && db=$(db_ticks)
    echo "$(awk '/^cpu /{ b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat) \
$(cpu_split "$SERVE_PID") $db"
}

# measured TAG DB CMD...: runs the load command CMD of one API window (its
# stdout is the caller's) and appends the window's CPU ticks to
# $WORK/cpu-TAG: "busy total hash other db load" (the machine's busy and
# total, the server's hashing threads and other threads, the database
# server's, the load's own user+system).
measured() {
    local tag=$1 db=$2 before after
    shift 2
    before=$(ticks "$db")
    /usr/bin/time -f '%U %S' -o "$WORK/load.time" "$@"
    after=$(ticks "$db")
    awk -v b="$before" -v a="$after" -v hz="$(getconf CLK_TCK)" -v l="$(tail -1 "$WORK/load.time")" 'BEGIN {
        n = split(b, x, " "); split(a, y, " "); split(l, t, " ")
        for (i = 1; i <= n; i++) printf "%d ", y[i] - x[i]
        printf "%d\n", (t[1] + t[2]) * hz }' >>"$WORK/cpu-$tag"
}

# cpu_shares TAG -> "hash server load db rest idle": the machine's CPU over
# the API windows of TAG, as shares of all its cores: the server's hashing
# threads, its other threads (HTTP, JSON and, on SQLite, the database), the
# load, the database server, everything else (kernel, other processes), idle.
cpu_shares() {
    awk '{ b += $1; t += $2; h += $3; o += $4; d += $5; l += $6 }
        END { printf "%.3f %.3f %.3f %.3f %.3f %.3f\n", h/t, o/t, l/t, d/t,
              (b - h - o - l - d)/t, (t - b)/t }' "$WORK/cpu-$1"
}

# server_split -> "hash_share api_ms raw_ms": the share of the server's CPU
# so far that its hashing threads took; the CPU of one hash there (their
# ticks over the pool's runs, from /metrics) and in the raw windows since the
# last call (whose tally it then clears).
server_split() {
    local hashes hash_ticks other_ticks
    hashes=$(curl -fsS "http://127.0.0.1:$PORT/metrics" | awk '/^credshift_api_hash_runs_total /{print $2}')
    read -r hash_ticks other_ticks < <(cpu_split "$SERVE_PID")
    awk -v h="$hash_ticks" -v o="$other_ticks" -v n="$hashes" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.3f %.2f ", h / (h + o), h * 1000 / hz / n }'
    awk '{ n += $1; c += $2 } END { printf "%.2f\n", c * 1000 / n }' "$WORK/raw-cpu"
    : >"$WORK/raw-cpu"
}

# release_example NAME: builds examples/NAME.rs in release next to $BIN
# (unless it is there and --bin was given); prints its path.
release_example() {
    local path
    path=$(dirname "$BIN")/examples/$1
    if [ -z "${CREDSHIFT_BIN:-}" ] || [ ! -x "$path" ]; then
        local target=${CARGO_TARGET_DIR:-$ROOT/target}
        log "cargo build --release --locked --example $1"
        (cd "$ROOT" && CARGO_TARGET_DIR=$target cargo build --release --locked --quiet --example "$1")
        path=$target/release/examples/$1
    fi
    echo "$path"
}
