//! Running a cutover: plan, backfill in batches from a durable checkpoint,
//! complete, retire the source after `retainSource`. Both drivers (the
//! controller and `credshift apply`) call [`advance`] until it says done.

use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::EngineError;
use super::model::{Cutover, Policy, WindowAction};
use crate::store::{Checkpoint, CheckpointPhase, KnownSplit, SplitRef, Store};

/// Where a cutover stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before `at`.
    Scheduled,
    /// Backfill under way (dual read is on).
    Running,
    /// Paused by `suspend`, or by `onWindowExceeded: Suspend`.
    Suspended,
    /// Every account holds every target.
    Completed,
    /// Completed, and the source credential has been removed.
    Retired,
}

/// What [`plan`] reports before anything is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub phase: Phase,
    /// Accounts holding the source credential.
    pub in_scope: i64,
    /// Accounts that already hold every target.
    pub already_split: i64,
    /// Target credentials that would be copied from the source.
    pub to_copy: i64,
    /// Estimated time for the backfill at `rate` accounts per second.
    pub eta: Option<Duration>,
}

/// What one call of [`advance`] did and where the cutover stands now.
#[derive(Debug, Clone, PartialEq)]
pub struct Advance {
    pub phase: Phase,
    pub checkpoint: Option<Checkpoint>,
    /// Batches committed in this call.
    pub batches: u32,
    /// Accounts per second over this call's batches.
    pub rate: Option<f64>,
    /// This call wrote the checkpoint for the first time.
    pub started: bool,
    /// This call completed the backfill.
    pub completed: bool,
    /// This call removed the source credential.
    pub retired: bool,
    /// The run has taken longer than `window`.
    pub window_exceeded: bool,
    /// Time until the next thing happens by itself (`at`, or retiring the source).
    pub wait: Option<Duration>,
}

impl Advance {
    /// A cutover at `phase` that nothing has moved yet in this call.
    pub fn nothing_yet(phase: Phase, checkpoint: Option<Checkpoint>) -> Advance {
        Advance {
            phase,
            checkpoint,
            batches: 0,
            rate: None,
            started: false,
            completed: false,
            retired: false,
            window_exceeded: false,
            wait: None,
        }
    }
}

fn split<'a>(policy: &'a Policy, cutover: &'a Cutover) -> SplitRef<'a> {
    SplitRef {
        cutover: &cutover.name,
        realm: &policy.realm,
        source: &cutover.from,
        targets: &cutover.into,
    }
}

fn until(now: Timestamp, later: Timestamp) -> Duration {
    later.duration_since(now).unsigned_abs()
}

/// What the cutover will do, read-only. `rate` is a measured accounts-per-second
/// figure (see [`measure_rate`]) for the ETA.
pub async fn plan(
    store: &Store,
    policy: &Policy,
    cutover: &Cutover,
    now: Timestamp,
    rate: Option<f64>,
) -> Result<Plan, EngineError> {
    let checkpoint = store.checkpoint(&cutover.name).await?;
    let (in_scope, already_split) = store
        .split_counts(&policy.realm, &cutover.from, &cutover.into)
        .await?;
    let mut to_copy = 0;
    for target in &cutover.into {
        to_copy += in_scope
            - store
                .count_holding_all(&policy.realm, &cutover.from, std::slice::from_ref(target))
                .await?
                .min(in_scope);
    }
    let phase = phase_of(cutover, checkpoint.as_ref(), now);
    let remaining = (in_scope - checkpoint.as_ref().map_or(0, |c| c.done)).max(0);
    let eta = match (phase, rate) {
        (Phase::Completed | Phase::Retired, _) => None,
        (_, Some(r)) if r > 0.0 => Some(Duration::from_secs_f64(remaining as f64 / r)),
        _ => None,
    };
    Ok(Plan {
        phase,
        in_scope,
        already_split,
        to_copy: if matches!(phase, Phase::Completed | Phase::Retired) {
            0
        } else {
            to_copy
        },
        eta,
    })
}

