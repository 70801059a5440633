//! The account store, each test body run against both real
//! databases: SQLite (a file) and a throwaway PostgreSQL server.

// A panic in a test is its failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use credshift::engine::{EngineError, Passwords, VerifyOutcome};
use credshift::files::members::{self as import, Format, ImportOptions, ImportSummary, RowNote};
use credshift::hashing::{Argon2Params, HashPool, Secret};
use credshift::store::{Account, CredentialWrite, Expected, Store, StoreError, WriteKind};
use jiff::Timestamp;
use sqlx::Connection as _;

use support::stores::TestStore;

/// Cheap argon2id parameters so tests spend their time on behaviour, not on hashing.
const FAST: Argon2Params = Argon2Params {
    memory_kib: 1024,
    iterations: 1,
    parallelism: 1,
};

fn t0() -> Timestamp {
    "2018-03-29T00:00:00Z".parse().expect("timestamp")
}

fn passwords(store: &Store) -> Passwords {
    Passwords {
        store: store.clone(),
        hasher: HashPool::default(),
        params: FAST,
        temporary_ttl: Duration::from_secs(86_400),
    }
}

fn vectors() -> serde_json::Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy_hashes/vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("vectors.json"))
        .expect("vectors JSON")
}

fn vector_hash(scheme: &str) -> (String, String) {
    let v = vectors();
    let found = v["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .find(|x| x["scheme"] == scheme)
        .unwrap_or_else(|| panic!("a {scheme} vector"));
    (
        found["password"].as_str().expect("password").to_owned(),
        found["hash"].as_str().expect("hash").to_owned(),
    )
}

fn set(name: &str, hash: &str, expected: Expected) -> CredentialWrite {
    CredentialWrite {
        name: name.to_owned(),
        hash: hash.to_owned(),
        expected,
        via: "import".to_owned(),
        must_change: false,
        action: "credential.set",
        kind: WriteKind::Set,
    }
}

async fn account_with(store: &Store, login_id: &str, credential: &str, hash: &str) -> Account {
    let account = store
        .create_account("wakwak", login_id, "member@wakwak.example.jp", "test", t0())
        .await
        .expect("create account");
    store
        .write_credential(&account, set(credential, hash, Expected::Absent), t0())
        .await
        .expect("write credential");
    account
}

async fn import_text(store: &Store, text: &str, name: &str) -> (ImportSummary, Vec<RowNote>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write input");
    let mut notes = Vec::new();
    let summary = import::import_file(
        store,
        "wakwak",
        &path,
        Format::from_path(&path),
        ImportOptions::batches_of(2),
        t0(),
        |n| notes.push(n),
    )
    .await
    .expect("import runs");
    (summary, notes)
}

fn failed_lines(notes: &[RowNote]) -> Vec<(u64, String)> {
    notes
        .iter()
        .filter_map(|n| match n {
            RowNote::Failed(p) => Some((p.line, p.message.clone())),
            RowNote::Kept(_) => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Import

store_test!(
    import_of_a_mixed_csv_reports_bad_rows_and_reimport_is_a_noop,
    import_mixed_csv
);
async fn import_mixed_csv(db: TestStore) {
    let (_, argon) = vector_hash("argon2id");
    let (_, ssha) = vector_hash("ldap_salted_sha1");
    let (_, sha512) = vector_hash("sha512_crypt");
    let (_, md5) = vector_hash("md5_crypt");
    let csv = format!(
        "login_id,base_email,login,mail,ftp\n\
         ab000001,taro@wakwak.example.jp,\"{argon}\",{ssha},\n\
         ab000002,hanako@wakwak.example.jp,{sha512},,{md5}\n\
         ab000003,not-an-address,{sha512},,\n\
         ab000004,jiro@wakwak.example.jp,$99$unknown$scheme,,\n\
         ab 000005,saburo@wakwak.example.jp,,,\n\
         ab000006,shiro@wakwak.example.jp\n\
         ab000001,taro@wakwak.example.jp,\"{argon}\",{ssha},\n\
         ab000007,goro@wakwak.example.jp,,,\n"
    );
    let (summary, notes) = import_text(&db.store, &csv, "members.csv").await;
    assert_eq!(
        (summary.imported, summary.unchanged, summary.failed),
        (3, 1, 4),
        "{summary:?} {notes:?}"
    );
    let failed = failed_lines(&notes);
    let lines: Vec<u64> = failed.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![4, 5, 6, 7], "{failed:?}");
    assert!(failed[0].1.contains("base_email"), "{}", failed[0].1);
    assert!(
        failed[1].1.contains("login") && failed[1].1.contains("unknown hash format"),
        "{}",
        failed[1].1
    );
    assert!(failed[2].1.contains("login_id"), "{}", failed[2].1);
    assert!(failed[3].1.contains("expected 5 fields"), "{}", failed[3].1);

    // argon2 PHC strings contain commas; an unquoted one gets a hint, not a silent mis-parse.
    let unquoted = format!("login_id,base_email,login\nab000008,x@wakwak.example.jp,{argon}\n");
    let (summary, notes) = import_text(&db.store, &unquoted, "unquoted.csv").await;
    assert_eq!(summary.failed, 1);
    assert!(failed_lines(&notes)[0].1.contains("quote"), "{notes:?}");

    let a1 = db
        .store
        .find_account("wakwak", "ab000001")
        .await
        .expect("find")
        .expect("ab000001");
    let names: Vec<String> = db
        .store
        .credential_infos(a1.id)
        .await
        .expect("infos")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["login", "mail"]);
    assert!(
        db.store
            .find_account("wakwak", "ab000003")
            .await
            .expect("find")
            .is_none()
    );

    let (again, notes) = import_text(&db.store, &csv, "members.csv").await;
    assert_eq!(
        (
            again.imported,
            again.updated,
            again.unchanged,
            again.kept,
            again.failed
        ),
        (0, 0, 4, 0, 4),
        "re-import is a no-op: {again:?} {notes:?}"
    );
    assert_eq!(db.store.count_accounts("wakwak").await.expect("count"), 3);
}

store_test!(
    import_json_lines_and_never_overwrite_a_stored_password,
    import_jsonl
);
async fn import_jsonl(db: TestStore) {
    let (_, bcrypt) = vector_hash("bcrypt");
    let (_, sha256) = vector_hash("sha256_crypt");
    let first = format!(
        "{{\"login_id\": \"ab000010\", \"base_email\": \"a@wakwak.example.jp\", \"login\": \"{bcrypt}\"}}\n\
         \n\
         {{\"login_id\": \"ab000011\", \"base_email\": \"b@wakwak.example.jp\", \"login\": null}}\n\
         {{\"login_id\": \"ab000012\"\n"
    );
    let (summary, notes) = import_text(&db.store, &first, "members.jsonl").await;
    assert_eq!((summary.imported, summary.failed), (2, 1), "{notes:?}");
    assert_eq!(
        failed_lines(&notes)[0].0,
        4,
        "blank lines count in line numbers"
    );

    // A later export: ab000010's login hash differs (kept as stored), mail is new (added).
    let second = format!(
        "{{\"login_id\": \"ab000010\", \"base_email\": \"a@wakwak.example.jp\", \"login\": \"{sha256}\", \"mail\": \"{sha256}\"}}\n"
    );
    let (summary, notes) = import_text(&db.store, &second, "later.jsonl").await;
    assert_eq!(summary.kept, 1, "{summary:?}");
    assert!(
        matches!(&notes[0], RowNote::Kept(p) if p.message.contains("login") && p.line == 1),
        "{notes:?}"
    );
    let account = db
        .store
        .find_account("wakwak", "ab000010")
        .await
        .expect("find")
        .expect("account");
    let login = db
        .store
        .credential(account.id, "login")
        .await
        .expect("get")
        .expect("login");
    assert_eq!(
        login.hash, bcrypt,
        "the stored password was not overwritten"
    );
    assert!(
        db.store
            .credential(account.id, "mail")
            .await
            .expect("get")
            .is_some(),
        "missing credential added"
    );
}

// ---------------------------------------------------------------------------
// Hash formats

store_test!(
    every_legacy_format_verifies_then_upgrades_to_argon2id,
    legacy_formats
);
async fn legacy_formats(db: TestStore) {
    let pw = passwords(&db.store);
    let all = vectors();
    let list = all["vectors"].as_array().expect("vectors");
    assert!(list.len() >= 40);
    for (i, v) in list.iter().enumerate() {
        let scheme = v["scheme"].as_str().expect("scheme");
        let password = v["password"].as_str().expect("password");
        let hash = v["hash"].as_str().expect("hash");
        let account = account_with(&db.store, &format!("v{i:03}"), "login", hash).await;
        let wrong = Secret::new(format!("{password}x"));
        assert_eq!(
            pw.verify(&account, "login", wrong.clone(), t0())
                .await
                .expect("verify"),
            VerifyOutcome::Mismatch,
            "{scheme}: wrong password must not match"
        );
        assert_eq!(
            pw.verify(&account, "login", Secret::from(password), t0())
                .await
                .expect("verify"),
            VerifyOutcome::Match {
                must_change: false,
                upgraded: true
            },
            "{scheme} ({}) must verify and be upgraded",
            v["note"]
        );
        let stored = db
            .store
            .credential(account.id, "login")
            .await
            .expect("get")
            .expect("credential");
        assert!(
            stored.hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
            "{scheme}: upgraded hash"
        );
        assert_eq!(
            stored.set_via, "import",
            "a re-hash keeps how the password was set"
        );
        assert_eq!(
            pw.verify(&account, "login", Secret::from(password), t0())
                .await
                .expect("verify"),
            VerifyOutcome::Match {
                must_change: false,
                upgraded: false
            },
            "{scheme}: the upgraded hash verifies and needs no further upgrade"
        );
        assert_eq!(
            pw.verify(&account, "login", wrong, t0())
                .await
                .expect("verify"),
            VerifyOutcome::Mismatch
        );
    }
}

store_test!(
    malformed_hashes_give_a_per_account_error_not_a_panic,
    malformed_hashes
);
async fn malformed_hashes(db: TestStore) {
    let pw = passwords(&db.store);
    let all = vectors();
    for (i, m) in all["malformed"]
        .as_array()
        .expect("malformed")
        .iter()
        .enumerate()
    {
        let hash = m["hash"].as_str().expect("hash");
        if hash.is_empty() {
            continue; // an empty hash cannot be stored through the write path's callers; covered by unit tests
        }
        let login = format!("m{i:03}");
        let account = account_with(&db.store, &login, "login", hash).await;
        match pw
            .verify(&account, "login", Secret::from("whatever"), t0())
            .await
        {
            Err(EngineError::Hash {
                login_id,
                credential,
                source,
            }) => {
                assert_eq!(login_id, login);
                assert_eq!(credential, "login");
                assert!(
                    !source.to_string().contains(hash),
                    "the error does not echo the hash"
                );
            }
            other => panic!(
                "{} ({}): expected a hash error, got {other:?}",
                hash, m["note"]
            ),
        }
    }
}

store_test!(
    argon2id_with_outdated_parameters_is_upgraded,
    outdated_argon2
);
async fn outdated_argon2(db: TestStore) {
    let pw = passwords(&db.store);
    let list = vectors();
    let outdated = list["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .find(|v| {
            v["scheme"] == "argon2id"
                && v["hash"]
                    .as_str()
                    .is_some_and(|h| h.contains("m=4096,t=3,p=1"))
        })
        .expect("an outdated argon2id vector");
    let account = account_with(
        &db.store,
        "ab000020",
        "login",
        outdated["hash"].as_str().expect("hash"),
    )
    .await;
    let outcome = pw
        .verify(
            &account,
            "login",
            Secret::from(outdated["password"].as_str().expect("pw")),
            t0(),
        )
        .await
        .expect("verify");
    assert_eq!(
        outcome,
        VerifyOutcome::Match {
            must_change: false,
            upgraded: true
        }
    );
}

store_test!(
    rehash_on_verify_never_overwrites_a_concurrent_change,
    rehash_race
);
async fn rehash_race(db: TestStore) {
    let (old_password, md5) = vector_hash("md5_crypt");
    let pw = passwords(&db.store);

    // Deterministic: a re-hash computed from a stale version is refused.
    let account = account_with(&db.store, "ab000030", "login", &md5).await;
    let stale = db
        .store
        .credential(account.id, "login")
        .await
        .expect("get")
        .expect("cred");
    pw.set(
        &account,
        "login",
        Secret::from("a brand new one"),
        "utility",
        t0(),
    )
    .await
    .expect("member changes the password");
    let rehash = CredentialWrite {
        expected: Expected::Version(stale.version),
        kind: WriteKind::Rehash,
        action: "credential.rehash",
        ..set(
            "login",
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            Expected::Any,
        )
    };
    assert!(matches!(
        db.store.write_credential(&account, rehash, t0()).await,
        Err(StoreError::Conflict { .. })
    ));

    // Racing: many verifies of the old password (each may upgrade) against one change.
    for round in 0..5 {
        let account =
            Arc::new(account_with(&db.store, &format!("ab00004{round}"), "login", &md5).await);
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let (pw, account, old) = (pw.clone(), account.clone(), old_password.clone());
            tasks.push(tokio::spawn(async move {
                pw.verify(&account, "login", Secret::new(old), t0())
                    .await
                    .map(|_| ())
            }));
        }
        let (pw2, account2) = (pw.clone(), account.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(round * 3)).await;
            pw2.set(
                &account2,
                "login",
                Secret::from("changed during upgrade"),
                "utility",
                t0(),
            )
            .await
            .map(|_| ())
        }));
        for t in tasks {
            t.await.expect("task").expect("no errors");
        }
        assert!(
            matches!(
                pw.verify(
                    &account,
                    "login",
                    Secret::from("changed during upgrade"),
                    t0()
                )
                .await
                .expect("verify"),
                VerifyOutcome::Match { .. }
            ),
            "round {round}: the member's change survived the concurrent upgrades"
        );
        assert_eq!(
            pw.verify(&account, "login", Secret::new(old_password.clone()), t0())
                .await
                .expect("verify"),
            VerifyOutcome::Mismatch,
            "round {round}: the old password no longer works"
        );
    }
}

