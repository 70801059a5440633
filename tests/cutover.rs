//! The 2018 split, sentence by sentence (the ISP's announcement of 2018-04-18), through
//! the engine on both databases, plus member changes racing the backfill.
//! The policy and cutover are the real `examples/2018-split` YAML.

// A panic in a test is its failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use credshift::engine::cutover::{Phase, advance};
use credshift::engine::guesses::GuessLimit;
use credshift::engine::members::{LoginVerify, Realm, Refusal};
use credshift::engine::model::Recovery;
use credshift::engine::{Passwords, VerifyOutcome};
use credshift::hashing::{HashPool, Secret};
use credshift::store::{
    Account, AccountState, CheckpointPhase, CredentialWrite, Expected, FailureKey, SplitRef, Store,
    WriteKind,
};
use jiff::Timestamp;

use support::stores::TestStore;
use support::writers::{assert_writes_got_in, member_writes_during};

/// The example YAML, with cheap argon2 so the tests spend time on behaviour.
fn wakwak() -> Realm {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/2018-split");
    let tmp = tempfile::tempdir().expect("dir");
    for name in ["policy.yaml", "cutover.yaml"] {
        let text = std::fs::read_to_string(dir.join(name)).expect("example");
        let text = text.replace(
            "      changeVia:",
            "      hashing: {memoryKiB: 1024, iterations: 1}\n      changeVia:",
        );
        std::fs::write(tmp.path().join(name), text).expect("write");
    }
    let manifests = credshift::files::load(&[tmp.path().to_owned()]).expect("examples load");
    let mut model = manifests.model().expect("examples are valid");
    model.realms.remove(0)
}

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// Tuesday 2018-04-17, 12:00 JST: the old operation.
fn before() -> Timestamp {
    at("2018-04-17T12:00:00+09:00")
}

/// Wednesday 2018-04-18, 09:00 JST: the new operation.
fn after() -> Timestamp {
    at("2018-04-18T09:00:00+09:00")
}

const OLD_LOGIN: &str = "taro-login-1998";
const MAIL: &str = "taro-mail-pw";

async fn member(store: &Store, login_id: &str) -> Account {
    let account = store
        .create_account(
            "wakwak",
            login_id,
            "taro@wakwak.example.jp",
            "test",
            at("2018-01-01T00:00:00Z"),
        )
        .await
        .expect("account");
    let pool = HashPool::default();
    let params = FAST;
    for (name, pw) in [("login", OLD_LOGIN), ("mail", MAIL), ("ftp", MAIL)] {
        let hash = pool.hash(Secret::from(pw), params).await.expect("hash");
        let write = CredentialWrite {
            name: name.into(),
            hash,
            expected: Expected::Absent,
            via: "import".into(),
            must_change: false,
            action: "credential.set",
            kind: WriteKind::Set,
        };
        store
            .write_credential(&account, write, at("2018-01-01T00:00:00Z"))
            .await
            .expect("credential");
    }
    account
}

/// The realm with its cutover's progress as the store records it.
async fn realm_now(store: &Store) -> Realm {
    let mut realm = wakwak();
    for (c, progress) in &mut realm.cutovers {
        *progress = store
            .checkpoint_phase(&c.name)
            .await
            .expect("checkpoint")
            .into();
    }
    realm
}

/// What a verify by login ID answers now.
async fn verify_login(
    store: &Store,
    login_id: &str,
    purpose: &str,
    pw: &str,
    now: Timestamp,
) -> Option<LoginVerify> {
    // The realm as loaded, progress unknown: a verify reads the cutover's
    // progress in the same snapshot as the hash.
    verify_in(&wakwak(), store, login_id, purpose, pw, now).await
}

/// What a verify by login ID answers through `realm` (as a driver built it).
async fn verify_in(
    realm: &Realm,
    store: &Store,
    login_id: &str,
    purpose: &str,
    pw: &str,
    now: Timestamp,
) -> Option<LoginVerify> {
    let guesses = FailureKey {
        key: login_id,
        streak: login_id,
        window: Duration::from_secs(900),
        now,
    };
    let limit = GuessLimit {
        failures: 10,
        window: guesses.window,
        account_failures: 100,
    };
    realm
        .verify(
            store,
            &HashPool::default(),
            login_id,
            purpose,
            Secret::from(pw),
            limit,
            &guesses,
        )
        .await
        .expect("verify")
}

async fn verifies(
    store: &Store,
    account: &Account,
    purpose: &str,
    pw: &str,
    now: Timestamp,
) -> bool {
    matches!(
        verify_login(store, &account.login_id, purpose, pw, now).await,
        Some(LoginVerify::Checked(VerifyOutcome::Match { .. }))
    )
}

async fn change(
    store: &Store,
    account: &Account,
    channel: &str,
    purpose: &str,
    current: &str,
    new: &str,
    now: Timestamp,
) -> Result<(), Refusal> {
    let realm = realm_now(store).await;
    realm
        .change(
            store,
            &HashPool::default(),
            account,
            channel,
            purpose,
            Secret::from(current),
            Secret::from(new),
            now,
        )
        .await
        .expect("change runs")
}

