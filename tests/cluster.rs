//! The custom resources and the controller against a real kube-apiserver +
//! etcd and a real kubectl.

// A panic in a test is its failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use credshift::resources::{ConditionStatus, CredentialCutover, CredentialPolicy, CutoverPhase};
use credshift::store::{CredentialWrite, Expected, Store, WriteKind};
use kube::api::Api;

use support::cluster::{Scene, apply, example, future_cutover, wait_for};
use support::controller;
use support::kube::{install_crds, kstatus, kstatus_of, kubectl_ok, kubectl_stdin};
use support::process::{Guard, Process};
use support::serve::DEMO;

/// A store with `n` members holding the old login password.
async fn store_with_members(dir: &Path, n: usize) -> (Store, String) {
    let url = format!("sqlite://{}", dir.join("credshift.db").display());
    let store = Store::open(&url).await.expect("store");
    let now = jiff::Timestamp::now();
    for i in 0..n {
        let account = store
            .create_account(
                "wakwak",
                &format!("wk{i:06}"),
                "m@wakwak.example.jp",
                "test",
                now,
            )
            .await
            .expect("account");
        let write = CredentialWrite {
            name: "login".into(),
            hash: "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/".into(),
            expected: Expected::Absent,
            via: "import".into(),
            must_change: false,
            action: "credential.set",
            kind: WriteKind::Set,
        };
        store
            .write_credential(&account, write, now)
            .await
            .expect("credential");
    }
    (store, url)
}

fn condition(
    conds: &[credshift::resources::Condition],
    type_: &str,
) -> Option<(ConditionStatus, String)> {
    conds
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status, c.message.clone()))
}

fn policy_condition(p: &CredentialPolicy, type_: &str) -> Option<(ConditionStatus, String)> {
    p.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, type_))
}

fn cutover_condition(c: &CredentialCutover, type_: &str) -> Option<(ConditionStatus, String)> {
    c.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, type_))
}

// ---------------------------------------------------------------------------
// The CRDs

#[test]
fn crds_are_accepted_and_kubectl_explain_teaches_the_api() {
    install_crds();
    let explained = kubectl_ok(&["explain", "credentialcutover.spec.split"]);
    assert!(
        explained.contains("The shared credential being split"),
        "{explained}"
    );
    let explained = kubectl_ok(&["explain", "credentialpolicy.spec.credentials.recovery.mode"]);
    assert!(explained.contains("SelfService"), "{explained}");
    let categories = kubectl_ok(&["api-resources", "--categories=credshift", "-o", "name"]);
    assert!(
        categories.contains("credentialpolicies.credshift.dev"),
        "{categories}"
    );
    assert!(
        categories.contains("credentialcutovers.credshift.dev"),
        "{categories}"
    );
}

/// Invalid specs are rejected by the API server with a message naming the field.
#[test]
fn invalid_manifests_are_rejected_by_the_api_server_naming_the_field() {
    install_crds();
    let ns = kubectl_namespace();
    let policy = example("policy.yaml");
    let cutover = example("cutover.yaml");
    let cases: Vec<(&str, String, &str)> = vec![
        ("policy realm not a DNS label", policy.replace("realm: wakwak", "realm: WakWak!"), "spec.realm"),
        (
            "policy without credentials",
            "apiVersion: credshift.dev/v1alpha1\nkind: CredentialPolicy\nmetadata: {name: empty}\nspec: {realm: x, credentials: [], purposes: {}}\n".into(),
            "spec.credentials",
        ),
        (
            "purpose routed to an unknown credential",
            policy.replace("ftp: ftp", "ftp: nothing"),
            "every purpose in spec.purposes must route to a credential",
        ),
        ("duplicate credential name", policy.replace("- name: ftp", "- name: mail"), "spec.credentials"),
        (
            "SelfService without settings",
            policy.replacen("mode: Helpdesk", "mode: SelfService", 1),
            "recovery.selfService is required",
        ),
        ("unknown recovery mode", policy.replacen("mode: Helpdesk", "mode: Email", 1), "spec.credentials[0].recovery.mode"),
        ("channel name with a space", policy.replace("changeVia: [utility]", "changeVia: [\"the utility\"]"), "changeVia"),
        ("temporary password too short", policy.replace("length: 20", "length: 4"), "temporaryPassword.length"),
        ("ttl not a duration", policy.replace("ttl: 24h", "ttl: one day"), "ttl"),
        (
            "mail body without the temporary password",
            policy.replace("仮パスワード: {{temporary_password}}", "").replace("is {{temporary_password}}", "is"),
            "mail.body must contain",
        ),
        ("cutover at not a date-time", cutover.replace("\"2018-04-18T00:00:00+09:00\"", "\"next wednesday\""), "spec.at"),
        ("cutover window negative", cutover.replace("window: 6h", "window: -6h"), "spec.window"),
        ("cutover window zero", cutover.replace("window: 6h", "window: 0s"), "window must be longer than 0s"),
        ("split into nothing", cutover.replace("into: [support, connection]", "into: []"), "spec.split.into"),
        (
            "split into duplicates",
            cutover.replace("into: [support, connection]", "into: [support, support]"),
            "split.into must not contain duplicates",
        ),
        (
            "split into its own source",
            cutover.replace("into: [support, connection]", "into: [support, login]"),
            "split.into must not contain split.from",
        ),
        ("batch size zero", cutover.replace("batchSize: 1000", "batchSize: 0"), "spec.batchSize"),
        ("batch size huge", cutover.replace("batchSize: 1000", "batchSize: 100000000"), "spec.batchSize"),
        ("unknown initial value", cutover.replace("initialValue: CopyFromSource", "initialValue: Random"), "spec.split.initialValue"),
        ("unknown window action", cutover.replace("onWindowExceeded: Continue", "onWindowExceeded: Panic"), "spec.onWindowExceeded"),
    ];
    assert!(cases.len() >= 15);
    let mut failures = Vec::new();
    for (what, manifest, field) in &cases {
        let (ok, _, err) = kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], manifest);
        if ok {
            failures.push(format!("{what}: accepted"));
        } else if !err.contains(field) {
            failures.push(format!("{what}: message does not name {field:?}: {err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Transition rules: policyRef and split cannot change once set.
    apply(&ns, &cutover);
    for (changed, field) in [
        (
            cutover.replace("name: wakwak", "name: other"),
            "policyRef is immutable",
        ),
        (
            cutover.replace("into: [support, connection]", "into: [support]"),
            "split is immutable",
        ),
    ] {
        let (ok, _, err) = kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], &changed);
        assert!(!ok && err.contains(field), "{field}: {err}");
    }
}

fn kubectl_namespace() -> String {
    let name = support::unique_name("t");
    kubectl_ok(&["create", "namespace", &name]);
    name
}

