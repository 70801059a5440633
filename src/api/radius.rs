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
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::Api;
use super::answer::{ApiError, Body, Problem, QueryOf, reply};
use super::request::{Client, Password, caller_for};
use super::verify::{Verdict, VerifyRequest, check_for};

/// Which purpose of which realm the RADIUS server checks (the URI's query).
// Not `use`d: `#[utoipa::path]` names the trait by its full path.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Target {
    #[param(example = "wakwak")]
    realm: String,
    #[param(example = "connection")]
    purpose: String,
}

/// The request's RADIUS attributes, as rlm_rest sends them with
/// `body = 'json'`: each `{"type": …, "value": [...]}`.
#[derive(Deserialize, ToSchema)]
pub(super) struct Attributes {
    #[serde(rename = "User-Name", default)]
    #[schema(required, nullable = false)]
    user_name: Option<TextAttribute>,
    /// PAP's password. (A CHAP or MS-CHAP request has none.)
    #[serde(rename = "User-Password", default)]
    #[schema(required, nullable = false)]
    user_password: Option<TextAttribute>,
    /// The member's client identity, which keys throttling.
    #[serde(rename = "Calling-Station-Id", default)]
    calling_station_id: Option<StationAttribute>,
    /// The other attributes rlm_rest sends: not read.
    #[serde(flatten)]
    _others: HashMap<String, Attribute>,
}

/// An attribute with a text value (its first).
#[derive(Deserialize, ToSchema)]
pub(super) struct TextAttribute {
    #[serde(rename = "type", default)]
    _kind: Option<String>,
    #[schema(min_items = 1)]
    value: Vec<String>,
}

/// Calling-Station-Id: the value is a client identity.
#[derive(Deserialize, ToSchema)]
pub(super) struct StationAttribute {
    #[serde(rename = "type", default)]
    _kind: Option<String>,
    #[schema(min_items = 1)]
    value: Vec<Client>,
}

/// Any other attribute.
#[derive(Deserialize, ToSchema)]
pub(super) struct Attribute {
    #[serde(rename = "type", default)]
    _kind: Option<String>,
    #[serde(rename = "value")]
    _value: Vec<Value>,
}

/// Reply attributes for rlm_rest.
#[derive(Serialize, ToSchema)]
pub(super) struct RadiusReply<'a> {
    #[serde(rename = "reply:Reply-Message")]
    reply_message: &'a str,
}

/// Verify a PAP password for FreeRADIUS rlm_rest.
///
/// /v1/verify in the shape rlm_rest speaks (authenticate section, method =
/// 'post', body = 'json'): the request's RADIUS attributes in, 204
/// (Access-Accept) or 401 with reply attributes (Access-Reject) out. A
/// wrong password, an unknown member, a throttled Calling-Station-Id and a
/// temporary password are all 401. Only PAP: CHAP and MS-CHAP need the
/// plaintext on the server.
#[utoipa::path(
    post,
    path = "/v1/radius/authenticate",
    params(Target),
    request_body = Attributes,
    security(("bearer" = [])),
    responses(
        (status = NO_CONTENT, description = "the password is right: Access-Accept"),
        (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json",
         description = "a password over 1024 bytes (password_too_long), an invalid Calling-Station-Id (invalid_client), or no realm and purpose in the query (invalid_query)"),
        (status = UNAUTHORIZED, body = RadiusReply,
         description = "denied, a temporary password, or no token or one that is not known: Access-Reject with Reply-Message"),
        (status = UNPROCESSABLE_ENTITY, body = Problem, content_type = "application/problem+json",
         description = "User-Name or User-Password missing (missing_attribute: a CHAP or MS-CHAP request), or one without a text value (invalid_attribute)"),
    ),
)]
pub(super) async fn authenticate(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    QueryOf(target): QueryOf<Target>,
    Body(attributes): Body<Attributes>,
) -> Response {
    let started = std::time::Instant::now();
    // Who asks, before anything of the request is looked at.
    let (caller, realm) = match caller_for(&api, &headers, &target.realm).await {
        Ok(found) => found,
        Err(e) => return answer(Err(e)),
    };
    let login_id = text("User-Name", attributes.user_name);
    let password = text("User-Password", attributes.user_password);
    let (login_id, password) = match (login_id, password) {
        (Ok(l), Ok(p)) => (l, p),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let client = attributes
        .calling_station_id
        .and_then(|a| a.value.into_iter().next());
    let req = VerifyRequest {
        realm: target.realm,
        login_id,
        purpose: target.purpose,
        password: Password(password),
        client,
    };
    answer(check_for(&api, &caller, &realm, req, started).await)
}

/// The text of a required attribute: its first value.
fn text(name: &'static str, attribute: Option<TextAttribute>) -> Result<String, ApiError> {
    let Some(attribute) = attribute else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_attribute",
            "User-Name and User-Password (PAP) are required; CHAP and MS-CHAP cannot be checked against hashed passwords",
        ));
    };
    attribute.value.into_iter().next().ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_attribute",
            format!("{name} has no text value"),
        )
    })
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
        RadiusReply {
            reply_message: message,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What rlm_rest sends for a PAP request, with attributes credshift
    /// does not read (of other types too), is read; an attribute not in
    /// rlm_rest's `{"type", "value": [...]}` shape is refused.
    #[test]
    fn rlm_rest_attributes_are_read_and_others_kept_to_their_shape() {
        let body = r#"{"User-Name":{"type":"string","value":["ab000001"]},
            "User-Password":{"type":"string","value":["secret"]},
            "Calling-Station-Id":{"type":"string","value":["02-00-00-00-00-01"]},
            "NAS-Port":{"type":"integer","value":[1]}}"#;
        let parsed: Attributes = serde_json::from_str(body).expect("rlm_rest's shape");
        assert_eq!(
            text("User-Name", parsed.user_name).expect("text"),
            "ab000001"
        );
        let station = parsed.calling_station_id.expect("station");
        assert_eq!(station.value[0].0, "02-00-00-00-00-01");
        assert!(serde_json::from_str::<Attributes>(r#"{"NAS-Port": 1}"#).is_err());
        let chap = serde_json::from_str::<Attributes>(r#"{"User-Name":{"value":["a"]}}"#)
            .expect("CHAP has no User-Password");
        assert_eq!(
            text("User-Password", chap.user_password).map_err(|e| e.code),
            Err("missing_attribute")
        );
    }
}