/// Runs the 2018 cutover to completion at `now`.
async fn run_cutover(store: &Store, now: Timestamp) {
    let realm = wakwak();
    let (cutover, _) = &realm.cutovers[0];
    loop {
        let adv = advance(
            store,
            &realm.policy,
            cutover,
            || now,
            Duration::from_secs(5),
        )
        .await
        .expect("advance");
        if adv.phase != Phase::Running {
            assert_eq!(adv.phase, Phase::Completed);
            break;
        }
    }
}

/// Cheap argon2id parameters, for tests about writes rather than hashing.
const FAST: credshift::hashing::Argon2Params = credshift::hashing::Argon2Params {
    memory_kib: 1024,
    iterations: 1,
    parallelism: 1,
};

/// `password` hashed with [`FAST`].
async fn fast_hash(password: &str) -> String {
    HashPool::default()
        .hash(Secret::from(password), FAST)
        .await
        .expect("hash")
}

/// Member `wk{i:05}` of [`import_members`].
async fn wk_member(store: &Store, i: usize) -> Account {
    store
        .find_account("wakwak", &format!("wk{i:05}"))
        .await
        .expect("find")
        .expect("account")
}

/// Imports `n` members `wk00000`… holding `login` = `hash`.
async fn import_members(store: &Store, n: usize, hash: &str) {
    let rows: Vec<_> = (0..n)
        .map(|i| credshift::store::ImportRow {
            line: i as u64 + 2,
            login_id: format!("wk{i:05}"),
            base_email: format!("m{i}@wakwak.example.jp"),
            credentials: vec![("login".into(), hash.to_owned())],
            given: Vec::new(),
        })
        .collect();
    for chunk in rows.chunks(1000) {
        store
            .import_batch("wakwak", chunk, "import", at("2018-01-01T00:00:00Z"))
            .await
            .expect("import");
    }
}

/// Runs the cutover from `after()` in its own task, `budget` per call of
/// `advance`, until it is no longer running; the task returns that phase.
fn spawn_backfill(
    store: Store,
    batch_size: u32,
    budget: Duration,
) -> tokio::task::JoinHandle<Phase> {
    tokio::spawn(async move {
        let mut realm = wakwak();
        realm.cutovers[0].0.batch_size = batch_size;
        let cutover = realm.cutovers[0].0.clone();
        loop {
            let adv = advance(&store, &realm.policy, &cutover, after, budget)
                .await
                .expect("advance");
            if adv.phase != Phase::Running {
                return adv.phase;
            }
            tokio::task::yield_now().await;
        }
    })
}

// ---------------------------------------------------------------------------

store_test!(
    until_2018_04_17_one_login_password_for_portal_and_connection,
    one_login_password
);
/// "Until now, the password for logging in to Online Member Support and the
/// password for the internet connection were one and the same login password."
async fn one_login_password(db: TestStore) {
    let a = member(&db.store, "ab000001").await;
    assert!(verifies(&db.store, &a, "support-portal", OLD_LOGIN, before()).await);
    assert!(verifies(&db.store, &a, "connection", OLD_LOGIN, before()).await);
    assert!(!verifies(&db.store, &a, "support-portal", "something else", before()).await);
}

store_test!(
    a_suspended_or_closed_member_verifies_like_an_unknown_login_id,
    only_active_members_verify
);
/// A suspended or closed member's password verifies for no purpose, before
/// or after the date, and the answer is the one an unknown login ID gets;
/// reactivated, the same password works again.
async fn only_active_members_verify(db: TestStore) {
    let a = member(&db.store, "ab000090").await;
    let t = at("2018-02-01T00:00:00Z");
    for state in [AccountState::Suspended, AccountState::Closed] {
        db.store
            .set_account_state(&a, state, "test", t)
            .await
            .expect("set state");
        for purpose in ["support-portal", "connection"] {
            for now in [before(), after()] {
                assert_eq!(
                    verify_login(&db.store, &a.login_id, purpose, OLD_LOGIN, now).await,
                    Some(LoginVerify::NoAccount),
                    "{state:?} member, {purpose} at {now}"
                );
            }
        }
    }
    assert_eq!(
        verify_login(&db.store, "ab999999", "support-portal", OLD_LOGIN, after()).await,
        Some(LoginVerify::NoAccount),
        "an unknown login ID"
    );
    db.store
        .set_account_state(&a, AccountState::Active, "test", t)
        .await
        .expect("reactivate");
    assert!(verifies(&db.store, &a, "support-portal", OLD_LOGIN, before()).await);
    assert_eq!(
        verify_login(
            &db.store,
            &a.login_id,
            "no-such-purpose",
            OLD_LOGIN,
            before()
        )
        .await,
        None,
        "an unknown purpose"
    );
}

