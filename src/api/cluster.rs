//! `credshift serve --from-cluster`: the realms come from the
//! CredentialPolicy and CredentialCutover objects in the cluster, re-read
//! periodically; invalid objects, and policies whose realm belongs to an
//! older one, are skipped (the controller reports them).

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::{Api as KubeApi, ListParams};
use tracing::warn;

use super::Api;
use crate::engine::assembly::Standing;
use crate::engine::members::Realm;
use crate::resources::{CredentialCutover, CredentialPolicy, assemble};

/// Builds the realms from the cluster's objects ([`assemble`]); what takes
/// no part is logged (the controller reports it on the objects).
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
    let cutovers = cutovers.list(&ListParams::default()).await?.items;
    let assembly = assemble(&policies, &cutovers);
    for (key, standing) in &assembly.policies {
        match standing {
            Standing::InForce => {}
            Standing::Invalid(_) => warn!(policy = %key, "skipping an invalid CredentialPolicy"),
            Standing::RealmClaimed { message, .. } => {
                warn!(policy = %key, "skipping a CredentialPolicy: {message}")
            }
        }
    }
    for key in assembly.refused.keys() {
        tracing::debug!(cutover = %key, "skipping a CredentialCutover that cannot run");
    }
    Ok(assembly.realms)
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
