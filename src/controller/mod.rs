//! `credshift controller`: the Kubernetes driver. It watches
//! CredentialPolicy and CredentialCutover objects, runs the engine for them
//! and writes what it finds to their status. Only the holder of a
//! coordination Lease runs the reconcilers, so two replicas never both write.

mod backoff;
mod cutover;
mod health;
mod metrics;
mod policy;
mod recovery;
mod status;

pub use metrics::Metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store as Cache};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::resources::{CredentialCutover, CredentialPolicy};
use crate::store::Store;

/// How `credshift controller` runs (its flags, parsed by the command line).
#[derive(Debug, Clone)]
pub struct Config {
    /// The store URL.
    pub store: String,
    /// Watch only this namespace (`None`: all namespaces).
    pub namespace: Option<String>,
    /// Namespace and name of the leader-election Lease.
    pub lease_namespace: String,
    pub lease_name: String,
    /// This replica's identity in the Lease (`None`: host name and pid).
    pub identity: Option<String>,
    /// How long a dead leader blocks the others, in seconds.
    pub lease_seconds: u64,
    /// Address of /healthz, /readyz and /metrics.
    pub health_addr: SocketAddr,
    /// How often a running cutover writes its progress to status.
    pub progress_interval: Duration,
    /// The SMTP relay recovery mail goes through ([`crate::courier::Transport::smtp`]).
    pub smtp: Option<String>,
    /// A CA (PEM) to trust for the relay's certificate.
    pub smtp_ca_file: Option<std::path::PathBuf>,
}

/// Why the controller stopped or a reconcile failed, by the step that
/// failed: connecting at start, a request to the API server, writing a
/// status, the finalizer, the store, the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the Kubernetes API server: {0}")]
    Connect(kube::Error),
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot write the status of {object}: {source}")]
    StatusWrite {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot add or remove the finalizer {finalizer}: {0}", finalizer = cutover::FINALIZER)]
    FinalizerPatch(kube::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("leader election: the lease watcher stopped")]
    LeaseWatchStopped,
    #[error("health endpoint: {0}")]
    Health(std::io::Error),
    #[error("{0} has no namespace")]
    NoNamespace(String),
    #[error(transparent)]
    Transport(#[from] crate::courier::TransportError),
    #[error(transparent)]
    OutboxKey(#[from] crate::hashing::SealError),
    #[error("--smtp needs {}", crate::hashing::OUTBOX_KEY_ENV)]
    NoOutboxKey,
    /// A deletion waits (not a failure): look again after this long.
    #[error("deletion held until the cutover is over")]
    DeletionHeld(Option<Duration>),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Error {
        use kube::runtime::finalizer::Error as F;
        match e {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            F::AddFinalizer(e) | F::RemoveFinalizer(e) => Error::FinalizerPatch(e),
            other => Error::Finalizer(other.to_string()),
        }
    }
}

impl Error {
    /// A CamelCase reason for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Connect(_) => "Connect",
            Error::Kube(_) => "KubeApi",
            Error::StatusWrite { .. } => "StatusWrite",
            Error::FinalizerPatch(_) => "FinalizerPatch",
            Error::Store(_) => "Store",
            Error::Engine(_) => "Engine",
            Error::Lease(_) | Error::LeaseWatchStopped => "Lease",
            Error::Health(_) => "Health",
            Error::NoNamespace(_) => "NoNamespace",
            Error::Transport(_) | Error::OutboxKey(_) | Error::NoOutboxKey => "Config",
            Error::DeletionHeld(_) => "DeletionHeld",
            Error::Finalizer(_) => "Finalizer",
        }
    }
}

/// What every reconcile needs.
pub struct Context {
    pub client: Client,
    pub store: Store,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub policies: Cache<CredentialPolicy>,
    pub cutovers: Cache<CredentialCutover>,
    /// Wall time one reconcile spends on backfill before writing progress.
    pub progress_interval: Duration,
    /// Asks for every policy's status to be refreshed (after mail was delivered).
    pub refresh_policies: futures::channel::mpsc::UnboundedSender<()>,
    /// Both watch caches hold their first full list. Until then a reconcile
    /// waits: a policy missing from a half-filled cache is not "missing".
    pub synced: Arc<std::sync::atomic::AtomicBool>,
    /// Each policy's last realm-wide counts, reused for `COUNTS_MAX_AGE`.
    pub realm_counts: policy::CountsCache,
    /// Failures in a row per object: how long a failed reconcile waits.
    pub backoff: backoff::Backoff,
}

impl Context {
    /// `Some(requeue)` while the caches are still filling.
    pub fn not_synced_yet(&self) -> Option<Action> {
        (!self.synced.load(Ordering::Relaxed)).then(|| Action::requeue(Duration::from_millis(200)))
    }
}

impl Context {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    /// The realms the watched objects make, by the rules every driver
    /// uses ([`crate::engine::assembly`]).
    fn assembly(&self) -> crate::engine::assembly::Assembly {
        crate::resources::assemble(&self.policies.state(), &self.cutovers.state())
    }
}

