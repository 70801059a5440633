//! Reconciling a CredentialCutover: dereference its policy, validate, and
//! report what it will do. Before `at` it is Scheduled and requeued for
//! exactly `at`, never polled. A finalizer holds its deletion until what it
//! started is over, or ops say what to do instead ([`cleanup`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};

use super::status::{apply_status, conditions, event, find};
use super::{Context, Error, MANAGER, requeue_after_error};
use jiff::Timestamp;

use crate::engine::cutover::{Phase, Removal, RemovalChoice, Wait, abort, advance, removal};
use crate::engine::model::{Problem, describe};
use crate::resources::{
    Condition, ConditionStatus, CredentialCutover, CredentialCutoverStatus, CutoverPhase, Progress,
    merge_conditions, object_key,
};

const KIND: &str = "CredentialCutover";

/// On every cutover the controller has seen: its deletion waits for
/// [`cleanup`].
pub const FINALIZER: &str = "credshift.dev/cutover-protection";

/// What ops want a deletion to do before the cutover is over: `Abort`
/// (not completed yet) or `KeepSource` (completed, source not retired).
pub const ON_DELETE: &str = "credshift.dev/on-delete";

pub async fn reconcile(
    cutover: Arc<CredentialCutover>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if let Some(wait) = ctx.not_synced_yet() {
        return Ok(wait);
    }
    let started = Instant::now();
    let ns = cutover
        .namespace()
        .ok_or_else(|| Error::NoNamespace(cutover.name_any()))?;
    let api: Api<CredentialCutover> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, cutover, |event| async {
        match event {
            Finalizer::Apply(c) => Ok(requeue(reconcile_inner(&c, &ctx, None).await?)),
            Finalizer::Cleanup(c) => cleanup(&c, &ctx).await,
        }
    })
    .await
    .map_err(Error::from);
    ctx.metrics.reconciled(KIND, started.elapsed());
    result
}

pub fn error_policy(_cutover: Arc<CredentialCutover>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Error::DeletionHeld(again) = error {
        // Not a failure: the finalizer is doing its job.
        return requeue(Some(again.unwrap_or(Duration::from_secs(60))));
    }
    requeue_after_error(KIND, error, &ctx)
}

fn requeue(after: Option<Duration>) -> Action {
    after.map_or_else(Action::await_change, Action::requeue)
}

/// A cutover is being deleted. What the store knows of it and the
/// [`ON_DELETE`] annotation decide ([`removal`]): release it, abort it
/// first, record that its source is kept, or hold the deletion (an `Err`,
/// which keeps the finalizer) while the cutover goes on being driven and
/// its `Deleting` condition says why it waits and how to proceed.
async fn cleanup(cutover: &CredentialCutover, ctx: &Context) -> Result<Action, Error> {
    let cutover_key = object_key(cutover).to_string();
    let given = cutover.annotations().get(ON_DELETE).cloned();
    let choice = given.as_deref().and_then(RemovalChoice::parse);
    let source = &cutover.spec.split.from;
    let mut held_once = false;
    loop {
        let phase = ctx.store.checkpoint_phase(&cutover_key).await?;
        match removal(phase, choice) {
            Removal::Release => return Ok(Action::await_change()),
            Removal::Abort => {
                let was = abort(&ctx.store, &cutover_key, MANAGER, ctx.now()).await?;
                let note = format!(
                    "aborted on deletion ({ON_DELETE}=Abort) while {}: its purposes are answered by {source} again; targets copied so far stay in the store, unused",
                    was.map_or("over", |p| p.name())
                );
                event(ctx, cutover, true, "CutoverAborted", "Delete", note).await;
                return Ok(Action::await_change());
            }
            Removal::KeepSource => {
                ctx.store
                    .keep_source(&cutover_key, MANAGER, ctx.now())
                    .await?;
                let note = format!(
                    "deleted before retainSource passed ({ON_DELETE}=KeepSource): source credential {source} kept; nothing will retire it"
                );
                event(ctx, cutover, false, "SourceKept", "Delete", note).await;
                return Ok(Action::await_change());
            }
            Removal::Hold(_) if held_once => {
                return Err(Error::DeletionHeld(Some(Duration::from_millis(50))));
            }
            Removal::Hold(wait) => {
                held_once = true;
                let (reason, message) = held(wait, cutover, given.as_deref());
                let was = cutover.status.as_ref().and_then(|s| {
                    find(&s.conditions, "Deleting").map(|c| (c.reason.clone(), c.message.clone()))
                });
                let again = reconcile_inner(cutover, ctx, Some((reason, message.clone()))).await?;
                if was.as_ref().map(|(r, _)| r.as_str()) != Some(reason) {
                    event(ctx, cutover, true, "DeletionHeld", "Delete", message).await;
                }
                // Driving it may just have ended what held it (retired).
                let now = ctx.store.checkpoint_phase(&cutover_key).await?;
                if removal(now, choice) == Removal::Hold(wait) {
                    return Err(Error::DeletionHeld(again));
                }
            }
        }
    }
}

