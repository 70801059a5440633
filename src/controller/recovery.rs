//! The leader's recovery duties: deliver the outbox over SMTP with retry and
//! backoff, expire and purge tickets, and tell ops when mail fails.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use tracing::warn;

use super::Context;
use super::status::event;
use crate::engine::members::Realm;
use crate::engine::outbox::{Transport, deliver_due};
use crate::hashing::Sealer;

/// How often the outbox and the tickets are looked at.
const PERIOD: Duration = Duration::from_secs(2);
/// How long closed tickets are kept for the record before they are purged.
const KEEP_CLOSED_TICKETS: Duration = Duration::from_secs(7 * 86_400);

/// Runs until aborted with the other leader tasks.
pub async fn sweep_and_deliver(ctx: Arc<Context>, delivery: Option<(Transport, Sealer)>) {
    loop {
        let now = Timestamp::now();
        match ctx.store.sweep_tickets(now, KEEP_CLOSED_TICKETS).await {
            Ok((expired, purged)) => {
                ctx.metrics.tickets("expired", expired);
                ctx.metrics.tickets("purged", purged);
            }
            Err(e) => warn!(error = %e, "ticket sweep failed"),
        }
        if let Some((transport, sealer)) = &delivery {
            let realms: Vec<Realm> = ctx
                .policies
                .state()
                .iter()
                .filter_map(|p| {
                    let ns = p.namespace()?;
                    let policy = p.spec.model(&format!("{ns}/{}", p.name_any())).ok()?;
                    Some(Realm {
                        policy,
                        cutovers: Vec::new(),
                    })
                })
                .collect();
            match deliver_due(&ctx.store, sealer, transport, &realms, now).await {
                Ok(report) => {
                    if report.sent + report.retried + report.dead > 0 {
                        // Counts in the policies' status change: refresh them now.
                        let _ = ctx.refresh_policies.unbounded_send(());
                    }
                    ctx.metrics.mails("sent", report.sent);
                    ctx.metrics.mails("retried", report.retried);
                    ctx.metrics.mails("failed", report.dead);
                    for template in &report.failed_templates {
                        // `namespace/policy/credential`
                        let mut parts = template.splitn(3, '/');
                        let (Some(ns), Some(name)) = (parts.next(), parts.next()) else {
                            continue;
                        };
                        let policy =
                            ctx.policies.state().into_iter().find(|p| {
                                p.namespace().as_deref() == Some(ns) && p.name_any() == name
                            });
                        if let Some(p) = policy {
                            event(
                                &ctx,
                                &*p,
                                true,
                                "RecoveryDeliveryFailed",
                                "Deliver",
                                "a recovery mail could not be delivered; it is retried with backoff and dead-lettered after 8 attempts".into(),
                            )
                            .await;
                        }
                    }
                }
                Err(e) => warn!(error = %e, "mail delivery round failed"),
            }
        }
        tokio::time::sleep(PERIOD).await;
    }
}