// ---------------------------------------------------------------------------
// The controller

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_policy_becomes_ready_and_a_future_cutover_is_scheduled() {
    let Scene { client, ns, dir } = Scene::new().await;
    let (_store, url) = store_with_members(dir.path(), 12).await;
    apply(&ns, &example("policy.yaml"));
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 30)).to_string();
    apply(&ns, &future_cutover("split-login", &at));

    let mut ctl = controller::start(&ns, &url, "ctl-a", dir.path());
    ctl.wait_ready(Duration::from_secs(60));

    kubectl_wait(&ns, "Ready", "credentialpolicy/wakwak").await;

    let policies: Api<CredentialPolicy> = Api::namespaced(client.clone(), &ns);
    let p = policies.get("wakwak").await.expect("policy");
    let status = p.status.expect("status");
    assert_eq!(status.observed_generation, p.metadata.generation);
    assert_eq!(status.accounts, Some(12));
    let login = status
        .credentials
        .iter()
        .find(|c| c.name == "login")
        .expect("login count");
    assert_eq!(login.accounts, 12);
    // These members hold only the login password: the policy says who is
    // denied where, with the count; the portal and the connection, still
    // answered by the login password, are not among them.
    let held = status
        .conditions
        .iter()
        .find(|c| c.type_ == "CredentialsHeld")
        .expect("CredentialsHeld condition");
    assert_eq!(held.status, ConditionStatus::False, "{held:?}");
    assert!(
        held.message
            .contains("purpose mail is routed to credential mail, which 12 of 12 accounts lack")
            && held.message.contains("purpose ftp is routed")
            && !held.message.contains("support-portal"),
        "{}",
        held.message
    );
    // Before the date, the portal and the connection are answered by the one login password.
    let route = |purpose: &str| {
        status
            .routing
            .iter()
            .find(|r| r.purpose == purpose)
            .expect("route")
            .clone()
    };
    assert_eq!(
        (
            route("support-portal").mode.as_str(),
            route("support-portal").source.as_deref()
        ),
        ("Source", Some("login"))
    );
    assert_eq!(route("connection").source.as_deref(), Some("login"));
    assert_eq!(route("mail").mode, "Direct");

    let cutovers: Api<CredentialCutover> = Api::namespaced(client.clone(), &ns);
    let c = wait_for(
        &cutovers,
        "split-login",
        Duration::from_secs(30),
        "cutover Scheduled",
        |c| in_phase(c, CutoverPhase::Scheduled),
    )
    .await;
    let status = c.status.expect("status");
    assert_eq!(
        status.progress.as_ref().map(|p| p.total),
        Some(12),
        "accounts in scope"
    );
    assert!(status.scheduled_at.is_some());

    let table = tokio::task::spawn_blocking({
        let ns = ns.clone();
        move || kubectl_ok(&["get", "credentialcutovers", "-n", &ns])
    })
    .await
    .expect("kubectl get");
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "POLICY", "AT", "PHASE", "PROGRESS", "COMPLETE", "AGE"
        ],
        "{table}"
    );
    assert!(
        table.contains("Scheduled") && table.contains("0/12"),
        "{table}"
    );
    let all = tokio::task::spawn_blocking({
        let ns = ns.clone();
        move || kubectl_ok(&["get", "credshift", "-n", &ns])
    })
    .await
    .expect("kubectl get credshift");
    assert!(
        all.contains("credentialpolicy.credshift.dev/wakwak") && all.contains("split-login"),
        "{all}"
    );
    assert!(ctl.metric("credshift_reconciles_total", "CredentialPolicy") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_is_stalled_with_a_clear_message_and_ready_once_fixed() {
    let Scene { client, ns, dir } = Scene::new().await;
    let (_store, url) = store_with_members(dir.path(), 2).await;
    // The schema cannot tell that 10 characters of a 4-letter alphabet are only 20 bits.
    let weak = example("policy.yaml").replace(
        "            length: 20\n",
        "            length: 10\n            alphabet: abcd\n",
    );
    apply(&ns, &weak);
    // And a cutover into a credential the policy does not have.
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    apply(
        &ns,
        &future_cutover("split-bad", &at)
            .replace("into: [support, connection]", "into: [support, radius]"),
    );

    let mut ctl = controller::start(&ns, &url, "ctl-b", dir.path());
    ctl.wait_ready(Duration::from_secs(60));

    let policies: Api<CredentialPolicy> = Api::namespaced(client.clone(), &ns);
    let p = wait_for(
        &policies,
        "wakwak",
        Duration::from_secs(30),
        "policy Stalled",
        |p| policy_condition(p, "Stalled").is_some_and(|(s, _)| s == ConditionStatus::True),
    )
    .await;
    let (_, message) = policy_condition(&p, "Stalled").expect("stalled");
    assert!(
        message.contains("spec.credentials[support].recovery.selfService.temporaryPassword"),
        "{message}"
    );
    assert!(message.contains("112"), "{message}");
    assert_eq!(
        policy_condition(&p, "Ready").map(|c| c.0),
        Some(ConditionStatus::False)
    );

    let cutovers: Api<CredentialCutover> = Api::namespaced(client.clone(), &ns);
    let c = wait_for(
        &cutovers,
        "split-bad",
        Duration::from_secs(30),
        "cutover Stalled",
        |c| cutover_condition(c, "Stalled").is_some_and(|(s, _)| s == ConditionStatus::True),
    )
    .await;
    let (_, message) = cutover_condition(&c, "Stalled").expect("stalled");
    assert!(
        message.contains("spec.split.into[1]") && message.contains("radius"),
        "{message}"
    );

    // Fixing the specs clears it: the policy gets a safe temporary password
    // and the credential the (immutable) split names.
    let fixed = example("policy.yaml").replace(
        "    - name: ftp\n",
        "    - name: radius\n      changeVia: [utility]\n    - name: ftp\n",
    );
    apply(&ns, &fixed);
    wait_for(
        &policies,
        "wakwak",
        Duration::from_secs(30),
        "policy Ready after the fix",
        |p| {
            policy_condition(p, "Ready").is_some_and(|(s, _)| s == ConditionStatus::True)
                && policy_condition(p, "Stalled").is_some_and(|(s, _)| s == ConditionStatus::False)
        },
    )
    .await;
    wait_for(
        &cutovers,
        "split-bad",
        Duration::from_secs(30),
        "cutover Scheduled after the fix",
        |c| {
            in_phase(c, CutoverPhase::Scheduled)
                && cutover_condition(c, "Stalled").is_some_and(|(s, _)| s == ConditionStatus::False)
        },
    )
    .await;
    assert!(!ctl.log_text().contains("panicked"));
}

/// A realm belongs to one CredentialPolicy. Whoever may create a second
/// policy for an existing realm (to let the portal change the connection
/// password, say) gets a policy that is Stalled, naming the owner, and
/// changes nothing; a cutover under it does not run. The oldest claim
/// wins, whatever the names; once the owner is deleted, the next takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_policy_for_a_realm_is_stalled_and_changes_nothing() {
    let Scene { client, ns, dir } = Scene::new().await;
    let (_store, url) = store_with_members(dir.path(), 2).await;
    apply(&ns, &example("policy.yaml"));
    let mut ctl = controller::start(&ns, &url, "ctl-own", dir.path());
    ctl.wait_ready(Duration::from_secs(60));
    let policies: Api<CredentialPolicy> = Api::namespaced(client.clone(), &ns);
    let ready = |p: &CredentialPolicy| {
        policy_condition(p, "Ready").is_some_and(|(s, _)| s == ConditionStatus::True)
    };
    let owner = wait_for(
        &policies,
        "wakwak",
        Duration::from_secs(30),
        "owner Ready",
        ready,
    )
    .await;
    // Created a second later, under a name that sorts first.
    let created = owner
        .metadata
        .creation_timestamp
        .clone()
        .expect("created")
        .0;
    while jiff::Timestamp::now() < created + jiff::SignedDuration::from_millis(1100) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let loose = example("policy.yaml")
        .replace("  name: wakwak\n", "  name: aaa-loose\n")
        .replace(
            "    - name: connection\n      changeVia: [utility]\n",
            "    - name: connection\n      changeVia: [utility, portal]\n",
        );
    assert!(loose.contains("name: aaa-loose") && loose.contains("[utility, portal]"));
    apply(&ns, &loose);
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    apply(
        &ns,
        &future_cutover("split-loose", &at).replace("name: wakwak", "name: aaa-loose"),
    );
    let p = wait_for(
        &policies,
        "aaa-loose",
        Duration::from_secs(30),
        "second policy Stalled",
        |p| policy_condition(p, "Stalled").is_some_and(|(s, _)| s == ConditionStatus::True),
    )
    .await;
    let (_, message) = policy_condition(&p, "Stalled").expect("stalled");
    assert!(
        message.contains(&format!("{ns}/wakwak")) && message.contains("realm \"wakwak\""),
        "{message}"
    );
    assert!(!ready(&p), "{:?}", p.status);
    assert!(
        p.status.as_ref().is_some_and(|s| s.routing.is_empty()),
        "{:?}",
        p.status
    );
    let cutovers: Api<CredentialCutover> = Api::namespaced(client.clone(), &ns);
    let c = wait_for(
        &cutovers,
        "split-loose",
        Duration::from_secs(30),
        "its cutover Stalled",
        |c| cutover_condition(c, "Stalled").is_some_and(|(s, _)| s == ConditionStatus::True),
    )
    .await;
    let (_, message) = cutover_condition(&c, "Stalled").expect("stalled");
    assert!(
        message.contains("spec.policyRef.name") && message.contains(&format!("{ns}/wakwak")),
        "{message}"
    );
    let events = kubectl_ok(&["get", "events", "-n", &ns, "-o", "json"]);
    assert!(events.contains("RealmClaimed"), "{events}");
    // The owner is untouched.
    let owner = policies.get("wakwak").await.expect("owner");
    assert!(ready(&owner), "{:?}", owner.status);

    // Deleting the owner hands the realm to the next oldest claim.
    policies
        .delete("wakwak", &Default::default())
        .await
        .expect("delete the owner");
    wait_for(
        &policies,
        "aaa-loose",
        Duration::from_secs(45),
        "the next claim in force",
        ready,
    )
    .await;
}

