//! Shipping credshift: the kustomize manifests, their
//! least-privilege RBAC proven against a real kube-apiserver with real
//! ServiceAccount tokens, the Dockerfile's build, the Argo CD health checks,
//! the metrics documentation and the Grafana dashboard.

// A panic in a test is its failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use support::kube::{kubectl, kubectl_ok, kubectl_stdin};
use support::process::{Guard, Process};

/// The namespace the manifests install into.
const NAMESPACE: &str = "credshift-system";
const CONTROLLER_SA: &str = "credshift-controller";
const API_SA: &str = "credshift-api";
/// Where the kubelet would mount Secrets and what the tests put there.
const OUTBOX_SECRET: (&str, &str) = ("credshift-outbox", "key");
const STORE_SECRET: (&str, &str) = ("credshift-store", "url");
/// The member of examples/2018-split/members.csv whose recovery is tested.
const TARO: &str = "ab000001";
const TARO_MAIL: &str = "taro@wakwak.example.jp";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The test bed's kubectl with no kubeconfig: for `kubectl kustomize`,
/// which needs no API server.
fn kubectl_offline() -> Command {
    Command::new(support::testenv_dir().join("kubectl"))
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---------------------------------------------------------------------------
// Rendering

/// `kubectl kustomize DIR` (relative to the repository), as JSON objects.
fn render(dir: &str) -> Vec<Value> {
    let out = output(kubectl_offline().arg("kustomize").arg(repo().join(dir)));
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("kubectl kustomize {dir} is not YAML: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn of_kind<'a>(objs: &'a [Value], k: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| kind(o) == k).collect()
}

fn find<'a>(objs: &'a [Value], k: &str, n: &str) -> &'a Value {
    objs.iter()
        .find(|o| kind(o) == k && name(o) == n)
        .unwrap_or_else(|| panic!("no {k} {n} in the rendered manifests"))
}

fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container in {}", name(deployment));
    &containers[0]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `credshift SUB --help` with no CREDSHIFT_* variables set, whitespace
/// collapsed (clap wraps the help).
fn help(sub: &str) -> String {
    let mut cmd = support::credshift();
    cmd.args([sub, "--help"]);
    let out = output(&mut cmd);
    assert!(out.status.success(), "credshift {sub} --help");
    stdout(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The default clap shows for the flag whose environment variable is `env`.
fn default_of(help: &str, env: &str) -> String {
    // `[env: NAME=]`, or `[env: NAME]` for a flag whose value is kept out
    // of the help (a URL with a password).
    let at = help
        .find(&format!("[env: {env}=]"))
        .or_else(|| help.find(&format!("[env: {env}]")))
        .unwrap_or_else(|| panic!("no {env} in the help"));
    let rest = &help[at..];
    let start = rest.find("[default: ").expect("a default") + "[default: ".len();
    let end = rest[start..].find(']').expect("]");
    rest[start..start + end].to_owned()
}

/// Every environment variable a subcommand's flags read.
fn env_vars(help: &str) -> BTreeSet<String> {
    help.split("[env: ")
        .skip(1)
        .filter_map(|s| s.split(['=', ']']).next().map(str::to_owned))
        .collect()
}

fn env_entry<'a>(c: &'a Value, var: &str) -> Option<&'a Value> {
    c["env"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == var))
}

// ---------------------------------------------------------------------------
// The manifests, statically

