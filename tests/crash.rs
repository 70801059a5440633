//! `credshift apply` / `credshift plan` as real processes against both real
//! databases: a backfill killed with SIGKILL at random moments resumes from
//! its checkpoint and loses and repeats nothing; a plan writes nothing and
//! predicts what apply then does; invalid input is refused before the store
//! is touched.

// A panic in a test is its failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use credshift::store::{Backend, CheckpointPhase, ImportRow, Store};
use futures::TryStreamExt as _;
use jiff::Timestamp;
use sha1::Digest as _;
use sqlx::Connection as _;

use support::stores::TestStore;

/// The example cutover's key (no namespace in the file: `default`).
const CUTOVER: &str = "default/split-login-2018";
/// How the backfill marks what it wrote (`set_via`).
const CUTOVER_VIA: &str = "cutover:split-login-2018";
const REALM: &str = "wakwak";

fn t0() -> Timestamp {
    "2018-03-29T00:00:00Z".parse().expect("timestamp")
}

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/2018-split")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A directory holding the example policy and cutover (with `batch_size`),
/// and no member file.
fn manifests(batch_size: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("policy.yaml"), example("policy.yaml")).expect("write policy");
    let cutover = example("cutover.yaml");
    assert!(cutover.contains("batchSize: 1000"), "{cutover}");
    std::fs::write(
        dir.path().join("cutover.yaml"),
        cutover.replace("batchSize: 1000", &format!("batchSize: {batch_size}")),
    )
    .expect("write cutover");
    dir
}

fn login_id(i: usize) -> String {
    format!("wk{i:08}")
}

