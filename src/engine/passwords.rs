//! Verifying and setting one named credential, with the upgrade of legacy
//! and outdated hashes on the next successful verify.

use jiff::Timestamp;

use super::EngineError;
use crate::hashing::{self, Argon2Params, HashPool, Secret};
use crate::store::{Account, Credential, CredentialWrite, Expected, Store, StoreError, WriteKind};

/// The answer to a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// The password is right. `upgraded`: its hash was replaced by one with the
    /// policy's parameters. `must_change`: the member has to set a new one.
    Match { must_change: bool, upgraded: bool },
    /// The password is wrong.
    Mismatch,
    /// The account has no such credential.
    NoCredential,
}

/// What password operations need: the store, the hashing pool and the
/// policy's argon2id parameters for new hashes.
#[derive(Clone, Debug)]
pub struct Passwords {
    pub store: Store,
    pub hasher: HashPool,
    pub params: Argon2Params,
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
        } = self;
        let params = *params;
        let Some(credential) = stored else {
            return Ok(VerifyOutcome::NoCredential);
        };
        let hash_error = |source| EngineError::Hash {
            login_id: account.login_id.clone(),
            credential: name.to_owned(),
            source,
        };
        let matched = hasher
            .verify(password.clone(), credential.hash.clone())
            .await
            .map_err(hash_error)?;
        if !matched {
            return Ok(VerifyOutcome::Mismatch);
        }
        let mut upgraded = false;
        if hashing::needs_upgrade(&credential.hash, params) {
            let hash = hasher.hash(password, params).await.map_err(hash_error)?;
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
            .hash(password, self.params)
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