/// The field manager of every status write.
pub const MANAGER: &str = "credshift-controller";

/// Runs until SIGTERM or SIGINT. Fails fast, with a clear message, when the
/// API server or the store cannot be reached at start.
pub async fn run(args: Config) -> Result<(), Error> {
    let delivery = match &args.smtp {
        Some(url) => {
            let transport = crate::courier::Transport::smtp(url, args.smtp_ca_file.as_deref())?;
            let sealer = crate::hashing::Sealer::from_env()?.ok_or(Error::NoOutboxKey)?;
            Some((transport, sealer))
        }
        None => None,
    };
    let client = Client::try_default().await.map_err(Error::Connect)?;
    let version = client.apiserver_version().await.map_err(Error::Connect)?;
    info!(version = %version.git_version, "connected to the Kubernetes API server");
    let store = Store::open(&args.store).await?;
    info!(store = store.url(), "store opened");

    let metrics = Metrics::default();
    let readiness = health::Readiness::default();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown = {
        let mut rx = shutdown_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let health = tokio::spawn(health::serve(
        args.health_addr,
        readiness.clone(),
        store.clone(),
        metrics.clone(),
        shutdown,
    ));

    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "credshift".into());
        format!("{host}-{}", std::process::id())
    });
    let lease = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&args.lease_namespace)
        .with_identity(&identity)
        .with_duration(args.lease_seconds)
        .with_grace(args.lease_seconds.div_ceil(3).max(1))
        .build()
        .await?;
    let (mut leader, lease_task) = lease.watch().await;
    // A standby is ready once it watches the lease; the leader once its watches sync.
    readiness.synced.store(true, Ordering::Relaxed);
    info!(%identity, lease = %args.lease_name, "waiting for leadership");

    let signal = crate::shutdown::requested();
    tokio::pin!(signal);
    let mut reconcilers: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let is_leader = *leader.borrow_and_update();
        match (is_leader, reconcilers.is_some()) {
            (true, false) => {
                info!(%identity, "became leader; starting reconcilers");
                readiness.synced.store(false, Ordering::Relaxed);
                reconcilers = Some(tokio::spawn(reconcile_all(Leader {
                    client: client.clone(),
                    store: store.clone(),
                    metrics: metrics.clone(),
                    namespace: args.namespace.clone(),
                    identity: identity.clone(),
                    readiness: readiness.clone(),
                    delivery: delivery.clone(),
                    progress_interval: args.progress_interval,
                })));
            }
            (false, true) => {
                warn!(%identity, "lost leadership; stopping reconcilers");
                if let Some(task) = reconcilers.take() {
                    task.abort();
                }
                readiness.synced.store(true, Ordering::Relaxed);
            }
            _ => {}
        }
        tokio::select! {
            _ = &mut signal => break,
            changed = leader.changed() => {
                if changed.is_err() {
                    return Err(Error::LeaseWatchStopped);
                }
            }
        }
    }

    info!("shutting down");
    if let Some(task) = reconcilers.take() {
        task.abort();
        let _ = task.await;
    }
    // Dropping the receiver makes the lease task release the lease, so a
    // standby takes over at once instead of after the lease expires.
    drop(leader);
    let _ = tokio::time::timeout(Duration::from_secs(5), lease_task).await;
    let _ = shutdown_tx.send(true);
    match health.await {
        Ok(Err(e)) => Err(Error::Health(e)),
        _ => Ok(()),
    }
}

/// Runs both controllers until aborted (on loss of leadership or shutdown).
/// What the leader's tasks need.
struct Leader {
    client: Client,
    store: Store,
    metrics: Metrics,
    namespace: Option<String>,
    identity: String,
    readiness: health::Readiness,
    delivery: Option<(crate::courier::Transport, crate::hashing::Sealer)>,
    progress_interval: Duration,
}

