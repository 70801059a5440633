//! Driver: the files platform engineers keep in Git. [`manifests`] loads
//! CredentialPolicy and CredentialCutover YAML and checks it as the cluster
//! would; [`members`] reads member files (CSV, JSON Lines) for an import.
//! `credshift plan`, `apply`, `serve -f` and `accounts import` read them.

pub mod manifests;
pub mod members;

pub use manifests::{InputError, Located, Manifests, Model, load};
