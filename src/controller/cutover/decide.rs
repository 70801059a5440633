//! The pure step of reconciling a cutover: from what was observed (the
//! spec, the last status, what the engine did) to the next status, its
//! Events and when to look again. No I/O and no clock of its own, so every
//! phase and condition is tested here without a cluster.

use std::time::Duration;

use jiff::Timestamp;

use super::ON_DELETE;
use crate::controller::status::{Kstatus, Note, Said, stalled_with};
use crate::engine::cutover::{Advance, Phase, RemovalChoice, Wait};
use crate::engine::model::{Cutover, Problem, describe};
use crate::resources::{
    Condition, CredentialCutoverSpec, CredentialCutoverStatus, CutoverPhase, Progress,
};

/// What a decision starts from, besides the engine's answer.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// The object's name (for the commands the status suggests).
    pub name: &'a str,
    pub spec: &'a CredentialCutoverSpec,
    pub generation: Option<i64>,
    pub previous: &'a CredentialCutoverStatus,
    /// The `Deleting` condition while a deletion is held.
    pub deleting: Option<&'a Said>,
    pub now: Timestamp,
}

/// What a cutover reconcile decided.
pub type Decision = crate::controller::status::Decision<CredentialCutoverStatus>;

/// Accounts in scope (holding the source) and those already holding
/// every target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub total: i64,
    pub already: i64,
}

/// Whether the realm must be counted for this status. Counting reads the
/// whole realm: done while the cutover is scheduled, suspended or over,
/// not on every progress tick of a running backfill, whose checkpoint
/// carries its progress.
pub fn counts_from_checkpoint(adv: &Advance, previous: &CredentialCutoverStatus) -> Option<Counts> {
    match (adv.phase, &adv.checkpoint) {
        (Phase::Running, Some(cp)) => Some(Counts {
            total: cp.total,
            already: previous.already_split.unwrap_or(0),
        }),
        _ => None,
    }
}

/// A cutover that cannot run (its spec, its policy, or an earlier cutover
/// into the same credentials): Failed and Stalled with every problem; the
/// Event once per message.
pub fn refused(seen: Observed<'_>, problems: &[Problem]) -> Decision {
    let message = describe(problems);
    let kstatus = Kstatus {
        ready: false,
        why: Said::new("InvalidSpec", format!("cannot run: {message}")),
        reconciling: None,
        stalled: Some(Said::new("InvalidSpec", message.clone())),
    };
    let notes = if stalled_with(&seen.previous.conditions, &message) {
        Vec::new()
    } else {
        vec![Note::warning("Validate", "InvalidSpec", message)]
    };
    Decision {
        status: CredentialCutoverStatus {
            observed_generation: seen.generation,
            phase: Some(CutoverPhase::Failed),
            conditions: conditions(seen, kstatus, CutoverPhase::Failed),
            ..seen.previous.clone()
        },
        notes,
        requeue: None,
    }
}