store_test!(
    until_2018_04_17_the_login_password_is_changed_via_the_utility,
    utility_changes_login
);
/// "until Tue 2018-04-17 | login password | via the WAKWAK utility (for internet
/// connection)" — a utility change changes the one password used by both, and
/// the portal cannot change it.
async fn utility_changes_login(db: TestStore) {
    let a = member(&db.store, "ab000002").await;
    let refused = change(
        &db.store,
        &a,
        "portal",
        "support-portal",
        OLD_LOGIN,
        "portal-new-pw-1",
        before(),
    )
    .await;
    assert_eq!(
        refused,
        Err(Refusal::ChannelNotAllowed {
            credential: "login".into(),
            channel: "portal".into()
        }),
        "before the date the portal cannot change the password"
    );
    change(
        &db.store,
        &a,
        "utility",
        "connection",
        OLD_LOGIN,
        "utility-new-pw-1",
        before(),
    )
    .await
    .expect("the utility changes the login password");
    assert!(
        verifies(
            &db.store,
            &a,
            "support-portal",
            "utility-new-pw-1",
            before()
        )
        .await
    );
    assert!(verifies(&db.store, &a, "connection", "utility-new-pw-1", before()).await);
    assert!(!verifies(&db.store, &a, "connection", OLD_LOGIN, before()).await);
}

store_test!(
    the_initial_value_of_both_new_passwords_is_the_login_password_in_use,
    initial_value
);
/// "The initial value of both the member support password and the connection
/// password is the login password currently in use." — including a login
/// password changed through the utility just before the date.
async fn initial_value(db: TestStore) {
    let a = member(&db.store, "ab000003").await;
    let b = member(&db.store, "ab000004").await;
    change(
        &db.store,
        &b,
        "utility",
        "connection",
        OLD_LOGIN,
        "changed-on-17th",
        before(),
    )
    .await
    .expect("utility change on the 17th");
    run_cutover(&db.store, after()).await;
    for purpose in ["support-portal", "connection"] {
        assert!(
            verifies(&db.store, &a, purpose, OLD_LOGIN, after()).await,
            "{purpose}"
        );
        assert!(
            verifies(&db.store, &b, purpose, "changed-on-17th", after()).await,
            "{purpose}"
        );
    }
    for (account, name) in [(&a, "support"), (&a, "connection"), (&b, "support")] {
        assert!(
            db.store
                .credential(account.id, name)
                .await
                .expect("get")
                .is_some(),
            "{name} materialised"
        );
    }
}

store_test!(
    from_2018_04_18_the_support_password_is_changed_on_the_portal_only,
    portal_changes_support
);
/// "from Wed 2018-04-18 | member support password | via the password-change
/// screen of Online Member Support" — and each can be set to its own value:
/// the connection password stays the old one.
async fn portal_changes_support(db: TestStore) {
    let a = member(&db.store, "ab000005").await;
    // Even before the backfill reached this member (dual read).
    change(
        &db.store,
        &a,
        "portal",
        "support-portal",
        OLD_LOGIN,
        "my-support-pw-2018",
        after(),
    )
    .await
    .expect("the portal changes the support password");
    assert!(
        verifies(
            &db.store,
            &a,
            "support-portal",
            "my-support-pw-2018",
            after()
        )
        .await
    );
    assert!(!verifies(&db.store, &a, "support-portal", OLD_LOGIN, after()).await);
    assert!(
        verifies(&db.store, &a, "connection", OLD_LOGIN, after()).await,
        "connection keeps the old password"
    );
    assert_eq!(
        change(
            &db.store,
            &a,
            "utility",
            "support-portal",
            "my-support-pw-2018",
            "x-support-via-util",
            after()
        )
        .await,
        Err(Refusal::ChannelNotAllowed {
            credential: "support".into(),
            channel: "utility".into()
        })
    );
    run_cutover(&db.store, after()).await;
    assert!(
        verifies(
            &db.store,
            &a,
            "support-portal",
            "my-support-pw-2018",
            after()
        )
        .await,
        "backfill never overwrites it"
    );
    assert!(verifies(&db.store, &a, "connection", OLD_LOGIN, after()).await);
}

store_test!(
    from_2018_04_18_the_connection_password_is_changed_via_the_utility,
    utility_changes_connection
);
/// "(2) Password for the internet connection: the name changes; the way it is
/// changed does not. from Wed 2018-04-18 | connection password | via the WAKWAK
/// utility" — and the portal cannot change it.
async fn utility_changes_connection(db: TestStore) {
    let a = member(&db.store, "ab000006").await;
    run_cutover(&db.store, after()).await;
    assert_eq!(
        change(
            &db.store,
            &a,
            "portal",
            "connection",
            OLD_LOGIN,
            "conn-by-portal-1",
            after()
        )
        .await,
        Err(Refusal::ChannelNotAllowed {
            credential: "connection".into(),
            channel: "portal".into()
        })
    );
    change(
        &db.store,
        &a,
        "utility",
        "connection",
        OLD_LOGIN,
        "my-connection-pw",
        after(),
    )
    .await
    .expect("the utility changes the connection password");
    assert!(verifies(&db.store, &a, "connection", "my-connection-pw", after()).await);
    assert!(
        verifies(&db.store, &a, "support-portal", OLD_LOGIN, after()).await,
        "support keeps the old password"
    );
}

