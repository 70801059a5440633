//! From custom resources to the engine's plain model. Parsing that the
//! schema could not do (instants, durations) fails here with the field named.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::{CredentialCutoverSpec, CredentialPolicySpec, RecoveryMode};
use crate::engine::model::{
    self, CredentialRules, Cutover, Policy, Problem, Recovery, SelfService,
};
use crate::hashing::Argon2Params;

/// How long a help-desk temporary password works when the policy does not say.
const DEFAULT_TEMPORARY_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl CredentialPolicySpec {
    /// The engine's view of this policy, named `name`.
    pub fn model(&self, name: &str) -> Result<Policy, Vec<Problem>> {
        let (policy, problems) = self.model_with_problems(name);
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(problems)
        }
    }

    /// The model as far as it can be built, and what is wrong with the spec.
    /// A cutover is still checked against the credential names of an invalid policy.
    pub fn model_with_problems(&self, name: &str) -> (Policy, Vec<Problem>) {
        let mut problems = Vec::new();
        let mut credentials = BTreeMap::new();
        for c in &self.credentials {
            let field = format!("spec.credentials[{}]", c.name);
            let recovery = match c.recovery.mode {
                RecoveryMode::Helpdesk => Recovery::Helpdesk,
                RecoveryMode::None => Recovery::None,
                RecoveryMode::SelfService => match &c.recovery.self_service {
                    None => {
                        problems.push(Problem::new(
                            format!("{field}.recovery.selfService"),
                            "is required when recovery.mode is SelfService",
                        ));
                        Recovery::None
                    }
                    Some(s) => {
                        let mut duration = |d: &super::GoDuration, what: &str| {
                            d.parse().unwrap_or_else(|e| {
                                problems.push(Problem::new(
                                    format!("{field}.recovery.selfService.{what}"),
                                    e.to_string(),
                                ));
                                std::time::Duration::ZERO
                            })
                        };
                        let ttl = duration(&s.ttl, "ttl");
                        let per = duration(&s.rate_limit.per, "rateLimit.per");
                        Recovery::SelfService(SelfService {
                            temp_length: s.temporary_password.length,
                            alphabet: s.temporary_password.alphabet.chars().collect(),
                            ttl,
                            rate_limit_requests: s.rate_limit.requests,
                            rate_limit_per: per,
                            mail_from: s.mail.from.clone(),
                            mail_subject: s.mail.subject.clone(),
                            mail_body: s.mail.body.clone(),
                        })
                    }
                },
            };
            let helpdesk_ttl = match &c.recovery.helpdesk {
                None => DEFAULT_TEMPORARY_TTL,
                Some(h) => h.ttl.parse().unwrap_or_else(|e| {
                    problems.push(Problem::new(
                        format!("{field}.recovery.helpdesk.ttl"),
                        e.to_string(),
                    ));
                    std::time::Duration::ZERO
                }),
            };
            // A mailed one lives as long as its ticket; the help desk's as its own setting.
            let temporary_ttl = match &recovery {
                Recovery::SelfService(s) => s.ttl,
                _ => helpdesk_ttl,
            };
            let rules = CredentialRules {
                hashing: Argon2Params {
                    memory_kib: c.hashing.memory_kib,
                    iterations: c.hashing.iterations,
                    parallelism: c.hashing.parallelism,
                },
                min_length: c.rules.min_length,
                max_length: c.rules.max_length,
                not_login_id: c.rules.not_login_id,
                blocklist: c.rules.blocklist,
                history_depth: c.rules.history_depth,
                change_via: c.change_via.iter().cloned().collect(),
                recovery,
                temporary_ttl,
            };
            if credentials.insert(c.name.clone(), rules).is_some() {
                problems.push(Problem::new(field, "is listed twice"));
            }
        }
        let policy = Policy {
            name: name.to_owned(),
            realm: self.realm.clone(),
            credentials,
            purposes: self.purposes.clone(),
        };
        problems.extend(crate::engine::validate::validate_policy(&policy));
        (policy, problems)
    }
}

impl CredentialCutoverSpec {
    /// The engine's view of this cutover, named `name`, for policy `policy`.
    pub fn model(&self, name: &str, policy: &str) -> Result<Cutover, Vec<Problem>> {
        let mut problems = Vec::new();
        let at = self.at.parse::<Timestamp>().unwrap_or_else(|e| {
            problems.push(Problem::new(
                "spec.at",
                format!("{:?} is not an RFC 3339 instant with offset, like 2018-04-18T00:00:00+09:00: {e}", self.at),
            ));
            Timestamp::UNIX_EPOCH
        });
        let mut duration = |d: &super::GoDuration, field: &str| {
            d.parse().unwrap_or_else(|e| {
                problems.push(Problem::new(field, e.to_string()));
                std::time::Duration::ZERO
            })
        };
        let window = duration(&self.window, "spec.window");
        let retain_source = duration(&self.retain_source, "spec.retainSource");
        if window.is_zero() && problems.is_empty() {
            problems.push(Problem::new("spec.window", "must be longer than 0s"));
        }
        let cutover = Cutover {
            name: name.to_owned(),
            policy: policy.to_owned(),
            at,
            window,
            on_window_exceeded: match self.on_window_exceeded {
                super::WindowAction::Continue => model::WindowAction::Continue,
                super::WindowAction::Suspend => model::WindowAction::Suspend,
            },
            from: self.split.from.clone(),
            into: self.split.into.clone(),
            batch_size: self.batch_size.clamp(1, 10_000),
            suspend: self.suspend,
            retain_source,
        };
        if problems.is_empty() {
            Ok(cutover)
        } else {
            Err(problems)
        }
    }
}