/// Accounts per second of one real batch, run and rolled back (nothing is
/// written), with the pause the backfill leaves after each batch.
pub async fn measure_rate(
    store: &Store,
    policy: &Policy,
    cutover: &Cutover,
) -> Result<Option<f64>, EngineError> {
    let (accounts, took) = store
        .trial_batch(split(policy, cutover), cutover.batch_size)
        .await?;
    let secs = (took + store.pause_after_write(took)).as_secs_f64();
    Ok((accounts > 0 && secs > 0.0).then(|| accounts as f64 / secs))
}

fn phase_of(cutover: &Cutover, checkpoint: Option<&Checkpoint>, now: Timestamp) -> Phase {
    match checkpoint.map(|c| c.phase) {
        Some(CheckpointPhase::Retired) => Phase::Retired,
        Some(CheckpointPhase::Completed) => Phase::Completed,
        _ if now < cutover.at => Phase::Scheduled,
        _ if cutover.suspend => Phase::Suspended,
        _ => Phase::Running,
    }
}

/// Moves a cutover forward for at most `budget` of wall time: starts it when
/// due, commits backfill batches, completes it, retires the source once
/// `retainSource` has passed. Safe to call again at any time, from any
/// process: every step is idempotent and resumes from the checkpoint; a
/// completed cutover is never run again.
pub async fn advance(
    store: &Store,
    policy: &Policy,
    cutover: &Cutover,
    now: impl Fn() -> Timestamp,
    budget: Duration,
) -> Result<Advance, EngineError> {
    let split = split(policy, cutover);
    let mut out = Advance::nothing_yet(Phase::Scheduled, store.checkpoint(&cutover.name).await?);
    let t = now();
    out.phase = phase_of(cutover, out.checkpoint.as_ref(), t);
    match out.phase {
        Phase::Scheduled => {
            // Remembered from now on, whatever becomes of the object.
            store.declare_split(split, cutover.at, t).await?;
            out.wait = Some(until(t, cutover.at));
            return Ok(out);
        }
        Phase::Retired => return Ok(out),
        Phase::Completed => {
            let completed_at = out
                .checkpoint
                .as_ref()
                .and_then(|c| c.completed_at)
                .unwrap_or(t);
            let retire_at = completed_at + cutover.retain_source;
            if t >= retire_at {
                store.retire_source(split, t).await?;
                out.retired = true;
                out.phase = Phase::Retired;
                out.checkpoint = store.checkpoint(&cutover.name).await?;
            } else {
                out.wait = Some(until(t, retire_at));
            }
            return Ok(out);
        }
        Phase::Suspended | Phase::Running => {}
    }
    let started_at = out.checkpoint.as_ref().map_or(t, |c| c.started_at);
    out.window_exceeded = t > started_at + cutover.window;
    if out.phase == Phase::Suspended
        || (out.window_exceeded && cutover.on_window_exceeded == WindowAction::Suspend)
    {
        if out.checkpoint.is_none() {
            // Suspended before it started: dual read is on, nothing copied.
            store.declare_split(split, cutover.at, t).await?;
        }
        out.phase = Phase::Suspended;
        return Ok(out);
    }
    if out.checkpoint.is_none() {
        // Fresh statistics first: the batch queries must walk the credentials key.
        store.analyze_if_stale().await?;
        out.checkpoint = Some(store.start_cutover(split, cutover.at, t).await?);
        out.started = true;
    }
    let clock = Instant::now();
    let mut accounts = 0;
    loop {
        let batch_clock = Instant::now();
        let batch = store
            .backfill_batch(split, cutover.batch_size, now())
            .await?;
        // One line per batch transaction, for benchmarks (p99) and debugging.
        tracing::debug!(
            cutover = %cutover.name,
            accounts = batch.accounts,
            copied = batch.copied,
            redone = batch.redone,
            micros = batch_clock.elapsed().as_micros() as u64,
            "backfill batch committed"
        );
        if batch.completed {
            out.completed = true;
            out.phase = Phase::Completed;
            out.wait = Some(cutover.retain_source);
            break;
        }
        out.batches += 1;
        accounts += batch.accounts;
        if clock.elapsed() >= budget {
            break;
        }
        // Members' writes (throttling, changes) go between batches.
        store.yield_to_writers(batch_clock.elapsed()).await;
    }
    let secs = clock.elapsed().as_secs_f64();
    if accounts > 0 && secs > 0.0 {
        out.rate = Some(accounts as f64 / secs);
    }
    out.checkpoint = store.checkpoint(&cutover.name).await?;
    if out.completed && cutover.retain_source.is_zero() {
        store.retire_source(split, now()).await?;
        out.retired = true;
        out.phase = Phase::Retired;
        out.wait = None;
        out.checkpoint = store.checkpoint(&cutover.name).await?;
    }
    Ok(out)
}