store_test!(mail_and_ftp_passwords_are_not_affected, mail_and_ftp);
/// "The mail password and the FTP password are not affected."
async fn mail_and_ftp(db: TestStore) {
    let a = member(&db.store, "ab000007").await;
    let snapshot = |store: Store, id: i64| async move {
        let mut out = Vec::new();
        for name in ["mail", "ftp"] {
            let c = store
                .credential(id, name)
                .await
                .expect("get")
                .expect("credential");
            out.push((c.hash, c.version, c.set_at, c.set_via));
        }
        out
    };
    let before_split = snapshot(db.store.clone(), a.id).await;
    change(
        &db.store,
        &a,
        "utility",
        "connection",
        OLD_LOGIN,
        "utility-new-pw-2",
        before(),
    )
    .await
    .expect("change");
    run_cutover(&db.store, after()).await;
    change(
        &db.store,
        &a,
        "portal",
        "support-portal",
        "utility-new-pw-2",
        "support-new-pw-2",
        after(),
    )
    .await
    .expect("change");
    assert_eq!(snapshot(db.store.clone(), a.id).await, before_split);
    assert!(verifies(&db.store, &a, "mail", MAIL, after()).await);
    assert!(verifies(&db.store, &a, "ftp", MAIL, after()).await);
}

store_test!(the_login_id_stays_common_to_both, login_id_common);
/// "The login ID used for Online Member Support and for the internet
/// connection stays common to both and cannot be changed."
async fn login_id_common(db: TestStore) {
    let a = member(&db.store, "ab000008").await;
    run_cutover(&db.store, after()).await;
    change(
        &db.store,
        &a,
        "portal",
        "support-portal",
        OLD_LOGIN,
        "support-only-pw",
        after(),
    )
    .await
    .expect("change");
    let found = db
        .store
        .find_account("wakwak", "ab000008")
        .await
        .expect("find")
        .expect("one account");
    assert_eq!(
        found.id, a.id,
        "one account, one login ID, for both purposes"
    );
    assert!(
        verifies(
            &db.store,
            &found,
            "support-portal",
            "support-only-pw",
            after()
        )
        .await
    );
    assert!(verifies(&db.store, &found, "connection", OLD_LOGIN, after()).await);
}

store_test!(
    support_recovery_is_helpdesk_only_before_and_self_service_after,
    recovery_follows_routing
);
/// "Forgotten member support password (from 2018-04-18): … a temporary password
/// is sent to the member's WAKWAK base e-mail address" — before the date the
/// support purpose is the login password, whose recovery is the help desk.
/// "Forgotten connection password (from 2018-04-18): … contacts the help desk".
async fn recovery_follows_routing(db: TestStore) {
    let a = member(&db.store, "ab000009").await;
    let realm = realm_now(&db.store).await;
    let rec = |t| {
        let (realm, store, a) = (realm.clone(), db.store.clone(), a.clone());
        async move {
            realm
                .recovery(&store, &a, "support-portal", t)
                .await
                .expect("recovery")
                .expect("purpose")
                .1
        }
    };
    assert_eq!(rec(before()).await, Recovery::Helpdesk);
    assert!(matches!(rec(after()).await, Recovery::SelfService(_)));
    let conn = realm
        .recovery(&db.store, &a, "connection", after())
        .await
        .expect("recovery")
        .expect("purpose")
        .1;
    assert_eq!(conn, Recovery::Helpdesk);
}

store_test!(a_completed_cutover_is_never_run_again, completed_once);
async fn completed_once(db: TestStore) {
    let a = member(&db.store, "ab000010").await;
    run_cutover(&db.store, after()).await;
    change(
        &db.store,
        &a,
        "portal",
        "support-portal",
        OLD_LOGIN,
        "after-completion",
        after(),
    )
    .await
    .expect("change");
    let realm = wakwak();
    let adv = advance(
        &db.store,
        &realm.policy,
        &realm.cutovers[0].0,
        after,
        Duration::from_secs(1),
    )
    .await
    .expect("again");
    assert_eq!(
        (adv.phase, adv.batches, adv.started),
        (Phase::Completed, 0, false)
    );
    assert!(verifies(&db.store, &a, "support-portal", "after-completion", after()).await);
}

store_test!(the_source_is_retired_after_retain_source, retire_source);
async fn retire_source(db: TestStore) {
    let a = member(&db.store, "ab000011").await;
    run_cutover(&db.store, after()).await;
    let realm = wakwak();
    let cutover = &realm.cutovers[0].0;
    let early = advance(
        &db.store,
        &realm.policy,
        cutover,
        after,
        Duration::from_secs(1),
    )
    .await
    .expect("advance");
    assert_eq!(
        early.phase,
        Phase::Completed,
        "kept for rollback within retainSource"
    );
    assert!(
        db.store
            .credential(a.id, "login")
            .await
            .expect("get")
            .is_some()
    );
    let later = after() + jiff::SignedDuration::from_hours(24 * 31);
    let adv = advance(
        &db.store,
        &realm.policy,
        cutover,
        || later,
        Duration::from_secs(1),
    )
    .await
    .expect("advance");
    assert!(adv.retired && adv.phase == Phase::Retired);
    assert!(
        db.store
            .credential(a.id, "login")
            .await
            .expect("get")
            .is_none(),
        "source removed"
    );
    assert!(verifies(&db.store, &a, "support-portal", OLD_LOGIN, later).await);
    assert!(verifies(&db.store, &a, "connection", OLD_LOGIN, later).await);
}

// ---------------------------------------------------------------------------