// ---------------------------------------------------------------------------
// Identity and integrity

store_test!(login_id_is_immutable, login_id_immutable);
/// "The login ID used for Online Member Support and for the internet connection
/// stays common to both and cannot be changed."
async fn login_id_immutable(db: TestStore) {
    let account = account_with(&db.store, "ab000050", "login", &vector_hash("md5_crypt").1).await;
    let mut conn = sqlx::AnyConnection::connect(&db.url)
        .await
        .expect("raw connection");
    for sql in [
        "UPDATE accounts SET login_id = 'renamed' WHERE id = $1",
        "UPDATE accounts SET realm = 'other' WHERE id = $1",
    ] {
        let err = sqlx::query(sql)
            .bind(account.id)
            .execute(&mut conn)
            .await
            .expect_err("a rename is refused by the database itself");
        assert!(err.to_string().contains("login_id is immutable"), "{err}");
    }
    // Other changes to the account still work.
    sqlx::query("UPDATE accounts SET base_email = 'new@wakwak.example.jp' WHERE id = $1")
        .bind(account.id)
        .execute(&mut conn)
        .await
        .expect("e-mail can change");
    let again = db
        .store
        .find_account("wakwak", "ab000050")
        .await
        .expect("find")
        .expect("still there");
    assert_eq!(again.id, account.id);
}

