//! `credshift serve`: the member-facing API, the HTTP driver of
//! the engine. The portal, the connection utility, the help desk tool and
//! the RADIUS / mail / FTP servers call it as authenticated channels.

mod auth;
pub mod cluster;
mod server;

pub use auth::{Caller, Tokens};
pub use server::Limits;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::engine::guesses::{self, GuessLimit, InFlight};
use crate::engine::members::{LoginVerify, Realm, Refusal};
use crate::engine::recovery::HelpdeskCaller;
use crate::engine::{EngineError, VerifyOutcome};
use crate::hashing::{self, HashPool, Sealer, Secret};
use crate::store::{Account, AccountState, FailureKey, Store};

/// The OpenAPI description, committed as `api/openapi.json` and served as is.
pub const OPENAPI: &str = include_str!("../../api/openapi.json");

/// Failed-verify throttling: at most `failures` per `window` for one
/// (account, purpose, client); past that, answers are "denied" without a
/// check until the window ends. Keyed by the caller's `client` (the
/// member's address or RADIUS calling-station) so that an attacker can only
/// throttle the client identity it uses, never lock a member out everywhere.
/// How it is counted: [`crate::engine::guesses`].
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    pub failures: u32,
    /// Consecutive failures of one account and purpose, from any client,
    /// after which nothing more is checked until the streak ends (≤ 100).
    pub account_failures: u32,
    pub window: Duration,
    /// Recovery requests one client identity (the member's address as the
    /// caller sees it; the caller's token when it sends none) may make per
    /// `window`, whatever the accounts. Each account is limited on its own
    /// by its policy.
    pub recovery_per_client: u32,
    /// Help-desk resets one caller may make per `window` (all accounts).
    pub resets_per_caller: u32,
    /// Every answer that must not tell an existing account from an unknown
    /// one (a denied verify or change, every recovery answer) takes at least
    /// this long. Raised at start, if need be, above the slowest verify the
    /// hashing budget allows ([`Api::new`]).
    pub min_denial_time: Duration,
}

impl Throttle {
    fn limit(&self) -> GuessLimit {
        GuessLimit {
            failures: self.failures,
            window: self.window,
            account_failures: self.account_failures,
        }
    }
}

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

/// Waits until `floor` has passed since `started`.
async fn pad(started: std::time::Instant, floor: Duration) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(started + floor)).await;
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    outcome: &'static str,
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
    ) -> Result<Arc<Api>, String> {
        let realms = with_known_splits(&store, realms, true)
            .await
            .map_err(|e| e.to_string())?;
        // The costliest argon2id any realm's policy asks for.
        let policy_ns = realms
            .iter()
            .flat_map(|r| r.policy.credentials.values())
            .map(|c| hashing::argon2_cost_ns(c.hashing))
            .max()
            .unwrap_or(0);
        let floor = hasher
            .run(move || hashing::slowest_verify_here(policy_ns))
            .await
            .map_err(|e| e.to_string())?
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

    /// This process's turn to check a guess at `key` (realm, login ID,
    /// purpose, client): the wait for it holds no hashing slot, and a caller
    /// that hangs up leaves the line. A full line for the key is shed like a
    /// full pool (503, whether or not the account exists).
    async fn guess_turn(
        &self,
        endpoint: &'static str,
        key: &str,
    ) -> Result<guesses::Turn<'_>, Response> {
        self.in_flight.turn(key).await.ok_or_else(|| {
            self.count(endpoint, "shed");
            overloaded()
        })
    }

    /// Counts one request of `who` at `endpoint` in the throttling window;
    /// past `max`, the `429` answer (counted under `outcome`). `whom` says
    /// what `who` is: `"caller"` (a token's name) or `"client"` (a realm
    /// and client identity); each has its own counters.
    async fn rate_limited(
        &self,
        (endpoint, outcome, whom): (&'static str, &'static str, &'static str),
        who: &str,
        max: u32,
        now: Timestamp,
    ) -> Result<(), Response> {
        let scope = format!("{endpoint}-{whom}");
        match self
            .store
            .rate_limit(&scope, who, self.throttle.window, max, now)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.count(endpoint, outcome);
                Err(error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("too many {endpoint} requests from this {whom} in the window"),
                ))
            }
            Err(e) => Err(internal(e)),
        }
    }

    /// Counts a failed guess, before the turn of its key is given up so
    /// that the next guess sees it. Should the store fail, the caller gets
    /// an error rather than an answer whose guess went uncounted.
    async fn count_failure(
        &self,
        key: &FailureKey<'_>,
        account_exists: bool,
    ) -> Result<(), Response> {
        match self.store.count_failure(key, account_exists).await {
            Ok(_) => Ok(()),
            Err(e) => Err(internal(e)),
        }
    }

    /// A slot in the hashing pool for one request, or the `503` to answer.
    // The error is the answer itself, returned by the handler at once.
    #[allow(clippy::result_large_err)]
    fn admit(&self, endpoint: &'static str) -> Result<HashPool, Response> {
        self.hasher.admit().map_err(|_| {
            self.count(endpoint, "shed");
            overloaded()
        })
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

/// The router with every endpoint.
pub fn router(api: Arc<Api>) -> Router {
    let hashing = Router::new()
        .route("/v1/verify", post(verify))
        .route("/v1/change", post(change))
        .route("/v1/helpdesk/reset", post(helpdesk_reset))
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            shed_when_full,
        ));
    Router::new()
        .merge(hashing)
        // Issuing a ticket hashes nothing slow: never shed with the pool.
        .route("/v1/recovery", post(recovery))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(16 * 1024))
        .with_state(api)
}

