//! Throttling and load shedding: failed guesses per key, requests per
//! client or caller, the padding of answers that must not tell accounts
//! apart, and the `503` given when every hashing slot is taken.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;

use super::Api;
use super::answer::{ApiError, Documented};
use crate::engine::guesses::{self, GuessLimit};
use crate::hashing::HashPool;
use crate::store::FailureKey;

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
    pub(super) fn limit(&self) -> GuessLimit {
        GuessLimit {
            failures: self.failures,
            window: self.window,
            account_failures: self.account_failures,
        }
    }

    /// Waits until the padding floor has passed since `started`.
    pub(super) async fn pad(&self, started: Instant) {
        let until = started + self.min_denial_time;
        tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
    }
}

impl Api {
    /// This process's turn to check a guess at `key` (realm, login ID,
    /// purpose, client): the wait for it holds no hashing slot, and a caller
    /// that hangs up leaves the line. A full line for the key is shed like a
    /// full pool (503, whether or not the account exists).
    pub(super) async fn guess_turn(
        &self,
        endpoint: &'static str,
        key: &str,
    ) -> Result<guesses::Turn<'_>, ApiError> {
        self.in_flight.turn(key).await.ok_or_else(|| {
            self.count(endpoint, "shed");
            ApiError::overloaded()
        })
    }

    /// Counts one request of `who` at `endpoint` in the throttling window;
    /// past `max`, the `429` answer (counted under `outcome`). `whom` says
    /// what `who` is: `"caller"` (a token's name) or `"client"` (a realm
    /// and client identity); each has its own counters.
    pub(super) async fn rate_limited(
        &self,
        (endpoint, outcome, whom): (&'static str, &'static str, &'static str),
        who: &str,
        max: u32,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let scope = format!("{endpoint}-{whom}");
        let allowed = self
            .store
            .rate_limit(&scope, who, self.throttle.window, max, now)
            .await?;
        if allowed {
            return Ok(());
        }
        self.count(endpoint, outcome);
        Err(ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many {endpoint} requests from this {whom} in the window"),
        ))
    }

    /// Counts a failed guess, before the turn of its key is given up so
    /// that the next guess sees it. Should the store fail, the caller gets
    /// an error rather than an answer whose guess went uncounted.
    pub(super) async fn count_failure(
        &self,
        key: &FailureKey<'_>,
        account_exists: bool,
    ) -> Result<(), ApiError> {
        self.store.count_failure(key, account_exists).await?;
        Ok(())
    }

    /// A slot in the hashing pool for one request, or the `503` to answer.
    pub(super) fn admit(&self, endpoint: &'static str) -> Result<HashPool, ApiError> {
        self.hasher.admit().map_err(|_| {
            self.count(endpoint, "shed");
            ApiError::overloaded()
        })
    }
}

/// What [`shed_when_full`] answers in front of the endpoints that hash.
pub const SHED_REFUSALS: &[Documented] = &[Documented {
    retry_after: true,
    ..Documented::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "every hashing slot is taken; retry after Retry-After seconds",
    )
}];

/// Answers `503` at once, before the body is read or the caller
/// authenticated, when every hashing slot is taken: under overload a
/// request that would be shed costs as little as it can. (Decided before
/// anything about the account is known, so it tells nothing about it.)
pub(super) async fn shed_when_full(
    State(api): State<Arc<Api>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if api.hasher.shed_if_full() {
        let endpoint = match request.uri().path() {
            "/v1/verify" | "/v1/radius/authenticate" => "verify",
            "/v1/change" => "change",
            _ => "helpdesk_reset",
        };
        api.count(endpoint, "shed");
        return ApiError::overloaded().into_response();
    }
    next.run(request).await
}
