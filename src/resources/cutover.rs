//! CredentialCutover: a scheduled split of one credential into several.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::duration::GoDuration;
use super::policy::NAME_PATTERN;

/// A scheduled, online split of one credential into several, each starting
/// with the old value: e.g. `login` into `support` and `connection` at
/// 2018-04-18T00:00:00+09:00. Members see no downtime; nothing is lost.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "credshift.dev",
    version = "v1alpha1",
    kind = "CredentialCutover",
    doc = "A scheduled, online split of one credential into several, each starting with the old value; crash-safe, without downtime.",
    namespaced,
    status = "CredentialCutoverStatus",
    shortname = "ccut",
    category = "credshift",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Policy","type":"string","jsonPath":".spec.policyRef.name","description":"The CredentialPolicy it changes"}"#,
    printcolumn = r#"{"name":"At","type":"string","jsonPath":".spec.at","description":"When the split starts"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase","description":"Scheduled, Running, Suspended, Completed or Failed"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","jsonPath":".status.progress.summary","description":"Accounts split / in scope"}"#,
    printcolumn = r#"{"name":"Complete","type":"string","jsonPath":".status.conditions[?(@.type==\"Complete\")].status","description":"True once every account holds every target"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.window) > duration('0s')").message("window must be longer than 0s"))]
pub struct CredentialCutoverSpec {
    /// The CredentialPolicy (same namespace) whose credentials are split. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("policyRef is immutable"))]
    pub policy_ref: PolicyRef,

    /// When the split starts: an RFC 3339 instant with offset, e.g.
    /// `2018-04-18T00:00:00+09:00`. Until then every purpose routed to a new
    /// credential is answered by the source credential.
    #[schemars(extend("format" = "date-time"), length(max = 64))]
    pub at: String,

    /// How long the split may take (Go duration, default 6h). What happens
    /// when it is exceeded is `onWindowExceeded`, and status shows it.
    #[serde(default = "default_window")]
    pub window: GoDuration,

    /// `Continue` (default): keep going and report `WindowExceeded`;
    /// `Suspend`: pause at the next batch boundary until a person resumes.
    #[serde(default)]
    pub on_window_exceeded: WindowAction,

    /// What is split into what. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("split is immutable"))]
    pub split: SplitSpec,

    /// Accounts per transaction of the backfill (default 1000).
    #[serde(default = "default_batch_size")]
    #[schemars(extend("format" = "int32"), range(min = 1, max = 10_000))]
    pub batch_size: u32,

    /// Pause the backfill at the next batch boundary; `false` resumes.
    /// Verification and changes keep working while suspended (dual read).
    #[serde(default)]
    pub suspend: bool,

    /// How long the source credential is kept after completion, for
    /// rollback (Go duration, default 720h = 30 days).
    #[serde(default = "default_retain_source")]
    pub retain_source: GoDuration,
}

fn default_window() -> GoDuration {
    GoDuration::new("6h")
}
fn default_batch_size() -> u32 {
    1000
}
fn default_retain_source() -> GoDuration {
    GoDuration::new("720h")
}

/// A reference to a CredentialPolicy in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct PolicyRef {
    /// The policy's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What to do when a cutover runs longer than its window.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum WindowAction {
    /// Keep going; status says the window was exceeded.
    #[default]
    Continue,
    /// Pause at the next batch boundary until `suspend` is toggled.
    Suspend,
}

/// One source credential split into several targets.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.into.all(x, self.into.exists_one(y, y == x))").message("split.into must not contain duplicates"))]
#[x_kube(validation = Rule::new("!(self.from in self.into)").message("split.into must not contain split.from"))]
pub struct SplitSpec {
    /// The shared credential being split (e.g. `login`).
    #[schemars(pattern(NAME_PATTERN), length(max = 63))]
    pub from: String,
    /// The new credentials (e.g. `support`, `connection`).
    #[schemars(
        length(min = 1, max = 8),
        inner(pattern(NAME_PATTERN), length(max = 63))
    )]
    pub into: Vec<String>,
    /// The initial value of each new credential (`CopyFromSource`: the old password).
    #[serde(default)]
    pub initial_value: InitialValue,
}

/// Where a new credential's first value comes from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum InitialValue {
    /// The source credential's current hash: members keep their password.
    #[default]
    CopyFromSource,
}

/// Lifecycle of a cutover.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CutoverPhase {
    /// Waiting for `at`.
    Scheduled,
    /// Splitting: dual read is on and the backfill runs.
    Running,
    /// Paused by `suspend` (or by `onWindowExceeded: Suspend`).
    Suspended,
    /// Every account has every target credential.
    Completed,
    /// Cannot proceed; see the Stalled condition.
    Failed,
}

impl CutoverPhase {
    /// The name, as in the status (and as a condition's reason).
    pub fn as_str(self) -> &'static str {
        match self {
            CutoverPhase::Scheduled => "Scheduled",
            CutoverPhase::Running => "Running",
            CutoverPhase::Suspended => "Suspended",
            CutoverPhase::Completed => "Completed",
            CutoverPhase::Failed => "Failed",
        }
    }
}

/// What ops and GitOps read about a cutover.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CredentialCutoverStatus {
    /// The `.metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled` (kstatus: a Scheduled or
    /// Suspended cutover is Ready, a Running one Reconciling, a Failed one
    /// Stalled), `Complete` (as a Job's: True once every account holds
    /// every target) and `Deleting` while a deletion is held.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Scheduled, Running, Suspended, Completed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CutoverPhase>,
    /// `at`, normalised to UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
    /// When the backfill started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When every account had every target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// When the source credential was removed (after `retainSource`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_retired_at: Option<String>,
    /// Accounts in scope and done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Accounts that already hold every target (e.g. set by members after `at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub already_split: Option<i64>,
    /// Estimated completion, from the measured batch rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<String>,
    /// True once the run took longer than `window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_exceeded: Option<bool>,
}

/// Backfill progress.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Accounts in scope (holding the source credential).
    pub total: i64,
    /// Accounts that hold every target.
    pub done: i64,
    /// `done` / `total`, 0-100.
    pub percent: i64,
    /// `done/total (percent%)`, for `kubectl get`.
    pub summary: String,
}

impl Progress {
    pub fn new(done: i64, total: i64) -> Progress {
        let percent = if total <= 0 {
            100
        } else {
            (done.saturating_mul(100) / total).clamp(0, 100)
        };
        Progress {
            total,
            done,
            percent,
            summary: format!("{done}/{total} ({percent}%)"),
        }
    }
}
