//! The OpenAPI description of the API, generated so that it cannot drift
//! from the server: each endpoint's part comes from its handler's
//! `#[utoipa::path]` and the types it reads and answers, the routes come
//! from the same attributes (`utoipa_axum::routes!` in
//! [`super::router`]), and the refusals of the layers in front of the
//! handlers ([`Documented`]: the body extractor, the caller's token, load
//! shedding, the request deadline, the store) are added to every endpoint
//! each layer guards. Committed as `api/openapi.json` (a test fails when it
//! is stale; `credshift openapi` prints it) and served at `/openapi.json`.

use utoipa::OpenApi;
use utoipa::openapi::content::Content;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::Response;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Object, OpenApi as Document, PathItem, Ref, RefOr, Type};

use super::answer::{Documented, PROBLEM_JSON};

/// What the generated document starts from: what it is, and how callers
/// authenticate.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "credshift member-facing API",
        version = "v1",
        description = "Verify, change and recover member passwords, following the routing of the instant (before, during and after a cutover). Callers authenticate as a channel with a bearer token. Answers never reveal whether a login ID exists where that matters.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&BearerTokens),
)]
struct Base;

struct BearerTokens;

impl utoipa::Modify for BearerTokens {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document the endpoints are added to.
pub(super) fn base() -> Document {
    Base::openapi()
}

/// Adds `refusals` to every operation of `doc` that `guards` says the
/// layer stands in front of. A status the operation does not list yet is
/// added as a problem-details answer; one it lists with problem details
/// gets the layer's case added to its description; one it lists with
/// another body is left alone, since the handler answers that status its
/// own way (RADIUS's 401) and its description says so.
pub(super) fn guarded_by(
    doc: &mut Document,
    refusals: &[Documented],
    guards: impl Fn(&Operation) -> bool,
) {
    for item in doc.paths.paths.values_mut() {
        for operation in operations(item) {
            if !guards(operation) {
                continue;
            }
            for refusal in refusals {
                add(operation, refusal);
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.post]
        .into_iter()
        .filter_map(Option::as_mut)
}

fn add(operation: &mut Operation, refusal: &Documented) {
    let case = format!("{} ({})", refusal.when, refusal.code);
    let status = refusal.status.as_u16().to_string();
    let responses = &mut operation.responses.responses;
    match responses.get_mut(&status) {
        Some(RefOr::T(listed)) => {
            if listed.content.contains_key(PROBLEM_JSON) {
                listed.description = format!("{}; or {case}", listed.description);
                if refusal.retry_after {
                    listed.headers.insert("Retry-After".into(), retry_after());
                }
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let mut response = Response::new(case);
            response.content.insert(
                PROBLEM_JSON.into(),
                RefOr::T(Content::new(Some(Ref::from_schema_name("Problem")))),
            );
            if refusal.retry_after {
                response.headers.insert("Retry-After".into(), retry_after());
            }
            responses.insert(status, RefOr::T(response));
        }
    }
}

fn retry_after() -> RefOr<Header> {
    let mut header = Header::new(Object::with_type(Type::Integer));
    header.description = Some("seconds to wait".into());
    RefOr::T(header)
}

/// Takes a JSON body, read by [`super::answer::Body`].
pub(super) fn has_body(operation: &Operation) -> bool {
    operation.request_body.is_some()
}

/// Needs a bearer token, checked by [`super::request::caller_for`].
pub(super) fn authenticated(operation: &Operation) -> bool {
    operation.security.as_ref().is_some_and(|s| !s.is_empty())
}

/// Any operation.
pub(super) fn every(_: &Operation) -> bool {
    true
}

/// The document as committed and served: pretty JSON, one final newline.
pub(super) fn to_json(doc: &Document) -> String {
    let mut json = doc.to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}
