//! Members: realm, immutable login ID, base e-mail address, state.

use jiff::Timestamp;

use super::{AuditEntry, Store, StoreError, audit, is_unique_violation, millis, timestamp};

/// Lifecycle of a member account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    Active,
    Suspended,
    Closed,
}

impl AccountState {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Active => "active",
            AccountState::Suspended => "suspended",
            AccountState::Closed => "closed",
        }
    }

    fn parse(s: &str) -> Result<AccountState, StoreError> {
        match s {
            "active" => Ok(AccountState::Active),
            "suspended" => Ok(AccountState::Suspended),
            "closed" => Ok(AccountState::Closed),
            other => Err(StoreError::Corrupt {
                table: "accounts",
                reason: format!("unknown state {other:?}"),
            }),
        }
    }
}

/// A member. The login ID is fixed at creation: the store has no call that
/// changes it, and a database trigger refuses any UPDATE that tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub realm: String,
    pub login_id: String,
    pub base_email: String,
    pub state: AccountState,
    pub created_at: Timestamp,
}

pub(super) type AccountRow = (i64, String, String, String, String, i64);

impl TryFrom<AccountRow> for Account {
    type Error = StoreError;
    fn try_from(row: AccountRow) -> Result<Account, StoreError> {
        let (id, realm, login_id, base_email, state, created_at) = row;
        Ok(Account {
            id,
            realm,
            login_id,
            base_email,
            state: AccountState::parse(&state)?,
            created_at: timestamp(created_at, "accounts")?,
        })
    }
}

impl Store {
    /// Creates an active account. A second account with the same login ID in
    /// the realm is refused with [`StoreError::Duplicate`].
    pub async fn create_account(
        &self,
        realm: &str,
        login_id: &str,
        base_email: &str,
        actor: &str,
        now: Timestamp,
    ) -> Result<Account, StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query_as::<_, AccountRow>(
            "INSERT INTO accounts (realm, login_id, base_email, state, created_at, updated_at) \
             VALUES ($1, $2, $3, 'active', $4, $4) \
             RETURNING id, realm, login_id, base_email, state, created_at",
        )
        .bind(realm)
        .bind(login_id)
        .bind(base_email)
        .bind(millis(now))
        .fetch_one(&mut *tx)
        .await;
        let row = match inserted {
            Ok(row) => row,
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Duplicate {
                    what: format!("account {login_id:?} in realm {realm:?}"),
                });
            }
            Err(e) => return Err(e.into()),
        };
        audit::append(
            &mut tx,
            &AuditEntry::new(now, actor, "account.create").account(realm, login_id),
        )
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    pub async fn find_account(
        &self,
        realm: &str,
        login_id: &str,
    ) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query_as::<_, AccountRow>(
            "SELECT id, realm, login_id, base_email, state, created_at \
             FROM accounts WHERE realm = $1 AND login_id = $2",
        )
        .bind(realm)
        .bind(login_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Account::try_from).transpose()
    }

    /// Suspends, closes or reactivates an account. The login ID stays.
    pub async fn set_account_state(
        &self,
        account: &Account,
        state: AccountState,
        actor: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE accounts SET state = $1, updated_at = $2 WHERE id = $3")
            .bind(state.as_str())
            .bind(millis(now))
            .bind(account.id)
            .execute(&mut *tx)
            .await?;
        audit::append(
            &mut tx,
            &AuditEntry::new(now, actor, "account.state")
                .account(&account.realm, &account.login_id)
                .detail(state.as_str()),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Number of accounts in a realm.
    pub async fn count_accounts(&self, realm: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE realm = $1")
                .bind(realm)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