/// Answers `503` at once, before the body is read or the caller
/// authenticated, when every hashing slot is taken: under overload a
/// request that would be shed costs as little as it can. (Decided before
/// anything about the account is known, so it tells nothing about it.)
async fn shed_when_full(
    State(api): State<Arc<Api>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if api.hasher.shed_if_full() {
        let endpoint = match request.uri().path() {
            "/v1/verify" => "verify",
            "/v1/change" => "change",
            _ => "helpdesk_reset",
        };
        api.count(endpoint, "shed");
        return overloaded();
    }
    next.run(request).await
}

/// Serves until `shutdown`, within `limits`; TLS when a certificate and
/// key are given.
pub async fn serve(
    api: Arc<Api>,
    addr: SocketAddr,
    tls: Option<(PathBuf, PathBuf)>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let tls = match tls {
        Some((cert, key)) => Some(server::tls_config(&cert, &key)?),
        None => None,
    };
    let listener = server::bind(addr).await?;
    server::run(listener, router(api), tls, limits, shutdown).await
}

/// A JSON answer. None may be kept by a cache or a browser's history: a
/// help-desk reset carries a temporary password, and the others say things
/// about a member's account.
fn reply(status: StatusCode, body: Value) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    reply(status, json!({ "error": code, "message": message.into() }))
}

/// Every hashing slot is taken: come back in a second.
fn overloaded() -> Response {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "the service is at capacity; retry after the delay in Retry-After",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

/// Refuses a password field over [`hashing::MAX_PASSWORD_BYTES`] before it
/// goes anywhere near a hash.
// The error is the answer itself, returned by the handler at once.
#[allow(clippy::result_large_err)]
fn bounded(field: &'static str, password: String) -> Result<Secret, Response> {
    if password.len() > hashing::MAX_PASSWORD_BYTES {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "password_too_long",
            format!(
                "{field} is longer than {} bytes",
                hashing::MAX_PASSWORD_BYTES
            ),
        ));
    }
    Ok(Secret::new(password))
}

/// The throttling identity of a request: the caller's `client` if valid,
/// else the caller's token name.
// The error is the answer itself, returned by the handler at once.
#[allow(clippy::result_large_err)]
fn client_of<'a>(client: Option<&'a str>, caller: &'a Caller) -> Result<&'a str, Response> {
    match client {
        None => Ok(&caller.name),
        Some(c) => crate::names::ClientId::parse(c).map(|_| c).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                format!("client {e}"),
            )
        }),
    }
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "request failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the service cannot answer now; retry later",
    )
}

