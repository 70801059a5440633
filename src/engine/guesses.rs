//! Failed-guess limiting: at most `failures` wrong passwords per window for
//! one key (an account, a purpose and the member's client identity).
//!
//! A success costs the store no write. The count of the current window is
//! read with the verify's snapshot, the hash runs only if it is below the
//! limit, and only a failure is written (after the hash). A burst of guesses
//! sent at once must not all be checked against a count none of them has
//! raised yet, so the checks of one key are serialised in each process by
//! [`InFlight`]: the next guess reads the count after the previous one has
//! written its failure. Across replicas, checks of one key can overlap by
//! one per replica, so a window admits at most `failures + replicas - 1`
//! checks of a key (`failures` with one replica). The line for one key is
//! short ([`MAX_IN_LINE`]): a caller that sends more checks of one key at
//! once than that is refused rather than queued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::OwnedMutexGuard;

use crate::store::Failures;

/// The limits: `failures` wrong guesses per fixed `window` from one
/// client; and for the account and purpose, from any client, a streak of
/// consecutive failures that slows down past `failures` (each further check
/// waits twice as long after the last failure as the one before it, 1 s,
/// 2 s, … up to `window`) and stops at `account_failures` (NIST SP 800-63B:
/// at most 100), until a right password or a new one (recovery, the help
/// desk) ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuessLimit {
    pub failures: u32,
    pub window: Duration,
    pub account_failures: u32,
}

/// What a guess may be checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The password and, failing that, a live recovery ticket.
    Both,
    /// Only a live recovery ticket: the account's streak holds the password
    /// back, and recovery is how the member ends it.
    TicketOnly,
    /// Nothing: this client has failed too often this window.
    Nothing,
}

impl GuessLimit {
    /// What a key with `counted` failures may be checked against at `now`.
    pub fn check(&self, counted: &Failures, now: Timestamp) -> Check {
        if counted.window >= i64::from(self.failures) {
            return Check::Nothing;
        }
        let held_back = counted.streak >= i64::from(self.account_failures)
            || counted
                .last_failure_at
                .is_some_and(|last| now < last + self.streak_delay(counted.streak));
        if held_back {
            Check::TicketOnly
        } else {
            Check::Both
        }
    }

    /// Whether the password itself may be checked.
    pub fn allows(&self, counted: &Failures, now: Timestamp) -> bool {
        self.check(counted, now) == Check::Both
    }

    /// How long after the last failure of a streak of `streak` the next
    /// check may run.
    pub fn streak_delay(&self, streak: i64) -> Duration {
        let past = streak - i64::from(self.failures);
        if past < 0 {
            return Duration::ZERO;
        }
        let secs = 1u64 << past.clamp(0, 40);
        Duration::from_secs(secs).min(self.window)
    }
}

/// Checks of one key that may hold or wait for its turn at once; more are
/// refused ([`InFlight::turn`] answers `None`), so that one key cannot hold
/// connections by the hundred until their deadline. A member's client sends
/// one at a time, a retry or two may overlap it, and a burst of guesses up to
/// this size is throttled in line.
pub const MAX_IN_LINE: usize = 32;

/// The keys being checked in this process, one check at a time per key.
/// Keys are held only while someone holds or waits for them, so the map is
/// as large as the number of requests in flight.
#[derive(Debug, Default)]
pub struct InFlight {
    keys: Mutex<HashMap<String, Line>>,
}

/// One key's lock, and how many checks hold or wait for it.
#[derive(Debug, Default)]
struct Line {
    lock: Arc<tokio::sync::Mutex<()>>,
    in_line: usize,
}

/// The turn of one check of one key; the next waits until it is dropped.
#[derive(Debug)]
pub struct Turn<'a> {
    gate: &'a InFlight,
    key: String,
    held: Option<OwnedMutexGuard<()>>,
}