store_test!(accounts_and_credentials_are_unique, uniqueness);
async fn uniqueness(db: TestStore) {
    let s = &db.store;
    let a = s
        .create_account("wakwak", "ab000060", "a@wakwak.example.jp", "test", t0())
        .await
        .expect("create");
    assert!(matches!(
        s.create_account("wakwak", "ab000060", "b@wakwak.example.jp", "test", t0())
            .await,
        Err(StoreError::Duplicate { .. })
    ));
    s.create_account("other-isp", "ab000060", "c@other.example.jp", "test", t0())
        .await
        .expect("the same login ID in another realm is another member");
    let (_, hash) = vector_hash("md5_crypt");
    s.write_credential(&a, set("login", &hash, Expected::Absent), t0())
        .await
        .expect("first");
    assert!(matches!(
        s.write_credential(&a, set("login", &hash, Expected::Absent), t0())
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        s.count_credentials("wakwak", "login").await.expect("count"),
        1
    );
}

store_test!(
    two_concurrent_changes_one_wins_the_other_conflicts,
    concurrent_changes
);
async fn concurrent_changes(db: TestStore) {
    let account =
        Arc::new(account_with(&db.store, "ab000070", "login", &vector_hash("md5_crypt").1).await);
    for round in 0..20 {
        let current = db
            .store
            .credential(account.id, "login")
            .await
            .expect("get")
            .expect("cred");
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let mut tasks = Vec::new();
        for who in ["portal", "utility"] {
            let (store, account, barrier) = (db.store.clone(), account.clone(), barrier.clone());
            let hash = format!("$1$round{round:02}$abcdefghijklmnopqrstu{}", &who[..1]);
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let write = set("login", &hash, Expected::Version(current.version));
                (hash, store.write_credential(&account, write, t0()).await)
            }));
        }
        let mut winners = Vec::new();
        let mut conflicts = 0;
        for t in tasks {
            match t.await.expect("task") {
                (hash, Ok(version)) => winners.push((hash, version)),
                (_, Err(StoreError::Conflict { .. })) => conflicts += 1,
                (_, Err(e)) => panic!("round {round}: unexpected error {e}"),
            }
        }
        assert_eq!(
            (winners.len(), conflicts),
            (1, 1),
            "round {round}: exactly one wins"
        );
        let after = db
            .store
            .credential(account.id, "login")
            .await
            .expect("get")
            .expect("cred");
        assert_eq!(
            after.hash, winners[0].0,
            "round {round}: the winner's value is stored"
        );
        assert_eq!(
            after.version,
            current.version + 1,
            "round {round}: one version step"
        );
    }
}

