//! What the test watches besides the clients: the cutover's checkpoint,
//! a row another application holds, the invariant over every account, and
//! the latencies.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use sqlx::Connection as _;

use crate::clients::{Call, Client, Ctx, Record, Want};
use crate::population::{Member, Population};
use crate::support::serve::block_on;
use crate::{CUTOVER, REALM};

/// A cutover checkpoint: (phase, done, total).
pub type Progress = (String, i64, i64);

/// The cutover's checkpoint, `None` before it starts.
pub async fn checkpoint(conn: &mut sqlx::PgConnection) -> Option<Progress> {
    sqlx::query_as("SELECT phase, done, total FROM cutover_checkpoints WHERE cutover = $1")
        .bind(CUTOVER)
        .fetch_optional(conn)
        .await
        .expect("read the checkpoint")
}

/// Checkpoint samples taken every 50 ms by a thread until `stop`.
pub fn monitor(
    url: String,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<(Instant, Option<Progress>)> {
    block_on(async {
        let mut conn = sqlx::PgConnection::connect(&url)
            .await
            .expect("monitor connects");
        let mut samples = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            samples.push((Instant::now(), checkpoint(&mut conn).await));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        samples
    })
}

/// Sets the flag when dropped.
pub struct StopOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Another application's transaction holding one account row `FOR UPDATE`
/// until released. The backfill batch that reaches that account waits for it
/// (its copy takes a key-share lock on the row), so the cutover stays in its
/// dual-read phase for as long as the hold lasts, on a fast machine as on a
/// slow one; nothing else waits, since no client touches that account.
pub struct RowHold {
    pub release: std::sync::mpsc::Sender<()>,
    pub thread: std::thread::JoinHandle<()>,
}

impl RowHold {
    /// Locks account `id` and returns once the lock is held.
    pub fn start(url: &str, id: i64) -> RowHold {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (held_tx, held) = std::sync::mpsc::channel::<()>();
        let url = url.to_owned();
        let thread = std::thread::spawn(move || {
            block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url)
                    .await
                    .expect("the holder connects");
                let mut tx = conn.begin().await.expect("BEGIN");
                sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .expect("lock the held account");
                let _ = held_tx.send(());
                // Sender dropped or a message: either way, let go.
                let _ = released.recv();
                tx.commit().await.expect("COMMIT the hold");
            })
        });
        held.recv().expect("the holder locked its row");
        RowHold { release, thread }
    }

    pub fn release(self) {
        let _ = self.release.send(());
        self.thread.join().expect("the holder");
    }
}

/// The in-scope account (holding `login`) with the highest id that no client
/// knows: the backfill reaches it in its last batches. [`RowHold`] holds it.
pub async fn last_unknown_in_scope(url: &str, known: &[Member]) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let known: Vec<String> = known.iter().map(|m| m.login_id.clone()).collect();
    let id: i64 = sqlx::query_scalar(
        "SELECT a.id FROM accounts a JOIN credentials c ON c.account_id = a.id \
         WHERE a.realm = $1 AND c.name = 'login' AND a.login_id <> ALL($2) \
         ORDER BY a.id DESC LIMIT 1",
    )
    .bind(REALM)
    .bind(&known)
    .fetch_one(&mut conn)
    .await
    .expect("the last unknown account in scope");
    let _ = conn.close().await;
    id
}

