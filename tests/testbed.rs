//! The test bed is real: a real kube-apiserver + etcd that enforces RBAC and
//! serves watches and CRDs, a real matching kubectl, and real PostgreSQL and
//! SQLite reached through sqlx.

// A panic in a test is its failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::runtime::{conditions, wait::await_condition};
use serde_json::json;
use sqlx::Connection as _;

use support::kube::{admin_client, admin_config, kubectl, namespace};

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("valid object")
}

#[tokio::test]
async fn kube_namespace_round_trip() {
    let client = admin_client().await;
    let name = namespace(&client).await;
    let ns = Api::<Namespace>::all(client)
        .get(&name)
        .await
        .expect("read back");
    assert_eq!(ns.metadata.name.as_deref(), Some(name.as_str()));
}

#[tokio::test]
async fn kube_crd_established_create_list_and_watch() {
    let client = admin_client().await;
    let ns = namespace(&client).await;
    let crd: CustomResourceDefinition = from_json(json!({
        "metadata": { "name": "widgets.testbed.credshift.dev" },
        "spec": {
            "group": "testbed.credshift.dev",
            "names": { "kind": "Widget", "plural": "widgets", "singular": "widget" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": { "type": "object", "properties": { "size": { "type": "integer" } } } }
                }}
            }]
        }
    }));
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create CRD: {e}"),
    }
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(
            crds,
            "widgets.testbed.credshift.dev",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("CRD Established within 30 s")
    .expect("watch the CRD");

    let gvk = GroupVersionKind::gvk("testbed.credshift.dev", "v1", "Widget");
    let resource = ApiResource::from_gvk(&gvk);
    let widgets: Api<DynamicObject> = Api::namespaced_with(client, &ns, &resource);

    // Watch from the version of the (empty) list, so the create is seen as
    // an event, not as initial state, however late the watch connects.
    let version = widgets
        .list_metadata(&ListParams::default())
        .await
        .expect("list widgets")
        .metadata
        .resource_version
        .expect("a list has a resourceVersion");
    let mut events = widgets
        .watch(&WatchParams::default(), &version)
        .await
        .expect("watch widgets")
        .boxed();
    let watch = tokio::spawn(async move {
        while let Some(event) = events.try_next().await.expect("watch stream") {
            if let WatchEvent::Added(obj) = event
                && obj.metadata.name.as_deref() == Some("w1")
            {
                return obj;
            }
        }
        panic!("watch ended without the create");
    });

    let mut w1 = DynamicObject::new("w1", &resource);
    w1.data = json!({ "spec": { "size": 3 } });
    widgets
        .create(&PostParams::default(), &w1)
        .await
        .expect("create widget");

    let listed = widgets
        .list(&ListParams::default())
        .await
        .expect("list widgets");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].data["spec"]["size"], 3);

    let seen = tokio::time::timeout(Duration::from_secs(30), watch)
        .await
        .expect("watch delivers the create within 30 s")
        .expect("watch task");
    assert_eq!(seen.data["spec"]["size"], 3);
}

#[tokio::test]
async fn rbac_is_enforced_for_a_service_account_token() {
    let client = admin_client().await;
    let ns = namespace(&client).await;
    let sas = Api::<ServiceAccount>::namespaced(client.clone(), &ns);
    sas.create(
        &PostParams::default(),
        &from_json(json!({ "metadata": { "name": "probe" } })),
    )
    .await
    .expect("create service account");
    let request: TokenRequest =
        from_json(json!({ "spec": { "audiences": [], "expirationSeconds": 600 } }));
    let issued = sas
        .create_token_request("probe", &PostParams::default(), &request)
        .await
        .expect("TokenRequest");
    let token = issued.status.expect("token status").token.expect("a token");

    let mut config = admin_config().await;
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    let as_probe = kube::Client::try_from(config).expect("token client");
    let probe_sas = Api::<ServiceAccount>::namespaced(as_probe, &ns);

    match probe_sas.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden with no role bound, got {other:?}"),
    }

    let role: Role = from_json(json!({
        "metadata": { "name": "read-sas" },
        "rules": [{ "apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["list"] }]
    }));
    Api::<Role>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("create role");
    let binding: RoleBinding = from_json(json!({
        "metadata": { "name": "probe-reads-sas" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-sas" },
        "subjects": [{ "kind": "ServiceAccount", "name": "probe", "namespace": ns }]
    }));
    Api::<RoleBinding>::namespaced(client, &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create role binding");

    // The RBAC authorizer's cache catches up within a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match probe_sas.list(&ListParams::default()).await {
            Ok(list) => {
                assert!(
                    list.items
                        .iter()
                        .any(|sa| sa.metadata.name.as_deref() == Some("probe"))
                );
                break;
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("still forbidden 20 s after binding the role: {e}"),
        }
    }
}

#[test]
fn kubectl_gets_namespaces_from_the_test_server() {
    let out = kubectl()
        .args(["get", "namespaces", "-o", "name"])
        .output()
        .expect("run kubectl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for ns in ["namespace/default", "namespace/kube-system"] {
        assert!(
            stdout.lines().any(|l| l == ns),
            "{ns} missing from:\n{stdout}"
        );
    }
    let version = kubectl()
        .args(["version", "-o", "json"])
        .output()
        .expect("kubectl version");
    let version: serde_json::Value = serde_json::from_slice(&version.stdout).expect("version JSON");
    assert_eq!(
        version["clientVersion"]["minor"], version["serverVersion"]["minor"],
        "kubectl and the API server are the same release"
    );
}

#[tokio::test]
async fn postgres_round_trip_through_sqlx() {
    let url = support::postgres::server().fresh_database().await;
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::query("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT NOT NULL)")
        .execute(&mut conn)
        .await
        .expect("create");
    sqlx::query("INSERT INTO t VALUES ($1, $2)")
        .bind(7_i64)
        .bind("ワクワク")
        .execute(&mut conn)
        .await
        .expect("insert");
    let v: String = sqlx::query_scalar("SELECT v FROM t WHERE id = $1")
        .bind(7_i64)
        .fetch_one(&mut conn)
        .await
        .expect("select");
    assert_eq!(v, "ワクワク");
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await
        .expect("version");
    assert!(!version.is_empty());
}

#[tokio::test]
async fn sqlite_round_trip_through_sqlx() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        .execute(&mut conn)
        .await
        .expect("create");
    sqlx::query("INSERT INTO t VALUES ($1, $2)")
        .bind(7_i64)
        .bind("ワクワク")
        .execute(&mut conn)
        .await
        .expect("insert");
    let v: String = sqlx::query_scalar("SELECT v FROM t WHERE id = $1")
        .bind(7_i64)
        .fetch_one(&mut conn)
        .await
        .expect("select");
    assert_eq!(v, "ワクワク");
    assert!(
        dir.path().join("t.db").exists(),
        "a real file, not an in-memory database"
    );
}
