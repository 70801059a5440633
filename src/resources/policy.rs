//! CredentialPolicy: the desired end state of a realm's credentials.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::duration::GoDuration;

/// Names of credentials, purposes, channels and realms: a lower-case DNS label.
pub const NAME_PATTERN: &str = "^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$";

/// The desired end state of one realm's member credentials: which
/// credentials exist, how each is hashed, changed and recovered, and which
/// credential answers a verification for each purpose.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "credshift.dev",
    version = "v1alpha1",
    kind = "CredentialPolicy",
    doc = "The desired end state of a realm's member credentials: which exist, how each is hashed, changed and recovered, and which answers each purpose.",
    namespaced,
    status = "CredentialPolicyStatus",
    shortname = "cpol",
    category = "credshift",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Realm","type":"string","jsonPath":".spec.realm","description":"Member population"}"#,
    printcolumn = r#"{"name":"Credentials","type":"string","jsonPath":".spec.credentials[*].name","description":"Credentials of each member"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status","description":"Whether the policy is valid and in force"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.purposes.all(p, self.credentials.exists(c, c.name == self.purposes[p]))").message("every purpose in spec.purposes must route to a credential listed in spec.credentials"))]
pub struct CredentialPolicySpec {
    /// The member population this policy governs (e.g. `wakwak`). Immutable.
    #[schemars(pattern(NAME_PATTERN), length(max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("realm is immutable"))]
    pub realm: String,

    /// The credentials every member may hold (e.g. `login`, `support`,
    /// `connection`, `mail`, `ftp`), each with its hashing, password rules,
    /// the channels that may change it and how it is recovered.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub credentials: Vec<CredentialSpec>,

    /// Routing in the end state: purpose (`support-portal`, `connection`,
    /// `mail`, `ftp`, …) -> the credential that answers a verification for it.
    /// While a cutover that creates a credential has not started, purposes
    /// routed to it resolve to the cutover's source credential.
    #[schemars(extend("maxProperties" = 32))]
    // Purpose names cannot be bounded in the schema (map keys have no
    // maxLength, so a CEL rule over them exceeds the cost budget); the
    // controller and the files driver check them (engine::validate).
    pub purposes: BTreeMap<String, String>,
}

/// One credential of a member: its name and rules.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialSpec {
    /// The credential's name (`login`, `support`, …), unique in the policy.
    #[schemars(pattern(NAME_PATTERN), length(max = 63))]
    pub name: String,

    /// argon2id parameters for new hashes of this credential. Existing
    /// hashes with other parameters or legacy formats are upgraded on the
    /// next successful verify.
    #[serde(default)]
    pub hashing: HashingSpec,

    /// Rules a new password must satisfy.
    #[serde(default)]
    pub rules: PasswordRules,

    /// The channels (`portal`, `utility`, `helpdesk`, …) through which a
    /// member may change this credential. Empty: no channel may.
    #[serde(default)]
    #[schemars(length(max = 16), inner(pattern(NAME_PATTERN), length(max = 63)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub change_via: Vec<String>,

    /// How a member who forgot this password gets back in.
    #[serde(default)]
    pub recovery: RecoverySpec,
}

/// argon2id cost parameters. The default is OWASP's recommendation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.memoryKiB >= 8 * self.parallelism").message("hashing.memoryKiB must be at least 8 × parallelism"))]
pub struct HashingSpec {
    /// Memory cost in KiB (default 19456 = 19 MiB).
    #[serde(default = "default_memory_kib", rename = "memoryKiB")]
    #[schemars(extend("format" = "int32"), range(min = 1024, max = 4_194_304))]
    pub memory_kib: u32,
    /// Number of passes (default 2).
    #[serde(default = "default_iterations")]
    #[schemars(extend("format" = "int32"), range(min = 1, max = 100))]
    pub iterations: u32,
    /// Degree of parallelism, lanes (default 1).
    #[serde(default = "default_parallelism")]
    #[schemars(extend("format" = "int32"), range(min = 1, max = 64))]
    pub parallelism: u32,
}

