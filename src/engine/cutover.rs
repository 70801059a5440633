//! Running a cutover: plan, backfill in batches from a durable checkpoint,
//! complete, retire the source after `retainSource`. Both drivers (the
//! controller and `credshift apply`) call [`advance`] until it says done.

use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::EngineError;
use super::model::{Cutover, Policy, WindowAction};
use crate::store::{Checkpoint, CheckpointPhase, SplitRef, Store};

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
    let mut out = Advance {
        phase: Phase::Scheduled,
        checkpoint: store.checkpoint(&cutover.name).await?,
        batches: 0,
        rate: None,
        started: false,
        completed: false,
        retired: false,
        window_exceeded: false,
        wait: None,
    };
    let t = now();
    out.phase = phase_of(cutover, out.checkpoint.as_ref(), t);
    match out.phase {
        Phase::Scheduled => {
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
        out.phase = Phase::Suspended;
        return Ok(out);
    }
    if out.checkpoint.is_none() {
        // Fresh statistics first: the batch queries must walk the credentials key.
        store.analyze().await?;
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
        tokio::time::sleep(store.pause_after_write(batch_clock.elapsed())).await;
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
