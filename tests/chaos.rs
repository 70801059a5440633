//! Fault injection against the cluster driver (issue 8): the real
//! `credshift controller` binary on a real kube-apiserver + etcd and a real
//! PostgreSQL store, with the controller killed, the store stopped or the API
//! server stopped in the middle of a cutover. Each time the cutover then
//! completes and every account is split exactly once: nothing lost, nothing
//! repeated, nothing touched that the split does not own
//! (`assert_split_exactly_once`).
//!
//! The tests take turns (`SERIAL`): each one loads a 2-core machine fully,
//! and their faults are aimed at moments of partial progress.

// A panic in a test is its failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use credshift::resources::{CredentialCutover, CutoverPhase};
use kube::api::Api;
use sqlx::Connection as _;

use support::cluster::{Scene, apply, apply_with, client_for, example, future_cutover, wait_for};
use support::controller::{self, ControllerProcess};

/// One chaos test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const REALM: &str = "wakwak";
const CUTOVER: &str = "split-chaos";

/// When the members were imported (Unix ms): 2018-03-29T00:00:00Z.
const IMPORTED_AT: i64 = 1_522_281_600_000;

/// Real hashes of other schemes, as a legacy system exported them
/// (`examples/2018-split/members.csv`): every 10th member holds one.
const LEGACY_HASHES: [&str; 6] = [
    "$1$1gX4bIp9$gPaGv77vYGg2MTJZbL8uD0",
    "$6$rounds=656000$fnbFM7DtxAMOkpvj$g1JLGcNGM2r/qAck2q9Pp41F5w2bN79wXiumoO7rYx18kifwCRfySDIfC0zs6ix3NYCbQuo8.pCB.Ujo3W9/Q/",
    "$2b$08$GBsxoNhv2.jX5d9Ulda57O25kNrd5KjRbNRpidxqIVg7ama2pQWk6",
    "{SSHA}n4aroAzwV5yuMHiibbd0zgr5xV+F8F6r",
    "$5$rounds=535000$ApWRjQhXkiuJOTgx$EpAhbV5SI.wCrnvbpoy1/tvQCypFvMibzPAFGILooy4",
    "$argon2id$v=19$m=19456,t=2,p=1$2ntPybmXMmYMYezdmzOmdA$Uw+T+4rIxO1getUraQVBwTx3bhuLu6TBj+Z7xKadXts",
];

/// A real `{SSHA256}` hash of `PREFIX-password-I` salted with I (4 bytes,
/// big-endian), computed by PostgreSQL.
fn ssha256_sql(prefix: &str) -> String {
    format!(
        "'{{SSHA256}}' || encode(sha256(convert_to('{prefix}-password-' || i, 'UTF8') || int4send(i::int)) \
         || int4send(i::int), 'base64')"
    )
}

