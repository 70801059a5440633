//! Routing: which stored credential answers a verification for a purpose at
//! an instant, before, during and after a cutover.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::model::{Cutover, CutoverProgress, Policy};

/// Where verifications for one purpose go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The routed credential itself.
    Direct { credential: String },
    /// Before the cutover that creates `credential`: its source answers
    /// ("until Tue 2018-04-17: login password").
    Source {
        credential: String,
        source: String,
        cutover: String,
    },
    /// From the cutover's `at` until it completes: the target where the
    /// account has it, else the source.
    DualRead {
        credential: String,
        source: String,
        cutover: String,
    },
}

impl Route {
    /// The credential named in the policy's end state.
    pub fn credential(&self) -> &str {
        match self {
            Route::Direct { credential }
            | Route::Source { credential, .. }
            | Route::DualRead { credential, .. } => credential,
        }
    }

    /// The credential that answers for an account that has `has_target`.
    pub fn answering(&self, has_target: bool) -> &str {
        match self {
            Route::Direct { credential } => credential,
            Route::Source { source, .. } => source,
            Route::DualRead {
                credential, source, ..
            } => {
                if has_target {
                    credential
                } else {
                    source
                }
            }
        }
    }

    /// The credential a change (and its rules) applies to: the source before
    /// the cutover, the purpose's own credential from `at` on.
    pub fn governing(&self) -> &str {
        match self {
            Route::Direct { credential } | Route::DualRead { credential, .. } => credential,
            Route::Source { source, .. } => source,
        }
    }

    /// `Direct`, `Source` or `DualRead`, as status shows it.
    pub fn mode(&self) -> &'static str {
        match self {
            Route::Direct { .. } => "Direct",
            Route::Source { .. } => "Source",
            Route::DualRead { .. } => "DualRead",
        }
    }
}

/// The cutover (if any) that creates `credential`.
pub fn cutover_creating<'a>(
    cutovers: &'a [(Cutover, CutoverProgress)],
    credential: &str,
) -> Option<&'a (Cutover, CutoverProgress)> {
    cutovers
        .iter()
        .find(|(c, _)| c.into.iter().any(|t| t == credential))
}

/// The route of one credential at `now`.
pub fn route_for(
    credential: &str,
    cutovers: &[(Cutover, CutoverProgress)],
    now: Timestamp,
) -> Route {
    let creating = cutover_creating(cutovers, credential).map(|(c, p)| (c, *p));
    route_through(credential, creating, now)
}

/// The route of one credential at `now`, given the cutover that creates it
/// (if any) and how far that cutover got.
pub fn route_through(
    credential: &str,
    creating: Option<(&Cutover, CutoverProgress)>,
    now: Timestamp,
) -> Route {
    match creating {
        Some((_, CutoverProgress::Completed)) | None => Route::Direct {
            credential: credential.to_owned(),
        },
        Some((c, _)) if now < c.at => Route::Source {
            credential: credential.to_owned(),
            source: c.from.clone(),
            cutover: c.name.clone(),
        },
        Some((c, _)) => Route::DualRead {
            credential: credential.to_owned(),
            source: c.from.clone(),
            cutover: c.name.clone(),
        },
    }
}

/// Every purpose's route at `now`, given the policy's cutovers and how far each got.
pub fn effective_routing(
    policy: &Policy,
    cutovers: &[(Cutover, CutoverProgress)],
    now: Timestamp,
) -> BTreeMap<String, Route> {
    policy
        .purposes
        .iter()
        .map(|(purpose, credential)| (purpose.clone(), route_for(credential, cutovers, now)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::engine::model::WindowAction;

    fn wakwak() -> Policy {
        Policy {
            name: "isp/wakwak".into(),
            realm: "wakwak".into(),
            credentials: BTreeMap::new(),
            purposes: [
                ("support-portal", "support"),
                ("connection", "connection"),
                ("mail", "mail"),
                ("ftp", "ftp"),
            ]
            .into_iter()
            .map(|(p, c)| (p.to_owned(), c.to_owned()))
            .collect(),
        }
    }

    fn split_2018() -> Cutover {
        Cutover {
            name: "isp/split-2018".into(),
            policy: "isp/wakwak".into(),
            at: "2018-04-18T00:00:00+09:00".parse().unwrap(),
            window: Duration::from_secs(6 * 3600),
            on_window_exceeded: WindowAction::Continue,
            from: "login".into(),
            into: vec!["support".into(), "connection".into()],
            batch_size: 1000,
            suspend: false,
            retain_source: Duration::from_secs(30 * 86400),
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// "Until now, the password for logging in to Online Member Support and the
    /// password for the internet connection were one and the same login password."
    #[test]
    fn until_2018_04_17_one_login_password_answers_both() {
        let cutovers = [(split_2018(), CutoverProgress::NotStarted)];
        let r = effective_routing(&wakwak(), &cutovers, at("2018-04-17T23:59:59+09:00"));
        assert_eq!(r["support-portal"].answering(false), "login");
        assert_eq!(r["connection"].answering(false), "login");
        assert_eq!(r["support-portal"].mode(), "Source");
    }

    /// "It is now split into a member support password and a connection
    /// password, and each can be set to its own value." — from the instant on,
    /// a member's own target answers, else the old login password.
    #[test]
    fn from_2018_04_18_each_purpose_reads_its_own_credential_or_falls_back() {
        let cutovers = [(split_2018(), CutoverProgress::Running)];
        let r = effective_routing(&wakwak(), &cutovers, at("2018-04-18T00:00:00+09:00"));
        assert_eq!(r["support-portal"].answering(true), "support");
        assert_eq!(r["support-portal"].answering(false), "login");
        assert_eq!(r["connection"].answering(true), "connection");
        assert_eq!(r["connection"].mode(), "DualRead");
    }

    #[test]
    fn after_completion_only_the_targets_answer() {
        let cutovers = [(split_2018(), CutoverProgress::Completed)];
        let r = effective_routing(&wakwak(), &cutovers, at("2018-05-01T00:00:00Z"));
        assert_eq!(
            r["support-portal"],
            Route::Direct {
                credential: "support".into()
            }
        );
        assert_eq!(r["connection"].answering(false), "connection");
    }

    /// "The mail password and the FTP password are not affected."
    #[test]
    fn mail_and_ftp_passwords_are_not_affected() {
        for progress in [
            CutoverProgress::NotStarted,
            CutoverProgress::Running,
            CutoverProgress::Completed,
        ] {
            for t in [
                "2018-04-01T00:00:00Z",
                "2018-04-18T00:00:00+09:00",
                "2019-01-01T00:00:00Z",
            ] {
                let r = effective_routing(&wakwak(), &[(split_2018(), progress)], at(t));
                assert_eq!(
                    r["mail"],
                    Route::Direct {
                        credential: "mail".into()
                    }
                );
                assert_eq!(
                    r["ftp"],
                    Route::Direct {
                        credential: "ftp".into()
                    }
                );
            }
        }
    }
}
