//! `credshift controller` as a real process against the test API server.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A running controller process; killed on drop.
pub struct ControllerProcess {
    pub child: Child,
    pub health_port: u16,
    pub identity: String,
    pub log: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
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
    let log = log_dir.join(format!("{identity}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let child = super::credshift()
        .args([
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
        .env("CREDSHIFT_LOG", "credshift=debug,info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("start credshift controller");
    ControllerProcess {
        child,
        health_port: port,
        identity: identity.to_owned(),
        log,
    }
}

impl ControllerProcess {
    /// GET a path on the health listener; `None` when nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.health_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((code, body))
    }

    /// Waits until /readyz answers 200.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("controller exited ({status}); log:\n{}", self.log_text());
            }
            if matches!(self.get("/readyz"), Some((200, _))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "controller not ready in {timeout:?}; log:\n{}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
