//! The custom resources as the engine's declarations, for
//! [`crate::engine::assembly`]: every driver turns objects into realms
//! through [`assemble`].

use std::borrow::Borrow;

use kube::ResourceExt;

use super::{CredentialCutover, CredentialPolicy};
use crate::engine::assembly::{self, Assembly, CutoverDecl, Declared, ObjectKey, PolicyDecl};

/// The object's key; the namespace `default` when none is given (as
/// kubectl does for a file without one).
pub fn object_key<K: ResourceExt>(r: &K) -> ObjectKey {
    ObjectKey::new(
        r.namespace().unwrap_or_else(|| "default".into()),
        r.name_any(),
    )
}

pub fn declared_policy(p: &CredentialPolicy) -> Declared<PolicyDecl> {
    let key = object_key(p);
    let (model, problems) = p.spec.model_with_problems(&key.to_string());
    Declared {
        value: PolicyDecl {
            realm: p.spec.realm.clone(),
            model,
            problems,
        },
        created: p.creation_timestamp().map(|t| t.0),
        key,
    }
}

pub fn declared_cutover(c: &CredentialCutover) -> Declared<CutoverDecl> {
    let key = object_key(c);
    let policy = key.sibling(&c.spec.policy_ref.name);
    Declared {
        value: CutoverDecl {
            model: c.spec.model(&key.to_string(), &policy.to_string()),
            policy,
        },
        created: c.creation_timestamp().map(|t| t.0),
        key,
    }
}

/// The realms these objects make, and why the others take no part.
pub fn assemble<P: Borrow<CredentialPolicy>, C: Borrow<CredentialCutover>>(
    policies: &[P],
    cutovers: &[C],
) -> Assembly {
    assembly::assemble(
        policies
            .iter()
            .map(|p| declared_policy(p.borrow()))
            .collect(),
        cutovers
            .iter()
            .map(|c| declared_cutover(c.borrow()))
            .collect(),
    )
}