fn default_memory_kib() -> u32 {
    19_456
}
fn default_iterations() -> u32 {
    2
}
fn default_parallelism() -> u32 {
    1
}

impl Default for HashingSpec {
    fn default() -> Self {
        HashingSpec {
            memory_kib: default_memory_kib(),
            iterations: default_iterations(),
            parallelism: default_parallelism(),
        }
    }
}

/// Rules for a new password (NIST SP 800-63B-4: at least 15 characters for
/// a password used alone, as these are, or 8 where it is only one factor
/// of several; allow at least 64; no composition rules; refuse
/// commonly used and breached passwords).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.maxLength >= self.minLength").message("rules.maxLength must be at least rules.minLength"))]
pub struct PasswordRules {
    /// Minimum length in characters (default 15, as NIST SP 800-63B-4 asks
    /// of a password that is the only factor; 8 at the least, for one that
    /// is part of multi-factor authentication).
    #[serde(default = "default_min_length")]
    #[schemars(extend("format" = "int32"), range(min = 8, max = 256))]
    pub min_length: u32,
    /// Maximum length in characters (default 128; 64 to 256, so that every
    /// allowed password fits the API's 1024-byte limit in any script).
    #[serde(default = "default_max_length")]
    #[schemars(extend("format" = "int32"), range(min = 64, max = 256))]
    pub max_length: u32,
    /// Refuse a password equal to the login ID (default true).
    #[serde(default = "yes")]
    pub not_login_id: bool,
    /// Refuse commonly used and breached passwords (default true).
    #[serde(default = "yes")]
    pub blocklist: bool,
    /// Refuse the last N passwords of this credential (default 0: off).
    #[serde(default)]
    #[schemars(extend("format" = "int32"), range(max = 24))]
    pub history_depth: u32,
}

fn default_min_length() -> u32 {
    15
}
fn default_max_length() -> u32 {
    128
}
fn yes() -> bool {
    true
}

impl Default for PasswordRules {
    fn default() -> Self {
        PasswordRules {
            min_length: default_min_length(),
            max_length: default_max_length(),
            not_login_id: true,
            blocklist: true,
            history_depth: 0,
        }
    }
}

/// Who can reset a forgotten password.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RecoveryMode {
    /// The member requests a temporary password, mailed to the base e-mail address.
    SelfService,
    /// Only the help desk can reset it.
    #[default]
    Helpdesk,
    /// No recovery at all.
    None,
}

/// How a forgotten password is recovered.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'SelfService' || has(self.selfService)").message("recovery.selfService is required when recovery.mode is SelfService"))]
pub struct RecoverySpec {
    /// `SelfService`, `Helpdesk` (default) or `None`.
    #[serde(default)]
    pub mode: RecoveryMode,
    /// Settings for `SelfService` recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_service: Option<SelfServiceRecovery>,
    /// Settings of the temporary passwords the help desk gives out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helpdesk: Option<HelpdeskRecovery>,
}

/// Help-desk resets: the temporary password the help desk reads out.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HelpdeskRecovery {
    /// How long a temporary password from the help desk works before the
    /// member has set a new one (default 24h).
    #[serde(default = "default_ttl")]
    pub ttl: GoDuration,
}

/// Self-service recovery: a temporary password mailed to the member's base e-mail address.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SelfServiceRecovery {
    /// Shape of the temporary password (at least 112 bits of entropy, so
    /// that it may be stored as a fast hash).
    #[serde(default)]
    pub temporary_password: TemporaryPasswordSpec,
    /// How long a temporary password works (default 24h): the mailed one
    /// until it is used, and from then until the member has set a new one.
    #[serde(default = "default_ttl")]
    pub ttl: GoDuration,
    /// Recovery requests allowed per account.
    #[serde(default)]
    pub rate_limit: RateLimitSpec,
    /// The mail that carries the temporary password.
    pub mail: MailTemplate,
}

