//! Cutover bookkeeping: checkpoints and the counts that plans and status show.

use sqlx::AssertSqlSafe;

use super::{Store, StoreError};

/// How far a cutover has got, from its durable checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointPhase {
    Running,
    Completed,
    Retired,
}

impl Store {
    /// The checkpoint phase of a cutover, `None` when it never started.
    pub async fn checkpoint_phase(
        &self,
        cutover: &str,
    ) -> Result<Option<CheckpointPhase>, StoreError> {
        let phase: Option<String> =
            sqlx::query_scalar("SELECT phase FROM cutover_checkpoints WHERE cutover = $1")
                .bind(cutover)
                .fetch_optional(&self.pool)
                .await?;
        phase
            .map(|p| match p.as_str() {
                "running" => Ok(CheckpointPhase::Running),
                "completed" => Ok(CheckpointPhase::Completed),
                "retired" => Ok(CheckpointPhase::Retired),
                other => Err(StoreError::Corrupt {
                    table: "cutover_checkpoints",
                    reason: format!("unknown phase {other:?}"),
                }),
            })
            .transpose()
    }

    /// Accounts in the realm that already hold every one of `targets`.
    pub async fn count_holding_all(
        &self,
        realm: &str,
        targets: &[String],
    ) -> Result<i64, StoreError> {
        if targets.is_empty() {
            return self.count_accounts(realm).await;
        }
        // Only generated `$n` placeholders are added; the names are bound.
        let list = (2..targets.len() + 2)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT COUNT(*) FROM accounts a WHERE a.realm = $1 AND \
             (SELECT COUNT(*) FROM credentials c WHERE c.account_id = a.id AND c.name IN ({list})) = {}",
            targets.len()
        );
        let mut q = sqlx::query_scalar(AssertSqlSafe(sql)).bind(realm);
        for t in targets {
            q = q.bind(t);
        }
        Ok(q.fetch_one(&self.pool).await?)
    }
}
