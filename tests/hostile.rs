//! Malformed and hostile input across the three doors — custom resources
//! (through the files driver, which applies the CRD schema and the CEL rules
//! the API server would), import files, and API requests: each gets a clear
//! error and nothing in the store changes.

// A panic in a test is its failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection as _;
use support::process::{Guard, Process};

fn example(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/2018-split")
            .join(name),
    )
    .expect("example")
}

/// `credshift accounts import` of `file` into the realm wakwak of `url`.
fn import(url: &str, file: &Path) -> std::process::Output {
    support::credshift()
        .args(["accounts", "import", "--realm", "wakwak", "--store", url])
        .arg(file)
        .output()
        .expect("import")
}

/// Every table's row count, to show that nothing changed.
async fn row_counts(url: &str) -> Vec<i64> {
    let mut conn = sqlx::AnyConnection::connect(url).await.expect("connect");
    let mut out = Vec::new();
    for table in [
        "accounts",
        "credentials",
        "credential_history",
        "recovery_tickets",
        "mail_outbox",
        "cutover_checkpoints",
        "audit_log",
    ] {
        out.push(
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM {table}"
            )))
            .fetch_one(&mut conn)
            .await
            .expect("count"),
        );
    }
    out
}

/// Manifests: `credshift apply` exits 2 with the field (or file:line:col)
/// named, and writes nothing — the SQLite file is not even created.
#[test]
fn hostile_manifests_are_refused_with_the_field_named_and_nothing_written() {
    let policy = example("policy.yaml");
    let cutover = example("cutover.yaml");
    let long = "a".repeat(10_000);
    let laughs = {
        let mut y = String::from(
            "apiVersion: credshift.dev/v1alpha1\nkind: CredentialPolicy\nmetadata: {name: bomb}\n",
        );
        y.push_str("a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n");
        for i in 1..9 {
            let prev = format!("*a{}", i - 1);
            y.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(",")));
        }
        y.push_str("spec: {realm: x, credentials: [{name: login}], purposes: {}}\n");
        y
    };
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "oversized realm",
            policy.replace("realm: wakwak", &format!("realm: {long}")),
            cutover.clone(),
            "spec.realm",
        ),
        (
            "SQL in the realm",
            policy.replace("realm: wakwak", "realm: \"x'; DROP TABLE accounts;--\""),
            cutover.clone(),
            "spec.realm",
        ),
        (
            "NUL in the realm",
            policy.replace("realm: wakwak", "realm: \"wak\\0wak\""),
            cutover.clone(),
            "spec.realm",
        ),
        (
            "zero-width space in a credential name",
            policy.replace("- name: ftp", "- name: \"f\\u200btp\""),
            cutover.clone(),
            "spec.credentials[4].name",
        ),
        (
            "bidi override in a purpose",
            policy.replace("ftp: ftp", "\"ft\\u202ep\": ftp"),
            cutover.clone(),
            "spec.purposes",
        ),
        (
            "huge batch size",
            policy.clone(),
            cutover.replace("batchSize: 1000", "batchSize: 100000000"),
            "spec.batchSize",
        ),
        (
            "negative window",
            policy.clone(),
            cutover.replace("window: 6h", "window: -6h"),
            "spec.window",
        ),
        (
            "absurd retainSource",
            policy.clone(),
            cutover.replace("retainSource: 720h", "retainSource: 1e9h"),
            "spec.retainSource",
        ),
        (
            "unknown credential in the split",
            policy.clone(),
            cutover.replace("into: [support, connection]", "into: [support, radius]"),
            "spec.split.into[1]",
        ),
        (
            "instant without an offset",
            policy.clone(),
            cutover.replace("\"2018-04-18T00:00:00+09:00\"", "\"2018-04-18T00:00:00\""),
            "spec.at",
        ),
        (
            "truncated YAML",
            policy[..policy.len() / 3].to_owned() + "\n  - name: [",
            cutover.clone(),
            "policy.yaml:",
        ),
        ("billion laughs", laughs, cutover.clone(), "budget"),
        (
            "unknown field",
            policy.replace("  realm: wakwak", "  realm: wakwak\n  sudo: true"),
            cutover.clone(),
            "spec.sudo",
        ),
        (
            "wrong type",
            policy.clone(),
            cutover.replace("retainSource: 720h", "retainSource: 720h\n  suspend: maybe"),
            "spec.suspend",
        ),
        (
            "wrong apiVersion",
            policy.replace("credshift.dev/v1alpha1", "credshift.dev/v9"),
            cutover.clone(),
            "apiVersion",
        ),
    ];
    assert!(cases.len() >= 15);
    let mut failures = Vec::new();
    for (what, policy, cutover, expected) in &cases {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("policy.yaml"), policy).expect("write");
        std::fs::write(dir.path().join("cutover.yaml"), cutover).expect("write");
        let db = dir.path().join("store.db");
        let started = Instant::now();
        let out = support::credshift()
            .args(["apply", "-f"])
            .arg(dir.path())
            .arg("--store")
            .arg(format!("sqlite://{}", db.display()))
            .output()
            .expect("run apply");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2) {
            failures.push(format!("{what}: exit {:?}: {stderr}", out.status.code()));
        } else if !stderr.contains(expected) {
            failures.push(format!(
                "{what}: message does not name {expected:?}: {stderr}"
            ));
        } else if stderr.contains("panicked") {
            failures.push(format!("{what}: panicked"));
        } else if db.exists() {
            failures.push(format!("{what}: the store was created"));
        } else if started.elapsed() > Duration::from_secs(20) {
            failures.push(format!("{what}: took {:?}", started.elapsed()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Import rows: every hostile row fails with its line and field; the
/// import exits 1 and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_import_rows_fail_one_by_one_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    credshift::store::Store::open(&url).await.expect("store");
    let md5 = "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/";
    let mut csv = String::from("login_id,base_email,login\n");
    let rows: Vec<(&str, String)> = vec![
        (
            "NUL in the login ID",
            format!("\"ab\u{0}01\",a@wakwak.example.jp,{md5}\n"),
        ),
        (
            "SQL in the login ID",
            format!("\"x';DELETE FROM accounts;--\",a@wakwak.example.jp,{md5}\n"),
        ),
        (
            "login ID too long",
            format!("{},a@wakwak.example.jp,{md5}\n", "a".repeat(129)),
        ),
        (
            "bidi override in the login ID",
            format!("ab\u{202e}01,a@wakwak.example.jp,{md5}\n"),
        ),
        (
            "header injection in the e-mail",
            format!("ab000002,\"a@wakwak.example.jp\r\nBcc: x@evil.example\",{md5}\n"),
        ),
        (
            "SQL as a hash",
            "ab000003,a@wakwak.example.jp,\"'; DELETE FROM credentials; --\"\n".to_owned(),
        ),
        (
            "oversized hash",
            format!("ab000004,a@wakwak.example.jp,$6${}\n", "a".repeat(100_000)),
        ),
        (
            "too many fields",
            format!("ab000005,a@wakwak.example.jp,{md5},extra\n"),
        ),
    ];
    for (_, row) in &rows {
        csv.push_str(row);
    }
    let mut bytes = csv.into_bytes();
    bytes.extend_from_slice(b"ab000006,a@wakwak.example.jp,\xff\xfe\n");
    let file = dir.path().join("hostile.csv");
    std::fs::write(&file, &bytes).expect("write");
    let before = row_counts(&url).await;
    let out = import(&url, &file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("imported 0,"),
        "{out:?}"
    );
    // Nine bad records (the e-mail one spans two lines), each reported with its line.
    assert_eq!(stderr.matches(": error:").count(), 9, "{stderr}");
    for line in [2, 3, 4, 5, 6, 8, 9, 10, 11] {
        assert!(
            stderr.contains(&format!("hostile.csv:{line}: error:")),
            "line {line} reported: {stderr}"
        );
    }
    assert!(!stderr.contains("panicked"));
    let after = row_counts(&url).await;
    assert_eq!(after[..2], before[..2], "no account or credential stored");

    // JSON Lines: wrong types and absurd values.
    let jsonl = dir.path().join("hostile.jsonl");
    std::fs::write(
        &jsonl,
        concat!(
            "{\"login_id\": {\"$ne\": null}, \"base_email\": \"a@wakwak.example.jp\"}\n",
            "{\"login_id\": 12345678901234567890123, \"base_email\": \"a@wakwak.example.jp\"}\n",
            "{\"login_id\": \"ab000007\", \"base_email\": [\"a@wakwak.example.jp\"]}\n",
            "[\"ab000008\", \"a@wakwak.example.jp\"]\n",
            "{\"login_id\": \"ab000009\", \"base_email\": \"a@wakwak.example.jp\", \"../../etc\": \"$1$x$y\"}\n",
        ),
    )
    .expect("write");
    let out = import(&url, &jsonl);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for line in 1..=5 {
        assert!(
            stderr.contains(&format!("hostile.jsonl:{line}: error:")),
            "line {line}: {stderr}"
        );
    }
    assert_eq!(row_counts(&url).await[..2], before[..2]);
}

/// API requests: no 5xx, a clear 4xx (or the usual denied/accepted), and
/// nothing in the store changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_api_requests_get_clear_answers_and_change_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let manifests = dir.path().join("m");
    std::fs::create_dir(&manifests).expect("dir");
    for name in ["policy.yaml", "cutover.yaml", "members.csv"] {
        std::fs::write(manifests.join(name), example(name)).expect("copy");
    }
    let out = support::credshift()
        .args(["apply", "--store", &url, "-f"])
        .arg(&manifests)
        .output()
        .expect("apply");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = "hostile-test-portal-token";
    let digest: String = {
        use sha2::Digest as _;
        sha2::Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    std::fs::write(
        dir.path().join("tokens.yaml"),
        format!("tokens:\n  - name: portal\n    channel: portal\n    realms: [wakwak]\n    sha256: {digest}\n"),
    )
    .expect("tokens");
    let port = support::process::free_port();
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let mut cmd = support::credshift();
    cmd.args([
        "serve",
        "--store",
        &url,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--min-denial-time",
        "10ms",
        "-f",
    ])
    .arg(&manifests)
    .arg("--tokens")
    .arg(dir.path().join("tokens.yaml"))
    .env("CREDSHIFT_OUTBOX_KEY", key);
    let mut serve = Process::start(cmd, Guard::Watchdog, &dir.path().join("serve.log"));
    if let Err(why) = serve.wait_http(port, "/readyz", Duration::from_secs(30)) {
        panic!("serve {why}; log:\n{}", serve.log_text());
    }
    let before = row_counts(&url).await;
    let verify = |login: &str, password: &str| {
        json!({"realm": "wakwak", "login_id": login, "purpose": "support-portal", "password": password})
            .to_string()
            .into_bytes()
    };
    let big = "x".repeat(20_000);
    let cases: Vec<(&str, &str, &str, Vec<u8>, u16)> = vec![
        ("oversized body", "/v1/verify", token, verify("ab000001", &big), 413),
        ("invalid JSON", "/v1/verify", token, b"{\"realm\": ".to_vec(), 400),
        ("missing field", "/v1/verify", token, br#"{"realm": "wakwak", "login_id": "ab000001"}"#.to_vec(), 422),
        ("wrong field type", "/v1/verify", token, br#"{"realm": "wakwak", "login_id": 7, "purpose": "support-portal", "password": "x"}"#.to_vec(), 422),
        ("NUL in the login ID", "/v1/verify", token, verify("ab\u{0}001", "taro-login-1998"), 401),
        ("SQL in the login ID", "/v1/verify", token, verify("x' OR '1'='1", "x' OR '1'='1"), 401),
        ("bidi override in the login ID", "/v1/verify", token, verify("ab\u{202e}001", "x"), 401),
        ("a long password", "/v1/verify", token, verify("ab000001", &"p".repeat(8_000)), 400),
        ("a password a byte over the cap", "/v1/verify", token, verify("ab000001", &"p".repeat(1025)), 400),
        ("a client with a space", "/v1/verify", token, br#"{"realm": "wakwak", "login_id": "ab000001", "purpose": "support-portal", "password": "x", "client": "a b"}"#.to_vec(), 400),
        ("an oversized client", "/v1/verify", token, json!({"realm": "wakwak", "login_id": "ab000001", "purpose": "support-portal", "password": "x", "client": "c".repeat(129)}).to_string().into_bytes(), 400),
        ("no token", "/v1/verify", "", verify("ab000001", "x"), 401),
        ("a wrong token", "/v1/verify", "not-the-token", verify("ab000001", "x"), 401),
        ("unknown realm", "/v1/verify", token, br#"{"realm": "x'; --", "login_id": "a", "purpose": "p", "password": "x"}"#.to_vec(), 403),
        ("SQL in recovery", "/v1/recovery", token, br#"{"realm": "wakwak", "login_id": "'; DELETE FROM recovery_tickets;--", "purpose": "support-portal"}"#.to_vec(), 202),
        ("change with SQL", "/v1/change", token, br#"{"realm": "wakwak", "login_id": "ab000001'--", "purpose": "support-portal", "current_password": "x", "new_password": "'; DROP TABLE credentials;--"}"#.to_vec(), 403),
        ("unknown purpose", "/v1/verify", token, br#"{"realm": "wakwak", "login_id": "ab000001", "purpose": "../../admin", "password": "x"}"#.to_vec(), 404),
        ("help-desk reset as the portal", "/v1/helpdesk/reset", token, br#"{"realm": "wakwak", "login_id": "ab000001", "purpose": "connection"}"#.to_vec(), 403),
    ];
    let mut failures = Vec::new();
    let sent = cases.iter().map(|(what, path, tok, body, expected)| {
        let r = support::http::request(port, "POST", path, tok, Some(body));
        (*what, r, *expected)
    });
    // What the handlers never see is refused in the same shape.
    let verify_body = verify("ab000001", "x");
    let more = [
        (
            "a body that is not JSON",
            support::http::request_typed(
                port,
                "POST",
                "/v1/verify",
                token,
                Some(&verify_body),
                "text/plain",
            ),
            415,
        ),
        (
            "no such endpoint",
            support::http::request(port, "POST", "/v1/nothing-here", token, Some(b"{}")),
            404,
        ),
        (
            "a method the endpoint does not take",
            support::http::request(port, "GET", "/v1/verify", token, None),
            405,
        ),
        (
            "RADIUS without its query",
            support::http::request(port, "POST", "/v1/radius/authenticate", token, Some(b"{}")),
            400,
        ),
    ];
    for (what, answer, expected) in sent.chain(more) {
        let r = match answer {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{what}: {e}"));
                continue;
            }
        };
        if r.status != expected {
            failures.push(format!(
                "{what}: {} (expected {expected}): {}",
                r.status,
                r.text()
            ));
        }
        // Every refusal is problem details (RFC 9457) with a stable code;
        // only the answers of the protocol itself (denied, accepted) are not.
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        if r.status >= 400 && body.get("result").is_none() {
            let problem = r.header("content-type") == Some("application/problem+json")
                && body["status"] == r.status
                && body["code"].is_string()
                && body["title"].is_string()
                && body["detail"].is_string();
            if !problem {
                failures.push(format!(
                    "{what}: {} is not problem details: {:?} {}",
                    r.status,
                    r.header("content-type"),
                    r.text()
                ));
            }
        }
    }
    serve.stop();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let after = row_counts(&url).await;
    // Only the rate-limit counters and nothing else may move.
    assert_eq!(after, before, "nothing in the store changed");
}

/// Legacy hashes whose cost could pin the API (bcrypt cost 31, sha-crypt
/// at 999,999,999 rounds, argon2 with 4 GiB) are refused on import with
/// their line and field named, and nothing is stored; passlib's defaults
/// (the example's 656,000-round sha512-crypt) and bcrypt 12 are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_legacy_hashes_that_would_pin_the_api() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    credshift::store::Store::open(&url).await.expect("store");
    let csv = concat!(
        "login_id,base_email,login\n",
        "ab000001,a@wakwak.example.jp,$2b$31$GBsxoNhv2.jX5d9Ulda57O25kNrd5KjRbNRpidxqIVg7ama2pQWk6\n",
        "ab000002,b@wakwak.example.jp,$6$rounds=999999999$fnbFM7DtxAMOkpvj$g1JLGcNGM2r/qAck2q9Pp41F5w2bN79wXiumoO7rYx18kifwCRfySDIfC0zs6ix3NYCbQuo8.pCB.Ujo3W9/Q/\n",
        "ab000003,c@wakwak.example.jp,\"$argon2id$v=19$m=4194304,t=1,p=1$2ntPybmXMmYMYezdmzOmdA$Uw+T+4rIxO1getUraQVBwTx3bhuLu6TBj+Z7xKadXts\"\n",
        "ab000004,d@wakwak.example.jp,$5$rounds=5000000$ApWRjQhXkiuJOTgx$EpAhbV5SI.wCrnvbpoy1/tvQCypFvMibzPAFGILooy4\n",
    );
    let file = dir.path().join("costly.csv");
    std::fs::write(&file, csv).expect("write");
    let before = row_counts(&url).await;
    let out = import(&url, &file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for (line, what) in [
        (2, "bcrypt hash costs"),
        (3, "sha512-crypt hash costs"),
        (4, "argon2id hash needs 4194304 KiB"),
        (5, "sha256-crypt hash costs"),
    ] {
        assert!(
            stderr.contains(&format!("costly.csv:{line}: error: field login: {what}")),
            "line {line}: {stderr}"
        );
    }
    assert_eq!(row_counts(&url).await[..2], before[..2], "nothing stored");

    let fine = concat!(
        "login_id,base_email,login\n",
        "ab000005,e@wakwak.example.jp,$2b$12$GBsxoNhv2.jX5d9Ulda57O25kNrd5KjRbNRpidxqIVg7ama2pQWk6\n",
        "ab000006,f@wakwak.example.jp,$6$rounds=656000$fnbFM7DtxAMOkpvj$g1JLGcNGM2r/qAck2q9Pp41F5w2bN79wXiumoO7rYx18kifwCRfySDIfC0zs6ix3NYCbQuo8.pCB.Ujo3W9/Q/\n",
    );
    std::fs::write(&file, fine).expect("write");
    let out = import(&url, &file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
