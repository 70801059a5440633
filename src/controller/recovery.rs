//! The leader's recovery duties ([`crate::courier::run_duties`]), and what
//! it tells the cluster of them: ticket and mail counts in the metrics, a
//! policy status refresh when mail moved, an Event when mail fails.

use std::sync::Arc;

use super::Context;
use super::status::{Note, event};
use crate::courier::{Round, Transport, run_duties};
use crate::engine::recovery::MAX_ATTEMPTS;
use crate::hashing::Sealer;
use crate::resources::object_key;

/// Runs until aborted with the other leader tasks.
pub async fn sweep_and_deliver(ctx: Arc<Context>, delivery: Option<(Transport, Sealer)>) {
    // The mail templates of the policies in force.
    let realms = || std::future::ready(ctx.assembly().realms);
    let after = |round: Round| {
        let ctx = ctx.clone();
        async move { report(&ctx, round).await }
    };
    run_duties(ctx.store.clone(), delivery, realms, after).await;
}

/// What the cluster is told of one round.
async fn report(ctx: &Context, round: Round) {
    ctx.metrics.tickets("expired", round.expired);
    ctx.metrics.tickets("purged", round.purged);
    let Some(report) = round.delivery else {
        return;
    };
    if report.sent + report.retried + report.dead > 0 {
        // Counts in the policies' status change: refresh them now.
        let _ = ctx.refresh_policies.unbounded_send(());
    }
    ctx.metrics.mails("sent", report.sent);
    ctx.metrics.mails("retried", report.retried);
    ctx.metrics.mails("failed", report.dead);
    for template in &report.failed_templates {
        // `namespace/policy/credential`: the policy is what ops look at.
        let policy = ctx
            .policies
            .state()
            .into_iter()
            .find(|p| template.starts_with(&format!("{}/", object_key(&**p))));
        if let Some(p) = policy {
            let note = Note::warning(
                "Deliver",
                "RecoveryDeliveryFailed",
                format!(
                    "a recovery mail could not be delivered; it is retried with backoff and dead-lettered after {MAX_ATTEMPTS} attempts"
                ),
            );
            event(ctx, &*p, &note).await;
        }
    }
}
