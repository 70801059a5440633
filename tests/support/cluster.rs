//! Helpers for tests that drive the controller through a real API server:
//! a scene to play in, the example manifests, `kubectl apply`, and polling
//! an object's status.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kube::api::Api;

/// Where a controller test plays: a namespace of its own on the shared
/// test API server (the CRDs installed), an administrator's client, and a
/// directory for its store and logs.
pub struct Scene {
    pub client: kube::Client,
    pub ns: String,
    pub dir: tempfile::TempDir,
}

impl Scene {
    pub async fn new() -> Scene {
        super::kube::install_crds();
        let client = super::kube::admin_client().await;
        let ns = super::kube::namespace(&client).await;
        let dir = tempfile::tempdir().expect("temp dir");
        Scene { client, ns, dir }
    }
}

/// A manifest from `examples/2018-split/`.
pub fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/2018-split")
        .join(name);
    std::fs::read_to_string(path).expect("example manifest")
}

/// `kubectl apply -n NS -f -` against the test API server; panics with
/// kubectl's stderr unless it succeeds.
pub fn apply(ns: &str, manifest: &str) {
    let (ok, _, err) = super::kube::kubectl_stdin(&["apply", "-n", ns, "-f", "-"], manifest);
    assert!(ok, "kubectl apply failed: {err}\n{manifest}");
}

/// The same with a given `kubectl` command (for example one pointed at a
/// `support::kube::Restartable` API server).
pub fn apply_with(mut kubectl: Command, ns: &str, manifest: &str) {
    let file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    std::fs::write(file.path(), manifest).expect("write manifest");
    let out = kubectl
        .args(["apply", "-n", ns, "-f"])
        .arg(file.path())
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl apply failed: {}\n{manifest}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A cutover like the 2018 one, but `at` some time from now.
pub fn future_cutover(name: &str, at: &str) -> String {
    example("cutover.yaml")
        .replace("name: split-login-2018", &format!("name: {name}"))
        .replace("\"2018-04-18T00:00:00+09:00\"", &format!("\"{at}\""))
}

/// A client for the API server of `kubeconfig`. Make one per test runtime.
pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config from the kubeconfig");
    kube::Client::try_from(config).expect("client from the kubeconfig")
}

/// Polls `check` on the object until it returns true.
pub async fn wait_for<K, F>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    what: &str,
    mut check: F,
) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    F: FnMut(&K) -> bool,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(obj) = api.get(name).await {
            if check(&obj) {
                return obj;
            }
            if Instant::now() > deadline {
                panic!("{what}: not reached within {timeout:?}; last seen: {obj:#?}");
            }
        } else if Instant::now() > deadline {
            panic!("{what}: {name} not readable within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
