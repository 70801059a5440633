//! `POST /v1/verify`: does this password answer this purpose for this
//! member now? RADIUS, the portal, the mail and FTP servers ask; the
//! routing of the instant decides which credential answers.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::json;

use super::answer::{Answer, ApiError, Body, reply};
use super::request::{bounded, caller_for, client_of};
use super::{Api, Caller};
use crate::engine::VerifyOutcome;
use crate::engine::members::{LoginVerify, Realm};
use crate::names::LoginId;
use crate::store::FailureKey;

#[derive(Deserialize)]
pub(super) struct VerifyRequest {
    pub(super) realm: String,
    pub(super) login_id: String,
    pub(super) purpose: String,
    pub(super) password: String,
    /// Who the member is, as the caller sees it (address, calling-station id).
    #[serde(default)]
    pub(super) client: Option<String>,
}

/// What a verify came to, before it is said in a protocol's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The password answers the purpose.
    Match,
    /// A temporary password: it opens nothing but the change of itself.
    MustChange,
    /// Wrong, unknown or throttled: alike, and padded to the same time.
    Denied,
}

pub(super) async fn verify(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Body(req): Body<VerifyRequest>,
) -> Answer {
    Ok(match check(&api, &headers, req).await? {
        Verdict::Match => reply(
            StatusCode::OK,
            json!({ "result": "ok", "must_change": false }),
        ),
        Verdict::MustChange => reply(
            StatusCode::FORBIDDEN,
            json!({ "result": "must_change", "must_change": true }),
        ),
        Verdict::Denied => reply(StatusCode::UNAUTHORIZED, json!({ "result": "denied" })),
    })
}

/// Checks `req` for the caller of `headers`: throttling, the hash, the
/// counts, and the padding of every denial; counted in `/metrics` as
/// `verify`.
pub(super) async fn check(
    api: &Arc<Api>,
    headers: &HeaderMap,
    req: VerifyRequest,
) -> Result<Verdict, ApiError> {
    let started = Instant::now();
    let (caller, realm) = caller_for(api, headers, &req.realm).await?;
    check_for(api, &caller, &realm, req, started).await
}

/// [`check`] for a caller already authenticated for `realm`, from `started`
/// (what denials are padded from).
pub(super) async fn check_for(
    api: &Arc<Api>,
    caller: &Caller,
    realm: &Realm,
    req: VerifyRequest,
    started: Instant,
) -> Result<Verdict, ApiError> {
    // Decided before the account is looked up, so it tells nothing about it.
    if !realm.policy.purposes.contains_key(&req.purpose) {
        return Err(ApiError::unknown_purpose());
    }
    let password = bounded("password", req.password)?;
    let client = client_of(req.client.as_deref(), caller)?;
    // Every denial looks and lasts alike, whatever the reason.
    let denied = |outcome: &'static str| async move {
        api.count("verify", outcome);
        api.throttle.pad(started).await;
        Ok(Verdict::Denied)
    };
    // A login ID that cannot exist is looked up nowhere, counted nowhere,
    // hashed against nothing, and answered alike.
    if LoginId::parse(&req.login_id).is_err() {
        return denied("denied").await;
    }
    let streak = format!("{}/{}/{}", req.realm, req.login_id, req.purpose);
    let key = format!("{streak}/{client}");
    let turn = api.guess_turn("verify", &streak).await?;
    let hasher = api.admit("verify")?;
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
        .await?;
    // The slot is not held through the padding: that is sleep, not work.
    drop(hasher);
    let (outcome, account_exists) = match checked {
        Some(LoginVerify::Checked(o)) => (o, true),
        Some(LoginVerify::NoAccount) => (VerifyOutcome::NoCredential, false),
        // No hash at all; the padding hides that.
        Some(LoginVerify::Throttled) => {
            drop(turn);
            return denied("throttled").await;
        }
        None => return Err(ApiError::unknown_purpose()),
    };
    match outcome {
        VerifyOutcome::Match {
            must_change: true, ..
        } => {
            api.count("verify", "must_change");
            Ok(Verdict::MustChange)
        }
        VerifyOutcome::Match { .. } => {
            api.count("verify", "ok");
            Ok(Verdict::Match)
        }
        VerifyOutcome::Mismatch | VerifyOutcome::NoCredential => {
            api.count_failure(&guesses, account_exists).await?;
            drop(turn);
            denied("denied").await
        }
    }
}