/// Migrates an empty store with `credshift store migrate` and loads it with
/// bulk SQL: `n` members of realm wakwak holding `login` (member i a real
/// `{SSHA256}` hash of its own password, every 10th one a legacy hash
/// instead, every 50th also a `mail` password), and, out of the cutover's
/// scope, 500 wakwak members without `login` and 500 members of another
/// realm with one.
async fn load_members(url: &str, n: i64) {
    let out = support::credshift()
        .args(["store", "migrate", "--store", url])
        .output()
        .expect("run credshift store migrate");
    assert!(
        out.status.success(),
        "credshift store migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to the store");
    let accounts = "INSERT INTO accounts (realm, login_id, base_email, created_at, updated_at) \
         SELECT $1, $2 || lpad(i::text, 7, '0'), $2 || i || '@example.jp', $3, $3 \
         FROM generate_series(0, $4 - 1) AS i";
    for (realm, prefix, count) in [(REALM, "wk", n), (REALM, "nl", 500), ("other", "ot", 500)] {
        sqlx::query(accounts)
            .bind(realm)
            .bind(prefix)
            .bind(IMPORTED_AT)
            .bind(count)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("insert {count} {prefix} accounts: {e}"));
    }
    let login = ssha256_sql("login");
    // Constants without quotes: safe to inline.
    let legacy = LEGACY_HASHES
        .iter()
        .map(|h| format!("'{h}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let credentials = [
        (
            "login",
            REALM,
            "wk",
            n,
            format!(
                "CASE WHEN i % 10 = 9 THEN (ARRAY[{legacy}])[1 + (i / 10) % {}] ELSE {login} END",
                LEGACY_HASHES.len()
            ),
            "TRUE",
        ),
        ("mail", REALM, "wk", n, ssha256_sql("mail"), "i % 50 = 0"),
        ("mail", REALM, "nl", 500, ssha256_sql("mail"), "TRUE"),
        ("login", "other", "ot", 500, login.clone(), "TRUE"),
    ];
    for (name, realm, prefix, count, hash, filter) in credentials {
        let sql = format!(
            "INSERT INTO credentials (account_id, name, hash, set_at, set_via) \
             SELECT a.id, $5, {hash}, $3, 'import' FROM generate_series(0, $4 - 1) AS i \
             JOIN accounts a ON a.realm = $1 AND a.login_id = $2 || lpad(i::text, 7, '0') \
             WHERE {filter}"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(realm)
            .bind(prefix)
            .bind(IMPORTED_AT)
            .bind(count)
            .bind(name)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("insert {name} of {prefix} accounts: {e}"));
    }
    sqlx::raw_sql("ANALYZE")
        .execute(&mut conn)
        .await
        .expect("ANALYZE");
    // The generated hashes are real ones of the members' passwords.
    for (i, name) in [(0, "login"), (1, "login"), (50, "mail")] {
        let hash: String = sqlx::query_scalar(
            "SELECT c.hash FROM credentials c JOIN accounts a ON a.id = c.account_id \
             WHERE a.realm = $1 AND a.login_id = $2 AND c.name = $3",
        )
        .bind(REALM)
        .bind(format!("wk{i:07}"))
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .expect("a generated hash");
        let password = format!("{name}-password-{i}");
        assert!(
            credshift::hashing::verify_password(&password.as_str().into(), &hash)
                .expect("a valid {SSHA256} hash"),
            "{hash} is a real hash of {password}"
        );
    }
    let in_scope: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM credentials c JOIN accounts a ON a.id = c.account_id \
         WHERE a.realm = $1 AND c.name = 'login'",
    )
    .bind(REALM)
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(in_scope, n, "members holding login in {REALM}");
    let _ = conn.close().await;
}

/// One credential row, everything but its key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Credential {
    hash: String,
    set_at: i64,
    set_via: String,
    must_change: i16,
    version: i64,
}

/// The store before the cutover.
struct Snapshot {
    /// Every credential, by (account id, name).
    credentials: HashMap<(i64, String), Credential>,
    /// Every account: id -> (realm, login ID).
    accounts: HashMap<i64, (String, String)>,
    /// Rows in credential_history.
    history: i64,
}

type CredentialRow = (i64, String, String, i64, String, i16, i64);