/// A cutover the engine has just driven (`adv`): where it stands, what
/// happened in this step, and when it next moves by itself.
pub fn driven(seen: Observed<'_>, model: &Cutover, adv: &Advance, counts: Counts) -> Decision {
    let previous = seen.previous;
    let checkpoint = adv.checkpoint.as_ref();
    let progress = match (adv.phase, checkpoint) {
        (Phase::Scheduled, _) | (_, None) => Progress::new(counts.already, counts.total),
        (_, Some(cp)) => Progress::new(cp.done, cp.total.max(cp.done)),
    };
    let targets = model.into.join(", ");
    let from = &model.from;
    let (phase, kstatus, requeue) = match adv.phase {
        // Scheduled and Suspended are steady states, waiting for a date or
        // for ops: Ready (kstatus Current), so that GitOps waits end. Only
        // a running backfill is in progress.
        Phase::Scheduled => (
            CutoverPhase::Scheduled,
            Kstatus {
                ready: true,
                why: Said::new(
                    "Scheduled",
                    format!(
                        "splits {from} into {targets} at {}; {} accounts in scope, {} already split",
                        seen.spec.at, counts.total, counts.already
                    ),
                ),
                reconciling: None,
                stalled: None,
            },
            // Exactly at `at` (plus a hair so the clock has passed it), never polling.
            Some(adv.wait.unwrap_or_default() + Duration::from_millis(10)),
        ),
        Phase::Running => (
            CutoverPhase::Running,
            Kstatus {
                ready: false,
                why: Said::new(
                    "Running",
                    format!("dual read on; backfill {}", progress.summary),
                ),
                reconciling: Some(Said::new(
                    "Backfilling",
                    format!("{} accounts split", progress.summary),
                )),
                stalled: None,
            },
            Some(Duration::from_millis(50)),
        ),
        Phase::Suspended => (
            CutoverPhase::Suspended,
            Kstatus {
                ready: true,
                why: Said::new(
                    "Suspended",
                    if adv.window_exceeded && !seen.spec.suspend {
                        "window exceeded and onWindowExceeded is Suspend: paused at a batch boundary; set onWindowExceeded: Continue or extend window to resume"
                    } else {
                        "spec.suspend is true: paused at a batch boundary; dual read stays on"
                    },
                ),
                reconciling: None,
                stalled: None,
            },
            None,
        ),
        Phase::Completed | Phase::Retired => (
            CutoverPhase::Completed,
            Kstatus {
                ready: true,
                why: Said::new(
                    "Completed",
                    if adv.phase == Phase::Retired {
                        format!("every account holds {targets}; source {from} retired")
                    } else {
                        format!(
                            "every account holds {targets}; source {from} kept for rollback until retainSource passes"
                        )
                    },
                ),
                reconciling: None,
                stalled: None,
            },
            adv.wait.map(|w| w + Duration::from_millis(10)),
        ),
    };
    let eta = match (adv.rate, phase) {
        (Some(rate), CutoverPhase::Running) if rate > 0.0 => {
            let remaining = (progress.total - progress.done).max(0) as f64;
            let secs = (remaining / rate).ceil() as i64;
            Some((seen.now + jiff::SignedDuration::from_secs(secs)).to_string())
        }
        (_, CutoverPhase::Running) => previous.eta.clone(),
        _ => None,
    };
    let ts = |t: Option<Timestamp>| t.map(|t| t.to_string());
    let status = CredentialCutoverStatus {
        observed_generation: seen.generation,
        conditions: conditions(seen, kstatus, phase),
        phase: Some(phase),
        scheduled_at: Some(model.at.to_string()),
        started_at: ts(checkpoint.map(|c| c.started_at)),
        completed_at: ts(checkpoint.and_then(|c| c.completed_at)),
        source_retired_at: ts(checkpoint.and_then(|c| c.retired_at)),
        already_split: Some(counts.already),
        window_exceeded: Some(adv.window_exceeded),
        eta,
        progress: Some(progress.clone()),
    };

    let note = |what: &str| format!("{what}: {from} → {targets}; {}", progress.summary);
    let quarter = |p: Option<&Progress>| p.map_or(0, |p| p.percent / 25);
    let entered_scheduled =
        previous.phase != Some(CutoverPhase::Scheduled) && phase == CutoverPhase::Scheduled;
    let next_quarter = phase == CutoverPhase::Running
        && quarter(Some(&progress)) > quarter(previous.progress.as_ref());
    let newly_exceeded = adv.window_exceeded && previous.window_exceeded != Some(true);
    let notes = [
        (
            entered_scheduled,
            Note::normal("Schedule", "CutoverScheduled", note("scheduled")),
        ),
        (
            adv.started,
            Note::normal(
                "Split",
                "CutoverStarted",
                note("dual read on, backfill started"),
            ),
        ),
        (
            next_quarter,
            Note::normal("Split", "BatchCommitted", note("progress")),
        ),
        (
            adv.completed,
            Note::normal(
                "Split",
                "CutoverCompleted",
                note("every account holds every target"),
            ),
        ),
        (
            adv.retired,
            Note::normal(
                "Retire",
                "SourceRetired",
                format!("source credential {from} removed after retainSource"),
            ),
        ),
        (
            newly_exceeded,
            Note::warning(
                "Split",
                "WindowExceeded",
                format!("running longer than window {}", seen.spec.window.0),
            ),
        ),
    ]
    .into_iter()
    .filter_map(|(when, note)| when.then_some(note))
    .collect();
    Decision {
        status,
        notes,
        requeue,
    }
}

