//! The pure step of reconciling a policy: from its standing in the
//! assembly, the effective routing and the store's counts to the next
//! status, its Events and when to look again. No I/O and no clock of its
//! own, so each condition is tested here without a cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use crate::controller::status::{Kstatus, Note, Said, find, stalled_with};
use crate::engine::members::unheld_in;
use crate::engine::model::{Cutover, CutoverProgress};
use crate::engine::routing::Route;
use crate::resources::{
    Condition, ConditionStatus, CredentialCount, CredentialPolicyStatus, RecoveryStatus,
    RouteStatus,
};

/// How often an in-force policy's status is refreshed when nothing
/// changes (counts drift as members come and go).
pub const REFRESH: Duration = Duration::from_secs(60);
/// How often a policy whose realm another policy owns looks again, to take
/// over once the owner is gone.
pub const CLAIM_RETRY: Duration = Duration::from_secs(10);

/// What a decision starts from, besides what was read.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub generation: Option<i64>,
    pub previous: &'a CredentialPolicyStatus,
    pub now: Timestamp,
}

/// What a policy reconcile decided.
pub type Decision = crate::controller::status::Decision<CredentialPolicyStatus>;

/// Why a policy is not in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its spec has problems: it waits for a change.
    InvalidSpec,
    /// An earlier policy owns its realm: it changes nothing there, shows
    /// no routing or counts, and looks again now and then.
    RealmClaimed,
}

/// A policy that is not in force: not Ready and Stalled with `message`;
/// the Event once per message.
pub fn refused(seen: Observed<'_>, why: Refusal, message: &str) -> Decision {
    let (reason, base, requeue) = match why {
        Refusal::InvalidSpec => ("InvalidSpec", seen.previous.clone(), None),
        Refusal::RealmClaimed => (
            "RealmClaimed",
            CredentialPolicyStatus::default(),
            Some(CLAIM_RETRY),
        ),
    };
    let kstatus = Kstatus {
        ready: false,
        why: Said::new(reason, format!("not in force: {message}")),
        reconciling: None,
        stalled: Some(Said::new(reason, message)),
    };
    let notes = if stalled_with(&seen.previous.conditions, message) {
        Vec::new()
    } else {
        vec![Note::warning("Validate", reason, message)]
    };
    Decision {
        status: CredentialPolicyStatus {
            observed_generation: seen.generation,
            conditions: kstatus.conditions(
                &seen.previous.conditions,
                seen.generation,
                Vec::new(),
                seen.now,
            ),
            ..base
        },
        notes,
        requeue,
    }
}

/// What was read for a policy in force.
#[derive(Debug, Clone)]
pub struct InForce<'a> {
    pub realm: &'a str,
    /// purpose → route, now.
    pub routing: &'a BTreeMap<String, Route>,
    /// The realm's cutovers, declared or remembered, and how far each got.
    pub cutovers: &'a [(Cutover, CutoverProgress)],
    /// Members holding each credential of the policy.
    pub counts: Vec<CredentialCount>,
    /// Members in the realm.
    pub accounts: i64,
    pub recovery: RecoveryStatus,
}

