//! `credshift serve`: the member-facing API, on the policies in the given
//! manifests, with optional mail delivery from the same process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use tracing::warn;

use super::{EXIT_OK, Failure, StoreArgs};
use crate::api::{self, Throttle, Tokens};
use crate::courier::{self, Transport};
use crate::engine::model::Recovery;
use crate::hashing::{HashPool, OUTBOX_KEY_ENV, PoolSize, Sealer};
use crate::resources::parse_go_duration;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// CredentialPolicy / CredentialCutover manifests (files or directories).
    #[arg(
        short = 'f',
        long = "filename",
        num_args = 1..,
        required_unless_present = "from_cluster",
        conflicts_with = "from_cluster"
    )]
    pub paths: Vec<PathBuf>,
    /// Read the policies and cutovers from the cluster (KUBECONFIG or the
    /// in-cluster service account) instead, refreshed every few seconds.
    #[arg(long, env = "CREDSHIFT_FROM_CLUSTER")]
    pub from_cluster: bool,
    /// With --from-cluster: only this namespace.
    #[arg(long, env = "CREDSHIFT_WATCH_NAMESPACE", requires = "from_cluster")]
    pub namespace: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "CREDSHIFT_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Token file (YAML `tokens: [{name, channel, realms, sha256, administrator}]`),
    /// e.g. a mounted Kubernetes Secret.
    #[arg(long, env = "CREDSHIFT_TOKENS_FILE")]
    pub tokens: PathBuf,
    /// TLS certificate (PEM); with --tls-key, serve HTTPS.
    #[arg(long, env = "CREDSHIFT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "CREDSHIFT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Failed verifies allowed per (account, purpose, client) per window.
    #[arg(long, env = "CREDSHIFT_VERIFY_FAILURES", default_value_t = 10)]
    pub verify_failures: u32,
    /// Consecutive failed verifies of one account and purpose, from any
    /// client, after which nothing is checked until a right password or a
    /// new one ends the streak (at most 100, as NIST SP 800-63B asks).
    #[arg(long, env = "CREDSHIFT_ACCOUNT_FAILURES", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub account_failures: u32,
    /// The throttling window (Go duration).
    #[arg(long, env = "CREDSHIFT_THROTTLE_WINDOW", default_value = "15m")]
    pub throttle_window: String,
    /// Recovery requests one client (the request's `client`, else the
    /// caller's token) may make per window, whatever the accounts.
    #[arg(long, env = "CREDSHIFT_RECOVERY_PER_CLIENT", default_value_t = 10)]
    pub recovery_per_client: u32,
    /// Help-desk resets one caller (token) may make per window.
    #[arg(long, env = "CREDSHIFT_RESETS_PER_CALLER", default_value_t = 100)]
    pub resets_per_caller: u32,
    /// Minimum time of every answer that must not reveal whether an account
    /// exists (denied verify/change, recovery). Above the slowest stored hash.
    #[arg(long, env = "CREDSHIFT_MIN_DENIAL_TIME", default_value = "250ms")]
    pub min_denial_time: String,
    /// Hashing threads: argon2 and legacy hashes that run at once
    /// [default: one per core].
    #[arg(long, env = "CREDSHIFT_HASH_THREADS")]
    pub hash_threads: Option<usize>,
    /// Requests admitted to wait for a hashing thread; past threads + queue
    /// the API answers 503 with Retry-After [default: 64 per hashing thread].
    #[arg(long, env = "CREDSHIFT_HASH_QUEUE")]
    pub hash_queue: Option<usize>,
    /// Time a client has to send a request's headers (and to finish the TLS
    /// handshake) before its connection is closed.
    #[arg(long, env = "CREDSHIFT_HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: String,
    /// Time a request has to be read and answered; past it, 408 and close.
    #[arg(long, env = "CREDSHIFT_REQUEST_TIMEOUT", default_value = "30s")]
    pub request_timeout: String,
    /// A keep-alive connection without a request is closed after this long.
    #[arg(long, env = "CREDSHIFT_IDLE_TIMEOUT", default_value = "60s")]
    pub idle_timeout: String,
    /// Open connections at most (HTTP/1.1: also requests in flight); past
    /// it, new clients wait in the listen backlog.
    #[arg(long, env = "CREDSHIFT_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Deliver recovery mail from this process through this SMTP relay:
    /// smtp://HOST[:PORT], smtp://USER:PASSWORD@HOST[:PORT]?tls=required
    /// (STARTTLS) or smtps://USER:PASSWORD@HOST[:PORT] (implicit TLS). In a
    /// cluster the controller delivers instead.
    #[arg(long, env = "CREDSHIFT_SMTP", hide_env_values = true)]
    pub smtp: Option<String>,
    /// Trust this CA (PEM) for the relay's certificate, besides the web roots.
    #[arg(long, env = "CREDSHIFT_SMTP_CA_FILE", requires = "smtp")]
    pub smtp_ca_file: Option<PathBuf>,
    /// Write recovery mail as .eml files into this directory instead.
    #[arg(long, env = "CREDSHIFT_MAIL_DIR", conflicts_with = "smtp")]
    pub mail_dir: Option<PathBuf>,
}

