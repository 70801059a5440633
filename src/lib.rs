//! credshift: an ISP's member-credential lifecycle, declared as Kubernetes
//! resources. Platform engineers declare a policy (which credentials a realm
//! has, which purpose each answers, who may change and recover it) and
//! cutovers (split one shared credential into several, online, on a
//! schedule); credshift carries them out without losing an account.
//!
//! The layers, each knowing only those below it:
//! - [`engine`]: the rules (routing at an instant, cutovers, verify and
//!   change by purpose and channel, recovery, the outbox round), with no
//!   Kubernetes, HTTP or files; [`names`] are the identifiers it accepts.
//! - [`store`]: the account store, the only module with SQL; [`hashing`]:
//!   password hashes, legacy formats, the bounded hashing pool.
//! - [`resources`]: the custom resources and how they become the engine's
//!   declarations.
//! - Drivers, each calling the engine: [`controller`] (Kubernetes),
//!   [`api`] (the member-facing HTTP API), [`files`] (manifests and member
//!   files for `plan`, `apply`, `serve -f`, imports), [`courier`] (how
//!   recovery mail leaves), and [`cli`], which parses the command line and
//!   starts them; [`logging`] and [`shutdown`] serve the long-running ones.

pub mod api;
pub mod cli;
pub mod controller;
pub mod courier;
pub mod engine;
pub mod files;
pub mod hashing;
pub mod logging;
pub mod names;
pub mod resources;
pub mod shutdown;
pub mod store;
