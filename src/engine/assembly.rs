//! From declared resources to realms, one way for every driver (the
//! controller, `serve --from-cluster`, `plan`/`apply`): which policy owns
//! each realm, which cutovers take part in it, and in what order.
//!
//! One precedence rule settles every conflict: the **older declaration
//! wins** — the earlier creation time, then the smaller `namespace/name`
//! (files carry no creation time, so there names decide). A policy that
//! loses its realm, and a cutover that loses a target to an older cutover
//! of the same policy, take no part and say why; the rest assemble. Two
//! policies never constrain each other's cutovers: each realm has its own
//! credentials.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::Timestamp;

use super::members::Realm;
use super::model::{Cutover, CutoverProgress, Policy, Problem};
use super::ownership::{self, Claim};
use super::validate::validate_cutover;

/// The identity of a namespaced object, `namespace/name` when shown: how
/// the engine and the store name a policy or a cutover.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ObjectKey {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The object of that name in the same namespace (what a reference such
    /// as `spec.policyRef.name` points at).
    pub fn sibling(&self, name: &str) -> ObjectKey {
        ObjectKey::new(self.namespace.clone(), name)
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A declared object: its key, when it was created (`None`: not known, as
/// for files), and what it says.
#[derive(Debug, Clone)]
pub struct Declared<T> {
    pub key: ObjectKey,
    pub created: Option<Timestamp>,
    pub value: T,
}

impl<T> Declared<T> {
    /// The precedence rule: `Less` when `self` is the older declaration. An
    /// unknown creation time counts as older than any known one.
    pub fn precedence<U>(&self, other: &Declared<U>) -> Ordering {
        self.created
            .cmp(&other.created)
            .then_with(|| self.key.cmp(&other.key))
    }
}

/// A policy as declared. Its realm is claimed even when the rest of it is
/// invalid: ownership goes by age alone, so fixing a typo never moves a
/// realm from one policy to another.
#[derive(Debug, Clone)]
pub struct PolicyDecl {
    pub realm: String,
    /// As much of the policy as could be read, even when it has problems:
    /// its cutovers are still checked against it, so one round of fixes
    /// addresses everything.
    pub model: Policy,
    /// Why it cannot be carried out; empty when it can.
    pub problems: Vec<Problem>,
}

/// A cutover as declared: the policy it references and its model.
#[derive(Debug, Clone)]
pub struct CutoverDecl {
    pub policy: ObjectKey,
    pub model: Result<Cutover, Vec<Problem>>,
}

/// Where a policy stands once assembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// It owns its realm and is valid: its realm is assembled.
    InForce,
    /// Its spec cannot be carried out.
    Invalid(Vec<Problem>),
    /// An older policy owns its realm; `message` says which.
    RealmClaimed { owner: String, message: String },
}

/// The realms of the policies in force, and why every other object takes no part.
#[derive(Debug, Clone, Default)]
pub struct Assembly {
    /// One per policy in force; its cutovers ordered by `at`, their
    /// progress not read yet ([`Realm::with_progress`]).
    pub realms: Vec<Realm>,
    pub policies: BTreeMap<ObjectKey, Standing>,
    /// The problems of each cutover that takes no part.
    pub refused: BTreeMap<ObjectKey, Vec<Problem>>,
}

impl Assembly {
    /// The realm of the policy `key`, when it is in force.
    pub fn realm_of(&self, key: &ObjectKey) -> Option<&Realm> {
        let name = key.to_string();
        self.realms.iter().find(|r| r.policy.name == name)
    }

    /// The realm a cutover takes part in, with its model; `None` when it
    /// was refused (see [`Assembly::refused`]).
    pub fn cutover(&self, key: &ObjectKey) -> Option<(&Realm, &Cutover)> {
        let name = key.to_string();
        self.realms.iter().find_map(|r| {
            r.cutovers
                .iter()
                .find(|(c, _)| c.name == name)
                .map(|(c, _)| (r, c))
        })
    }
}

/// Assembles `policies` and `cutovers` (in any order) by the precedence rule.
pub fn assemble(
    policies: Vec<Declared<PolicyDecl>>,
    mut cutovers: Vec<Declared<CutoverDecl>>,
) -> Assembly {
    let keys: Vec<String> = policies.iter().map(|p| p.key.to_string()).collect();
    let claims: Vec<Claim<'_>> = policies
        .iter()
        .zip(&keys)
        .map(|(p, key)| Claim {
            realm: &p.value.realm,
            policy: key,
            created: p.created,
        })
        .collect();
    let mut out = Assembly::default();
    let mut in_force: Vec<Policy> = Vec::new();
    for (p, key) in policies.iter().zip(&keys) {
        let standing = match (
            p.value.problems.is_empty(),
            ownership::check(&p.value.realm, key, &claims),
        ) {
            (false, _) => Standing::Invalid(p.value.problems.clone()),
            (true, Err(owner)) => Standing::RealmClaimed {
                owner: owner.to_owned(),
                message: ownership::not_owner_message(&p.value.realm, owner),
            },
            (true, Ok(())) => {
                in_force.push(p.value.model.clone());
                Standing::InForce
            }
        };
        out.policies.insert(p.key.clone(), standing);
    }

    cutovers.sort_by(|a, b| a.precedence(b));
    let mut accepted: BTreeMap<ObjectKey, Vec<Cutover>> = BTreeMap::new();
    for c in cutovers {
        let mut problems = Vec::new();
        let policy = policies
            .iter()
            .find(|p| p.key == c.value.policy)
            .map(|p| &p.value.model);
        match out.policies.get(&c.value.policy) {
            Some(Standing::InForce) | None => {}
            Some(Standing::Invalid(_)) => {
                problems.push(Problem::new(
                    "spec.policyRef.name",
                    format!(
                        "CredentialPolicy {} is invalid; see its Stalled condition",
                        c.value.policy.name
                    ),
                ));
            }
            // A cutover of a policy that does not own its realm must not touch it.
            Some(Standing::RealmClaimed { message, .. }) => {
                problems.push(Problem::new("spec.policyRef.name", message.clone()));
            }
        }
        match &c.value.model {
            Err(p) => problems.extend(p.iter().cloned()),
            Ok(model) => {
                let earlier = accepted.entry(c.value.policy.clone()).or_default();
                // Its own problems are reported even when its policy is out
                // of force; it joins only when it has none.
                problems.extend(validate_cutover(model, policy, earlier));
                if problems.is_empty() {
                    earlier.push(model.clone());
                }
            }
        }
        if !problems.is_empty() {
            out.refused.insert(c.key, problems);
        }
    }

    out.realms = in_force
        .into_iter()
        .map(|policy| {
            let key = policy.name.clone();
            let mut own: Vec<(Cutover, CutoverProgress)> = accepted
                .iter()
                .filter(|(k, _)| k.to_string() == key)
                .flat_map(|(_, cs)| cs.iter().cloned())
                .map(|c| (c, CutoverProgress::NotStarted))
                .collect();
            own.sort_by(|(a, _), (b, _)| a.at.cmp(&b.at).then_with(|| a.name.cmp(&b.name)));
            Realm {
                policy,
                cutovers: own,
            }
        })
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::engine::model::{CredentialRules, WindowAction};

    fn at(s: &str) -> Option<Timestamp> {
        Some(s.parse().expect("timestamp"))
    }

    fn rules() -> CredentialRules {
        CredentialRules {
            hashing: crate::hashing::Argon2Params {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            min_length: 8,
            max_length: 128,
            not_login_id: true,
            blocklist: true,
            history_depth: 0,
            change_via: ["portal".to_owned()].into(),
            recovery: crate::engine::model::Recovery::Helpdesk,
            temporary_ttl: Duration::from_secs(3600),
        }
    }

    fn policy(
        ns: &str,
        name: &str,
        realm: &str,
        created: Option<Timestamp>,
    ) -> Declared<PolicyDecl> {
        let key = ObjectKey::new(ns, name);
        let credentials: BTreeMap<String, CredentialRules> = ["login", "support", "connection"]
            .into_iter()
            .map(|c| (c.to_owned(), rules()))
            .collect();
        Declared {
            value: PolicyDecl {
                realm: realm.to_owned(),
                model: Policy {
                    name: key.to_string(),
                    realm: realm.to_owned(),
                    credentials,
                    purposes: [("support-portal".to_owned(), "support".to_owned())].into(),
                },
                problems: Vec::new(),
            },
            key,
            created,
        }
    }

    fn cutover(
        ns: &str,
        name: &str,
        policy: &str,
        into: &[&str],
        created: Option<Timestamp>,
    ) -> Declared<CutoverDecl> {
        let key = ObjectKey::new(ns, name);
        let policy = key.sibling(policy);
        Declared {
            value: CutoverDecl {
                model: Ok(Cutover {
                    name: key.to_string(),
                    policy: policy.to_string(),
                    at: "2018-04-18T00:00:00+09:00".parse().expect("at"),
                    window: Duration::from_secs(3600),
                    on_window_exceeded: WindowAction::Continue,
                    from: "login".into(),
                    into: into.iter().map(|s| (*s).to_owned()).collect(),
                    batch_size: 1000,
                    suspend: false,
                    retain_source: Duration::ZERO,
                }),
                policy,
            },
            key,
            created,
        }
    }

    /// Two cutovers created in the same second (one `kubectl apply -f dir`)
    /// that split into the same credential: the smaller name wins and the
    /// other is refused naming it, whatever order they are listed in; they
    /// never both block each other.
    #[test]
    fn same_second_cutovers_are_ordered_by_name() {
        let t = at("2026-12-03T10:00:00Z");
        for order in [["a", "b"], ["b", "a"]] {
            let cutovers = order
                .iter()
                .map(|n| cutover("isp", &format!("split-{n}"), "wakwak", &["support"], t))
                .collect();
            let a = assemble(vec![policy("isp", "wakwak", "wakwak", t)], cutovers);
            let realm = a
                .realm_of(&ObjectKey::new("isp", "wakwak"))
                .expect("in force");
            assert_eq!(realm.cutovers.len(), 1);
            assert_eq!(realm.cutovers[0].0.name, "isp/split-a");
            let refused = &a.refused[&ObjectKey::new("isp", "split-b")];
            assert!(
                refused[0]
                    .message
                    .contains("already the target of CredentialCutover isp/split-a"),
                "{refused:?}"
            );
        }
    }

    /// An older cutover keeps its target even when its name sorts later.
    #[test]
    fn the_older_cutover_wins_whatever_its_name() {
        let a = assemble(
            vec![policy(
                "isp",
                "wakwak",
                "wakwak",
                at("2026-01-01T00:00:00Z"),
            )],
            vec![
                cutover(
                    "isp",
                    "zz-old",
                    "wakwak",
                    &["support"],
                    at("2026-01-01T00:00:00Z"),
                ),
                cutover(
                    "isp",
                    "aa-new",
                    "wakwak",
                    &["support"],
                    at("2026-06-01T00:00:00Z"),
                ),
            ],
        );
        assert!(a.cutover(&ObjectKey::new("isp", "zz-old")).is_some());
        assert!(a.refused.contains_key(&ObjectKey::new("isp", "aa-new")));
    }

    /// Two policies (two realms) may each split into a credential of the
    /// same name: each realm has its own credentials.
    #[test]
    fn two_policies_split_into_the_same_credential_name_independently() {
        let a = assemble(
            vec![
                policy("isp", "wakwak", "wakwak", None),
                policy("isp", "other", "other", None),
            ],
            vec![
                cutover("isp", "split-wakwak", "wakwak", &["support"], None),
                cutover("isp", "split-other", "other", &["support"], None),
            ],
        );
        assert!(a.refused.is_empty(), "{:?}", a.refused);
        assert_eq!(a.realms.iter().map(|r| r.cutovers.len()).sum::<usize>(), 2);
    }

    /// A later policy for a realm is not in force, and its cutovers take no part.
    #[test]
    fn a_realm_claimed_by_an_older_policy_assembles_only_the_owner() {
        let a = assemble(
            vec![
                policy("isp", "wakwak", "wakwak", at("2026-01-01T00:00:00Z")),
                policy("aaa", "evil", "wakwak", at("2026-06-01T00:00:00Z")),
            ],
            vec![cutover("aaa", "split", "evil", &["support"], None)],
        );
        assert_eq!(a.realms.len(), 1);
        assert!(matches!(
            &a.policies[&ObjectKey::new("aaa", "evil")],
            Standing::RealmClaimed { owner, .. } if owner == "isp/wakwak"
        ));
        let refused = &a.refused[&ObjectKey::new("aaa", "split")];
        assert_eq!(refused[0].field, "spec.policyRef.name");
    }

    /// A cutover of an invalid or missing policy is refused naming the reference.
    #[test]
    fn a_cutover_of_an_invalid_or_missing_policy_is_refused() {
        let mut invalid = policy("isp", "wakwak", "wakwak", None);
        invalid.value.problems = vec![Problem::new("spec.purposes", "bad")];
        let a = assemble(
            vec![invalid],
            vec![
                cutover("isp", "split", "wakwak", &["support"], None),
                cutover("isp", "orphan", "nobody", &["support"], None),
            ],
        );
        assert!(a.realms.is_empty());
        assert!(
            a.refused[&ObjectKey::new("isp", "split")][0]
                .message
                .contains("is invalid")
        );
        assert!(
            a.refused[&ObjectKey::new("isp", "orphan")][0]
                .message
                .contains("does not exist")
        );
    }
}
