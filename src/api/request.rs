//! What every request is checked for before the engine sees it: the
//! caller's token and realm, the size of each password field, and the
//! client identity that keys throttling.

use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::answer::{ApiError, Documented};
use super::{Api, Caller};
use crate::engine::members::Realm;
use crate::hashing::{self, Secret};
use crate::names::ClientId;

/// What [`caller_for`] refuses, before anything of the request is looked at.
pub const CALLER_REFUSALS: &[Documented] = &[
    Documented::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "no bearer token, or one that is not known",
    ),
    Documented::new(
        StatusCode::FORBIDDEN,
        "realm_not_allowed",
        "the token is not for this realm",
    ),
    Documented::new(
        StatusCode::NOT_FOUND,
        "unknown_realm",
        "no CredentialPolicy for this realm",
    ),
];

/// Authenticates the caller and checks the realm.
pub async fn caller_for(
    api: &Api,
    headers: &HeaderMap,
    realm: &str,
) -> Result<(Caller, Realm), ApiError> {
    let caller = api.tokens.authenticate(headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a valid bearer token is required",
        )
    })?;
    if !caller.realms.iter().any(|r| r == realm || r == "*") {
        return Err(ApiError::forbidden(
            "realm_not_allowed",
            "this token is not for that realm",
        ));
    }
    let realm = api.realm(realm).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_realm",
            "no CredentialPolicy for that realm",
        )
    })?;
    Ok((caller, realm))
}

/// [`caller_for`], with the progress of the realm's cutovers read from the
/// store, for the calls that route by it. (A verify reads it in its own
/// snapshot.)
pub async fn caller_with_progress(
    api: &Api,
    headers: &HeaderMap,
    realm: &str,
) -> Result<(Caller, Realm), ApiError> {
    let (caller, realm) = caller_for(api, headers, realm).await?;
    Ok((caller, realm.with_progress(&api.store).await?))
}

/// A password as a request carries it: at most 1024 bytes of UTF-8
/// (`maxLength` counts characters; the byte cap is enforced too): longer is
/// 400 password_too_long.
#[derive(Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = Password, max_length = 1024)]
pub struct Password(pub String);

/// The member's address or calling-station id, as the caller sees it: it
/// keys throttling. 1 to 128 bytes of printable ASCII without spaces (else
/// 400 invalid_client); absent or null, the caller's token is the client.
#[derive(Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, max_length = 128, pattern = "^[!-~]{1,128}$", example = "198.51.100.7")]
pub struct Client(pub String);

/// Refuses a password field over [`hashing::MAX_PASSWORD_BYTES`] before it
/// goes anywhere near a hash.
pub fn bounded(field: &'static str, Password(password): Password) -> Result<Secret, ApiError> {
    if password.len() > hashing::MAX_PASSWORD_BYTES {
        return Err(ApiError::bad_request(
            "password_too_long",
            format!(
                "{field} is longer than {} bytes",
                hashing::MAX_PASSWORD_BYTES
            ),
        ));
    }
    Ok(Secret::new(password))
}

/// The throttling identity of a request: the caller's `client` if valid,
/// else the caller's token name.
pub fn client_of<'a>(client: Option<&'a Client>, caller: &'a Caller) -> Result<&'a str, ApiError> {
    match client {
        None => Ok(&caller.name),
        Some(Client(c)) => ClientId::parse(c)
            .map(|_| c.as_str())
            .map_err(|e| ApiError::bad_request("invalid_client", format!("client {e}"))),
    }
}