store_test!(audit_log_is_append_only_and_holds_no_secret, audit_log);
async fn audit_log(db: TestStore) {
    let account = account_with(&db.store, "ab000080", "login", &vector_hash("md5_crypt").1).await;
    passwords(&db.store)
        .set(
            &account,
            "login",
            Secret::from("Sup3r-secret-pw"),
            "utility",
            t0(),
        )
        .await
        .expect("set");
    let trail = db
        .store
        .audit_trail("wakwak", "ab000080")
        .await
        .expect("trail");
    let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["account.create", "credential.set", "credential.set"]
    );
    assert_eq!(trail[2].actor, "utility");
    let stored = db
        .store
        .credential(account.id, "login")
        .await
        .expect("get")
        .expect("cred");
    let dump = format!("{trail:?}");
    assert!(!dump.contains("Sup3r-secret-pw") && !dump.contains(&stored.hash));

    let mut conn = sqlx::AnyConnection::connect(&db.url)
        .await
        .expect("raw connection");
    for sql in [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
    ] {
        let err = sqlx::query(sql)
            .execute(&mut conn)
            .await
            .expect_err("append-only");
        assert!(err.to_string().contains("append-only"), "{err}");
    }
}

store_test!(migrations_are_idempotent, migrations_idempotent);
async fn migrations_idempotent(db: TestStore) {
    assert_eq!(db.store.migrate().await.expect("migrate again"), 0);
    let again = Store::open(&db.url).await.expect("reopen");
    assert_eq!(again.migrate().await.expect("migrate"), 0);
}

