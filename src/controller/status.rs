//! What reconcilers decide and how it reaches the cluster: the kstatus
//! conditions ([`Kstatus`]), Events ([`Note`]), and the one step that
//! writes them ([`publish`]): a status write only when something changed
//! (server-side apply on the status subresource), then the Events.

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Context, Error, MANAGER};
use crate::resources::{Condition, ConditionStatus, merge_conditions};

/// A condition's or an Event's reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    pub reason: &'static str,
    pub message: String,
}

impl Said {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Said {
        Said {
            reason,
            message: message.into(),
        }
    }
}

/// The kstatus trio of a resource: in force or not (`ready`), working
/// (`reconciling`), blocked on a person (`stalled`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kstatus {
    pub ready: bool,
    /// Why it is, or is not, ready.
    pub why: Said,
    pub reconciling: Option<Said>,
    pub stalled: Option<Said>,
}

impl Kstatus {
    /// The three conditions, with `more` (other condition types), by type;
    /// transition times kept from `previous` where a status is unchanged.
    pub fn conditions(
        self,
        previous: &[Condition],
        generation: Option<i64>,
        more: Vec<Condition>,
        now: Timestamp,
    ) -> Vec<Condition> {
        let mut next = vec![Condition::new(
            "Ready",
            self.ready,
            self.why.reason,
            self.why.message,
        )];
        next.push(match self.reconciling {
            Some(s) => Condition::new("Reconciling", true, s.reason, s.message),
            None => Condition::new("Reconciling", false, "Idle", "nothing in progress"),
        });
        next.push(match self.stalled {
            Some(s) => Condition::new("Stalled", true, s.reason, s.message),
            None => Condition::new("Stalled", false, "Valid", "no blocking problem"),
        });
        next.extend(more);
        merge_conditions(previous, next, generation, &now.to_string())
    }
}

/// What a reconciler's pure step decides: the status to write, the Events
/// to publish, and when to look again (`None`: on the next change of the
/// object or of what it depends on).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<S> {
    pub status: S,
    pub notes: Vec<Note>,
    pub requeue: Option<std::time::Duration>,
}

/// An Event to publish about the reconciled object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub action: &'static str,
    pub said: Said,
}

impl Note {
    pub fn normal(action: &'static str, reason: &'static str, message: impl Into<String>) -> Note {
        Note {
            warning: false,
            action,
            said: Said::new(reason, message),
        }
    }

    pub fn warning(action: &'static str, reason: &'static str, message: impl Into<String>) -> Note {
        Note {
            warning: true,
            ..Note::normal(action, reason, message)
        }
    }
}

/// The condition of `type_` in `conditions`, if any.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether `conditions` already say `Stalled` with this `message`: the
/// Event for a blocking problem is published once, not on every look.
pub fn stalled_with(conditions: &[Condition], message: &str) -> bool {
    find(conditions, "Stalled")
        .is_some_and(|c| c.status == ConditionStatus::True && c.message == message)
}

/// Writes `status` when it differs from `previous`, then publishes `notes`.
pub async fn publish<K, S>(
    ctx: &Context,
    obj: &K,
    previous: &S,
    status: &S,
    notes: &[Note],
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if status != previous {
        apply_status(ctx, obj, status).await?;
    }
    for note in notes {
        event(ctx, obj, note).await;
    }
    Ok(())
}

/// Applies `status` to the object's status subresource.
async fn apply_status<K, S>(ctx: &Context, obj: &K, status: &S) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let object = crate::resources::object_key(obj).to_string();
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
    .await
    .map_err(|source| Error::StatusWrite { object, source })?;
    Ok(())
}

/// Publishes an Event about `obj`. Failing to publish is logged, not fatal.
pub async fn event<K>(ctx: &Context, obj: &K, note: &Note)
where
    K: Resource<DynamicType = ()>,
{
    let ev = Event {
        type_: if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: note.said.reason.into(),
        note: Some(note.said.message.clone()),
        action: note.action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, reason = note.said.reason, "cannot publish an Event");
    }
}

/// The condition of `type_`, for tests: a missing one fails the test
/// with the conditions there are.
#[cfg(test)]
pub fn expect_condition<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
    find(conditions, type_).unwrap_or_else(|| panic!("no {type_} condition in {conditions:?}"))
}
