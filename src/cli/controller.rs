//! `credshift controller`: its flags, turned into the controller's
//! [`Config`].

use std::net::SocketAddr;
use std::time::Duration;

use super::StoreArgs;
use crate::controller::Config;

/// Flags of `credshift controller`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "CREDSHIFT_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Namespace of the leader-election Lease (in a cluster: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "CREDSHIFT_LEASE_NAME",
        default_value = "credshift-controller"
    )]
    pub lease_name: String,
    /// This replica's identity in the Lease (in a cluster: the pod's name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Lease duration in seconds: how long a dead leader blocks the others.
    #[arg(long, env = "CREDSHIFT_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u64,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "CREDSHIFT_HEALTH_ADDR", default_value = "0.0.0.0:8080")]
    pub health_addr: SocketAddr,
    /// How often a running cutover writes its progress to status (Go duration).
    #[arg(long, env = "CREDSHIFT_PROGRESS_INTERVAL", default_value = "1s", value_parser = parse_interval)]
    pub progress_interval: Duration,
    /// Deliver recovery mail through this SMTP relay: smtp://HOST[:PORT],
    /// smtp://USER:PASSWORD@HOST[:PORT]?tls=required (STARTTLS) or
    /// smtps://USER:PASSWORD@HOST[:PORT] (implicit TLS). Needs
    /// CREDSHIFT_OUTBOX_KEY, the same key the API servers seal with.
    #[arg(long, env = "CREDSHIFT_SMTP", hide_env_values = true)]
    pub smtp: Option<String>,
    /// Trust this CA (PEM) for the relay's certificate, besides the web roots.
    #[arg(long, env = "CREDSHIFT_SMTP_CA_FILE", requires = "smtp")]
    pub smtp_ca_file: Option<std::path::PathBuf>,
}

fn parse_interval(s: &str) -> Result<Duration, crate::resources::DurationError> {
    crate::resources::parse_go_duration(s).map(|d| d.max(Duration::from_millis(10)))
}

impl From<ControllerArgs> for Config {
    fn from(a: ControllerArgs) -> Config {
        Config {
            store: a.store.url,
            namespace: a.namespace,
            lease_namespace: a.lease_namespace,
            lease_name: a.lease_name,
            identity: a.identity,
            lease_seconds: a.lease_seconds,
            health_addr: a.health_addr,
            progress_interval: a.progress_interval,
            smtp: a.smtp,
            smtp_ca_file: a.smtp_ca_file,
        }
    }
}