store_test!(
    member_changes_racing_the_backfill_are_never_lost,
    changes_during_backfill
);
/// Hundreds of member changes through the engine's write path while the
/// backfill runs: afterwards each target of every account holds either that
/// member's own later change or the old login password.
async fn changes_during_backfill(db: TestStore) {
    const MEMBERS: usize = 240;
    let old_hash = fast_hash(OLD_LOGIN).await;
    import_members(&db.store, MEMBERS, &old_hash).await;
    let backfill = spawn_backfill(db.store.clone(), 3, Duration::from_millis(5));
    // Each member changes one target once, from its own task, mixed channels.
    let mut tasks = Vec::new();
    for i in (0..MEMBERS).step_by(1) {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let account = wk_member(&store, i).await;
            let (channel, purpose) = if i % 2 == 0 {
                ("portal", "support-portal")
            } else {
                ("utility", "connection")
            };
            let new = format!("new-{purpose}-{i}");
            let realm = realm_now(&store).await;
            let result = realm
                .change(
                    &store,
                    &HashPool::default(),
                    &account,
                    channel,
                    purpose,
                    Secret::from(OLD_LOGIN),
                    Secret::new(new.clone()),
                    after(),
                )
                .await
                .expect("change");
            assert_eq!(result, Ok(()), "member {i}");
            (i, purpose, new)
        }));
    }
    let mut changed = Vec::new();
    for t in tasks {
        changed.push(t.await.expect("task"));
    }
    backfill.await.expect("backfill");
    let passwords = Passwords {
        store: db.store.clone(),
        hasher: HashPool::default(),
        params: FAST,
        temporary_ttl: Duration::from_secs(86_400),
    };
    for (i, purpose, new) in changed {
        let account = wk_member(&db.store, i).await;
        let (mine, other) = if purpose == "support-portal" {
            ("support", "connection")
        } else {
            ("connection", "support")
        };
        for (credential, expected) in [(mine, new.as_str()), (other, OLD_LOGIN)] {
            let outcome = passwords
                .verify(&account, credential, Secret::from(expected), after())
                .await
                .expect("verify");
            assert!(
                matches!(outcome, VerifyOutcome::Match { .. }),
                "member {i}: {credential} must hold {}",
                if credential == mine {
                    "the member's change"
                } else {
                    "the old login password"
                }
            );
        }
    }
    let cp = db
        .store
        .checkpoint("default/split-login-2018")
        .await
        .expect("checkpoint")
        .expect("exists");
    assert_eq!((cp.done, cp.total), (MEMBERS as i64, MEMBERS as i64));
}

store_test!(
    a_target_committed_inside_a_batch_is_kept,
    committed_inside_a_batch
);
/// Targets a member set are never overwritten, at the worst moment: a
/// member's new support password is written, not yet committed, before a
/// batch starts, and commits while the batch waits for it. The batch keeps
/// it (on PostgreSQL the batch's plain insert fails on the key and the
/// batch is redone once with the guard that waits for such writes; SQLite
/// lets one writer in at a time), and every other account gets its copy.
async fn committed_inside_a_batch(db: TestStore) {
    use sqlx::Connection as _;
    const MEMBERS: usize = 50;
    const MEMBER_HASH: &str =
        "$argon2id$v=19$m=1024,t=1,p=1$bWVtYmVyc2FsdA$bWVtYmVyJ3Mgb3duIG5ldyBwYXNzd29yZA";
    let postgres = db.url.starts_with("postgres");
    let old_hash = fast_hash(OLD_LOGIN).await;
    import_members(&db.store, MEMBERS, &old_hash).await;
    let realm = wakwak();
    let cutover = realm.cutovers[0].0.clone();
    let split = SplitRef {
        cutover: &cutover.name,
        realm: &realm.policy.realm,
        source: &cutover.from,
        targets: &cutover.into,
    };
    db.store
        .start_cutover(split, cutover.at, after())
        .await
        .expect("start");
    let member = wk_member(&db.store, 7).await;
    let mut conn = sqlx::AnyConnection::connect(&db.url)
        .await
        .expect("connect");
    let mut write = conn.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO credentials (account_id, name, hash, set_at, set_via, must_change, version) \
         VALUES ($1, 'support', $2, $3, 'portal', 0, 1)",
    )
    .bind(member.id)
    .bind(MEMBER_HASH)
    .bind(after().as_millisecond())
    .execute(&mut *write)
    .await
    .expect("the member's write");
    let batch = {
        let (store, cutover, realm) = (db.store.clone(), cutover.clone(), realm.clone());
        tokio::spawn(async move {
            let split = SplitRef {
                cutover: &cutover.name,
                realm: &realm.policy.realm,
                source: &cutover.from,
                targets: &cutover.into,
            };
            store.backfill_batch(split, 1000, after()).await
        })
    };
    if postgres {
        // The batch is blocked on the member's uncommitted key.
        let mut watch = sqlx::AnyConnection::connect(&db.url)
            .await
            .expect("connect");
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut watch)
            .await
            .expect("pg_stat_activity");
            if waiting > 0 {
                break;
            }
            assert!(
                !batch.is_finished(),
                "the batch did not wait for the member's write"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    } else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !batch.is_finished(),
            "the batch did not wait for the member's write"
        );
    }
    write.commit().await.expect("the member's commit");
    let done = batch.await.expect("task").expect("batch");
    assert_eq!(done.accounts, MEMBERS as i64);
    assert_eq!(
        done.copied,
        2 * MEMBERS as i64 - 1,
        "all but the member's own"
    );
    assert_eq!(
        done.redone, postgres,
        "redone with ON CONFLICT on PostgreSQL only"
    );
    let kept = db
        .store
        .credential(member.id, "support")
        .await
        .expect("read")
        .expect("support");
    assert_eq!(
        kept.hash, MEMBER_HASH,
        "the member's password was overwritten"
    );
    for i in [0, 7, MEMBERS - 1] {
        let account = wk_member(&db.store, i).await;
        let connection = db
            .store
            .credential(account.id, "connection")
            .await
            .expect("read")
            .expect("connection copied");
        assert_eq!(connection.hash, old_hash, "member {i}");
    }
}