/// Stops a cutover that has not completed (ops asked for it, for example
/// when deleting it): its purposes are answered by the source again, for
/// every driver, until a cutover of that name is declared again. Targets
/// already copied or changed stay in the store, unused. `actor` is audited.
/// Returns the phase it was aborted in; `None` when there was nothing to
/// abort.
pub async fn abort(
    store: &Store,
    cutover: &str,
    actor: &str,
    now: Timestamp,
) -> Result<Option<CheckpointPhase>, EngineError> {
    Ok(store.abort_split(cutover, actor, now).await?)
}

/// What ops chose for a cutover being removed before it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalChoice {
    /// Stop it: its purposes are answered by the source again ([`abort`]).
    Abort,
    /// Completed: keep the source credential instead of retiring it.
    KeepSource,
}

impl RemovalChoice {
    pub const NAMES: &'static str = "Abort or KeepSource";

    pub fn parse(s: &str) -> Option<RemovalChoice> {
        match s {
            "Abort" => Some(RemovalChoice::Abort),
            "KeepSource" => Some(RemovalChoice::KeepSource),
            _ => None,
        }
    }
}

/// Why the removal of a cutover waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// It has not completed: removing it would end dual read (or, before
    /// `at`, the source's answers) with members not yet copied.
    Completion,
    /// It completed and its source is not retired yet: removing it would
    /// forget the retirement.
    Retirement,
    /// The choice given does not apply to where the cutover stands.
    ChoiceDoesNotApply(RemovalChoice),
}

/// What removing a cutover does, from what the store knows of it
/// (`phase`, `None` when it was never declared) and what ops chose. Pure:
/// the controller's finalizer carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Nothing left to protect (never declared, retired, aborted).
    Release,
    /// Abort it, then let it go.
    Abort,
    /// Record that the source is kept, then let it go.
    KeepSource,
    /// Hold the removal and keep driving the cutover.
    Hold(Wait),
}

pub fn removal(phase: Option<CheckpointPhase>, choice: Option<RemovalChoice>) -> Removal {
    use CheckpointPhase as P;
    match (phase, choice) {
        (None | Some(P::Retired | P::Aborted), _) => Removal::Release,
        (Some(P::Scheduled | P::Running), Some(RemovalChoice::Abort)) => Removal::Abort,
        (Some(P::Scheduled | P::Running), None) => Removal::Hold(Wait::Completion),
        (Some(P::Completed), Some(RemovalChoice::KeepSource)) => Removal::KeepSource,
        (Some(P::Completed), None) => Removal::Hold(Wait::Retirement),
        (Some(_), Some(choice)) => Removal::Hold(Wait::ChoiceDoesNotApply(choice)),
    }
}

