//! Reconciling a CredentialPolicy: validate, compute the effective routing
//! now, count members per credential, write status.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::status::{apply_status, conditions, event, find};
use super::{Context, Error, requeue_after_error};
use crate::engine::assembly::Standing;
use crate::engine::members::unheld_in;
use crate::engine::model::Policy;
use crate::engine::model::{CutoverProgress, describe};
use crate::engine::routing::Route;
use crate::engine::routing::effective_routing;
use crate::resources::{
    Condition, ConditionStatus, CredentialCount, CredentialPolicy, CredentialPolicyStatus,
    RecoveryStatus, RouteStatus, merge_conditions, object_key,
};
use crate::store::Store;

const KIND: &str = "CredentialPolicy";

pub async fn reconcile(policy: Arc<CredentialPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    if let Some(wait) = ctx.not_synced_yet() {
        return Ok(wait);
    }
    let started = Instant::now();
    let result = reconcile_inner(&policy, &ctx).await;
    ctx.metrics.reconciled(KIND, started.elapsed());
    result
}

pub fn error_policy(_policy: Arc<CredentialPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    requeue_after_error(KIND, error, &ctx)
}

/// The `CredentialsHeld` condition: False, with the count of accounts, for
/// each purpose routed straight to a credential some accounts lack and no
/// cutover creates (those members are denied on it), else True.
fn credentials_held(
    previous: &[Condition],
    generation: Option<i64>,
    routing: &BTreeMap<String, Route>,
    counts: &[CredentialCount],
    accounts: i64,
) -> Vec<Condition> {
    let held: BTreeMap<String, i64> = counts
        .iter()
        .map(|c| (c.name.clone(), c.accounts))
        .collect();
    let unheld = unheld_in(routing, &held, accounts);
    let condition = if unheld.is_empty() {
        Condition::new(
            "CredentialsHeld",
            true,
            "AllHeld",
            "every account holds the credential each purpose is routed to",
        )
    } else {
        let message = unheld
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Condition::new("CredentialsHeld", false, "CredentialsLacking", message)
    };
    merge_conditions(
        previous,
        vec![condition],
        generation,
        &jiff::Timestamp::now().to_string(),
    )
}

/// Marks `policy` Stalled (not in force) for `reason`, keeping the rest of
/// `status`; an Event the first time this message is given.
async fn stall(
    ctx: &Context,
    policy: &CredentialPolicy,
    status: CredentialPolicyStatus,
    reason: &str,
    message: String,
) -> Result<(), Error> {
    let previous = policy.status.clone().unwrap_or_default();
    let generation = policy.metadata.generation;
    let was_stalled = find(&previous.conditions, "Stalled")
        .is_some_and(|c| c.status == ConditionStatus::True && c.message == message);
    let status = CredentialPolicyStatus {
        observed_generation: generation,
        conditions: conditions(
            &previous.conditions,
            generation,
            (false, reason, format!("not in force: {message}")),
            None,
            Some((reason, message.clone())),
        ),
        ..status
    };
    if status != previous {
        apply_status(ctx, policy, &status).await?;
    }
    if !was_stalled {
        event(ctx, policy, true, reason, "Validate", message).await;
    }
    Ok(())
}

