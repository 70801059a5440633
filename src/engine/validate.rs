//! What the schema cannot express: rules across fields and across objects.
//! A problem here makes the resource `Stalled` with a message a person can
//! act on; fixing the spec clears it.

use super::model::{Cutover, MIN_TEMP_PASSWORD_BITS, Policy, Problem, Recovery};

/// Checks a policy on its own.
pub fn validate_policy(policy: &Policy) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (purpose, credential) in &policy.purposes {
        if let Err(e) = crate::names::Name::parse(purpose) {
            problems.push(Problem::new(
                format!("spec.purposes[{purpose:?}]"),
                format!("purpose name {e}"),
            ));
        }
        if !policy.credentials.contains_key(credential) {
            problems.push(Problem::new(
                format!("spec.purposes.{purpose}"),
                format!("routes to credential {credential:?}, which is not in spec.credentials"),
            ));
        }
    }
    for (name, rules) in &policy.credentials {
        let field = format!("spec.credentials[{name}]");
        if rules.max_length < rules.min_length {
            problems.push(Problem::new(
                format!("{field}.rules"),
                "rules.maxLength must be at least rules.minLength",
            ));
        }
        if rules.hashing.memory_kib < 8 * rules.hashing.parallelism {
            problems.push(Problem::new(
                format!("{field}.hashing"),
                "hashing.memoryKiB must be at least 8 × parallelism",
            ));
        }
        // Zero would make every temporary password dead on arrival.
        if rules.temporary_ttl.is_zero() && !matches!(rules.recovery, Recovery::SelfService(_)) {
            problems.push(Problem::new(
                format!("{field}.recovery.helpdesk.ttl"),
                "must be longer than 0s",
            ));
        }
        if let Recovery::SelfService(s) = &rules.recovery {
            if !s.mail_body.contains("{{temporary_password}}") {
                problems.push(Problem::new(
                    format!("{field}.recovery.selfService.mail.body"),
                    "mail.body must contain {{temporary_password}}",
                ));
            }
            let field = format!("spec.credentials[{name}].recovery.selfService");
            let bits = s.entropy_bits();
            if bits < MIN_TEMP_PASSWORD_BITS {
                problems.push(Problem::new(
                    format!("{field}.temporaryPassword"),
                    format!(
                        "{} characters from an alphabet of {} give {bits:.0} bits of entropy; at least {MIN_TEMP_PASSWORD_BITS:.0} are required (raise length or alphabet)",
                        s.temp_length,
                        s.alphabet.len()
                    ),
                ));
            }
            let mut sorted = s.alphabet.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != s.alphabet.len() {
                problems.push(Problem::new(
                    format!("{field}.temporaryPassword.alphabet"),
                    "lists a character more than once",
                ));
            }
            if s.alphabet
                .iter()
                .any(|c| c.is_whitespace() || c.is_control())
            {
                problems.push(Problem::new(
                    format!("{field}.temporaryPassword.alphabet"),
                    "must not contain whitespace or control characters",
                ));
            }
            if s.ttl.is_zero() {
                problems.push(Problem::new(
                    format!("{field}.ttl"),
                    "must be longer than 0s",
                ));
            }
            if s.rate_limit_per.is_zero() {
                problems.push(Problem::new(
                    format!("{field}.rateLimit.per"),
                    "must be longer than 0s",
                ));
            }
        }
    }
    problems
}

/// Checks a cutover against its policy (`None`: not found) and the other
/// cutovers of the same policy.
pub fn validate_cutover(
    cutover: &Cutover,
    policy: Option<&Policy>,
    others: &[Cutover],
) -> Vec<Problem> {
    let Some(policy) = policy else {
        return vec![Problem::new(
            "spec.policyRef.name",
            format!("CredentialPolicy {:?} does not exist", cutover.policy),
        )];
    };
    let mut problems = Vec::new();
    if cutover.into.is_empty() {
        problems.push(Problem::new(
            "spec.split.into",
            "must name at least one credential",
        ));
    }
    if cutover
        .into
        .iter()
        .enumerate()
        .any(|(i, t)| cutover.into[..i].contains(t))
    {
        problems.push(Problem::new(
            "spec.split.into",
            "split.into must not contain duplicates",
        ));
    }
    if cutover.into.contains(&cutover.from) {
        problems.push(Problem::new(
            "spec.split.into",
            "split.into must not contain split.from",
        ));
    }
    if !policy.credentials.contains_key(&cutover.from) {
        problems.push(Problem::new(
            "spec.split.from",
            format!(
                "credential {:?} is not in CredentialPolicy {}'s spec.credentials",
                cutover.from, policy.name
            ),
        ));
    }
    for (i, target) in cutover.into.iter().enumerate() {
        if !policy.credentials.contains_key(target) {
            problems.push(Problem::new(
                format!("spec.split.into[{i}]"),
                format!(
                    "credential {target:?} is not in CredentialPolicy {}'s spec.credentials",
                    policy.name
                ),
            ));
        }
        if let Some(other) = others
            .iter()
            .find(|o| o.name != cutover.name && o.into.iter().any(|t| t == target))
        {
            problems.push(Problem::new(
                format!("spec.split.into[{i}]"),
                format!(
                    "credential {target:?} is already the target of CredentialCutover {}",
                    other.name
                ),
            ));
        }
    }
    problems
}