/// A policy in force: Ready with its routing; `CredentialsHeld` False,
/// with the count, for each purpose routed straight to a credential some
/// members lack; looked at again when routing next switches by itself.
pub fn in_force(seen: Observed<'_>, read: InForce<'_>) -> Decision {
    let summary = read
        .routing
        .iter()
        .map(|(purpose, route)| format!("{purpose}→{}", route.answering(false)))
        .collect::<Vec<_>>()
        .join(", ");
    let kstatus = Kstatus {
        ready: true,
        why: Said::new(
            "InForce",
            format!(
                "{} accounts in realm {}; routing {summary}",
                read.accounts, read.realm
            ),
        ),
        reconciling: None,
        stalled: None,
    };
    let held = credentials_held(read.routing, &read.counts, read.accounts);
    let status = CredentialPolicyStatus {
        observed_generation: seen.generation,
        conditions: kstatus.conditions(
            &seen.previous.conditions,
            seen.generation,
            vec![held],
            seen.now,
        ),
        routing: read
            .routing
            .iter()
            .map(|(purpose, route)| route_status(purpose, route))
            .collect(),
        credentials: read.counts,
        accounts: Some(read.accounts),
        recovery: Some(read.recovery),
    };
    let was_ready =
        find(&seen.previous.conditions, "Ready").is_some_and(|c| c.status == ConditionStatus::True);
    let notes = if was_ready {
        Vec::new()
    } else {
        vec![Note::normal(
            "Validate",
            "InForce",
            format!("policy in force for realm {}", read.realm),
        )]
    };
    // Routing changes at the next pending cutover's instant.
    let next_switch = read
        .cutovers
        .iter()
        .filter(|(c, p)| *p == CutoverProgress::NotStarted && c.at > seen.now)
        .map(|(c, _)| c.at.duration_since(seen.now).unsigned_abs())
        .min();
    Decision {
        status,
        notes,
        requeue: Some(next_switch.map_or(REFRESH, |d| d.min(REFRESH) + Duration::from_millis(10))),
    }
}

/// The `CredentialsHeld` condition: False, with the count of accounts, for
/// each purpose routed straight to a credential some accounts lack and no
/// cutover creates (those members are denied on it), else True.
fn credentials_held(
    routing: &BTreeMap<String, Route>,
    counts: &[CredentialCount],
    accounts: i64,
) -> Condition {
    let held: BTreeMap<String, i64> = counts
        .iter()
        .map(|c| (c.name.clone(), c.accounts))
        .collect();
    let unheld = unheld_in(routing, &held, accounts);
    if unheld.is_empty() {
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
    }
}

