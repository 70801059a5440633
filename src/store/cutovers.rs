//! Cutover bookkeeping: checkpoints and the counts that plans and status show.

use futures::future::BoxFuture;
use jiff::Timestamp;
use sqlx::AssertSqlSafe;

use super::{AuditEntry, Store, StoreError, audit, is_unique_violation, millis, timestamp};

/// How far a cutover has got, from its durable checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointPhase {
    /// Declared and valid, `at` not reached: nothing copied yet.
    Scheduled,
    Running,
    Completed,
    Retired,
    /// Stopped on purpose before it completed: its purposes are answered by
    /// the source again; targets already copied stay in the store.
    Aborted,
}

impl CheckpointPhase {
    /// The name stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            CheckpointPhase::Scheduled => "scheduled",
            CheckpointPhase::Running => "running",
            CheckpointPhase::Completed => "completed",
            CheckpointPhase::Retired => "retired",
            CheckpointPhase::Aborted => "aborted",
        }
    }

    /// The backfill has started (a [`Checkpoint`] exists).
    pub fn started(self) -> bool {
        matches!(
            self,
            CheckpointPhase::Running | CheckpointPhase::Completed | CheckpointPhase::Retired
        )
    }
}

/// A split the store started: what a cutover did, remembered whatever
/// becomes of the cutover object (deleted, pruned, not applied yet), so
/// routing can still send each account to the credential it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownSplit {
    /// The cutover's key (`namespace/name`).
    pub cutover: String,
    pub source: String,
    pub targets: Vec<String>,
    pub at: Timestamp,
    pub phase: CheckpointPhase,
}

impl Store {
    /// Every split the store started in `realm`, oldest `at` first.
    pub async fn known_splits(&self, realm: &str) -> Result<Vec<KnownSplit>, StoreError> {
        let rows: Vec<(String, String, String, i64, String)> = sqlx::query_as(
            "SELECT cutover, source, targets, at, phase FROM cutover_checkpoints \
             WHERE realm = $1 ORDER BY at, cutover",
        )
        .bind(realm)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(cutover, source, targets, at, phase)| {
                Ok(KnownSplit {
                    cutover,
                    source,
                    targets: targets.split(',').map(str::to_owned).collect(),
                    at: timestamp(at, "cutover_checkpoints")?,
                    phase: parse_phase(&phase)?,
                })
            })
            .collect()
    }

    /// What the store knows of a cutover: its phase, `None` when it was
    /// never declared.
    pub async fn checkpoint_phase(
        &self,
        cutover: &str,
    ) -> Result<Option<CheckpointPhase>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        stored_phase(&mut conn, cutover).await
    }

    /// Accounts in the realm holding `source` that already hold every one of
    /// `targets` (accounts without the source are out of a cutover's scope).
    pub async fn count_holding_all(
        &self,
        realm: &str,
        source: &str,
        targets: &[String],
    ) -> Result<i64, StoreError> {
        // Only generated `$n` placeholders are added; the names are bound.
        let list = (3..targets.len() + 3)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let all_targets = if targets.is_empty() {
            String::new()
        } else {
            format!(
                " AND (SELECT COUNT(*) FROM credentials c WHERE c.account_id = a.id AND c.name IN ({list})) = {}",
                targets.len()
            )
        };
        let sql = format!(
            "SELECT COUNT(*) FROM accounts a JOIN credentials s ON s.account_id = a.id AND s.name = $2 \
             WHERE a.realm = $1{all_targets}"
        );
        let mut q = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(realm)
            .bind(source);
        for t in targets {
            q = q.bind(t);
        }
        Ok(q.fetch_one(&self.pool).await?)
    }

    /// Refreshes the planner's statistics after bulk changes (an import
    /// just made), so that batch queries walk the credentials key instead
    /// of sorting the realm.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        sqlx::raw_sql("ANALYZE").execute(&self.pool).await?;
        Ok(())
    }

    /// [`Store::analyze`], on PostgreSQL only when the statistics are stale
    /// by autovacuum's own rule (the rows changed since the last ANALYZE
    /// exceed 50 + 10 % of the table, or it was never analysed): before a
    /// cutover of a realm of 100,000, a fresh ANALYZE took as long as 9
    /// batches. (The counts of changes are flushed when a session ends, so
    /// an import in another process is seen.) SQLite keeps no such count.
    pub async fn analyze_if_stale(&self) -> Result<(), StoreError> {
        if self.backend == super::Backend::Postgres {
            let stale: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid \
                 WHERE c.oid IN ('accounts'::regclass, 'credentials'::regclass) \
                   AND (c.reltuples < 0 OR s.n_mod_since_analyze > 50 + 0.1 * c.reltuples)",
            )
            .fetch_one(&self.pool)
            .await?;
            if stale == 0 {
                return Ok(());
            }
        }
        self.analyze().await
    }
}