// ---------------------------------------------------------------------------
// The command line, as a real process

store_test!(cli_import_show_verify_and_set_password, cli_accounts);
async fn cli_accounts(db: TestStore) {
    let (password, sha512) = vector_hash("sha512_crypt");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("members.csv");
    std::fs::write(
        &file,
        format!("login_id,base_email,login\nab000090,a@wakwak.example.jp,{sha512}\nab000091,broken,{sha512}\n"),
    )
    .expect("write");
    let url = db.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        support::credshift_on(&url)
            .args(["accounts", "import", "--realm", "wakwak"])
            .arg(&file)
            .output()
    })
    .await
    .expect("join")
    .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed row makes the exit code 1: {stderr}"
    );
    assert!(
        stderr.contains("members.csv:3: error: field base_email"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("imported 1,"),
        "{out:?}"
    );

    let url = db.url.clone();
    let (pw, hash) = (password.clone(), sha512.clone());
    tokio::task::spawn_blocking(move || {
        let show = support::credshift_on(&url)
            .args(["accounts", "show", "--realm", "wakwak", "ab000090"])
            .output()
            .expect("show");
        let text = String::from_utf8_lossy(&show.stdout);
        assert!(show.status.success(), "{show:?}");
        assert!(
            text.contains("login") && text.contains("sha512-crypt") && text.contains("import"),
            "{text}"
        );
        assert!(
            !text.contains(&hash) && !text.contains('$'),
            "show never prints a hash: {text}"
        );

        let verify = |pw: &str| {
            let mut cmd = support::credshift_on(&url);
            cmd.args([
                "accounts",
                "verify",
                "--realm",
                "wakwak",
                "--credential",
                "login",
                "ab000090",
            ]);
            support::output_with_stdin(cmd, &format!("{pw}\n"))
        };
        assert_eq!(verify("wrong").status.code(), Some(1));
        let ok = verify(&pw);
        assert_eq!(ok.status.code(), Some(0), "{ok:?}");
        assert!(
            String::from_utf8_lossy(&ok.stdout).contains("upgraded"),
            "{ok:?}"
        );

        let mut missing = support::credshift_on(&url);
        missing.args([
            "accounts",
            "verify",
            "--realm",
            "wakwak",
            "--credential",
            "login",
            "nobody",
        ]);
        assert_eq!(
            support::output_with_stdin(missing, "x\n").status.code(),
            Some(2)
        );

        let mut set = support::credshift_on(&url);
        set.args([
            "accounts",
            "set-password",
            "--realm",
            "wakwak",
            "--credential",
            "support",
            "ab000090",
        ]);
        let out = support::output_with_stdin(set, "Brand-new-support-pw\n");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            verify(&pw).status.code(),
            Some(0),
            "login untouched by setting support"
        );
        let mut support = support::credshift_on(&url);
        support.args([
            "accounts",
            "verify",
            "--realm",
            "wakwak",
            "--credential",
            "support",
            "ab000090",
        ]);
        assert_eq!(
            support::output_with_stdin(support, "Brand-new-support-pw\n")
                .status
                .code(),
            Some(0)
        );
        let all = format!("{out:?}");
        assert!(
            !all.contains("Brand-new-support-pw"),
            "the password is never echoed"
        );
    })
    .await
    .expect("cli checks");
}