fn default_ttl() -> GoDuration {
    GoDuration::new("24h")
}

/// Length and alphabet of a temporary password.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemporaryPasswordSpec {
    /// Length in characters (default 20: about 116 bits from the default alphabet).
    #[serde(default = "default_temp_length")]
    #[schemars(extend("format" = "int32"), range(min = 8, max = 128))]
    pub length: u32,
    /// Characters to draw from, each at most once (default: letters and
    /// digits without look-alikes such as 0/O and 1/l/I).
    #[serde(default = "default_alphabet")]
    #[schemars(length(min = 2, max = 256))]
    pub alphabet: String,
}

fn default_temp_length() -> u32 {
    20
}
fn default_alphabet() -> String {
    "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789".into()
}

impl Default for TemporaryPasswordSpec {
    fn default() -> Self {
        TemporaryPasswordSpec {
            length: default_temp_length(),
            alphabet: default_alphabet(),
        }
    }
}

/// At most `requests` per `per`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// Requests allowed per window (default 3).
    #[serde(default = "default_requests")]
    #[schemars(extend("format" = "int32"), range(min = 1, max = 1000))]
    pub requests: u32,
    /// The window (default 1h).
    #[serde(default = "default_per")]
    pub per: GoDuration,
}

fn default_requests() -> u32 {
    3
}
fn default_per() -> GoDuration {
    GoDuration::new("1h")
}

impl Default for RateLimitSpec {
    fn default() -> Self {
        RateLimitSpec {
            requests: default_requests(),
            per: default_per(),
        }
    }
}

/// The recovery mail. Placeholders: `{{login_id}}`, `{{temporary_password}}`,
/// `{{expires_at}}`, `{{realm}}`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MailTemplate {
    /// The sender address.
    #[schemars(length(min = 3, max = 254))]
    pub from: String,
    /// Subject line.
    #[schemars(length(min = 1, max = 256))]
    pub subject: String,
    /// Plain-text body; must contain `{{temporary_password}}`.
    #[schemars(length(min = 1, max = 16384))]
    #[x_kube(validation = Rule::new("self.contains('{{temporary_password}}')").message("mail.body must contain {{temporary_password}}"))]
    pub body: String,
}

/// What ops read: whether the policy is in force, the routing right now and
/// how many members hold each credential.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CredentialPolicyStatus {
    /// The `.metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled` (kstatus).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The effective routing now, pending and running cutovers included.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["purpose".into()]))]
    pub routing: Vec<RouteStatus>,
    /// Members holding each credential, read from the store.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub credentials: Vec<CredentialCount>,
    /// Members in the realm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<i64>,
    /// Recovery tickets and their mail in this realm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryStatus>,
}

/// Recovery tickets and mail delivery, counted from the store.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryStatus {
    /// Temporary passwords that can still be used.
    pub live_tickets: i64,
    /// Temporary passwords issued (kept until purged).
    pub issued: i64,
    /// Used to log in.
    pub used: i64,
    /// Expired unused.
    pub expired: i64,
    /// Mails waiting for delivery (or a retry).
    pub mail_pending: i64,
    /// Mails delivered.
    pub mail_delivered: i64,
    /// Mails given up on after repeated failures.
    pub mail_failed: i64,
}

/// Where verifications for one purpose go right now.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// The purpose (`support-portal`, `connection`, …).
    pub purpose: String,
    /// The credential that answers now.
    pub credential: String,
    /// `Direct`; `Source` (before a cutover: the old shared credential);
    /// `DualRead` (during a cutover: the target where set, else the source).
    pub mode: String,
    /// The cutover's source credential, for `Source` and `DualRead`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The cutover that governs this route, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutover: Option<String>,
}

/// How many members hold one credential.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialCount {
    /// The credential.
    pub name: String,
    /// Members holding it.
    pub accounts: i64,
}