/// A cutover's durable checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub cutover: String,
    pub phase: CheckpointPhase,
    /// The last account id done (account-id order), `None` before the first
    /// batch. Account ids only grow, so an account created during the cutover
    /// is still ahead of the cursor.
    pub cursor: Option<i64>,
    pub done: i64,
    pub total: i64,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub retired_at: Option<Timestamp>,
}

/// What one backfill batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchResult {
    /// Accounts in this batch.
    pub accounts: i64,
    /// Target credentials written (missing ones only).
    pub copied: i64,
    /// Whether this was the last batch (the cutover is now completed).
    pub completed: bool,
    /// Whether a member's write to one of the batch's targets committed
    /// while the batch ran, so that it was redone with the guard that waits
    /// for such writes (PostgreSQL; see [`Store::backfill_batch`]).
    pub redone: bool,
}

/// How a batch's insert keeps away from the targets that exist already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// Skips the targets the batch's snapshot sees (`NOT IN` the batch's
    /// range) and inserts the rest plainly, so a member's target committed
    /// after that snapshot fails the batch on the key (and it is redone with
    /// `OnConflict`).
    Absent,
    /// `ON CONFLICT DO NOTHING`: also skips targets committed while the batch
    /// runs, at the price of a speculative insertion per row (measured by
    /// bench/explain-batch.sh).
    OnConflict,
}

/// The split a backfill performs.
#[derive(Debug, Clone, Copy)]
pub struct SplitRef<'a> {
    pub cutover: &'a str,
    pub realm: &'a str,
    pub source: &'a str,
    pub targets: &'a [String],
}

type CheckpointRow = (
    String,
    String,
    Option<i64>,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
);

pub(super) fn parse_phase(p: &str) -> Result<CheckpointPhase, StoreError> {
    match p {
        "scheduled" => Ok(CheckpointPhase::Scheduled),
        "running" => Ok(CheckpointPhase::Running),
        "aborted" => Ok(CheckpointPhase::Aborted),
        "completed" => Ok(CheckpointPhase::Completed),
        "retired" => Ok(CheckpointPhase::Retired),
        other => Err(StoreError::Corrupt {
            table: "cutover_checkpoints",
            reason: format!("unknown phase {other:?}"),
        }),
    }
}

async fn stored_phase(
    conn: &mut sqlx::AnyConnection,
    cutover: &str,
) -> Result<Option<CheckpointPhase>, StoreError> {
    let phase: Option<String> =
        sqlx::query_scalar("SELECT phase FROM cutover_checkpoints WHERE cutover = $1")
            .bind(cutover)
            .fetch_optional(&mut *conn)
            .await?;
    phase.as_deref().map(parse_phase).transpose()
}

