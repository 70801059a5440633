//! The engine: credential rules that hold whatever drives them (the
//! Kubernetes controller, `credshift plan/apply`, the HTTP API). It knows the
//! store and the hashing, and nothing of Kubernetes, HTTP or files.
//!
//! - [`model`]: the plain policy and cutover the drivers build from resources.
//! - [`routing`]: which credential answers a purpose at an instant.
//! - [`validate`]: rules across fields and objects the schema cannot express.
//! - [`passwords`]: verify (with upgrade of legacy hashes) and set.
//! - [`blocklist`]: the common and breached passwords a policy may refuse.
//! - [`guesses`]: the limit on failed guesses, with no write on success.
//! - [`ownership`]: which policy a realm belongs to when several claim it.
//! - [`assembly`]: from declared policies and cutovers to realms, by one
//!   precedence rule, for every driver.

pub mod assembly;
pub mod blocklist;
pub mod cutover;
pub mod guesses;
pub mod members;
pub mod model;
pub mod outbox;
pub mod ownership;
pub mod passwords;
pub mod recovery;
pub mod routing;
pub mod validate;

pub use passwords::{Passwords, VerifyOutcome};

use crate::hashing::HashError;
use crate::store::StoreError;

/// Why an engine operation could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The outbox payload could not be sealed or opened (key missing or wrong).
    #[error("outbox: {0}")]
    Seal(String),
    /// The stored hash of one account cannot be used; other accounts are unaffected.
    #[error("credential {credential:?} of account {login_id:?}: {source}")]
    Hash {
        login_id: String,
        credential: String,
        #[source]
        source: HashError,
    },
}