/// A real, cheap `{SSHA}` hash, different for every (password, salt).
fn ssha(password: &str, salt: u32) -> String {
    let salt = salt.to_be_bytes();
    let mut d = sha1::Sha1::new();
    d.update(password.as_bytes());
    d.update(salt);
    let mut raw = d.finalize().to_vec();
    raw.extend_from_slice(&salt);
    format!(
        "{{SSHA}}{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn login_hash(i: usize) -> String {
    ssha(&format!("login-{i}"), i as u32)
}

fn own_hash(name: &str, i: usize) -> String {
    ssha(&format!("{name}-own-{i}"), 7 + i as u32)
}

/// `n` accounts holding `login`; `extra[i]` lists further credentials (with
/// their own hashes) that account `i` already holds.
async fn populate(store: &Store, n: usize, extra: &HashMap<usize, Vec<&str>>) {
    let sample = login_hash(0);
    assert!(
        credshift::hashing::verify_password(&"login-0".into(), &sample).expect("valid {SSHA}"),
        "the generated hash is a real {{SSHA}} hash"
    );
    let mut rows = Vec::with_capacity(500);
    for i in 0..n {
        let mut credentials = vec![("login".to_owned(), login_hash(i))];
        for name in extra.get(&i).into_iter().flatten() {
            credentials.push(((*name).to_owned(), own_hash(name, i)));
        }
        rows.push(ImportRow {
            line: i as u64 + 2,
            login_id: login_id(i),
            base_email: format!("m{i}@wakwak.example.jp"),
            credentials,
            given: Vec::new(),
        });
        if rows.len() == 500 || i + 1 == n {
            store
                .import_batch(REALM, &rows, "test", t0())
                .await
                .expect("import batch");
            rows.clear();
        }
    }
    assert_eq!(store.count_accounts(REALM).await.expect("count"), n as i64);
}

/// Runs `credshift ARGS -f DIR --store URL` to the end, off the async runtime.
async fn run(args: &[&str], dir: &Path, url: &str) -> std::process::Output {
    let mut cmd = support::credshift_on(url);
    cmd.args(args).arg("-f").arg(dir).arg("--store").arg(url);
    tokio::task::spawn_blocking(move || cmd.output().expect("run credshift"))
        .await
        .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A raw connection for counting (busy timeout on SQLite, where a killed
/// writer may just have left its lock).
async fn raw(url: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .expect("raw connection");
    if url.starts_with("sqlite:") {
        sqlx::raw_sql("PRAGMA busy_timeout = 10000")
            .execute(&mut conn)
            .await
            .expect("busy timeout");
    }
    conn
}

async fn count(conn: &mut sqlx::AnyConnection, sql: &'static str, binds: &[&str]) -> i64 {
    let mut q = sqlx::query_scalar::<_, i64>(sql);
    for b in binds {
        q = q.bind(*b);
    }
    q.fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// splitmix64: deterministic per trial, no extra crate.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The state between two runs is one a sequence of whole batches leaves:
/// up to the cursor (an account id) every account holds both targets (and `done` counts
/// exactly those accounts), after it the backfill wrote nothing.
/// `imported` is how many credentials the test itself wrote (set via `test`):
/// the backfill never replaces one.
async fn assert_whole_batches(
    conn: &mut sqlx::AnyConnection,
    store: &Store,
    imported: i64,
    trial: usize,
) {
    let checkpoint = store.checkpoint(CUTOVER).await.expect("checkpoint");
    let cursor = checkpoint
        .as_ref()
        .and_then(|c| c.cursor)
        .unwrap_or(0)
        .to_string();
    let done = checkpoint.as_ref().map_or(0, |c| c.done);
    let after = count(
        conn,
        "SELECT COUNT(*) FROM credentials c JOIN accounts a ON a.id = c.account_id \
         WHERE a.realm = $1 AND c.set_via = $2 AND a.id > CAST($3 AS BIGINT)",
        &[REALM, CUTOVER_VIA, &cursor],
    )
    .await;
    assert_eq!(
        after, 0,
        "trial {trial}: targets written past the checkpoint cursor {cursor:?}"
    );
    let half = count(
        conn,
        "SELECT COUNT(*) FROM accounts a WHERE a.realm = $1 AND a.id <= CAST($2 AS BIGINT) AND ( \
         NOT EXISTS (SELECT 1 FROM credentials c WHERE c.account_id = a.id AND c.name = 'support') OR \
         NOT EXISTS (SELECT 1 FROM credentials c WHERE c.account_id = a.id AND c.name = 'connection'))",
        &[REALM, &cursor],
    )
    .await;
    assert_eq!(
        half, 0,
        "trial {trial}: accounts up to the cursor {cursor:?} missing a target"
    );
    let covered = count(
        conn,
        "SELECT COUNT(*) FROM accounts a JOIN credentials l ON l.account_id = a.id AND l.name = 'login' \
         WHERE a.realm = $1 AND a.id <= CAST($2 AS BIGINT)",
        &[REALM, &cursor],
    )
    .await;
    assert_eq!(
        done, covered,
        "trial {trial}: checkpoint done vs accounts up to the cursor {cursor:?}"
    );
    let wrong = count(
        conn,
        "SELECT COUNT(*) FROM credentials t JOIN credentials l \
         ON l.account_id = t.account_id AND l.name = 'login' \
         WHERE t.set_via = $1 AND t.hash <> l.hash",
        &[CUTOVER_VIA],
    )
    .await;
    assert_eq!(
        wrong, 0,
        "trial {trial}: a copied target differs from login"
    );
    let own = count(
        conn,
        "SELECT COUNT(*) FROM credentials WHERE set_via = 'test'",
        &[],
    )
    .await;
    assert_eq!(
        own, imported,
        "trial {trial}: the imported credentials are all still there"
    );
}

// ---------------------------------------------------------------------------

store_test!(
    kill_9_of_apply_at_random_moments_loses_and_repeats_nothing,
    kill_9
);
async fn kill_9(db: TestStore) {
    const TRIALS: u64 = 12;
    let started = Instant::now();
    let backend = db.store.backend();
    // Sized so that twelve runs of up to 20 ms of backfill each do not
    // finish it: SQLite backfills up to some 150 accounts/ms in batches of
    // 50 here, PostgreSQL (without fsync, as in the tests) some 20.
    let accounts: usize = match backend {
        Backend::Sqlite => 60_000,
        Backend::Postgres => 20_000,
    };
    let dir = manifests(50);
    // Every 1000th account already holds its own support password.
    let presplit: HashMap<usize, Vec<&str>> = (500..accounts)
        .step_by(1000)
        .map(|i| (i, vec!["support"]))
        .collect();
    populate(&db.store, accounts, &presplit).await;
    let imported = (accounts + presplit.len()) as i64;
    let mut conn = raw(&db.url).await;
    let setup = started.elapsed();

    let mut last_done = 0;
    let mut interrupted = 0;
    let mut dones = Vec::new();
    for trial in 0..TRIALS {
        // The kill lands 0-20 ms after this run's first committed batch, so
        // it interrupts a running backfill however slow the process is to
        // start on a loaded machine (a fixed delay from spawn did not).
        let delay = Duration::from_millis(splitmix(trial) % 21);
        let mut child = support::credshift_on(&db.url)
            .arg("apply")
            .arg("-f")
            .arg(dir.path())
            .args(["--store", &db.url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn apply");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done = db
                .store
                .checkpoint(CUTOVER)
                .await
                .expect("checkpoint")
                .map_or(0, |c| c.done);
            if done > last_done || child.try_wait().expect("try_wait").is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "trial {trial}: no batch committed within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(delay).await;
        let status = tokio::task::spawn_blocking(move || {
            // An error here means it already exited: `wait` tells how.
            let _ = child.kill();
            child.wait().expect("wait")
        })
        .await
        .expect("join");
        let checkpoint = db.store.checkpoint(CUTOVER).await.expect("checkpoint");
        let done = checkpoint.as_ref().map_or(0, |c| c.done);
        let completed = checkpoint
            .as_ref()
            .is_some_and(|c| c.phase != CheckpointPhase::Running);
        // Killed while running, or it had already finished (then successfully).
        let killed = status.signal() == Some(9);
        if killed && !completed {
            interrupted += 1;
        } else if !killed {
            assert!(
                status.success() && completed,
                "trial {trial}: apply ended with {status} before the kill"
            );
        }
        assert!(
            done >= last_done,
            "trial {trial}: done went back from {last_done} to {done}"
        );
        last_done = done;
        dones.push((delay.as_millis(), done));
        assert_whole_batches(&mut conn, &db.store, imported, trial as usize).await;
    }
    eprintln!("kill -9 trials (delay ms, done): {dones:?}; {interrupted} of {TRIALS} interrupted");
    assert!(
        interrupted * 2 > TRIALS,
        "most trials must really interrupt the backfill: {interrupted} of {TRIALS} ({dones:?})"
    );
    assert!(last_done > 0, "the trials made progress: {dones:?}");

    let out = run(&["apply"], dir.path(), &db.url).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_whole_batches(&mut conn, &db.store, imported, TRIALS as usize).await;

    // Every account: support and connection copied from its own login
    // password, except a support password the member already had; nothing
    // else. Streamed: one row at a time against the hash it must be.
    let mut held: HashMap<String, i64> = HashMap::new();
    {
        let mut rows = sqlx::query_as::<_, (String, String, String)>(
            "SELECT a.login_id, c.name, c.hash FROM credentials c \
             JOIN accounts a ON a.id = c.account_id WHERE a.realm = $1",
        )
        .bind(REALM)
        .fetch(&mut conn);
        while let Some((id, name, hash)) = rows.try_next().await.expect("row") {
            let i: usize = id
                .strip_prefix("wk")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected account {id}"));
            let expected = match name.as_str() {
                "support" if presplit.contains_key(&i) => own_hash("support", i),
                "login" | "connection" | "support" => login_hash(i),
                other => panic!("{id}: unexpected credential {other}"),
            };
            assert_eq!(hash, expected, "{id}: {name}");
            *held.entry(name).or_default() += 1;
        }
    }
    let n = accounts as i64;
    let expected: HashMap<String, i64> = [("login", n), ("support", n), ("connection", n)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    // (account, name) is the primary key: n of each name means every account holds each.
    assert_eq!(
        held, expected,
        "every account holds login, support and connection"
    );
    let copied = count(
        &mut conn,
        "SELECT COUNT(*) FROM credentials WHERE set_via = $1",
        &[CUTOVER_VIA],
    )
    .await;
    assert_eq!(copied, (2 * accounts - presplit.len()) as i64);

    let checkpoint = db
        .store
        .checkpoint(CUTOVER)
        .await
        .expect("checkpoint")
        .expect("a checkpoint");
    assert_eq!(checkpoint.phase, CheckpointPhase::Completed);
    assert_eq!((checkpoint.done, checkpoint.total), (n, n));
    let starts = count(
        &mut conn,
        "SELECT COUNT(*) FROM audit_log WHERE action = 'cutover.start' AND detail LIKE $1",
        &[&format!("{CUTOVER}:%")],
    )
    .await;
    let completes = count(
        &mut conn,
        "SELECT COUNT(*) FROM audit_log WHERE action = 'cutover.complete' AND detail = $1",
        &[CUTOVER],
    )
    .await;
    assert_eq!((starts, completes), (1, 1), "one start and one completion");
    let all = count(
        &mut conn,
        "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'cutover.%'",
        &[],
    )
    .await;
    assert_eq!(all, 2, "no other cutover audit entries");
    eprintln!(
        "kill_9 on {} ({accounts} accounts): setup {:.1}s, total {:.1}s",
        backend.name(),
        setup.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------

/// IN SCOPE, SPLIT and TO COPY from plan's row for the cutover.
fn plan_numbers(stdout: &str) -> (i64, i64, i64) {
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "CUTOVER", "POLICY", "AT", "PHASE", "IN", "SCOPE", "SPLIT", "TO", "COPY", "ETA"
        ],
        "{stdout}"
    );
    let row: Vec<&str> = lines
        .find(|l| l.split_whitespace().next() == Some(CUTOVER))
        .unwrap_or_else(|| panic!("a row for {CUTOVER}: {stdout}"))
        .split_whitespace()
        .collect();
    assert_eq!(row.len(), 8, "{stdout}");
    let n = |i: usize| {
        row[i]
            .parse::<i64>()
            .unwrap_or_else(|e| panic!("{e}: {stdout}"))
    };
    (n(4), n(5), n(6))
}

async fn store_rows(conn: &mut sqlx::AnyConnection) -> [i64; 4] {
    [
        count(conn, "SELECT COUNT(*) FROM accounts", &[]).await,
        count(conn, "SELECT COUNT(*) FROM credentials", &[]).await,
        count(conn, "SELECT COUNT(*) FROM cutover_checkpoints", &[]).await,
        count(conn, "SELECT COUNT(*) FROM audit_log", &[]).await,
    ]
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

store_test!(plan_matches_what_apply_then_does, plan_then_apply);
async fn plan_then_apply(db: TestStore) {
    const ACCOUNTS: usize = 2_000;
    let started = Instant::now();
    let dir = manifests(100);
    // Pre-split: 7 hold both targets, 5 only support, 3 only connection.
    let mut extra: HashMap<usize, Vec<&str>> = HashMap::new();
    for i in 0..7 {
        extra.insert(100 + i * 250, vec!["support", "connection"]);
    }
    for i in 0..5 {
        extra.insert(130 + i * 300, vec!["support"]);
    }
    for i in 0..3 {
        extra.insert(170 + i * 500, vec!["connection"]);
    }
    populate(&db.store, ACCOUNTS, &extra).await;
    // Out of scope: members without the login password, one holding both
    // targets and one holding support; plan must not count them.
    for (login_id, names) in [
        ("zz-no-login-1", &["support", "connection"][..]),
        ("zz-no-login-2", &["support"][..]),
    ] {
        let account = db
            .store
            .create_account(
                REALM,
                login_id,
                "x@wakwak.example.jp",
                "test",
                Timestamp::now(),
            )
            .await
            .expect("out-of-scope account");
        for name in names {
            let write = credshift::store::CredentialWrite {
                name: (*name).into(),
                hash: "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/".into(),
                expected: credshift::store::Expected::Absent,
                via: "import".into(),
                must_change: false,
                action: "credential.set",
                kind: credshift::store::WriteKind::Set,
            };
            db.store
                .write_credential(&account, write, Timestamp::now())
                .await
                .expect("credential");
        }
    }
    let mut conn = raw(&db.url).await;
    let before = store_rows(&mut conn).await;

    let out = run(&["plan"], dir.path(), &db.url).await;
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let (in_scope, split, to_copy) = plan_numbers(&stdout);
    assert_eq!(
        (in_scope, split, to_copy),
        (
            ACCOUNTS as i64,
            7,
            (2 * ACCOUNTS - (7 + 5) - (7 + 3)) as i64
        ),
        "{stdout}"
    );
    assert!(stdout.contains("Running"), "2018 is past: {stdout}");
    assert_eq!(store_rows(&mut conn).await, before, "plan wrote nothing");
    assert!(db.store.checkpoint(CUTOVER).await.expect("cp").is_none());

    let out = run(&["apply"], dir.path(), &db.url).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let after = store_rows(&mut conn).await;
    assert_eq!(after[0], before[0], "apply created no accounts");
    assert_eq!(
        after[1] - before[1],
        to_copy,
        "credentials added == TO COPY"
    );
    let both = count(
        &mut conn,
        "SELECT COUNT(*) FROM accounts a WHERE a.realm = $1 AND \
         EXISTS (SELECT 1 FROM credentials c WHERE c.account_id = a.id AND c.name = 'login') AND \
         EXISTS (SELECT 1 FROM credentials c WHERE c.account_id = a.id AND c.name = 'support') AND \
         EXISTS (SELECT 1 FROM credentials c WHERE c.account_id = a.id AND c.name = 'connection')",
        &[REALM],
    )
    .await;
    assert_eq!(both, in_scope, "accounts holding both targets == IN SCOPE");
    let checkpoint = db
        .store
        .checkpoint(CUTOVER)
        .await
        .expect("checkpoint")
        .expect("a checkpoint");
    assert_eq!(checkpoint.phase, CheckpointPhase::Completed);
    assert_eq!(checkpoint.done, in_scope, "checkpoint done == IN SCOPE");

    // Planned again after the fact: completed, nothing left to copy.
    let out = run(&["plan"], dir.path(), &db.url).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(plan_numbers(&stdout), (in_scope, in_scope, 0), "{stdout}");
    assert!(stdout.contains("Completed"), "{stdout}");
    eprintln!(
        "plan_then_apply on {}: {:.1}s",
        db.store.backend().name(),
        started.elapsed().as_secs_f64()
    );
}

/// "Plan writes nothing" includes not creating the embedded store's file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_on_a_missing_sqlite_file_creates_nothing() {
    let dir = manifests(1000);
    let scratch = tempfile::tempdir().expect("dir");
    let missing = scratch.path().join("never.db");
    let out = run(&["plan"], dir.path(), &sqlite_url(&missing)).await;
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert_eq!(plan_numbers(&stdout), (0, 0, 0), "{stdout}");
    let left: Vec<PathBuf> = std::fs::read_dir(scratch.path())
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(
        left.is_empty(),
        "plan on a missing SQLite file must not create it: {left:?}"
    );
}

// ---------------------------------------------------------------------------

/// Runs apply on `dir` and checks it is refused with exit code 2, touching
/// neither the given store nor (SQLite) a store file that does not exist yet.
async fn refused(db: &TestStore, dir: &Path) -> String {
    let mut conn = raw(&db.url).await;
    let before = store_rows(&mut conn).await;
    let out = run(&["apply"], dir, &db.url).await;
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}\n{stderr}",
        text(&out.stdout)
    );
    assert_eq!(
        store_rows(&mut conn).await,
        before,
        "the store is untouched"
    );
    if db.store.backend() == Backend::Sqlite {
        let scratch = tempfile::tempdir().expect("dir");
        let fresh = scratch.path().join("fresh.db");
        let out = run(&["apply"], dir, &sqlite_url(&fresh)).await;
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert_eq!(text(&out.stderr), stderr, "the same message");
        let left: Vec<PathBuf> = std::fs::read_dir(scratch.path())
            .expect("read dir")
            .map(|e| e.expect("entry").path())
            .collect();
        assert!(left.is_empty(), "no store file was created: {left:?}");
    }
    stderr
}

store_test!(
    apply_rejects_invalid_yaml_with_file_line_column_and_writes_nothing,
    invalid_yaml
);
async fn invalid_yaml(db: TestStore) {
    // A member file is there too: a run that got past the input check would import it.
    let dir = manifests(1000);
    std::fs::write(dir.path().join("members.csv"), example("members.csv")).expect("members");

    // 1. A syntax error: `recovery:` of `login` indented one column too little.
    let good = example("policy.yaml");
    let target = "      recovery:\n        mode: Helpdesk\n    # Member support password";
    assert!(good.contains(target));
    let broken = good.replacen(
        target,
        "     recovery:\n        mode: Helpdesk\n    # Member support password",
        1,
    );
    let (index, line) = broken
        .lines()
        .enumerate()
        .find(|(_, l)| *l == "     recovery:")
        .expect("the broken line");
    let broken_line = index as u64 + 1;
    std::fs::write(dir.path().join("policy.yaml"), &broken).expect("write");
    let stderr = refused(&db, dir.path()).await;
    let prefix = format!("{}:", dir.path().join("policy.yaml").display());
    let at = stderr
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("an error naming policy.yaml: {stderr}"));
    let mut parts = at.splitn(3, ':');
    let (l, c) = (
        parts.next().and_then(|v| v.parse::<u64>().ok()),
        parts.next().and_then(|v| v.parse::<u64>().ok()),
    );
    let (Some(l), Some(c)) = (l, c) else {
        panic!("policy.yaml:LINE:COL: expected: {stderr}");
    };
    assert_eq!(
        l, broken_line,
        "the line of {line:?} ({broken_line}): {stderr}"
    );
    let column = line.len() - line.trim_start().len() + 1;
    assert_eq!(
        c, column as u64,
        "the column of `recovery` on {line:?}: {stderr}"
    );
    eprintln!("syntax error reported as: {}", stderr.trim());

    // 2. Well-formed YAML, but split.into names a credential the policy lacks.
    std::fs::write(dir.path().join("policy.yaml"), example("policy.yaml")).expect("write");
    let cutover = example("cutover.yaml");
    assert!(cutover.contains("into: [support, connection]"));
    std::fs::write(
        dir.path().join("cutover.yaml"),
        cutover.replace("into: [support, connection]", "into: [support, conection]"),
    )
    .expect("write");
    let stderr = refused(&db, dir.path()).await;
    assert!(
        stderr.contains("cutover.yaml:") && stderr.contains("spec.split.into[1]"),
        "{stderr}"
    );
    assert!(stderr.contains("conection"), "{stderr}");
    assert!(!stderr.contains("spec.split.into[0]"), "{stderr}");
}
