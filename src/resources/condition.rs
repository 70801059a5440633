//! Status conditions in the shape of `metav1.Condition`, which kstatus, Argo
//! CD, Flux and `kubectl wait --for=condition=…` all read.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `True`, `False` or `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One observation of the resource's state (`metav1.Condition`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Reconciling`, `Stalled`, or a kind-specific type.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether the condition holds.
    pub status: ConditionStatus,
    /// The `.metadata.generation` this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// A CamelCase word a program can match on.
    pub reason: String,
    /// What a person should know, and where it applies, what to do.
    pub message: String,
}

impl Condition {
    pub fn new(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> Condition {
        Condition {
            type_: type_.to_owned(),
            status: if status {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            },
            observed_generation: None,
            last_transition_time: String::new(),
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// Merges freshly computed conditions into the previous ones: a condition
/// whose status did not change keeps its `lastTransitionTime`.
pub fn merge_conditions(
    previous: &[Condition],
    mut next: Vec<Condition>,
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    for c in &mut next {
        c.observed_generation = generation;
        c.last_transition_time = previous
            .iter()
            .find(|p| p.type_ == c.type_ && p.status == c.status)
            .map_or_else(|| now.to_owned(), |p| p.last_transition_time.clone());
    }
    next.sort_by(|a, b| a.type_.cmp(&b.type_));
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_status_keeps_its_transition_time() {
        let old = merge_conditions(
            &[],
            vec![Condition::new("Ready", true, "Ok", "")],
            Some(1),
            "t1",
        );
        let new = merge_conditions(
            &old,
            vec![Condition::new("Ready", true, "Ok", "")],
            Some(2),
            "t2",
        );
        assert_eq!(new[0].last_transition_time, "t1");
        assert_eq!(new[0].observed_generation, Some(2));
        let flipped = merge_conditions(
            &new,
            vec![Condition::new("Ready", false, "No", "")],
            Some(2),
            "t3",
        );
        assert_eq!(flipped[0].last_transition_time, "t3");
    }
}