/// The `Deleting` condition of a held deletion: why, and the way out.
fn held(wait: Wait, cutover: &CredentialCutover, given: Option<&str>) -> (&'static str, String) {
    let name = cutover.name_any();
    let source = &cutover.spec.split.from;
    let annotate =
        |choice: &str| format!("kubectl annotate credentialcutover {name} {ON_DELETE}={choice}");
    let unknown = match given {
        Some(v) if RemovalChoice::parse(v).is_none() => format!(
            "annotation {ON_DELETE} is {v:?}, which is not {}; ",
            RemovalChoice::NAMES
        ),
        _ => String::new(),
    };
    match wait {
        Wait::Completion => (
            "WaitingForCompletion",
            format!(
                "{unknown}deletion waits until the cutover completes{}: members not yet copied answer with {source} only while it exists. To stop it instead and answer with {source} again: {}",
                if cutover.spec.suspend {
                    " (spec.suspend is true: set it to false to let it complete)"
                } else {
                    ""
                },
                annotate("Abort")
            ),
        ),
        Wait::Retirement => (
            "WaitingForRetirement",
            format!(
                "{unknown}deletion waits until the source {source} is retired (retainSource {}). To keep {source} and delete now: {}",
                cutover.spec.retain_source.0,
                annotate("KeepSource")
            ),
        ),
        Wait::ChoiceDoesNotApply(RemovalChoice::Abort) => (
            "WaitingForRetirement",
            format!(
                "{ON_DELETE}=Abort does not apply: the cutover completed and its targets answer. Deletion waits until the source {source} is retired; to keep {source} and delete now: {}",
                annotate("KeepSource")
            ),
        ),
        Wait::ChoiceDoesNotApply(RemovalChoice::KeepSource) => (
            "WaitingForCompletion",
            format!(
                "{ON_DELETE}=KeepSource does not apply: the cutover has not completed. Deletion waits until it does; to stop it instead: {}",
                annotate("Abort")
            ),
        ),
    }
}