fn lease_holder(ns: &str) -> String {
    let out = support::kube::kubectl()
        .args([
            "get",
            "lease",
            "credshift-controller",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .output()
        .expect("kubectl get lease");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_standby_takes_over_when_it_dies() {
    let Scene { client, ns, dir } = Scene::new().await;
    let (_store, url) = store_with_members(dir.path(), 3).await;
    apply(&ns, &example("policy.yaml"));

    let mut a = controller::start(&ns, &url, "ctl-one", dir.path());
    a.wait_ready(Duration::from_secs(60));
    let mut b = controller::start(&ns, &url, "ctl-two", dir.path());
    b.wait_ready(Duration::from_secs(60));

    let policies: Api<CredentialPolicy> = Api::namespaced(client.clone(), &ns);
    wait_for(
        &policies,
        "wakwak",
        Duration::from_secs(30),
        "policy Ready",
        |p| policy_condition(p, "Ready").is_some_and(|(s, _)| s == ConditionStatus::True),
    )
    .await;
    let holder = lease_holder(&ns);
    let (leader, standby) = if holder == a.identity {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert_eq!(holder, leader.identity, "one of the two holds the lease");
    assert!(leader.metric("credshift_reconciles_total", "CredentialPolicy") >= 1.0);
    assert_eq!(
        standby.metric("credshift_reconciles_total", ""),
        0.0,
        "the standby reconciles (and writes) nothing"
    );

    // kill -9 the leader, change the spec: the standby must pick it up within the lease time.
    leader.kill();
    let killed = Instant::now();
    apply(
        &ns,
        &example("policy.yaml").replace("ftp: ftp", "ftp: mail"),
    );
    let p = wait_for(
        &policies,
        "wakwak",
        Duration::from_secs(30),
        "standby reconciles the new generation",
        |p| {
            p.status.as_ref().and_then(|s| s.observed_generation) == p.metadata.generation
                && p.metadata.generation > Some(1)
        },
    )
    .await;
    let took = killed.elapsed();
    assert_eq!(lease_holder(&ns), standby.identity);
    assert!(
        took < Duration::from_secs(4 + 10),
        "takeover took {took:?} with a 4 s lease"
    );
    let ftp = p
        .status
        .expect("status")
        .routing
        .into_iter()
        .find(|r| r.purpose == "ftp")
        .expect("ftp route");
    assert_eq!(ftp.credential, "mail");
}

#[test]
fn the_controller_exits_with_a_clear_message_when_the_api_server_is_unreachable() {
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = dir.path().join("dead.kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\n\
         users:\n- name: u\n  user:\n    token: not-a-real-token\ncontexts:\n- name: dead\n  context:\n    cluster: dead\n    user: u\ncurrent-context: dead\n",
    )
    .expect("kubeconfig");
    let out = support::credshift()
        .args(["controller", "--health-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .env(
            "CREDSHIFT_STORE",
            format!("sqlite://{}", dir.path().join("s.db").display()),
        )
        .output()
        .expect("run controller");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot reach the Kubernetes API server"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("not-a-real-token"),
        "{stderr}"
    );
}

#[test]
fn the_controller_exits_with_a_clear_message_when_the_store_is_unreachable() {
    let port = support::process::free_port();
    let out = support::credshift()
        .args(["controller", "--health-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", &support::kube::api_server().kubeconfig)
        .env(
            "CREDSHIFT_STORE",
            format!("postgres://credshift:hunter2@127.0.0.1:{port}/credshift"),
        )
        .output()
        .expect("run controller");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot connect to the postgres store"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the store password is redacted: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

async fn store_with_many_members(dir: &Path, n: usize) -> String {
    let url = format!("sqlite://{}", dir.join("credshift.db").display());
    let store = Store::open(&url).await.expect("store");
    let rows: Vec<credshift::store::ImportRow> = (0..n)
        .map(|i| credshift::store::ImportRow {
            line: i as u64 + 2,
            login_id: format!("wk{i:07}"),
            base_email: format!("m{i}@wakwak.example.jp"),
            credentials: vec![("login".into(), "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/".into())],
            given: Vec::new(),
        })
        .collect();
    for chunk in rows.chunks(500) {
        store
            .import_batch("wakwak", chunk, "import", jiff::Timestamp::now())
            .await
            .expect("import");
    }
    url
}

/// The same cutover through the controller: Scheduled -> Running ->
/// Completed, with progress visible in `kubectl get`; kstatus (what Flux
/// and kpt wait on) reads Scheduled as Current, Running as InProgress and
/// Completed as Current; `kubectl wait --for=condition=Complete` returns
/// once it has completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_runs_scheduled_running_completed_through_the_controller() {
    let Scene { client, ns, dir } = Scene::new().await;
    let url = store_with_many_members(dir.path(), 20_000).await;
    apply(&ns, &example("policy.yaml"));
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(8)).to_string();
    apply(
        &ns,
        &future_cutover("split-now", &at).replace("batchSize: 1000", "batchSize: 20"),
    );
    let mut ctl = controller::start(&ns, &url, "ctl-run", dir.path());
    ctl.wait_ready(Duration::from_secs(60));
    let waited = std::thread::spawn({
        let ns = ns.clone();
        move || {
            let out = support::kube::kubectl()
                .args([
                    "wait",
                    "-n",
                    &ns,
                    "--for=condition=Complete",
                    "--timeout=180s",
                ])
                .arg("credentialcutover/split-now")
                .output()
                .expect("kubectl wait");
            let phase = kubectl_ok(&[
                "get",
                "credentialcutover/split-now",
                "-n",
                &ns,
                "-o",
                "jsonpath={.status.phase}",
            ]);
            (out.status.success(), phase)
        }
    });

    let (seen, kstatus_seen) = tokio::task::spawn_blocking({
        let ns = ns.clone();
        move || {
            let mut seen: Vec<(String, String)> = Vec::new();
            let mut kstatus_seen: BTreeSet<(String, String)> = BTreeSet::new();
            let deadline = Instant::now() + Duration::from_secs(180);
            while Instant::now() < deadline {
                let out = support::kube::kubectl()
                    .args([
                        "get",
                        "credentialcutover",
                        "split-now",
                        "-n",
                        &ns,
                        "--no-headers",
                    ])
                    .output()
                    .expect("kubectl get");
                let line = String::from_utf8_lossy(&out.stdout).to_string();
                let cols: Vec<&str> = line.split_whitespace().collect();
                if cols.len() >= 6 {
                    let (phase, progress) =
                        (cols[3].to_owned(), format!("{} {}", cols[4], cols[5]));
                    if seen.last() != Some(&(phase.clone(), progress.clone())) {
                        seen.push((phase.clone(), progress));
                    }
                    // The phase and the verdict of one read of the object.
                    let json = kubectl_ok(&[
                        "get",
                        "credentialcutover/split-now",
                        "-n",
                        &ns,
                        "-o",
                        "json",
                    ]);
                    let object: serde_json::Value = serde_json::from_str(&json).expect("JSON");
                    let (verdict, _) = kstatus_of(&json);
                    let read = object["status"]["phase"].as_str().unwrap_or("-").to_owned();
                    kstatus_seen.insert((read, verdict));
                    if phase == "Completed" {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(150));
            }
            (seen, kstatus_seen)
        }
    })
    .await
    .expect("watch kubectl get");
    eprintln!("kubectl get showed: {seen:?}; kstatus: {kstatus_seen:?}");
    for (phase, verdict) in [
        ("Scheduled", "Current"),
        ("Running", "InProgress"),
        ("Completed", "Current"),
    ] {
        assert!(
            kstatus_seen.contains(&(phase.into(), verdict.into())),
            "{phase} read as {verdict}: {kstatus_seen:?}"
        );
    }
    assert!(
        !kstatus_seen.contains(&("Scheduled".into(), "InProgress".into())),
        "a Scheduled cutover must not block a GitOps wait: {kstatus_seen:?}"
    );
    let (completed, phase) = waited.join().expect("kubectl wait");
    assert!(
        completed,
        "kubectl wait --for=condition=Complete returned 0"
    );
    assert_eq!(phase, "Completed", "and only once it had completed");
    let phases: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(phases.first(), Some(&"Scheduled"), "{seen:?}");
    assert_eq!(
        phases.last(),
        Some(&"Completed"),
        "{seen:?}\n{}",
        ctl.log_text()
    );
    let running: Vec<&(String, String)> = seen.iter().filter(|(p, _)| p == "Running").collect();
    assert!(!running.is_empty(), "Running was visible: {seen:?}");
    assert!(
        running
            .iter()
            .any(|(_, progress)| !progress.starts_with("0/") && !progress.starts_with("20000/")),
        "partial progress was visible: {seen:?}"
    );
    assert_eq!(
        seen.last().map(|(_, p)| p.as_str()),
        Some("20000/20000 (100%)")
    );

    // Events are written by the controller as it goes; allow them a moment.
    wait_for_events(
        &ns,
        &["CutoverScheduled", "CutoverStarted", "CutoverCompleted"],
        &ctl,
    )
    .await;
    let policies: Api<CredentialPolicy> = Api::namespaced(client, &ns);
    let p = wait_for(
        &policies,
        "wakwak",
        Duration::from_secs(30),
        "routing Direct after completion",
        |p| {
            p.status.as_ref().is_some_and(|s| {
                s.routing.iter().all(|r| r.mode == "Direct") && !s.routing.is_empty()
            })
        },
    )
    .await;
    let support = p
        .status
        .expect("status")
        .credentials
        .into_iter()
        .find(|c| c.name == "support")
        .expect("count");
    assert_eq!(support.accounts, 20_000);
}

/// kstatus (what Flux, kpt and pipelines wait on) on the live objects: a
/// policy in force is Current; a cutover that cannot run is Failed; a
/// suspended one is Current (it waits for ops; its Ready condition says how
/// to resume) and not Complete; resumed, it completes and is Current and
/// Complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kstatus_reads_policies_failed_and_suspended_cutovers_as_gitops_expects() {
    let Scene { client, ns, dir } = Scene::new().await;
    let (_store, url) = store_with_members(dir.path(), 3).await;
    apply(&ns, &example("policy.yaml"));
    let mut ctl = controller::start(&ns, &url, "ctl-kstatus", dir.path());
    ctl.wait_ready(Duration::from_secs(60));
    let policies: Api<CredentialPolicy> = Api::namespaced(client.clone(), &ns);
    let cutovers: Api<CredentialCutover> = Api::namespaced(client, &ns);
    wait_for(
        &policies,
        "wakwak",
        Duration::from_secs(60),
        "in force",
        |p| policy_condition(p, "Ready").is_some_and(|(s, _)| s == ConditionStatus::True),
    )
    .await;
    assert_eq!(kstatus(&ns, "credentialpolicy/wakwak").0, "Current");

    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    apply(
        &ns,
        &future_cutover("impossible", &later)
            .replace("into: [support, connection]", "into: [support, nosuch]"),
    );
    wait_for(
        &cutovers,
        "impossible",
        Duration::from_secs(60),
        "Failed",
        |c| in_phase(c, CutoverPhase::Failed),
    )
    .await;
    let (verdict, message) = kstatus(&ns, "credentialcutover/impossible");
    assert_eq!(verdict, "Failed", "{message}");
    assert!(message.contains("nosuch"), "the field is named: {message}");
    kubectl_ok(&[
        "delete",
        "credentialcutover/impossible",
        "-n",
        &ns,
        "--wait=true",
    ]);

    apply(
        &ns,
        &example("cutover.yaml").replace("  batchSize: 1000", "  suspend: true\n  batchSize: 1000"),
    );
    let suspended = wait_for(
        &cutovers,
        "split-login-2018",
        Duration::from_secs(60),
        "Suspended",
        |c| in_phase(c, CutoverPhase::Suspended),
    )
    .await;
    assert_eq!(
        kstatus(&ns, "credentialcutover/split-login-2018").0,
        "Current"
    );
    let ready = cutover_condition(&suspended, "Ready").expect("Ready");
    assert!(ready.1.contains("spec.suspend is true"), "{ready:?}");
    assert_eq!(
        cutover_condition(&suspended, "Complete").map(|(s, _)| s),
        Some(ConditionStatus::False)
    );

    kubectl_ok(&[
        "patch",
        "credentialcutover/split-login-2018",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    kubectl_wait(&ns, "Complete", "credentialcutover/split-login-2018").await;
    let done = cutovers.get("split-login-2018").await.expect("cutover");
    assert!(
        in_phase(&done, CutoverPhase::Completed),
        "{:?}",
        done.status
    );
    assert_eq!(
        kstatus(&ns, "credentialcutover/split-login-2018").0,
        "Current"
    );
    assert!(!ctl.log_text().contains("panicked"));
}

/// The store goes away while the controller runs: it stays up, reports not
/// ready, and reconciles again once the store is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_recovers_when_the_store_comes_back() {
    let Scene { client, ns, dir } = Scene::new().await;
    let pg = support::postgres::Dedicated::start_new();
    let store = Store::open(&pg.url()).await.expect("store");
    store
        .create_account(
            "wakwak",
            "ab000001",
            "a@wakwak.example.jp",
            "test",
            jiff::Timestamp::now(),
        )
        .await
        .expect("account");
    store.close().await;
    apply(&ns, &example("policy.yaml"));
    let mut ctl = controller::start(&ns, &pg.url(), "ctl-pg", dir.path());
    ctl.wait_ready(Duration::from_secs(60));
    let policies: Api<CredentialPolicy> = Api::namespaced(client.clone(), &ns);
    wait_for(
        &policies,
        "wakwak",
        Duration::from_secs(30),
        "Ready with the store up",
        |p| p.status.as_ref().and_then(|s| s.accounts) == Some(1),
    )
    .await;

    pg.stop();
    apply(
        &ns,
        &example("policy.yaml").replace("ftp: ftp", "ftp: mail"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(ctl.get("/readyz"), Some((503, _))) {
        assert!(
            Instant::now() < deadline,
            "readyz should fail while the store is down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while ctl.metric("credshift_reconcile_errors_total", "Store") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "a reconcile meets the outage and counts it"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        ctl.process.exited().is_none(),
        "the controller keeps running"
    );

    pg.start();
    let p = wait_for(
        &policies,
        "wakwak",
        Duration::from_secs(60),
        "reconciled after the store is back",
        |p| {
            p.status.as_ref().and_then(|s| s.observed_generation) == p.metadata.generation
                && p.metadata.generation > Some(1)
        },
    )
    .await;
    assert!(
        p.status
            .expect("status")
            .routing
            .iter()
            .any(|r| r.purpose == "ftp" && r.credential == "mail")
    );
    ctl.wait_ready(Duration::from_secs(30));
}

/// SIGTERM: the controller stops cleanly and hands the lease back at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_gracefully_and_releases_the_lease() {
    let Scene { ns, dir, .. } = Scene::new().await;
    let (_store, url) = store_with_members(dir.path(), 1).await;
    let mut ctl = controller::start(&ns, &url, "ctl-term", dir.path());
    ctl.wait_ready(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(20);
    while lease_holder(&ns) != "ctl-term" {
        assert!(Instant::now() < deadline, "lease taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ctl.process.signal("TERM");
    let exit = ctl
        .process
        .wait(Duration::from_secs(10))
        .expect("exits within 10 s of SIGTERM");
    assert_eq!(exit.code(), Some(0), "{}", ctl.log_text());
    assert_eq!(
        lease_holder(&ns),
        "",
        "the lease is released, not left to expire"
    );
}

/// The API server goes away while the controller runs: it keeps running and
/// picks up changes once the API server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_recovers_when_the_api_server_comes_back() {
    let mut server = support::kube::Restartable::start_new();
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().expect("kubectl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(server.kubectl().arg("apply").arg("-f").arg(&crds));
    run(server.kubectl().args([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/credentialpolicies.credshift.dev",
    ]));
    run(server.kubectl().args(["create", "namespace", "isp"]));
    let apply_to = |server: &support::kube::Restartable, manifest: &str| {
        use std::io::Write as _;
        let mut child = server
            .kubectl()
            .args(["apply", "-n", "isp", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(manifest.as_bytes())
            .expect("write");
        assert!(child.wait().expect("wait").success());
    };
    apply_to(&server, &example("policy.yaml"));
    let dir = tempfile::tempdir().expect("dir");
    let (_store, url) = store_with_members(dir.path(), 2).await;
    let mut ctl = controller::start_with(&server.kubeconfig, "isp", &url, "ctl-api", dir.path());
    ctl.wait_ready(Duration::from_secs(60));

    let kubeconfig = server.kubeconfig.clone();
    let client = || async {
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        kube::Client::try_from(config).expect("client")
    };
    let policies: Api<CredentialPolicy> = Api::namespaced(client().await, "isp");
    wait_for(
        &policies,
        "wakwak",
        Duration::from_secs(30),
        "Ready before the outage",
        |p| policy_condition(p, "Ready").is_some_and(|(s, _)| s == ConditionStatus::True),
    )
    .await;

    // The outage outlasts the controller's lease (4 s, `--lease-seconds`):
    // its renewals fail, and it must still be running when the server is back.
    server.stop();
    let outage = Duration::from_secs(6);
    tokio::time::sleep(outage).await;
    if let Some(status) = ctl.process.exited() {
        panic!(
            "the controller must keep running without the API server ({outage:?}): exited {status}; log:\n{}",
            ctl.log_text()
        );
    }

    server.start();
    apply_to(
        &server,
        &example("policy.yaml").replace("ftp: ftp", "ftp: mail"),
    );
    let policies: Api<CredentialPolicy> = Api::namespaced(client().await, "isp");
    let p = wait_for(
        &policies,
        "wakwak",
        Duration::from_secs(90),
        "reconciled after the API server is back",
        |p| {
            p.status.as_ref().and_then(|s| s.observed_generation) == p.metadata.generation
                && p.metadata.generation > Some(1)
        },
    )
    .await;
    assert!(
        p.status
            .expect("status")
            .routing
            .iter()
            .any(|r| r.purpose == "ftp" && r.credential == "mail")
    );
    assert!(!ctl.log_text().contains("panicked"));
}

/// The API in cluster mode issues a ticket; the leader delivers the mail over
/// real SMTP (retrying after the relay was down, with a
/// RecoveryDeliveryFailed Event); the policy status counts it; and no
/// password, temporary password, token or key reaches status, Events, the
/// controller's log or its metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_delivers_recovery_mail_and_no_secret_reaches_the_cluster() {
    use base64::Engine as _;
    let Scene { client, ns, dir } = Scene::new().await;
    let url = format!("sqlite://{}", dir.path().join("credshift.db").display());
    let members = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/2018-split/members.csv");
    let out = support::credshift()
        .args(["accounts", "import", "--realm", "wakwak", "--store", &url])
        .arg(&members)
        .output()
        .expect("import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    apply(&ns, &example("policy.yaml"));
    apply(&ns, &example("cutover.yaml"));

    let key = base64::engine::general_purpose::STANDARD.encode(rand_bytes());
    let token = "portal-token-for-cluster-test-7f3a";
    let token_sha: String = {
        use sha2::Digest as _;
        sha2::Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        format!("tokens:\n  - name: portal\n    channel: portal\n    realms: [wakwak]\n    sha256: {token_sha}\n"),
    )
    .expect("tokens");
    // The relay is down at first: the controller is pointed at a port nobody listens on yet.
    let smtp_port = support::process::free_port();
    let smtp_url = format!("smtp://127.0.0.1:{smtp_port}");
    let mut ctl = controller::start_full(
        &support::kube::api_server().kubeconfig,
        &ns,
        &url,
        "ctl-mail",
        dir.path(),
        &["--smtp", &smtp_url],
        &[("CREDSHIFT_OUTBOX_KEY", &key)],
    );
    ctl.wait_ready(Duration::from_secs(60));
    let cutovers: Api<CredentialCutover> = Api::namespaced(client.clone(), &ns);
    wait_for(
        &cutovers,
        "split-login-2018",
        Duration::from_secs(60),
        "the 2018 cutover completed",
        |c| in_phase(c, CutoverPhase::Completed),
    )
    .await;

    let api_port = support::process::free_port();
    let serve_log = dir.path().join("serve.log");
    let mut cmd = support::credshift();
    cmd.args([
        "serve",
        "--from-cluster",
        "--namespace",
        &ns,
        "--store",
        &url,
        "--log",
        "debug",
    ])
    .arg("--tokens")
    .arg(&tokens)
    .args(["--listen", &format!("127.0.0.1:{api_port}")])
    .env("KUBECONFIG", &support::kube::api_server().kubeconfig)
    .env("CREDSHIFT_OUTBOX_KEY", &key);
    let mut serve = Process::start(cmd, Guard::Watchdog, &serve_log);
    if let Err(why) = serve.wait_http(api_port, "/readyz", Duration::from_secs(30)) {
        panic!("serve {why}; log:\n{}", serve.log_text());
    }
    let request =
        serde_json::json!({"realm": "wakwak", "login_id": "ab000001", "purpose": "support-portal"});
    let (status, _) = tokio::task::spawn_blocking(move || {
        support::http::post(api_port, "/v1/recovery", token, &request)
    })
    .await
    .expect("post");
    assert_eq!(status, 202);

    // Delivery fails while the relay is down; ops are told.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = kubectl_ok(&[
            "get",
            "events",
            "-n",
            &ns,
            "-o",
            "jsonpath={.items[*].reason}",
        ]);
        if events.contains("RecoveryDeliveryFailed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "RecoveryDeliveryFailed Event: {events}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The relay comes up; the retry delivers to the base e-mail address.
    let smtp = support::smtp::SmtpServer::start_on(smtp_port);
    let mail = tokio::task::spawn_blocking(move || {
        let mail = smtp.wait_for_mail("taro@wakwak.example.jp", Duration::from_secs(60));
        (mail, smtp)
    })
    .await
    .expect("mail");
    let (mail, _smtp) = mail;
    let temp = mail
        .body
        .lines()
        .find_map(|l| l.strip_prefix("仮パスワード: "))
        .expect("temporary password in the mail")
        .trim()
        .to_owned();
    let verify = serde_json::json!({"realm": "wakwak", "login_id": "ab000001", "purpose": "support-portal", "password": temp});
    let (status, body) = tokio::task::spawn_blocking(move || {
        support::http::post(api_port, "/v1/verify", token, &verify)
    })
    .await
    .expect("post");
    assert_eq!(
        (status, body["must_change"].as_bool()),
        (403, Some(true)),
        "{body}"
    );

    let policies: Api<CredentialPolicy> = Api::namespaced(client.clone(), &ns);
    let p = wait_for(
        &policies,
        "wakwak",
        Duration::from_secs(30),
        "recovery counted in status",
        |p| {
            p.status
                .as_ref()
                .and_then(|s| s.recovery.as_ref())
                .is_some_and(|r| r.mail_delivered == 1 && r.issued == 1)
        },
    )
    .await;
    assert_eq!(
        p.status.and_then(|s| s.recovery).map(|r| r.mail_failed),
        Some(0),
        "retried, not dead-lettered"
    );

    // Nothing secret anywhere the cluster or ops can see.
    serve.stop();
    let cluster_text = kubectl_ok(&[
        "get",
        "credentialpolicies,credentialcutovers,events",
        "-n",
        &ns,
        "-o",
        "yaml",
    ]);
    let metrics = ctl.get("/metrics").map(|(_, b)| b).unwrap_or_default();
    let logs = format!(
        "{}\n{}",
        ctl.log_text(),
        std::fs::read_to_string(&serve_log).unwrap_or_default()
    );
    for (what, text) in [
        ("status and Events", &cluster_text),
        ("metrics", &metrics),
        ("logs", &logs),
    ] {
        for secret in [temp.as_str(), "taro-login-1998", token, key.as_str()] {
            assert!(!text.contains(secret), "a secret reached the {what}");
        }
    }
    assert!(
        cluster_text.contains("RecoveryDeliveryFailed"),
        "the scan saw the Events"
    );
    assert!(
        metrics.contains("credshift_recovery_mails_total"),
        "the scan saw the metrics"
    );
    assert!(
        logs.contains("recovery mail not delivered"),
        "the scan saw the logs"
    );
}

fn rand_bytes() -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut file = std::fs::File::open("/dev/urandom").expect("urandom");
    std::io::Read::read_exact(&mut file, &mut out).expect("random");
    out
}

/// Two replicas; the leader is killed (-9) in the middle of a cutover: the
/// standby takes over from the checkpoint and completes it, with every
/// account split exactly once and nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_cutover_loses_and_repeats_nothing() {
    let Scene { client, ns, dir } = Scene::new().await;
    let url = store_with_many_members(dir.path(), 40_000).await;
    apply(&ns, &example("policy.yaml"));
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(6)).to_string();
    apply(
        &ns,
        &future_cutover("split-ha", &at).replace("batchSize: 1000", "batchSize: 10"),
    );
    let mut a = controller::start(&ns, &url, "ha-one", dir.path());
    a.wait_ready(Duration::from_secs(60));
    let mut b = controller::start(&ns, &url, "ha-two", dir.path());
    b.wait_ready(Duration::from_secs(60));

    // Wait for real progress, then kill whoever leads.
    let cutovers: Api<CredentialCutover> = Api::namespaced(client.clone(), &ns);
    let running = wait_for(
        &cutovers,
        "split-ha",
        Duration::from_secs(60),
        "partial progress",
        |c| {
            c.status
                .as_ref()
                .and_then(|s| s.progress.as_ref())
                .is_some_and(|p| p.done > 0 && p.done < p.total)
        },
    )
    .await;
    let done_at_kill = running
        .status
        .and_then(|s| s.progress)
        .map_or(0, |p| p.done);
    let leader_name = lease_holder(&ns);
    let standby_name = if leader_name == a.identity {
        b.identity.clone()
    } else {
        a.identity.clone()
    };
    if leader_name == a.identity {
        a.kill()
    } else {
        b.kill()
    }

    let done = wait_for(
        &cutovers,
        "split-ha",
        // 40,000 accounts in batches of 10 take about 60 s on a quiet
        // 2-core machine; it hit 120 s once while other suites ran.
        Duration::from_secs(300),
        "completed by the standby",
        |c| in_phase(c, CutoverPhase::Completed),
    )
    .await;
    assert_eq!(lease_holder(&ns), standby_name);
    let progress = done.status.and_then(|s| s.progress).expect("progress");
    assert_eq!(
        (progress.done, progress.total),
        (40_000, 40_000),
        "killed at {done_at_kill}"
    );

    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect");
    for target in ["support", "connection"] {
        let (n, mismatched): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN t.hash <> s.hash THEN 1 ELSE 0 END), 0) \
             FROM credentials t JOIN credentials s ON s.account_id = t.account_id AND s.name = 'login' \
             WHERE t.name = $1",
        )
        .bind(target)
        .fetch_one(&mut conn)
        .await
        .expect("count");
        assert_eq!(
            (n, mismatched),
            (40_000, 0),
            "{target}: one copy per account, equal to the login hash"
        );
    }
}

// ---------------------------------------------------------------------------
// Deleting, pruning or reordering resources never locks a member out

/// md5-crypt of "password": cheap filler members for a long backfill.
const FILLER_HASH: &str = "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/";

/// A CSV of `fillers` members first (login only), then the demo members
/// with login, mail and ftp (ftp = mail).
fn members_csv(fillers: usize) -> String {
    let example = example("members.csv");
    let mut out = String::from("login_id,base_email,login,mail,ftp\n");
    for i in 0..fillers {
        out.push_str(&format!(
            "wk{i:06},wk{i:06}@wakwak.example.jp,{FILLER_HASH},,\n"
        ));
    }
    for line in example.lines().skip(1) {
        let mail = line.rsplit(',').next().expect("mail column");
        out.push_str(&format!("{line},{mail}\n"));
    }
    out
}

/// `credshift accounts import` of `csv` into the realm, by the real binary;
/// its stderr.
fn import_members(url: &str, dir: &Path, file: &str, csv: &str) -> String {
    let path = dir.join(file);
    std::fs::write(&path, csv).expect("members file");
    let out = support::credshift()
        .args(["accounts", "import", "--realm", "wakwak", "--store", url])
        .arg(&path)
        .output()
        .expect("credshift accounts import");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "import failed: {stderr}");
    stderr
}

/// A fresh store of `kind` ("sqlite" or "postgres") with the members of
/// [`members_csv`]; its URL.
async fn store_of(kind: &str, dir: &Path, fillers: usize) -> String {
    let url = match kind {
        "postgres" => support::postgres::server().fresh_database().await,
        _ => format!("sqlite://{}", dir.join("credshift.db").display()),
    };
    Store::open(&url).await.expect("store").close().await;
    import_members(&url, dir, "members.csv", &members_csv(fillers));
    url
}

/// The answers that were not a match, of verifying each (login ID,
/// purpose, password) through the realms `serve --from-cluster` builds
/// from the objects that exist now and what the store remembers.
async fn denials(
    client: &kube::Client,
    ns: &str,
    url: &str,
    checks: &[(&str, &str, String)],
) -> Vec<String> {
    use credshift::engine::guesses::GuessLimit;
    use credshift::engine::members::LoginVerify;
    use credshift::hashing::{HashPool, Secret};
    let store = Store::open(url).await.expect("store");
    let realms = credshift::api::cluster::load(client, Some(ns))
        .await
        .expect("load the realms");
    let realms = credshift::api::with_known_splits(&store, realms, false)
        .await
        .expect("known splits");
    let realm = realms
        .iter()
        .find(|r| r.policy.realm == "wakwak")
        .expect("realm wakwak");
    let hasher = HashPool::default();
    let mut denied = Vec::new();
    for (id, purpose, pw) in checks {
        let key = format!("{id}/{purpose}");
        let guesses = credshift::store::FailureKey {
            key: &key,
            streak: &key,
            window: Duration::from_secs(900),
            now: jiff::Timestamp::now(),
        };
        let limit = GuessLimit {
            failures: 10,
            window: guesses.window,
            account_failures: 100,
        };
        let answer = realm
            .verify(
                &store,
                &hasher,
                id,
                purpose,
                Secret::from(pw.as_str()),
                limit,
                &guesses,
            )
            .await
            .expect("verify");
        if !matches!(
            answer,
            Some(LoginVerify::Checked(
                credshift::engine::VerifyOutcome::Match { .. }
            ))
        ) {
            denied.push(format!("{id} on {purpose}: {answer:?}"));
        }
    }
    store.close().await;
    denied
}

const PURPOSES: [&str; 4] = ["support-portal", "connection", "mail", "ftp"];

/// Every demo member verifies with the right password on every purpose.
async fn everyone_verifies(client: &kube::Client, ns: &str, url: &str, when: &str) {
    let checks: Vec<(&str, &str, String)> = DEMO
        .iter()
        .flat_map(|(id, login)| {
            PURPOSES.iter().map(move |purpose| {
                let pw = match *purpose {
                    "mail" | "ftp" => format!("{id}-mail"),
                    _ => (*login).to_owned(),
                };
                (*id, *purpose, pw)
            })
        })
        .collect();
    let denied = denials(client, ns, url, &checks).await;
    assert!(denied.is_empty(), "{when}: denied {denied:?}");
}

/// A namespace with the example policy, a store of `kind` with the
/// members of [`members_csv`], and a controller running on both.
struct ControlledScene {
    client: kube::Client,
    ns: String,
    dir: tempfile::TempDir,
    url: String,
    ctl: controller::ControllerProcess,
}

impl ControlledScene {
    async fn start(
        kind: &str,
        fillers: usize,
        cutover: Option<&str>,
        identity: &str,
    ) -> ControlledScene {
        let Scene { client, ns, dir } = Scene::new().await;
        let url = store_of(kind, dir.path(), fillers).await;
        apply(&ns, &example("policy.yaml"));
        if let Some(cutover) = cutover {
            apply(&ns, cutover);
        }
        let mut ctl = controller::start(&ns, &url, &format!("{identity}-{kind}"), dir.path());
        ctl.wait_ready(Duration::from_secs(60));
        ControlledScene {
            client,
            ns,
            dir,
            url,
            ctl,
        }
    }

    fn cutovers(&self) -> Api<CredentialCutover> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn policies(&self) -> Api<CredentialPolicy> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn everyone_verifies(&self, when: &str) {
        everyone_verifies(&self.client, &self.ns, &self.url, when).await;
    }

    /// `kubectl delete` without waiting; then the object as soon as its
    /// `Deleting` condition is there, with the condition's reason and message.
    async fn delete_and_wait_held(&self, name: &str) -> (CredentialCutover, String, String) {
        self.kubectl(&["delete", "credentialcutover", name, "--wait=false"]);
        let held = wait_for(
            &self.cutovers(),
            name,
            Duration::from_secs(30),
            "deletion held",
            |c| deleting(c).is_some(),
        )
        .await;
        let (reason, message) = deleting(&held).expect("Deleting");
        (held, reason, message)
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-n", &self.ns]);
        kubectl_ok(&all)
    }
}

/// The reasons of the Events in `ns`.
fn event_reasons(ns: &str) -> String {
    kubectl_ok(&[
        "get",
        "events",
        "-n",
        ns,
        "-o",
        "jsonpath={.items[*].reason}",
    ])
}

async fn wait_for_events(ns: &str, reasons: &[&str], ctl: &controller::ControllerProcess) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = event_reasons(ns);
        let missing: Vec<&&str> = reasons.iter().filter(|r| !seen.contains(*r)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Events {missing:?} missing from: {seen}\n{}",
            ctl.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `kubectl wait --for=condition=CONDITION OBJECT` (60 s), as ops wait.
async fn kubectl_wait(ns: &str, condition: &str, object: &str) {
    let args = [
        "wait".to_owned(),
        format!("-n={ns}"),
        format!("--for=condition={condition}"),
        "--timeout=60s".to_owned(),
        object.to_owned(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        kubectl_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .expect("kubectl wait");
    assert!(out.contains("condition met"), "{out}");
}

fn in_phase(c: &CredentialCutover, phase: CutoverPhase) -> bool {
    c.status.as_ref().and_then(|s| s.phase) == Some(phase)
}

/// Waits until the object is gone from the API server.
async fn wait_gone(
    api: &Api<CredentialCutover>,
    name: &str,
    timeout: Duration,
    ctl: &controller::ControllerProcess,
) {
    let deadline = Instant::now() + timeout;
    while api.get_opt(name).await.expect("get").is_some() {
        assert!(
            Instant::now() < deadline,
            "{name} still there after {timeout:?}\n{}",
            ctl.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn deleting(c: &CredentialCutover) -> Option<(String, String)> {
    c.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Deleting")
            .map(|c| (c.reason.clone(), c.message.clone()))
    })
}

/// Runs `body(store kind)` as `name::sqlite` and `name::postgres`.
macro_rules! on_both_stores {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body("sqlite").await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body("postgres").await;
            }
        }
    };
}

/// A GitOps prune deletes a Running cutover mid-backfill. The deletion
/// waits (`kubectl describe` says why and how to abort instead), the
/// backfill goes on to completion, the source is retired after
/// `retainSource`, and only then is the object gone; every member verifies
/// with the right password on every purpose throughout.
async fn delete_running(kind: &str) {
    let at = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60)).to_string();
    let cutover = future_cutover("split", &at)
        .replace("batchSize: 1000", "batchSize: 1")
        .replace("retainSource: 720h", "retainSource: 4s");
    let scene = ControlledScene::start(kind, 3_000, Some(&cutover), "ctl-del-run").await;
    let cutovers = scene.cutovers();
    wait_for(
        &cutovers,
        "split",
        Duration::from_secs(60),
        "running with progress",
        |c| {
            c.status.as_ref().is_some_and(|s| {
                s.phase == Some(CutoverPhase::Running)
                    && s.progress.as_ref().is_some_and(|p| p.done > 0)
            })
        },
    )
    .await;
    let (held, reason, message) = scene.delete_and_wait_held("split").await;
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "the object is terminating"
    );
    if reason == "WaitingForCompletion" {
        assert!(
            message.contains("credshift.dev/on-delete=Abort"),
            "{message}"
        );
    } else {
        assert_eq!(reason, "WaitingForRetirement", "{message}");
    }
    let described = scene.kubectl(&["describe", "credentialcutover", "split"]);
    assert!(described.contains("deletion waits until"), "{described}");
    scene.everyone_verifies("while the deletion is held").await;

    wait_gone(&cutovers, "split", Duration::from_secs(180), &scene.ctl).await;
    wait_for_events(
        &scene.ns,
        &["DeletionHeld", "CutoverCompleted", "SourceRetired"],
        &scene.ctl,
    )
    .await;
    scene.everyone_verifies("after the deletion").await;
    let store = Store::open(&scene.url).await.expect("store");
    assert_eq!(
        store
            .count_credentials("wakwak", "login")
            .await
            .expect("count"),
        0,
        "the source was retired, not forgotten"
    );
    assert_eq!(
        store
            .count_credentials("wakwak", "support")
            .await
            .expect("count"),
        3_006
    );
}
on_both_stores!(
    deleting_a_running_cutover_waits_for_completion_and_retirement,
    delete_running
);

/// A Scheduled cutover is deleted: the deletion waits, the login password
/// keeps answering both purposes; ops annotate `on-delete=Abort`, and the
/// cutover is gone, audited, its purposes answered by the login password
/// for good (the policy's status says which cutover routes them).
async fn delete_scheduled(kind: &str) {
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let cutover = future_cutover("split", &at);
    let scene = ControlledScene::start(kind, 0, Some(&cutover), "ctl-del-sched").await;
    let cutovers = scene.cutovers();
    wait_for(
        &cutovers,
        "split",
        Duration::from_secs(60),
        "scheduled",
        |c| {
            in_phase(c, CutoverPhase::Scheduled)
                && kube::ResourceExt::finalizers(c)
                    .iter()
                    .any(|f| f == "credshift.dev/cutover-protection")
        },
    )
    .await;
    let (_, reason, message) = scene.delete_and_wait_held("split").await;
    assert_eq!(reason, "WaitingForCompletion", "{message}");
    assert!(
        message.contains("kubectl annotate credentialcutover split credshift.dev/on-delete=Abort"),
        "{message}"
    );
    scene.everyone_verifies("while the deletion is held").await;

    scene.kubectl(&[
        "annotate",
        "credentialcutover",
        "split",
        "credshift.dev/on-delete=Abort",
    ]);
    wait_gone(&cutovers, "split", Duration::from_secs(30), &scene.ctl).await;
    wait_for_events(&scene.ns, &["DeletionHeld", "CutoverAborted"], &scene.ctl).await;
    let key = format!("{}/split", scene.ns);
    wait_for(
        &scene.policies(),
        "wakwak",
        Duration::from_secs(30),
        "routed by the aborted split",
        |p| {
            p.status.as_ref().is_some_and(|s| {
                s.routing.iter().any(|r| {
                    r.purpose == "support-portal"
                        && r.mode == "Source"
                        && r.cutover.as_deref() == Some(key.as_str())
                })
            }) && policy_condition(p, "CredentialsHeld")
                .is_some_and(|(s, _)| s == ConditionStatus::True)
        },
    )
    .await;
    scene.everyone_verifies("after the abort").await;
    let store = Store::open(&scene.url).await.expect("store");
    let known = store.known_splits("wakwak").await.expect("known");
    assert_eq!(known[0].phase, credshift::store::CheckpointPhase::Aborted);
}
on_both_stores!(
    deleting_a_scheduled_cutover_waits_until_ops_abort_it,
    delete_scheduled
);

/// The policy is synced before its cutover: the policy's status says how
/// many members it would deny and on what, until the cutover arrives; from
/// then on every member verifies on every purpose.
async fn policy_first(kind: &str) {
    let scene = ControlledScene::start(kind, 0, None, "ctl-policy-first").await;
    let policies = scene.policies();
    let p = wait_for(
        &policies,
        "wakwak",
        Duration::from_secs(60),
        "credentials lacking",
        |p| {
            policy_condition(p, "CredentialsHeld").is_some_and(|(s, _)| s == ConditionStatus::False)
        },
    )
    .await;
    let (_, message) = policy_condition(&p, "CredentialsHeld").expect("condition");
    assert!(
        message.contains(
            "purpose support-portal is routed to credential support, which 6 of 6 accounts lack"
        ) && message.contains(
            "purpose connection is routed to credential connection, which 6 of 6 accounts lack"
        ),
        "{message}"
    );
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    apply(&scene.ns, &future_cutover("split", &at));
    wait_for(
        &policies,
        "wakwak",
        Duration::from_secs(60),
        "all held",
        |p| policy_condition(p, "CredentialsHeld").is_some_and(|(s, _)| s == ConditionStatus::True),
    )
    .await;
    scene.everyone_verifies("once the cutover arrived").await;
}
on_both_stores!(
    a_policy_applied_before_its_cutover_is_reported_until_the_cutover_arrives,
    policy_first
);

/// Members imported after the split completed (only the login password in
/// the file) get both new passwords from it, as the backfill gave everyone;
/// the import says so. The completed cutover is then deleted keeping its
/// source (`on-delete=KeepSource`): gone at once, audited, and no one is
/// denied anywhere.
async fn import_after_completion(kind: &str) {
    let scene =
        ControlledScene::start(kind, 0, Some(&example("cutover.yaml")), "ctl-import-late").await;
    let cutovers = scene.cutovers();
    wait_for(
        &cutovers,
        "split-login-2018",
        Duration::from_secs(60),
        "completed",
        |c| in_phase(c, CutoverPhase::Completed),
    )
    .await;
    let late = format!(
        "login_id,base_email,login,mail,ftp\nab000099,late@wakwak.example.jp,{FILLER_HASH},{FILLER_HASH},{FILLER_HASH}\n"
    );
    let stderr = import_members(&scene.url, scene.dir.path(), "late.csv", &late);
    assert!(
        stderr.contains(
            "note: 1 rows were given what cutovers completed before this import gave every member"
        ) && stderr.contains(&format!(
            "{}/split-login-2018 (login -> support, connection)",
            scene.ns
        )),
        "{stderr}"
    );
    let late_member: Vec<(&str, &str, String)> = PURPOSES
        .iter()
        .map(|p| ("ab000099", *p, "password".to_owned()))
        .collect();
    let denied = denials(&scene.client, &scene.ns, &scene.url, &late_member).await;
    assert!(denied.is_empty(), "the late member: {denied:?}");
    scene.everyone_verifies("after the late import").await;

    scene.kubectl(&[
        "annotate",
        "credentialcutover",
        "split-login-2018",
        "credshift.dev/on-delete=KeepSource",
    ]);
    scene.kubectl(&[
        "delete",
        "credentialcutover",
        "split-login-2018",
        "--wait=false",
    ]);
    wait_gone(
        &cutovers,
        "split-login-2018",
        Duration::from_secs(30),
        &scene.ctl,
    )
    .await;
    wait_for_events(&scene.ns, &["CutoverCompleted", "SourceKept"], &scene.ctl).await;
    assert!(!event_reasons(&scene.ns).contains("SourceRetired"));
    let store = Store::open(&scene.url).await.expect("store");
    assert_eq!(
        store
            .count_credentials("wakwak", "login")
            .await
            .expect("count"),
        7,
        "the source was kept"
    );
    scene.everyone_verifies("after the deletion").await;
}
on_both_stores!(
    members_imported_after_a_cutover_completed_get_its_targets,
    import_after_completion
);

/// One precedence rule for every driver. One `kubectl apply` creates two
/// cutovers of a policy that split into the same credentials (in the same
/// second, as a whole directory applied at once does): the smaller name
/// runs and the other is Stalled naming it, instead of each blocking the
/// other. A second realm's policy splitting into credentials of the same
/// names is not constrained by the first. `serve --from-cluster` assembles
/// the same realms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_second_cutovers_and_two_policies_follow_one_precedence_rule() {
    let Scene { client, ns, dir } = Scene::new().await;
    let url = store_of("sqlite", dir.path(), 0).await;
    let policy = example("policy.yaml");
    let other = policy
        .replace("  name: wakwak\n", "  name: other\n")
        .replace("  realm: wakwak\n", "  realm: other\n");
    assert_ne!(other, policy, "the example policy's name and realm moved");
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let other_split =
        future_cutover("split-other", &at).replace("    name: wakwak\n", "    name: other\n");
    let all = [
        policy,
        other,
        future_cutover("split-a", &at),
        future_cutover("split-b", &at),
        other_split,
    ]
    .join("\n---\n");
    apply(&ns, &all);
    let mut ctl = controller::start(&ns, &url, "ctl-precedence", dir.path());
    ctl.wait_ready(Duration::from_secs(60));
    let cutovers: Api<CredentialCutover> = Api::namespaced(client.clone(), &ns);
    for name in ["split-a", "split-other"] {
        wait_for(&cutovers, name, Duration::from_secs(60), "scheduled", |c| {
            in_phase(c, CutoverPhase::Scheduled)
        })
        .await;
    }
    let b = wait_for(
        &cutovers,
        "split-b",
        Duration::from_secs(60),
        "refused",
        |c| in_phase(c, CutoverPhase::Failed),
    )
    .await;
    let (stalled, message) = cutover_condition(&b, "Stalled").expect("Stalled");
    assert_eq!(stalled, ConditionStatus::True);
    assert!(
        message.contains(&format!(
            "already the target of CredentialCutover {ns}/split-a"
        )),
        "{message}"
    );
    let realms = credshift::api::cluster::load(&client, Some(&ns))
        .await
        .expect("load");
    let mut seen: Vec<(String, Vec<String>)> = realms
        .iter()
        .map(|r| {
            (
                r.policy.realm.clone(),
                r.cutovers.iter().map(|(c, _)| c.name.clone()).collect(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("other".to_owned(), vec![format!("{ns}/split-other")]),
            ("wakwak".to_owned(), vec![format!("{ns}/split-a")]),
        ]
    );
}
