//! Verifying and setting one named credential, with the upgrade of legacy
//! and outdated hashes on the next successful verify.

use std::time::Duration;

use jiff::Timestamp;

use super::EngineError;
use crate::hashing::{self, Argon2Params, HashPool, Secret};
use crate::store::{Account, Credential, CredentialWrite, Expected, Store, StoreError, WriteKind};

/// The answer to a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// The password is right. `upgraded`: its hash was replaced by one with the
    /// policy's parameters. `must_change`: it is a temporary password, good
    /// only for setting a new one.
    Match { must_change: bool, upgraded: bool },
    /// The password is wrong.
    Mismatch,
    /// The account has no such credential (after a hash, as if it had).
    NoCredential,
}

/// What password operations need: the store, the hashing pool and the
/// policy's argon2id parameters for new hashes.
#[derive(Clone, Debug)]
pub struct Passwords {
    pub store: Store,
    pub hasher: HashPool,
    pub params: Argon2Params,
    /// How long a temporary password (set by recovery or the help desk,
    /// must-change) keeps working.
    pub temporary_ttl: Duration,
}

/// The channels whose writes are temporary passwords: a mailed one once
/// redeemed, and a help-desk reset.
const TEMPORARY_VIA: [&str; 2] = ["recovery", "helpdesk"];

/// Whether `credential` holds a temporary password that has outlived `ttl`.
fn temporary_expired(credential: &Credential, ttl: Duration, now: Timestamp) -> bool {
    let ttl = jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::MAX);
    credential.must_change
        && TEMPORARY_VIA.contains(&credential.set_via.as_str())
        && now.duration_since(credential.set_at) >= ttl
}

impl Passwords {
    /// Verifies `password` against the account's credential `name`. On a match
    /// with a legacy or outdated hash, stores a new argon2id hash with the
    /// policy's parameters, unless the credential changed in the meantime (then
    /// the newer value wins and nothing is overwritten).
    pub async fn verify(
        &self,
        account: &Account,
        name: &str,
        password: Secret,
        now: Timestamp,
    ) -> Result<VerifyOutcome, EngineError> {
        let stored = self.store.credential(account.id, name).await?;
        self.verify_stored(account, name, stored, password, now)
            .await
    }

    /// [`Passwords::verify`] against a credential already read (`None`: the
    /// account has none by that name).
    pub async fn verify_stored(
        &self,
        account: &Account,
        name: &str,
        stored: Option<Credential>,
        password: Secret,
        now: Timestamp,
    ) -> Result<VerifyOutcome, EngineError> {
        let Passwords {
            store,
            hasher,
            params,
            temporary_ttl,
        } = self;
        let params = *params;
        let Some(credential) = stored else {
            // Costs what a wrong password costs: one hash at the policy's
            // parameters, so that a missing credential does not show.
            let _ = hasher.hash(password, params).await;
            return Ok(VerifyOutcome::NoCredential);
        };
        let hash_error = |source| EngineError::Hash {
            login_id: account.login_id.clone(),
            credential: name.to_owned(),
            source,
        };
        // Passwords are hashed in NFKC. A hash made before that (or imported
        // from a system that did not normalise) may hold the password as
        // typed: tried second, only for a password that NFKC changes, and
        // replaced by the NFKC hash when it matches.
        let normal = password.nfkc();
        let mut as_typed = false;
        let mut matched = hasher
            .verify(
                normal.clone().unwrap_or_else(|| password.clone()),
                credential.hash.clone(),
            )
            .await
            .map_err(hash_error)?;
        if !matched && normal.is_some() {
            matched = hasher
                .verify(password.clone(), credential.hash.clone())
                .await
                .map_err(hash_error)?;
            as_typed = matched;
        }
        // Checked after the hash, so that a dead temporary password costs
        // what a wrong one does.
        if !matched || temporary_expired(&credential, *temporary_ttl, now) {
            return Ok(VerifyOutcome::Mismatch);
        }
        let mut upgraded = false;
        // bcrypt reads only the first 72 bytes: a longer password that
        // matched may be anyone's variant of the member's, and upgrading
        // would store it as the password.
        let matching = if as_typed {
            &password
        } else {
            normal.as_ref().unwrap_or(&password)
        };
        let truncated = matches!(
            hashing::Scheme::detect(&credential.hash),
            Ok(hashing::Scheme::Bcrypt)
        ) && matching.expose().len() > hashing::BCRYPT_MAX_BYTES;
        if !truncated && (as_typed || hashing::needs_upgrade(&credential.hash, params)) {
            let stored = normal.unwrap_or(password);
            let hash = hasher.hash(stored, params).await.map_err(hash_error)?;
            let write = CredentialWrite {
                name: name.to_owned(),
                hash,
                expected: Expected::Version(credential.version),
                via: credential.set_via.clone(),
                must_change: credential.must_change,
                action: "credential.rehash",
                kind: WriteKind::Rehash,
            };
            match store.write_credential(account, write, now).await {
                Ok(_) => upgraded = true,
                // Changed concurrently: the newer password stands; the upgrade waits for the next verify.
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(VerifyOutcome::Match {
            must_change: credential.must_change,
            upgraded,
        })
    }

    /// Sets a credential to a new password (administrator use), whatever it was.
    pub async fn set(
        &self,
        account: &Account,
        name: &str,
        password: Secret,
        via: &str,
        now: Timestamp,
    ) -> Result<i64, EngineError> {
        let hash = self
            .hasher
            .hash(password.normalized(), self.params)
            .await
            .map_err(|source| EngineError::Hash {
                login_id: account.login_id.clone(),
                credential: name.to_owned(),
                source,
            })?;
        let write = CredentialWrite {
            name: name.to_owned(),
            hash,
            expected: Expected::Any,
            via: via.to_owned(),
            must_change: false,
            action: "credential.set",
            kind: WriteKind::Set,
        };
        Ok(self.store.write_credential(account, write, now).await?)
    }
}
