//! Delivering the outbox: render each due mail from its policy's template,
//! send it, erase the payload; retry with backoff; dead-letter at last.

use std::collections::HashMap;
use std::path::PathBuf;

use jiff::Timestamp;
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::EngineError;
use super::members::Realm;
use super::model::Recovery;
use super::recovery::{MAX_ATTEMPTS, MailPayload, retry_delay};
use crate::hashing::Sealer;
use crate::store::Store;

/// Where mails go.
#[derive(Clone)]
pub enum Transport {
    /// An SMTP relay (`smtp://host:port`, plain; the relay is local to the cluster).
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// `.eml` files in a directory, for local use with `credshift apply`.
    Directory(PathBuf),
}

impl Transport {
    /// From `smtp://host[:port]` or a directory path.
    pub fn smtp(url: &str) -> Result<Transport, String> {
        let rest = url
            .strip_prefix("smtp://")
            .ok_or_else(|| format!("{url:?}: expected smtp://HOST[:PORT]"))?;
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>().map_err(|_| format!("{url:?}: bad port"))?,
            ),
            None => (rest, 25),
        };
        Ok(Transport::Smtp(
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .port(port)
                .build(),
        ))
    }
}

/// What one delivery round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub sent: u64,
    pub retried: u64,
    pub dead: u64,
    /// The templates (`namespace/policy/credential`) of mails that failed, for Events.
    pub failed_templates: Vec<String>,
}

fn render(template: &str, payload: &MailPayload) -> String {
    template
        .replace("{{login_id}}", &payload.login_id)
        .replace("{{realm}}", &payload.realm)
        .replace("{{expires_at}}", &payload.expires_at)
        .replace("{{temporary_password}}", &payload.temporary_password)
}

/// Sends every due mail once. `realms` supplies the templates
/// (`policy/credential` → the credential's self-service mail).
pub async fn deliver_due(
    store: &Store,
    sealer: &Sealer,
    transport: &Transport,
    realms: &[Realm],
    now: Timestamp,
) -> Result<DeliveryReport, EngineError> {
    let templates: HashMap<String, (String, String, String)> = realms
        .iter()
        .flat_map(|r| {
            r.policy
                .credentials
                .iter()
                .filter_map(|(name, rules)| match &rules.recovery {
                    Recovery::SelfService(s) => Some((
                        format!("{}/{name}", r.policy.name),
                        (
                            s.mail_from.clone(),
                            s.mail_subject.clone(),
                            s.mail_body.clone(),
                        ),
                    )),
                    _ => None,
                })
        })
        .collect();
    let mut report = DeliveryReport::default();
    for mail in store.due_mail(now, 100).await? {
        let failure = async {
            let sealed = mail
                .sealed_payload
                .as_deref()
                .ok_or("payload already erased")?;
            let plain = sealer.open(sealed)?;
            let payload: MailPayload =
                serde_json::from_slice(&plain).map_err(|_| "payload is not readable".to_owned())?;
            let (from, subject, body) = templates
                .get(&mail.template)
                .ok_or_else(|| format!("no self-service mail template {}", mail.template))?;
            let message = Message::builder()
                .from(
                    from.parse::<Mailbox>()
                        .map_err(|e| format!("mail.from: {e}"))?,
                )
                .to(mail
                    .recipient
                    .parse::<Mailbox>()
                    .map_err(|e| format!("recipient: {e}"))?)
                .subject(render(subject, &payload))
                .header(ContentType::TEXT_PLAIN)
                .body(render(body, &payload))
                .map_err(|e| format!("cannot build the mail: {e}"))?;
            match transport {
                Transport::Smtp(smtp) => smtp
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("SMTP: {e}")),
                Transport::Directory(dir) => {
                    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                    let path = dir.join(format!("{}-{}.eml", mail.realm, mail.id));
                    std::fs::write(&path, message.formatted())
                        .map_err(|e| format!("{}: {e}", path.display()))
                }
            }
        }
        .await;
        match failure {
            Ok(()) => {
                store.mail_sent(mail.id, now).await?;
                report.sent += 1;
            }
            Err(error) => {
                let attempts = mail.attempts + 1;
                if attempts >= MAX_ATTEMPTS {
                    store.mail_failed(mail.id, &error, None).await?;
                    report.dead += 1;
                } else {
                    store
                        .mail_failed(mail.id, &error, Some(now + retry_delay(attempts)))
                        .await?;
                    report.retried += 1;
                }
                tracing::warn!(mail = mail.id, realm = %mail.realm, attempts, %error, "recovery mail not delivered");
                if !report.failed_templates.contains(&mail.template) {
                    report.failed_templates.push(mail.template.clone());
                }
            }
        }
    }
    Ok(report)
}
