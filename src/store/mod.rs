//! The account store: the only module that speaks SQL.
//!
//! SQLite (the embedded default, `sqlite://credshift.db`) and PostgreSQL
//! (`postgres://…`) run the same queries through sqlx's `Any` driver, so the
//! two behave the same by construction; only the migrations differ in
//! dialect (`migrations/sqlite`, `migrations/postgres`). Times are stored as
//! Unix milliseconds and always come from the caller, so a rehearsal with a
//! fixed clock (`--now`) writes what a real run would.

mod accounts;
mod audit;
mod credentials;
mod cutovers;
mod import;
mod recovery;

pub use accounts::{Account, AccountState};
pub use audit::AuditEntry;
pub use credentials::{
    Credential, CredentialInfo, CredentialWrite, Expected, VerifyRead, VerifySnapshot, WriteKind,
};
pub use cutovers::{BatchResult, Checkpoint, CheckpointPhase, KnownSplit, SplitRef};
pub use import::{ImportOutcome, ImportRow};
pub use recovery::{FailureKey, Failures, NewTicket, OutboxMail, RecoveryCounts, Ticket};

use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Transaction};

/// The store URL used when none is given.
pub const DEFAULT_URL: &str = "sqlite://credshift.db";

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database a store URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// What went wrong in the store. Messages name the thing, never a secret
/// (the URL's password is redacted, hashes are never included).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot connect to the {backend} store at {url}: {source}")]
    Connect {
        backend: &'static str,
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot migrate the store: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{what} already exists")]
    Duplicate { what: String },
    #[error("{what} was changed concurrently; reload and try again")]
    Conflict { what: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
}

/// A connected, migrated account store. Cheap to clone (a pool handle).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
}

/// Removes the password from a URL before it goes into a message.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

impl FromStr for Backend {
    type Err = StoreError;
    fn from_str(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::InvalidUrl {
                url: redact_url(url),
                reason: "expected sqlite://FILE or postgres://USER@HOST/DB".into(),
            })
        }
    }
}

/// The file of a `sqlite://FILE` URL (`None` for other URLs and in-memory databases).
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.contains(":memory:")).then(|| std::path::PathBuf::from(path))
}

/// Why a SQLite file may not open, in words: SQLite itself only says
/// "unable to open database file" when its directory cannot be written.
fn sqlite_hint(url: &str) -> String {
    let Some(file) = sqlite_file(url) else {
        return String::new();
    };
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let probe = dir.join(format!(".credshift-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            String::new()
        }
        Err(e) if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem => {
            format!(" (the file system holding {} is read-only)", dir.display())
        }
        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            format!(" (the file system holding {} is full)", dir.display())
        }
        Err(e) => format!(" ({} is not writable: {e})", dir.display()),
    }
}

/// SQLite creates the file on first use, like `credshift apply` on a fresh machine expects.
fn with_sqlite_defaults(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

impl Store {
    /// Connects and applies pending migrations (what every command does on start).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, false).await
    }

    /// Connects for reading only (`credshift plan`): a SQLite file is opened
    /// read-only and left exactly as it is.
    pub async fn connect_read_only(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, true).await
    }

    async fn connect_with(url: &str, read_only: bool) -> Result<Store, StoreError> {
        install_default_drivers();
        let backend: Backend = url.parse()?;
        let (connect_url, max_connections) = match backend {
            Backend::Sqlite if read_only => {
                let sep = if url.contains('?') { '&' } else { '?' };
                (format!("{url}{sep}mode=ro"), 2)
            }
            // One writer at a time is all SQLite allows; readers share the rest.
            Backend::Sqlite => (with_sqlite_defaults(url), 4),
            Backend::Postgres => (url.to_owned(), 8),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite && read_only {
                        sqlx::raw_sql("PRAGMA busy_timeout = 10000;")
                            .execute(conn)
                            .await?;
                    } else if backend == Backend::Sqlite {
                        sqlx::raw_sql(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .execute(conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&connect_url)
            .await
            .map_err(|source| StoreError::Connect {
                backend: backend.name(),
                url: format!("{}{}", redact_url(url), sqlite_hint(url)),
                source,
            })?;
        Ok(Store {
            pool,
            backend,
            url: redact_url(url),
        })
    }

    /// Applies the embedded migrations; returns how many were new.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let before = self.applied_migrations().await.unwrap_or(0);
        migrator.run(&self.pool).await?;
        let after = self.applied_migrations().await?;
        Ok(after.saturating_sub(before))
    }

    /// Whether the schema exists and is current, without changing anything.
    pub async fn migrate_is_current(&self) -> Result<bool, StoreError> {
        let expected = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.iter().count(),
            Backend::Postgres => POSTGRES_MIGRATIONS.iter().count(),
        };
        Ok(self.applied_migrations().await.is_ok_and(|n| n == expected))
    }

    async fn applied_migrations(&self) -> Result<usize, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL with any password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Checks that the database answers (readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// How long to leave the write lock free after a long write transaction
    /// (a backfill or import batch) that held it for `held`, so that other writers get
    /// their turn: as long again on SQLite; nothing on PostgreSQL, which locks
    /// rows.
    ///
    /// SQLite has one write lock per file and no queue for it. A writer that
    /// finds it taken sleeps and retries (1, 2, 5, … 100 ms: SQLite's busy
    /// handler) and, against batches that follow each other within
    /// microseconds, kept finding it taken: during a 1,000,000-account
    /// cutover, verifies through the API (two small writes each, for
    /// throttling) fell to a quarter of their rate and some took over 2 s
    /// (BENCHMARKS.md). With the lock free half the time, a waiting writer
    /// gets in on its first retries; the backfill takes about twice as long.
    pub fn pause_after_write(&self, held: Duration) -> Duration {
        match self.backend {
            Backend::Sqlite => held,
            Backend::Postgres => Duration::ZERO,
        }
    }

    /// Leaves the write lock free for [`Store::pause_after_write`] after a
    /// batch that held it for `held`; returns the pause. No pause is no
    /// sleep at all: a zero sleep still waits for the runtime's next timer
    /// tick (up to 1 ms), which was 1 s of a 1,000,000-account cutover on
    /// PostgreSQL.
    pub async fn yield_to_writers(&self, held: Duration) -> Duration {
        let pause = self.pause_after_write(held);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        pause
    }

    /// A write transaction. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so two writers queue instead of failing to upgrade.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(tx)
    }
}

/// Unix milliseconds, the store's time representation.
fn millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn timestamp(ms: i64, table: &'static str) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(ms).map_err(|e| StoreError::Corrupt {
        table,
        reason: format!("time out of range: {e}"),
    })
}

/// Whether a database error is a unique-key violation (both dialects).
fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db.code().as_deref() == Some("23505")
                || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/credshift"),
            "postgres://app:***@db:5432/credshift"
        );
        assert_eq!(redact_url("sqlite://credshift.db"), "sqlite://credshift.db");
    }

    #[test]
    fn backend_from_url() {
        assert_eq!("sqlite://x.db".parse::<Backend>().unwrap(), Backend::Sqlite);
        assert_eq!(
            "postgresql://h/db".parse::<Backend>().unwrap(),
            Backend::Postgres
        );
        let err = "mysql://h/db".parse::<Backend>().unwrap_err().to_string();
        assert!(err.contains("expected sqlite://"), "{err}");
    }
}