/// The `Deleting` condition of a held deletion: why it waits, and the
/// command that lets it go (`given`: the [`ON_DELETE`] annotation, if any).
pub fn held(seen: Observed<'_>, wait: Wait, given: Option<&str>) -> Said {
    let name = seen.name;
    let source = &seen.spec.split.from;
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
        Wait::Completion => Said::new(
            "WaitingForCompletion",
            format!(
                "{unknown}deletion waits until the cutover completes{}: members not yet copied answer with {source} only while it exists. To stop it instead and answer with {source} again: {}",
                if seen.spec.suspend {
                    " (spec.suspend is true: set it to false to let it complete)"
                } else {
                    ""
                },
                annotate("Abort")
            ),
        ),
        Wait::Retirement => Said::new(
            "WaitingForRetirement",
            format!(
                "{unknown}deletion waits until the source {source} is retired (retainSource {}). To keep {source} and delete now: {}",
                seen.spec.retain_source.0,
                annotate("KeepSource")
            ),
        ),
        Wait::ChoiceDoesNotApply(RemovalChoice::Abort) => Said::new(
            "WaitingForRetirement",
            format!(
                "{ON_DELETE}=Abort does not apply: the cutover completed and its targets answer. Deletion waits until the source {source} is retired; to keep {source} and delete now: {}",
                annotate("KeepSource")
            ),
        ),
        Wait::ChoiceDoesNotApply(RemovalChoice::KeepSource) => Said::new(
            "WaitingForCompletion",
            format!(
                "{ON_DELETE}=KeepSource does not apply: the cutover has not completed. Deletion waits until it does; to stop it instead: {}",
                annotate("Abort")
            ),
        ),
    }
}

/// The Event of a held deletion, once per reason.
pub fn held_note(previous: &CredentialCutoverStatus, deleting: &Said) -> Option<Note> {
    let was = previous
        .conditions
        .iter()
        .find(|c| c.type_ == "Deleting")
        .map(|c| c.reason.as_str());
    (was != Some(deleting.reason))
        .then(|| Note::warning("Delete", "DeletionHeld", deleting.message.clone()))
}

