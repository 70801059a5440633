//! `credshift controller` as a real process against the test API server.

use std::time::Duration;

use super::process::{Guard, Process, free_port};

/// A running controller process, credshift itself ([`Guard::Direct`]:
/// the tests signal it); stopped on drop.
pub struct ControllerProcess {
    pub process: Process,
    pub health_port: u16,
    pub identity: String,
}

/// Starts a controller for `namespace` (also its lease namespace), on `store_url`.
pub fn start(
    namespace: &str,
    store_url: &str,
    identity: &str,
    log_dir: &std::path::Path,
) -> ControllerProcess {
    start_with(
        &super::kube::api_server().kubeconfig,
        namespace,
        store_url,
        identity,
        log_dir,
    )
}

/// The same against the API server of `kubeconfig`.
pub fn start_with(
    kubeconfig: &std::path::Path,
    namespace: &str,
    store_url: &str,
    identity: &str,
    log_dir: &std::path::Path,
) -> ControllerProcess {
    start_full(
        kubeconfig,
        namespace,
        store_url,
        identity,
        log_dir,
        &[],
        &[],
    )
}

/// The same with extra flags and environment variables.
pub fn start_full(
    kubeconfig: &std::path::Path,
    namespace: &str,
    store_url: &str,
    identity: &str,
    log_dir: &std::path::Path,
    extra_args: &[&str],
    extra_env: &[(&str, &str)],
) -> ControllerProcess {
    let port = free_port();
    let mut cmd = super::credshift();
    cmd.args([
        "controller",
        "--namespace",
        namespace,
        "--lease-namespace",
        namespace,
    ])
    .args([
        "--identity",
        identity,
        "--lease-seconds",
        "4",
        "--progress-interval",
        "100ms",
    ])
    .arg("--health-addr")
    .arg(format!("127.0.0.1:{port}"))
    .args(extra_args)
    .envs(extra_env.iter().copied())
    .env("KUBECONFIG", kubeconfig)
    .env("CREDSHIFT_STORE", store_url)
    .env("CREDSHIFT_LOG", "credshift=debug,info");
    let log = log_dir.join(format!("{identity}.log"));
    ControllerProcess {
        process: Process::start(cmd, Guard::Direct, &log),
        health_port: port,
        identity: identity.to_owned(),
    }
}

impl ControllerProcess {
    /// GET a path on the health listener; `None` when nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = super::http::request(self.health_port, "GET", path, "", None).ok()?;
        Some((r.status, r.text()))
    }

    /// Waits until /readyz answers 200.
    pub fn wait_ready(&mut self, timeout: Duration) {
        if let Err(why) = self.process.wait_http(self.health_port, "/readyz", timeout) {
            panic!("controller {why}; log:\n{}", self.log_text());
        }
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// The value of a counter in /metrics, summed over label sets matching `filter`.
    pub fn metric(&self, name: &str, filter: &str) -> f64 {
        let Some((_, body)) = self.get("/metrics") else {
            return 0.0;
        };
        body.lines()
            .filter(|l| l.starts_with(name) && l.contains(filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// SIGKILL, as a crash or an evicted pod.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}
