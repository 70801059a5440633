//! A real kube-apiserver + etcd (`kube-testenv`, built by `make testenv`),
//! one per test binary, and a matching real `kubectl`.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

pub struct ApiServer {
    pub kubeconfig: PathBuf,
    /// Held open for the life of the test binary: `--watch-stdin` makes the
    /// server exit when this process does, however it exits.
    _process: Mutex<(Child, ChildStdin)>,
}

static SERVER: OnceLock<ApiServer> = OnceLock::new();

/// The API server for this test binary, started on first use.
pub fn api_server() -> &'static ApiServer {
    SERVER.get_or_init(|| start().unwrap_or_else(|e| panic!("{e}")))
}

fn start() -> Result<ApiServer, String> {
    let bin = super::testenv_dir().join("kube-testenv");
    if !bin.exists() {
        return Err(format!(
            "{} does not exist: run `make testenv` (needs Go; see README, Testing)",
            bin.display()
        ));
    }
    let mut child = Command::new(&bin)
        .arg("--watch-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    // Keep draining stderr so the server never blocks on a full pipe; keep the
    // start of it for the error message.
    let (etx, erx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut head = Vec::new();
        loop {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) if head.len() < 16 * 1024 => head.extend_from_slice(&buf[..n]),
                Ok(_) => {}
            }
            let _ = etx.send(String::from_utf8_lossy(&head).into_owned());
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(180))
        .unwrap_or_default();
    let Some(path) = line.trim().strip_prefix("READY ") else {
        let _ = child.kill();
        let logs: String = erx.try_iter().last().unwrap_or_default();
        return Err(format!(
            "kube-testenv did not print READY (got {line:?}); stderr:\n{logs}"
        ));
    };
    let stdin = child.stdin.take().ok_or("no stdin")?;
    Ok(ApiServer {
        kubeconfig: PathBuf::from(path),
        _process: Mutex::new((child, stdin)),
    })
}

/// A client with the admin credential. Make one per test: a client belongs
/// to the tokio runtime it was made on.
pub async fn admin_client() -> kube::Client {
    kube::Client::try_from(admin_config().await).expect("client from the test kubeconfig")
}

/// The admin client configuration (cluster-admin via a client certificate).
pub async fn admin_config() -> kube::Config {
    let kubeconfig =
        Kubeconfig::read_from(&api_server().kubeconfig).expect("read the test kubeconfig");
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config from the test kubeconfig")
}

/// Creates a namespace of its own for one test.
pub async fn namespace(client: &kube::Client) -> String {
    let name = super::unique_name("t");
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name }
    }))
    .expect("namespace object");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
    name
}

/// The matching real `kubectl`, pointed at the test API server.
pub fn kubectl() -> Command {
    let mut cmd = Command::new(super::testenv_dir().join("kubectl"));
    cmd.arg("--kubeconfig").arg(&api_server().kubeconfig);
    cmd
}

/// Installs credshift's CRDs from `crds/` once per test binary and waits
/// until they are Established.
pub fn install_crds() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let crds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds");
        let out = kubectl()
            .arg("apply")
            .arg("-f")
            .arg(&crds)
            .output()
            .expect("kubectl apply crds");
        assert!(
            out.status.success(),
            "apply CRDs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = kubectl()
            .args(["wait", "--for=condition=Established", "--timeout=60s"])
            .args([
                "crd/credentialpolicies.credshift.dev",
                "crd/credentialcutovers.credshift.dev",
            ])
            .output()
            .expect("kubectl wait");
        assert!(
            out.status.success(),
            "CRDs Established: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The API server publishes the new schemas to discovery and OpenAPI a
        // moment after Established; wait until kubectl sees them.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        for kind in ["credentialpolicy", "credentialcutover"] {
            while !kubectl()
                .args(["explain", kind])
                .output()
                .is_ok_and(|o| o.status.success())
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{kind} not in the API server's OpenAPI within 60 s"
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    });
}

/// Runs kubectl with `input` on stdin; returns (success, stdout, stderr).
pub fn kubectl_stdin(args: &[&str], input: &str) -> (bool, String, String) {
    let mut cmd = kubectl();
    cmd.args(args);
    let out = super::output_with_stdin(cmd, input);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What kstatus (`sigs.k8s.io/cli-utils`: the health rules of Flux, kpt
/// and many pipelines) makes of the live `object` (`KIND/NAME`) in `ns`:
/// its status (`Current`, `InProgress`, `Failed`, …) and message.
pub fn kstatus(ns: &str, object: &str) -> (String, String) {
    kstatus_of(&kubectl_ok(&["get", object, "-n", ns, "-o", "json"]))
}

/// The same of an object as `kubectl get -o json` printed it.
pub fn kstatus_of(json: &str) -> (String, String) {
    let out = super::output_with_stdin(Command::new(super::testenv_dir().join("kstatus")), json);
    assert!(
        out.status.success(),
        "kstatus: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("kstatus prints one JSON line");
    let field = |k: &str| verdict[k].as_str().unwrap_or_default().to_owned();
    (field("status"), field("message"))
}

/// Runs kubectl; panics with its stderr unless it succeeds; returns stdout.
pub fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl().args(args).output().expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An API server of one test's own that the test can stop and start again on
/// the same data (`kube-testenv --keep-state`).
pub struct Restartable {
    dir: tempfile::TempDir,
    port: u16,
    process: Option<(Child, ChildStdin)>,
    pub kubeconfig: PathBuf,
}

impl Restartable {
    pub fn start_new() -> Restartable {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = super::process::free_port();
        let mut server = Restartable {
            dir,
            port,
            process: None,
            kubeconfig: PathBuf::new(),
        };
        server.start();
        server
    }

    pub fn start(&mut self) {
        let bin = super::testenv_dir().join("kube-testenv");
        let mut child = Command::new(&bin)
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--port",
                &self.port.to_string(),
                "--keep-state",
                "--watch-stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kube-testenv");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("READY line");
        let path = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("no READY: {line:?}"));
        self.kubeconfig = PathBuf::from(path);
        let stdin = child.stdin.take().expect("stdin");
        self.process = Some((child, stdin));
    }

    /// Stops it (SIGTERM via stdin EOF) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.process.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }

    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(super::testenv_dir().join("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }
}

impl Drop for Restartable {
    fn drop(&mut self) {
        if let Some((mut child, _)) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
