//! A member's writes against a long batch writer (the backfill, an import):
//! do they get in between its batches? Counted in writes and batches, not
//! timed, so the answer does not depend on how fast the machine is.

use std::time::Duration;

use credshift::store::{FailureKey, Store};
use jiff::Timestamp;

/// Counts failed guesses from `member` (its own pool, as another process
/// would) one after another until `writer` ends, as every wrong password
/// through the API does. For
/// each write that began while the writer was under way, how many `unit`s
/// of its progress committed during the write. `progress` answers (under
/// way, progress so far).
pub async fn member_writes_during<T>(
    member: &Store,
    writer: &tokio::task::JoinHandle<T>,
    progress: impl AsyncFn() -> (bool, i64),
    unit: i64,
) -> Vec<i64> {
    let mut waited = Vec::new();
    let mut key = 0;
    while !writer.is_finished() {
        let (under_way, before) = progress().await;
        key += 1;
        member
            .count_failure(
                &FailureKey {
                    key: &format!("wakwak/m{key}/support-portal/test"),
                    streak: &format!("wakwak/m{key}/support-portal"),
                    window: Duration::from_secs(900),
                    now: Timestamp::now(),
                },
                true,
            )
            .await
            .expect("a member's write");
        let (_, after) = progress().await;
        if under_way {
            waited.push((after - before) / unit);
        }
    }
    waited
}

/// Member writes landed at least once per batch of the writer's `batches`,
/// and none waited while more than 12 batches committed.
pub fn assert_writes_got_in(waited: &[i64], batches: usize, writer: &str) {
    let longest = waited.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{} member writes during the {writer}'s {batches} batches; the longest waited for {longest}",
        waited.len()
    );
    assert!(
        waited.len() >= batches,
        "only {} member writes landed during the {writer}'s {batches} batches: it starves \
         other writers (batches committed during each write: {waited:?})",
        waited.len()
    );
    assert!(
        longest <= 12,
        "a member's write waited while {longest} of the {writer}'s batches committed"
    );
}