#[test]
fn the_manifests_render_and_say_what_a_serious_install_needs() {
    let install = render("manifests");
    let base = render("manifests/base");
    let postgres = render("manifests/overlays/postgres");
    assert_eq!(install, postgres, "manifests/ is the postgres overlay");

    let crds = render("crds");
    assert_eq!(crds.len(), 2);
    for crd in &crds {
        let ours = find(&install, "CustomResourceDefinition", name(crd));
        assert_eq!(ours["spec"], crd["spec"], "{}", name(crd));
    }

    // Everything namespaced is in credshift-system, which enforces the
    // restricted Pod Security Standard.
    let ns = find(&install, "Namespace", NAMESPACE);
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let cluster_scoped = [
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
    ];
    for o in &install {
        if !cluster_scoped.contains(&kind(o)) {
            assert_eq!(
                o["metadata"]["namespace"],
                NAMESPACE,
                "{} {}",
                kind(o),
                name(o)
            );
        }
    }

    let controller_help = help("controller");
    let serve_help = help("serve");
    let health_port: u16 = default_of(&controller_help, "CREDSHIFT_HEALTH_ADDR")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("health port");
    let api_port: u16 = default_of(&serve_help, "CREDSHIFT_LISTEN")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("listen port");
    let lease_name = default_of(&controller_help, "CREDSHIFT_LEASE_NAME");

    let controller = find(&install, "Deployment", "credshift-controller");
    let api = find(&install, "Deployment", "credshift-api");
    assert_eq!(controller["spec"]["replicas"], 2, "controller replicas");
    assert!(api["spec"]["replicas"].as_i64() >= Some(2), "api replicas");
    assert_eq!(strings(&container(controller)["args"]), ["controller"]);
    let api_args = strings(&container(api)["args"]);
    assert_eq!(api_args.first().map(String::as_str), Some("serve"));
    assert!(
        api_args.contains(&"--from-cluster".to_owned()),
        "{api_args:?}"
    );
    let api_tls = api_args.iter().any(|a| a.starts_with("--tls-cert"));

    for (d, sa, port, scheme) in [
        (controller, CONTROLLER_SA, health_port, "HTTP"),
        (
            api,
            API_SA,
            api_port,
            if api_tls { "HTTPS" } else { "HTTP" },
        ),
    ] {
        let what = name(d);
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], sa, "{what}");
        find(&install, "ServiceAccount", sa);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{what}"
        );
        let c = container(d);
        assert!(
            c.get("command").is_none(),
            "{what}: the image's ENTRYPOINT is the binary"
        );
        assert_eq!(
            c["image"],
            format!("credshift:{}", env!("CARGO_PKG_VERSION"))
        );
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{what}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
        for r in ["requests", "limits"] {
            for res in ["cpu", "memory"] {
                assert!(
                    c["resources"][r][res].is_string(),
                    "{what}: resources.{r}.{res}"
                );
            }
        }
        // Probes on the health endpoints, on the port the binary listens on.
        let ports = c["ports"].as_array().expect("ports");
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let get = &c[probe]["httpGet"];
            assert_eq!(get["path"], path, "{what} {probe}");
            assert_eq!(
                get["scheme"].as_str().unwrap_or("HTTP"),
                scheme,
                "{what} {probe}"
            );
            let named = ports
                .iter()
                .find(|p| p["name"] == get["port"])
                .unwrap_or_else(|| panic!("{what} {probe}: port {} not declared", get["port"]));
            assert_eq!(named["containerPort"], port, "{what} {probe}");
        }
        // A PodDisruptionBudget selects exactly these pods.
        let selector = &d["spec"]["selector"]["matchLabels"];
        let pdbs: Vec<&Value> = of_kind(&install, "PodDisruptionBudget")
            .into_iter()
            .filter(|p| &p["spec"]["selector"]["matchLabels"] == selector)
            .collect();
        assert_eq!(pdbs.len(), 1, "{what}: one PodDisruptionBudget");
        assert!(
            pdbs[0]["spec"]["maxUnavailable"] == 1 || pdbs[0]["spec"]["minAvailable"] == 1,
            "{what}: PDB"
        );
        // Every environment variable is one the binary reads.
        let help = if d == controller {
            &controller_help
        } else {
            &serve_help
        };
        let known = env_vars(help);
        let mut used: Vec<String> = c["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["name"].as_str())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        for from in c["envFrom"].as_array().into_iter().flatten() {
            let cm = find(
                &install,
                "ConfigMap",
                from["configMapRef"]["name"].as_str().unwrap_or_default(),
            );
            used.extend(cm["data"].as_object().expect("data").keys().cloned());
        }
        for var in used {
            assert!(
                known.contains(&var) || var == credshift::hashing::OUTBOX_KEY_ENV,
                "{what}: {var} is not read by credshift (known: {known:?})"
            );
        }
    }
    // The Service sends to the API's port.
    let svc = find(&install, "Service", "credshift-api");
    assert_eq!(
        svc["spec"]["selector"],
        api["spec"]["selector"]["matchLabels"]
    );
    let target = &svc["spec"]["ports"][0]["targetPort"];
    assert!(
        container(api)["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| &p["name"] == target),
        "Service targetPort {target}"
    );

    // RBAC: bindings name the ServiceAccounts and existing roles; the Lease
    // rule names the Lease the controller uses (kustomize rewrites
    // resourceNames that collide with generated ConfigMap names).
    for b in of_kind(&install, "ClusterRoleBinding")
        .into_iter()
        .chain(of_kind(&install, "RoleBinding"))
    {
        let role = &b["roleRef"];
        find(
            &install,
            role["kind"].as_str().unwrap_or_default(),
            role["name"].as_str().unwrap_or_default(),
        );
        for s in b["subjects"].as_array().expect("subjects") {
            assert_eq!(s["kind"], "ServiceAccount");
            assert_eq!(s["namespace"], NAMESPACE);
            find(
                &install,
                "ServiceAccount",
                s["name"].as_str().unwrap_or_default(),
            );
        }
    }
    let lease_role = find(&install, "Role", "credshift-controller-leader-election");
    let named_rules: Vec<&Value> = lease_role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| r.get("resourceNames").is_some())
        .collect();
    assert_eq!(named_rules.len(), 1);
    assert_eq!(strings(&named_rules[0]["resourceNames"]), [lease_name]);

    // The base names no store; the postgres overlay takes it from a Secret.
    for d in ["credshift-controller", "credshift-api"] {
        assert!(
            env_entry(container(find(&base, "Deployment", d)), "CREDSHIFT_STORE").is_none(),
            "{d}: the base names no store"
        );
        let store = env_entry(
            container(find(&install, "Deployment", d)),
            "CREDSHIFT_STORE",
        )
        .unwrap_or_else(|| panic!("{d}: no CREDSHIFT_STORE in the postgres overlay"));
        assert_eq!(
            store["valueFrom"]["secretKeyRef"],
            json!({"name": STORE_SECRET.0, "key": STORE_SECRET.1})
        );
    }

    // Every Secret the workloads read is documented in manifests/README.md.
    let readme = read("manifests/README.md");
    let mut secrets = BTreeSet::new();
    for d in of_kind(&install, "Deployment") {
        let text = d.to_string();
        for part in text.split("\"secretName\":\"").skip(1) {
            secrets.insert(part.split('"').next().unwrap_or_default().to_owned());
        }
        for e in container(d)["env"].as_array().into_iter().flatten() {
            if let Some(s) = e["valueFrom"]["secretKeyRef"]["name"].as_str() {
                secrets.insert(s.to_owned());
            }
        }
    }
    assert_eq!(
        secrets,
        BTreeSet::from(
            [
                "credshift-api-tls",
                "credshift-api-tokens",
                OUTBOX_SECRET.0,
                STORE_SECRET.0
            ]
            .map(str::to_owned)
        )
    );
    for s in &secrets {
        assert!(
            readme.contains(&format!("secret generic {s}"))
                || readme.contains(&format!("secret tls {s}")),
            "manifests/README.md does not say how to create {s}"
        );
    }
}

// ---------------------------------------------------------------------------
// The manifests against a real API server

fn list(items: Vec<&Value>) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

fn apply_server_side(objs: Vec<&Value>) -> String {
    let (ok, _, err) = kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=credshift-deploy-test",
            "-f",
            "-",
        ],
        &list(objs),
    );
    assert!(ok, "kubectl apply: {err}");
    err
}

/// Applies the namespace, the CRDs and the RBAC of the rendered manifests,
/// once per test binary, and waits until the CRDs are Established.
fn apply_rbac() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let objs = render("manifests");
        let kinds = [
            "Namespace",
            "CustomResourceDefinition",
            "ServiceAccount",
            "Role",
            "ClusterRole",
            "RoleBinding",
            "ClusterRoleBinding",
        ];
        apply_server_side(objs.iter().filter(|o| kinds.contains(&kind(o))).collect());
        kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/credentialpolicies.credshift.dev",
            "crd/credentialcutovers.credshift.dev",
        ]);
    });
}

/// Every rendered object is accepted by the API server (schemas, PDBs,
/// Services), and the Deployments meet the "restricted" Pod Security
/// Standard their namespace enforces: the API server warns about a pod
/// template that does not, as the control case shows.
#[test]
fn the_rendered_manifests_are_accepted_under_restricted_pod_security() {
    apply_rbac();
    let objs = render("manifests");
    let warnings = apply_server_side(objs.iter().collect());
    assert!(!warnings.contains("PodSecurity"), "{warnings}");
    let got = kubectl_ok(&[
        "get",
        "deployments,services,poddisruptionbudgets,configmaps",
        "-n",
        NAMESPACE,
        "-o",
        "name",
    ]);
    for o in objs.iter().filter(|o| {
        ["Deployment", "Service", "PodDisruptionBudget", "ConfigMap"].contains(&kind(o))
    }) {
        assert!(
            got.contains(&format!("/{}\n", name(o))),
            "{} {} missing: {got}",
            kind(o),
            name(o)
        );
    }

    let mut control = find(&objs, "Deployment", "credshift-controller").clone();
    control["metadata"]["name"] = json!("pod-security-control");
    let sc = control["spec"]["template"]["spec"]["containers"][0]["securityContext"]
        .as_object_mut()
        .expect("securityContext");
    sc.remove("allowPrivilegeEscalation");
    let (ok, _, err) = kubectl_stdin(
        &["apply", "--dry-run=server", "-f", "-"],
        &control.to_string(),
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("would violate PodSecurity") && err.contains("allowPrivilegeEscalation"),
        "the API server did not warn about the control case: {err}"
    );
}