pub async fn run(args: ServeArgs) -> Result<u8, Failure> {
    let client = if args.from_cluster {
        Some(
            kube::Client::try_default()
                .await
                .map_err(|e| Failure(format!("cannot reach the Kubernetes API server: {e}")))?,
        )
    } else {
        None
    };
    let realms = match &client {
        Some(client) => api::cluster::load(client, args.namespace.as_deref())
            .await
            .map_err(|e| Failure(format!("cannot read the policies from the cluster: {e}")))?,
        None => {
            let lines = |e: Vec<crate::files::InputError>| {
                Failure(
                    e.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            };
            crate::files::load(&args.paths)
                .map_err(lines)?
                .model()
                .map_err(lines)?
                .realms
        }
    };
    let model = crate::files::Model { realms };
    let tokens = Tokens::load(&args.tokens)?;
    let sealer = Sealer::from_env()?;
    let self_service = model.realms.iter().any(|r| {
        r.policy
            .credentials
            .values()
            .any(|c| matches!(c.recovery, Recovery::SelfService(_)))
    });
    if self_service && sealer.is_none() {
        return Err(Failure(format!(
            "{OUTBOX_KEY_ENV} is required for self-service recovery: 32 random bytes in base64 (head -c32 /dev/urandom | base64)"
        )));
    }
    let window = parse_go_duration(&args.throttle_window)
        .map_err(|e| Failure(format!("--throttle-window {e}")))?;
    let store = args.store.open().await?;
    let throttle = Throttle {
        failures: args.verify_failures.max(1),
        account_failures: args.account_failures,
        window,
        recovery_per_client: args.recovery_per_client.max(1),
        resets_per_caller: args.resets_per_caller.max(1),
        min_denial_time: parse_go_duration(&args.min_denial_time)
            .map_err(|e| Failure(format!("--min-denial-time {e}")))?,
    };
    let transport = match (&args.smtp, &args.mail_dir) {
        (Some(url), _) => Some(
            Transport::smtp(url, args.smtp_ca_file.as_deref())
                .map_err(|e| Failure(format!("--smtp {e}")))?,
        ),
        (None, Some(dir)) => Some(Transport::Directory(dir.clone())),
        _ => None,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let duration = |flag: &str, value: &str| {
        parse_go_duration(value)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                Failure(format!(
                    "--{flag} {value:?}: expected a positive Go duration"
                ))
            })
    };
    let limits = api::Limits {
        header_read_timeout: duration("header-read-timeout", &args.header_read_timeout)?,
        request_timeout: duration("request-timeout", &args.request_timeout)?,
        idle_timeout: duration("idle-timeout", &args.idle_timeout)?,
        max_connections: args.max_connections.max(1),
    };
    let mut size = PoolSize::default();
    if let Some(threads) = args.hash_threads {
        size = PoolSize {
            threads: threads.max(1),
            queue: 8 * threads.max(1),
        };
    }
    if let Some(queue) = args.hash_queue {
        size.queue = queue;
    }
    let api = api::Api::new(
        store.clone(),
        sealer.clone(),
        model.realms.clone(),
        tokens,
        throttle,
        HashPool::new(size),
    )
    .await?;
    if limits.request_timeout <= api.min_denial_time() {
        return Err(Failure(format!(
            "--request-timeout {} must be longer than the padding of denied answers ({} ms)",
            args.request_timeout,
            api.min_denial_time().as_millis()
        )));
    }
    {
        // Expired throttling windows are deleted (every window, at most a
        // minute apart), so the table holds only the counters still running.
        let (store, mut stop) = (store.clone(), stop_rx.clone());
        let every = window.clamp(Duration::from_secs(1), Duration::from_secs(60));
        tokio::spawn(async move {
            loop {
                match store.prune_rate_limits(Timestamp::now()).await {
                    Ok(n) if n > 0 => {
                        tracing::debug!(deleted = n, "expired rate-limit windows pruned")
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "rate-limit pruning failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => break,
                }
            }
        });
    }
    if let Some(client) = client {
        tokio::spawn(api::cluster::follow(
            api.clone(),
            client,
            args.namespace.clone(),
            Duration::from_secs(5),
        ));
    }
    {
        // Tickets are swept, and with a transport and the outbox key the
        // due mail is delivered, by this process until it stops.
        let delivery = transport.zip(sealer);
        let (store, api, mut stop) = (store.clone(), api.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let realms = || {
                let api = api.clone();
                async move { api.realms.read().await.clone() }
            };
            let after = |_| std::future::ready(());
            tokio::select! {
                () = courier::run_duties(store, delivery, realms, after) => {}
                _ = stop.changed() => {}
            }
        });
    }
    let tls = args.tls_cert.clone().zip(args.tls_key.clone());
    let shutdown = async move {
        crate::shutdown::requested().await;
        let _ = stop_tx.send(true);
    };
    api::serve(api, args.listen, tls, limits, shutdown).await?;
    Ok(EXIT_OK)
}
