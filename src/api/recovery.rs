//! Forgotten passwords. `POST /v1/recovery`: self-service, a temporary
//! password mailed to the member's base e-mail address (the member
//! support password); always the same answer, whether or not the account
//! exists. `POST /v1/helpdesk/reset`: the help desk gives the member a
//! temporary password (the only way for the connection password).

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
use super::request::{Client, caller_with_progress, client_of};
use crate::engine::recovery::{HelpdeskCaller, HelpdeskReset};
use crate::store::AccountState;

#[derive(Deserialize, ToSchema)]
pub(super) struct RecoveryRequest {
    #[schema(example = "wakwak")]
    realm: String,
    #[schema(example = "ab000001")]
    login_id: String,
    #[schema(example = "support-portal")]
    purpose: String,
    /// Who asks, as the caller sees it (the member's address): the key of
    /// the per-client limit (`--recovery-per-client`), so that one person
    /// cannot use up the portal's.
    #[serde(default)]
    client: Option<Client>,
}

/// What a recovery request answers, always.
#[derive(Serialize, ToSchema)]
pub(super) struct RecoveryResult {
    result: Accepted,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum Accepted {
    Accepted,
}

/// Request self-service recovery (forgotten password).
///
/// Always 202 with the same body, whether or not the account exists. When
/// the purpose's credential is recovered self-service now, a temporary
/// password is mailed to the member's base e-mail address.
#[utoipa::path(
    post,
    path = "/v1/recovery",
    request_body = RecoveryRequest,
    security(("bearer" = [])),
    responses(
        (status = ACCEPTED, description = "accepted", body = RecoveryResult),
        (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json",
         description = "an invalid client (invalid_client)"),
        (status = NOT_FOUND, body = Problem, content_type = "application/problem+json",
         description = "the purpose is not in the realm's policy (unknown_purpose)"),
        (status = TOO_MANY_REQUESTS, body = Problem, content_type = "application/problem+json",
         description = "this client made too many recovery requests in the window (rate_limited, --recovery-per-client)"),
    ),
)]
pub(super) async fn recovery(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Body(req): Body<RecoveryRequest>,
) -> Answer {
    let started = Instant::now();
    let (caller, realm) = caller_with_progress(&api, &headers, &req.realm).await?;
    let now = Timestamp::now();
    let client = client_of(req.client.as_ref(), &caller)?;
    // Decided on the client alone, before the account is looked up.
    api.rate_limited(
        ("recovery", "rate_limited", "client"),
        &format!("{}/{client}", req.realm),
        api.throttle.recovery_per_client,
        now,
    )
    .await?;
    let sealer = api
        .sealer
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("no outbox key configured"))?;
    let account = api.active_account(&req.realm, &req.login_id).await?;
    let outcome = realm
        .request_recovery(&api.store, sealer, account.as_ref(), &req.purpose, now)
        .await?;
    // The public metrics must not tell an issued ticket from an unknown
    // account; the outcome goes to the (ops-only) debug log.
    api.count("recovery", "accepted");
    tracing::debug!(realm = %req.realm, outcome = outcome.name(), "recovery request");
    api.throttle.pad(started).await;
    Ok(reply(
        StatusCode::ACCEPTED,
        RecoveryResult {
            result: Accepted::Accepted,
        },
    ))
}

#[derive(Deserialize, ToSchema)]
pub(super) struct ResetRequest {
    #[schema(example = "wakwak")]
    realm: String,
    #[schema(example = "ab000001")]
    login_id: String,
    #[schema(example = "connection")]
    purpose: String,
}

/// A help-desk reset's answer: the temporary password, shown once.
#[derive(Serialize, ToSchema)]
pub(super) struct TemporaryPassword<'a> {
    #[schema(format = Password)]
    temporary_password: &'a str,
    /// Always true: the member must change it at the next login.
    must_change: bool,
}

/// Help-desk reset: a temporary password, returned once.
///
/// helpdesk channel only, and only for credentials whose recovery is
/// Helpdesk at this instant (an administrator token may reset any). The
/// member must change it at the next login.
#[utoipa::path(
    post,
    path = "/v1/helpdesk/reset",
    request_body = ResetRequest,
    security(("bearer" = [])),
    responses(
        (status = OK, description = "reset", body = TemporaryPassword, headers(
            ("Cache-Control" = String, description = "always `no-store` (on every API answer): the temporary password must not be kept by a cache or a browser"),
        )),
        (status = FORBIDDEN, body = Problem, content_type = "application/problem+json",
         description = "not the helpdesk channel (channel_not_allowed), or the credential is not recovered by the help desk now (not_helpdesk_recoverable)"),
        (status = NOT_FOUND, body = Problem, content_type = "application/problem+json",
         description = "no such login ID in the realm (unknown_account), or the purpose is not in the realm's policy (unknown_purpose)"),
        (status = CONFLICT, body = Problem, content_type = "application/problem+json",
         description = "the account is closed (account_closed): no password is given for it"),
        (status = TOO_MANY_REQUESTS, body = Problem, content_type = "application/problem+json",
         description = "this caller made too many resets in the window (rate_limited, --resets-per-caller)"),
    ),
)]
pub(super) async fn helpdesk_reset(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Body(req): Body<ResetRequest>,
) -> Answer {
    let (caller, realm) = caller_with_progress(&api, &headers, &req.realm).await?;
    // Resets go through the helpdesk channel only; an administrator token
    // (still a helpdesk token) may reset any credential, not just Helpdesk ones.
    if caller.channel != "helpdesk" {
        return Err(ApiError::forbidden(
            "channel_not_allowed",
            "only the helpdesk channel can reset passwords",
        ));
    }
    let now = Timestamp::now();
    api.rate_limited(
        ("helpdesk_reset", "rate_limited", "caller"),
        &caller.name,
        api.throttle.resets_per_caller,
        now,
    )
    .await?;
    let hasher = api.admit("helpdesk_reset")?;
    let account = match api.store.find_account(&req.realm, &req.login_id).await? {
        // A closed account has no member to give a password to.
        Some(a) if a.state == AccountState::Closed => {
            api.count("helpdesk_reset", "refused");
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "account_closed",
                "the account is closed",
            ));
        }
        Some(a) => a,
        None => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_account",
                "no such login ID in the realm",
            ));
        }
    };
    let caller_is = HelpdeskCaller {
        name: &caller.name,
        administrator: caller.administrator,
    };
    let reset = realm
        .helpdesk_reset(&api.store, &hasher, &account, &req.purpose, caller_is, now)
        .await?;
    match reset {
        HelpdeskReset::Reset(temp) => {
            // A new password ends every streak of failures at the account.
            for purpose in realm.policy.purposes.keys() {
                let streak = format!("{}/{}/{purpose}", req.realm, req.login_id);
                if let Err(e) = api.store.end_streak(&streak).await {
                    warn!(error = %e, "could not end a streak of failed guesses");
                }
            }
            api.count("helpdesk_reset", "reset");
            info!(realm = %req.realm, login_id = %req.login_id, purpose = %req.purpose, caller = %caller.name, "help-desk reset");
            Ok(reply(
                StatusCode::OK,
                TemporaryPassword {
                    temporary_password: temp.expose(),
                    must_change: true,
                },
            ))
        }
        HelpdeskReset::NotHelpdeskRecoverable { credential } => {
            api.count("helpdesk_reset", "refused");
            Err(ApiError::forbidden(
                "not_helpdesk_recoverable",
                format!("the {credential} password is not recovered by the help desk"),
            ))
        }
        HelpdeskReset::UnknownPurpose => Err(ApiError::unknown_purpose()),
    }
}