/// Peak resident memory of a child process, sampled from /proc until it exits.
fn run_measuring_peak_rss(mut cmd: Command) -> (std::process::ExitStatus, u64) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            return (status, peak_kib);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn write_members(path: &Path, rows: usize) {
    use std::io::Write as _;
    let (_, ssha) = vector_hash("ldap_salted_sha1");
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    writeln!(out, "login_id,base_email,login,mail").expect("write");
    for i in 0..rows {
        writeln!(out, "wk{i:08},m{i}@wakwak.example.jp,{ssha},{ssha}").expect("write");
    }
}

store_test!(import_streams_in_bounded_memory, bounded_memory_import);
/// Memory does not grow with the file: eight times the rows, about the same peak.
async fn bounded_memory_import(db: TestStore) {
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("dir");
        let mut peaks = Vec::new();
        for (name, rows) in [("small.csv", 4_000), ("large.csv", 32_000)] {
            let path = dir.path().join(name);
            write_members(&path, rows);
            let mut cmd = support::credshift_on(&url);
            cmd.args([
                "accounts",
                "import",
                "--realm",
                "bounded",
                "--batch-size",
                "500",
            ])
            .arg(&path);
            let (status, peak_kib) = run_measuring_peak_rss(cmd);
            assert!(status.success(), "{name}: {status}");
            peaks.push(peak_kib);
        }
        assert!(
            peaks[1] < 96 * 1024,
            "peak RSS {} KiB for 32k rows",
            peaks[1]
        );
        assert!(
            peaks[1] < peaks[0] + 12 * 1024,
            "memory grows with the file: {} KiB for 4k rows, {} KiB for 32k rows",
            peaks[0],
            peaks[1]
        );
    })
    .await
    .expect("measure");
    assert_eq!(
        db.store.count_accounts("bounded").await.expect("count"),
        32_000
    );
}

store_test!(
    members_writes_go_between_import_batches,
    writes_between_import_batches
);
/// An import into a store members are using leaves room for their writes:
/// while it commits batch after batch, a member's write (the failed guess
/// every wrong password counts, from a second pool as from another process) gets
/// in between batches, on SQLite's one write lock as on PostgreSQL.
async fn writes_between_import_batches(db: TestStore) {
    const ROWS: usize = 20_000;
    const BATCH: usize = 200;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("members.csv");
    write_members(&path, ROWS);
    let member = Store::connect(&db.url).await.expect("a second pool");
    let store = db.store.clone();
    let import = tokio::spawn(async move {
        import::import_file(
            &store,
            "wakwak",
            &path,
            Format::Csv,
            ImportOptions::batches_of(BATCH),
            t0(),
            |_| {},
        )
        .await
        .expect("import")
    });
    let waited = support::writers::member_writes_during(
        &member,
        &import,
        async || {
            let n = member.count_accounts("wakwak").await.expect("count");
            (n > 0 && (n as usize) < ROWS, n)
        },
        BATCH as i64,
    )
    .await;
    let summary = import.await.expect("import");
    assert_eq!(summary.imported, ROWS as u64);
    support::writers::assert_writes_got_in(&waited, ROWS / BATCH, "import");
    assert_eq!(
        summary.paused.is_zero(),
        !db.url.starts_with("sqlite"),
        "only SQLite leaves its write lock free between batches: paused {:?}",
        summary.paused
    );
}

