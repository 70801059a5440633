//! Delivering the outbox: render each due mail from its policy's template,
//! hand it to a [`Courier`], erase the payload; retry with backoff;
//! dead-letter at last. How mail leaves (an SMTP relay, a directory) is the
//! drivers' ([`crate::courier`]); the rules of the round are here.

use std::collections::HashMap;
use std::future::Future;

use jiff::Timestamp;

use super::EngineError;
use super::members::Realm;
use super::model::Recovery;
use super::recovery::{MAX_ATTEMPTS, MailPayload, retry_delay};
use crate::hashing::Sealer;
use crate::store::Store;

/// A recovery mail, rendered and ready to leave. Its body holds a
/// temporary password: erased when dropped.
pub struct Mail {
    /// The outbox row (unique: names a mail written to a directory).
    pub id: i64,
    pub realm: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl Drop for Mail {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.body.zeroize();
        self.subject.zeroize();
    }
}

/// What takes a mail away. An error is said in words for the outbox row
/// and the log: it never holds the mail's body.
pub trait Courier {
    type Error: std::fmt::Display;

    fn send(&self, mail: &Mail) -> impl Future<Output = Result<(), Self::Error>> + Send;
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
pub async fn deliver_due<C: Courier>(
    store: &Store,
    sealer: &Sealer,
    courier: &C,
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
            let plain = sealer.open(sealed).map_err(|e| e.to_string())?;
            let payload: MailPayload =
                serde_json::from_slice(&plain).map_err(|_| "payload is not readable".to_owned())?;
            let (from, subject, body) = templates
                .get(&mail.template)
                .ok_or_else(|| format!("no self-service mail template {}", mail.template))?;
            let outgoing = Mail {
                id: mail.id,
                realm: mail.realm.clone(),
                from: from.clone(),
                to: mail.recipient.clone(),
                subject: render(subject, &payload),
                body: render(body, &payload),
            };
            courier.send(&outgoing).await.map_err(|e| e.to_string())
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
