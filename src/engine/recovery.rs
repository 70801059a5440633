//! Recovery: self-service temporary passwords mailed to the base
//! e-mail address through the outbox, their single use, and help-desk resets.
//! Which applies follows the routing of the instant.

use std::time::Duration;

use jiff::Timestamp;
use rand::RngExt as _;
use serde::{Deserialize, Serialize};

use super::EngineError;
use super::members::{Realm, Resolved};
use super::model::{Recovery, SelfService};
use crate::hashing::{self, HashPool, Sealer, Secret};
use crate::store::{Account, CredentialWrite, Expected, NewTicket, Store, WriteKind};

/// What a recovery request did. Never shown to the requester (who always
/// gets the same answer); for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    Issued,
    UnknownAccount,
    UnknownPurpose,
    /// The governing credential's recovery is not self-service now.
    NotSelfService,
    AccountNotActive,
    RateLimited,
}

impl RequestOutcome {
    pub fn name(self) -> &'static str {
        match self {
            RequestOutcome::Issued => "issued",
            RequestOutcome::UnknownAccount => "unknown_account",
            RequestOutcome::UnknownPurpose => "unknown_purpose",
            RequestOutcome::NotSelfService => "not_self_service",
            RequestOutcome::AccountNotActive => "account_not_active",
            RequestOutcome::RateLimited => "rate_limited",
        }
    }
}

/// The sealed mail payload: what the mail needs and nothing else.
#[derive(Serialize, Deserialize)]
pub struct MailPayload {
    pub login_id: String,
    pub realm: String,
    pub temporary_password: String,
    pub expires_at: String,
}

impl Drop for MailPayload {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.temporary_password.zeroize();
    }
}

/// Who asks for a help-desk reset: the name the audit log gives it, and
/// whether it may reset any credential.
#[derive(Debug, Clone, Copy)]
pub struct HelpdeskCaller<'a> {
    pub name: &'a str,
    pub administrator: bool,
}

/// Default shape of a help-desk temporary password (16 of 56 characters ≈ 93 bits).
const HELPDESK_ALPHABET: &str = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
const HELPDESK_LENGTH: u32 = 16;

/// A temporary password from `alphabet`, drawn with the thread's CSPRNG.
pub fn temporary_password(alphabet: &[char], length: u32) -> Secret {
    let mut rng = rand::rng();
    let text: String = (0..length)
        .map(|_| alphabet[rng.random_range(0..alphabet.len().max(1))])
        .collect();
    Secret::new(text)
}

impl Realm {
    /// Handles "forgot my password" for a purpose. The caller answers the
    /// requester the same way whatever this returns. Nothing here hashes
    /// with argon2 (a ticket is stored as a fast hash, see
    /// [`crate::hashing::ticket_hash`]), so no outcome costs more CPU than
    /// another.
    pub async fn request_recovery(
        &self,
        store: &Store,
        sealer: &Sealer,
        account: Option<&Account>,
        purpose: &str,
        now: Timestamp,
    ) -> Result<RequestOutcome, EngineError> {
        let Some(account) = account else {
            return Ok(RequestOutcome::UnknownAccount);
        };
        let Some((resolved, recovery)) = self.recovery(store, account, purpose, now).await? else {
            return Ok(RequestOutcome::UnknownPurpose);
        };
        let Recovery::SelfService(settings) = recovery else {
            return Ok(RequestOutcome::NotSelfService);
        };
        if account.state != crate::store::AccountState::Active {
            return Ok(RequestOutcome::AccountNotActive);
        }
        let key = format!("{}/{}", account.realm, account.login_id);
        if !store
            .rate_limit(
                "recovery-account",
                &key,
                settings.rate_limit_per,
                settings.rate_limit_requests,
                now,
            )
            .await?
        {
            return Ok(RequestOutcome::RateLimited);
        }
        self.issue(store, sealer, account, &resolved, purpose, &settings, now)
            .await?;
        Ok(RequestOutcome::Issued)
    }