async fn reconcile_all(leader: Leader) {
    let Leader {
        client,
        store,
        metrics,
        namespace,
        identity,
        readiness,
        delivery,
        progress_interval,
    } = leader;
    let (policies_api, cutovers_api): (Api<CredentialPolicy>, Api<CredentialCutover>) =
        match &namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: Some(identity),
        },
    );
    let (refresh_policies, refresh_requests) = futures::channel::mpsc::unbounded();
    let (policies_cache, policies_stream) = slim_watch(policies_api);
    let policy_controller =
        Controller::for_stream(policies_stream, policies_cache).reconcile_all_on(refresh_requests);
    let (cutovers_cache, cutovers_stream) = slim_watch(cutovers_api.clone());
    let cutover_controller = Controller::for_stream(cutovers_stream, cutovers_cache);
    let ctx = Arc::new(Context {
        client,
        store,
        metrics,
        recorder,
        policies: policy_controller.store(),
        cutovers: cutover_controller.store(),
        progress_interval,
        refresh_policies,
        synced: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        realm_counts: policy::CountsCache::default(),
        backoff: backoff::Backoff::default(),
    });

    // A policy's status shows its cutovers; a cutover depends on its policy.
    let policy_controller = policy_controller.watches(
        cutovers_api,
        watcher::Config::default().any_semantic(),
        |c: CredentialCutover| {
            c.namespace()
                .map(|ns| ObjectRef::new(&c.spec.policy_ref.name).within(&ns))
        },
    );
    let cutover_ctx = ctx.clone();
    let cutovers_of_policy = move |p: CredentialPolicy| {
        let ns = p.namespace();
        let name = p.name_any();
        cutover_ctx
            .cutovers
            .state()
            .into_iter()
            .filter(|c| c.namespace() == ns && c.spec.policy_ref.name == name)
            .map(|c| ObjectRef::from_obj(&*c))
            .collect::<Vec<_>>()
    };
    let policies_for_cutovers: Api<CredentialPolicy> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let cutover_controller = cutover_controller.watches(
        policies_for_cutovers,
        watcher::Config::default().any_semantic(),
        cutovers_of_policy,
    );

    let sync_ctx = ctx.clone();
    let ready = readiness.clone();
    tokio::spawn(async move {
        wait_synced(&sync_ctx.policies).await;
        wait_synced(&sync_ctx.cutovers).await;
        info!("watches synced; ready");
        sync_ctx.synced.store(true, Ordering::Relaxed);
        ready.synced.store(true, Ordering::Relaxed);
    });

    let policies = policy_controller
        .run(policy::reconcile, policy::error_policy, ctx.clone())
        .for_each(|result| log_runner_error("CredentialPolicy", result));
    let cutovers = cutover_controller
        .run(cutover::reconcile, cutover::error_policy, ctx.clone())
        .for_each(|result| log_runner_error("CredentialCutover", result));
    futures::join!(
        policies,
        cutovers,
        recovery::sweep_and_deliver(ctx, delivery)
    );
}

/// Logs what a controller's runner reports besides reconciles: a failed
/// watch (the API server unreachable, a permission taken away) is retried
/// with backoff by the watcher, but ops should see it. A failed reconcile
/// is logged by its error policy ([`requeue_after_error`]).
async fn log_runner_error<K, E>(
    kind: &'static str,
    result: Result<(ObjectRef<K>, Action), kube::runtime::controller::Error<E, watcher::Error>>,
) where
    K: kube::Resource,
    E: std::error::Error + 'static,
{
    use kube::runtime::controller::Error as Runner;
    match result {
        Ok(_) | Err(Runner::ReconcilerFailed(..)) => {}
        Err(Runner::QueueError(error)) => {
            warn!(kind, %error, "watch failed; retrying with backoff");
        }
        Err(Runner::ObjectNotFound(object)) => {
            tracing::debug!(kind, %object, "object gone before its reconcile");
        }
        Err(error) => warn!(kind, %error, "controller runner error"),
    }
}

/// A watch of `api` feeding a cache, with each object's `managedFields` and
/// kubectl's last-applied annotation dropped before it is cached: nothing
/// here reads them, and they were most of the controller's idle memory
/// (about 35 KB per policy; BENCHMARKS.md, the controller idle).
fn slim_watch<K>(
    api: Api<K>,
) -> (
    Cache<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (cache, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|o: &mut K| {
            o.managed_fields_mut().clear();
            o.annotations_mut()
                .remove("kubectl.kubernetes.io/last-applied-configuration");
        })
        .reflect(writer)
        .touched_objects();
    (cache, stream)
}

/// Waits until a watch cache holds its first full list. The cache's
/// readiness wakes only one waiter (the controller's own runner), so this
/// asks again until it answers at once.
async fn wait_synced<K>(cache: &Cache<K>)
where
    K: reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    while tokio::time::timeout(Duration::from_millis(200), cache.wait_until_ready())
        .await
        .is_err()
    {}
}

/// Requeue after a failed reconcile of `key`: after a second at first,
/// doubling per failure in a row of the same object up to five minutes
/// ([`backoff`]).
fn requeue_after_error(
    kind: &'static str,
    key: &crate::engine::assembly::ObjectKey,
    error: &Error,
    ctx: &Context,
) -> Action {
    ctx.metrics.failed(kind, error.reason());
    let wait = ctx.backoff.failed(kind, key);
    warn!(kind, object = %key, reason = error.reason(), retry_in = ?wait, %error, "reconcile failed");
    Action::requeue(wait)
}

/// Ends a reconcile of `key`: its time in the metrics, and a success
/// resets its backoff.
fn reconciled(
    kind: &'static str,
    key: &crate::engine::assembly::ObjectKey,
    started: std::time::Instant,
    result: &Result<Action, Error>,
    ctx: &Context,
) {
    ctx.metrics.reconciled(kind, started.elapsed());
    if result.is_ok() {
        ctx.backoff.succeeded(kind, key);
    }
}
