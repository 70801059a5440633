//! `POST /v1/change`: a member changes a password through a channel (the
//! portal's password-change screen, the connection utility). Which
//! credential a purpose changes, and whether the channel may change it,
//! follow the policy and the routing of the instant.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use utoipa::ToSchema;

use super::Api;
use super::answer::{Answer, ApiError, Body, Problem, reply};
use super::request::{Client, Password, bounded, caller_with_progress, client_of};
use crate::engine::members::Refusal;
use crate::names::LoginId;
use crate::store::FailureKey;

#[derive(Deserialize, ToSchema)]
pub(super) struct ChangeRequest {
    #[schema(example = "wakwak")]
    realm: String,
    #[schema(example = "ab000001")]
    login_id: String,
    #[schema(example = "support-portal")]
    purpose: String,
    current_password: Password,
    new_password: Password,
    #[serde(default)]
    client: Option<Client>,
}

/// What a change answers.
#[derive(Serialize, ToSchema)]
pub(super) struct ChangeResult {
    result: Changed,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum Changed {
    Changed,
}

/// How a refusal by the policy is answered.
fn refused(refusal: &Refusal) -> ApiError {
    match refusal {
        Refusal::UnknownPurpose => ApiError::unknown_purpose(),
        Refusal::ChannelNotAllowed { .. } | Refusal::WrongCurrentPassword => {
            ApiError::forbidden(refusal.code(), refusal.to_string())
        }
        Refusal::TooShort { .. }
        | Refusal::TooLong { .. }
        | Refusal::SameAsLoginId
        | Refusal::Blocklisted
        | Refusal::ReusedPassword => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            refusal.code(),
            refusal.to_string(),
        ),
    }
}

/// Change a password through the caller's channel.
///
/// Refused with a reason code when the channel may not change the
/// credential routed for the purpose at this instant, or the new password
/// breaks the policy's rules. During a cutover the other new credentials
/// are materialised from the old one in the same transaction.
#[utoipa::path(
    post,
    path = "/v1/change",
    request_body = ChangeRequest,
    security(("bearer" = [])),
    responses(
        (status = OK, description = "changed", body = ChangeResult),
        (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json",
         description = "a password field over 1024 bytes (password_too_long) or an invalid client (invalid_client)"),
        (status = FORBIDDEN, body = Problem, content_type = "application/problem+json",
         description = "the channel may not change this credential now (channel_not_allowed), or the current password is wrong (wrong_current_password)"),
        (status = NOT_FOUND, body = Problem, content_type = "application/problem+json",
         description = "the purpose is not in the realm's policy (unknown_purpose)"),
        (status = UNPROCESSABLE_ENTITY, body = Problem, content_type = "application/problem+json",
         description = "the new password breaks a rule of the policy (too_short, too_long, same_as_login_id, blocklisted, reused_password)"),
    ),
)]
pub(super) async fn change(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Body(req): Body<ChangeRequest>,
) -> Answer {
    let started = Instant::now();
    let (caller, realm) = caller_with_progress(&api, &headers, &req.realm).await?;
    // Which credential a change applies to, and whether this channel may
    // change it, does not depend on the account: answer before looking it up.
    let governing = realm
        .governing(&req.purpose, Timestamp::now())
        .ok_or_else(ApiError::unknown_purpose)?;
    if let Err(refusal) = realm.channel_may_change(&governing, &caller.channel) {
        api.count("change", "refused");
        return Err(ApiError::forbidden(refusal.code(), refusal.to_string()));
    }
    let current = bounded("current_password", req.current_password)?;
    let new = bounded("new_password", req.new_password)?;
    let client = client_of(req.client.as_ref(), &caller)?;
    // Every wrong current password looks and lasts alike, whatever the reason.
    let wrong = |outcome: &'static str| {
        let api = &api;
        async move {
            api.count("change", outcome);
            api.throttle.pad(started).await;
            Err(ApiError::forbidden(
                "wrong_current_password",
                "the current password is wrong",
            ))
        }
    };
    if LoginId::parse(&req.login_id).is_err() {
        return wrong("denied").await;
    }
    let streak = format!("{}/{}/{}", req.realm, req.login_id, req.purpose);
    let key = format!("{streak}/{client}");
    let turn = api.guess_turn("change", &streak).await?;
    let hasher = api.admit("change")?;
    let now = Timestamp::now();
    let guesses = FailureKey {
        key: &key,
        streak: &streak,
        window: api.throttle.window,
        now,
    };
    if !api
        .throttle
        .limit()
        .allows(&api.store.failures(&guesses).await?, now)
    {
        drop((hasher, turn));
        return wrong("throttled").await;
    }
    let Some(account) = api.active_account(&req.realm, &req.login_id).await? else {
        realm.equal_cost(&hasher, &req.purpose, current, now).await;
        drop(hasher);
        api.count_failure(&guesses, false).await?;
        drop(turn);
        return wrong("denied").await;
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
        .await?;
    drop(hasher);
    match changed {
        Ok(()) => {
            // A new password ends the streak of failures at it.
            if let Err(e) = api.store.end_streak(&streak).await {
                warn!(error = %e, "could not end a streak of failed guesses");
            }
            drop(turn);
            api.count("change", "changed");
            info!(realm = %req.realm, login_id = %req.login_id, purpose = %req.purpose, channel = %caller.channel, "password changed");
            Ok(reply(
                StatusCode::OK,
                ChangeResult {
                    result: Changed::Changed,
                },
            ))
        }
        // Only a wrong current password counts as a failed guess.
        Err(Refusal::WrongCurrentPassword) => {
            api.count_failure(&guesses, true).await?;
            drop(turn);
            wrong("denied").await
        }
        Err(refusal) => {
            drop(turn);
            api.count("change", "refused");
            Err(refused(&refusal))
        }
    }
}
