//! Reconciling a CredentialCutover, in steps: dereference and validate
//! (the assembly every driver uses), drive (the engine moves the split
//! forward), decide (pure: [`decide`]), publish (status and Events).
//! Before `at` it is Scheduled and requeued for exactly `at`, never polled.
//! A finalizer holds its deletion until what it started is over, or ops
//! say what to do instead ([`cleanup`]).

mod decide;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};

use super::status::{Note, Said, event, publish};
use super::{Context, Error, MANAGER, reconciled, requeue_after_error};
use decide::{Counts, Observed};

use crate::engine::cutover::{Removal, RemovalChoice, abort, advance, removal};
use crate::resources::{CredentialCutover, object_key};

const KIND: &str = "CredentialCutover";

/// On every cutover the controller has seen: its deletion waits for
/// [`cleanup`].
pub const FINALIZER: &str = "credshift.dev/cutover-protection";

/// What ops want a deletion to do before the cutover is over: `Abort`
/// (not completed yet) or `KeepSource` (completed, source not retired).
pub const ON_DELETE: &str = "credshift.dev/on-delete";

#[tracing::instrument(skip_all, fields(object = %object_key(&*cutover)))]
pub async fn reconcile(
    cutover: Arc<CredentialCutover>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if let Some(wait) = ctx.not_synced_yet() {
        return Ok(wait);
    }
    let started = Instant::now();
    let key = object_key(&*cutover);
    let ns = cutover
        .namespace()
        .ok_or_else(|| Error::NoNamespace(cutover.name_any()))?;
    let api: Api<CredentialCutover> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, cutover, |event| async {
        match event {
            Finalizer::Apply(c) => Ok(requeue(drive(&c, &ctx, None).await?)),
            Finalizer::Cleanup(c) => cleanup(&c, &ctx).await,
        }
    })
    .await
    .map_err(Error::from);
    reconciled(KIND, &key, started, &result, &ctx);
    result
}

pub fn error_policy(cutover: Arc<CredentialCutover>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Error::DeletionHeld(again) = error {
        // Not a failure: the finalizer is doing its job.
        return requeue(Some(again.unwrap_or(Duration::from_secs(60))));
    }
    requeue_after_error(KIND, &object_key(&*cutover), error, &ctx)
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
                event(
                    ctx,
                    cutover,
                    &Note::warning("Delete", "CutoverAborted", note),
                )
                .await;
                return Ok(Action::await_change());
            }
            Removal::KeepSource => {
                ctx.store
                    .keep_source(&cutover_key, MANAGER, ctx.now())
                    .await?;
                let note = format!(
                    "deleted before retainSource passed ({ON_DELETE}=KeepSource): source credential {source} kept; nothing will retire it"
                );
                event(ctx, cutover, &Note::normal("Delete", "SourceKept", note)).await;
                return Ok(Action::await_change());
            }
            Removal::Hold(_) if held_once => {
                return Err(Error::DeletionHeld(Some(Duration::from_millis(50))));
            }
            Removal::Hold(wait) => {
                held_once = true;
                let previous = cutover.status.clone().unwrap_or_default();
                let deleting = decide::held(
                    observed(cutover, &previous, None, ctx),
                    wait,
                    given.as_deref(),
                );
                let again = drive(cutover, ctx, Some(&deleting)).await?;
                if let Some(note) = decide::held_note(&previous, &deleting) {
                    event(ctx, cutover, &note).await;
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

/// What every decision about `cutover` starts from.
fn observed<'a>(
    cutover: &'a CredentialCutover,
    previous: &'a crate::resources::CredentialCutoverStatus,
    deleting: Option<&'a Said>,
    ctx: &Context,
) -> Observed<'a> {
    Observed {
        name: cutover.metadata.name.as_deref().unwrap_or_default(),
        spec: &cutover.spec,
        generation: cutover.metadata.generation,
        previous,
        deleting,
        now: ctx.now(),
    }
}

/// Dereferences and validates the cutover, lets the engine move it
/// forward (a no-op before `at`), decides its status and publishes it;
/// `deleting` is the `Deleting` condition of a held deletion. Returns when
/// to look again (`None`: on the next change).
async fn drive(
    cutover: &CredentialCutover,
    ctx: &Context,
    deleting: Option<&Said>,
) -> Result<Option<Duration>, Error> {
    let previous = cutover.status.clone().unwrap_or_default();
    let key = object_key(cutover);
    let assembly = ctx.assembly();
    let problems = assembly
        .refused
        .get(&key)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let decision = match (assembly.cutover(&key), problems) {
        // Not in the controller's cache yet: its watch event follows.
        (None, []) => return Ok(Some(Duration::from_secs(1))),
        (Some((realm, model)), []) => {
            let adv = advance(
                &ctx.store,
                &realm.policy,
                model,
                jiff::Timestamp::now,
                ctx.progress_interval,
            )
            .await?;
            let counts = match decide::counts_from_checkpoint(&adv, &previous) {
                Some(counts) => counts,
                None => {
                    let (total, already) = ctx
                        .store
                        .split_counts(&realm.policy.realm, &model.from, &model.into)
                        .await?;
                    Counts { total, already }
                }
            };
            let seen = observed(cutover, &previous, deleting, ctx);
            decide::driven(seen, model, &adv, counts)
        }
        (_, problems) => decide::refused(observed(cutover, &previous, deleting, ctx), problems),
    };
    publish(ctx, cutover, &previous, &decision.status, &decision.notes).await?;
    Ok(decision.requeue)
}
