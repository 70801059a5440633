//! How the API answers: JSON that no cache keeps ([`reply`]), and
//! [`ApiError`], the refusal a handler returns with `?`. A refusal says
//! what is wrong with the request in words fit for the caller; a failure
//! of the store or the engine is logged and answered `503` without detail.

use std::borrow::Cow;

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::engine::EngineError;
use crate::store::StoreError;

/// A JSON answer. None may be kept by a cache or a browser's history: a
/// help-desk reset carries a temporary password, and the others say things
/// about a member's account.
pub fn reply(status: StatusCode, body: Value) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// A request refused, or not answered now: `{"error": code, "message": …}`.
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

    /// The purpose is not in the realm's policy (decided without the account).
    pub fn unknown_purpose() -> ApiError {
        ApiError::bad_request("unknown_purpose", "no such purpose in the policy")
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = reply(
            self.status,
            json!({ "error": self.code, "message": self.message }),
        );
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(seconds),
            );
        }
        response
    }
}

/// What every handler returns.
pub type Answer = Result<Response, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_json_with_its_code_and_never_cached() {
        let r = ApiError::bad_request("password_too_long", "password is longer than 1024 bytes")
            .into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
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
