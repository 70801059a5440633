//! What every request is checked for before the engine sees it: the
//! caller's token and realm, the size of each password field, and the
//! client identity that keys throttling.

use axum::http::{HeaderMap, StatusCode};

use super::answer::ApiError;
use super::{Api, Caller};
use crate::engine::members::Realm;
use crate::hashing::{self, Secret};
use crate::names::ClientId;

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

/// Refuses a password field over [`hashing::MAX_PASSWORD_BYTES`] before it
/// goes anywhere near a hash.
pub fn bounded(field: &'static str, password: String) -> Result<Secret, ApiError> {
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
pub fn client_of<'a>(client: Option<&'a str>, caller: &'a Caller) -> Result<&'a str, ApiError> {
    match client {
        None => Ok(&caller.name),
        Some(c) => ClientId::parse(c)
            .map(|_| c)
            .map_err(|e| ApiError::bad_request("invalid_client", format!("client {e}"))),
    }
}
