//! Driver: how recovery mail leaves, an SMTP relay or `.eml` files in a
//! directory (a [`Courier`] for the engine's outbox round), and the
//! periodic recovery duties that `controller` and `serve` both run:
//! deliver what is due, expire and purge tickets.

use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tracing::warn;

use crate::engine::members::Realm;
use crate::engine::outbox::{Courier, DeliveryReport, Mail, deliver_due};
use crate::engine::recovery::KEEP_CLOSED_TICKETS;
use crate::hashing::Sealer;
use crate::store::Store;

/// How often the outbox and the tickets are looked at.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Where mail goes.
#[derive(Clone)]
pub enum Transport {
    /// An SMTP relay (`smtp://host:port`, plain; the relay is local to the cluster).
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// `.eml` files in a directory, for local use.
    Directory(PathBuf),
}

/// Why a transport cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("{url:?}: {problem}")]
pub struct TransportError {
    url: String,
    problem: &'static str,
}

impl Transport {
    /// The relay at `smtp://HOST[:PORT]` (port 25 by default).
    pub fn smtp(url: &str) -> Result<Transport, TransportError> {
        let bad = |problem| TransportError {
            url: url.to_owned(),
            problem,
        };
        let rest = url
            .strip_prefix("smtp://")
            .ok_or_else(|| bad("expected smtp://HOST[:PORT]"))?;
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad("bad port"))?),
            None => (rest, 25),
        };
        if host.is_empty() {
            return Err(bad("expected smtp://HOST[:PORT]"));
        }
        Ok(Transport::Smtp(
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .port(port)
                .build(),
        ))
    }
}

impl Courier for Transport {
    async fn send(&self, mail: &Mail) -> Result<(), String> {
        let message = Message::builder()
            .from(
                mail.from
                    .parse::<Mailbox>()
                    .map_err(|e| format!("mail.from: {e}"))?,
            )
            .to(mail
                .to
                .parse::<Mailbox>()
                .map_err(|e| format!("recipient: {e}"))?)
            .subject(mail.subject.as_str())
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| format!("cannot build the mail: {e}"))?;
        match self {
            Transport::Smtp(smtp) => smtp
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| format!("SMTP: {e}")),
            Transport::Directory(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
                let path = dir.join(format!("{}-{}.eml", mail.realm, mail.id));
                tokio::fs::write(&path, message.formatted())
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))
            }
        }
    }
}

/// What one round of duties did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Tickets that expired unused, and closed ones purged.
    pub expired: u64,
    pub purged: u64,
    /// What delivery did, when this process delivers mail.
    pub delivery: Option<DeliveryReport>,
}

/// Runs the recovery duties every [`PERIOD`] until dropped: sweep the
/// tickets, and (with `delivery`) deliver the due mail with the templates
/// of `realms()`; `after` sees each round. A failed round is logged and
/// the next one tries again.
pub async fn run_duties<R, A>(
    store: Store,
    delivery: Option<(Transport, Sealer)>,
    realms: impl Fn() -> R,
    mut after: impl FnMut(Round) -> A,
) where
    R: Future<Output = Vec<Realm>>,
    A: Future<Output = ()>,
{
    loop {
        let now = Timestamp::now();
        let mut round = Round::default();
        match store.sweep_tickets(now, KEEP_CLOSED_TICKETS).await {
            Ok((expired, purged)) => (round.expired, round.purged) = (expired, purged),
            Err(e) => warn!(error = %e, "ticket sweep failed"),
        }
        if let Some((transport, sealer)) = &delivery {
            match deliver_due(&store, sealer, transport, &realms().await, now).await {
                Ok(report) => round.delivery = Some(report),
                Err(e) => warn!(error = %e, "mail delivery round failed"),
            }
        }
        after(round).await;
        tokio::time::sleep(PERIOD).await;
    }
}
