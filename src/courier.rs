//! Driver: how recovery mail leaves, an SMTP relay or `.eml` files in a
//! directory (a [`Courier`] for the engine's outbox round), and the
//! periodic recovery duties that `controller` and `serve` both run:
//! deliver what is due, expire and purge tickets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use lettre::message::{Mailbox, SinglePart};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
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
    /// An SMTP relay: plain inside the cluster, or submission with
    /// STARTTLS or implicit TLS and AUTH ([`Transport::smtp`]).
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// `.eml` files in a directory, for local use.
    Directory(PathBuf),
}

/// Why a transport cannot be set up. The URL is shown without its password.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {problem}")]
pub struct TransportError {
    url: String,
    problem: String,
}

/// The URL forms [`Transport::smtp`] takes, for error messages.
const URL_FORMS: &str = "expected smtp://HOST[:PORT] (plain), \
smtp://[USER:PASSWORD@]HOST[:PORT]?tls=required (STARTTLS, port 587 by default) \
or smtps://[USER:PASSWORD@]HOST[:PORT] (implicit TLS, port 465 by default)";

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    Plain,
    StartTls,
    /// STARTTLS when the relay offers it, else plain (`?tls=opportunistic`).
    Opportunistic,
    ImplicitTls,
}

impl Transport {
    /// The relay at `url`:
    /// - `smtp://HOST[:PORT]`: plain SMTP (port 25), for a relay inside
    ///   the cluster;
    /// - `smtp://[USER:PASSWORD@]HOST[:PORT]?tls=required`: submission
    ///   with STARTTLS (port 587), AUTH with the credentials;
    /// - `smtps://[USER:PASSWORD@]HOST[:PORT]`: implicit TLS (port 465).
    ///
    /// Credentials are never sent without TLS. The relay's certificate must
    /// chain to a web root or to `ca_file` (PEM), for a relay an internal CA
    /// signed. The URL carries the password, so it belongs in a Secret; no
    /// error shows it.
    pub fn smtp(url: &str, ca_file: Option<&Path>) -> Result<Transport, TransportError> {
        let bad = |problem: String| TransportError {
            url: redacted(url),
            problem,
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(format!("{e}; {URL_FORMS}")))?;
        let tls = parsed
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let security = match (parsed.scheme(), tls.as_deref()) {
            ("smtp", None) => Security::Plain,
            ("smtp", Some("required")) => Security::StartTls,
            ("smtp", Some("opportunistic")) => Security::Opportunistic,
            ("smtps", None) => Security::ImplicitTls,
            _ => return Err(bad(URL_FORMS.into())),
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad(URL_FORMS.into()))?
            .to_owned();
        if parsed.password().is_some()
            && matches!(security, Security::Plain | Security::Opportunistic)
        {
            return Err(bad(
                "credentials are only sent over TLS: use ?tls=required or smtps://".into(),
            ));
        }
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|e| bad(e.to_string()))?;
        if let Some(ca_file) = ca_file {
            let pem =
                std::fs::read(ca_file).map_err(|e| bad(format!("{}: {e}", ca_file.display())))?;
            let ca = Certificate::from_pem(&pem)
                .map_err(|e| bad(format!("{}: {e}", ca_file.display())))?;
            let params = TlsParameters::builder(host)
                .add_root_certificate(ca)
                .build_rustls()
                .map_err(|e| bad(e.to_string()))?;
            builder = builder.tls(match security {
                Security::StartTls => Tls::Required(params),
                Security::Opportunistic => Tls::Opportunistic(params),
                Security::ImplicitTls => Tls::Wrapper(params),
                Security::Plain => {
                    return Err(bad("a CA file needs a TLS relay URL".into()));
                }
            });
        }
        Ok(Transport::Smtp(builder.build()))
    }
}

/// `url` with its password replaced, for messages; nothing of it when it
/// does not parse (it may be a password pasted in the wrong place).
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.as_str().to_owned()
        }
        Err(_) => "the SMTP URL".to_owned(),
    }
}

/// Why a mail did not leave, in words for the outbox row and the log:
/// never the mail's body.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{field}: {source}")]
    Address {
        field: &'static str,
        source: lettre::address::AddressError,
    },
    #[error("cannot build the mail: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A `Message-ID` (RFC 5322) in the sender's domain, unique to this
/// attempt: many filters score a mail without one as spam.
fn message_id(mail: &Mail, domain: &str) -> String {
    use rand::RngExt as _;
    let nonce: u64 = rand::rng().random();
    format!(
        "<credshift.{}.{}.{nonce:016x}@{domain}>",
        mail.realm, mail.id
    )
}

fn mailbox(field: &'static str, address: &str) -> Result<Mailbox, DeliveryError> {
    address
        .parse::<Mailbox>()
        .map_err(|source| DeliveryError::Address { field, source })
}

impl Courier for Transport {
    type Error = DeliveryError;

    async fn send(&self, mail: &Mail) -> Result<(), DeliveryError> {
        let from = mailbox("mail.from", &mail.from)?;
        let message_id = message_id(mail, from.email.domain());
        let message = Message::builder()
            .from(from)
            .to(mailbox("recipient", &mail.to)?)
            .message_id(Some(message_id))
            .date_now()
            .subject(mail.subject.as_str())
            // A MIME part: MIME-Version, text/plain in UTF-8, and a transfer
            // encoding fit for the Japanese text.
            .singlepart(SinglePart::plain(mail.body.clone()))?;
        match self {
            Transport::Smtp(smtp) => Ok(smtp.send(message).await.map(|_| ())?),
            Transport::Directory(dir) => {
                let file = |path: &Path| {
                    let path = path.to_owned();
                    move |source| DeliveryError::File { path, source }
                };
                tokio::fs::create_dir_all(dir).await.map_err(file(dir))?;
                let path = dir.join(format!("{}-{}.eml", mail.realm, mail.id));
                tokio::fs::write(&path, message.formatted())
                    .await
                    .map_err(file(&path))
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
