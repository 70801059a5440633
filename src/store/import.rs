//! Bulk import of existing members with their existing hashes, a batch per
//! transaction. Never overwrites: a member's stored password always wins
//! over a re-imported one.

use std::collections::{HashMap, HashSet};
use std::fmt;

use jiff::Timestamp;
// Dynamic SQL here only ever adds generated `$n` placeholders; values are bound.
use sqlx::AssertSqlSafe;

use super::{AuditEntry, Store, StoreError, audit, millis};

/// One validated input row (the parsing lives in [`crate::files::members`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// Where the row came from, for messages.
    pub line: u64,
    pub login_id: String,
    pub base_email: String,
    /// (credential name, existing hash).
    pub credentials: Vec<(String, String)>,
    /// Credentials a cutover completed before this import gives the member
    /// (copies of its source, as the backfill made them): added where
    /// missing, never compared with what is stored (a member may have
    /// changed them since).
    pub given: Vec<(String, String)>,
}

impl fmt::Debug for ImportRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.credentials.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ImportRow")
            .field("line", &self.line)
            .field("login_id", &self.login_id)
            .field("credentials", &names)
            .field(
                "given",
                &self
                    .given
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// What importing one row did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    /// A new account with its credentials.
    Imported,
    /// The account existed; these credentials were missing and were added.
    Updated { added: Vec<String> },
    /// The account and all its credentials were already there, identical.
    Unchanged,
    /// The stored account differs from the row; the stored values were kept
    /// (missing credentials were still added). One reason per difference.
    Kept {
        added: Vec<String>,
        differences: Vec<String>,
    },
}

/// `($1, $2, $3), ($4, $5, $6), …` for a multi-row statement; `tail` is
/// appended inside each row for constant columns, e.g. `, 0, 1`.
fn placeholders(rows: usize, columns: usize, first: usize, tail: &str) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..columns {
            if c > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(first + r * columns + c).to_string());
        }
        out.push_str(tail);
        out.push(')');
    }
    out
}

/// Bound parameters per statement. SQLite looks each `$n` up by name in a
/// list (sqlite3_bind_parameter_name), so binding costs O(n²) in a
/// statement's parameters: 2,500 of them took 60 % of an import's time.
/// PostgreSQL has no such cost and a round trip per statement instead.
fn max_parameters(backend: super::Backend) -> usize {
    match backend {
        super::Backend::Sqlite => 100,
        super::Backend::Postgres => 3000,
    }
}

type Existing = HashMap<String, (i64, String)>;

impl Store {
    /// Imports one batch in one transaction. Login IDs must be unique within
    /// the batch. Returns one outcome per row, in order.
    pub async fn import_batch(
        &self,
        realm: &str,
        rows: &[ImportRow],
        actor: &str,
        now: Timestamp,
    ) -> Result<Vec<ImportOutcome>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut seen = HashSet::with_capacity(rows.len());
        if let Some(dup) = rows.iter().find(|r| !seen.insert(r.login_id.as_str())) {
            return Err(StoreError::Duplicate {
                what: format!("login ID {:?} twice in one import batch", dup.login_id),
            });
        }
        let mut tx = self.begin_write().await?;

        let max = max_parameters(self.backend);
        let before = select_accounts(&mut tx, realm, rows, max).await?;
        let new_rows: Vec<&ImportRow> = rows
            .iter()
            .filter(|r| !before.contains_key(&r.login_id))
            .collect();
        for chunk in new_rows.chunks(max / 5) {
            let sql = format!(
                "INSERT INTO accounts (realm, login_id, base_email, created_at, updated_at, state) \
                 VALUES {} ON CONFLICT (realm, login_id) DO NOTHING",
                placeholders(chunk.len(), 5, 1, ", 'active'")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind(realm)
                    .bind(&r.login_id)
                    .bind(&r.base_email)
                    .bind(millis(now))
                    .bind(millis(now));
            }
            q.execute(&mut *tx).await?;
        }
        let ids = if new_rows.is_empty() {
            before.clone()
        } else {
            select_accounts(&mut tx, realm, rows, max).await?
        };

