//! `credshift serve`: the member-facing API, the HTTP driver of
//! the engine. The portal, the connection utility, the help desk tool and
//! the RADIUS / mail / FTP servers call it as authenticated channels.
//!
//! One module per endpoint (`verify`, `change`, `recovery` with the
//! help-desk reset, `radius`: verify in FreeRADIUS rlm_rest's terms), each
//! a handler that returns [`ApiError`] with `?` and carries its part of
//! the OpenAPI description; `request` checks what every request carries,
//! `throttle` counts guesses and sheds load, `answer` is how answers look
//! (refusals as RFC 9457 problem details, also for bodies the handlers
//! never see), `description` puts the OpenAPI document together, `server`
//! accepts connections within timeouts and limits, `auth` reads the
//! callers' tokens, [`cluster`] follows the policies in a cluster.

mod answer;
mod auth;
mod change;
pub mod cluster;
mod description;
mod radius;
mod recovery;
mod request;
mod server;
mod throttle;
mod verify;

pub use answer::ApiError;
pub use auth::{Caller, Tokens};
pub use server::Limits;
pub use throttle::Throttle;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tracing::{info, warn};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::engine::EngineError;
use crate::engine::guesses::InFlight;
use crate::engine::members::Realm;
use crate::hashing::{self, HashPool, Sealer};
use crate::store::{Account, AccountState, Store};

/// `realms`, each with the splits the store knows are under way and no
/// cutover object declares ([`Realm::remembering`]): a cutover deleted or
/// pruned mid-backfill keeps its members in dual read. `warn`: say so at
/// warning level, with each purpose routed to a credential some accounts
/// lack (at start); else at debug level (each refresh).
pub async fn with_known_splits(
    store: &Store,
    realms: Vec<Realm>,
    warn: bool,
) -> Result<Vec<Realm>, EngineError> {
    let mut out = Vec::with_capacity(realms.len());
    for realm in realms {
        let (realm, remembered) = realm.with_known_splits(store).await?;
        for split in remembered {
            let (realm, cutover) = (&realm.policy.realm, &split.cutover);
            if warn {
                warn!(%realm, %cutover, "{split}");
            } else {
                tracing::debug!(%realm, %cutover, "{split}");
            }
        }
        if warn {
            for unheld in realm.unheld_routes(store, Timestamp::now()).await? {
                warn!(realm = %realm.policy.realm, purpose = %unheld.purpose, credential = %unheld.credential,
                      lacking = unheld.lacking, accounts = unheld.accounts, "{unheld}");
            }
        }
        out.push(realm);
    }
    Ok(out)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    outcome: &'static str,
}

