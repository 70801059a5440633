//! credshift: an ISP's member-credential lifecycle, declared as Kubernetes resources.
//!
//! Layout:
//! - [`engine`]: credential rules (verify, set, upgrade; later routing, cutovers
//!   and recovery). Knows nothing of Kubernetes, HTTP or files.
//! - [`store`]: the account store, the only module with SQL.
//! - [`hashing`]: password hashes: argon2id policy, legacy formats, a bounded pool.
//! - Drivers: [`cli`] (and [`import`] for member files).

pub mod api;
pub mod cli;
pub mod controller;
pub mod engine;
pub mod files;
pub mod hashing;
pub mod import;
pub mod logging;
pub mod resources;
pub mod store;
pub mod validate;