/// Authenticates the caller and checks the realm; `Err` is the response.
async fn caller_for(
    api: &Api,
    headers: &HeaderMap,
    realm: &str,
) -> Result<(Caller, Realm), Response> {
    let caller = api.tokens.authenticate(headers).ok_or_else(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a valid bearer token is required",
        )
    })?;
    if !caller.realms.iter().any(|r| r == realm || r == "*") {
        return Err(error(
            StatusCode::FORBIDDEN,
            "realm_not_allowed",
            "this token is not for that realm",
        ));
    }
    match api.realm(realm).await {
        Some(r) => Ok((caller, r)),
        None => Err(error(
            StatusCode::NOT_FOUND,
            "unknown_realm",
            "no CredentialPolicy for that realm",
        )),
    }
}

/// [`caller_for`], with the progress of the realm's cutovers read from the
/// store, for the calls that route by it. (A verify reads it in its own
/// snapshot.)
async fn caller_with_progress(
    api: &Api,
    headers: &HeaderMap,
    realm: &str,
) -> Result<(Caller, Realm), Response> {
    let (caller, realm) = caller_for(api, headers, realm).await?;
    match realm.with_progress(&api.store).await {
        Ok(realm) => Ok((caller, realm)),
        Err(e) => Err(internal(e)),
    }
}

#[derive(Deserialize)]
struct VerifyRequest {
    realm: String,
    login_id: String,
    purpose: String,
    password: String,
    /// Who the member is, as the caller sees it (address, calling-station id).
    #[serde(default)]
    client: Option<String>,
}

fn denied() -> Response {
    reply(StatusCode::UNAUTHORIZED, json!({ "result": "denied" }))
}

async fn verify(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Json(req): Json<VerifyRequest>,
) -> Response {
    let started = std::time::Instant::now();
    let (caller, realm) = match caller_for(&api, &headers, &req.realm).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // Decided before the account is looked up, so it tells nothing about it.
    if !realm.policy.purposes.contains_key(&req.purpose) {
        return error(
            StatusCode::BAD_REQUEST,
            "unknown_purpose",
            "no such purpose in the policy",
        );
    }
    let password = match bounded("password", req.password) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let client = match client_of(req.client.as_deref(), &caller) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let denied_after_pad = || async {
        api.count("verify", "denied");
        pad(started, api.throttle.min_denial_time).await;
        denied()
    };
    // A login ID that cannot exist is looked up nowhere, counted nowhere,
    // hashed against nothing, and answered alike.
    if crate::names::LoginId::parse(&req.login_id).is_err() {
        return denied_after_pad().await;
    }
    let streak = format!("{}/{}/{}", req.realm, req.login_id, req.purpose);
    let key = format!("{streak}/{client}");
    let turn = match api.guess_turn("verify", &streak).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let hasher = match api.admit("verify") {
        Ok(h) => h,
        Err(r) => return r,
    };
    let guesses = FailureKey {
        key: &key,
        streak: &streak,
        window: api.throttle.window,
        now: Timestamp::now(),
    };
    let checked = realm
        .verify(
            &api.store,
            &hasher,
            &req.login_id,
            &req.purpose,
            password,
            api.throttle.limit(),
            &guesses,
        )
        .await;
    let mut account_exists = true;
    let outcome = match checked {
        Ok(Some(LoginVerify::Checked(o))) => o,
        Ok(Some(LoginVerify::NoAccount)) => {
            account_exists = false;
            VerifyOutcome::NoCredential
        }
        Ok(Some(LoginVerify::Throttled)) => {
            // No hash at all; the padding hides that.
            drop((hasher, turn));
            api.count("verify", "throttled");
            pad(started, api.throttle.min_denial_time).await;
            return denied();
        }
        Ok(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "unknown_purpose",
                "no such purpose in the policy",
            );
        }
        Err(e) => return internal(e),
    };
    // The slot is not held through the padding: that is sleep, not work.
    drop(hasher);
    match outcome {
        // A temporary password opens nothing but the change of itself.
        VerifyOutcome::Match {
            must_change: true, ..
        } => {
            api.count("verify", "must_change");
            reply(
                StatusCode::FORBIDDEN,
                json!({ "result": "must_change", "must_change": true }),
            )
        }
        VerifyOutcome::Match { .. } => {
            api.count("verify", "ok");
            reply(
                StatusCode::OK,
                json!({ "result": "ok", "must_change": false }),
            )
        }
        VerifyOutcome::Mismatch | VerifyOutcome::NoCredential => {
            if let Err(r) = api.count_failure(&guesses, account_exists).await {
                return r;
            }
            drop(turn);
            denied_after_pad().await
        }
    }
}