/// A kubeconfig for the test API server that authenticates with a token of
/// the ServiceAccount `sa` (TokenRequest, `kubectl create token`).
fn kubeconfig_for(sa: &str, dir: &Path) -> PathBuf {
    let token = kubectl_ok(&["create", "token", sa, "-n", NAMESPACE, "--duration=2h"]);
    let admin: Value = serde_json::from_str(&kubectl_ok(&[
        "config", "view", "--raw", "--minify", "-o", "json",
    ]))
    .expect("kubeconfig JSON");
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": sa, "user": {"token": token.trim()}}],
        "contexts": [{"name": sa, "context": {"cluster": "testbed", "user": sa}}],
        "current-context": sa,
    });
    let path = dir.join(format!("{sa}.kubeconfig"));
    std::fs::write(&path, config.to_string()).expect("write kubeconfig");
    path
}

/// Runs the test bed's kubectl with another kubeconfig.
fn kubectl_as(kubeconfig: &Path, args: &[&str]) -> Output {
    output(
        kubectl_offline()
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args),
    )
}

/// What the kubelet would start for a rendered Deployment's container: the
/// image's ENTRYPOINT (the binary) with the container's args and
/// environment. fieldRefs, Secrets and ConfigMaps are resolved as the
/// kubelet would; Secret volumes become directories under `mounts` holding
/// `files`, and the mount paths in the args point there.
struct Launch {
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

fn launch(
    objs: &[Value],
    deployment: &str,
    pod_name: &str,
    secrets: &BTreeMap<(&str, &str), String>,
    mounts: &Path,
) -> Launch {
    let d = find(objs, "Deployment", deployment);
    let c = container(d);
    let pod = &d["spec"]["template"]["spec"];
    let mut paths: Vec<(String, PathBuf)> = Vec::new();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let volume_name = m["name"].as_str().expect("volume name");
        let volume = pod["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == volume_name))
            .unwrap_or_else(|| panic!("{deployment}: no volume {volume_name}"));
        let secret = volume["secret"]["secretName"]
            .as_str()
            .unwrap_or_else(|| panic!("{deployment}: volume {volume_name} is not a Secret"));
        let dir = mounts.join(volume_name);
        std::fs::create_dir_all(&dir).expect("mount dir");
        let mut any = false;
        for ((s, key), content) in secrets {
            if *s == secret {
                std::fs::write(dir.join(key), content).expect("secret file");
                any = true;
            }
        }
        assert!(
            any,
            "{deployment}: the test has no data for Secret {secret}"
        );
        paths.push((m["mountPath"].as_str().expect("mountPath").to_owned(), dir));
    }
    let args = strings(&c["args"])
        .into_iter()
        .map(|a| {
            paths.iter().fold(a, |a, (mount, dir)| {
                a.replace(&format!("{mount}/"), &format!("{}/", dir.display()))
            })
        })
        .collect();
    let mut env = BTreeMap::new();
    for from in c["envFrom"].as_array().into_iter().flatten() {
        let cm = find(
            objs,
            "ConfigMap",
            from["configMapRef"]["name"].as_str().expect("name"),
        );
        for (k, v) in cm["data"].as_object().expect("data") {
            env.insert(k.clone(), v.as_str().expect("string").to_owned());
        }
    }
    for e in c["env"].as_array().into_iter().flatten() {
        let var = e["name"].as_str().expect("env name").to_owned();
        let value = if let Some(v) = e["value"].as_str() {
            v.to_owned()
        } else if let Some(field) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match field {
                "metadata.namespace" => d["metadata"]["namespace"].as_str().expect("ns").to_owned(),
                "metadata.name" => pod_name.to_owned(),
                other => panic!("{deployment}: fieldRef {other}"),
            }
        } else if let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() {
            let key = (
                r["name"].as_str().expect("secret"),
                r["key"].as_str().expect("key"),
            );
            secrets
                .get(&key)
                .unwrap_or_else(|| panic!("{deployment}: the test has no Secret {key:?}"))
                .clone()
        } else {
            panic!("{deployment}: env {var}: {e}")
        };
        env.insert(var, value);
    }
    Launch { args, env }
}

/// A credshift process as a Deployment `l` runs it, with `extra_env`.
fn start(l: &Launch, extra_env: &[(&str, String)], log: PathBuf) -> Process {
    let mut cmd = support::credshift();
    cmd.args(&l.args)
        .envs(&l.env)
        .envs(extra_env.iter().map(|(k, v)| (*k, v)));
    Process::start(cmd, Guard::Watchdog, &log)
}

fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {timeout:?}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn get_json(args: &[&str]) -> Option<Value> {
    let out = kubectl().args(args).args(["-o", "json"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn condition_true(obj: &Value, type_: &str) -> bool {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == type_ && c["status"] == "True")
}

fn random_bytes(n: usize) -> Vec<u8> {
    use std::io::Read as _;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom");
    buf
}

fn random_hex(n: usize) -> String {
    random_bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `curl -sk` against the API on loopback; returns (status, body).
fn curl(port: u16, path: &str, token: Option<&str>, body: Option<&Value>) -> Option<(u16, String)> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sk", "--max-time", "20", "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "-d", &b.to_string()]);
    }
    cmd.arg(format!("https://127.0.0.1:{port}{path}"));
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("curl (apt-get install curl): {e}"));
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_owned()))
}

/// The controller's health listener (plain HTTP).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    support::http::request(port, "GET", path, "", None)
        .ok()
        .map(|r| (r.status, r.text()))
}

/// `kubectl auth can-i` for a ServiceAccount, asked by the admin.
fn can_i(sa: &str, args: &[&str]) -> bool {
    let out = kubectl()
        .args(["auth", "can-i"])
        .args(args)
        .arg(format!("--as=system:serviceaccount:{NAMESPACE}:{sa}"))
        .output()
        .expect("kubectl auth can-i");
    match stdout(&out).trim() {
        "yes" => true,
        "no" => false,
        other => panic!("kubectl auth can-i {args:?}: {other:?} {}", stderr(&out)),
    }
}

