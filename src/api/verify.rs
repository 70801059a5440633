//! `POST /v1/verify`: does this password answer this purpose for this
//! member now? RADIUS, the portal, the mail and FTP servers ask; the
//! routing of the instant decides which credential answers.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::answer::{Answer, ApiError, Body, Problem, reply};
use super::request::{Client, Password, bounded, caller_for, client_of};
use super::{Api, Caller};
use crate::engine::VerifyOutcome;
use crate::engine::members::{LoginVerify, Realm};
use crate::names::LoginId;
use crate::store::FailureKey;

#[derive(Deserialize, ToSchema)]
pub(super) struct VerifyRequest {
    #[schema(example = "wakwak")]
    pub(super) realm: String,
    #[schema(example = "ab000001")]
    pub(super) login_id: String,
    #[schema(example = "support-portal")]
    pub(super) purpose: String,
    pub(super) password: Password,
    #[serde(default)]
    pub(super) client: Option<Client>,
}

/// What a verify answers.
#[derive(Serialize, ToSchema)]
pub(super) struct VerifyResult {
    result: VerifyWord,
    /// true only with result must_change.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    must_change: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum VerifyWord {
    Ok,
    Denied,
    MustChange,
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

/// Verify a password for a purpose.
///
/// Unknown login ID, wrong password and a locked account give the same 401
/// and body, in comparable time. Failed attempts are throttled per
/// (account, purpose, client).
#[utoipa::path(
    post,
    path = "/v1/verify",
    request_body = VerifyRequest,
    security(("bearer" = [])),
    responses(
        (status = OK, description = "the password is right", body = VerifyResult),
        (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json",
         description = "a password over 1024 bytes (password_too_long) or an invalid client (invalid_client)"),
        (status = UNAUTHORIZED, description = "denied (VerifyResult)", content(
            (VerifyResult = "application/json"),
            (Problem = "application/problem+json"),
        )),
        (status = FORBIDDEN, description = "a live temporary password (VerifyResult with result must_change): it is good only for /v1/change", content(
            (VerifyResult = "application/json"),
            (Problem = "application/problem+json"),
        )),
        (status = NOT_FOUND, body = Problem, content_type = "application/problem+json",
         description = "the purpose is not in the realm's policy (unknown_purpose)"),
    ),
)]
pub(super) async fn verify(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Body(req): Body<VerifyRequest>,
) -> Answer {
    let (status, result, must_change) = match check(&api, &headers, req).await? {
        Verdict::Match => (StatusCode::OK, VerifyWord::Ok, Some(false)),
        Verdict::MustChange => (StatusCode::FORBIDDEN, VerifyWord::MustChange, Some(true)),
        Verdict::Denied => (StatusCode::UNAUTHORIZED, VerifyWord::Denied, None),
    };
    Ok(reply(
        status,
        VerifyResult {
            result,
            must_change,
        },
    ))
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
    let client = client_of(req.client.as_ref(), caller)?;
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
