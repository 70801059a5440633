//! Reconciling a CredentialPolicy, in steps: dereference and validate
//! (its standing in the assembly every driver uses), read (effective
//! routing now, members per credential, recovery counts), decide (pure:
//! [`decide`]), publish (status and Events).

mod decide;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;

use super::status::publish;
use super::{Context, Error, reconciled, requeue_after_error};
use crate::engine::assembly::Standing;
use crate::engine::model::{Policy, describe};
use crate::engine::routing::effective_routing;
use crate::resources::{CredentialCount, CredentialPolicy, RecoveryStatus, object_key};
use crate::store::Store;
use decide::{InForce, Observed, Refusal};

const KIND: &str = "CredentialPolicy";

#[tracing::instrument(skip_all, fields(object = %object_key(&*policy)))]
pub async fn reconcile(policy: Arc<CredentialPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    if let Some(wait) = ctx.not_synced_yet() {
        return Ok(wait);
    }
    let started = Instant::now();
    let key = object_key(&*policy);
    let result = reconcile_once(&policy, &ctx).await;
    reconciled(KIND, &key, started, &result, &ctx);
    result
}

pub fn error_policy(policy: Arc<CredentialPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    requeue_after_error(KIND, &object_key(&*policy), error, &ctx)
}

async fn reconcile_once(policy: &CredentialPolicy, ctx: &Context) -> Result<Action, Error> {
    if policy.metadata.namespace.is_none() {
        return Err(Error::NoNamespace(
            policy.metadata.name.clone().unwrap_or_default(),
        ));
    }
    let previous = policy.status.clone().unwrap_or_default();
    let seen = Observed {
        generation: policy.metadata.generation,
        previous: &previous,
        now: ctx.now(),
    };
    let key = object_key(policy);
    let assembly = ctx.assembly();
    let decision = match assembly.policies.get(&key) {
        Some(Standing::Invalid(problems)) => {
            decide::refused(seen, Refusal::InvalidSpec, &describe(problems))
        }
        Some(Standing::RealmClaimed { message, .. }) => {
            decide::refused(seen, Refusal::RealmClaimed, message)
        }
        Some(Standing::InForce) | None => {
            // Not in the cache yet: its watch event follows.
            let Some(realm) = assembly.realm_of(&key) else {
                return Ok(Action::requeue(Duration::from_secs(1)));
            };
            let model = realm.policy.clone();
            // Splits the store knows that no object declares any more (a
            // cutover deleted after an abort, pruned, or declared by another
            // driver) route as what they were: no member is sent to a
            // credential it lacks.
            let known = ctx.store.known_splits(&model.realm).await?;
            let (realm, _) = realm.with_progress(&ctx.store).await?.remembering(&known);
            let routing = effective_routing(&model, &realm.cutovers, seen.now);
            // Recounted at once when a cutover starts or ends: the counts change most then.
            let stage = realm
                .cutovers
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
            decide::in_force(
                seen,
                InForce {
                    realm: &model.realm,
                    routing: &routing,
                    cutovers: &realm.cutovers,
                    counts,
                    accounts,
                    recovery,
                },
            )
        }
    };
    publish(ctx, policy, &previous, &decision.status, &decision.notes).await?;
    Ok(decision
        .requeue
        .map_or_else(Action::await_change, Action::requeue))
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
        let counted = store.count_credentials_by_name(&model.realm).await?;
        let counts: Vec<CredentialCount> = model
            .credentials
            .keys()
            .map(|credential| CredentialCount {
                name: credential.clone(),
                accounts: counted.get(credential).copied().unwrap_or(0),
            })
            .collect();
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