async fn reconcile_inner(policy: &CredentialPolicy, ctx: &Context) -> Result<Action, Error> {
    if policy.namespace().is_none() {
        return Err(Error::NoNamespace(policy.name_any()));
    }
    let previous = policy.status.clone().unwrap_or_default();
    let generation = policy.metadata.generation;

    let key = object_key(policy);
    let assembly = ctx.assembly();
    match assembly.policies.get(&key) {
        Some(Standing::Invalid(problems)) => {
            let status = previous.clone();
            stall(ctx, policy, status, "InvalidSpec", describe(problems)).await?;
            return Ok(Action::await_change());
        }
        // A second claim on a realm changes nothing in it: Stalled, without
        // routing or counts, looked at again now and then to take over once
        // the owner is gone.
        Some(Standing::RealmClaimed { message, .. }) => {
            let status = CredentialPolicyStatus::default();
            stall(ctx, policy, status, "RealmClaimed", message.clone()).await?;
            return Ok(Action::requeue(Duration::from_secs(10)));
        }
        Some(Standing::InForce) | None => {}
    }
    // Not in the cache yet: its watch event follows.
    let Some(realm) = assembly.realm_of(&key) else {
        return Ok(Action::requeue(Duration::from_secs(1)));
    };

    let now = ctx.now();
    let model = realm.policy.clone();
    // Splits the store knows that no object declares any more (a cutover
    // deleted after an abort, pruned, or declared by another driver) route
    // as what they were: no member is sent to a credential it lacks.
    let known = ctx.store.known_splits(&model.realm).await?;
    let (realm, _) = realm.with_progress(&ctx.store).await?.remembering(&known);
    let models = realm.cutovers;
    let routing = effective_routing(&model, &models, now);
    // Recounted at once when a cutover starts or ends: the counts change most then.
    let stage = models
        .iter()
        .map(|(c, p)| format!("{}={p:?}", c.name))
        .collect::<Vec<_>>()
        .join(",");
    let (counts, accounts) = ctx
        .realm_counts
        .get_or_count(&ctx.store, &key.to_string(), &model, &stage)
        .await?;
    let rc = ctx.store.recovery_counts(&model.realm).await?;
    let recovery = RecoveryStatus {
        live_tickets: rc.live,
        issued: rc.issued,
        used: rc.used,
        expired: rc.expired,
        mail_pending: rc.mail_pending,
        mail_delivered: rc.mail_sent,
        mail_failed: rc.mail_dead,
    };

    let summary = routing
        .iter()
        .map(|(purpose, route)| format!("{purpose}→{}", route.answering(false)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut all_conditions = conditions(
        &previous.conditions,
        generation,
        (
            true,
            "InForce",
            format!(
                "{accounts} accounts in realm {}; routing {summary}",
                model.realm
            ),
        ),
        None,
        None,
    );
    all_conditions.extend(credentials_held(
        &previous.conditions,
        generation,
        &routing,
        &counts,
        accounts,
    ));
    all_conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    let status = CredentialPolicyStatus {
        observed_generation: generation,
        conditions: all_conditions,
        routing: routing
            .iter()
            .map(|(purpose, route)| RouteStatus {
                purpose: purpose.clone(),
                credential: route.answering(true).to_owned(),
                mode: route.mode().to_owned(),
                source: match route {
                    crate::engine::routing::Route::Direct { .. } => None,
                    crate::engine::routing::Route::Source { source, .. }
                    | crate::engine::routing::Route::DualRead { source, .. } => {
                        Some(source.clone())
                    }
                },
                cutover: match route {
                    crate::engine::routing::Route::Direct { .. } => None,
                    crate::engine::routing::Route::Source { cutover, .. }
                    | crate::engine::routing::Route::DualRead { cutover, .. } => {
                        Some(cutover.clone())
                    }
                },
            })
            .collect(),
        credentials: counts,
        accounts: Some(accounts),
        recovery: Some(recovery),
    };
    let became_ready =
        !find(&previous.conditions, "Ready").is_some_and(|c| c.status == ConditionStatus::True);
    if status != previous {
        apply_status(ctx, policy, &status).await?;
    }
    if became_ready {
        event(
            ctx,
            policy,
            false,
            "InForce",
            "Validate",
            format!("policy in force for realm {}", model.realm),
        )
        .await;
    }
    // Routing changes at the next pending cutover's instant; counts drift slowly.
    let next_switch = models
        .iter()
        .filter(|(c, p)| *p == CutoverProgress::NotStarted && c.at > now)
        .map(|(c, _)| c.at.duration_since(now).unsigned_abs())
        .min();
    let refresh = Duration::from_secs(60);
    Ok(Action::requeue(next_switch.map_or(refresh, |d| {
        d.min(refresh) + Duration::from_millis(10)
    })))
}

/// How long a policy's realm-wide counts are reused. Counting reads the
/// whole realm, and a policy is reconciled on every status write of its
/// cutovers (about every `--progress-interval` while one runs): recounting
/// each time made a running cutover spend more time counting than copying
/// on a large realm. Counts are statistics; 15 s old is fresh enough, except
/// when a cutover has started or ended since.
pub const COUNTS_MAX_AGE: Duration = Duration::from_secs(15);

/// The last counts per policy (members per credential, members in the realm).
#[derive(Default)]
pub struct CountsCache {
    entries: std::sync::Mutex<HashMap<String, CachedCounts>>,
}

struct CachedCounts {
    taken: Instant,
    realm: String,
    stage: String,
    counts: Vec<CredentialCount>,
    accounts: i64,
}

impl CountsCache {
    /// The policy's counts, from the store unless those taken for the same
    /// realm, credentials and `stage` of its cutovers are younger than
    /// `COUNTS_MAX_AGE`.
    async fn get_or_count(
        &self,
        store: &Store,
        policy: &str,
        model: &Policy,
        stage: &str,
    ) -> Result<(Vec<CredentialCount>, i64), Error> {
        let fresh = |c: &CachedCounts| {
            c.taken.elapsed() < COUNTS_MAX_AGE
                && c.realm == model.realm
                && c.stage == stage
                && c.counts
                    .iter()
                    .map(|n| &n.name)
                    .eq(model.credentials.keys())
        };
        if let Some(c) = self.lock().get(policy).filter(|c| fresh(c)) {
            return Ok((c.counts.clone(), c.accounts));
        }
        let mut counts = Vec::new();
        for credential in model.credentials.keys() {
            counts.push(CredentialCount {
                name: credential.clone(),
                accounts: store.count_credentials(&model.realm, credential).await?,
            });
        }
        let accounts = store.count_accounts(&model.realm).await?;
        self.lock().insert(
            policy.to_owned(),
            CachedCounts {
                taken: Instant::now(),
                realm: model.realm.clone(),
                stage: stage.to_owned(),
                counts: counts.clone(),
                accounts,
            },
        );
        Ok((counts, accounts))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedCounts>> {
        // A panic elsewhere cannot leave a count half-written: take it anyway.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
