//! Test support shared by the integration test binaries: real servers,
//! started once per test binary and stopped when the binary exits, even when
//! it panics or is killed (each server watches a pipe from this process).
#![allow(dead_code)]

pub mod cluster;
pub mod controller;
pub mod http;
pub mod kube;
pub mod postgres;
pub mod serve;
pub mod smtp;
pub mod stores;
pub mod tls;
pub mod tokens;
pub mod writers;

use std::path::PathBuf;

/// Where `make testenv` put `kube-testenv` and `kubectl`.
pub fn testenv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CREDSHIFT_TESTENV_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("testenv")
}

/// The `credshift` binary built for this test run.
pub fn credshift_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_credshift"))
}

/// A name unique within this test run, usable as a namespace or database name.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}
