//! Credentials: (account, name) -> hash, with when/through which channel it
//! was set, a must-change flag, and a version for optimistic concurrency.

use std::fmt;

use jiff::Timestamp;
use sqlx::AnyConnection;

use super::cutovers::parse_phase;
use super::recovery::{FAILURE_SCOPE, FailureKey, Failures};
use super::{
    Account, AuditEntry, CheckpointPhase, Store, StoreError, audit, is_unique_violation, millis,
    timestamp,
};
use crate::hashing::Scheme;

/// A stored credential, hash included. Its `Debug` leaves the hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub account_id: i64,
    pub name: String,
    pub hash: String,
    pub set_at: Timestamp,
    pub set_via: String,
    pub must_change: bool,
    pub version: i64,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("account_id", &self.account_id)
            .field("name", &self.name)
            .field("set_at", &self.set_at)
            .field("set_via", &self.set_via)
            .field("must_change", &self.must_change)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// What may be shown about a credential: everything but the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialInfo {
    pub name: String,
    pub set_at: Timestamp,
    pub set_via: String,
    pub must_change: bool,
    pub version: i64,
    /// The hash format (`argon2id`, `md5-crypt`, …), or `unknown`.
    pub format: &'static str,
}

/// The precondition of a credential write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// The credential must not exist yet.
    Absent,
    /// The credential must still be at this version (optimistic concurrency).
    Version(i64),
    /// Overwrite whatever is there (administrator set).
    Any,
}

/// One credential write, applied with others in a single transaction.
#[derive(Clone)]
pub struct CredentialWrite {
    pub name: String,
    pub hash: String,
    pub expected: Expected,
    /// The channel or actor it is set through (`utility`, `portal`, `admin`, …).
    pub via: String,
    pub must_change: bool,
    /// Audit verb, e.g. `credential.set`.
    pub action: &'static str,
    pub kind: WriteKind,
}

/// Whether a write is a new password or the same password hashed anew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteKind {
    /// A new password: the old hash goes to the history; set-at and set-via change.
    Set,
    /// The same password with stronger parameters: only the hash and version
    /// change; set-at, set-via, must-change and the history stay as they were.
    Rehash,
    /// Materialise this credential, if missing, as a copy of another one of
    /// the account (the cutover's source); `hash` is ignored. Never overwrites.
    CopyIfMissing { source: String },
}

impl fmt::Debug for CredentialWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialWrite")
            .field("name", &self.name)
            .field("expected", &self.expected)
            .field("via", &self.via)
            .field("action", &self.action)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// What [`Store::verify_snapshot`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySnapshot {
    pub account: Account,
    /// The asked-for credentials the account holds.
    pub credentials: Vec<Credential>,
    /// The cutover's checkpoint phase; `None` when it never started.
    pub cutover_phase: Option<CheckpointPhase>,
}

/// What a verify reads, from one statement: the failed guesses counted
/// this window for its throttling key, and the account's snapshot (`None`
/// when the realm has no such login ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRead {
    pub failures: Failures,
    pub snapshot: Option<VerifySnapshot>,
}

/// The throttling counts (window, streak, last failure), then an account
/// row, a checkpoint phase and one credential of LEFT JOINs (absent: all
/// `None`).
type SnapshotRow = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// `must_change` is a 0/1 integer in both dialects.
type CredentialRow = (i64, String, String, i64, String, i64, i64);

impl TryFrom<CredentialRow> for Credential {
    type Error = StoreError;
    fn try_from(row: CredentialRow) -> Result<Credential, StoreError> {
        let (account_id, name, hash, set_at, set_via, must_change, version) = row;
        Ok(Credential {
            account_id,
            name,
            hash,
            set_at: timestamp(set_at, "credentials")?,
            set_via,
            must_change: must_change != 0,
            version,
        })
    }
}

impl Store {
    pub async fn credential(
        &self,
        account_id: i64,
        name: &str,
    ) -> Result<Option<Credential>, StoreError> {
        let row = sqlx::query_as::<_, CredentialRow>(
            "SELECT account_id, name, hash, set_at, set_via, must_change, version \
             FROM credentials WHERE account_id = $1 AND name = $2",
        )
        .bind(account_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Credential::try_from).transpose()
    }