/// The kstatus conditions; `Complete`, as a Job has it (what
/// `kubectl wait --for=condition=Complete` waits for: True once every
/// account holds every target, else False with the phase as its reason);
/// and `Deleting` while a deletion is held.
fn conditions(seen: Observed<'_>, kstatus: Kstatus, phase: CutoverPhase) -> Vec<Condition> {
    let complete = Condition::new(
        "Complete",
        phase == CutoverPhase::Completed,
        phase.as_str(),
        kstatus.why.message.clone(),
    );
    let deleting = seen
        .deleting
        .map(|d| Condition::new("Deleting", true, d.reason, d.message.clone()));
    let more = std::iter::once(complete).chain(deleting).collect();
    kstatus.conditions(&seen.previous.conditions, seen.generation, more, seen.now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ConditionStatus;
    use crate::store::{Checkpoint, CheckpointPhase};

    const NOW: &str = "2018-04-18T00:30:00Z";

    /// The 2018 split, as in the example.
    fn spec() -> CredentialCutoverSpec {
        let yaml = include_str!("../../../examples/2018-split/cutover.yaml");
        serde_saphyr::from_str::<crate::resources::CredentialCutover>(yaml)
            .expect("the example parses")
            .spec
    }

    fn model() -> Cutover {
        spec()
            .model("default/split", "default/wakwak")
            .expect("the example spec is valid")
    }

    fn now() -> Timestamp {
        NOW.parse().expect("timestamp")
    }

    fn seen<'a>(
        spec: &'a CredentialCutoverSpec,
        previous: &'a CredentialCutoverStatus,
    ) -> Observed<'a> {
        Observed {
            name: "split",
            spec,
            generation: Some(2),
            previous,
            deleting: None,
            now: now(),
        }
    }

    fn advance(phase: Phase) -> Advance {
        Advance::nothing_yet(phase, None)
    }

    fn checkpoint(phase: CheckpointPhase, done: i64, total: i64) -> Checkpoint {
        Checkpoint {
            cutover: "default/split".into(),
            phase,
            cursor: Some(done),
            done,
            total,
            started_at: now(),
            updated_at: now(),
            completed_at: None,
            retired_at: None,
        }
    }

    fn condition<'a>(d: &'a Decision, type_: &str) -> &'a Condition {
        crate::controller::status::expect_condition(&d.status.conditions, type_)
    }

    fn reasons(d: &Decision) -> Vec<&'static str> {
        d.notes.iter().map(|n| n.said.reason).collect()
    }

    /// Before `at` it is Scheduled: Ready (a steady state, kstatus
    /// Current) but not Complete, and looked at again exactly at `at`:
    /// never polled. The Event says it once.
    #[test]
    fn scheduled_waits_for_exactly_at_and_says_so_once() {
        let spec = spec();
        let previous = CredentialCutoverStatus::default();
        let mut adv = advance(Phase::Scheduled);
        adv.wait = Some(Duration::from_secs(3600));
        let counts = Counts {
            total: 12,
            already: 1,
        };
        let d = driven(seen(&spec, &previous), &model(), &adv, counts);
        assert_eq!(d.status.phase, Some(CutoverPhase::Scheduled));
        assert_eq!(d.requeue, Some(Duration::from_millis(3_600_010)));
        let ready = condition(&d, "Ready");
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::True, "Scheduled")
        );
        let complete = condition(&d, "Complete");
        assert_eq!(
            (complete.status, complete.reason.as_str()),
            (ConditionStatus::False, "Scheduled")
        );
        assert_eq!(condition(&d, "Reconciling").status, ConditionStatus::False);
        assert!(
            ready
                .message
                .contains("12 accounts in scope, 1 already split"),
            "{}",
            ready.message
        );
        assert_eq!(condition(&d, "Stalled").status, ConditionStatus::False);
        assert_eq!(d.status.progress, Some(Progress::new(1, 12)));
        assert_eq!(reasons(&d), ["CutoverScheduled"]);

        let again = driven(seen(&spec, &d.status), &model(), &adv, counts);
        assert!(again.notes.is_empty(), "{:?}", again.notes);
        assert_eq!(again.status, d.status, "nothing to write the second time");
    }

    /// Running: Reconciling with the backfill's progress from the
    /// checkpoint, an ETA from the measured rate, a Started Event on the
    /// first step and one per quarter of progress.
    #[test]
    fn running_reports_progress_eta_and_a_note_per_quarter() {
        let spec = spec();
        let previous = CredentialCutoverStatus {
            phase: Some(CutoverPhase::Scheduled),
            ..Default::default()
        };
        let mut adv = advance(Phase::Running);
        adv.started = true;
        adv.rate = Some(10.0);
        adv.checkpoint = Some(checkpoint(CheckpointPhase::Running, 30, 100));
        let counts = counts_from_checkpoint(&adv, &previous).expect("from the checkpoint");
        assert_eq!(counts.total, 100);
        let d = driven(seen(&spec, &previous), &model(), &adv, counts);
        assert_eq!(d.status.phase, Some(CutoverPhase::Running));
        assert_eq!(d.status.progress, Some(Progress::new(30, 100)));
        let reconciling = condition(&d, "Reconciling");
        assert_eq!(
            (reconciling.status, reconciling.reason.as_str()),
            (ConditionStatus::True, "Backfilling"),
            "kstatus: in progress"
        );
        assert_eq!(condition(&d, "Complete").status, ConditionStatus::False);
        assert_eq!(d.requeue, Some(Duration::from_millis(50)));
        // 70 accounts left at 10 per second.
        assert_eq!(
            d.status.eta,
            Some((now() + jiff::SignedDuration::from_secs(7)).to_string())
        );
        assert_eq!(reasons(&d), ["CutoverStarted", "BatchCommitted"]);

        let mut later = adv.clone();
        later.started = false;
        later.rate = None;
        later.checkpoint = Some(checkpoint(CheckpointPhase::Running, 40, 100));
        let d2 = driven(seen(&spec, &d.status), &model(), &later, counts);
        assert!(
            d2.notes.is_empty(),
            "still in the second quarter: {:?}",
            d2.notes
        );
        assert_eq!(d2.status.eta, d.status.eta, "no new rate: the ETA stands");
    }

    /// Suspended by spec or by an overrun window: Ready (it waits for
    /// ops, kstatus Current), not Reconciling, not Complete, and the
    /// message says how to resume.
    #[test]
    fn suspended_says_why_and_how_to_resume() {
        let mut spec = spec();
        let previous = CredentialCutoverStatus::default();
        let mut adv = advance(Phase::Suspended);
        adv.checkpoint = Some(checkpoint(CheckpointPhase::Running, 5, 10));
        let counts = Counts {
            total: 10,
            already: 0,
        };
        adv.window_exceeded = true;
        let d = driven(seen(&spec, &previous), &model(), &adv, counts);
        assert_eq!(d.status.phase, Some(CutoverPhase::Suspended));
        assert!(condition(&d, "Ready").message.contains("onWindowExceeded"));
        assert_eq!(condition(&d, "Ready").status, ConditionStatus::True);
        assert_eq!(condition(&d, "Reconciling").status, ConditionStatus::False);
        let complete = condition(&d, "Complete");
        assert_eq!(
            (complete.status, complete.reason.as_str()),
            (ConditionStatus::False, "Suspended")
        );
        assert_eq!(d.requeue, None, "waits for a change of spec");
        assert_eq!(reasons(&d), ["WindowExceeded"]);

        spec.suspend = true;
        adv.window_exceeded = false;
        let d = driven(seen(&spec, &previous), &model(), &adv, counts);
        assert!(
            condition(&d, "Ready")
                .message
                .contains("spec.suspend is true")
        );
    }

    /// Completed is Ready; the source is kept until retainSource passes,
    /// when the cutover is looked at again, and then reported retired.
    #[test]
    fn completed_is_ready_and_keeps_then_retires_the_source() {
        let spec = spec();
        let previous = CredentialCutoverStatus {
            phase: Some(CutoverPhase::Running),
            ..Default::default()
        };
        let mut adv = advance(Phase::Completed);
        adv.completed = true;
        adv.wait = Some(Duration::from_secs(60));
        let mut cp = checkpoint(CheckpointPhase::Completed, 12, 12);
        cp.completed_at = Some(now());
        adv.checkpoint = Some(cp.clone());
        let counts = Counts {
            total: 12,
            already: 12,
        };
        let d = driven(seen(&spec, &previous), &model(), &adv, counts);
        assert_eq!(d.status.phase, Some(CutoverPhase::Completed));
        assert_eq!(condition(&d, "Ready").status, ConditionStatus::True);
        assert!(condition(&d, "Ready").message.contains("kept for rollback"));
        let complete = condition(&d, "Complete");
        assert_eq!(
            (complete.status, complete.reason.as_str()),
            (ConditionStatus::True, "Completed")
        );
        assert_eq!(d.status.completed_at, Some(now().to_string()));
        assert_eq!(d.status.eta, None);
        assert_eq!(d.requeue, Some(Duration::from_millis(60_010)));
        assert_eq!(reasons(&d), ["CutoverCompleted"]);

        let mut retired = advance(Phase::Retired);
        retired.retired = true;
        cp.retired_at = Some(now());
        retired.checkpoint = Some(cp);
        let d = driven(seen(&spec, &d.status), &model(), &retired, counts);
        assert!(
            condition(&d, "Ready")
                .message
                .contains("source login retired")
        );
        assert_eq!(d.status.source_retired_at, Some(now().to_string()));
        assert_eq!(d.requeue, None, "nothing left to happen by itself");
        assert_eq!(reasons(&d), ["SourceRetired"]);
    }

    /// An invalid cutover is Failed and Stalled with every problem, keeps
    /// the rest of its status, and warns once per message.
    #[test]
    fn refused_is_failed_and_stalled_and_warns_once() {
        let spec = spec();
        let previous = CredentialCutoverStatus {
            already_split: Some(3),
            ..Default::default()
        };
        let problems = [
            Problem::new("spec.at", "not a timestamp"),
            Problem::new("spec.split.into[1]", "not a credential of the policy"),
        ];
        let d = refused(seen(&spec, &previous), &problems);
        assert_eq!(d.status.phase, Some(CutoverPhase::Failed));
        assert_eq!(d.status.already_split, Some(3));
        let stalled = condition(&d, "Stalled");
        assert_eq!(stalled.status, ConditionStatus::True);
        assert_eq!(
            stalled.message,
            "spec.at: not a timestamp; spec.split.into[1]: not a credential of the policy"
        );
        assert_eq!(condition(&d, "Ready").status, ConditionStatus::False);
        assert_eq!(condition(&d, "Complete").reason, "Failed");
        assert_eq!(reasons(&d), ["InvalidSpec"]);
        assert_eq!(d.requeue, None);
        let again = refused(seen(&spec, &d.status), &problems);
        assert!(again.notes.is_empty());
    }

    /// A held deletion says why it waits and gives the command that lets
    /// it go; an annotation that is neither choice is named; the Event is
    /// published once per reason.
    #[test]
    fn a_held_deletion_says_why_and_how_to_proceed() {
        let spec = spec();
        let previous = CredentialCutoverStatus::default();
        let s = seen(&spec, &previous);
        let waiting = held(s, Wait::Completion, None);
        assert_eq!(waiting.reason, "WaitingForCompletion");
        assert!(
            waiting
                .message
                .contains("kubectl annotate credentialcutover split credshift.dev/on-delete=Abort"),
            "{}",
            waiting.message
        );
        let retire = held(s, Wait::Retirement, Some("Never"));
        assert_eq!(retire.reason, "WaitingForRetirement");
        assert!(
            retire
                .message
                .starts_with("annotation credshift.dev/on-delete is \"Never\"")
        );
        assert!(retire.message.contains("=KeepSource"));
        let wrong = held(
            s,
            Wait::ChoiceDoesNotApply(RemovalChoice::Abort),
            Some("Abort"),
        );
        assert!(wrong.message.contains("Abort does not apply"));

        let mut adv = advance(Phase::Running);
        adv.checkpoint = Some(checkpoint(CheckpointPhase::Running, 1, 2));
        let deleting = Observed {
            deleting: Some(&waiting),
            ..s
        };
        let counts = Counts {
            total: 2,
            already: 0,
        };
        let d = driven(deleting, &model(), &adv, counts);
        let c = condition(&d, "Deleting");
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::True, "WaitingForCompletion")
        );
        assert!(held_note(&previous, &waiting).is_some());
        assert_eq!(held_note(&d.status, &waiting), None, "said once");
        assert!(
            held_note(&d.status, &retire).is_some(),
            "a new reason is said"
        );
    }
}