impl TryFrom<CheckpointRow> for Checkpoint {
    type Error = StoreError;
    fn try_from(r: CheckpointRow) -> Result<Checkpoint, StoreError> {
        let t = |ms| timestamp(ms, "cutover_checkpoints");
        Ok(Checkpoint {
            cutover: r.0,
            phase: parse_phase(&r.1)?,
            cursor: r.2,
            done: r.3,
            total: r.4,
            started_at: t(r.5)?,
            updated_at: t(r.6)?,
            completed_at: r.7.map(t).transpose()?,
            retired_at: r.8.map(t).transpose()?,
        })
    }
}

const CHECKPOINT_SELECT: &str = "SELECT cutover, phase, cursor, done, total, started_at, updated_at, \
     completed_at, retired_at FROM cutover_checkpoints \
     WHERE cutover = $1 AND phase IN ('running', 'completed', 'retired')";

impl Store {
    /// The checkpoint of a cutover that has started (a declared or aborted
    /// one has none).
    pub async fn checkpoint(&self, cutover: &str) -> Result<Option<Checkpoint>, StoreError> {
        let row = sqlx::query_as::<_, CheckpointRow>(CHECKPOINT_SELECT)
            .bind(cutover)
            .fetch_optional(&self.pool)
            .await?;
        row.map(Checkpoint::try_from).transpose()
    }

    /// Remembers a valid cutover before it starts, so that routing knows the
    /// split whatever becomes of the object. Idempotent: a later call
    /// follows edits of `at`, source and targets until the cutover starts,
    /// and declaring an aborted cutover again revives it (it will copy
    /// whatever is missing). Returns whether it was new or revived.
    pub async fn declare_split(
        &self,
        split: SplitRef<'_>,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        // Each statement takes the same six parameters.
        let (sql, action) = match stored_phase(&mut tx, split.cutover).await? {
            None => (
                "INSERT INTO cutover_checkpoints (cutover, realm, source, targets, at, phase, cursor, \
                 done, total, started_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 'scheduled', NULL, 0, 0, $6, $6) \
                 ON CONFLICT (cutover) DO NOTHING",
                Some("cutover.declare"),
            ),
            Some(CheckpointPhase::Scheduled) => (
                "UPDATE cutover_checkpoints SET realm = $2, source = $3, targets = $4, at = $5, \
                 updated_at = $6 WHERE cutover = $1 \
                 AND (realm <> $2 OR source <> $3 OR targets <> $4 OR at <> $5)",
                None,
            ),
            Some(CheckpointPhase::Aborted) => (
                "UPDATE cutover_checkpoints SET realm = $2, source = $3, targets = $4, at = $5, \
                 phase = 'scheduled', cursor = NULL, done = 0, total = 0, started_at = $6, \
                 updated_at = $6, completed_at = NULL WHERE cutover = $1",
                Some("cutover.redeclare"),
            ),
            // Started: its checkpoint is what counts.
            Some(_) => return Ok(false),
        };
        sqlx::query(sql)
            .bind(split.cutover)
            .bind(split.realm)
            .bind(split.source)
            .bind(split.targets.join(","))
            .bind(millis(at))
            .bind(millis(now))
            .execute(&mut *tx)
            .await?;
        if let Some(action) = action {
            let entry = AuditEntry::new(now, "cutover", action).detail(format!(
                "{}: {} -> {} at {at}",
                split.cutover,
                split.source,
                split.targets.join(", ")
            ));
            audit::append(&mut tx, &entry.realm(split.realm)).await?;
        }
        tx.commit().await?;
        Ok(action.is_some())
    }