fn route_status(purpose: &str, route: &Route) -> RouteStatus {
    let (source, cutover) = match route {
        Route::Direct { .. } => (None, None),
        Route::Source {
            source, cutover, ..
        }
        | Route::DualRead {
            source, cutover, ..
        } => (Some(source.clone()), Some(cutover.clone())),
    };
    RouteStatus {
        purpose: purpose.to_owned(),
        credential: route.answering(true).to_owned(),
        mode: route.mode().to_owned(),
        source,
        cutover,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::routing::effective_routing;

    fn now() -> Timestamp {
        "2018-04-17T12:00:00+09:00".parse().expect("timestamp")
    }

    /// The example policy and its cutover, as the engine sees them.
    fn example() -> (crate::engine::model::Policy, Cutover) {
        let policy: crate::resources::CredentialPolicy =
            serde_saphyr::from_str(include_str!("../../../examples/2018-split/policy.yaml"))
                .expect("the example policy parses");
        let cutover: crate::resources::CredentialCutover =
            serde_saphyr::from_str(include_str!("../../../examples/2018-split/cutover.yaml"))
                .expect("the example cutover parses");
        (
            policy.spec.model("default/wakwak").expect("valid policy"),
            cutover
                .spec
                .model("default/split-login-2018", "default/wakwak")
                .expect("valid cutover"),
        )
    }

    /// The six demo members' credentials, `support` and `connection` held
    /// by as many as given. Mail and FTP passwords are untouched: every
    /// member keeps them.
    fn six_members(support: i64, connection: i64) -> Vec<CredentialCount> {
        [
            ("login", 6),
            ("support", support),
            ("connection", connection),
            ("mail", 6),
            ("ftp", 6),
        ]
        .into_iter()
        .map(|(name, accounts)| CredentialCount {
            name: name.into(),
            accounts,
        })
        .collect()
    }

    fn condition<'a>(d: &'a Decision, type_: &str) -> &'a Condition {
        crate::controller::status::expect_condition(&d.status.conditions, type_)
    }

    /// The decision for the six demo members, `support` and `connection`
    /// held by as many as given.
    fn decide_for_six(
        previous: &CredentialPolicyStatus,
        policy: &crate::engine::model::Policy,
        cutovers: &[(Cutover, CutoverProgress)],
        (support, connection): (i64, i64),
    ) -> Decision {
        let routing = effective_routing(policy, cutovers, now());
        in_force(
            seen(previous),
            InForce {
                realm: &policy.realm,
                routing: &routing,
                cutovers,
                counts: six_members(support, connection),
                accounts: 6,
                recovery: RecoveryStatus::default(),
            },
        )
    }

    fn seen(previous: &CredentialPolicyStatus) -> Observed<'_> {
        Observed {
            generation: Some(1),
            previous,
            now: now(),
        }
    }

    /// Until Tue 2018-04-17 the support portal and the connection answer
    /// with the login password: the policy is Ready, every credential it
    /// routes to is held, and it looks again exactly when the split starts.
    #[test]
    fn before_the_split_purposes_answer_with_login_and_the_switch_is_awaited() {
        let (policy, cutover) = example();
        let cutovers = [(cutover.clone(), CutoverProgress::NotStarted)];
        let previous = CredentialPolicyStatus::default();
        let d = decide_for_six(&previous, &policy, &cutovers, (0, 0));
        assert_eq!(condition(&d, "Ready").status, ConditionStatus::True);
        let held = condition(&d, "CredentialsHeld");
        assert_eq!(held.status, ConditionStatus::True, "{}", held.message);
        let portal = d
            .status
            .routing
            .iter()
            .find(|r| r.purpose == "support-portal")
            .expect("support-portal routed");
        assert_eq!(
            (portal.mode.as_str(), portal.source.as_deref()),
            ("Source", Some("login"))
        );
        let until_split = cutover.at.duration_since(now()).unsigned_abs();
        assert_eq!(
            d.requeue,
            Some(until_split.min(REFRESH) + Duration::from_millis(10))
        );
        assert_eq!(d.notes.len(), 1, "InForce said once");
        let again = decide_for_six(&d.status, &policy, &cutovers, (0, 0));
        assert!(again.notes.is_empty());
        assert_eq!(again.status, d.status, "nothing to write the second time");
    }

    /// Without its cutover the end state routes the portal straight to
    /// `support`, which no account holds: CredentialsHeld is False with
    /// the count of members who would be denied.
    #[test]
    fn a_purpose_routed_to_a_credential_members_lack_is_counted() {
        let (policy, _) = example();
        let previous = CredentialPolicyStatus::default();
        let d = decide_for_six(&previous, &policy, &[], (2, 0));
        let held = condition(&d, "CredentialsHeld");
        assert_eq!(
            (held.status, held.reason.as_str()),
            (ConditionStatus::False, "CredentialsLacking")
        );
        assert!(
            held.message.contains("credential support, which 4 of 6")
                && held.message.contains("credential connection, which 6 of 6")
                && !held.message.contains("mail"),
            "{}",
            held.message
        );
        assert_eq!(d.requeue, Some(REFRESH), "no switch pending");
    }

    /// An invalid policy keeps what its status showed, says every problem
    /// once, and waits for a change; a second claim on a realm shows no
    /// routing or counts and looks again now and then.
    #[test]
    fn refused_policies_stall_once_and_a_second_claim_shows_nothing() {
        let previous = CredentialPolicyStatus {
            accounts: Some(6),
            ..Default::default()
        };
        let d = refused(seen(&previous), Refusal::InvalidSpec, "spec.realm: empty");
        assert_eq!(d.status.accounts, Some(6));
        assert_eq!(condition(&d, "Stalled").status, ConditionStatus::True);
        assert_eq!(
            condition(&d, "Ready").message,
            "not in force: spec.realm: empty"
        );
        assert_eq!(d.requeue, None);
        assert_eq!(d.notes.len(), 1);
        let again = refused(seen(&d.status), Refusal::InvalidSpec, "spec.realm: empty");
        assert!(again.notes.is_empty());

        let claimed = refused(seen(&previous), Refusal::RealmClaimed, "owned by default/a");
        assert_eq!(claimed.status.accounts, None);
        assert_eq!(claimed.requeue, Some(CLAIM_RETRY));
        assert_eq!(claimed.notes[0].said.reason, "RealmClaimed");
    }
}