/// The controller and the API, run exactly as their rendered Deployments
/// would run them (args, environment, mounted Secrets) but with tokens of
/// their ServiceAccounts: the controller takes the Lease, reconciles a
/// policy and a cutover from Scheduled to Completed (status patches, Events)
/// and delivers a recovery mail the API queued (its recovery loop); the API
/// reads the realms from the cluster. Neither meets an authorization error,
/// and both are refused what they must not do.
#[test]
fn the_controller_and_the_api_work_with_exactly_their_rbac() {
    apply_rbac();
    let objs = render("manifests");
    let dir = tempfile::tempdir().expect("temp dir");
    let controller_config = kubeconfig_for(CONTROLLER_SA, dir.path());
    let api_config = kubeconfig_for(API_SA, dir.path());

    // A store with the six demo members, and the 2018 split due in a few
    // seconds, in a namespace of its own.
    let store_url = format!("sqlite://{}", dir.path().join("credshift.db").display());
    let mut import = support::credshift();
    let out = output(
        import
            .args([
                "accounts", "import", "--store", &store_url, "--realm", "wakwak",
            ])
            .arg(repo().join("examples/2018-split/members.csv")),
    );
    assert!(out.status.success(), "import: {}", stderr(&out));
    let ns = support::unique_name("deploy");
    kubectl_ok(&["create", "namespace", &ns]);
    let apply = |manifest: &str| {
        let (ok, _, err) = kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], manifest);
        assert!(ok, "kubectl apply: {err}");
    };
    apply(&read("examples/2018-split/policy.yaml"));

    let outbox_key = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(random_bytes(32))
    };
    let portal_token = format!("portal-{}", random_hex(24));
    let tokens_yaml = {
        use sha2::Digest as _;
        let digest: String = sha2::Sha256::digest(portal_token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!(
            "tokens:\n  - name: portal\n    channel: portal\n    realms: [wakwak]\n    sha256: {digest}\n"
        )
    };
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).expect("tls dir");
    support::tls::self_signed(
        &tls,
        "/CN=credshift-api.credshift-system.svc",
        "DNS:localhost,IP:127.0.0.1",
    );
    let secrets: BTreeMap<(&str, &str), String> = BTreeMap::from([
        (OUTBOX_SECRET, outbox_key),
        (STORE_SECRET, store_url.clone()),
        (("credshift-api-tokens", "tokens.yaml"), tokens_yaml),
        (
            ("credshift-api-tls", "tls.crt"),
            std::fs::read_to_string(tls.join("cert.pem")).expect("cert"),
        ),
        (
            ("credshift-api-tls", "tls.key"),
            std::fs::read_to_string(tls.join("key.pem")).expect("key"),
        ),
    ]);

    // The controller, as its Deployment runs it, as its ServiceAccount.
    let smtp = support::smtp::SmtpServer::start();
    let identity = "credshift-controller-5d8f7c6b9-x2x7q";
    let mut l = launch(
        &objs,
        "credshift-controller",
        identity,
        &secrets,
        &dir.path().join("controller-mounts"),
    );
    assert!(
        l.env.contains_key("CREDSHIFT_SMTP"),
        "the controller delivers mail"
    );
    l.env.insert("CREDSHIFT_SMTP".into(), smtp.url());
    let health = support::process::free_port();
    let mut controller = start(
        &l,
        &[
            ("KUBECONFIG", controller_config.display().to_string()),
            ("CREDSHIFT_HEALTH_ADDR", format!("127.0.0.1:{health}")),
            ("CREDSHIFT_LOG", "info".into()),
        ],
        dir.path().join("controller.log"),
    );
    let controller_log = controller.log.clone();
    wait_until(
        "controller ready",
        Duration::from_secs(60),
        || {
            controller.assert_running("waiting for readiness");
            matches!(http_get(health, "/readyz"), Some((200, _))).then_some(())
        },
        || read_log(&controller_log),
    );

    // Reconciles: the policy is in force, the cutover runs to Completed.
    let policy = wait_until(
        "policy Ready",
        Duration::from_secs(60),
        || {
            get_json(&["get", "credentialpolicy", "wakwak", "-n", &ns])
                .filter(|p| condition_true(p, "Ready"))
        },
        || controller.log_text(),
    );
    assert_eq!(
        policy["status"]["observedGeneration"],
        policy["metadata"]["generation"]
    );
    // The 2018 split, due a few seconds from now (after the controller leads,
    // so that it sees the cutover Scheduled first).
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(10)).to_string();
    apply(
        &read("examples/2018-split/cutover.yaml")
            .replace("\"2018-04-18T00:00:00+09:00\"", &format!("\"{at}\""))
            .replace("batchSize: 1000", "batchSize: 2"),
    );
    let cutover = wait_until(
        "cutover Completed",
        Duration::from_secs(120),
        || {
            get_json(&["get", "credentialcutover", "split-login-2018", "-n", &ns])
                .filter(|c| c["status"]["phase"] == "Completed" && condition_true(c, "Ready"))
        },
        || controller.log_text(),
    );
    assert_eq!(cutover["status"]["progress"]["summary"], "6/6 (100%)");
    // It holds the Lease in its own namespace.
    let holder = kubectl_ok(&[
        "get",
        "lease",
        "credshift-controller",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder.trim(), identity);
    // And narrates with events.k8s.io Events.
    wait_until(
        "Events",
        Duration::from_secs(30),
        || {
            let events = get_json(&["get", "events.events.k8s.io", "-n", &ns])?;
            let ours: BTreeSet<&str> = events["items"]
                .as_array()?
                .iter()
                .filter(|e| {
                    e["reportingController"] == "credshift-controller"
                        && e["reportingInstance"] == identity
                })
                .filter_map(|e| e["reason"].as_str())
                .collect();
            [
                "InForce",
                "CutoverScheduled",
                "CutoverStarted",
                "CutoverCompleted",
            ]
            .iter()
            .all(|r| ours.contains(r))
            .then_some(())
        },
        || kubectl_ok(&["get", "events", "-n", &ns]),
    );

    // The API, as its Deployment runs it, as its ServiceAccount.
    let mut l = launch(
        &objs,
        "credshift-api",
        "credshift-api-7c9d-abcde",
        &secrets,
        &dir.path().join("api-mounts"),
    );
    assert!(
        !l.env.contains_key("CREDSHIFT_SMTP"),
        "in a cluster only the controller delivers mail"
    );
    let port = support::process::free_port();
    l.args.push(format!("--listen=127.0.0.1:{port}"));
    let mut api = start(
        &l,
        &[
            ("KUBECONFIG", api_config.display().to_string()),
            ("CREDSHIFT_LOG", "info".into()),
        ],
        dir.path().join("api.log"),
    );
    let api_log = api.log.clone();
    wait_until(
        "API ready",
        Duration::from_secs(60),
        || {
            api.assert_running("waiting for readiness");
            matches!(curl(port, "/readyz", None, None), Some((200, _))).then_some(())
        },
        || read_log(&api_log),
    );
    // "Forgot my member support password": the API finds the realm in the
    // cluster and queues a sealed mail; the controller delivers it.
    let (code, body) = curl(
        port,
        "/v1/recovery",
        Some(&portal_token),
        Some(&json!({"realm": "wakwak", "login_id": TARO, "purpose": "support-portal"})),
    )
    .expect("recovery");
    assert_eq!(code, 202, "{body}\n{}", api.log_text());
    let mail = smtp.wait_for_mail(TARO_MAIL, Duration::from_secs(60));
    assert!(mail.body.contains(TARO), "{mail:?}");
    assert_eq!(
        api_metric(port, "credshift_api_requests_total", "outcome=\"accepted\""),
        1.0
    );
    wait_until(
        "mails_total{result=sent}",
        Duration::from_secs(30),
        || {
            (controller_metric(health, "credshift_recovery_mails_total", "result=\"sent\"") >= 1.0)
                .then_some(())
        },
        || controller.log_text(),
    );
    // The policy's status shows it once the policy is reconciled again.
    kubectl_ok(&[
        "annotate",
        "--overwrite",
        "credentialpolicy",
        "wakwak",
        "-n",
        &ns,
        "credshift.dev/deploy-test=touched",
    ]);
    let policy = wait_until(
        "status.recovery.mailDelivered",
        Duration::from_secs(60),
        || {
            get_json(&["get", "credentialpolicy", "wakwak", "-n", &ns])
                .filter(|p| p["status"]["recovery"]["mailDelivered"].as_i64() >= Some(1))
        },
        || controller.log_text(),
    );
    assert_eq!(policy["status"]["recovery"]["issued"], 1);

    // The Argo CD health checks on the live objects.
    let cutover =
        get_json(&["get", "credentialcutover", "split-login-2018", "-n", &ns]).expect("cutover");
    let (status, message) = argo_health("CredentialCutover", &cutover, dir.path());
    assert_eq!(status, "Healthy", "{message}");
    let (status, message) = argo_health("CredentialPolicy", &policy, dir.path());
    assert_eq!(status, "Healthy", "{message}");

    // Every metric both expose is documented, and the API's documented
    // metrics are there.
    check_metrics_documented(&http_get(health, "/metrics").expect("controller metrics").1);
    let seen =
        check_metrics_documented(&curl(port, "/metrics", None, None).expect("api metrics").1);
    for name in documented_metrics().into_keys() {
        if name.starts_with("credshift_api_") {
            assert!(seen.contains(&name), "{name} not exposed by the API");
        }
    }

    // The API's token reads the policies, and only reads.
    let out = kubectl_as(
        &api_config,
        &["get", "credentialpolicies", "-A", "-o", "name"],
    );
    assert!(
        stdout(&out).contains("credentialpolicy.credshift.dev/wakwak"),
        "{}",
        stderr(&out)
    );

    controller.stop();
    api.stop();
    for (what, p) in [("controller", &controller), ("api", &api)] {
        let log = p.log_text();
        let lower = log.to_lowercase();
        // A 403 is a status word on its own, not three digits inside a
        // timestamp or a port number.
        let status_403 = lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| word == "403");
        assert!(
            !lower.contains("forbidden") && !status_403 && !lower.contains("panicked"),
            "{what} met an authorization error or panicked:\n{log}"
        );
    }

    // What they must not do, asked with their real tokens (`NS` is the
    // policy's namespace)...
    let ns_args = |line: &str| -> Vec<String> {
        line.split_whitespace()
            .map(|w| if w == "NS" { ns.clone() } else { w.to_owned() })
            .collect()
    };
    for (config, line) in [
        (&controller_config, "get secrets -n kube-system"),
        (&controller_config, "get secrets -n credshift-system"),
        (&controller_config, "get pods -A"),
        (&controller_config, "get credentialpolicies wakwak -n NS"),
        (
            &controller_config,
            "delete crd credentialcutovers.credshift.dev",
        ),
        (&controller_config, "create deployment x --image=x -n NS"),
        (
            &controller_config,
            r#"patch credentialpolicy wakwak -n NS --type=merge -p {"spec":{"realm":"x"}}"#,
        ),
        (&api_config, "get secrets -n credshift-system"),
        (
            &api_config,
            r#"patch credentialpolicy wakwak -n NS --subresource=status --type=merge -p {"status":{"accounts":0}}"#,
        ),
    ] {
        let args = ns_args(line);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = kubectl_as(config, &args);
        assert!(
            !out.status.success() && stderr(&out).contains("forbidden"),
            "{} {line} was not forbidden: {}{}",
            config.display(),
            stdout(&out),
            stderr(&out)
        );
    }
    // ...and the whole picture, asked by the admin for them
    // (`kubectl auth can-i VERB RESOURCE ...`).
    let yes = [
        (CONTROLLER_SA, "list credentialpolicies.credshift.dev -A"),
        (CONTROLLER_SA, "watch credentialcutovers.credshift.dev -A"),
        (
            CONTROLLER_SA,
            "patch credentialcutovers.credshift.dev --subresource=status -n NS",
        ),
        (
            CONTROLLER_SA,
            "patch credentialpolicies.credshift.dev --subresource=status -n NS",
        ),
        // The cutover finalizer.
        (
            CONTROLLER_SA,
            "patch credentialcutovers.credshift.dev -n NS",
        ),
        (CONTROLLER_SA, "create events.events.k8s.io -n NS"),
        (CONTROLLER_SA, "patch events.events.k8s.io -n NS"),
        (
            CONTROLLER_SA,
            "get leases/credshift-controller -n credshift-system",
        ),
        (
            CONTROLLER_SA,
            "patch leases/credshift-controller -n credshift-system",
        ),
        (CONTROLLER_SA, "create leases -n credshift-system"),
        (API_SA, "list credentialpolicies.credshift.dev -A"),
        (API_SA, "watch credentialcutovers.credshift.dev -A"),
        (API_SA, "get credentialcutovers.credshift.dev -n NS"),
    ];
    let no = [
        (CONTROLLER_SA, "get secrets -n NS"),
        (CONTROLLER_SA, "list secrets -A"),
        (CONTROLLER_SA, "get secrets -n credshift-system"),
        (CONTROLLER_SA, "get configmaps -n credshift-system"),
        (CONTROLLER_SA, "list pods -A"),
        (CONTROLLER_SA, "create deployments.apps -n NS"),
        (
            CONTROLLER_SA,
            "delete customresourcedefinitions.apiextensions.k8s.io",
        ),
        (
            CONTROLLER_SA,
            "create customresourcedefinitions.apiextensions.k8s.io",
        ),
        (CONTROLLER_SA, "get credentialpolicies.credshift.dev -n NS"),
        (
            CONTROLLER_SA,
            "patch credentialpolicies.credshift.dev -n NS",
        ),
        (
            CONTROLLER_SA,
            "update credentialcutovers.credshift.dev -n NS",
        ),
        (
            CONTROLLER_SA,
            "create credentialcutovers.credshift.dev -n NS",
        ),
        (
            CONTROLLER_SA,
            "delete credentialcutovers.credshift.dev -n NS",
        ),
        (
            CONTROLLER_SA,
            "update credentialpolicies.credshift.dev --subresource=status -n NS",
        ),
        (CONTROLLER_SA, "create events -n NS"),
        (CONTROLLER_SA, "delete events.events.k8s.io -n NS"),
        (
            CONTROLLER_SA,
            "get leases/kube-scheduler -n credshift-system",
        ),
        (
            CONTROLLER_SA,
            "delete leases/credshift-controller -n credshift-system",
        ),
        (CONTROLLER_SA, "create leases -n NS"),
        (
            CONTROLLER_SA,
            "patch leases/credshift-controller -n kube-system",
        ),
        (
            CONTROLLER_SA,
            "create serviceaccounts --subresource=token -n credshift-system",
        ),
        (
            API_SA,
            "patch credentialpolicies.credshift.dev --subresource=status -n NS",
        ),
        (API_SA, "patch credentialpolicies.credshift.dev -n NS"),
        (API_SA, "create events.events.k8s.io -n NS"),
        (API_SA, "get secrets -n credshift-system"),
        (
            API_SA,
            "get leases/credshift-controller -n credshift-system",
        ),
        (API_SA, "list pods -A"),
    ];
    let mut wrong = Vec::new();
    for (expected, list) in [(true, &yes[..]), (false, &no[..])] {
        for (sa, line) in list {
            let args = ns_args(line);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if can_i(sa, &args) != expected {
                wrong.push(format!(
                    "{sa}: can-i {line}: expected {}",
                    if expected { "yes" } else { "no" }
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn metric_value(body: &str, name: &str, filter: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn controller_metric(port: u16, name: &str, filter: &str) -> f64 {
    http_get(port, "/metrics").map_or(0.0, |(_, b)| metric_value(&b, name, filter))
}

fn api_metric(port: u16, name: &str, filter: &str) -> f64 {
    curl(port, "/metrics", None, None).map_or(0.0, |(_, b)| metric_value(&b, name, filter))
}

// ---------------------------------------------------------------------------
// Argo CD health checks

const LUAS: [&str; 2] = ["lua5.1", "lua5.4"];

fn lua(interpreter: &str) -> Command {
    let mut cmd = Command::new(interpreter);
    cmd.current_dir(repo().join("deploy/argocd"));
    cmd
}

fn lua_output(cmd: &mut Command, interpreter: &str) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!(
            "{interpreter}: {e}: install Lua 5.1 and 5.4 (apt-get install lua5.1 lua5.4; .ci/run does)"
        )
    })
}

/// Runs the health check of `kind` on `obj` (Lua 5.1, as Argo CD's VM is);
/// returns (status, message).
fn argo_health(kind: &str, obj: &Value, dir: &Path) -> (String, String) {
    let file = dir.join(format!("{kind}.json"));
    std::fs::write(&file, obj.to_string()).expect("object file");
    let out = lua_output(
        lua("lua5.1")
            .args(["test/harness.lua", "--eval"])
            .arg(format!("credshift.dev/{kind}/health.lua"))
            .arg(&file),
        "lua5.1",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let (status, message) = text.trim_end().split_once('\t').expect("STATUS\\tMESSAGE");
    (status.to_owned(), message.to_owned())
}

#[test]
fn argo_cd_health_checks_give_the_documented_status_on_lua_5_1_and_5_4() {
    for (kind, statuses) in [
        (
            "CredentialCutover",
            &["Healthy", "Progressing", "Degraded", "Suspended"][..],
        ),
        (
            "CredentialPolicy",
            &["Healthy", "Progressing", "Degraded"][..],
        ),
    ] {
        let dir = repo()
            .join("deploy/argocd/credshift.dev")
            .join(kind)
            .join("testdata");
        let mut fixtures: Vec<String> = std::fs::read_dir(&dir)
            .expect("testdata")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .map(|n| format!("credshift.dev/{kind}/testdata/{n}"))
            .collect();
        fixtures.sort();
        // The fixtures cover every status the check can give.
        let covered: BTreeSet<String> = fixtures
            .iter()
            .map(|f| {
                let v: Value =
                    serde_json::from_str(&read(&format!("deploy/argocd/{f}"))).expect("fixture");
                v["expected"]["status"]
                    .as_str()
                    .expect("expected.status")
                    .to_owned()
            })
            .collect();
        assert_eq!(
            covered,
            statuses.iter().map(|s| s.to_string()).collect(),
            "{kind}"
        );
        for interpreter in LUAS {
            let out = lua_output(
                lua(interpreter)
                    .arg("test/harness.lua")
                    .arg(format!("credshift.dev/{kind}/health.lua"))
                    .args(&fixtures),
                interpreter,
            );
            assert!(
                out.status.success()
                    && stdout(&out).contains(&format!("{} passed, 0 failed", fixtures.len())),
                "{interpreter} {kind}:\n{}{}",
                stdout(&out),
                stderr(&out)
            );
        }
    }
    // The harness does fail: the policy check does not know Suspended.
    let out = lua_output(
        lua("lua5.4").args([
            "test/harness.lua",
            "credshift.dev/CredentialPolicy/health.lua",
            "credshift.dev/CredentialCutover/testdata/suspended.json",
        ]),
        "lua5.4",
    );
    assert!(
        !out.status.success() && stdout(&out).contains("FAIL"),
        "{}",
        stdout(&out)
    );

    // deploy/argocd renders the argocd-cm keys from the scripts, byte for byte.
    let cm = render("deploy/argocd");
    let cm = find(&cm, "ConfigMap", "argocd-cm");
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "argocd"
    );
    for kind in ["CredentialPolicy", "CredentialCutover"] {
        assert_eq!(
            cm["data"][format!("resource.customizations.health.credshift.dev_{kind}")],
            read(&format!("deploy/argocd/credshift.dev/{kind}/health.lua")),
            "{kind}"
        );
    }
}

// ---------------------------------------------------------------------------
// Metrics, documentation, dashboard

/// The metric rows of docs/metrics.md's tables: name -> the row.
fn documented_metrics() -> BTreeMap<String, String> {
    read("docs/metrics.md")
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("| `")?;
            let (name, _) = rest.split_once('`')?;
            (name.starts_with("credshift_") || name.starts_with("kube_credshift_"))
                .then(|| (name.to_owned(), l.to_owned()))
        })
        .collect()
}

/// Every family in an OpenMetrics exposition is documented, with its type
/// and its label names; returns the documented names seen.
fn check_metrics_documented(exposition: &str) -> BTreeSet<String> {
    let docs = documented_metrics();
    let mut seen = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (family, kind) = rest.split_once(' ').expect("# TYPE name type");
        let name = if kind == "counter" {
            format!("{family}_total")
        } else {
            family.to_owned()
        };
        let row = docs
            .get(&name)
            .unwrap_or_else(|| panic!("{name} ({kind}) is not in docs/metrics.md"));
        assert!(
            row.contains(&format!("| {kind}")),
            "docs/metrics.md: {name} is a {kind}: {row}"
        );
        seen.insert(name);
    }
    for line in exposition
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('{'))
    {
        let (sample, rest) = line.split_once('{').expect("labels");
        let family = sample
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        let row = docs
            .get(sample)
            .or_else(|| docs.get(family))
            .unwrap_or_else(|| panic!("{sample} is not in docs/metrics.md"));
        for pair in rest.split('}').next().unwrap_or_default().split(',') {
            let label = pair.split('=').next().unwrap_or_default();
            if label != "le" && !label.is_empty() {
                assert!(
                    row.contains(&format!("`{label}`")),
                    "docs/metrics.md: {sample} label {label}: {row}"
                );
            }
        }
    }
    seen
}

