//! How the API answers: JSON that no cache keeps ([`reply`]), and
//! [`ApiError`], the refusal a handler returns with `?`, as RFC 9457
//! problem details (`application/problem+json`) with a stable `code`. A
//! refusal says what is wrong with the request in words fit for the
//! caller; a failure of the store or the engine is logged and answered
//! `503` without detail. Requests the handlers never see (a body that is
//! not JSON, too large or of the wrong type, a wrong path or method) get
//! the same shape ([`Body`], [`not_found`], [`method_not_allowed`]).

use std::borrow::Cow;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::engine::EngineError;
use crate::store::StoreError;

/// A JSON answer. None may be kept by a cache or a browser's history: a
/// help-desk reset carries a temporary password, and the others say things
/// about a member's account.
pub fn reply(status: StatusCode, body: impl Serialize) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// A request refused, or not answered now, as problem details:
/// `{"type": "about:blank", "title", "status", "detail", "code"}`, and
/// `error` (the same as `code`: the name the first clients read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    /// Seconds for `Retry-After` (load shedding).
    pub retry_after: Option<&'static str>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    /// The purpose is not in the realm's policy (decided without the
    /// account): no such thing to check, as a path that is not there.
    pub fn unknown_purpose() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_purpose",
            "no such purpose in the policy",
        )
    }

    /// Every hashing slot (or the line for one key) is taken: come back in
    /// a second.
    pub fn overloaded() -> ApiError {
        ApiError {
            retry_after: Some("1"),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the service is at capacity; retry after the delay in Retry-After",
            )
        }
    }

    /// Something this service depends on failed: logged here, and the
    /// caller told only to retry.
    pub fn unavailable(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "request failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service cannot answer now; retry later",
        )
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        ApiError::unavailable(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::unavailable(e)
    }
}

/// RFC 9457 problem details, as `application/problem+json`: every refusal,
/// including the requests the handlers never see (not JSON, too large, a
/// missing or mistyped field, no such path or method).
#[derive(Serialize, ToSchema)]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    kind: &'a str,
    /// The HTTP status's reason phrase.
    title: &'a str,
    #[schema(example = 403)]
    status: u16,
    /// What is wrong, in words fit for the caller.
    detail: &'a str,
    /// The stable code: channel_not_allowed, wrong_current_password,
    /// too_short, too_long, same_as_login_id, blocklisted, reused_password,
    /// not_helpdesk_recoverable, unknown_account, account_closed,
    /// rate_limited, unknown_purpose, unknown_realm, unauthenticated,
    /// realm_not_allowed, password_too_long, invalid_client, overloaded,
    /// unavailable, request_timeout, invalid_json, invalid_field,
    /// invalid_body, unsupported_media_type, body_too_large, invalid_query,
    /// missing_attribute, invalid_attribute, not_found, method_not_allowed.
    #[schema(example = "realm_not_allowed")]
    code: &'a str,
    /// The same as `code`: the name v1 clients first read.
    #[schema(deprecated, example = "realm_not_allowed")]
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.message,
            code: self.code,
            error: self.code,
        };
        let body = serde_json::to_string(&body).unwrap_or_default();
        let mut response = (
            self.status,
            [
                (header::CONTENT_TYPE, PROBLEM_JSON),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(seconds),
            );
        }
        response
    }
}

/// The media type of problem details (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A refusal as the API's description lists it: given by a layer every
/// request of some endpoints goes through, not by one handler
/// ([`crate::api::description`] adds it to each of those endpoints).
#[derive(Debug, Clone, Copy)]
pub struct Documented {
    pub status: StatusCode,
    pub code: &'static str,
    /// When it is given, in the description's words.
    pub when: &'static str,
    /// With `Retry-After`.
    pub retry_after: bool,
}

impl Documented {
    pub const fn new(status: StatusCode, code: &'static str, when: &'static str) -> Documented {
        Documented {
            status,
            code,
            when,
            retry_after: false,
        }
    }
}

/// What [`Body`] refuses, before a handler sees the request.
pub const BODY_REFUSALS: &[Documented] = &[
    Documented::new(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        "the body is not valid JSON",
    ),
    Documented::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "the body is larger than 16 KiB",
    ),
    Documented::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "the body is not application/json",
    ),
    Documented::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "a required field is missing or of the wrong type",
    ),
];

/// What every endpoint that reads the store may answer ([`ApiError::unavailable`]).
pub const STORE_REFUSALS: &[Documented] = &[Documented::new(
    StatusCode::SERVICE_UNAVAILABLE,
    "unavailable",
    "the store cannot answer now; retry later",
)];

/// A JSON request body; what axum would answer in plain text when it is
/// not one (wrong media type, malformed, a field missing or of the wrong
/// type, too large) is an [`ApiError`] instead.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(rejected_body(rejection)),
        }
    }
}

fn rejected_body(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let detail = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => ApiError::new(status, "invalid_field", detail),
        JsonRejection::JsonSyntaxError(_) => ApiError::new(status, "invalid_json", detail),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            status,
            "unsupported_media_type",
            "the body must be JSON, with Content-Type: application/json",
        ),
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            "body_too_large",
            "the body is larger than the 16 KiB a request may be",
        ),
        _ => ApiError::new(status, "invalid_body", detail),
    }
}

/// A query string that does not parse: an [`ApiError`], as a body's would be.
pub struct QueryOf<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryOf<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(QueryOf(value)),
            Err(rejection) => Err(ApiError::bad_request(
                "invalid_query",
                rejection.body_text(),
            )),
        }
    }
}

/// No such endpoint.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// The endpoint exists, not with this method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take this method",
    )
}

/// What every handler returns.
pub type Answer = Result<Response, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn a_refusal_is_json_with_its_code_and_never_cached() {
        let r = ApiError::bad_request("password_too_long", "password is longer than 1024 bytes")
            .into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
    }

    #[tokio::test]
    async fn a_refusal_is_problem_details_with_its_code() {
        let r =
            ApiError::forbidden("channel_not_allowed", "not through this channel").into_response();
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let bytes = axum::body::to_bytes(r.into_body(), 4096)
            .await
            .expect("body");
        let body: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(
            body,
            json!({
                "type": "about:blank",
                "title": "Forbidden",
                "status": 403,
                "detail": "not through this channel",
                "code": "channel_not_allowed",
                "error": "channel_not_allowed",
            })
        );
    }

    #[test]
    fn overload_says_when_to_come_back_and_failures_say_nothing_more() {
        let r = ApiError::overloaded().into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let e = ApiError::unavailable("connection refused by db.internal:5432");
        assert!(!e.message.contains("db.internal"), "{}", e.message);
    }
}