    #[allow(clippy::too_many_arguments)]
    async fn issue(
        &self,
        store: &Store,
        sealer: &Sealer,
        account: &Account,
        resolved: &Resolved,
        purpose: &str,
        settings: &SelfService,
        now: Timestamp,
    ) -> Result<(), EngineError> {
        let temp = temporary_password(&settings.alphabet, settings.temp_length);
        let hash = hashing::ticket_hash(&temp);
        let expires_at = now + settings.ttl;
        let payload = MailPayload {
            login_id: account.login_id.clone(),
            realm: account.realm.clone(),
            temporary_password: temp.expose().to_owned(),
            expires_at: expires_at.to_string(),
        };
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(&payload).unwrap_or_default());
        let sealed_payload = sealer.seal(&plain)?;
        let ticket = NewTicket {
            credential: &resolved.governing,
            purpose,
            hash,
            expires_at,
            template: format!("{}/{}", self.policy.name, resolved.governing),
            sealed_payload,
        };
        store.issue_ticket(account, ticket, now).await?;
        Ok(())
    }

    /// Writes that set the governing credential of `resolved` to `hash`
    /// (must-change), materialising the cutover's other targets first when
    /// the purpose is in dual read.
    pub(crate) fn reset_writes(
        &self,
        resolved: &Resolved,
        hash: String,
        via: &str,
        expected: Expected,
    ) -> Vec<CredentialWrite> {
        let mut writes = self.materialise_writes(resolved);
        writes.push(CredentialWrite {
            name: resolved.governing.clone(),
            hash,
            expected,
            via: via.to_owned(),
            must_change: true,
            action: "credential.reset",
            kind: WriteKind::Set,
        });
        writes
    }

    /// Tries `password` as the temporary password of the governing
    /// credential. On a match the ticket is used up and becomes the
    /// credential's password (hashed now with the policy's argon2id) with
    /// must-change set; the old password stops working only now.
    pub async fn redeem(
        &self,
        store: &Store,
        hasher: &HashPool,
        account: &Account,
        resolved: &Resolved,
        password: Secret,
        now: Timestamp,
    ) -> Result<bool, EngineError> {
        let Some(ticket) = store
            .live_ticket(account.id, &resolved.governing, now)
            .await?
        else {
            return Ok(false);
        };
        // Typed through an input method, full-width letters and digits are
        // the temporary password's own.
        let password = password.normalized();
        let matched = if hashing::is_fast_ticket(&ticket.hash) {
            hashing::ticket_matches(&ticket.hash, &password)
        } else {
            // Issued as argon2 before tickets were stored as a fast hash.
            hasher
                .verify(password.clone(), ticket.hash.clone())
                .await
                .unwrap_or(false)
        };
        if !matched {
            return Ok(false);
        }
        let hash = self
            .hash_for(hasher, account, &resolved.governing, password)
            .await?;
        let writes = self.reset_writes(resolved, hash, "recovery", Expected::Any);
        Ok(store
            .redeem_ticket(account, ticket.id, &writes, now)
            .await?)
    }

    /// A help-desk reset of the password of `purpose` by `by`: allowed
    /// when the governing credential's recovery is `Helpdesk` now, or for an
    /// administrator.
    pub async fn helpdesk_reset(
        &self,
        store: &Store,
        hasher: &HashPool,
        account: &Account,
        purpose: &str,
        by: HelpdeskCaller<'_>,
        now: Timestamp,
    ) -> Result<HelpdeskReset, EngineError> {
        let Some((resolved, recovery)) = self.recovery(store, account, purpose, now).await? else {
            return Ok(HelpdeskReset::UnknownPurpose);
        };
        if recovery != Recovery::Helpdesk && !by.administrator {
            return Ok(HelpdeskReset::NotHelpdeskRecoverable {
                credential: resolved.governing,
            });
        }
        let alphabet: Vec<char> = HELPDESK_ALPHABET.chars().collect();
        let temp = temporary_password(&alphabet, HELPDESK_LENGTH);
        let hash = self
            .hash_for(hasher, account, &resolved.governing, temp.clone())
            .await?;
        let writes = self.reset_writes(&resolved, hash, "helpdesk", Expected::Any);
        // The audit log names the token that did it, not only its channel.
        store
            .write_credentials_by(account, &writes, now, Some(by.name))
            .await?;
        Ok(HelpdeskReset::Reset(temp))
    }
}

/// What a help-desk reset came to.
pub enum HelpdeskReset {
    /// Done: the temporary password, to be shown once.
    Reset(Secret),
    /// The governing credential's password is not recovered by the help
    /// desk (self-service, or no recovery), and the caller is no administrator.
    NotHelpdeskRecoverable { credential: String },
    /// The realm routes no such purpose.
    UnknownPurpose,
}

/// Backoff of mail delivery after `attempts` failures: 10 s doubling per
/// attempt, at most an hour; dead-lettered after `MAX_ATTEMPTS`.
pub fn retry_delay(attempts: i64) -> Duration {
    let secs = 10u64.saturating_mul(1u64 << (attempts - 1).clamp(0, 12));
    Duration::from_secs(secs.min(3600))
}

/// Attempts before a mail is dead-lettered.
pub const MAX_ATTEMPTS: i64 = 8;

/// How long used, expired and revoked tickets are kept for the record
/// before they are purged.
pub const KEEP_CLOSED_TICKETS: Duration = Duration::from_secs(7 * 86_400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_passwords_use_the_alphabet_and_length() {
        let alphabet: Vec<char> = "abc".chars().collect();
        let t = temporary_password(&alphabet, 20);
        assert_eq!(t.char_len(), 20);
        assert!(t.expose().chars().all(|c| alphabet.contains(&c)));
        assert_ne!(temporary_password(&alphabet, 20).expose(), t.expose());
    }

    #[test]
    fn delivery_backoff_grows_and_caps() {
        assert_eq!(retry_delay(1), Duration::from_secs(10));
        assert_eq!(retry_delay(2), Duration::from_secs(20));
        assert_eq!(retry_delay(20), Duration::from_secs(3600));
    }
}
