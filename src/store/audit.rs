//! The append-only audit log: who or which channel did what to which
//! account, and when. It never holds a password, a hash or a token.

use jiff::Timestamp;
use sqlx::AnyConnection;

use super::{Store, StoreError, millis, timestamp};

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: Timestamp,
    /// A channel (`portal`, `helpdesk`, …), `admin`, `import` or a controller identity.
    pub actor: String,
    /// Dotted verb, e.g. `credential.set`, `credential.rehash`, `account.create`.
    pub action: String,
    pub realm: Option<String>,
    pub login_id: Option<String>,
    pub credential: Option<String>,
    pub detail: Option<String>,
}

impl AuditEntry {
    pub fn new(at: Timestamp, actor: &str, action: &str) -> AuditEntry {
        AuditEntry {
            at,
            actor: actor.to_owned(),
            action: action.to_owned(),
            realm: None,
            login_id: None,
            credential: None,
            detail: None,
        }
    }

    /// An entry about a whole realm (a cutover's steps).
    pub fn realm(mut self, realm: &str) -> AuditEntry {
        self.realm = Some(realm.to_owned());
        self
    }

    pub fn account(mut self, realm: &str, login_id: &str) -> AuditEntry {
        self.realm = Some(realm.to_owned());
        self.login_id = Some(login_id.to_owned());
        self
    }

    pub fn credential(mut self, name: &str) -> AuditEntry {
        self.credential = Some(name.to_owned());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> AuditEntry {
        self.detail = Some(detail.into());
        self
    }
}

pub(super) async fn append(conn: &mut AnyConnection, entry: &AuditEntry) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, realm, login_id, credential, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(millis(entry.at))
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(entry.realm.as_deref())
    .bind(entry.login_id.as_deref())
    .bind(entry.credential.as_deref())
    .bind(entry.detail.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

type AuditRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl Store {
    /// The audit trail of one account, oldest first.
    pub async fn audit_trail(
        &self,
        realm: &str,
        login_id: &str,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query_as::<_, AuditRow>(
            "SELECT at, actor, action, realm, login_id, credential, detail FROM audit_log \
             WHERE realm = $1 AND login_id = $2 ORDER BY id",
        )
        .bind(realm)
        .bind(login_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(at, actor, action, realm, login_id, credential, detail)| {
                Ok(AuditEntry {
                    at: timestamp(at, "audit_log")?,
                    actor,
                    action,
                    realm,
                    login_id,
                    credential,
                    detail,
                })
            })
            .collect()
    }

    /// Appends one entry on its own (for events not tied to another write).
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        append(&mut conn, entry).await
    }
}