store_test!(two_concurrent_changes_never_lose_one, concurrent_changes);
/// Two sessions of one member change the password at the same moment, both
/// with the right current password: one wins, the other is told its current
/// password is wrong, and the password that works afterwards is the
/// winner's (never a change reported done and then overwritten).
async fn concurrent_changes(db: TestStore) {
    const MEMBERS: usize = 40;
    let old_hash = fast_hash(OLD_LOGIN).await;
    // The mail password: routed straight to its own credential, so the
    // current password is checked against what the change replaces.
    let rows: Vec<_> = (0..MEMBERS)
        .map(|i| credshift::store::ImportRow {
            line: i as u64 + 2,
            login_id: format!("wk{i:05}"),
            base_email: format!("m{i}@wakwak.example.jp"),
            credentials: vec![
                ("login".into(), old_hash.clone()),
                ("mail".into(), old_hash.clone()),
            ],
            given: Vec::new(),
        })
        .collect();
    db.store
        .import_batch("wakwak", &rows, "import", at("2018-01-01T00:00:00Z"))
        .await
        .expect("import");
    let realm = Arc::new(realm_now(&db.store).await);
    let mut pairs = Vec::new();
    for i in 0..MEMBERS {
        let account = wk_member(&db.store, i).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let sessions: Vec<_> = ["first", "second"]
            .into_iter()
            .map(|session| {
                let (store, realm, account, barrier) = (
                    db.store.clone(),
                    realm.clone(),
                    account.clone(),
                    barrier.clone(),
                );
                let new = format!("{session}-session-pw-{i}");
                tokio::spawn(async move {
                    barrier.wait().await;
                    let result = realm
                        .change(
                            &store,
                            &HashPool::default(),
                            &account,
                            "portal",
                            "mail",
                            Secret::from(OLD_LOGIN),
                            Secret::new(new.clone()),
                            after(),
                        )
                        .await
                        .expect("change");
                    (result, new)
                })
            })
            .collect();
        pairs.push((account, sessions));
    }
    for (account, sessions) in pairs {
        let mut done = Vec::new();
        for s in sessions {
            let (result, new) = s.await.expect("session");
            match result {
                Ok(()) => done.push(new),
                Err(Refusal::WrongCurrentPassword) => {}
                Err(other) => panic!("{}: {other:?}", account.login_id),
            }
        }
        if done.len() != 1 {
            let trail = db
                .store
                .audit_trail("wakwak", &account.login_id)
                .await
                .expect("audit");
            panic!(
                "{}: both changes reported done: {done:?}; audit: {trail:#?}",
                account.login_id
            );
        }
        assert!(
            verifies(&db.store, &account, "mail", &done[0], after()).await,
            "{}: the change reported done does not work",
            account.login_id
        );
    }
}

store_test!(
    members_writes_go_between_backfill_batches,
    writes_between_batches
);
/// "Members never see downtime": while the backfill commits batch
/// after batch, a member's write (here the failed guess that every wrong
/// password counts, from a second connection pool as from another process) gets in
/// between batches, on SQLite's one write lock as on PostgreSQL's row locks:
/// writes land all along the backfill, and none waits for more than a few
/// batches. Counted in writes and batches, not timed. (On SQLite, writers
/// once got in a handful of times in 100 batches, one after 80:
/// `Store::pause_after_write`.)
async fn writes_between_batches(db: TestStore) {
    const MEMBERS: usize = 20_000;
    const BATCH: u32 = 200;
    // Not checked here: any valid hash will do.
    import_members(&db.store, MEMBERS, "$1$1gX4bIp9$gPaGv77vYGg2MTJZbL8uD0").await;
    let member = Store::connect(&db.url).await.expect("a second pool");
    let name = wakwak().cutovers[0].0.name.clone();
    let backfill = spawn_backfill(db.store.clone(), BATCH, Duration::from_secs(1));
    let waited = member_writes_during(
        &member,
        &backfill,
        async || match member.checkpoint(&name).await.expect("checkpoint") {
            Some(c) => (c.phase == CheckpointPhase::Running, c.done),
            None => (false, 0),
        },
        i64::from(BATCH),
    )
    .await;
    assert_eq!(backfill.await.expect("backfill"), Phase::Completed);
    assert_writes_got_in(&waited, MEMBERS / BATCH as usize, "backfill");
}