#[derive(Deserialize)]
struct ChangeRequest {
    realm: String,
    login_id: String,
    purpose: String,
    current_password: String,
    new_password: String,
    #[serde(default)]
    client: Option<String>,
}

async fn change(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Json(req): Json<ChangeRequest>,
) -> Response {
    let started = std::time::Instant::now();
    let (caller, realm) = match caller_with_progress(&api, &headers, &req.realm).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // Which credential a change applies to, and whether this channel may
    // change it, does not depend on the account: answer before looking it up.
    let Some(governing) = realm.governing(&req.purpose, Timestamp::now()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "unknown_purpose",
            "no such purpose in the policy",
        );
    };
    if let Err(refusal) = realm.channel_may_change(&governing, &caller.channel) {
        api.count("change", "refused");
        return error(StatusCode::FORBIDDEN, refusal.code(), refusal.to_string());
    }
    let current = match bounded("current_password", req.current_password) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let new = match bounded("new_password", req.new_password) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let client = match client_of(req.client.as_deref(), &caller) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let wrong_after_pad = || async {
        api.count("change", "denied");
        pad(started, api.throttle.min_denial_time).await;
        error(
            StatusCode::FORBIDDEN,
            "wrong_current_password",
            "the current password is wrong",
        )
    };
    if crate::names::LoginId::parse(&req.login_id).is_err() {
        return wrong_after_pad().await;
    }
    let streak = format!("{}/{}/{}", req.realm, req.login_id, req.purpose);
    let key = format!("{streak}/{client}");
    let turn = match api.guess_turn("change", &streak).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let hasher = match api.admit("change") {
        Ok(h) => h,
        Err(r) => return r,
    };
    let now = Timestamp::now();
    let guesses = FailureKey {
        key: &key,
        streak: &streak,
        window: api.throttle.window,
        now,
    };
    match api.store.failures(&guesses).await {
        Ok(n) if api.throttle.limit().allows(&n, now) => {}
        Ok(_) => {
            drop((hasher, turn));
            api.count("change", "throttled");
            pad(started, api.throttle.min_denial_time).await;
            return error(
                StatusCode::FORBIDDEN,
                "wrong_current_password",
                "the current password is wrong",
            );
        }
        Err(e) => return internal(e),
    }
    let account = match api.active_account(&req.realm, &req.login_id).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            realm.equal_cost(&hasher, &req.purpose, current, now).await;
            drop(hasher);
            if let Err(r) = api.count_failure(&guesses, false).await {
                return r;
            }
            drop(turn);
            return wrong_after_pad().await;
        }
        Err(e) => return internal(e),
    };
    let changed = realm
        .change(
            &api.store,
            &hasher,
            &account,
            &caller.channel,
            &req.purpose,
            current,
            new,
            now,
        )
        .await;
    drop(hasher);
    // Only a wrong current password counts as a failed guess.
    if matches!(changed, Ok(Err(Refusal::WrongCurrentPassword)))
        && let Err(r) = api.count_failure(&guesses, true).await
    {
        return r;
    }
    // A new password ends the streak of failures at it.
    if matches!(changed, Ok(Ok(())))
        && let Err(e) = api.store.end_streak(&streak).await
    {
        warn!(error = %e, "could not end a streak of failed guesses");
    }
    drop(turn);
    match changed {
        Ok(Ok(())) => {
            api.count("change", "changed");
            info!(realm = %req.realm, login_id = %req.login_id, purpose = %req.purpose, channel = %caller.channel, "password changed");
            reply(StatusCode::OK, json!({ "result": "changed" }))
        }
        Ok(Err(Refusal::WrongCurrentPassword)) => wrong_after_pad().await,
        Ok(Err(refusal)) => {
            api.count("change", "refused");
            let status = match refusal {
                Refusal::ChannelNotAllowed { .. } => StatusCode::FORBIDDEN,
                Refusal::UnknownPurpose => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            error(status, refusal.code(), refusal.to_string())
        }
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct RecoveryRequest {
    realm: String,
    login_id: String,
    purpose: String,
    /// Who asks, as the caller sees it (the member's address): the key of
    /// the per-client limit, so that one person cannot use up the portal's.
    #[serde(default)]
    client: Option<String>,
}

async fn recovery(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Json(req): Json<RecoveryRequest>,
) -> Response {
    let started = std::time::Instant::now();
    let (caller, realm) = match caller_with_progress(&api, &headers, &req.realm).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = Timestamp::now();
    let client = match client_of(req.client.as_deref(), &caller) {
        Ok(c) => c,
        Err(r) => return r,
    };
    // Decided on the client alone, before the account is looked up.
    if let Err(r) = api
        .rate_limited(
            ("recovery", "rate_limited", "client"),
            &format!("{}/{client}", req.realm),
            api.throttle.recovery_per_client,
            now,
        )
        .await
    {
        return r;
    }
    let Some(sealer) = &api.sealer else {
        return internal("no outbox key configured");
    };
    let account = match api.active_account(&req.realm, &req.login_id).await {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    let requested = realm
        .request_recovery(&api.store, sealer, account.as_ref(), &req.purpose, now)
        .await;
    match requested {
        Ok(outcome) => {
            // The public metrics must not tell an issued ticket from an
            // unknown account; the outcome goes to the (ops-only) debug log.
            api.count("recovery", "accepted");
            tracing::debug!(realm = %req.realm, outcome = outcome.name(), "recovery request");
            pad(started, api.throttle.min_denial_time).await;
            reply(StatusCode::ACCEPTED, json!({ "result": "accepted" }))
        }
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct ResetRequest {
    realm: String,
    login_id: String,
    purpose: String,
}

async fn helpdesk_reset(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Json(req): Json<ResetRequest>,
) -> Response {
    let (caller, realm) = match caller_with_progress(&api, &headers, &req.realm).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // Resets go through the helpdesk channel only; an administrator token
    // (still a helpdesk token) may reset any credential, not just Helpdesk ones.
    if caller.channel != "helpdesk" {
        return error(
            StatusCode::FORBIDDEN,
            "channel_not_allowed",
            "only the helpdesk channel can reset passwords",
        );
    }
    let now = Timestamp::now();
    if let Err(r) = api
        .rate_limited(
            ("helpdesk_reset", "rate_limited", "caller"),
            &caller.name,
            api.throttle.resets_per_caller,
            now,
        )
        .await
    {
        return r;
    }
    let hasher = match api.admit("helpdesk_reset") {
        Ok(h) => h,
        Err(r) => return r,
    };
    let account = match api.store.find_account(&req.realm, &req.login_id).await {
        // A closed account has no member to give a password to.
        Ok(Some(a)) if a.state == AccountState::Closed => {
            api.count("helpdesk_reset", "refused");
            return error(
                StatusCode::CONFLICT,
                "account_closed",
                "the account is closed",
            );
        }
        Ok(Some(a)) => a,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "unknown_account",
                "no such login ID in the realm",
            );
        }
        Err(e) => return internal(e),
    };
    match realm
        .helpdesk_reset(
            &api.store,
            &hasher,
            &account,
            &req.purpose,
            HelpdeskCaller {
                name: &caller.name,
                administrator: caller.administrator,
            },
            now,
        )
        .await
    {
        Ok(Some(Ok(temp))) => {
            // A new password ends every streak of failures at the account.
            for purpose in realm.policy.purposes.keys() {
                let streak = format!("{}/{}/{purpose}", req.realm, req.login_id);
                if let Err(e) = api.store.end_streak(&streak).await {
                    warn!(error = %e, "could not end a streak of failed guesses");
                }
            }
            api.count("helpdesk_reset", "reset");
            info!(realm = %req.realm, login_id = %req.login_id, purpose = %req.purpose, caller = %caller.name, "help-desk reset");
            reply(
                StatusCode::OK,
                json!({ "temporary_password": temp.expose(), "must_change": true }),
            )
        }
        Ok(Some(Err(credential))) => {
            api.count("helpdesk_reset", "refused");
            error(
                StatusCode::FORBIDDEN,
                "not_helpdesk_recoverable",
                format!("the {credential} password is not recovered by the help desk"),
            )
        }
        Ok(None) => error(
            StatusCode::BAD_REQUEST,
            "unknown_purpose",
            "no such purpose in the policy",
        ),
        Err(e) => internal(e),
    }
}

async fn readyz(State(api): State<Arc<Api>>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), api.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok").into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "store not answering").into_response(),
    }
}

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