async fn credentials(conn: &mut sqlx::PgConnection) -> HashMap<(i64, String), Credential> {
    let rows: Vec<CredentialRow> = sqlx::query_as(
        "SELECT account_id, name, hash, set_at, set_via, must_change, version FROM credentials",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("read every credential");
    rows.into_iter()
        .map(
            |(account, name, hash, set_at, set_via, must_change, version)| {
                (
                    (account, name),
                    Credential {
                        hash,
                        set_at,
                        set_via,
                        must_change,
                        version,
                    },
                )
            },
        )
        .collect()
}

async fn accounts(conn: &mut sqlx::PgConnection) -> HashMap<i64, (String, String)> {
    let rows: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, realm, login_id FROM accounts")
            .fetch_all(&mut *conn)
            .await
            .expect("read every account");
    rows.into_iter().map(|(id, r, l)| (id, (r, l))).collect()
}

async fn history(conn: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM credential_history")
        .fetch_one(&mut *conn)
        .await
        .expect("count credential_history")
}

impl Snapshot {
    async fn take(url: &str) -> Snapshot {
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .expect("connect to the store");
        let snapshot = Snapshot {
            credentials: credentials(&mut conn).await,
            accounts: accounts(&mut conn).await,
            history: history(&mut conn).await,
        };
        let _ = conn.close().await;
        snapshot
    }
}

/// The invariant every fault must leave once the cutover completed:
/// - every credential of the snapshot is still there, unchanged (`login`
///   and the out-of-scope ones untouched);
/// - every wakwak account that held `login` holds exactly one `support` and
///   one `connection`, each a copy of its own login hash written by the
///   cutover, and there is no other new row anywhere (no account outside the
///   scope got anything, no history, no account);
/// - the checkpoint is completed with `in_scope` of `in_scope`, and the audit
///   log has exactly one start and one completion of the cutover.
async fn assert_split_exactly_once(url: &str, before: &Snapshot, in_scope: i64) {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to the store");
    let after = credentials(&mut conn).await;
    assert_eq!(
        accounts(&mut conn).await,
        before.accounts,
        "the accounts are as they were"
    );
    assert_eq!(
        history(&mut conn).await,
        before.history,
        "no credential history was written"
    );

    let mut problems = Vec::new();
    for (key, old) in &before.credentials {
        match after.get(key) {
            Some(now) if now == old => {}
            Some(now) => problems.push(format!("{key:?} changed: {old:?} -> {now:?}")),
            None => problems.push(format!("{key:?} lost: {old:?}")),
        }
    }
    let via = format!("cutover:{CUTOVER}");
    let mut copies: HashMap<(i64, &str), u32> = HashMap::new();
    for ((account, name), new) in &after {
        if before.credentials.contains_key(&(*account, name.clone())) {
            continue;
        }
        let (realm, login_id) = &before.accounts[account];
        let Some(login) = before.credentials.get(&(*account, "login".to_owned())) else {
            problems.push(format!(
                "{realm}/{login_id} had no login but got {name}: {new:?}"
            ));
            continue;
        };
        if realm != REALM || (name != "support" && name != "connection") {
            problems.push(format!("{realm}/{login_id}: unexpected {name}: {new:?}"));
            continue;
        }
        if new.hash != login.hash || new.set_via != via {
            problems.push(format!(
                "{realm}/{login_id}: {name} is not the cutover's copy of login ({:?} via {}), \
                 login is {:?}",
                new.hash, new.set_via, login.hash
            ));
        }
        *copies.entry((*account, name.as_str())).or_default() += 1;
    }
    let in_scope_accounts = before
        .credentials
        .keys()
        .filter(|(account, name)| name == "login" && before.accounts[account].0 == REALM);
    for (account, _) in in_scope_accounts {
        for target in ["support", "connection"] {
            let n = copies.get(&(*account, target)).copied().unwrap_or(0);
            if n != 1 {
                let login_id = &before.accounts[account].1;
                problems.push(format!("{login_id}: {n} {target} credentials, not 1"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems, the first 20:\n{}",
        problems.len(),
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Nothing lost, so this counts the new rows.
    assert_eq!(
        (after.len() - before.credentials.len()) as i64,
        2 * in_scope,
        "exactly two new credentials per account in scope"
    );

    let (phase, done, total): (String, i64, i64) =
        sqlx::query_as("SELECT phase, done, total FROM cutover_checkpoints")
            .fetch_one(&mut conn)
            .await
            .expect("the one checkpoint");
    assert_eq!(
        (phase.as_str(), done, total),
        ("completed", in_scope, in_scope),
        "the checkpoint"
    );
    let audited: Vec<(String, i64)> = sqlx::query_as(
        "SELECT action, COUNT(*) FROM audit_log WHERE action LIKE 'cutover.%' \
         GROUP BY action ORDER BY action",
    )
    .fetch_all(&mut conn)
    .await
    .expect("audit log");
    // Declared once when it was first seen scheduled (not when `at` had passed).
    let (declared, steps): (Vec<_>, Vec<_>) = audited
        .into_iter()
        .partition(|(action, _)| action == "cutover.declare");
    assert!(
        declared.iter().all(|(_, n)| *n == 1),
        "declared once: {declared:?}"
    );
    assert_eq!(
        steps,
        [
            ("cutover.complete".to_owned(), 1),
            ("cutover.start".to_owned(), 1)
        ],
        "one start and one completion, nothing repeated"
    );
    let _ = conn.close().await;
}

/// The checkpoint of the one cutover in the store: (phase, done, total).
async fn checkpoint(conn: &mut sqlx::PgConnection) -> Option<(String, i64, i64)> {
    sqlx::query_as("SELECT phase, done, total FROM cutover_checkpoints")
        .fetch_optional(&mut *conn)
        .await
        .expect("read the checkpoint")
}

/// Waits until no session but this one is left on this database (the killed
/// controller's backends have committed or rolled back and exited).
async fn sessions_ended(conn: &mut sqlx::PgConnection) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let others: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut *conn)
        .await
        .expect("read pg_stat_activity");
        if others == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{others} sessions of the killed controller still open after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// (phase, done, total) of a cutover's status.
fn progress(c: &CredentialCutover) -> (Option<CutoverPhase>, i64, i64) {
    let status = c.status.as_ref();
    let p = status.and_then(|s| s.progress.as_ref());
    (
        status.and_then(|s| s.phase),
        p.map_or(0, |p| p.done),
        p.map_or(0, |p| p.total),
    )
}

/// Waits until the cutover's status says Completed with `total` of `total`.
async fn wait_completed(api: &Api<CredentialCutover>, total: i64, timeout: Duration) {
    let c = wait_for(api, CUTOVER, timeout, "cutover Completed", |c| {
        progress(c).0 == Some(CutoverPhase::Completed)
    })
    .await;
    let (_, done, shown) = progress(&c);
    assert_eq!((done, shown), (total, total), "progress when Completed");
}

/// The example policy and a copy of the 2018 cutover starting in a few
/// seconds, in batches of `batch_size`.
fn manifests(batch_size: u32) -> (String, String) {
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(4)).to_string();
    let cutover = future_cutover(CUTOVER, &at);
    assert!(cutover.contains("batchSize: 1000"), "{cutover}");
    (
        example("policy.yaml"),
        cutover.replace("batchSize: 1000", &format!("batchSize: {batch_size}")),
    )
}

/// Waits until the cutover's status shows it Running, at least a fifth of
/// `accounts` done and not all; returns the progress then.
async fn a_fifth_of_the_way(api: &Api<CredentialCutover>, accounts: i64) -> i64 {
    let c = wait_for(
        api,
        CUTOVER,
        Duration::from_secs(120),
        "a fifth of the way",
        |c| {
            let (phase, done, total) = progress(c);
            phase == Some(CutoverPhase::Running) && done >= accounts / 5 && done < total
        },
    )
    .await;
    progress(&c).1
}

/// Keeps a fault in place until 5 s after `since`, asserting all along that
/// the controller stays up.
async fn hold(ctl: &mut ControllerProcess, since: Instant, what: &str) {
    while since.elapsed() < Duration::from_secs(5) {
        assert_running(ctl, what);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Panics with the end of the controller's log when it has exited.
fn assert_running(ctl: &mut ControllerProcess, what: &str) {
    if let Some(status) = ctl.process.exited() {
        panic!(
            "{what}: the controller exited ({status}); its log ends:\n{}",
            tail(&ctl.log_text(), 40)
        );
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// splitmix64: a small seeded generator, no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Where one kill landed.
#[derive(Debug)]
struct Kill {
    /// The checkpoint right after the process died.
    checkpoint_done: i64,
    /// Progress in the cutover's status right after the kill.
    status_done: i64,
    /// From the (re)start to this incarnation's first committed batch.
    resumed_after: Duration,
    /// Accounts this incarnation split from its first batch to its kill, and in how long.
    ran: (i64, Duration),
}

// ---------------------------------------------------------------------------

/// Injected: `kill -9` of the only controller at 25 random points of a
/// running 200,000-account cutover on PostgreSQL; after each kill it is
/// started again (same identity, so it takes the lease back at once).
/// The points are drawn from a seeded generator as a number of accounts, not
/// a time, so that they spread over the cutover on a fast machine as on a
/// slow one: each incarnation is killed once it has split a random number of
/// accounts past its first committed batch, between none and its even share
/// of what is left up to 90 %. The checkpoint is polled every 5 ms, so kills
/// land at arbitrary moments of batch transactions, progress counts and
/// status writes alike.
/// Checked: every kill interrupted a running cutover (this incarnation
/// committed a batch, and the checkpoint after the kill is strictly between
/// the previous kill's and the total); the status never goes backwards; after
/// the last restart the cutover reaches Completed 200000/200000 and
/// `assert_split_exactly_once` holds against a snapshot taken before the
/// cutover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_controller_at_25_random_points_of_a_200k_cutover_on_postgres_loses_nothing() {
    const ACCOUNTS: i64 = 200_000;
    const KILLS: usize = 25;
    /// The kills are spread up to this share of the accounts.
    const SPREAD_TO: f64 = 0.90;
    let _turn = SERIAL.lock().await;
    let started = Instant::now();
    let seed = std::env::var("CREDSHIFT_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    eprintln!("chaos seed {seed} (CREDSHIFT_CHAOS_SEED={seed} repeats these kill points)");
    let mut rng = Rng(seed);

    let Scene { client, ns, dir } = Scene::new().await;
    let url = support::postgres::server().fresh_database().await;
    load_members(&url, ACCOUNTS).await;
    let before = Snapshot::take(&url).await;
    let loaded = started.elapsed();

    let (policy, cutover) = manifests(200);
    apply(&ns, &policy);
    apply(&ns, &cutover);
    let cutovers: Api<CredentialCutover> = Api::namespaced(client.clone(), &ns);
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("connect to the store");

    let start = |run: usize| {
        let log_dir = dir.path().join(format!("run-{run:02}"));
        std::fs::create_dir_all(&log_dir).expect("log dir");
        controller::start(&ns, &url, "chaos", &log_dir)
    };

    let mut kills: Vec<Kill> = Vec::new();
    let mut ctl = start(0);
    let mut restarted = Instant::now();
    for k in 0..KILLS {
        let last = kills.last().map_or(0, |k| k.checkpoint_done);
        let deadline = Instant::now() + Duration::from_secs(180);
        // (when, checkpoint) of this incarnation's first committed batch, and
        // how many accounts it may split after that.
        let mut resumed: Option<(Instant, i64, i64)> = None;
        let (resumed_at, resumed_from) = loop {
            assert_running(&mut ctl, &format!("before kill {k}"));
            let (cp_phase, cp_done, cp_total) = checkpoint(&mut conn)
                .await
                .unwrap_or_else(|| ("none".into(), 0, 0));
            assert!(
                cp_phase != "completed",
                "the cutover completed before kill {k} (checkpoint {cp_done}/{cp_total}); \
                 kills so far: {kills:?}"
            );
            if cp_phase == "running" && cp_done > last {
                let (at, from, budget) = *resumed.get_or_insert_with(|| {
                    let share = ((SPREAD_TO * ACCOUNTS as f64 - cp_done as f64)
                        / (KILLS - k) as f64)
                        .max(0.0);
                    (Instant::now(), cp_done, (rng.unit() * share) as i64)
                });
                if cp_done >= from + budget {
                    break (at, from);
                }
            }
            assert!(
                Instant::now() < deadline,
                "kill {k}: the checkpoint did not pass {last} and reach its target within 180 s \
                 (checkpoint {cp_phase} {cp_done}); log ends:\n{}",
                tail(&ctl.log_text(), 40)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        ctl.kill();
        let killed_at = Instant::now();
        assert!(
            !ctl.log_text().contains("panicked"),
            "run {k}: {}",
            tail(&ctl.log_text(), 40)
        );
        // A COMMIT the process sent before it died may still be applied:
        // read the checkpoint once the server has ended its sessions.
        sessions_ended(&mut conn).await;
        let (cp_phase, cp_done, cp_total) = checkpoint(&mut conn).await.expect("a checkpoint");
        assert!(
            cp_phase == "running" && last < cp_done && cp_done < cp_total,
            "kill {k} did not interrupt a running cutover: checkpoint {cp_phase} {cp_done}/{cp_total}, \
             previous kill at {last}"
        );
        let status_done = cutovers
            .get(CUTOVER)
            .await
            .ok()
            .as_ref()
            .map_or(0, |c| progress(c).1);
        kills.push(Kill {
            checkpoint_done: cp_done,
            status_done,
            resumed_after: resumed_at - restarted,
            ran: (cp_done - resumed_from, killed_at - resumed_at),
        });
        ctl = start(k + 1);
        restarted = Instant::now();
    }

    wait_completed(&cutovers, ACCOUNTS, Duration::from_secs(180)).await;
    let last_run = restarted.elapsed();
    assert_running(&mut ctl, "after completion");
    let cutover_done = started.elapsed();
    assert_split_exactly_once(&url, &before, ACCOUNTS).await;

    let dones: Vec<i64> = kills.iter().map(|k| k.checkpoint_done).collect();
    let shown: Vec<i64> = kills.iter().map(|k| k.status_done).collect();
    assert_eq!(kills.len(), KILLS);
    assert!(
        dones.windows(2).all(|w| w[0] < w[1]) && shown.windows(2).all(|w| w[0] <= w[1]),
        "progress increased across kills, and the status never went back: checkpoint \
         {dones:?}, status {shown:?}"
    );
    let (ran, ran_for) = kills
        .iter()
        .fold((0, Duration::ZERO), |(n, t), k| (n + k.ran.0, t + k.ran.1));
    let resume: Vec<f64> = kills
        .iter()
        .map(|k| k.resumed_after.as_secs_f64())
        .collect();
    eprintln!(
        "{KILLS} kills at checkpoint {dones:?} (status then {shown:?})\n\
         resumed after a restart in {:.1}-{:.1} s (mean {:.1} s); backfill rate between \
         resume and kill {:.0} accounts/s; last run (restart to Completed) {:.1} s\n\
         load {:.1} s, cutover with kills {:.1} s, test {:.1} s (seed {seed})",
        resume.iter().copied().fold(f64::INFINITY, f64::min),
        resume.iter().copied().fold(0.0, f64::max),
        resume.iter().sum::<f64>() / resume.len() as f64,
        ran as f64 / ran_for.as_secs_f64().max(0.001),
        last_run.as_secs_f64(),
        loaded.as_secs_f64(),
        (cutover_done - loaded).as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
}

/// Injected: the PostgreSQL server of the store crashes (`pg_ctl stop -m
/// immediate`: open transactions are lost, and so are the last batches,
/// whose commits do not wait for the WAL to reach the disk) while a
/// 50,000-account cutover is partway, is held down for 5 s, and starts
/// again with crash recovery.
/// Checked: while it is down the controller keeps running, reports it (a
/// `reconcile failed` log line for the cutover naming the store error,
/// /readyz 503) and the cutover stays Running; once it is back the cutover
/// completes 50000/50000 and `assert_split_exactly_once` holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_cutover_the_cutover_completes_with_nothing_lost() {
    const ACCOUNTS: i64 = 50_000;
    let _turn = SERIAL.lock().await;
    let started = Instant::now();
    let Scene { client, ns, dir } = Scene::new().await;
    let pg = support::postgres::Dedicated::start_new();
    let url = pg.url();
    load_members(&url, ACCOUNTS).await;
    let before = Snapshot::take(&url).await;

    let (policy, cutover) = manifests(50);
    apply(&ns, &policy);
    apply(&ns, &cutover);
    let cutovers: Api<CredentialCutover> = Api::namespaced(client.clone(), &ns);
    let mut ctl = controller::start_full(
        &support::kube::api_server().kubeconfig,
        &ns,
        &url,
        "chaos-pg",
        dir.path(),
        &[],
        &[("CREDSHIFT_LOG_FORMAT", "json")],
    );
    ctl.wait_ready(Duration::from_secs(120));

    let at_stop = a_fifth_of_the_way(&cutovers, ACCOUNTS).await;
    // What was logged before the store stopped (say, a finalizer patch that
    // lost a race with the watch) is not the report looked for.
    let logged_before = ctl.log_text().len();
    pg.crash();
    let stopped = Instant::now();

    // The controller notices, says so, and stays up.
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        assert_running(&mut ctl, "with the store down");
        let log = ctl.log_text();
        let failed = log
            .get(logged_before..)
            .unwrap_or_default()
            .lines()
            .find_map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                (v["message"] == "reconcile failed" && v["kind"] == "CredentialCutover")
                    .then(|| v["error"].as_str().unwrap_or_default().to_owned())
            });
        if let Some(error) = failed {
            break error;
        }
        assert!(
            Instant::now() < deadline,
            "no `reconcile failed` for the cutover within 60 s of stopping the store; log ends:\n{}",
            tail(&ctl.log_text(), 40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        report.contains("store"),
        "the error names the store: {report}"
    );
    assert!(
        matches!(ctl.get("/readyz"), Some((503, _))),
        "/readyz fails while the store is down"
    );
    hold(&mut ctl, stopped, "with the store down").await;
    let (phase, done, _) = progress(&cutovers.get(CUTOVER).await.expect("cutover"));
    assert_eq!(
        phase,
        Some(CutoverPhase::Running),
        "still Running with the store down"
    );
    assert!(done < ACCOUNTS, "not complete with the store down: {done}");
    let down_for = stopped.elapsed();

    pg.start();
    let back = Instant::now();
    wait_completed(&cutovers, ACCOUNTS, Duration::from_secs(180)).await;
    let completed_after = back.elapsed();
    assert_running(&mut ctl, "after completion");
    assert!(!ctl.log_text().contains("panicked"));
    assert_split_exactly_once(&url, &before, ACCOUNTS).await;
    eprintln!(
        "store stopped at {at_stop}/{ACCOUNTS}, down {:.1} s (error: {report}); \
         Completed {:.1} s after it was back; test {:.1} s",
        down_for.as_secs_f64(),
        completed_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// Injected: the controller's (own) kube-apiserver + etcd is stopped while a
/// 50,000-account cutover is partway, held down for 5 s and started again on
/// the same state.
/// Checked: the API server really went down mid-cutover (the checkpoint is
/// still running then); the controller keeps running through the outage and,
/// once the API server is back (its watchers back off for up to ~50 s), the
/// status shows Completed 50000/50000; `assert_split_exactly_once` holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_restarted_mid_cutover_the_cutover_completes_with_nothing_lost() {
    const ACCOUNTS: i64 = 50_000;
    let _turn = SERIAL.lock().await;
    let started = Instant::now();
    let mut server = support::kube::Restartable::start_new();
    let run = |mut cmd: std::process::Command| {
        let out = cmd.output().expect("kubectl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut cmd = server.kubectl();
    cmd.arg("apply").arg("-f").arg(&crds);
    run(cmd);
    let mut cmd = server.kubectl();
    cmd.args([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/credentialpolicies.credshift.dev",
        "crd/credentialcutovers.credshift.dev",
    ]);
    run(cmd);
    let mut cmd = server.kubectl();
    cmd.args(["create", "namespace", "isp"]);
    run(cmd);

    let dir = tempfile::tempdir().expect("dir");
    let url = support::postgres::server().fresh_database().await;
    load_members(&url, ACCOUNTS).await;
    let before = Snapshot::take(&url).await;
    let (policy, cutover) = manifests(50);
    apply_with(server.kubectl(), "isp", &policy);
    apply_with(server.kubectl(), "isp", &cutover);
    let mut ctl = controller::start_with(&server.kubeconfig, "isp", &url, "chaos-api", dir.path());
    ctl.wait_ready(Duration::from_secs(120));

    let cutovers: Api<CredentialCutover> =
        Api::namespaced(client_for(&server.kubeconfig).await, "isp");
    a_fifth_of_the_way(&cutovers, ACCOUNTS).await;
    server.stop();
    let stopped = Instant::now();
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("connect to the store");
    let (phase, at_stop, total) = checkpoint(&mut conn).await.expect("a checkpoint");
    assert!(
        phase == "running" && 0 < at_stop && at_stop < total,
        "the API server went down mid-cutover: checkpoint {phase} {at_stop}/{total}"
    );
    hold(&mut ctl, stopped, "with the API server down").await;
    let (_, during, _) = checkpoint(&mut conn).await.expect("a checkpoint");
    let _ = conn.close().await;
    let down_for = stopped.elapsed();

    server.start();
    let back = Instant::now();
    let cutovers: Api<CredentialCutover> =
        Api::namespaced(client_for(&server.kubeconfig).await, "isp");
    wait_completed(&cutovers, ACCOUNTS, Duration::from_secs(240)).await;
    let completed_after = back.elapsed();
    assert_running(&mut ctl, "after completion");
    assert!(!ctl.log_text().contains("panicked"));
    assert_split_exactly_once(&url, &before, ACCOUNTS).await;
    eprintln!(
        "API server stopped at checkpoint {at_stop}/{ACCOUNTS} ({during} when it came back), \
         down {:.1} s; Completed {:.1} s after it was back; test {:.1} s",
        down_for.as_secs_f64(),
        completed_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
