//! Test support shared by the integration test binaries: real servers,
//! started once per test binary and stopped when the binary exits, even when
//! it panics or is killed (each server watches a pipe from this process).
#![allow(dead_code)]

pub mod cluster;
pub mod controller;
pub mod http;
pub mod kube;
pub mod postgres;
pub mod process;
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

/// `credshift` as a user runs it: this run's binary, with none of the
/// `CREDSHIFT_*` variables or `RUST_LOG` of whoever runs the tests, and no
/// stdin. Every test that runs the command line starts here.
pub fn credshift() -> std::process::Command {
    let mut cmd = std::process::Command::new(credshift_bin());
    clean_env(&mut cmd);
    cmd.stdin(std::process::Stdio::null());
    cmd
}

/// [`credshift`] on the store at `url`, hashing new passwords cheaply
/// (argon2id with 1 MiB and one pass): the tests are not about their cost.
pub fn credshift_on(url: &str) -> std::process::Command {
    let mut cmd = credshift();
    cmd.env("CREDSHIFT_STORE", url)
        .env("CREDSHIFT_ARGON2_MEMORY_KIB", "1024")
        .env("CREDSHIFT_ARGON2_ITERATIONS", "1");
    cmd
}

/// `credshift ARGS` run to its end.
pub fn credshift_output(args: &[&str]) -> std::process::Output {
    credshift().args(args).output().expect("run credshift")
}

/// `cmd` run to its end with `input` on its stdin, its output captured.
pub fn output_with_stdin(mut cmd: std::process::Command, input: &str) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", cmd.get_program()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Removes the variables [`credshift`] leaves out, for a command that
/// starts credshift through a wrapper (such as the watchdog shell).
pub fn clean_env(cmd: &mut std::process::Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CREDSHIFT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("RUST_LOG");
}

/// A name unique within this test run, usable as a namespace or database name.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}
