//! Recovery tickets (temporary passwords, hashed, single-use, expiring), the
//! transactional mail outbox, and the fixed-window rate-limit counters.

use std::time::Duration;

use jiff::Timestamp;
use sqlx::AnyConnection;

use super::{Account, AuditEntry, CredentialWrite, Store, StoreError, audit, millis, timestamp};

/// A live recovery ticket.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    pub id: i64,
    pub account_id: i64,
    pub credential: String,
    pub purpose: String,
    pub hash: String,
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .field("credential", &self.credential)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A ticket to issue, with the mail that carries it.
pub struct NewTicket<'a> {
    pub credential: &'a str,
    pub purpose: &'a str,
    pub hash: String,
    pub expires_at: Timestamp,
    /// Which policy template renders the mail (`namespace/policy/credential`).
    pub template: String,
    /// The encrypted mail payload (temporary password and its context).
    pub sealed_payload: Vec<u8>,
}

/// One mail waiting in the outbox.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxMail {
    pub id: i64,
    pub realm: String,
    pub recipient: String,
    pub template: String,
    pub sealed_payload: Option<Vec<u8>>,
    pub attempts: i64,
}

impl std::fmt::Debug for OutboxMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxMail")
            .field("id", &self.id)
            .field("realm", &self.realm)
            .field("template", &self.template)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Recovery figures for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryCounts {
    pub live: i64,
    pub issued: i64,
    pub used: i64,
    pub expired: i64,
    pub mail_pending: i64,
    pub mail_sent: i64,
    pub mail_dead: i64,
}

type TicketRow = (i64, i64, String, String, String, i64);