impl InFlight {
    fn keys(&self) -> MutexGuard<'_, HashMap<String, Line>> {
        // Each change to the map is one statement; a panic cannot leave it halfway.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the turn of `key`; `None` at once when [`MAX_IN_LINE`]
    /// checks of it already hold or wait for theirs. Cancelling the wait
    /// (the caller hung up) gives up the place in line and leaves nothing
    /// behind.
    pub async fn turn(&self, key: &str) -> Option<Turn<'_>> {
        let lock = {
            let mut keys = self.keys();
            let line = keys.entry(key.to_owned()).or_default();
            if line.in_line >= MAX_IN_LINE {
                return None;
            }
            line.in_line += 1;
            line.lock.clone()
        };
        // From here on, dropping `turn` (even before the lock is held)
        // takes this check out of the line.
        let mut turn = Turn {
            gate: self,
            key: key.to_owned(),
            held: None,
        };
        turn.held = Some(lock.lock_owned().await);
        Some(turn)
    }

    /// Checks holding or waiting for the turn of `key`.
    pub fn in_line(&self, key: &str) -> usize {
        self.keys().get(key).map_or(0, |l| l.in_line)
    }

    /// Keys held or waited for now.
    pub fn len(&self) -> usize {
        self.keys().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.held.take());
        let mut keys = self.gate.keys();
        if let Some(line) = keys.get_mut(&self.key) {
            line.in_line = line.in_line.saturating_sub(1);
            if line.in_line == 0 {
                keys.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn limit() -> GuessLimit {
        GuessLimit {
            failures: 3,
            window: Duration::from_secs(60),
            account_failures: 10,
        }
    }

    fn counted(window: i64, streak: i64, last: Option<Timestamp>) -> Failures {
        Failures {
            window,
            streak,
            last_failure_at: last,
        }
    }

    #[test]
    fn a_client_may_guess_until_its_window_reaches_the_limit() {
        let now = Timestamp::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let l = limit();
        assert!(l.allows(&counted(0, 0, None), now));
        assert!(l.allows(&counted(2, 2, Some(now)), now));
        assert!(!l.allows(&counted(3, 3, None), now));
        assert!(!l.allows(&counted(4, 4, None), now));
    }

    #[test]
    fn an_account_streak_slows_down_then_stops_whatever_the_client() {
        let t = Timestamp::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let l = limit();
        let s = |n| l.streak_delay(n);
        assert_eq!((s(0), s(2)), (Duration::ZERO, Duration::ZERO));
        assert_eq!(
            (s(3), s(4), s(5)),
            (
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(4)
            )
        );
        assert_eq!(s(9), Duration::from_secs(60), "capped at the window");
        assert_eq!(s(i64::MAX), Duration::from_secs(60));
        // A fresh client of an account with 4 failures in a row waits 2 s.
        let last = Some(t);
        assert!(!l.allows(&counted(0, 4, last), t + Duration::from_secs(1)));
        assert!(l.allows(&counted(0, 4, last), t + Duration::from_secs(2)));
        // At the ceiling, nothing more until the streak ends, but a
        // recovery ticket, which is how the member ends it.
        let year = t + Duration::from_secs(86_400 * 365);
        assert_eq!(l.check(&counted(0, 10, last), year), Check::TicketOnly);
        // A client over its window gets nothing at all.
        assert_eq!(l.check(&counted(3, 0, None), t), Check::Nothing);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_of_one_key_never_overlap_and_leave_no_entry() {
        let gate = Arc::new(InFlight::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..2 * MAX_IN_LINE {
            let (gate, inside, most, refused) =
                (gate.clone(), inside.clone(), most.clone(), refused.clone());
            tasks.push(tokio::spawn(async move {
                let Some(_turn) = gate.turn("wakwak/hanako/support-portal/198.51.100.7").await
                else {
                    refused.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "checks of one key overlapped"
        );
        assert!(gate.is_empty(), "{} keys left behind", gate.len());
    }

    #[tokio::test]
    async fn different_keys_do_not_wait_for_each_other() {
        let gate = InFlight::default();
        let _a = gate.turn("a").await.expect("a turn");
        let b = tokio::time::timeout(Duration::from_secs(5), gate.turn("b")).await;
        assert!(b.is_ok(), "key b waited for key a");
        assert_eq!(gate.len(), 2);
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_nothing_behind() {
        let gate = InFlight::default();
        let first = gate.turn("k").await.expect("a turn");
        // A second check of the same key waits, and its caller hangs up.
        let waited = tokio::time::timeout(Duration::from_millis(20), gate.turn("k")).await;
        assert!(waited.is_err(), "the second check did not wait");
        drop(first);
        assert!(gate.is_empty(), "{} keys left behind", gate.len());
        // And the key is free for the next one.
        let again = tokio::time::timeout(Duration::from_secs(5), gate.turn("k")).await;
        assert!(matches!(again, Ok(Some(_))));
    }

    #[tokio::test]
    async fn a_full_line_refuses_at_once_and_frees_as_checks_end() {
        let gate = Arc::new(InFlight::default());
        let first = gate.turn("k").await.expect("a turn");
        let mut waiting = Vec::new();
        for _ in 1..MAX_IN_LINE {
            let gate = gate.clone();
            waiting.push(tokio::spawn(async move { gate.turn("k").await.is_some() }));
        }
        // Let the waiters take their places.
        while gate.in_line("k") < MAX_IN_LINE {
            tokio::task::yield_now().await;
        }
        assert!(gate.turn("k").await.is_none(), "a full line took one more");
        drop(first);
        for w in waiting {
            assert!(w.await.unwrap());
        }
        assert!(gate.turn("k").await.is_some());
    }
}