store_test!(
    an_exclusive_import_writes_batch_after_batch,
    exclusive_import
);
/// `accounts import --exclusive` is for a store nothing else writes to (a
/// first load): it does not leave the write lock free between batches, and
/// imports the same rows. Without it, a SQLite import says how long it left
/// the lock free, and how to skip that.
async fn exclusive_import(db: TestStore) {
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("members.csv");
        write_members(&path, 2_000);
        let mut stderrs = Vec::new();
        for (realm, exclusive) in [("shared", false), ("alone", true)] {
            let mut cmd = support::credshift_on(&url);
            cmd.args([
                "accounts",
                "import",
                "--realm",
                realm,
                "--batch-size",
                "100",
            ]);
            if exclusive {
                cmd.arg("--exclusive");
            }
            let out = cmd.arg(&path).output().expect("run credshift");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{realm}: {stderr}");
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("imported 2000, updated 0"),
                "{realm}: {out:?}"
            );
            stderrs.push(stderr);
        }
        let note = "between batches so that other writers got in";
        assert_eq!(
            stderrs[0].contains(note),
            url.starts_with("sqlite"),
            "a shared import notes its pauses on SQLite only: {}",
            stderrs[0]
        );
        assert!(
            stderrs[0].is_empty() || stderrs[0].contains("--exclusive skips this"),
            "{}",
            stderrs[0]
        );
        assert!(
            !stderrs[1].contains(note),
            "an exclusive import does not pause: {}",
            stderrs[1]
        );
    })
    .await
    .expect("join");
}

store_test!(
    failed_guesses_are_read_with_the_verify_snapshot_and_only_failures_are_written,
    failures_in_the_snapshot
);
/// A verify reads the failed guesses of its throttling key in the same
/// statement as the account, for a known login ID and for an unknown one
/// alike: its client's count of the current window, and the account's
/// streak of consecutive failures from any client, which only an existing
/// account keeps and which ends when told (a right or a new password).
/// Counting a failure is the only write throttling makes.
async fn failures_in_the_snapshot(db: TestStore) {
    use credshift::store::{FailureKey, Failures};
    let store = db.store.clone();
    account_with(&store, "ab000070", "login", &hash_fast("pw").await).await;
    let window = Duration::from_secs(900);
    let known = (
        "wakwak/ab000070/support-portal/198.51.100.7",
        "wakwak/ab000070/support-portal",
    );
    let other_client = ("wakwak/ab000070/support-portal/203.0.113.9", known.1);
    let unknown = (
        "wakwak/zz999999/support-portal/198.51.100.7",
        "wakwak/zz999999/support-portal",
    );
    let key = |(k, streak): (&'static str, &'static str), now| FailureKey {
        key: k,
        streak,
        window,
        now,
    };
    let read = |login: &'static str, k, now| {
        let store = store.clone();
        async move {
            store
                .verify_snapshot("wakwak", login, ["login", "login"], None, &key(k, now))
                .await
                .expect("snapshot")
        }
    };
    let counted = |window, streak, last| Failures {
        window,
        streak,
        last_failure_at: last,
    };
    let t1 = t0() + Duration::from_secs(1);
    assert_eq!(
        read("ab000070", known, t0()).await.failures,
        Failures::default()
    );
    assert_eq!(rate_limit_rows(&store).await, 0);
    let count = |k, now, exists| {
        let store = store.clone();
        async move {
            store
                .count_failure(&key(k, now), exists)
                .await
                .expect("count")
        }
    };
    assert_eq!(count(known, t0(), true).await, counted(1, 1, Some(t0())));
    assert_eq!(count(other_client, t1, true).await, counted(1, 2, Some(t1)));
    // An unknown login ID has a window count, and no streak.
    assert_eq!(count(unknown, t1, false).await, counted(1, 0, None));
    let k = read("ab000070", known, t1).await;
    assert_eq!(k.failures, counted(1, 2, Some(t1)));
    let snapshot = k.snapshot.expect("the account");
    assert_eq!(snapshot.account.login_id, "ab000070");
    assert_eq!(snapshot.credentials.len(), 1);
    let u = read("zz999999", unknown, t1).await;
    assert_eq!((u.failures, u.snapshot), (counted(1, 0, None), None));
    assert_eq!(
        store
            .failures(&key(other_client, t1))
            .await
            .expect("failures"),
        counted(1, 2, Some(t1))
    );
    // The next window starts from nothing; the streak goes on.
    let later = t0() + window;
    assert_eq!(
        read("ab000070", known, later).await.failures,
        counted(0, 2, Some(t1))
    );
    assert_eq!(rate_limit_rows(&store).await, 3);
    store.end_streak(known.1).await.expect("end");
    assert_eq!(
        read("ab000070", known, later).await.failures,
        Failures::default()
    );
}