/// Every controller metric (each given a sample, as families without one
/// are not exposed) is documented, and every documented one exists.
#[test]
fn the_controller_metrics_are_documented() {
    let metrics = credshift::controller::Metrics::default();
    metrics.reconciled("CredentialCutover", Duration::from_millis(3));
    metrics.failed("CredentialCutover", "Store");
    metrics.mails("sent", 1);
    metrics.tickets("expired", 1);
    let seen = check_metrics_documented(&metrics.render());
    let documented: BTreeSet<String> = documented_metrics()
        .into_keys()
        .filter(|n| n.starts_with("credshift_") && !n.starts_with("credshift_api_"))
        .collect();
    assert_eq!(seen, documented);
}

/// Resolves a kube-state-metrics path (`[status, progress, done]`) on an object.
fn at_path<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(obj, |v, seg| v.get(seg.as_str()))
        .filter(|v| !v.is_null())
}

#[test]
fn the_dashboard_uses_documented_metrics_that_kube_state_metrics_makes_from_real_statuses() {
    let docs = documented_metrics();
    // kube-state-metrics' config: every metric documented, every path there
    // in a status the controller really wrote (the Argo CD fixtures).
    let ksm: Value =
        serde_saphyr::from_str(&read("dashboards/kube-state-metrics.yaml")).expect("YAML");
    assert_eq!(ksm["kind"], "CustomResourceStateMetrics");
    let fixtures = |kind: &str| -> Vec<Value> {
        let dir = repo()
            .join("deploy/argocd/credshift.dev")
            .join(kind)
            .join("testdata");
        std::fs::read_dir(dir)
            .expect("testdata")
            .filter_map(|e| e.ok())
            .map(|e| {
                let v: Value =
                    serde_json::from_str(&std::fs::read_to_string(e.path()).expect("read"))
                        .expect("JSON");
                v["obj"].clone()
            })
            .collect()
    };
    let crds: Vec<Value> =
        serde_saphyr::from_multiple(&read("crds/credshift.dev.yaml")).expect("CRDs");
    let mut ksm_names = BTreeSet::new();
    for r in ksm["spec"]["resources"].as_array().expect("resources") {
        let kind = r["groupVersionKind"]["kind"].as_str().expect("kind");
        assert_eq!(r["groupVersionKind"]["group"], "credshift.dev");
        let crd = crds
            .iter()
            .find(|c| c["spec"]["names"]["kind"] == kind)
            .expect("CRD");
        assert_eq!(
            r["groupVersionKind"]["version"],
            crd["spec"]["versions"][0]["name"]
        );
        let objs = fixtures(kind);
        let prefix = r["metricNamePrefix"].as_str().expect("prefix");
        for m in r["metrics"].as_array().expect("metrics") {
            let name = format!("{prefix}_{}", m["name"].as_str().expect("name"));
            assert!(docs.contains_key(&name), "{name} is not in docs/metrics.md");
            ksm_names.insert(name.clone());
            let each = &m["each"];
            let spec = if each["type"] == "StateSet" {
                &each["stateSet"]
            } else {
                &each["gauge"]
            };
            let path = strings(&spec["path"]);
            let found: Vec<&Value> = objs.iter().filter_map(|o| at_path(o, &path)).collect();
            assert!(!found.is_empty(), "{name}: {path:?} is in no real status");
            if let Some(from) = spec["valueFrom"].as_array() {
                let from: Vec<String> = from
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect();
                assert!(
                    found.iter().any(|v| v
                        .as_array()
                        .is_some_and(|a| a.iter().any(|e| at_path(e, &from).is_some()))),
                    "{name}: valueFrom {from:?}"
                );
            }
            if each["type"] == "StateSet" {
                // The phases are the CRD's enum.
                let mut schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
                for seg in &path {
                    schema = &schema["properties"][seg.as_str()];
                }
                let mut want = strings(&schema["enum"]);
                let mut got = strings(&spec["list"]);
                want.sort();
                got.sort();
                assert_eq!(got, want, "{name}: the states are the CRD's enum");
            }
        }
    }
    assert_eq!(
        ksm_names,
        docs.keys()
            .filter(|n| n.starts_with("kube_"))
            .cloned()
            .collect(),
        "docs/metrics.md documents exactly what kube-state-metrics.yaml makes"
    );

    // The dashboard: valid JSON, unique panel ids, one data source variable,
    // and only documented metrics in its queries.
    let dash: Value =
        serde_json::from_str(&read("dashboards/credshift.json")).expect("dashboard JSON");
    assert!(dash["uid"].is_string() && dash["title"].is_string());
    let panels = dash["panels"].as_array().expect("panels");
    let ids: Vec<i64> = panels.iter().filter_map(|p| p["id"].as_i64()).collect();
    assert_eq!(ids.len(), panels.len());
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "unique ids"
    );
    let metric = regex::Regex::new(r"\b(?:kube_)?credshift_[a-z_]+").expect("regex");
    let mut used = BTreeSet::new();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            for m in metric.find_iter(expr) {
                let name = m.as_str();
                let family = name.strip_suffix("_bucket").unwrap_or(name);
                assert!(
                    docs.contains_key(family),
                    "{}: {name} is not documented",
                    p["title"]
                );
                used.insert(family.to_owned());
            }
        }
    }
    for needed in [
        "kube_credshift_cutover_progress_done",
        "kube_credshift_cutover_phase",
        "credshift_recovery_mails_total",
        "kube_credshift_policy_recovery",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
}

