//! `POST /v1/radius/authenticate?realm=R&purpose=P`: `/v1/verify` in the
//! shape FreeRADIUS's `rlm_rest` speaks, so that a RADIUS server checks
//! PAP passwords (`User-Password`) against credshift and reads every answer
//! cleanly: the request's RADIUS attributes as rlm_rest sends them with
//! `body = 'json'`, and an answer whose status rlm_rest maps to its module
//! codes, with reply attributes as the body.
//!
//! | answer | rlm_rest | RADIUS |
//! |---|---|---|
//! | `204`, no body | `ok` | Access-Accept |
//! | `401`, `{"reply:Reply-Message": …}` | `reject` | Access-Reject with the message |
//! | `400`, `422`, `403` (the request or the caller is wrong) | `invalid`, `userlock` | Access-Reject |
//! | `503` (overloaded, the store down) | `fail` | Access-Reject |
//!
//! A wrong password, an unknown member and a throttled client are one and
//! the same reject, padded alike; so is a temporary password, which a NAS
//! cannot change (its message says so). Only PAP works: CHAP and MS-CHAP
//! need the plaintext (or an NT hash) on the server, and credshift keeps
//! neither.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Api;
use super::answer::{ApiError, Body, QueryOf, reply};
use super::request::caller_for;
use super::verify::{Verdict, VerifyRequest, check_for};

/// Which purpose of which realm the RADIUS server checks (the URI's query).
#[derive(Deserialize)]
pub(super) struct Target {
    realm: String,
    purpose: String,
}

/// One attribute as rlm_rest encodes it: `{"type": …, "value": [...]}`.
#[derive(Deserialize)]
pub(super) struct Attribute {
    value: Vec<Value>,
}

pub(super) async fn authenticate(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    QueryOf(target): QueryOf<Target>,
    Body(attributes): Body<HashMap<String, Attribute>>,
) -> Response {
    let started = std::time::Instant::now();
    // Who asks, before anything of the request is looked at.
    let (caller, realm) = match caller_for(&api, &headers, &target.realm).await {
        Ok(found) => found,
        Err(e) => return answer(Err(e)),
    };
    // The text of an attribute the request has: its first value.
    let text = |name: &'static str| match attributes.get(name) {
        None => Ok(None),
        Some(a) => match a.value.first().and_then(Value::as_str) {
            Some(v) => Ok(Some(v.to_owned())),
            None => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_attribute",
                format!("{name} has no text value"),
            )),
        },
    };
    let attribute = |name| match text(name) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_attribute",
            "User-Name and User-Password (PAP) are required; CHAP and MS-CHAP cannot be checked against hashed passwords",
        )),
        Err(e) => Err(e),
    };
    let given = (
        attribute("User-Name"),
        attribute("User-Password"),
        text("Calling-Station-Id"),
    );
    let (login_id, password, client) = match given {
        (Ok(l), Ok(p), Ok(c)) => (l, p, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e.into_response(),
    };
    let req = VerifyRequest {
        realm: target.realm,
        login_id,
        purpose: target.purpose,
        password,
        client,
    };
    answer(check_for(&api, &caller, &realm, req, started).await)
}

/// A verdict, or a refusal, in rlm_rest's terms.
fn answer(verdict: Result<Verdict, ApiError>) -> Response {
    match verdict {
        Ok(Verdict::Match) => StatusCode::NO_CONTENT.into_response(),
        Ok(Verdict::MustChange) => reject("the password must be changed before it can be used"),
        Ok(Verdict::Denied) => reject("denied"),
        // rlm_rest reads the body of a 401: it must hold attributes too.
        Err(e) if e.status == StatusCode::UNAUTHORIZED => reject(&e.message),
        Err(e) => e.into_response(),
    }
}

/// A 401 that rlm_rest turns into Access-Reject with this Reply-Message.
fn reject(message: &str) -> Response {
    reply(
        StatusCode::UNAUTHORIZED,
        json!({ "reply:Reply-Message": message }),
    )
}