impl Store {
    /// Issues a ticket and queues its mail in one transaction; every earlier
    /// live ticket of the same credential is revoked, so only the newest works.
    pub async fn issue_ticket(
        &self,
        account: &Account,
        t: NewTicket<'_>,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        revoke_tickets(&mut tx, account, t.credential, now).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO recovery_tickets (account_id, credential, purpose, hash, state, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, 'live', $5, $6) RETURNING id",
        )
        .bind(account.id)
        .bind(t.credential)
        .bind(t.purpose)
        .bind(&t.hash)
        .bind(millis(now))
        .bind(millis(t.expires_at))
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO mail_outbox (account_id, ticket_id, realm, recipient, template, sealed_payload, state, \
             attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7)",
        )
        .bind(account.id)
        .bind(id)
        .bind(&account.realm)
        .bind(&account.base_email)
        .bind(&t.template)
        .bind(t.sealed_payload)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        let entry = AuditEntry::new(now, "recovery", "recovery.issue")
            .account(&account.realm, &account.login_id)
            .credential(t.credential);
        audit::append(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The newest live, unexpired ticket of a credential.
    pub async fn live_ticket(
        &self,
        account_id: i64,
        credential: &str,
        now: Timestamp,
    ) -> Result<Option<Ticket>, StoreError> {
        let row = sqlx::query_as::<_, TicketRow>(
            "SELECT id, account_id, credential, purpose, hash, expires_at FROM recovery_tickets \
             WHERE account_id = $1 AND credential = $2 AND state = 'live' AND expires_at > $3 \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(account_id)
        .bind(credential)
        .bind(millis(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(id, account_id, credential, purpose, hash, expires)| {
            Ok(Ticket {
                id,
                account_id,
                credential,
                purpose,
                hash,
                expires_at: timestamp(expires, "recovery_tickets")?,
            })
        })
        .transpose()
    }

    /// Uses a ticket once: it must still be live and unexpired; in the same
    /// transaction the credential writes (the temporary password, must-change)
    /// are applied. `false` when the ticket was already used, revoked or expired.
    pub async fn redeem_ticket(
        &self,
        account: &Account,
        ticket_id: i64,
        writes: &[CredentialWrite],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let closed = sqlx::query(
            "UPDATE recovery_tickets SET state = 'used', closed_at = $2 \
             WHERE id = $1 AND state = 'live' AND expires_at > $2",
        )
        .bind(ticket_id)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if closed != 1 {
            return Ok(false);
        }
        for write in writes {
            super::credentials::write_one(&mut tx, account, write, now, None).await?;
        }
        let entry = AuditEntry::new(now, "recovery", "recovery.redeem")
            .account(&account.realm, &account.login_id);
        audit::append(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Expires live tickets past their time and deletes closed ones older than
    /// `keep`. Returns (expired, purged).
    pub async fn sweep_tickets(
        &self,
        now: Timestamp,
        keep: Duration,
    ) -> Result<(u64, u64), StoreError> {
        let expired = sqlx::query(
            "UPDATE recovery_tickets SET state = 'expired', closed_at = $1 WHERE state = 'live' AND expires_at <= $1",
        )
        .bind(millis(now))
        .execute(&self.pool)
        .await?
        .rows_affected();
        let cutoff = millis(now) - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let purged = sqlx::query(
            "DELETE FROM recovery_tickets WHERE state <> 'live' AND closed_at < $1 \
             AND id NOT IN (SELECT ticket_id FROM mail_outbox WHERE state = 'pending' AND ticket_id IS NOT NULL)",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((expired, purged))
    }

    /// Mails due for a delivery attempt, oldest first.
    pub async fn due_mail(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxMail>, StoreError> {
        let rows = sqlx::query_as::<_, (i64, String, String, String, Option<Vec<u8>>, i64)>(
            "SELECT id, realm, recipient, template, sealed_payload, attempts FROM mail_outbox \
             WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY id LIMIT $2",
        )
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, realm, recipient, template, sealed_payload, attempts)| OutboxMail {
                    id,
                    realm,
                    recipient,
                    template,
                    sealed_payload,
                    attempts,
                },
            )
            .collect())
    }

    /// Sent: the sealed payload is erased.
    pub async fn mail_sent(&self, id: i64, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE mail_outbox SET state = 'sent', sealed_payload = NULL, sent_at = $2, attempts = attempts + 1 WHERE id = $1")
            .bind(id)
            .bind(millis(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A failed attempt: retried at `retry_at`, or dead-lettered (payload
    /// erased) when `None`. `error` must not contain a secret.
    pub async fn mail_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        match retry_at {
            Some(at) => {
                sqlx::query("UPDATE mail_outbox SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(error)
                    .bind(millis(at))
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(
                    "UPDATE mail_outbox SET attempts = attempts + 1, last_error = $2, state = 'dead', \
                     sealed_payload = NULL WHERE id = $1",
                )
                .bind(id)
                .bind(error)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(())
    }

    pub async fn recovery_counts(&self, realm: &str) -> Result<RecoveryCounts, StoreError> {
        let tickets = sqlx::query_as::<_, (String, i64)>(
            "SELECT t.state, COUNT(*) FROM recovery_tickets t JOIN accounts a ON a.id = t.account_id \
             WHERE a.realm = $1 GROUP BY t.state",
        )
        .bind(realm)
        .fetch_all(&self.pool)
        .await?;
        let mails = sqlx::query_as::<_, (String, i64)>(
            "SELECT state, COUNT(*) FROM mail_outbox WHERE realm = $1 GROUP BY state",
        )
        .bind(realm)
        .fetch_all(&self.pool)
        .await?;
        let mut c = RecoveryCounts::default();
        for (state, n) in tickets {
            c.issued += n;
            match state.as_str() {
                "live" => c.live = n,
                "used" => c.used = n,
                "expired" => c.expired = n,
                _ => {}
            }
        }
        for (state, n) in mails {
            match state.as_str() {
                "pending" => c.mail_pending = n,
                "sent" => c.mail_sent = n,
                "dead" => c.mail_dead = n,
                _ => {}
            }
        }
        Ok(c)
    }

    /// Counts one hit in a fixed window shared by every replica; returns
    /// whether it is within `max` hits per `window`.
    pub async fn rate_limit(
        &self,
        scope: &str,
        key: &str,
        window: Duration,
        max: u32,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let hits = self.hit(scope, &rate_key(key), window, now).await?;
        Ok(hits <= i64::from(max))
    }

    /// Counts one failed guess of `key`: in its client's window and, when
    /// the account exists, in the account's streak, in one transaction.
    /// (An unknown login ID has no member to protect, and its streaks would
    /// only grow the table.) Returns the counts after it.
    pub async fn count_failure(
        &self,
        key: &FailureKey<'_>,
        account_exists: bool,
    ) -> Result<Failures, StoreError> {
        let mut tx = self.begin_write().await?;
        let window = hit_on(
            &mut tx,
            FAILURE_SCOPE,
            &key.stored_key(),
            key.window,
            key.now,
        )
        .await?;
        let mut counted = Failures {
            window,
            ..Failures::default()
        };
        if account_exists {
            counted.streak = sqlx::query_scalar(
                "INSERT INTO failure_streaks (key, failures, last_failure_at) VALUES ($1, 1, $2) \
                 ON CONFLICT (key) DO UPDATE SET failures = failure_streaks.failures + 1, \
                 last_failure_at = excluded.last_failure_at RETURNING failures",
            )
            .bind(rate_key(key.streak))
            .bind(millis(key.now))
            .fetch_one(&mut *tx)
            .await?;
            counted.last_failure_at = Some(key.now);
        }
        tx.commit().await?;
        Ok(counted)
    }

    /// The failed guesses of `key` counted so far. (A verify reads them in
    /// its snapshot instead.)
    pub async fn failures(&self, key: &FailureKey<'_>) -> Result<Failures, StoreError> {
        let (window, streak, last): (Option<i64>, Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT hits FROM rate_limits WHERE scope = $1 AND key = $2 AND window_start = $3), \
             (SELECT failures FROM failure_streaks WHERE key = $4), \
             (SELECT last_failure_at FROM failure_streaks WHERE key = $4)",
        )
        .bind(FAILURE_SCOPE)
        .bind(key.stored_key())
        .bind(key.window_start())
        .bind(key.stored_streak())
        .fetch_one(&self.pool)
        .await?;
        Failures::read(window, streak, last)
    }

    /// Ends the streak of failed guesses at `streak` (realm/login ID/purpose):
    /// a right password or a new one.
    pub async fn end_streak(&self, streak: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM failure_streaks WHERE key = $1")
            .bind(rate_key(streak))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// One more hit for (scope, stored key) in the window `now` falls in,
    /// atomically; returns the window's hits. The key is stored as its
    /// SHA-256, so the table holds no login ID or client address and every
    /// row has the same size whatever the caller sent.
    async fn hit(
        &self,
        scope: &str,
        stored_key: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        hit_on(&mut conn, scope, stored_key, window, now).await
    }

    /// Deletes the counters of windows that have ended; returns how many.
    pub async fn prune_rate_limits(&self, now: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM rate_limits WHERE expires_at <= $1")
            .bind(millis(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Counters held now, expired or not.
    pub async fn rate_limit_rows(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM rate_limits")
            .fetch_one(&self.pool)
            .await?)
    }
}

/// [`Store::hit`] on a connection (or inside a transaction).
async fn hit_on(
    conn: &mut AnyConnection,
    scope: &str,
    stored_key: &str,
    window: Duration,
    now: Timestamp,
) -> Result<i64, StoreError> {
    let start = window_start(window, now);
    Ok(sqlx::query_scalar(
        "INSERT INTO rate_limits (scope, key, window_start, hits, expires_at) VALUES ($1, $2, $3, 1, $4) \
         ON CONFLICT (scope, key) DO UPDATE SET \
         hits = CASE WHEN rate_limits.window_start = excluded.window_start THEN rate_limits.hits + 1 ELSE 1 END, \
         window_start = excluded.window_start, expires_at = excluded.expires_at RETURNING hits",
    )
    .bind(scope)
    .bind(stored_key)
    .bind(start)
    .bind(start.saturating_add(window_millis(window)))
    .fetch_one(&mut *conn)
    .await?)
}

/// Revokes the live tickets of one credential of `account` (audited when
/// there were any); returns how many.
pub(super) async fn revoke_tickets(
    conn: &mut AnyConnection,
    account: &Account,
    credential: &str,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let revoked = sqlx::query(
        "UPDATE recovery_tickets SET state = 'revoked', closed_at = $3 \
         WHERE account_id = $1 AND credential = $2 AND state = 'live'",
    )
    .bind(account.id)
    .bind(credential)
    .bind(millis(now))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if revoked > 0 {
        let entry = AuditEntry::new(now, "recovery", "recovery.revoke")
            .account(&account.realm, &account.login_id)
            .credential(credential);
        audit::append(conn, &entry).await?;
    }
    Ok(revoked)
}

/// The rate-limit scope of failed guesses (verify and change).
pub(super) const FAILURE_SCOPE: &str = "verify-fail";

/// Whose failed guesses are counted, and in which window: `key` names an
/// account, a purpose and a client identity, `streak` the account and
/// purpose alone; `now` picks the fixed window of length `window` it falls
/// in.
#[derive(Debug, Clone, Copy)]
pub struct FailureKey<'a> {
    pub key: &'a str,
    pub streak: &'a str,
    pub window: Duration,
    pub now: Timestamp,
}

/// The failed guesses counted for a [`FailureKey`]: this window's from its
/// client, and the account's streak (consecutive failures from any client)
/// with when the last of them was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    pub window: i64,
    pub streak: i64,
    pub last_failure_at: Option<Timestamp>,
}

impl Failures {
    pub(super) fn read(
        window: Option<i64>,
        streak: Option<i64>,
        last: Option<i64>,
    ) -> Result<Failures, StoreError> {
        Ok(Failures {
            window: window.unwrap_or(0),
            streak: streak.unwrap_or(0),
            last_failure_at: last
                .map(|ms| timestamp(ms, "failure_streaks"))
                .transpose()?,
        })
    }
}

impl FailureKey<'_> {
    pub(super) fn stored_key(&self) -> String {
        rate_key(self.key)
    }

    pub(super) fn stored_streak(&self) -> String {
        rate_key(self.streak)
    }

    pub(super) fn window_start(&self) -> i64 {
        window_start(self.window, self.now)
    }
}

/// What a rate-limit key is stored as: its SHA-256, in hex.
fn rate_key(key: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn window_millis(window: Duration) -> i64 {
    i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// The start of the fixed window that `now` falls in (Unix ms).
fn window_start(window: Duration, now: Timestamp) -> i64 {
    let w = window_millis(window);
    millis(now).div_euclid(w) * w
}
