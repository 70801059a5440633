//! The engine: the credential rules, whatever drives them (the Kubernetes
//! controller, the file driver, the HTTP API). It reads and writes the store
//! and hashes through [`crate::hashing`]; it does no other I/O and knows
//! nothing of Kubernetes, HTTP or files.
//!
//! - [`model`]: the plain policy and cutover the drivers declare.
//! - [`assembly`]: from declared policies and cutovers to realms, by one
//!   precedence rule, for every driver; [`ownership`]: which policy a realm
//!   belongs to; [`validate`]: rules across fields and objects the schema
//!   cannot express.
//! - [`routing`]: which credential answers a purpose at an instant.
//! - [`cutover`]: plan, backfill, complete, retire and abort a split; what
//!   removing a cutover may do; what members imported after one get.
//! - [`members`]: verify and change by purpose and channel; [`passwords`]:
//!   verify (upgrading legacy hashes) and set; [`blocklist`]: common
//!   passwords; [`guesses`]: the limit on failed guesses.
//! - [`recovery`]: temporary passwords and help-desk resets; [`outbox`]:
//!   the delivery round, handing mail to a driver's courier.

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
    Seal(#[from] crate::hashing::SealError),
    /// The stored hash of one account cannot be used; other accounts are unaffected.
    #[error("credential {credential:?} of account {login_id:?}: {source}")]
    Hash {
        login_id: String,
        credential: String,
        #[source]
        source: HashError,
    },
}
