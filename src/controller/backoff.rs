//! Per-object backoff after failed reconciles. kube-runtime requeues an
//! object when `error_policy` says and remembers nothing of earlier
//! failures; this doubles the wait for each failure in a row of the same
//! object and forgets it at its first success, so one broken object (a
//! store that refuses its realm, a status the API server rejects) is
//! retried ever more slowly without slowing the others.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::engine::assembly::ObjectKey;

/// The first wait after a failure.
pub const FIRST: Duration = Duration::from_secs(1);
/// The longest wait, however often it failed.
pub const LONGEST: Duration = Duration::from_secs(300);

/// Failures in a row, per kind and object.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<(&'static str, ObjectKey), u32>>,
}

impl Backoff {
    /// Counts a failure of `key`; how long to wait before the next try:
    /// [`FIRST`], doubled per failure in a row, at most [`LONGEST`].
    pub fn failed(&self, kind: &'static str, key: &ObjectKey) -> Duration {
        let mut failures = self.lock();
        let n = failures.entry((kind, key.clone())).or_insert(0);
        *n = n.saturating_add(1);
        let doublings = (*n - 1).min(16);
        FIRST.saturating_mul(1 << doublings).min(LONGEST)
    }

    /// `key` was reconciled: its next failure waits [`FIRST`] again.
    pub fn succeeded(&self, kind: &'static str, key: &ObjectKey) {
        self.lock().remove(&(kind, key.clone()));
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(&'static str, ObjectKey), u32>> {
        // A count is one integer: a panic elsewhere cannot leave it half-written.
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_per_failure_in_a_row_up_to_a_cap_and_reset_on_success() {
        let backoff = Backoff::default();
        let broken = ObjectKey::new("default", "broken");
        let waits: Vec<u64> = (0..12)
            .map(|_| backoff.failed("CredentialCutover", &broken).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);

        // Another object, or the same name of another kind, starts afresh.
        let other = ObjectKey::new("default", "other");
        assert_eq!(backoff.failed("CredentialCutover", &other), FIRST);
        assert_eq!(backoff.failed("CredentialPolicy", &broken), FIRST);

        backoff.succeeded("CredentialCutover", &broken);
        assert_eq!(backoff.failed("CredentialCutover", &broken), FIRST);
    }

    #[test]
    fn a_very_long_run_of_failures_stays_at_the_cap() {
        let backoff = Backoff::default();
        let key = ObjectKey::new("ns", "k");
        for _ in 0..100 {
            assert!(backoff.failed("CredentialPolicy", &key) <= LONGEST);
        }
        assert_eq!(backoff.failed("CredentialPolicy", &key), LONGEST);
    }
}