    /// Aborts a cutover that has not completed: from now on its purposes are
    /// answered by the source again, whatever objects exist, until it is
    /// declared again. Audited with `actor`. Returns the phase it was
    /// aborted in, `None` when there was nothing to abort (never declared,
    /// already completed or aborted).
    pub async fn abort_split(
        &self,
        cutover: &str,
        actor: &str,
        now: Timestamp,
    ) -> Result<Option<CheckpointPhase>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row: Option<(String, String, String, String)> = sqlx::query_as(
            "SELECT realm, source, targets, phase FROM cutover_checkpoints WHERE cutover = $1",
        )
        .bind(cutover)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((realm, source, targets, phase)) = row else {
            return Ok(None);
        };
        let phase = parse_phase(&phase)?;
        if !matches!(phase, CheckpointPhase::Scheduled | CheckpointPhase::Running) {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE cutover_checkpoints SET phase = 'aborted', updated_at = $2 WHERE cutover = $1",
        )
        .bind(cutover)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        let entry = AuditEntry::new(now, actor, "cutover.abort").detail(format!(
            "{cutover}: {source} -> {targets} aborted while {}; {source} answers again",
            phase.name()
        ));
        audit::append(&mut tx, &entry.realm(&realm)).await?;
        tx.commit().await?;
        Ok(Some(phase))
    }

    /// Records that ops chose to keep a completed cutover's source
    /// credential: nothing retires it any more. Audited with `actor`.
    pub async fn keep_source(
        &self,
        cutover: &str,
        actor: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT realm, source FROM cutover_checkpoints WHERE cutover = $1 AND phase = 'completed'",
        )
        .bind(cutover)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((realm, source)) = row else {
            return Ok(false);
        };
        let entry = AuditEntry::new(now, actor, "cutover.keep_source")
            .credential(&source)
            .detail(format!("{cutover}: retirement of {source} abandoned"));
        audit::append(&mut tx, &entry.realm(&realm)).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Starts a cutover once: writes its checkpoint with the accounts in
    /// scope, unless one exists (a restart resumes from it). A declared or
    /// aborted cutover's row becomes the running checkpoint.
    pub async fn start_cutover(
        &self,
        split: SplitRef<'_>,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<Checkpoint, StoreError> {
        let mut tx = self.begin_write().await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM credentials c JOIN accounts a ON a.id = c.account_id \
             WHERE a.realm = $1 AND c.name = $2",
        )
        .bind(split.realm)
        .bind(split.source)
        .fetch_one(&mut *tx)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO cutover_checkpoints (cutover, realm, source, targets, at, phase, cursor, done, total, \
             started_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'running', NULL, 0, $6, $7, $7) \
             ON CONFLICT (cutover) DO UPDATE SET realm = $2, source = $3, targets = $4, at = $5, \
             phase = 'running', cursor = NULL, done = 0, total = $6, started_at = $7, updated_at = $7, \
             completed_at = NULL WHERE cutover_checkpoints.phase IN ('scheduled', 'aborted')",
        )
        .bind(split.cutover)
        .bind(split.realm)
        .bind(split.source)
        .bind(split.targets.join(","))
        .bind(millis(at))
        .bind(total)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            let entry = AuditEntry::new(now, "cutover", "cutover.start").detail(format!(
                "{}: {} -> {} ({total} accounts)",
                split.cutover,
                split.source,
                split.targets.join(", ")
            ));
            audit::append(&mut tx, &entry.realm(split.realm)).await?;
        }
        tx.commit().await?;
        self.checkpoint(split.cutover)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: format!("checkpoint of {}", split.cutover),
            })
    }

    /// One backfill batch in one transaction: the next `batch_size` accounts
    /// after the checkpoint's cursor (account-id order) that hold the source get
    /// every missing target as a copy of the source hash; targets that exist
    /// (set by the member after `at`, or materialised by a change) are never
    /// touched. The checkpoint moves in the same transaction, so a crash
    /// repeats nothing and loses nothing. An empty batch completes the cutover.
    ///
    /// On PostgreSQL the batch first skips the targets its snapshot sees and
    /// inserts the rest plainly, as a hand-written `INSERT … SELECT` would. A
    /// member's change of one of its targets that commits while the batch runs
    /// makes that insert fail on the key, never overwrite: the batch is rolled
    /// back whole and redone once with `ON CONFLICT DO NOTHING`, which waits
    /// for such writes and keeps them. SQLite has one writer at a time, so no
    /// write can commit inside a batch, and its `ON CONFLICT` costs nothing more
    /// than the key check every insert makes.
    pub async fn backfill_batch(
        &self,
        split: SplitRef<'_>,
        batch_size: u32,
        now: Timestamp,
    ) -> Result<BatchResult, StoreError> {
        let (batch, redone) = self
            .guarded(|guard| Box::pin(self.backfill_attempt(split, batch_size, now, guard)))
            .await?;
        if redone {
            tracing::debug!(
                cutover = split.cutover,
                "a member's write committed inside the batch; redone with ON CONFLICT"
            );
        }
        Ok(BatchResult { redone, ..batch })
    }

    /// Runs `attempt` with the backend's first guard and, when a member's
    /// write raced it (PostgreSQL), once more with `OnConflict`; says whether
    /// it was redone.
    async fn guarded<'a, T>(
        &self,
        attempt: impl Fn(Guard) -> BoxFuture<'a, Result<T, StoreError>>,
    ) -> Result<(T, bool), StoreError> {
        let first = self.first_guard();
        match attempt(first).await {
            Err(e) if first == Guard::Absent && raced(&e) => {
                Ok((attempt(Guard::OnConflict).await?, true))
            }
            other => other.map(|done| (done, false)),
        }
    }

    /// A batch's transaction. On PostgreSQL its commit does not wait for its
    /// WAL to reach the disk (set in the same round trip as `BEGIN`). A batch
    /// lost in a database crash rolls back together with its checkpoint, so
    /// the backfill redoes it; and every later commit that waits (a member's
    /// change, the cutover's completion) flushes the WAL up to itself, this
    /// batch included, so nothing that follows a batch can outlive it. The
    /// flush was 1.9 ms of each 1,000-account batch (PostgreSQL's statement
    /// log, on bench/cutover.sh's data).
    async fn begin_batch(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.backend {
            super::Backend::Postgres => Ok(self
                .pool
                .begin_with("BEGIN; SET LOCAL synchronous_commit TO OFF")
                .await?),
            super::Backend::Sqlite => self.begin_write().await,
        }
    }

    /// The guard a batch tries first (see [`Store::backfill_batch`]).
    fn first_guard(&self) -> Guard {
        match self.backend {
            super::Backend::Postgres => Guard::Absent,
            super::Backend::Sqlite => Guard::OnConflict,
        }
    }

    async fn backfill_attempt(
        &self,
        split: SplitRef<'_>,
        batch_size: u32,
        now: Timestamp,
        guard: Guard,
    ) -> Result<BatchResult, StoreError> {
        let mut tx = self.begin_batch().await?;
        // Re-read inside the transaction: the write lock (SQLite) or the row
        // lock (PostgreSQL) makes two runners take turns, never the same batch.
        let lock = match self.backend {
            super::Backend::Postgres => " FOR UPDATE",
            super::Backend::Sqlite => "",
        };
        let row: Option<(String, Option<i64>)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT phase, cursor FROM cutover_checkpoints WHERE cutover = $1{lock}"
        )))
        .bind(split.cutover)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((phase, cursor)) = row else {
            return Err(StoreError::NotFound {
                what: format!("checkpoint of {}", split.cutover),
            });
        };
        let phase = parse_phase(&phase)?;
        if !phase.started() {
            // Aborted between two batches (by another driver): stop here.
            return Err(StoreError::Conflict {
                what: format!("cutover {} ({})", split.cutover, phase.name()),
            });
        }
        let done = BatchResult {
            accounts: 0,
            copied: 0,
            completed: true,
            redone: false,
        };
        if phase != CheckpointPhase::Running {
            return Ok(done);
        }
        let Some((last, accounts, copied)) =
            copy_range(&mut tx, split, cursor.unwrap_or(0), batch_size, guard).await?
        else {
            sqlx::query(
                "UPDATE cutover_checkpoints SET phase = 'completed', completed_at = $2, updated_at = $2, \
                 total = done WHERE cutover = $1",
            )
            .bind(split.cutover)
            .bind(millis(now))
            .execute(&mut *tx)
            .await?;
            let entry = AuditEntry::new(now, "cutover", "cutover.complete")
                .detail(split.cutover.to_owned());
            audit::append(&mut tx, &entry.realm(split.realm)).await?;
            if self.backend == super::Backend::Postgres {
                // The completion is reported as done: it waits for the disk.
                sqlx::query("SET LOCAL synchronous_commit TO ON")
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            return Ok(done);
        };
        sqlx::query(
            "UPDATE cutover_checkpoints SET cursor = $2, done = done + $3, updated_at = $4, \
             total = CASE WHEN total < done + $3 THEN done + $3 ELSE total END WHERE cutover = $1",
        )
        .bind(split.cutover)
        .bind(last)
        .bind(accounts)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(BatchResult {
            accounts,
            copied,
            completed: false,
            redone: false,
        })
    }

    /// Removes the source credential of every account in the realm once the
    /// cutover is completed (after `retainSource`), audited. Idempotent.
    pub async fn retire_source(
        &self,
        split: SplitRef<'_>,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        if stored_phase(&mut tx, split.cutover).await? != Some(CheckpointPhase::Completed) {
            return Ok(0);
        }
        let removed = sqlx::query(
            "DELETE FROM credentials WHERE name = $2 AND account_id IN (SELECT id FROM accounts WHERE realm = $1)",
        )
        .bind(split.realm)
        .bind(split.source)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
        sqlx::query("UPDATE cutover_checkpoints SET phase = 'retired', retired_at = $2, updated_at = $2 WHERE cutover = $1")
            .bind(split.cutover)
            .bind(millis(now))
            .execute(&mut *tx)
            .await?;
        let entry = AuditEntry::new(now, "cutover", "credential.retire")
            .credential(split.source)
            .detail(format!(
                "{}: {removed} source credentials removed",
                split.cutover
            ));
        audit::append(&mut tx, &entry.realm(split.realm)).await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// What a plan shows: accounts holding the source, and of those, how many
    /// already hold every target.
    pub async fn split_counts(
        &self,
        realm: &str,
        source: &str,
        targets: &[String],
    ) -> Result<(i64, i64), StoreError> {
        let in_scope = self.count_credentials(realm, source).await?;
        let split = self.count_holding_all(realm, source, targets).await?;
        Ok((in_scope, split))
    }
}