store_test!(
    a_bcrypt_match_past_72_bytes_never_upgrades_into_another_password,
    bcrypt_past_72_bytes
);
/// bcrypt reads only the first 72 bytes of a password, so a longer one that
/// shares them matches. Upgrading on that match would store the longer
/// variant as the member's password (anyone who knows the first 72 bytes
/// could then lock the member out, or keep a password of their own): the
/// match stands, as bcrypt always answered, but the hash stays bcrypt and
/// the member's own password keeps working. A password of 72 bytes or
/// fewer still upgrades.
async fn bcrypt_past_72_bytes(db: TestStore) {
    let pw = passwords(&db.store);
    let member = format!("{}-and-the-rest-of-the-members-phrase", "m".repeat(72));
    let hash = bcrypt::hash(member.as_bytes(), 4).expect("bcrypt");
    let account = account_with(&db.store, "ab000072", "login", &hash).await;
    let variant = format!("{}-an-attackers-tail", &member[..72]);
    let stored = || async {
        db.store
            .credential(account.id, "login")
            .await
            .expect("read")
            .expect("credential")
            .hash
    };
    assert_eq!(
        pw.verify(&account, "login", Secret::new(variant.clone()), t0())
            .await
            .expect("verify"),
        VerifyOutcome::Match {
            must_change: false,
            upgraded: false
        }
    );
    assert_eq!(stored().await, hash, "upgraded into the variant");
    assert!(matches!(
        pw.verify(&account, "login", Secret::new(member.clone()), t0())
            .await
            .expect("verify"),
        VerifyOutcome::Match {
            upgraded: false,
            ..
        }
    ));
    // 72 bytes or fewer: bcrypt read all of it, and the upgrade goes ahead.
    let short = "s".repeat(72);
    let short_hash = bcrypt::hash(short.as_bytes(), 4).expect("bcrypt");
    let other = account_with(&db.store, "ab000073", "login", &short_hash).await;
    assert!(matches!(
        pw.verify(&other, "login", Secret::new(short), t0())
            .await
            .expect("verify"),
        VerifyOutcome::Match { upgraded: true, .. }
    ));
}

store_test!(
    a_password_is_checked_in_nfkc_and_hashes_made_before_still_verify,
    nfkc_passwords
);
/// Passwords are compared in Unicode NFKC (NIST SP 800-63B), so the same
/// password typed through another input method (full-width letters and
/// digits from a Japanese IME) is the same password. A hash made before
/// credshift normalised, or imported from a system that did not, holds the
/// password as it was typed: that still verifies, typed the same way, and
/// is then replaced by the hash of its NFKC form, which verifies however it
/// is typed. A new password is hashed in NFKC from the start.
async fn nfkc_passwords(db: TestStore) {
    let pw = passwords(&db.store);
    let typed = "ｓａｋｕｒａ－ｄｏｒｉ－２０１８";
    let ascii = "sakura-dori-2018";
    let verify = |account, password: &'static str| {
        let pw = pw.clone();
        async move {
            pw.verify(&account, "login", Secret::from(password), t0())
                .await
                .expect("verify")
        }
    };
    let imported = hash_fast(typed).await;
    let old = account_with(&db.store, "ab000080", "login", &imported).await;
    assert_eq!(
        verify(old.clone(), typed).await,
        VerifyOutcome::Match {
            must_change: false,
            upgraded: true
        },
        "the password as typed, hashed before normalisation"
    );
    let stored = db
        .store
        .credential(old.id, "login")
        .await
        .expect("read")
        .expect("credential")
        .hash;
    assert_ne!(stored, imported, "replaced by the NFKC hash");
    assert!(matches!(
        verify(old.clone(), ascii).await,
        VerifyOutcome::Match {
            upgraded: false,
            ..
        }
    ));
    assert!(matches!(
        verify(old.clone(), typed).await,
        VerifyOutcome::Match {
            upgraded: false,
            ..
        }
    ));
    assert_eq!(
        verify(old, "sakura-dori-2019").await,
        VerifyOutcome::Mismatch
    );

    // Set in full width, it verifies in ASCII, and the other way round.
    let new = account_with(&db.store, "ab000081", "login", &hash_fast("x").await).await;
    pw.set(&new, "login", Secret::from(typed), "test", t0())
        .await
        .expect("set");
    assert!(matches!(
        verify(new.clone(), ascii).await,
        VerifyOutcome::Match { .. }
    ));
    assert!(matches!(
        verify(new.clone(), typed).await,
        VerifyOutcome::Match { .. }
    ));
    assert_eq!(
        verify(new, "ｓａｋｕｒａ－ｄｏｒｉ－２０１９").await,
        VerifyOutcome::Mismatch
    );
}

async fn hash_fast(pw: &str) -> String {
    HashPool::default()
        .hash(Secret::from(pw), FAST)
        .await
        .expect("hash")
}

async fn rate_limit_rows(store: &Store) -> i64 {
    store.rate_limit_rows().await.expect("rows")
}