store_test!(
    suspend_pauses_at_a_batch_boundary_and_resumes,
    suspend_and_resume
);
/// `suspend: true` pauses the backfill (dual read stays on); `false` resumes
/// from the checkpoint.
async fn suspend_and_resume(db: TestStore) {
    for i in 0..5 {
        member(&db.store, &format!("ab10000{i}")).await;
    }
    let mut realm = wakwak();
    realm.cutovers[0].0.batch_size = 2;
    let mut cutover = realm.cutovers[0].0.clone();
    // One batch, then suspend.
    let first = advance(&db.store, &realm.policy, &cutover, after, Duration::ZERO)
        .await
        .expect("advance");
    assert_eq!((first.phase, first.batches), (Phase::Running, 1));
    cutover.suspend = true;
    let paused = advance(
        &db.store,
        &realm.policy,
        &cutover,
        after,
        Duration::from_secs(1),
    )
    .await
    .expect("advance");
    assert_eq!((paused.phase, paused.batches), (Phase::Suspended, 0));
    let done_while_paused = paused.checkpoint.expect("checkpoint").done;
    assert_eq!(done_while_paused, 2, "paused at a batch boundary");
    cutover.suspend = false;
    loop {
        let adv = advance(
            &db.store,
            &realm.policy,
            &cutover,
            after,
            Duration::from_secs(1),
        )
        .await
        .expect("advance");
        if adv.phase != Phase::Running {
            assert_eq!(adv.phase, Phase::Completed);
            assert_eq!(adv.checkpoint.expect("checkpoint").done, 5);
            break;
        }
    }
}

store_test!(
    overrunning_the_window_is_reported_and_acted_on,
    window_overrun
);
/// `window` is how long the split may take; overrunning it is reported, and
/// `onWindowExceeded: Suspend` pauses the backfill until a person decides.
async fn window_overrun(db: TestStore) {
    for i in 0..4 {
        member(&db.store, &format!("ab20000{i}")).await;
    }
    let mut realm = wakwak();
    realm.cutovers[0].0.batch_size = 1;
    realm.cutovers[0].0.window = Duration::from_secs(60);
    realm.cutovers[0].0.on_window_exceeded = credshift::engine::model::WindowAction::Suspend;
    let cutover = realm.cutovers[0].0.clone();
    let start = after();
    let first = advance(&db.store, &realm.policy, &cutover, || start, Duration::ZERO)
        .await
        .expect("advance");
    assert!(!first.window_exceeded);
    let late = start + jiff::SignedDuration::from_secs(61);
    let adv = advance(
        &db.store,
        &realm.policy,
        &cutover,
        || late,
        Duration::from_secs(1),
    )
    .await
    .expect("advance");
    assert!(adv.window_exceeded, "reported");
    assert_eq!(
        (adv.phase, adv.batches),
        (Phase::Suspended, 0),
        "Suspend pauses"
    );
    // Continue: the person switches the action; it goes on, still reporting the overrun.
    let mut go_on = cutover.clone();
    go_on.on_window_exceeded = credshift::engine::model::WindowAction::Continue;
    let adv = advance(
        &db.store,
        &realm.policy,
        &go_on,
        || late,
        Duration::from_secs(1),
    )
    .await
    .expect("advance");
    assert!(adv.window_exceeded && adv.batches > 0);
}

/// Whether `pw` is accepted through `realm`.
async fn verifies_in(
    realm: &Realm,
    store: &Store,
    login_id: &str,
    purpose: &str,
    pw: &str,
    now: Timestamp,
) -> bool {
    matches!(
        verify_in(realm, store, login_id, purpose, pw, now).await,
        Some(LoginVerify::Checked(VerifyOutcome::Match { .. }))
    )
}

/// The policy alone, as a driver sees it once the cutover object is gone,
/// with what the store remembers of the split.
async fn without_the_cutover(
    store: &Store,
) -> (Realm, Vec<credshift::engine::members::Remembered>) {
    Realm {
        policy: wakwak().policy,
        cutovers: Vec::new(),
    }
    .with_known_splits(store)
    .await
    .expect("known splits")
}