    /// Everything a verification reads, in one statement and so from one
    /// snapshot: the failed guesses of `guesses` counted this window, the
    /// account, which of `credentials` (one or two names) it holds, and the
    /// checkpoint phase of `cutover`, the one that decides the route.
    pub async fn verify_snapshot(
        &self,
        realm: &str,
        login_id: &str,
        credentials: [&str; 2],
        cutover: Option<&str>,
        guesses: &FailureKey<'_>,
    ) -> Result<VerifyRead, StoreError> {
        let rows = sqlx::query_as::<_, SnapshotRow>(
            "SELECT (SELECT hits FROM rate_limits WHERE scope = $6 AND key = $7 AND window_start = $8), \
             (SELECT failures FROM failure_streaks WHERE key = $9), \
             (SELECT last_failure_at FROM failure_streaks WHERE key = $9), \
             a.id, a.realm, a.login_id, a.base_email, a.state, a.created_at, \
             (SELECT phase FROM cutover_checkpoints WHERE cutover = $3), \
             c.name, c.hash, c.set_at, c.set_via, c.must_change, c.version \
             FROM (SELECT 1 AS one) o \
             LEFT JOIN accounts a ON a.realm = $1 AND a.login_id = $2 \
             LEFT JOIN credentials c ON c.account_id = a.id AND c.name IN ($4, $5)",
        )
        .bind(realm)
        .bind(login_id)
        .bind(cutover)
        .bind(credentials[0])
        .bind(credentials[1])
        .bind(FAILURE_SCOPE)
        .bind(guesses.stored_key())
        .bind(guesses.window_start())
        .bind(guesses.stored_streak())
        .fetch_all(&self.pool)
        .await?;
        let mut read = VerifyRead {
            failures: Failures::default(),
            snapshot: None,
        };
        for row in rows {
            read.failures = Failures::read(row.0, row.1, row.2)?;
            let (
                Some(id),
                Some(realm),
                Some(login_id),
                Some(base_email),
                Some(state),
                Some(created_at),
            ) = (row.3, row.4, row.5, row.6, row.7, row.8)
            else {
                continue;
            };
            let s = match read.snapshot.as_mut() {
                Some(s) => s,
                None => read.snapshot.insert(VerifySnapshot {
                    account: Account::try_from((
                        id, realm, login_id, base_email, state, created_at,
                    ))?,
                    cutover_phase: row.9.as_deref().map(parse_phase).transpose()?,
                    credentials: Vec::new(),
                }),
            };
            if let (
                Some(name),
                Some(hash),
                Some(set_at),
                Some(set_via),
                Some(must_change),
                Some(version),
            ) = (row.10, row.11, row.12, row.13, row.14, row.15)
            {
                s.credentials.push(Credential::try_from((
                    id,
                    name,
                    hash,
                    set_at,
                    set_via,
                    must_change,
                    version,
                ))?);
            }
        }
        Ok(read)
    }

    /// Every credential of an account, without hashes, by name.
    pub async fn credential_infos(
        &self,
        account_id: i64,
    ) -> Result<Vec<CredentialInfo>, StoreError> {
        let rows = sqlx::query_as::<_, CredentialRow>(
            "SELECT account_id, name, hash, set_at, set_via, must_change, version \
             FROM credentials WHERE account_id = $1 ORDER BY name",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let c = Credential::try_from(row)?;
                Ok(CredentialInfo {
                    format: Scheme::detect(&c.hash).map_or("unknown", Scheme::name),
                    name: c.name,
                    set_at: c.set_at,
                    set_via: c.set_via,
                    must_change: c.must_change,
                    version: c.version,
                })
            })
            .collect()
    }

    /// The hashes a credential had before, newest first, at most `limit`.
    pub async fn credential_history(
        &self,
        account_id: i64,
        name: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT hash FROM credential_history WHERE account_id = $1 AND name = $2 \
             ORDER BY retired_at DESC, id DESC LIMIT $3",
        )
        .bind(account_id)
        .bind(name)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many accounts of the realm hold each credential, in one read of
    /// the realm's credentials (a credential no account holds is absent):
    /// one count per name read the realm once per name.
    pub async fn count_credentials_by_name(
        &self,
        realm: &str,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT c.name, COUNT(*) FROM credentials c JOIN accounts a ON a.id = c.account_id \
             WHERE a.realm = $1 GROUP BY c.name",
        )
        .bind(realm)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Number of accounts in the realm that hold the named credential.
    pub async fn count_credentials(&self, realm: &str, name: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM credentials c JOIN accounts a ON a.id = c.account_id \
             WHERE a.realm = $1 AND c.name = $2",
        )
        .bind(realm)
        .bind(name)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Applies one or more credential writes to an account atomically: all of
    /// them or none. A write whose precondition fails makes the whole call fail
    /// with [`StoreError::Conflict`]. Returns the new version of each.
    pub async fn write_credentials(
        &self,
        account: &Account,
        writes: &[CredentialWrite],
        now: Timestamp,
    ) -> Result<Vec<i64>, StoreError> {
        self.write_credentials_by(account, writes, now, None).await
    }

    /// [`Store::write_credentials`], audited as done by `by` (the name of
    /// the caller's token) as well as through each write's channel.
    pub async fn write_credentials_by(
        &self,
        account: &Account,
        writes: &[CredentialWrite],
        now: Timestamp,
        by: Option<&str>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut versions = Vec::with_capacity(writes.len());
        for write in writes {
            versions.push(write_one(&mut tx, account, write, now, by).await?);
        }
        tx.commit().await?;
        Ok(versions)
    }

    /// One credential write; see [`Store::write_credentials`].
    pub async fn write_credential(
        &self,
        account: &Account,
        write: CredentialWrite,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let versions = self.write_credentials(account, &[write], now).await?;
        Ok(versions.first().copied().unwrap_or_default())
    }
}

