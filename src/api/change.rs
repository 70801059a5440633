//! `POST /v1/change`: a member changes a password through a channel (the
//! portal's password-change screen, the connection utility). Which
//! credential a purpose changes, and whether the channel may change it,
//! follow the policy and the routing of the instant.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use super::Api;
use super::answer::{Answer, ApiError, Body, reply};
use super::request::{bounded, caller_with_progress, client_of};
use crate::engine::members::Refusal;
use crate::names::LoginId;
use crate::store::FailureKey;

#[derive(Deserialize)]
pub(super) struct ChangeRequest {
    realm: String,
    login_id: String,
    purpose: String,
    current_password: String,
    new_password: String,
    #[serde(default)]
    client: Option<String>,
}

/// How a refusal by the policy is answered.
fn refused(refusal: &Refusal) -> ApiError {
    let status = match refusal {
        Refusal::ChannelNotAllowed { .. } => StatusCode::FORBIDDEN,
        Refusal::UnknownPurpose => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(status, refusal.code(), refusal.to_string())
}

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
    let client = client_of(req.client.as_deref(), &caller)?;
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
            Ok(reply(StatusCode::OK, json!({ "result": "changed" })))
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