/// Drives the cutover and writes its status; `deleting` is the `Deleting`
/// condition of a held deletion. Returns when to look again (`None`: on
/// the next change).
async fn reconcile_inner(
    cutover: &CredentialCutover,
    ctx: &Context,
    deleting: Option<(&str, String)>,
) -> Result<Option<Duration>, Error> {
    let deleting_condition = |previous: &[Condition], generation| -> Vec<Condition> {
        deleting
            .as_ref()
            .map_or_else(Vec::new, |(reason, message)| {
                merge_conditions(
                    previous,
                    vec![Condition::new("Deleting", true, reason, message.clone())],
                    generation,
                    &Timestamp::now().to_string(),
                )
            })
    };
    let previous = cutover.status.clone().unwrap_or_default();
    let generation = cutover.metadata.generation;

    // Dereference and validate, by the rules every driver uses.
    let key = object_key(cutover);
    let assembly = ctx.assembly();
    let problems: Vec<Problem> = assembly.refused.get(&key).cloned().unwrap_or_default();
    let found = assembly
        .cutover(&key)
        .map(|(realm, c)| (c.clone(), realm.policy.clone()));
    if found.is_none() && problems.is_empty() {
        // Not in the controller's cache yet: its watch event follows.
        return Ok(Some(Duration::from_secs(1)));
    }
    let (Some((model, policy_model)), true) = (found, problems.is_empty()) else {
        let message = describe(&problems);
        let was_stalled = find(&previous.conditions, "Stalled")
            .is_some_and(|c| c.status == ConditionStatus::True && c.message == message);
        let status = CredentialCutoverStatus {
            observed_generation: generation,
            phase: Some(CutoverPhase::Failed),
            conditions: sorted(
                conditions(
                    &previous.conditions,
                    generation,
                    (false, "InvalidSpec", format!("cannot run: {message}")),
                    None,
                    Some(("InvalidSpec", message.clone())),
                ),
                deleting_condition(&previous.conditions, generation),
            ),
            ..previous.clone()
        };
        apply_status(ctx, cutover, &status).await?;
        if !was_stalled {
            event(ctx, cutover, true, "InvalidSpec", "Validate", message).await;
        }
        return Ok(None);
    };

    // Move it forward (a no-op before `at`), then say where it stands.
    let adv = advance(
        &ctx.store,
        &policy_model,
        &model,
        Timestamp::now,
        ctx.progress_interval,
    )
    .await?;
    let checkpoint = adv.checkpoint.as_ref();
    // Counting reads the whole realm: done while the cutover is scheduled,
    // suspended or over, not on every progress tick of a running backfill
    // (the checkpoint has its progress).
    let (total, already) = match (adv.phase, checkpoint) {
        (Phase::Running, Some(cp)) => (cp.total, previous.already_split.unwrap_or(0)),
        _ => {
            ctx.store
                .split_counts(&policy_model.realm, &model.from, &model.into)
                .await?
        }
    };
    let progress = match (adv.phase, checkpoint) {
        (Phase::Scheduled, _) | (_, None) => Progress::new(already, total),
        (_, Some(cp)) => Progress::new(cp.done, cp.total.max(cp.done)),
    };
    let targets = model.into.join(", ");
    let (phase, ready, reconciling, requeue) = match adv.phase {
        Phase::Scheduled => (
            CutoverPhase::Scheduled,
            (
                false,
                "Scheduled",
                format!(
                    "splits {} into {targets} at {}; {total} accounts in scope, {already} already split",
                    model.from, cutover.spec.at
                ),
            ),
            None,
            // Exactly at `at` (plus a hair so the clock has passed it), never polling.
            Some(adv.wait.unwrap_or_default() + Duration::from_millis(10)),
        ),
        Phase::Running => (
            CutoverPhase::Running,
            (
                false,
                "Running",
                format!("dual read on; backfill {}", progress.summary),
            ),
            Some((
                "Backfilling",
                format!("{} accounts split", progress.summary),
            )),
            Some(Duration::from_millis(50)),
        ),
        Phase::Suspended => (
            CutoverPhase::Suspended,
            (
                false,
                "Suspended",
                if adv.window_exceeded && !cutover.spec.suspend {
                    "window exceeded and onWindowExceeded is Suspend: paused at a batch boundary; set onWindowExceeded: Continue or extend window to resume".to_owned()
                } else {
                    "spec.suspend is true: paused at a batch boundary; dual read stays on"
                        .to_owned()
                },
            ),
            None,
            None,
        ),
        Phase::Completed | Phase::Retired => (
            CutoverPhase::Completed,
            (
                true,
                "Completed",
                if adv.phase == Phase::Retired {
                    format!(
                        "every account holds {targets}; source {} retired",
                        model.from
                    )
                } else {
                    format!(
                        "every account holds {targets}; source {} kept for rollback until retainSource passes",
                        model.from
                    )
                },
            ),
            None,
            adv.wait.map(|w| w + Duration::from_millis(10)),
        ),
    };
    let eta = match (adv.rate, phase) {
        (Some(rate), CutoverPhase::Running) if rate > 0.0 => {
            let remaining = (progress.total - progress.done).max(0) as f64;
            let secs = (remaining / rate).ceil() as i64;
            Some((Timestamp::now() + jiff::SignedDuration::from_secs(secs)).to_string())
        }
        (_, CutoverPhase::Running) => previous.eta.clone(),
        _ => None,
    };
    let ts = |t: Option<Timestamp>| t.map(|t| t.to_string());
    let status = CredentialCutoverStatus {
        observed_generation: generation,
        conditions: sorted(
            conditions(&previous.conditions, generation, ready, reconciling, None),
            deleting_condition(&previous.conditions, generation),
        ),
        phase: Some(phase),
        scheduled_at: Some(model.at.to_string()),
        started_at: ts(checkpoint.map(|c| c.started_at)),
        completed_at: ts(checkpoint.and_then(|c| c.completed_at)),
        source_retired_at: ts(checkpoint.and_then(|c| c.retired_at)),
        already_split: Some(already),
        window_exceeded: Some(adv.window_exceeded),
        eta,
        progress: Some(progress.clone()),
    };
    if status != previous {
        apply_status(ctx, cutover, &status).await?;
    }
    let note = |what: &str| format!("{what}: {} → {targets}; {}", model.from, progress.summary);
    if previous.phase != Some(CutoverPhase::Scheduled) && phase == CutoverPhase::Scheduled {
        event(
            ctx,
            cutover,
            false,
            "CutoverScheduled",
            "Schedule",
            note("scheduled"),
        )
        .await;
    }
    if adv.started {
        event(
            ctx,
            cutover,
            false,
            "CutoverStarted",
            "Split",
            note("dual read on, backfill started"),
        )
        .await;
    }
    let quarter = |p: Option<&Progress>| p.map_or(0, |p| p.percent / 25);
    if phase == CutoverPhase::Running
        && quarter(Some(&progress)) > quarter(previous.progress.as_ref())
    {
        event(
            ctx,
            cutover,
            false,
            "BatchCommitted",
            "Split",
            note("progress"),
        )
        .await;
    }
    if adv.completed {
        event(
            ctx,
            cutover,
            false,
            "CutoverCompleted",
            "Split",
            note("every account holds every target"),
        )
        .await;
    }
    if adv.retired {
        event(
            ctx,
            cutover,
            false,
            "SourceRetired",
            "Retire",
            format!(
                "source credential {} removed after retainSource",
                model.from
            ),
        )
        .await;
    }
    if adv.window_exceeded && previous.window_exceeded != Some(true) {
        event(
            ctx,
            cutover,
            true,
            "WindowExceeded",
            "Split",
            format!("running longer than window {}", cutover.spec.window.0),
        )
        .await;
    }
    Ok(requeue)
}

/// `conditions` with `more`, by type.
fn sorted(mut conditions: Vec<Condition>, more: Vec<Condition>) -> Vec<Condition> {
    conditions.extend(more);
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    conditions
}