// ---------------------------------------------------------------------------
// The container image

/// The Dockerfile cannot be built here (no container engine), so this builds
/// what it would build: the build stage's files (its COPY sources, which
/// .dockerignore must let through) in a directory of their own, with the
/// build stage's `cargo build` command, and runs the binary. The binary
/// needs nothing from the runtime image but glibc and libgcc_s, which
/// distroless/cc has, and the image's user is the manifests' user.
#[test]
fn the_dockerfile_builds_the_binary_it_ships() {
    let dockerfile = read("Dockerfile");
    let stages: Vec<&str> = dockerfile.split("\nFROM ").skip(1).collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (build, runtime) = (stages[0], stages[1]);
    assert!(build.contains(" AS build"), "the build stage");
    assert!(
        runtime.starts_with("gcr.io/distroless/cc-debian12:nonroot"),
        "runtime: distroless cc, non-root"
    );

    // A Rust at least as new as rust-version.
    let arg = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .expect("ARG RUST_VERSION");
    let version = |s: &str| -> Vec<u32> { s.split('.').filter_map(|p| p.parse().ok()).collect() };
    let msrv = read("Cargo.toml")
        .lines()
        .find_map(|l| {
            l.strip_prefix("rust-version = \"")?
                .strip_suffix('"')
                .map(str::to_owned)
        })
        .expect("rust-version");
    assert!(
        version(arg) >= version(&msrv),
        "RUST_VERSION {arg} < rust-version {msrv}"
    );

    // .dockerignore is an allowlist; the build stage copies only what it lets in.
    let ignore = read(".dockerignore");
    let mut rules = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    assert_eq!(rules.next(), Some("*"), ".dockerignore starts with *");
    let allowed: BTreeSet<String> = rules
        .map(|l| {
            l.strip_prefix('!')
                .expect("only !exceptions after *")
                .trim_end_matches('/')
                .to_owned()
        })
        .collect();
    let mut sources = Vec::new();
    let mut joined = build.replace("\\\n", " ");
    joined.push('\n');
    for line in joined.lines() {
        if let Some(rest) = line.trim().strip_prefix("COPY ") {
            let words: Vec<&str> = rest
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            for src in &words[..words.len() - 1] {
                let src = src.trim_end_matches('/').to_owned();
                assert!(
                    allowed.contains(&src),
                    "COPY {src}: left out by .dockerignore"
                );
                sources.push(src);
            }
        }
        assert!(
            !line.trim().starts_with("ENV "),
            "ENV in the build stage is not replayed here"
        );
    }
    let cargo_build = joined
        .lines()
        .find_map(|l| l.split("cargo build ").nth(1))
        .expect("a cargo build command")
        .split("&&")
        .next()
        .expect("command")
        .split_whitespace()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert!(
        cargo_build.contains(&"--locked".to_owned())
            && cargo_build.contains(&"--release".to_owned())
    );
    let binary_from = if cargo_build.contains(&"--release".to_owned()) {
        "release"
    } else {
        "debug"
    };

    // The build context, in a fixed place so that an unchanged tree rebuilds
    // nothing (file times are kept).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let context = target.join("docker-context");
    let _ = std::fs::create_dir_all(&context);
    for entry in std::fs::read_dir(&context).expect("context") {
        let entry = entry.expect("entry");
        let n = entry.file_name().to_string_lossy().into_owned();
        if !sources.contains(&n) {
            let _ = std::fs::remove_dir_all(entry.path())
                .or_else(|_| std::fs::remove_file(entry.path()));
        }
    }
    for src in &sources {
        mirror(&repo().join(src), &context.join(src));
    }
    let started = Instant::now();
    let out = output(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .arg("build")
            .args(&cargo_build)
            .current_dir(&context)
            .env("CARGO_TARGET_DIR", target.join("docker-build"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
    );
    assert!(
        out.status.success(),
        "cargo build {cargo_build:?} in the build context:\n{}",
        stderr(&out)
    );
    eprintln!("docker build stage's cargo build: {:?}", started.elapsed());
    let binary = target
        .join("docker-build")
        .join(binary_from)
        .join("credshift");

    // It runs, and is the version the manifests deploy.
    let out = output(Command::new(&binary).arg("--version"));
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("credshift {}", env!("CARGO_PKG_VERSION"))
    );
    let out = output(Command::new(&binary).args(["controller", "--help"]));
    assert!(out.status.success() && stdout(&out).contains("--lease-namespace"));

    // Nothing but what distroless/cc provides.
    let out = output(Command::new("readelf").args(["-d"]).arg(&binary));
    assert!(out.status.success(), "readelf (binutils): {}", stderr(&out));
    let needed: Vec<String> = stdout(&out)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_owned))
        .collect();
    let distroless_cc = [
        "libc.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
        "ld-linux-x86-64.so.2",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
    ];
    for lib in &needed {
        assert!(
            distroless_cc.contains(&lib.as_str()),
            "{lib} is not in distroless/cc"
        );
    }

    // The image's entrypoint is the copied binary, its user the manifests'.
    let copied_to = runtime
        .lines()
        .find_map(|l| l.strip_prefix("COPY --from=build "))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("COPY --from=build");
    assert!(
        runtime.contains(&format!("ENTRYPOINT [\"{copied_to}\"]")),
        "ENTRYPOINT"
    );
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER")
        .trim()
        .to_owned();
    for d in of_kind(&render("manifests"), "Deployment") {
        let sc = &d["spec"]["template"]["spec"]["securityContext"];
        assert_eq!(
            user,
            format!("{}:{}", sc["runAsUser"], sc["runAsGroup"]),
            "{}",
            name(d)
        );
    }
}

/// Copies `from` to `to` (a file or a tree), keeping modification times and
/// leaving unchanged files alone; removes what `from` no longer has.
fn mirror(from: &Path, to: &Path) {
    let meta = std::fs::metadata(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    if meta.is_dir() {
        if to.is_file() {
            let _ = std::fs::remove_file(to);
        }
        std::fs::create_dir_all(to).expect("mkdir");
        let mut names = BTreeSet::new();
        for e in std::fs::read_dir(from).expect("read_dir") {
            let e = e.expect("entry");
            names.insert(e.file_name());
            mirror(&e.path(), &to.join(e.file_name()));
        }
        for e in std::fs::read_dir(to).expect("read_dir") {
            let e = e.expect("entry");
            if !names.contains(&e.file_name()) {
                let _ =
                    std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
        return;
    }
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    if let Ok(old) = std::fs::metadata(to)
        && old.len() == meta.len()
        && old.modified().ok() == Some(modified)
    {
        return;
    }
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    std::fs::File::options()
        .write(true)
        .open(to)
        .and_then(|f| f.set_modified(modified))
        .expect("keep the modification time");
}
