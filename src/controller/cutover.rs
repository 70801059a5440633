//! Reconciling a CredentialCutover: dereference its policy, validate, and
//! report what it will do. Before `at` it is Scheduled and requeued for
//! exactly `at`, never polled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::policy::{cutovers_of, key, owns_realm};
use super::status::{apply_status, conditions, event, find};
use super::{Context, Error, requeue_after_error};
use jiff::Timestamp;

use crate::engine::cutover::{Phase, advance};
use crate::engine::model::{Problem, describe};
use crate::engine::validate::validate_cutover;
use crate::resources::{
    ConditionStatus, CredentialCutover, CredentialCutoverStatus, CutoverPhase, Progress,
};

const KIND: &str = "CredentialCutover";

pub async fn reconcile(
    cutover: Arc<CredentialCutover>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if let Some(wait) = ctx.not_synced_yet() {
        return Ok(wait);
    }
    let started = Instant::now();
    let result = reconcile_inner(&cutover, &ctx).await;
    ctx.metrics.reconciled(KIND, started.elapsed());
    result
}

pub fn error_policy(_cutover: Arc<CredentialCutover>, error: &Error, ctx: Arc<Context>) -> Action {
    requeue_after_error(KIND, error, &ctx)
}

async fn reconcile_inner(cutover: &CredentialCutover, ctx: &Context) -> Result<Action, Error> {
    let ns = cutover
        .namespace()
        .ok_or_else(|| Error::NoNamespace(cutover.name_any()))?;
    let name = cutover.name_any();
    let previous = cutover.status.clone().unwrap_or_default();
    let generation = cutover.metadata.generation;
    let policy_name = &cutover.spec.policy_ref.name;

    // Dereference and validate.
    let policy = ctx
        .policies
        .state()
        .into_iter()
        .find(|p| p.namespace().as_deref() == Some(&ns) && &p.name_any() == policy_name);
    let mut problems: Vec<Problem> = Vec::new();
    let policy_model = policy.as_ref().map(|p| {
        let (model, policy_problems) = p.spec.model_with_problems(&key(&ns, policy_name));
        if !policy_problems.is_empty() {
            problems.push(Problem::new(
                "spec.policyRef.name",
                format!("CredentialPolicy {policy_name} is invalid; see its Stalled condition"),
            ));
        } else if let Err(message) = owns_realm(ctx, &p.spec.realm, &key(&ns, policy_name)) {
            // A cutover of a policy that does not own its realm must not touch it.
            problems.push(Problem::new("spec.policyRef.name", message));
        }
        model
    });
    let model = match cutover.spec.model(&key(&ns, &name), &key(&ns, policy_name)) {
        Ok(m) => Some(m),
        Err(p) => {
            problems.extend(p);
            None
        }
    };
    if let Some(model) = &model {
        // Cutovers created earlier take precedence over this one.
        let earlier: Vec<_> = cutovers_of(ctx, &ns, policy_name)
            .await?
            .into_iter()
            .filter(|(c, _)| {
                c.name_any() != name && c.creation_timestamp() <= cutover.creation_timestamp()
            })
            .filter_map(|(c, _)| {
                c.spec
                    .model(&key(&ns, &c.name_any()), &key(&ns, policy_name))
                    .ok()
            })
            .collect();
        problems.extend(validate_cutover(model, policy_model.as_ref(), &earlier));
    }
    let (Some(model), Some(policy_model), true) = (model, policy_model, problems.is_empty()) else {
        let message = describe(&problems);
        let was_stalled = find(&previous.conditions, "Stalled")
            .is_some_and(|c| c.status == ConditionStatus::True && c.message == message);
        let status = CredentialCutoverStatus {
            observed_generation: generation,
            phase: Some(CutoverPhase::Failed),
            conditions: conditions(
                &previous.conditions,
                generation,
                (false, "InvalidSpec", format!("cannot run: {message}")),
                None,
                Some(("InvalidSpec", message.clone())),
            ),
            ..previous.clone()
        };
        apply_status(ctx, cutover, &status).await?;
        if !was_stalled {
            event(ctx, cutover, true, "InvalidSpec", "Validate", message).await;
        }
        return Ok(Action::await_change());
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
            Action::requeue(adv.wait.unwrap_or_default() + Duration::from_millis(10)),
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
            Action::requeue(Duration::from_millis(50)),
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
            Action::await_change(),
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
            adv.wait.map_or_else(Action::await_change, |w| {
                Action::requeue(w + Duration::from_millis(10))
            }),
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
        conditions: conditions(&previous.conditions, generation, ready, reconciling, None),
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