store_test!(
    routing_follows_what_the_store_remembers_of_a_split_whatever_objects_exist,
    remembered_splits
);
/// Whatever becomes of the cutover object, routing follows what the store
/// knows of the split: declared (scheduled) and pruned, the login password
/// answers both purposes; aborted mid-backfill, it answers again for
/// members copied and not; declared again, the split runs to completion.
async fn remembered_splits(db: TestStore) {
    let (a, b) = (
        member(&db.store, "ab000020").await,
        member(&db.store, "ab000021").await,
    );
    let realm = wakwak();
    let cutover = &realm.cutovers[0].0;
    let adv = advance(
        &db.store,
        &realm.policy,
        cutover,
        before,
        Duration::from_secs(1),
    )
    .await
    .expect("advance");
    assert_eq!(adv.phase, Phase::Scheduled);
    let known = db.store.known_splits("wakwak").await.expect("known");
    assert_eq!(known.len(), 1);
    assert_eq!(
        (known[0].phase, known[0].at),
        (CheckpointPhase::Scheduled, cutover.at)
    );

    // Pruned before `at`: the login password answers; after `at`, dual read.
    let (pruned, remembered) = without_the_cutover(&db.store).await;
    assert_eq!(remembered.len(), 1, "{remembered:?}");
    for now in [before(), after()] {
        for purpose in ["support-portal", "connection"] {
            assert!(verifies_in(&pruned, &db.store, &a.login_id, purpose, OLD_LOGIN, now).await);
        }
    }

    // Started, one member copied, then aborted: both answer with login again.
    let targets = cutover.into.clone();
    let split = SplitRef {
        cutover: &cutover.name,
        realm: "wakwak",
        source: "login",
        targets: &targets,
    };
    db.store
        .start_cutover(split, cutover.at, after())
        .await
        .expect("start");
    db.store
        .backfill_batch(split, 1, after())
        .await
        .expect("one batch");
    let was = credshift::engine::cutover::abort(&db.store, &cutover.name, "ops", after())
        .await
        .expect("abort");
    assert_eq!(was, Some(CheckpointPhase::Running));
    assert_eq!(
        credshift::engine::cutover::abort(&db.store, &cutover.name, "ops", after())
            .await
            .expect("abort again"),
        None,
        "nothing left to abort"
    );
    let (aborted, remembered) = without_the_cutover(&db.store).await;
    assert_eq!(remembered[0].phase, CheckpointPhase::Aborted);
    let routing =
        credshift::engine::routing::effective_routing(&aborted.policy, &aborted.cutovers, after());
    assert_eq!(routing["support-portal"].mode(), "Source");
    for m in [&a, &b] {
        for purpose in ["support-portal", "connection", "mail"] {
            let pw = if purpose == "mail" { MAIL } else { OLD_LOGIN };
            assert!(
                verifies_in(&aborted, &db.store, &m.login_id, purpose, pw, after()).await,
                "{} on {purpose}",
                m.login_id
            );
        }
    }
    let trail = db
        .store
        .audit_trail("wakwak", &a.login_id)
        .await
        .expect("audit");
    assert!(trail.iter().all(|e| e.action != "cutover.abort"),);
    // The checkpoint is not a running one any more: a stale runner stops.
    assert!(db.store.backfill_batch(split, 1, after()).await.is_err());

    // Declared again: it runs from the start, copying what is missing.
    run_cutover(&db.store, after()).await;
    let (done, remembered) = without_the_cutover(&db.store).await;
    assert!(remembered.is_empty(), "completed: routing is direct");
    for m in [&a, &b] {
        assert!(
            verifies_in(
                &done,
                &db.store,
                &m.login_id,
                "support-portal",
                OLD_LOGIN,
                after()
            )
            .await
        );
        assert!(
            verifies_in(
                &done,
                &db.store,
                &m.login_id,
                "connection",
                OLD_LOGIN,
                after()
            )
            .await
        );
    }
}

store_test!(
    members_imported_after_the_split_completed_get_both_passwords_from_their_login_password,
    import_after_completion
);
/// "Both passwords are initially the same as the login password": a member
/// imported after the split completed gets them too, so routing straight to
/// the targets denies no one; after the source is retired, the import
/// stores no login password.
async fn import_after_completion(db: TestStore) {
    member(&db.store, "ab000030").await;
    run_cutover(&db.store, after()).await;
    let dir = tempfile::tempdir().expect("dir");
    let import = |login_id: &'static str, file: &'static str| {
        let path = dir.path().join(file);
        let store = db.store.clone();
        async move {
            let login = fast_hash(OLD_LOGIN).await;
            let mail = fast_hash(MAIL).await;
            std::fs::write(
                &path,
                format!("login_id,base_email,login,mail\n{login_id},x@wakwak.example.jp,\"{login}\",\"{mail}\"\n"),
            )
            .expect("csv");
            credshift::files::members::import_file(
                &store,
                "wakwak",
                &path,
                credshift::files::members::Format::Csv,
                credshift::files::members::ImportOptions::batches_of(100),
                after(),
                |note| panic!("{note:?}"),
            )
            .await
            .expect("import")
        }
    };
    let summary = import("ab000031", "late.csv").await;
    assert_eq!((summary.imported, summary.given_by_cutovers), (1, 1));
    let realm = without_the_cutover(&db.store).await.0;
    for purpose in ["support-portal", "connection"] {
        assert!(verifies_in(&realm, &db.store, "ab000031", purpose, OLD_LOGIN, after()).await);
    }
    assert!(verifies_in(&realm, &db.store, "ab000031", "mail", MAIL, after()).await);

    // Retired: the login password is not stored for a new member.
    let later = after() + jiff::SignedDuration::from_hours(24 * 31);
    let realm_with = wakwak();
    advance(
        &db.store,
        &realm_with.policy,
        &realm_with.cutovers[0].0,
        || later,
        Duration::from_secs(1),
    )
    .await
    .expect("retire");
    let summary = import("ab000032", "later.csv").await;
    assert_eq!((summary.imported, summary.given_by_cutovers), (1, 1));
    let account = db
        .store
        .find_account("wakwak", "ab000032")
        .await
        .expect("find")
        .expect("account");
    assert!(
        db.store
            .credential(account.id, "login")
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        db.store
            .credential(account.id, "support")
            .await
            .expect("read")
            .is_some()
    );
    assert!(
        verifies_in(
            &realm,
            &db.store,
            "ab000032",
            "connection",
            OLD_LOGIN,
            later
        )
        .await
    );
}
