//! Files generated from the code and committed, so that they can be read
//! and reviewed without building: `crds/` (by `credshift crd`) and
//! `api/openapi.json` (by `credshift openapi`). Never edited by hand; these
//! tests fail when one is stale.

// A panic in a test is its failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn committed(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn printed_by(subcommand: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_credshift"))
        .arg(subcommand)
        .output()
        .unwrap_or_else(|e| panic!("run credshift {subcommand}: {e}"));
    assert!(out.status.success(), "credshift {subcommand} failed");
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Fails when the committed CRDs differ from what the code generates.
/// Fix: `make crds`.
#[test]
fn committed_crds_are_not_stale() {
    let generated = credshift::resources::crds_yaml().expect("CRDs serialise");
    assert!(
        committed("crds/credshift.dev.yaml") == generated,
        "crds/credshift.dev.yaml is stale: run `make crds`"
    );
}

/// `credshift crd` prints the same CRDs.
#[test]
fn crd_subcommand_prints_them() {
    assert_eq!(
        printed_by("crd"),
        credshift::resources::crds_yaml().expect("CRDs serialise")
    );
}

/// Fails when the committed OpenAPI description differs from the one the
/// handlers and their types generate (which the server serves).
/// Fix: `make openapi`.
#[test]
fn committed_openapi_description_is_not_stale() {
    assert!(
        committed("api/openapi.json") == credshift::api::openapi_json(),
        "api/openapi.json is stale: run `make openapi`"
    );
}

/// `credshift openapi` prints the same description.
#[test]
fn openapi_subcommand_prints_it() {
    assert_eq!(printed_by("openapi"), credshift::api::openapi_json());
}
