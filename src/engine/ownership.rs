//! Which CredentialPolicy a realm belongs to.
//!
//! A realm's members, routing and recovery must answer to one policy, or
//! whoever may create resources in any namespace could declare a second
//! policy for an existing realm and loosen it (who may change a password,
//! self-service recovery with their own mail, a cutover that retires the
//! source at once). The rule is the one Kubernetes uses for conflicting
//! claims (Gateway API listeners, for one): the **oldest** claim wins —
//! the earliest creation time, then the smaller `namespace/name`. A later
//! claim is not in force and says so; it cannot displace the owner, and it
//! takes over only once the owner is deleted.

use jiff::Timestamp;

/// One policy's claim on a realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim<'a> {
    pub realm: &'a str,
    /// `namespace/name` of the policy.
    pub policy: &'a str,
    /// When the policy was created (`None`: not known, as for files; such a
    /// claim counts as older than any dated one, and ties go by name).
    pub created: Option<Timestamp>,
}

/// The owner of `realm` among `claims`: the `namespace/name` of the oldest.
pub fn owner<'a>(realm: &str, claims: &[Claim<'a>]) -> Option<&'a str> {
    claims
        .iter()
        .filter(|c| c.realm == realm)
        .min_by(|a, b| a.created.cmp(&b.created).then(a.policy.cmp(b.policy)))
        .map(|c| c.policy)
}

/// Whether `policy`'s claim on `realm` is the one in force; `Err` names the owner.
pub fn check<'a>(realm: &str, policy: &str, claims: &[Claim<'a>]) -> Result<(), &'a str> {
    match owner(realm, claims) {
        Some(o) if o != policy => Err(o),
        _ => Ok(()),
    }
}

/// The message a policy that does not own its realm carries.
pub fn not_owner_message(realm: &str, owner: &str) -> String {
    format!(
        "realm {realm:?} belongs to CredentialPolicy {owner} (the oldest claim on it); \
         this one is not in force until that one is deleted"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Option<Timestamp> {
        Some(s.parse().expect("timestamp"))
    }

    #[test]
    fn the_oldest_claim_owns_the_realm_and_a_later_one_cannot_displace_it() {
        let claims = [
            Claim {
                realm: "wakwak",
                policy: "isp/wakwak",
                created: at("2018-01-01T00:00:00Z"),
            },
            Claim {
                realm: "wakwak",
                policy: "aaa/evil",
                created: at("2026-12-01T00:00:00Z"),
            },
            Claim {
                realm: "other",
                policy: "aaa/evil2",
                created: at("2026-12-01T00:00:00Z"),
            },
        ];
        assert_eq!(owner("wakwak", &claims), Some("isp/wakwak"));
        assert_eq!(check("wakwak", "aaa/evil", &claims), Err("isp/wakwak"));
        assert_eq!(check("wakwak", "isp/wakwak", &claims), Ok(()));
        assert_eq!(check("other", "aaa/evil2", &claims), Ok(()));
        assert_eq!(owner("none", &claims), None);
    }

    #[test]
    fn claims_of_the_same_second_go_by_name_whatever_the_list_order() {
        let a = Claim {
            realm: "r",
            policy: "b/x",
            created: at("2026-01-01T00:00:00Z"),
        };
        let b = Claim {
            realm: "r",
            policy: "a/y",
            created: at("2026-01-01T00:00:00Z"),
        };
        assert_eq!(owner("r", &[a.clone(), b.clone()]), Some("a/y"));
        assert_eq!(owner("r", &[b, a]), Some("a/y"));
    }

    #[test]
    fn once_the_owner_is_gone_the_next_oldest_takes_over() {
        let claims = [
            Claim {
                realm: "r",
                policy: "n/second",
                created: at("2026-02-01T00:00:00Z"),
            },
            Claim {
                realm: "r",
                policy: "n/third",
                created: at("2026-03-01T00:00:00Z"),
            },
        ];
        assert_eq!(owner("r", &claims), Some("n/second"));
    }

    #[test]
    fn the_message_names_realm_and_owner() {
        let m = not_owner_message("wakwak", "isp/wakwak");
        assert!(m.contains("\"wakwak\"") && m.contains("isp/wakwak"), "{m}");
    }
}