        // Existing credentials of accounts that were there before this batch.
        let old_ids: Vec<i64> = before.values().map(|(id, _)| *id).collect();
        let mut stored: HashMap<(i64, String), String> = HashMap::new();
        for chunk in old_ids.chunks(max) {
            let sql = format!(
                "SELECT account_id, name, hash FROM credentials WHERE account_id IN ({})",
                (1..=chunk.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut q = sqlx::query_as::<_, (i64, String, String)>(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            for (id, name, hash) in q.fetch_all(&mut *tx).await? {
                stored.insert((id, name), hash);
            }
        }

        let mut outcomes = Vec::with_capacity(rows.len());
        let mut inserts: Vec<(i64, &str, &str)> = Vec::new();
        for r in rows {
            let Some((id, _)) = ids.get(&r.login_id) else {
                return Err(StoreError::NotFound {
                    what: format!("account {:?} right after inserting it", r.login_id),
                });
            };
            let existed = before.get(&r.login_id);
            let mut added = Vec::new();
            let mut differences = Vec::new();
            if let Some((_, email)) = existed
                && email != &r.base_email
            {
                differences.push(
                    "base_email differs from the stored one; kept the stored value".to_owned(),
                );
            }
            for (name, hash) in &r.credentials {
                match stored.get(&(*id, name.clone())) {
                    None => {
                        inserts.push((*id, name, hash));
                        added.push(name.clone());
                    }
                    Some(current) if current == hash => {}
                    Some(_) => differences.push(format!(
                        "credential {name:?} differs from the stored hash; kept the stored one"
                    )),
                }
            }
            for (name, hash) in &r.given {
                if !stored.contains_key(&(*id, name.clone()))
                    && !r.credentials.iter().any(|(n, _)| n == name)
                {
                    inserts.push((*id, name, hash));
                    added.push(name.clone());
                }
            }
            outcomes.push(match (existed, differences.is_empty(), added.is_empty()) {
                (None, _, _) => ImportOutcome::Imported,
                (Some(_), false, _) => ImportOutcome::Kept { added, differences },
                (Some(_), true, false) => ImportOutcome::Updated { added },
                (Some(_), true, true) => ImportOutcome::Unchanged,
            });
        }

        for chunk in inserts.chunks(max / 5) {
            let sql = format!(
                "INSERT INTO credentials (account_id, name, hash, set_at, set_via, must_change, version) \
                 VALUES {} ON CONFLICT (account_id, name) DO NOTHING",
                placeholders(chunk.len(), 5, 1, ", 0, 1")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (id, name, hash) in chunk {
                q = q
                    .bind(*id)
                    .bind(*name)
                    .bind(*hash)
                    .bind(millis(now))
                    .bind(actor);
            }
            q.execute(&mut *tx).await?;
        }

        let count = |f: fn(&ImportOutcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
        let detail = format!(
            "rows {}: imported {}, updated {}, unchanged {}, kept {}",
            rows.len(),
            count(|o| matches!(o, ImportOutcome::Imported)),
            count(|o| matches!(o, ImportOutcome::Updated { .. })),
            count(|o| matches!(o, ImportOutcome::Unchanged)),
            count(|o| matches!(o, ImportOutcome::Kept { .. })),
        );
        let mut entry = AuditEntry::new(now, actor, "accounts.import").detail(detail);
        entry.realm = Some(realm.to_owned());
        audit::append(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(outcomes)
    }
}

async fn select_accounts(
    conn: &mut sqlx::AnyConnection,
    realm: &str,
    rows: &[ImportRow],
    max_parameters: usize,
) -> Result<Existing, StoreError> {
    let mut found = Existing::new();
    for chunk in rows.chunks(max_parameters - 1) {
        let sql = format!(
            "SELECT id, login_id, base_email FROM accounts WHERE realm = $1 AND login_id IN ({})",
            (2..chunk.len() + 2)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        // Not a prepared statement PostgreSQL keeps: after five runs it may
        // switch to a generic plan, and one made while `accounts` was still
        // empty scans the realm for every batch until autovacuum's ANALYZE
        // (BENCHMARKS.md, import: 1,300 rows/s). Planned for its parameters,
        // it is an index look-up at any size.
        let mut q = sqlx::query_as::<_, (i64, String, String)>(AssertSqlSafe(sql))
            .persistent(false)
            .bind(realm);
        for r in chunk {
            q = q.bind(&r.login_id);
        }
        found.extend(
            q.fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(|(id, login, email)| (login, (id, email))),
        );
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_number_rows_and_columns() {
        assert_eq!(placeholders(2, 3, 1, ""), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(1, 2, 5, ", 0"), "($5, $6, 0)");
    }
}