/// Why the API cannot start, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read the store at start: {0}")]
    Engine(#[from] EngineError),
    #[error("cannot measure the cost of a verify at start: {0}")]
    Hashing(#[from] hashing::Overloaded),
    #[error("{0}")]
    Tls(String),
    #[error("the listening socket failed: {0}")]
    Socket(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Shared state of the API.
pub struct Api {
    pub store: Store,
    pub hasher: HashPool,
    pub sealer: Option<Sealer>,
    /// The realms it answers for; replaced as the cluster's resources change.
    pub realms: tokio::sync::RwLock<Vec<Realm>>,
    pub tokens: Tokens,
    pub throttle: Throttle,
    /// The throttling keys being checked here, one check at a time each.
    in_flight: InFlight,
    requests: Family<RequestLabels, Counter>,
    registry: Registry,
}

impl Api {
    /// The API on `store`, hashing in `hasher`. Measures the default argon2id
    /// on this machine to make sure `throttle.min_denial_time` exceeds the
    /// slowest verify the hashing budget allows, raising it if not.
    pub async fn new(
        store: Store,
        sealer: Option<Sealer>,
        realms: Vec<Realm>,
        tokens: Tokens,
        mut throttle: Throttle,
        hasher: HashPool,
    ) -> Result<Arc<Api>, ServeError> {
        let realms = with_known_splits(&store, realms, true).await?;
        // The costliest argon2id any realm's policy asks for.
        let policy_ns = realms
            .iter()
            .flat_map(|r| r.policy.credentials.values())
            .map(|c| hashing::argon2_cost_ns(c.hashing))
            .max()
            .unwrap_or(0);
        let floor = hasher
            .run(move || hashing::slowest_verify_here(policy_ns))
            .await?
            .mul_f64(1.5);
        if throttle.min_denial_time < floor {
            warn!(
                configured_ms = throttle.min_denial_time.as_millis() as u64,
                raised_to_ms = floor.as_millis() as u64,
                "--min-denial-time is below the slowest verify the hashing budget allows here; raised"
            );
            throttle.min_denial_time = floor;
        }
        info!(
            min_denial_time_ms = throttle.min_denial_time.as_millis() as u64,
            hash_threads = hasher.size().threads,
            hash_queue = hasher.size().queue,
            "answers that must not tell accounts apart are padded"
        );
        let mut registry = Registry::with_prefix("credshift_api");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "API requests by endpoint and outcome",
            requests.clone(),
        );
        hasher.register(&mut registry);
        Ok(Arc::new(Api {
            store,
            hasher,
            sealer,
            realms: tokio::sync::RwLock::new(realms),
            tokens,
            throttle,
            in_flight: InFlight::default(),
            requests,
            registry,
        }))
    }

    /// The padding floor in force (the flag, or what [`Api::new`] raised it to).
    pub fn min_denial_time(&self) -> Duration {
        self.throttle.min_denial_time
    }

    fn count(&self, endpoint: &'static str, outcome: &'static str) {
        self.requests
            .get_or_create(&RequestLabels { endpoint, outcome })
            .inc();
    }

    /// The realm's policy and cutovers; their progress is not read here.
    async fn realm(&self, name: &str) -> Option<Realm> {
        self.realms
            .read()
            .await
            .iter()
            .find(|r| r.policy.realm == name)
            .cloned()
    }

    /// The active account, or `None` (unknown, suspended or closed look alike).
    async fn active_account(
        &self,
        realm: &str,
        login_id: &str,
    ) -> Result<Option<Account>, EngineError> {
        if crate::names::LoginId::parse(login_id).is_err() {
            return Ok(None);
        }
        Ok(self
            .store
            .find_account(realm, login_id)
            .await?
            .filter(|a| a.state == AccountState::Active))
    }
}

/// Every endpoint, with its description; `shed` puts load shedding in
/// front of the endpoints that hash.
fn endpoints(
    shed: impl FnOnce(OpenApiRouter<Arc<Api>>) -> OpenApiRouter<Arc<Api>>,
) -> OpenApiRouter<Arc<Api>> {
    let mut hashing = OpenApiRouter::new()
        .routes(routes!(verify::verify))
        .routes(routes!(change::change))
        .routes(routes!(recovery::helpdesk_reset))
        .routes(routes!(radius::authenticate));
    description::guarded_by(
        hashing.get_openapi_mut(),
        throttle::SHED_REFUSALS,
        description::every,
    );
    let mut all = OpenApiRouter::with_openapi(description::base())
        .merge(shed(hashing))
        // Issuing a ticket hashes nothing slow: never shed with the pool.
        .routes(routes!(recovery::recovery))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics));
    let doc = all.get_openapi_mut();
    description::guarded_by(doc, answer::BODY_REFUSALS, description::has_body);
    for layer in [
        request::CALLER_REFUSALS,
        server::DEADLINE_REFUSALS,
        answer::STORE_REFUSALS,
    ] {
        description::guarded_by(doc, layer, description::authenticated);
    }
    all
}

/// The OpenAPI description of every endpoint, as `api/openapi.json` holds
/// it and `/openapi.json` serves it.
pub fn openapi_json() -> String {
    description::to_json(&endpoints(|hashing| hashing).into_openapi())
}

/// The router with every endpoint.
pub fn router(api: Arc<Api>) -> Router {
    let shed = axum::middleware::from_fn_with_state(api.clone(), throttle::shed_when_full);
    let (router, doc) = endpoints(|hashing| hashing.route_layer(shed)).split_for_parts();
    let openapi = axum::body::Bytes::from(description::to_json(&doc));
    router
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], openapi) }),
        )
        .fallback(answer::not_found)
        .method_not_allowed_fallback(answer::method_not_allowed)
        .layer(DefaultBodyLimit::max(16 * 1024))
        .with_state(api)
}

/// Serves until `shutdown`, within `limits`; TLS when a certificate and
/// key are given.
pub async fn serve(
    api: Arc<Api>,
    addr: SocketAddr,
    tls: Option<(PathBuf, PathBuf)>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tls = match tls {
        Some((cert, key)) => Some(server::tls_config(&cert, &key)?),
        None => None,
    };
    let listener = server::bind(addr).await?;
    server::run(listener, router(api), tls, limits, shutdown).await
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", responses((status = OK, description = "alive", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the store answers.
#[utoipa::path(get, path = "/readyz", responses(
    (status = OK, description = "ready", body = String),
    (status = SERVICE_UNAVAILABLE, description = "not ready: the store does not answer within 2 s", body = String),
))]
async fn readyz(State(api): State<Arc<Api>>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), api.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok").into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "store not answering").into_response(),
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses(
    (status = OK, description = "OpenMetrics text", body = String,
     content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
))]
async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &api.registry).is_err() {
        out.clear();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