/// Whether a batch failed because a member's target committed inside it.
fn raced(err: &StoreError) -> bool {
    matches!(err, StoreError::Database(e) if is_unique_violation(e))
}

/// Copies the source into every missing target for the next `batch_size`
/// accounts after `cursor` (account-id order). Returns the batch's last
/// account id, its accounts and the targets written; `None` when nothing is
/// left.
///
/// Account-id order, not login-ID order: ids follow insertion, so a batch's
/// new target rows land next to each other in the credentials key
/// (account_id, name) and each page is written once. Walking login IDs that
/// are unrelated to insertion order scattered every batch over the whole
/// table (measured: 17x the writes on SQLite, bench/cutover.sh).
async fn copy_range(
    conn: &mut sqlx::AnyConnection,
    split: SplitRef<'_>,
    cursor: i64,
    batch_size: u32,
    guard: Guard,
) -> Result<Option<(i64, i64, i64)>, StoreError> {
    // The batch's last account id bounds a range, so every statement is static
    // SQL. The range is stated on both sides of the join so that PostgreSQL
    // reads only the batch's accounts (without it, it hashed the whole
    // accounts table for every batch: O(realm) per batch).
    let (last, accounts): (Option<i64>, i64) = sqlx::query_as(
        "SELECT MAX(account_id), COUNT(*) FROM (SELECT s.account_id FROM credentials s \
         JOIN accounts a ON a.id = s.account_id \
         WHERE s.name = $2 AND a.realm = $1 AND s.account_id > $3 AND a.id > $3 \
         ORDER BY s.account_id LIMIT $4) AS batch",
    )
    .bind(split.realm)
    .bind(split.source)
    .bind(cursor)
    .bind(i64::from(batch_size.max(1)))
    .fetch_one(&mut *conn)
    .await?;
    let Some(last) = last else {
        return Ok(None);
    };
    let via = format!(
        "cutover:{}",
        split.cutover.rsplit('/').next().unwrap_or(split.cutover)
    );
    if split.targets.is_empty() {
        return Ok(Some((last, accounts, 0)));
    }
    // Every target in one statement: the batch's source rows are read and
    // joined once, not once per target.
    let names = (0..split.targets.len())
        .map(|i| format!("SELECT ${} AS name", i + 6))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let (absent, on_conflict) = match guard {
        // The batch's existing rows are read once, in one range scan, and
        // hashed: `NOT EXISTS` probed the key once per row instead, with a
        // heap visit each (at 1,000,000 accounts 1.04x the plain insert, this
        // 0.97x, bench/explain-batch.sh). The columns are NOT NULL, so `NOT IN`
        // means `NOT EXISTS` here.
        Guard::Absent => (
            " AND (s.account_id, t.name) NOT IN (SELECT x.account_id, x.name \
             FROM credentials x WHERE x.account_id > $3 AND x.account_id <= $5)",
            "",
        ),
        Guard::OnConflict => ("", " ON CONFLICT (account_id, name) DO NOTHING"),
    };
    let sql = format!(
        "INSERT INTO credentials (account_id, name, hash, set_at, set_via, must_change, version) \
         SELECT s.account_id, t.name, s.hash, s.set_at, $4, s.must_change, 1 \
         FROM credentials s JOIN accounts a ON a.id = s.account_id CROSS JOIN ({names}) AS t \
         WHERE a.realm = $1 AND s.name = $2 AND s.account_id > $3 AND s.account_id <= $5 \
           AND a.id > $3 AND a.id <= $5{absent}{on_conflict}"
    );
    // Planned for each batch with its own bounds (an unnamed statement, about
    // 0.2 ms): a plan cached for any bounds guesses the range's size from the
    // table's, and once that guess outgrew work_mem PostgreSQL would stop
    // hashing the `NOT IN` and rescan it for every row. (Not by
    // `plan_cache_mode` for the transaction: that replans the foreign-key
    // check of every inserted row too, and made cutovers 1.9 times as slow.)
    let mut insert = sqlx::query(AssertSqlSafe(sql))
        .persistent(false)
        .bind(split.realm)
        .bind(split.source)
        .bind(cursor)
        .bind(&via)
        .bind(last);
    for target in split.targets {
        insert = insert.bind(target);
    }
    let copied = insert.execute(&mut *conn).await?.rows_affected() as i64;
    Ok(Some((last, accounts, copied)))
}

impl Store {
    /// Runs one real batch from the start of the realm and rolls it back: the
    /// measured rate for a plan's ETA, with nothing written.
    pub async fn trial_batch(
        &self,
        split: SplitRef<'_>,
        batch_size: u32,
    ) -> Result<(i64, std::time::Duration), StoreError> {
        let (trial, _) = self
            .guarded(|guard| Box::pin(self.trial_attempt(split, batch_size, guard)))
            .await?;
        Ok(trial)
    }

    async fn trial_attempt(
        &self,
        split: SplitRef<'_>,
        batch_size: u32,
        guard: Guard,
    ) -> Result<(i64, std::time::Duration), StoreError> {
        let mut tx = self.begin_batch().await?;
        let clock = std::time::Instant::now();
        let accounts = copy_range(&mut tx, split, 0, batch_size, guard)
            .await?
            .map_or(0, |(_, a, _)| a);
        let took = clock.elapsed();
        tx.rollback().await?;
        Ok((accounts, took))
    }
}