/// What a member imported now is given by the splits the store completed
/// before the import, as their backfill gave every member then: each target
/// the row lacks, as a copy of the source; and, where the source was
/// retired, no source. Returns the credentials given and the sources to
/// drop from the row. Splits are applied in the order given (the store's:
/// by `at`), so a chain of splits gives what the last one left.
pub fn given_by_completed_splits(
    credentials: &[(String, String)],
    splits: &[KnownSplit],
) -> (Vec<(String, String)>, Vec<String>) {
    let mut held: Vec<(String, String)> = credentials.to_vec();
    let mut given: Vec<(String, String)> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    for split in splits {
        if !matches!(
            split.phase,
            CheckpointPhase::Completed | CheckpointPhase::Retired
        ) {
            continue;
        }
        let Some(hash) = held
            .iter()
            .find(|(n, _)| *n == split.source)
            .map(|(_, h)| h.clone())
        else {
            continue;
        };
        for target in &split.targets {
            if !held.iter().any(|(n, _)| n == target) {
                held.push((target.clone(), hash.clone()));
                given.push((target.clone(), hash.clone()));
            }
        }
        if split.phase == CheckpointPhase::Retired {
            held.retain(|(n, _)| *n != split.source);
            given.retain(|(n, _)| *n != split.source);
            if credentials.iter().any(|(n, _)| *n == split.source) {
                dropped.push(split.source.clone());
            }
        }
    }
    (given, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckpointPhase as P;

    /// A cutover that has not completed is never let go silently: only an
    /// explicit abort ends it early. A completed one waits for its source's
    /// retirement unless ops keep the source. Nothing else is held.
    #[test]
    fn removal_waits_for_completion_and_retirement_unless_ops_choose() {
        for phase in [P::Scheduled, P::Running] {
            assert_eq!(removal(Some(phase), None), Removal::Hold(Wait::Completion));
            assert_eq!(
                removal(Some(phase), Some(RemovalChoice::Abort)),
                Removal::Abort
            );
            assert_eq!(
                removal(Some(phase), Some(RemovalChoice::KeepSource)),
                Removal::Hold(Wait::ChoiceDoesNotApply(RemovalChoice::KeepSource))
            );
        }
        assert_eq!(
            removal(Some(P::Completed), None),
            Removal::Hold(Wait::Retirement)
        );
        assert_eq!(
            removal(Some(P::Completed), Some(RemovalChoice::KeepSource)),
            Removal::KeepSource
        );
        assert_eq!(
            removal(Some(P::Completed), Some(RemovalChoice::Abort)),
            Removal::Hold(Wait::ChoiceDoesNotApply(RemovalChoice::Abort))
        );
        for phase in [None, Some(P::Retired), Some(P::Aborted)] {
            for choice in [None, Some(RemovalChoice::Abort)] {
                assert_eq!(removal(phase, choice), Removal::Release);
            }
        }
        assert_eq!(RemovalChoice::parse("Abort"), Some(RemovalChoice::Abort));
        assert_eq!(RemovalChoice::parse("abort"), None);
    }

    fn split(phase: CheckpointPhase) -> KnownSplit {
        KnownSplit {
            cutover: "isp/split".into(),
            source: "login".into(),
            targets: vec!["support".into(), "connection".into()],
            at: "2018-04-18T00:00:00+09:00".parse().expect("at"),
            phase,
        }
    }

    fn cred(name: &str, hash: &str) -> (String, String) {
        (name.to_owned(), hash.to_owned())
    }

    /// A member imported after the split completed gets the member support
    /// and connection passwords, "both starting as the login password";
    /// after the source was retired, no login password; before completion
    /// nothing (the backfill reaches the new account itself).
    #[test]
    fn members_imported_after_completion_get_the_targets_the_backfill_gave() {
        let row = [cred("login", "L"), cred("mail", "M")];
        let (given, dropped) = given_by_completed_splits(&row, &[split(P::Completed)]);
        assert_eq!(given, [cred("support", "L"), cred("connection", "L")]);
        assert!(dropped.is_empty());
        let (given, dropped) = given_by_completed_splits(&row, &[split(P::Retired)]);
        assert_eq!(given, [cred("support", "L"), cred("connection", "L")]);
        assert_eq!(dropped, ["login"]);
        for phase in [P::Scheduled, P::Running, P::Aborted] {
            assert_eq!(
                given_by_completed_splits(&row, &[split(phase)]),
                (Vec::new(), Vec::new())
            );
        }
        // A target in the file is the member's own: kept, not replaced.
        let row = [cred("login", "L"), cred("support", "S")];
        let (given, _) = given_by_completed_splits(&row, &[split(P::Completed)]);
        assert_eq!(given, [cred("connection", "L")]);
        // Without the source, nothing to copy.
        let (given, dropped) =
            given_by_completed_splits(&[cred("mail", "M")], &[split(P::Retired)]);
        assert!(given.is_empty() && dropped.is_empty());
    }
}