/// `credshift_api_requests_total{endpoint, outcome}` from /metrics.
pub fn metric(text: &str, endpoint: &str, outcome: &str) -> usize {
    let (e, o) = (
        format!("endpoint=\"{endpoint}\""),
        format!("outcome=\"{outcome}\""),
    );
    text.lines()
        .filter(|l| {
            l.starts_with("credshift_api_requests_total{") && l.contains(&e) && l.contains(&o)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as usize
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

pub fn print_latencies(calls: &[Call], elapsed: Duration) {
    let mut by_endpoint: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for c in calls {
        by_endpoint.entry(c.endpoint).or_default().push(c.took);
        by_endpoint.entry("all").or_default().push(c.took);
    }
    eprintln!(
        "load: {} requests in {:.1}s = {:.1} requests/s",
        calls.len(),
        elapsed.as_secs_f64(),
        calls.len() as f64 / elapsed.as_secs_f64()
    );
    for (endpoint, mut v) in by_endpoint {
        v.sort();
        eprintln!(
            "  {endpoint:<20} n={:<5} p50={:>6.0?} p90={:>6.0?} p99={:>6.0?} max={:>6.0?}",
            v.len(),
            percentile(&v, 50),
            percentile(&v, 90),
            percentile(&v, 99),
            v[v.len() - 1]
        );
    }
}

/// The cutover invariant over every account, read from the store.
pub async fn check_invariant(
    url: &str,
    population: &Population,
    touched: &HashSet<String>,
) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
        i64,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.login_id, \
           MAX(c.hash) FILTER (WHERE c.name = 'login'), \
           MAX(c.hash) FILTER (WHERE c.name = 'support'), \
           MAX(c.hash) FILTER (WHERE c.name = 'connection'), \
           MAX(c.hash) FILTER (WHERE c.name = 'mail'), \
           COUNT(*) FILTER (WHERE c.name = 'support'), \
           COUNT(*) FILTER (WHERE c.name = 'connection') \
         FROM accounts a LEFT JOIN credentials c ON c.account_id = a.id \
         WHERE a.realm = $1 GROUP BY a.id, a.login_id",
    )
    .bind(REALM)
    .fetch_all(&mut conn)
    .await
    .expect("read accounts");
    let _ = conn.close().await;
    let mut problems = Vec::new();
    if rows.len() != population.imported.len() {
        problems.push(format!(
            "{} accounts, {} imported",
            rows.len(),
            population.imported.len()
        ));
    }
    for (login_id, login, support, connection, mail, n_support, n_connection) in rows {
        let Some((imported_login, imported_mail)) = population.imported.get(&login_id) else {
            problems.push(format!("{login_id}: an account nobody imported"));
            continue;
        };
        if mail.as_ref() != Some(imported_mail) {
            problems.push(format!("{login_id}: the mail password changed"));
        }
        match (&login, (n_support, n_connection)) {
            (Some(_), (1, 1)) | (None, (0, 0)) => {}
            (l, n) => problems.push(format!(
                "{login_id}: login {}, (support, connection) credentials {n:?}",
                if l.is_some() { "held" } else { "absent" }
            )),
        }
        if login.is_some()
            && !touched.contains(&login_id)
            && (&login != imported_login || support != login || connection != login)
        {
            problems.push(format!(
                "{login_id}: nobody changed it, yet support and connection are not both the imported login hash"
            ));
        }
    }
    problems
}

/// Passwords a member's credential answers to, checked through the API
/// (purposes) in parallel; problems found.
pub fn verify_final(ctx: &Ctx<'_>, checks: Vec<(Member, &'static str, String, Want)>) -> Record {
    let chunks: Vec<Vec<_>> = checks
        .chunks(checks.len().div_ceil(16))
        .map(<[_]>::to_vec)
        .collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = chunks
            .into_iter()
            .enumerate()
            .map(|(w, chunk)| {
                s.spawn(move || {
                    let mut rec = Record::default();
                    for (member, purpose, password, want) in chunk {
                        let name = format!("final check of {}", member.login_id);
                        let mut c = Client::new(ctx, name, format!("10.30.0.{w}"), member);
                        let what = format!("{purpose} after the cutover");
                        c.verify(&what, purpose, &password, want);
                        rec.extend(c.rec);
                    }
                    rec
                })
            })
            .collect();
        let mut all = Record::default();
        for w in workers {
            all.extend(w.join().expect("final check"));
        }
        all
    })
}
