//! `credshift serve --from-cluster`: the realms come from the
//! CredentialPolicy and CredentialCutover objects in the cluster, re-read
//! periodically; invalid objects, and policies whose realm belongs to an
//! older one, are skipped (the controller reports them).

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api as KubeApi, ListParams};
use kube::{Client, ResourceExt};
use tracing::warn;

use super::Api;
use crate::engine::members::Realm;
use crate::engine::model::CutoverProgress;
use crate::engine::validate::validate_cutover;
use crate::resources::realm_owner_check;
use crate::resources::{CredentialCutover, CredentialPolicy};

/// Builds the realms from the cluster's objects.
pub async fn load(client: &Client, namespace: Option<&str>) -> Result<Vec<Realm>, kube::Error> {
    let (policies, cutovers): (KubeApi<CredentialPolicy>, KubeApi<CredentialCutover>) =
        match namespace {
            Some(ns) => (
                KubeApi::namespaced(client.clone(), ns),
                KubeApi::namespaced(client.clone(), ns),
            ),
            None => (KubeApi::all(client.clone()), KubeApi::all(client.clone())),
        };
    let policies = policies.list(&ListParams::default()).await?.items;
    let mut cutovers = cutovers.list(&ListParams::default()).await?.items;
    cutovers.sort_by_key(|c| c.creation_timestamp());
    let mut realms = Vec::new();
    for p in &policies {
        let ns = p.namespace().unwrap_or_default();
        let key = format!("{ns}/{}", p.name_any());
        if let Err(message) = realm_owner_check(&policies, &p.spec.realm, &key) {
            warn!(policy = %key, "skipping a CredentialPolicy: {message}");
            continue;
        }
        let Ok(policy) = p.spec.model(&key) else {
            warn!(policy = %key, "skipping an invalid CredentialPolicy");
            continue;
        };
        let mut own: Vec<crate::engine::model::Cutover> = Vec::new();
        for c in cutovers.iter().filter(|c| {
            c.namespace().as_deref() == Some(ns.as_str()) && c.spec.policy_ref.name == p.name_any()
        }) {
            let Ok(m) = c.spec.model(&format!("{ns}/{}", c.name_any()), &key) else {
                continue;
            };
            if validate_cutover(&m, Some(&policy), &own).is_empty() {
                own.push(m);
            }
        }
        own.sort_by_key(|c| c.at);
        realms.push(Realm {
            policy,
            cutovers: own
                .into_iter()
                .map(|c| (c, CutoverProgress::NotStarted))
                .collect(),
        });
    }
    Ok(realms)
}

/// Keeps `api`'s realms in step with the cluster until the process ends.
pub async fn follow(api: Arc<Api>, client: Client, namespace: Option<String>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match load(&client, namespace.as_deref()).await {
            Ok(realms) => match super::with_known_splits(&api.store, realms, false).await {
                Ok(realms) => *api.realms.write().await = realms,
                Err(e) => {
                    warn!(error = %e, "cannot read the store's cutovers; keeping the last realms")
                }
            },
            Err(e) => {
                warn!(error = %e, "cannot refresh policies from the cluster; keeping the last ones")
            }
        }
    }
}
