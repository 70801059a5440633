//! The engine's plain view of a policy and its cutovers. Drivers build it
//! from custom resources (in the cluster or in files); the engine never sees
//! Kubernetes types.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;

use crate::hashing::Argon2Params;

/// A realm's credential policy: the end state.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The policy's name (e.g. the resource's `namespace/name`).
    pub name: String,
    pub realm: String,
    pub credentials: BTreeMap<String, CredentialRules>,
    /// purpose -> credential, in the end state.
    pub purposes: BTreeMap<String, String>,
}

/// How one credential is hashed, changed and recovered.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialRules {
    pub hashing: Argon2Params,
    pub min_length: u32,
    pub max_length: u32,
    pub not_login_id: bool,
    pub blocklist: bool,
    pub history_depth: u32,
    /// Channels that may change it.
    pub change_via: BTreeSet<String>,
    pub recovery: Recovery,
    /// How long a temporary password set by recovery or the help desk lets
    /// the member set a new one; after it, the temporary password is dead.
    pub temporary_ttl: Duration,
}

/// Who can reset a forgotten password.
#[derive(Debug, Clone, PartialEq)]
pub enum Recovery {
    /// A temporary password mailed to the member's base e-mail address.
    SelfService(SelfService),
    /// Only the help desk.
    Helpdesk,
    /// Nobody.
    None,
}

/// Settings of self-service recovery.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfService {
    pub temp_length: u32,
    pub alphabet: Vec<char>,
    pub ttl: Duration,
    pub rate_limit_requests: u32,
    pub rate_limit_per: Duration,
    pub mail_from: String,
    pub mail_subject: String,
    pub mail_body: String,
}

impl SelfService {
    /// Bits of entropy of a temporary password: length × log2(alphabet size).
    pub fn entropy_bits(&self) -> f64 {
        f64::from(self.temp_length) * (self.alphabet.len().max(1) as f64).log2()
    }
}

/// Minimum entropy of a temporary password.
pub const MIN_TEMP_PASSWORD_BITS: f64 = crate::hashing::MIN_TICKET_BITS;

/// What a cutover does when it overruns its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowAction {
    Continue,
    Suspend,
}

/// A scheduled split, as declared.
#[derive(Debug, Clone, PartialEq)]
pub struct Cutover {
    /// The cutover's identity (e.g. `namespace/name`); the checkpoint's key.
    pub name: String,
    /// The policy it changes (same form as [`Policy::name`]).
    pub policy: String,
    pub at: Timestamp,
    pub window: Duration,
    pub on_window_exceeded: WindowAction,
    pub from: String,
    pub into: Vec<String>,
    pub batch_size: u32,
    pub suspend: bool,
    pub retain_source: Duration,
}

/// How far a cutover has got, from its durable checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CutoverProgress {
    /// No checkpoint yet.
    #[default]
    NotStarted,
    /// Backfill under way.
    Running,
    /// Every account has every target.
    Completed,
}

impl From<Option<crate::store::CheckpointPhase>> for CutoverProgress {
    fn from(phase: Option<crate::store::CheckpointPhase>) -> CutoverProgress {
        use crate::store::CheckpointPhase;
        match phase {
            None | Some(CheckpointPhase::Scheduled | CheckpointPhase::Aborted) => {
                CutoverProgress::NotStarted
            }
            Some(CheckpointPhase::Running) => CutoverProgress::Running,
            Some(CheckpointPhase::Completed | CheckpointPhase::Retired) => {
                CutoverProgress::Completed
            }
        }
    }
}

/// A field of a resource and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// A path such as `spec.split.into[1]`.
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Several problems as one message, for a condition or an error.
pub fn describe(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
