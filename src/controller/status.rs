//! Status writes (server-side apply on the status subresource) and Events.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Context, Error, MANAGER};
use crate::resources::{Condition, merge_conditions};

/// Applies `status` to the object's status subresource.
pub async fn apply_status<K, S>(ctx: &Context, obj: &K, status: &S) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let ns = obj
        .namespace()
        .ok_or_else(|| Error::NoNamespace(obj.name_any()))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Publishes an Event about `obj`. Failing to publish is logged, not fatal.
pub async fn event<K>(
    ctx: &Context,
    obj: &K,
    warning: bool,
    reason: &str,
    action: &str,
    note: String,
) where
    K: Resource<DynamicType = ()>,
{
    let ev = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot publish an Event");
    }
}

/// The kstatus trio for a resource that is in force (`ready`), working
/// (`reconciling`) or blocked on a person (`stalled`).
pub fn conditions(
    previous: &[Condition],
    generation: Option<i64>,
    ready: (bool, &str, String),
    reconciling: Option<(&str, String)>,
    stalled: Option<(&str, String)>,
) -> Vec<Condition> {
    let mut next = vec![Condition::new("Ready", ready.0, ready.1, ready.2)];
    next.push(match reconciling {
        Some((reason, message)) => Condition::new("Reconciling", true, reason, message),
        None => Condition::new("Reconciling", false, "Idle", "nothing in progress"),
    });
    next.push(match stalled {
        Some((reason, message)) => Condition::new("Stalled", true, reason, message),
        None => Condition::new("Stalled", false, "Valid", "no blocking problem"),
    });
    merge_conditions(
        previous,
        next,
        generation,
        &jiff::Timestamp::now().to_string(),
    )
}

/// The condition of `type_` in `conditions`, if any.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
