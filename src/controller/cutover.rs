//! Reconciling a CredentialCutover: dereference its policy, validate, and
//! report what it will do. Before `at` it is Scheduled and requeued for
//! exactly `at`, never polled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::policy::{cutovers_of, key};
use super::status::{apply_status, conditions, event, find};
use super::{Context, Error, requeue_after_error};
use crate::engine::model::{CutoverProgress, Problem, describe};
use crate::engine::validate::validate_cutover;
use crate::resources::{
    ConditionStatus, CredentialCutover, CredentialCutoverStatus, CutoverPhase, Progress,
};

const KIND: &str = "CredentialCutover";

pub async fn reconcile(
    cutover: Arc<CredentialCutover>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
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

    // What it will do: accounts in scope and already split.
    let total = ctx
        .store
        .count_credentials(&policy_model.realm, &model.from)
        .await?;
    let already = ctx
        .store
        .count_holding_all(&policy_model.realm, &model.into)
        .await?;
    let progress = match ctx.store.checkpoint_phase(&model.name).await? {
        None => CutoverProgress::NotStarted,
        Some(crate::store::CheckpointPhase::Running) => CutoverProgress::Running,
        Some(_) => CutoverProgress::Completed,
    };
    let now = ctx.now();
    let scheduled_at = model.at.to_string();
    let (phase, ready, reconciling, requeue) = if now < model.at {
        let wait = model.at.duration_since(now).unsigned_abs();
        (
            CutoverPhase::Scheduled,
            (
                false,
                "Scheduled",
                format!(
                    "splits {} into {} at {}; {total} accounts in scope, {already} already split",
                    model.from,
                    model.into.join(", "),
                    cutover.spec.at
                ),
            ),
            None,
            // Exactly at `at` (plus a hair so the clock has passed it), never polling.
            Action::requeue(wait + Duration::from_millis(10)),
        )
    } else if progress == CutoverProgress::Completed {
        (
            CutoverPhase::Completed,
            (
                true,
                "Completed",
                format!("every account holds {}", model.into.join(", ")),
            ),
            None,
            Action::await_change(),
        )
    } else {
        (
            CutoverPhase::Scheduled,
            (
                false,
                "Due",
                "the instant has passed; waiting for the backfill to start".to_owned(),
            ),
            Some((
                "Due",
                format!("{total} accounts in scope, {already} already split"),
            )),
            Action::requeue(Duration::from_secs(30)),
        )
    };
    let status = CredentialCutoverStatus {
        observed_generation: generation,
        conditions: conditions(&previous.conditions, generation, ready, reconciling, None),
        phase: Some(phase),
        scheduled_at: Some(scheduled_at),
        progress: Some(Progress::new(already, total)),
        already_split: Some(already),
        ..previous.clone()
    };
    let first_schedule =
        previous.phase != Some(CutoverPhase::Scheduled) && phase == CutoverPhase::Scheduled;
    if status != previous {
        apply_status(ctx, cutover, &status).await?;
    }
    if first_schedule {
        event(
            ctx,
            cutover,
            false,
            "CutoverScheduled",
            "Schedule",
            format!(
                "{} → {} at {}; {total} accounts in scope",
                model.from,
                model.into.join(", "),
                cutover.spec.at
            ),
        )
        .await;
    }
    Ok(requeue)
}