pub(super) async fn write_one(
    conn: &mut AnyConnection,
    account: &Account,
    write: &CredentialWrite,
    now: Timestamp,
    by: Option<&str>,
) -> Result<i64, StoreError> {
    let conflict = || StoreError::Conflict {
        what: format!(
            "credential {:?} of account {:?}",
            write.name, account.login_id
        ),
    };
    if let WriteKind::CopyIfMissing { source } = &write.kind {
        let copied = sqlx::query(
            "INSERT INTO credentials (account_id, name, hash, set_at, set_via, must_change, version) \
             SELECT account_id, $2, hash, set_at, $3, must_change, 1 FROM credentials \
             WHERE account_id = $1 AND name = $4 ON CONFLICT (account_id, name) DO NOTHING",
        )
        .bind(account.id)
        .bind(&write.name)
        .bind(&write.via)
        .bind(source)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if copied > 0 {
            audit_write(conn, account, write, now, by).await?;
        }
        return Ok(0);
    }
    if write.kind == WriteKind::Rehash {
        let Expected::Version(expected) = write.expected else {
            return Err(conflict());
        };
        let version: Option<i64> = sqlx::query_scalar(
            "UPDATE credentials SET hash = $1, version = version + 1 \
             WHERE account_id = $2 AND name = $3 AND version = $4 RETURNING version",
        )
        .bind(&write.hash)
        .bind(account.id)
        .bind(&write.name)
        .bind(expected)
        .fetch_optional(&mut *conn)
        .await?;
        let version = version.ok_or_else(conflict)?;
        audit_write(conn, account, write, now, by).await?;
        return Ok(version);
    }
    if write.expected != Expected::Absent {
        // Any version matches when none is expected (an administrator's overwrite).
        let version = match write.expected {
            Expected::Version(v) => Some(v),
            _ => None,
        };
        sqlx::query(
            "INSERT INTO credential_history (account_id, name, hash, retired_at) \
             SELECT account_id, name, hash, $3 FROM credentials \
             WHERE account_id = $1 AND name = $2 AND ($4 IS NULL OR version = $4)",
        )
        .bind(account.id)
        .bind(&write.name)
        .bind(millis(now))
        .bind(version)
        .execute(&mut *conn)
        .await?;
    }
    let version: Option<i64> = match write.expected {
        Expected::Absent => {
            let inserted = sqlx::query_scalar(
                "INSERT INTO credentials (account_id, name, hash, set_at, set_via, must_change, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, 1) RETURNING version",
            )
            .bind(account.id)
            .bind(&write.name)
            .bind(&write.hash)
            .bind(millis(now))
            .bind(&write.via)
            .bind(i16::from(write.must_change))
            .fetch_one(&mut *conn)
            .await;
            match inserted {
                Ok(v) => Some(v),
                Err(e) if is_unique_violation(&e) => None,
                Err(e) => return Err(e.into()),
            }
        }
        Expected::Version(expected) => {
            sqlx::query_scalar(
                "UPDATE credentials SET hash = $1, set_at = $2, set_via = $3, must_change = $4, \
                 version = version + 1 WHERE account_id = $5 AND name = $6 AND version = $7 \
                 RETURNING version",
            )
            .bind(&write.hash)
            .bind(millis(now))
            .bind(&write.via)
            .bind(i16::from(write.must_change))
            .bind(account.id)
            .bind(&write.name)
            .bind(expected)
            .fetch_optional(&mut *conn)
            .await?
        }
        Expected::Any => Some(
            sqlx::query_scalar(
                "INSERT INTO credentials (account_id, name, hash, set_at, set_via, must_change, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, 1) \
                 ON CONFLICT (account_id, name) DO UPDATE SET hash = excluded.hash, \
                 set_at = excluded.set_at, set_via = excluded.set_via, \
                 must_change = excluded.must_change, version = credentials.version + 1 \
                 RETURNING version",
            )
            .bind(account.id)
            .bind(&write.name)
            .bind(&write.hash)
            .bind(millis(now))
            .bind(&write.via)
            .bind(i16::from(write.must_change))
            .fetch_one(&mut *conn)
            .await?,
        ),
    };
    let version = version.ok_or_else(conflict)?;
    audit_write(conn, account, write, now, by).await?;
    if write.kind == WriteKind::Set {
        // A new password, whoever set it, ends every recovery under way for
        // it: a temporary password mailed earlier must not overwrite it.
        super::recovery::revoke_tickets(conn, account, &write.name, now).await?;
    }
    Ok(version)
}

async fn audit_write(
    conn: &mut AnyConnection,
    account: &Account,
    write: &CredentialWrite,
    now: Timestamp,
    by: Option<&str>,
) -> Result<(), StoreError> {
    let mut entry = AuditEntry::new(now, &write.via, write.action)
        .account(&account.realm, &account.login_id)
        .credential(&write.name);
    if let Some(by) = by {
        entry = entry.detail(format!("by={by}"));
    }
    audit::append(conn, &entry).await
}
