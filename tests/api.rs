//! The member-facing API end to end: a real `credshift serve` process on an
//! SQLite store filled by `credshift apply -f examples/2018-split`, called
//! over HTTP with bearer tokens, delivering recovery mail to a real SMTP
//! server (Python's aiosmtpd) on loopback. Each test proves sentences of
//! the ISP's announcement of 2018-04-18, quoted in its doc comment.
//!
//! The store layer itself is tested on PostgreSQL elsewhere; here the
//! embedded SQLite store is enough.

// A panic in a test is its failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use credshift::store::{AccountState, RecoveryCounts, Store};
use serde_json::{Value, json};
use support::http;
use support::serve::{KENJI, Options, REALM, Serve, block_on, example_dir, extra_member};
use support::smtp::{Mail, Security, SmtpServer};

const SUPPORT: &str = "support-portal";
const CONNECTION: &str = "connection";

/// The demo members of examples/2018-split (README.md and members.csv).
const TARO: &str = "ab000001";
const TARO_MAIL: &str = "taro@wakwak.example.jp";
const TARO_LOGIN: &str = "taro-login-1998";
const JIRO: &str = "ab000003";
const JIRO_MAIL: &str = "jiro@wakwak.example.jp";
const KENJI_LOGIN: &str = "kenji-argon-66";
/// Stored as `{SSHA}` (a salted SHA-1 imported from the old system).
const SABURO: &str = "ab000004";

const MAIL_WAIT: Duration = Duration::from_secs(20);

/// The value of `key:` in the example policy's self-service mail section.
fn policy_mail_field(key: &str) -> String {
    let text = std::fs::read_to_string(example_dir().join("policy.yaml")).expect("policy.yaml");
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key}: in policy.yaml"));
    line[key.len() + 1..].trim().trim_matches('"').to_owned()
}

#[track_caller]
fn assert_ok(answer: (u16, Value), must_change: bool) {
    if must_change {
        // A temporary password lets the member in only to set a new one.
        assert_eq!(
            answer,
            (403, json!({"result": "must_change", "must_change": true}))
        );
    } else {
        assert_eq!(answer, (200, json!({"result": "ok", "must_change": false})));
    }
}

#[track_caller]
fn assert_denied(answer: (u16, Value)) {
    assert_eq!(answer, (401, json!({"result": "denied"})));
}

#[track_caller]
fn assert_accepted(answer: (u16, Value)) {
    assert_eq!(answer, (202, json!({"result": "accepted"})));
}

#[track_caller]
fn assert_error(answer: (u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"], code, "{}", answer.1);
}

/// The temporary password in a recovery mail; both language versions of
/// the example's body must carry the same one.
#[track_caller]
fn temporary_password(mail: &Mail) -> String {
    let after = |marker: &str| {
        let at = mail
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no {marker:?} in the mail body:\n{}", mail.body));
        mail.body[at + marker.len()..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let ja = after("仮パスワード: ");
    let en = after("Your temporary member support password is ");
    assert_eq!(ja, en, "the two versions disagree:\n{}", mail.body);
    assert_eq!(ja.chars().count(), 20, "policy length 20: {ja:?}");
    assert!(ja.chars().all(|c| c.is_ascii_alphanumeric()), "{ja:?}");
    ja
}

#[track_caller]
fn temp_of(answer: &(u16, Value)) -> String {
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(answer.1["must_change"], true, "{}", answer.1);
    let temp = answer.1["temporary_password"]
        .as_str()
        .unwrap_or_else(|| panic!("no temporary_password: {}", answer.1))
        .to_owned();
    assert!(temp.len() >= 12, "{temp:?}");
    temp
}

/// Waits `d`: between two looks while polling, or, to show that nothing is
/// sent, long enough for several rounds of the delivery loop
/// ([`credshift::courier::PERIOD`]).
fn settle(d: Duration) {
    std::thread::sleep(d);
}

/// "A member who has forgotten the member support password but knows the
/// login ID performs password recovery from Online Member Support's "forgot
/// your member support password" page. A temporary password is sent to the
/// member's WAKWAK base e-mail address." (from 2018-04-18)
///
/// The portal asks for recovery; the mail goes to the base address with the
/// policy's sender and subject; the old password keeps working until the
/// temporary one is used; the temporary one lets the member in with
/// must-change and replaces the old one; the member sets a new password on
/// the portal; the connection password is not touched.
#[test]
fn forgot_support_password_self_service_mails_a_temporary_password_to_the_base_address() {
    let smtp = SmtpServer::start();
    let s = Serve::start(Options {
        smtp: Some(&smtp),
        ..Default::default()
    });
    assert_accepted(s.recovery(TARO, SUPPORT));

    let mail = smtp.wait_for_mail(TARO_MAIL, MAIL_WAIT);
    assert_eq!(mail.to, vec![TARO_MAIL.to_owned()]);
    assert_eq!(mail.from, policy_mail_field("from"));
    assert!(
        mail.header_from.contains(&policy_mail_field("from")),
        "{mail:?}"
    );
    assert_eq!(mail.subject, policy_mail_field("subject"));
    assert!(
        mail.body.starts_with(&format!("{TARO} 様")),
        "{}",
        mail.body
    );
    let temp = temporary_password(&mail);

    // Until the ticket is used, the member who remembers after all is not locked out.
    assert_ok(s.verify(TARO, SUPPORT, TARO_LOGIN), false);
    assert_ok(s.verify(TARO, SUPPORT, &temp), true);
    // Redeemed: the temporary password is now the support password.
    assert_denied(s.verify(TARO, SUPPORT, TARO_LOGIN));
    let counts = s.counts();
    assert_eq!((counts.issued, counts.used, counts.live), (1, 1, 0));

    let new = "sakura-kaika-0418";
    assert_eq!(
        s.change(&s.tokens.portal, TARO, SUPPORT, &temp, new),
        (200, json!({"result": "changed"}))
    );
    assert_ok(s.verify(TARO, SUPPORT, new), false);
    assert_denied(s.verify(TARO, SUPPORT, &temp));
    // The connection password still is the login password in use.
    assert_ok(s.verify(TARO, CONNECTION, TARO_LOGIN), false);
    assert_denied(s.verify(TARO, CONNECTION, new));
    assert_eq!(smtp.mails().len(), 1);
}

/// "Forgotten connection password (from 2018-04-18): a member who has
/// forgotten the login ID and the connection password contacts the help
/// desk (there is no self-service recovery for it)."
///
/// A recovery request for the connection purpose gets the same answer as
/// any other, but issues no ticket and sends no mail; the help desk resets
/// it; only the help desk channel may reset, and the non-administrator help
/// desk may not reset the self-service support password.
#[test]
fn forgotten_connection_password_is_help_desk_only() {
    let smtp = SmtpServer::start();
    let s = Serve::start(Options {
        smtp: Some(&smtp),
        ..Default::default()
    });
    let answer = s.recovery_raw(&s.tokens.portal, TARO, CONNECTION);
    let unknown = s.recovery_raw(&s.tokens.portal, "zz999999", SUPPORT);
    assert_eq!(answer.status, 202);
    assert_eq!(answer.body, br#"{"result":"accepted"}"#);
    assert_eq!(
        (answer.status, &answer.body),
        (unknown.status, &unknown.body)
    );

    settle(3 * credshift::courier::PERIOD);
    assert_eq!(smtp.mails(), vec![], "no mail for the connection password");
    let counts = s.counts();
    assert_eq!(
        counts,
        RecoveryCounts::default(),
        "no ticket, no outbox mail"
    );

    // The help desk resets it; the temporary password works for the connection only.
    let temp = temp_of(&s.reset(&s.tokens.helpdesk, TARO, CONNECTION));
    assert_ok(s.verify(TARO, CONNECTION, &temp), true);
    assert_denied(s.verify(TARO, CONNECTION, TARO_LOGIN));
    assert_ok(s.verify(TARO, SUPPORT, TARO_LOGIN), false);
    assert_denied(s.verify(TARO, SUPPORT, &temp));
    // The member then sets a new one with the utility.
    let new = "hikari-line-2018";
    assert_eq!(
        s.change(&s.tokens.utility, TARO, CONNECTION, &temp, new).0,
        200
    );
    assert_ok(s.verify(TARO, CONNECTION, new), false);

    // Only the help desk channel may reset.
    for token in [&s.tokens.portal, &s.tokens.utility, &s.tokens.radius] {
        assert_error(s.reset(token, TARO, CONNECTION), 403, "channel_not_allowed");
    }
    // The support password is self-service: not for the (non-administrator) help desk.
    assert_error(
        s.reset(&s.tokens.helpdesk, TARO, SUPPORT),
        403,
        "not_helpdesk_recoverable",
    );
    assert_ok(s.verify(TARO, SUPPORT, TARO_LOGIN), false);
    assert_error(
        s.reset(&s.tokens.helpdesk, "zz999999", CONNECTION),
        404,
        "unknown_account",
    );
    // Control: this serve does deliver self-service mail (for the support password).
    assert_eq!(smtp.mails(), vec![]);
    assert_accepted(s.recovery(TARO, SUPPORT));
    smtp.wait_for_mail(TARO_MAIL, MAIL_WAIT);
}

/// "A member who has forgotten both the login ID and the member support
/// password contacts the help desk."
///
/// Without the login ID there is no self-service: the help desk identifies
/// the member and its administrator resets the support password; the
/// ordinary help desk token is refused for it (self-service credential).
#[test]
fn forgot_both_login_id_and_support_password_goes_to_the_help_desk() {
    let s = Serve::start(Options::default());
    assert_error(
        s.reset(&s.tokens.helpdesk, TARO, SUPPORT),
        403,
        "not_helpdesk_recoverable",
    );
    assert_ok(s.verify(TARO, SUPPORT, TARO_LOGIN), false);

    let temp = temp_of(&s.reset(&s.tokens.admin, TARO, SUPPORT));
    assert_ok(s.verify(TARO, SUPPORT, &temp), true);
    assert_denied(s.verify(TARO, SUPPORT, TARO_LOGIN));
    // The connection password is not touched.
    assert_ok(s.verify(TARO, CONNECTION, TARO_LOGIN), false);
    assert_denied(s.verify(TARO, CONNECTION, &temp));

    let new = "minato-mirai-21";
    assert_eq!(
        s.change(&s.tokens.portal, TARO, SUPPORT, &temp, new),
        (200, json!({"result": "changed"}))
    );
    assert_ok(s.verify(TARO, SUPPORT, new), false);
    // No self-service ticket was involved.
    assert_eq!(s.counts().issued, 0);
}

/// Before 2018-04-18 the support purpose is answered by the login password,
/// whose recovery is help desk only. ("Until now, the password for logging
/// in to "Online Member Support" and the password for the internet
/// connection were one and the same "login password"", changed "via the
/// "WAKWAK utility (for internet connection)"".)
///
/// With the cutover in the future, a support-portal recovery request is
/// answered like any other but issues nothing; the help desk (no
/// administrator needed) resets the one login password, and the temporary
/// password answers both the support portal and the connection.
#[test]
fn before_the_date_support_recovery_is_help_desk_only() {
    let smtp = SmtpServer::start();
    let s = Serve::start(Options {
        cutover_at: Some("2099-04-18T00:00:00+09:00"),
        smtp: Some(&smtp),
        ..Default::default()
    });
    assert_accepted(s.recovery(TARO, SUPPORT));
    settle(3 * credshift::courier::PERIOD);
    assert_eq!(smtp.mails(), vec![], "no self-service mail before the date");
    assert_eq!(
        s.counts(),
        RecoveryCounts::default(),
        "no ticket before the date"
    );

    // Until the split, the support purpose is changed like the login password: via the utility.
    assert_error(
        s.change(
            &s.tokens.portal,
            TARO,
            SUPPORT,
            TARO_LOGIN,
            "x-new-password-1",
        ),
        403,
        "channel_not_allowed",
    );

    let temp = temp_of(&s.reset(&s.tokens.helpdesk, TARO, SUPPORT));
    assert_ok(s.verify(TARO, SUPPORT, &temp), true);
    assert_ok(s.verify(TARO, CONNECTION, &temp), true);
    assert_denied(s.verify(TARO, SUPPORT, TARO_LOGIN));
    assert_denied(s.verify(TARO, CONNECTION, TARO_LOGIN));

    let new = "one-login-pw-2017";
    assert_eq!(
        s.change(&s.tokens.utility, TARO, SUPPORT, &temp, new),
        (200, json!({"result": "changed"}))
    );
    assert_ok(s.verify(TARO, SUPPORT, new), false);
    assert_ok(s.verify(TARO, CONNECTION, new), false);
}

/// [min, max] of a set of durations.
fn range(samples: &[Duration]) -> (Duration, Duration) {
    (
        *samples.iter().min().expect("samples"),
        *samples.iter().max().expect("samples"),
    )
}

fn overlap(a: &[Duration], b: &[Duration]) -> bool {
    let (a, b) = (range(a), range(b));
    a.0.max(b.0) <= a.1.min(b.1)
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed(), out)
}

/// "A member who has forgotten the member support password but knows the
/// login ID performs password recovery": the page must not become a way to
/// learn which login IDs exist.
///
/// Recovery and a wrong verify answer an unknown login ID with exactly the
/// same status, headers (but `Date`) and bytes as an existing one, and
/// their latencies overlap (no absolute time is asserted). The existing
/// account for verify timing has an argon2id hash with the default
/// parameters and no live ticket (see `known_enumeration_oracles` for the
/// cases that leak); recovery timing spreads over ten accounts so that none
/// exceeds its 3-per-hour limit.
#[test]
fn no_enumeration_same_answer_and_overlapping_timing() {
    let s = Serve::start(Options {
        args: &["--verify-failures", "1000"],
        extra_members: 10,
        ..Default::default()
    });
    // Same answer for a wrong password and an unknown login ID.
    let existing = s.verify_raw(KENJI, SUPPORT, "not-the-password");
    let unknown = s.verify_raw("ab999999", SUPPORT, "not-the-password");
    assert_eq!(existing.status, 401);
    assert_eq!(existing.comparable(), unknown.comparable());

    // Warm up (pool connections, caches), then alternate.
    let _ = s.verify_raw(KENJI, SUPPORT, "warm-up");
    let _ = s.verify_raw("ab999998", SUPPORT, "warm-up");
    let (mut wrong, mut absent) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let (t, r) = timed(|| s.verify_raw(KENJI, SUPPORT, &format!("wrong-{i}")));
        assert_eq!(r.status, 401);
        wrong.push(t);
        let (t, r) = timed(|| s.verify_raw(&format!("zz{i:06}"), SUPPORT, &format!("wrong-{i}")));
        assert_eq!(r.status, 401);
        absent.push(t);
    }
    eprintln!(
        "verify: existing-wrong {:?}, unknown {:?}",
        range(&wrong),
        range(&absent)
    );
    assert!(
        overlap(&wrong, &absent),
        "verify latencies tell existing from unknown: existing-wrong {:?}, unknown {:?}",
        range(&wrong),
        range(&absent)
    );
    assert_ok(s.verify(KENJI, SUPPORT, KENJI_LOGIN), false);

    // Same answer for recovery of an existing and of an unknown login ID.
    let existing = s.recovery_raw(&s.tokens.portal, KENJI, SUPPORT);
    let unknown = s.recovery_raw(&s.tokens.portal, "ab999999", SUPPORT);
    assert_eq!(existing.status, 202);
    assert_eq!(existing.comparable(), unknown.comparable());

    let (mut issued, mut absent) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let login_id = extra_member(i % 10 + 1);
        // Each pair from its own client, as members behind the portal are.
        let client = format!("192.0.2.{i}");
        let (t, r) = timed(|| s.recovery_raw_from(&client, &login_id, SUPPORT));
        assert_eq!(r.status, 202);
        issued.push(t);
        let (t, r) = timed(|| s.recovery_raw_from(&client, &format!("zz{i:06}"), SUPPORT));
        assert_eq!(r.status, 202);
        absent.push(t);
    }
    eprintln!(
        "recovery: existing {:?}, unknown {:?}",
        range(&issued),
        range(&absent)
    );
    assert!(
        overlap(&issued, &absent),
        "recovery latencies tell existing from unknown: existing {:?}, unknown {:?}",
        range(&issued),
        range(&absent)
    );
    // Each of the ten got two tickets (the last one live), KENJI one.
    let counts = s.counts();
    assert_eq!((counts.issued, counts.live), (21, 11));
}

/// Ways to tell an existing login ID from an unknown one that the API had
/// (found while writing `no_enumeration_same_answer_and_overlapping_timing`)
/// and no longer has; each must stay closed:
///
/// 1. A wrong password for an account whose stored hash is cheaper than the
///    dummy argon2id (legacy `{SSHA}`, md5-crypt, bcrypt cost 8, or a policy
///    with cheap `hashing`) is answered much faster than an unknown login ID
///    (`dummy_verify` in src/api/mod.rs always costs a default argon2id).
/// 2. A wrong password for an account with a live recovery ticket costs a
///    second argon2id verify (`Realm::redeem`, src/engine/recovery.rs),
///    and anyone may create a ticket with `/v1/recovery` (always 202).
/// 3. `/v1/verify` with a purpose the policy does not have: an
///    `unknown_purpose` for an existing account, 401 `denied` for an unknown one.
/// 4. `/v1/change` through a channel that may not change the purpose:
///    403 `channel_not_allowed` for an existing account (before any password
///    check), 403 `wrong_current_password` for an unknown one; likewise an
///    `unknown_purpose` vs 403 `wrong_current_password`.
///
/// Fixed by a minimum time for every answer that must not tell (denied
/// verify/change, recovery: `--min-denial-time`), and by deciding purpose and
/// channel before the account is looked up.
#[test]
fn known_enumeration_oracles() {
    let s = Serve::start(Options {
        args: &["--verify-failures", "1000"],
        ..Default::default()
    });
    let mut leaks = Vec::new();
    let mut compare_timing = |what: &str, existing: &str, unknown: &str| {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0..10 {
            a.push(timed(|| s.verify_raw(existing, SUPPORT, &format!("wrong-{i}"))).0);
            b.push(timed(|| s.verify_raw(unknown, SUPPORT, &format!("wrong-{i}"))).0);
        }
        if !overlap(&a, &b) {
            leaks.push(format!(
                "{what}: existing {:?} vs unknown {:?}",
                range(&a),
                range(&b)
            ));
        }
    };
    compare_timing("verify, legacy {SSHA} hash", SABURO, "zz100000");
    assert_accepted(s.recovery(KENJI, SUPPORT));
    compare_timing("verify, live recovery ticket", KENJI, "zz100001");

    let a = s.verify_raw(TARO, "no-such-purpose", "x");
    let b = s.verify_raw("zz100002", "no-such-purpose", "x");
    let (a, b) = ((a.status, a.text()), (b.status, b.text()));
    if a != b {
        leaks.push(format!("verify, unknown purpose: {a:?} vs {b:?}"));
    }
    for (token, purpose) in [
        (&s.tokens.portal, CONNECTION),
        (&s.tokens.portal, "no-such-purpose"),
    ] {
        let a = s.change(token, TARO, purpose, "wrong-current", "some-new-password-1");
        let b = s.change(
            token,
            "zz100003",
            purpose,
            "wrong-current",
            "some-new-password-1",
        );
        if a != b {
            leaks.push(format!("change {purpose} through portal: {a:?} vs {b:?}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "enumeration oracles:\n{}",
        leaks.join("\n")
    );
}

/// The temporary password sent to the base e-mail address is single use,
/// only the newest one works, it expires, and requests are rate limited per
/// account (policy: 3 per hour) and per client identity
/// (`--recovery-per-client`), not per caller token: one person behind the
/// portal cannot switch self-service recovery off for everybody.
#[test]
fn tickets_single_use_rotation_expiry_and_rate_limits() {
    // Rotation and single use, and the per-account limit, with the example's ttl.
    {
        let smtp = SmtpServer::start();
        let s = Serve::start(Options {
            smtp: Some(&smtp),
            ..Default::default()
        });
        assert_accepted(s.recovery(TARO, SUPPORT));
        assert_accepted(s.recovery(TARO, SUPPORT));
        let first = temporary_password(&smtp.wait_for_mail(TARO_MAIL, MAIL_WAIT));
        let second = temporary_password(&smtp.wait_for_mail(TARO_MAIL, MAIL_WAIT));
        assert_ne!(first, second);
        assert_denied(s.verify(TARO, SUPPORT, &first));
        assert_ok(s.verify(TARO, SUPPORT, &second), true);
        let new = "tsukuba-express-05";
        assert_eq!(
            s.change(&s.tokens.portal, TARO, SUPPORT, &second, new).0,
            200
        );
        assert_denied(s.verify(TARO, SUPPORT, &second));
        assert_denied(s.verify(TARO, SUPPORT, &first));
        assert_ok(s.verify(TARO, SUPPORT, new), false);

        // Per account: the fourth request within the hour sends nothing.
        for _ in 0..4 {
            assert_accepted(s.recovery(JIRO, SUPPORT));
        }
        for _ in 0..3 {
            smtp.wait_for_mail(JIRO_MAIL, MAIL_WAIT);
        }
        settle(3 * credshift::courier::PERIOD);
        assert_eq!(smtp.mails_to(JIRO_MAIL).len(), 3, "no 4th mail");
        assert_eq!(smtp.mails_to(TARO_MAIL).len(), 2);
    }

    // Expiry (ttl 2s) and the per-client limit (5 per window).
    let smtp = SmtpServer::start();
    let s = Serve::start(Options {
        ttl: Some("2s"),
        smtp: Some(&smtp),
        args: &["--recovery-per-client", "5"],
        ..Default::default()
    });
    let requested = Instant::now();
    assert_accepted(s.recovery(TARO, SUPPORT));
    let temp = temporary_password(&smtp.wait_for_mail(TARO_MAIL, MAIL_WAIT));
    std::thread::sleep(
        (requested + Duration::from_secs(3)).saturating_duration_since(Instant::now()),
    );
    assert_denied(s.verify(TARO, SUPPORT, &temp));
    assert_ok(s.verify(TARO, SUPPORT, TARO_LOGIN), false);
    // The sweep marks it expired.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.counts().expired != 1 {
        assert!(
            Instant::now() < deadline,
            "ticket not swept: {:?}",
            s.counts()
        );
        settle(Duration::from_millis(200));
    }

    // One person behind the portal asks for five accounts, known or not;
    // the sixth is refused, whichever account it names.
    let attacker = "203.0.113.66";
    for login_id in ["ab000002", "ab000004", "zz000001", "zz000002", KENJI] {
        assert_accepted(s.recovery_from(attacker, login_id, SUPPORT));
    }
    for login_id in [JIRO, "zz000003"] {
        let (status, body) = s.recovery_from(attacker, login_id, SUPPORT);
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"], "rate_limited");
    }
    // The member at another address, through the same portal token, is not held back.
    assert_accepted(s.recovery_from("198.51.100.7", JIRO, SUPPORT));
    smtp.wait_for_mail(JIRO_MAIL, MAIL_WAIT);
    // Without `client`, the token is the client: the portal had made one
    // such request (TARO's), so four more are allowed, then the fifth is refused.
    for login_id in ["ab000002", "ab000004", "zz000001", "zz000002"] {
        assert_accepted(s.recovery(login_id, SUPPORT));
    }
    assert_eq!(s.recovery("zz000003", SUPPORT).0, 429);
    // Another caller has its own.
    let r = s.recovery_raw(&s.tokens.utility, "zz000003", SUPPORT);
    assert_accepted((r.status, r.json()));
}

/// A password change or reset revokes every outstanding recovery ticket
/// (OWASP Forgot Password): a member who asked for a temporary password,
/// then remembered and changed the password through the portal, cannot be
/// taken over by whoever reads the mail later. The mailed temporary password
/// is denied and the member's new password keeps working; the same when the
/// help desk reset the password after the mail went out.
#[test]
fn a_change_or_reset_revokes_the_temporary_password_mailed_before_it() {
    let smtp = SmtpServer::start();
    let s = Serve::start(Options {
        smtp: Some(&smtp),
        ..Default::default()
    });
    // The member changes the password after asking for recovery.
    assert_accepted(s.recovery(TARO, SUPPORT));
    let mailed = temporary_password(&smtp.wait_for_mail(TARO_MAIL, MAIL_WAIT));
    let new = "kinshicho-rain-17";
    assert_eq!(
        s.change(&s.tokens.portal, TARO, SUPPORT, TARO_LOGIN, new).0,
        200
    );
    assert_denied(s.verify(TARO, SUPPORT, &mailed));
    assert_ok(s.verify(TARO, SUPPORT, new), false);
    assert_eq!(s.counts().live, 0, "{:?}", s.counts());

    // The help desk resets the password after the mail went out.
    assert_accepted(s.recovery(JIRO, SUPPORT));
    let mailed = temporary_password(&smtp.wait_for_mail(JIRO_MAIL, MAIL_WAIT));
    let temp = temp_of(&s.reset(&s.tokens.admin, JIRO, SUPPORT));
    assert_denied(s.verify(JIRO, SUPPORT, &mailed));
    assert_ok(s.verify(JIRO, SUPPORT, &temp), true);
    assert_eq!(s.counts().live, 0, "{:?}", s.counts());
}

/// A temporary password, mailed or from the help desk, opens nothing but
/// the change of itself (OWASP Forgot Password): verify answers
/// `403 must_change` to it, never `ok`, so a RADIUS server or the portal
/// cannot take it for a login; the member sets a new password with it; and
/// unused, it dies after the policy's ttl (`selfService.ttl` for the mailed
/// one, `helpdesk.ttl` for the help desk's), for verify and change alike.
#[test]
fn a_temporary_password_only_sets_a_new_one_and_dies_after_its_ttl() {
    const SABURO_MAIL: &str = "saburo@wakwak.example.jp";
    let smtp = SmtpServer::start();
    let s = Serve::start(Options {
        ttl: Some("4s"),
        helpdesk_ttl: Some("4s"),
        smtp: Some(&smtp),
        ..Default::default()
    });
    let must_change = (403, json!({"result": "must_change", "must_change": true}));
    // The help desk's: good for the change only.
    let temp = temp_of(&s.reset(&s.tokens.helpdesk, TARO, CONNECTION));
    for _ in 0..2 {
        assert_eq!(s.verify(TARO, CONNECTION, &temp), must_change);
    }
    let new = "oshiage-sky-0522";
    assert_eq!(
        s.change(&s.tokens.utility, TARO, CONNECTION, &temp, new).0,
        200
    );
    assert_ok(s.verify(TARO, CONNECTION, new), false);
    // Left unused, the help desk's and the mailed one (once redeemed) die.
    let given = Instant::now();
    let unused = temp_of(&s.reset(&s.tokens.helpdesk, JIRO, CONNECTION));
    assert_accepted(s.recovery(SABURO, SUPPORT));
    let mailed = temporary_password(&smtp.wait_for_mail(SABURO_MAIL, MAIL_WAIT));
    let redeemed = Instant::now();
    assert_eq!(s.verify(SABURO, SUPPORT, &mailed), must_change);
    std::thread::sleep(
        (given.max(redeemed) + Duration::from_secs(5)).saturating_duration_since(Instant::now()),
    );
    assert_denied(s.verify(JIRO, CONNECTION, &unused));
    assert_denied(s.verify(SABURO, SUPPORT, &mailed));
    for (token, login_id, purpose, dead) in [
        (&s.tokens.utility, JIRO, CONNECTION, &unused),
        (&s.tokens.portal, SABURO, SUPPORT, &mailed),
    ] {
        assert_error(
            s.change(token, login_id, purpose, dead, "a-brand-new-one-1"),
            403,
            "wrong_current_password",
        );
    }
}

/// A help-desk reset shows a password once and must leave no copy behind:
/// its answer (like every API answer) carries `Cache-Control: no-store`; a
/// closed account gets no password; the audit log names the token that did
/// the reset; and one token may only make `--resets-per-caller` resets per
/// window, so a stolen help-desk token cannot reset the realm.
#[test]
fn help_desk_resets_are_not_cached_are_audited_by_token_and_are_limited() {
    let s = Serve::start(Options {
        args: &["--resets-per-caller", "3"],
        ..Default::default()
    });
    let reset = |login_id: &str| {
        http::post_raw(
            s.port,
            "/v1/helpdesk/reset",
            &s.tokens.helpdesk,
            &json!({"realm": REALM, "login_id": login_id, "purpose": CONNECTION}),
        )
    };
    let r = reset(TARO);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v = http::post_raw(
        s.port,
        "/v1/verify",
        &s.tokens.radius,
        &json!({"realm": REALM, "login_id": JIRO, "purpose": CONNECTION, "password": "x"}),
    );
    assert_eq!(v.header("cache-control"), Some("no-store"));
    let trail = block_on(async {
        let store = Store::open(&s.store_url).await.expect("store");
        let t = store.audit_trail(REALM, TARO).await.expect("audit");
        // Close Saburo's account for what follows.
        let saburo = store
            .find_account(REALM, SABURO)
            .await
            .expect("find")
            .expect("Saburo");
        store
            .set_account_state(
                &saburo,
                AccountState::Closed,
                "test",
                jiff::Timestamp::now(),
            )
            .await
            .expect("close");
        store.close().await;
        t
    });
    let by_token: Vec<_> = trail
        .iter()
        .filter(|e| e.action == "credential.reset" && e.actor == "helpdesk")
        .map(|e| e.detail.clone())
        .collect();
    assert_eq!(by_token, vec![Some("by=helpdesk".to_owned())], "{trail:?}");
    let closed = reset(SABURO);
    assert_eq!(
        (closed.status, closed.json()["error"].clone()),
        (409, json!("account_closed"))
    );
    assert!(closed.json().get("temporary_password").is_none());
    // Three resets in the window (the closed account's counts too); the fourth is refused.
    assert_eq!(reset(JIRO).status, 200);
    let refused = reset(JIRO);
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.json()["error"], "rate_limited");
    // Another token has its own budget.
    assert_eq!(s.reset(&s.tokens.admin, JIRO, CONNECTION).0, 200);
}

/// Rotating the `client` identity buys no more guesses at one account (NIST
/// SP 800-63B: consecutive failures limited to at most 100): past
/// `--verify-failures` consecutive failures of an account and purpose, from
/// any clients, each further check waits twice as long after the last
/// failure (1 s, 2 s, …), and at `--account-failures` nothing more is
/// checked, not even the right password from a new client, until the
/// streak ends. Recovery ends it: the help desk's reset (connection) and
/// the mailed temporary password (support), which is still checked at the
/// ceiling because it is how the member gets back in. Held-back guesses are
/// not counted: they checked nothing.
#[test]
fn rotating_clients_buys_no_more_guesses_and_recovery_ends_the_streak() {
    let smtp = SmtpServer::start();
    let s = Serve::start(Options {
        smtp: Some(&smtp),
        args: &["--verify-failures", "2", "--account-failures", "5"],
        ..Default::default()
    });
    let client = std::sync::atomic::AtomicUsize::new(0);
    let guess = |login_id: &str, purpose: &str, password: &str| {
        let n = client.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        s.verify_from(login_id, purpose, password, &format!("198.51.100.{n}"))
    };
    let wait = |d: f64| std::thread::sleep(Duration::from_secs_f64(d));
    // Each member's streak in its own thread, every guess from a new client.
    std::thread::scope(|scope| {
        for (login_id, purpose, right) in [
            (TARO, CONNECTION, TARO_LOGIN),
            (JIRO, SUPPORT, "jiro-secret-77"),
        ] {
            let guess = &guess;
            scope.spawn(move || {
                assert_denied(guess(login_id, purpose, "guess-1"));
                assert_denied(guess(login_id, purpose, "guess-2"));
                // Two in a row: the next check waits 1 s, then 2 s, then 4 s.
                wait(1.1);
                assert_denied(guess(login_id, purpose, "guess-3"));
                wait(2.1);
                assert_denied(guess(login_id, purpose, "guess-4"));
                // Within the 4 s, even the right password is held back.
                assert_denied(guess(login_id, purpose, right));
                wait(4.1);
                assert_denied(guess(login_id, purpose, "guess-5"));
                // At the ceiling, however long one waits (past the 8 s the
                // next step would have been), nothing is checked.
                wait(8.5);
                assert_denied(guess(login_id, purpose, right));
            });
        }
    });
    let (_, metrics) = http::get(s.port, "/metrics");
    let throttled = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "credshift_api_requests_total{endpoint=\"verify\",outcome=\"throttled\"} ",
            )
        })
        .map(|v| v.trim().to_owned());
    assert_eq!(throttled.as_deref(), Some("4"), "{metrics}");
    // The help desk ends Taro's streak; the mailed password, Jiro's.
    let temp = temp_of(&s.reset(&s.tokens.helpdesk, TARO, CONNECTION));
    assert_ok(guess(TARO, CONNECTION, &temp), true);
    assert_accepted(s.recovery(JIRO, SUPPORT));
    let mailed = temporary_password(&smtp.wait_for_mail(JIRO_MAIL, MAIL_WAIT));
    assert_ok(guess(JIRO, SUPPORT, &mailed), true);
    assert_eq!(
        s.change(&s.tokens.portal, JIRO, SUPPORT, &mailed, "meguro-river-88")
            .0,
        200
    );
    assert_ok(guess(JIRO, SUPPORT, "meguro-river-88"), false);
}

/// Failed-verify throttling is keyed by (account, purpose, client): after
/// `--verify-failures 3` wrong passwords from the client "attacker", even
/// the right password from "attacker" is denied, while the member at home
/// still gets in. The trade-off: an attacker can only throttle the client
/// identity it uses (so it cannot lock the member out everywhere), and in
/// exchange an attacker who can vary the client identity gets more guesses;
/// callers must therefore pass a client identity they observed (address,
/// calling-station id), not one the attacker chooses.
#[test]
fn verify_throttling_is_per_client() {
    let s = Serve::start(Options {
        args: &["--verify-failures", "3"],
        ..Default::default()
    });
    for i in 0..3 {
        assert_denied(s.verify_from(TARO, CONNECTION, &format!("guess-{i}"), "attacker"));
    }
    assert_denied(s.verify_from(TARO, CONNECTION, TARO_LOGIN, "attacker"));
    assert_ok(
        s.verify_from(TARO, CONNECTION, TARO_LOGIN, "member-home"),
        false,
    );
    // Per purpose too: the support portal is not throttled for "attacker".
    assert_ok(s.verify_from(TARO, SUPPORT, TARO_LOGIN, "attacker"), false);
    // A wrong current password on /v1/change counts against the same key.
    assert_error(
        s.call(
            "/v1/change",
            &s.tokens.utility,
            json!({"realm": REALM, "login_id": TARO, "purpose": CONNECTION,
                   "current_password": TARO_LOGIN, "new_password": "whatever-new-1",
                   "client": "attacker"}),
        ),
        403,
        "wrong_current_password",
    );
}

/// A burst of wrong guesses sent at once from one client is throttled like
/// guesses sent one by one: with `--verify-failures 3`, of 12 concurrent
/// guesses exactly 3 reach the hash check and 9 are throttled (the checks of
/// one key take turns, each reading the count the one before it wrote), and
/// the right password from that client is then denied too.
#[test]
fn a_burst_of_concurrent_guesses_gets_no_more_checks_than_one_by_one() {
    let s = Serve::start(Options {
        args: &["--verify-failures", "3"],
        ..Default::default()
    });
    let barrier = std::sync::Barrier::new(12);
    std::thread::scope(|scope| {
        for i in 0..12 {
            let (s, barrier) = (&s, &barrier);
            scope.spawn(move || {
                barrier.wait();
                assert_denied(s.verify_from(TARO, CONNECTION, &format!("burst-{i}"), "attacker"));
            });
        }
    });
    let (_, metrics) = http::get(s.port, "/metrics");
    let count = |outcome: &str| -> f64 {
        let prefix =
            format!("credshift_api_requests_total{{endpoint=\"verify\",outcome=\"{outcome}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map_or(0.0, |v| v.trim().parse().expect("a number"))
    };
    assert_eq!(
        (count("denied"), count("throttled")),
        (3.0, 9.0),
        "checked vs throttled guesses of the burst:\n{metrics}"
    );
    assert_denied(s.verify_from(TARO, CONNECTION, TARO_LOGIN, "attacker"));
    assert_ok(
        s.verify_from(TARO, CONNECTION, TARO_LOGIN, "member-home"),
        false,
    );
}

/// Every column of every row of every table, as lossy UTF-8 and as hex.
fn dump_sqlite(url: &str) -> Vec<(String, String)> {
    use sqlx::{Connection as _, Row as _};
    block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(url)
            .await
            .expect("open SQLite");
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&mut conn)
                .await
                .expect("tables");
        for t in [
            "accounts",
            "credentials",
            "credential_history",
            "recovery_tickets",
            "mail_outbox",
            "cutover_checkpoints",
            "audit_log",
            "rate_limits",
        ] {
            assert!(tables.iter().any(|x| x == t), "no table {t}: {tables:?}");
        }
        let mut out = Vec::new();
        for t in &tables {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM \"{t}\"")))
                .fetch_all(&mut conn)
                .await
                .expect("select");
            for (n, row) in rows.iter().enumerate() {
                for i in 0..row.len() {
                    // Unchecked: SQLite hands any value out as bytes (numbers as text).
                    let v: Option<Vec<u8>> = row.try_get_unchecked(i).expect("column");
                    let v = v.unwrap_or_default();
                    let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
                    out.push((
                        format!("{t}[{n}].{i}"),
                        format!("{} {hex}", String::from_utf8_lossy(&v)),
                    ));
                }
            }
        }
        conn.close().await.expect("close");
        out
    })
}

/// After a self-service recovery (mail, redeem, change) and help-desk
/// resets in one serve, no secret is anywhere but in the mail: not in the
/// debug log, not in /metrics, not in any row of any table (nor the raw
/// database files): not the old password, the mailed and help-desk
/// temporary passwords, the new passwords, the bearer tokens, the outbox key.
#[test]
fn no_plaintext_secret_anywhere_after_recovery_and_reset() {
    let smtp = SmtpServer::start();
    let s = Serve::start(Options {
        smtp: Some(&smtp),
        log: Some("debug"),
        ..Default::default()
    });
    assert_accepted(s.recovery(TARO, SUPPORT));
    let mailed = temporary_password(&smtp.wait_for_mail(TARO_MAIL, MAIL_WAIT));
    assert_ok(s.verify(TARO, SUPPORT, &mailed), true);
    let new_support = "kyoto-gion-matsuri";
    assert_eq!(
        s.change(&s.tokens.portal, TARO, SUPPORT, &mailed, new_support)
            .0,
        200
    );
    let desk = temp_of(&s.reset(&s.tokens.helpdesk, TARO, CONNECTION));
    assert_ok(s.verify(TARO, CONNECTION, &desk), true);
    let new_connection = "nagoya-castle-1612";
    assert_eq!(
        s.change(&s.tokens.utility, TARO, CONNECTION, &desk, new_connection)
            .0,
        200
    );
    let admin_temp = temp_of(&s.reset(&s.tokens.admin, JIRO, SUPPORT));
    assert_ok(s.verify(JIRO, SUPPORT, &admin_temp), true);
    // The mail is sent and its sealed payload erased before we look.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.counts().mail_sent != 1 {
        assert!(Instant::now() < deadline, "mail not marked sent");
        settle(Duration::from_millis(100));
    }

    let key_hex: String = s
        .outbox_key_bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut secrets: Vec<(&str, String)> = vec![
        ("old password", TARO_LOGIN.to_owned()),
        ("mailed temporary password", mailed),
        ("help-desk temporary password", desk),
        ("administrator temporary password", admin_temp),
        ("new support password", new_support.to_owned()),
        ("new connection password", new_connection.to_owned()),
        ("outbox key", s.outbox_key.clone()),
        ("outbox key (hex)", key_hex),
    ];
    for t in s.tokens.all() {
        secrets.push(("bearer token", t.to_owned()));
    }

    let log = s.log();
    assert!(log.contains("DEBUG"), "serve ran with --log debug:\n{log}");
    let (status, metrics) = http::get(s.port, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("credshift_api_requests"), "{metrics}");
    let rows = dump_sqlite(&s.store_url);
    assert!(rows.len() > 50, "the store has rows: {}", rows.len());
    let mut files = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", s.db.display()));
        if let Ok(bytes) = std::fs::read(&path) {
            files.push((path.display().to_string(), bytes));
        }
    }

    // The scan sees what is there: non-secret values of the same flows.
    assert!(log.contains(TARO), "the log names the member");
    assert!(rows.iter().any(|(_, t)| t.contains(TARO_MAIL)));
    assert!(rows.iter().any(|(_, t)| t.contains("recovery.redeem")));
    assert!(files.iter().any(|(_, b)| {
        b.windows(TARO_MAIL.len())
            .any(|w| w == TARO_MAIL.as_bytes())
    }));

    let mut found = Vec::new();
    for (what, secret) in &secrets {
        if log.contains(secret.as_str()) {
            found.push(format!("{what} in serve's stderr"));
        }
        if metrics.contains(secret.as_str()) {
            found.push(format!("{what} in /metrics"));
        }
        for (cell, text) in &rows {
            if text.contains(secret.as_str()) {
                found.push(format!("{what} in {cell}"));
            }
        }
        for (path, bytes) in &files {
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                found.push(format!("{what} in the file {path}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "plaintext secrets found:\n{}",
        found.join("\n")
    );
}

/// GET /openapi.json serves api/openapi.json as committed.
/// The description clients are generated from agrees with the server:
/// it is served as committed; every documented path answers its
/// documented method (and no other); every POST accepts a body with just
/// the documented required fields, refuses one that lacks any of them,
/// and accepts the documented optional ones; a path it does not list does
/// not exist.
#[test]
fn openapi_describes_the_routes_and_request_fields_the_server_has() {
    let s = Serve::start(Options::default());
    let r = http::get_raw(s.port, "/openapi.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let committed = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("api/openapi.json"))
        .expect("api/openapi.json");
    assert!(
        r.body == committed,
        "served document differs from api/openapi.json"
    );
    let doc = r.json();
    // A schema, or the one its `$ref` names; of a nullable one, the
    // alternative that is not null.
    let resolve = |schema: &Value| {
        let schema = schema["oneOf"]
            .as_array()
            .and_then(|of| of.iter().find(|s| s["type"] != "null"))
            .unwrap_or(schema);
        match schema["$ref"].as_str() {
            Some(name) => doc
                .pointer(name.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("{name} is not in the document"))
                .clone(),
            None => schema.clone(),
        }
    };
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/v1/verify",
        "/v1/change",
        "/v1/recovery",
        "/v1/helpdesk/reset",
        "/v1/radius/authenticate",
    ] {
        assert!(paths.contains_key(path), "{path} missing from openapi.json");
    }
    let send = |method: &str, path: &str, body: Option<&Value>| {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let r = http::request(s.port, method, path, &s.tokens.portal, bytes.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        r.status
    };
    for (path, item) in paths {
        let methods = item.as_object().expect("path item");
        for method in ["get", "post"] {
            let upper = method.to_uppercase();
            let Some(operation) = methods.get(method) else {
                let body = (method == "post").then(|| json!({}));
                assert_eq!(
                    send(&upper, path, body.as_ref()),
                    405,
                    "{upper} {path} is not documented, so it must not be served"
                );
                continue;
            };
            if method == "get" {
                let status = send("GET", path, None);
                assert!(status != 404 && status != 405, "GET {path}: {status}");
                continue;
            }
            let schema =
                &resolve(&operation["requestBody"]["content"]["application/json"]["schema"]);
            // The required query parameters, each with a plausible value.
            let query: Vec<String> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query" && p["required"] == true)
                .filter_map(|p| p["name"].as_str())
                .map(|n| {
                    let v = match n {
                        "realm" => REALM,
                        "purpose" => CONNECTION,
                        _ => "x",
                    };
                    format!("{n}={v}")
                })
                .collect();
            let path = &if query.is_empty() {
                path.clone()
            } else {
                format!("{path}?{}", query.join("&"))
            };
            let required: Vec<&str> = schema["required"]
                .as_array()
                .unwrap_or_else(|| panic!("POST {path}: no required fields documented"))
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let properties = schema["properties"].as_object().expect("properties");
            // A plausible value of each field: shape, not meaning, is tested.
            let value = |name: &str| {
                // A RADIUS attribute: {"type": …, "value": [...]}.
                if resolve(&properties[name])["properties"]["value"]["type"] == "array" {
                    json!({ "type": "string", "value": ["x"] })
                } else {
                    json!(match name {
                        "realm" => REALM,
                        "purpose" => SUPPORT,
                        _ => "x",
                    })
                }
            };
            let minimal: serde_json::Map<String, Value> = required
                .iter()
                .map(|n| ((*n).to_owned(), value(n)))
                .collect();
            let status = send("POST", path, Some(&Value::Object(minimal.clone())));
            assert!(
                status != 422 && status != 404 && status != 405,
                "POST {path} with the documented required fields {required:?}: {status}"
            );
            for missing in &required {
                let mut body = minimal.clone();
                body.remove(*missing);
                assert_eq!(
                    send("POST", path, Some(&Value::Object(body))),
                    422,
                    "POST {path} without {missing}, which the description requires"
                );
            }
            let mut full = minimal.clone();
            for name in properties.keys() {
                full.entry(name.clone()).or_insert_with(|| value(name));
            }
            let status = send("POST", path, Some(&Value::Object(full)));
            assert!(
                status != 422,
                "POST {path} with every documented field: {status}"
            );
        }
    }
    assert_eq!(send("POST", "/v1/verify/more", Some(&json!({}))), 404);
    assert_eq!(send("GET", "/v2/verify", None), 404);
}

/// A counter of the API's `/metrics`, by its full name with labels.
fn api_counter(s: &Serve, name: &str) -> u64 {
    let (_, metrics) = http::get(s.port, "/metrics");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}"))
}

/// Every answer that must not tell takes the same hashing work, at the
/// policy's parameters, whatever the account holds: no account at all, a
/// wrong password, a credential the account does not have (nobody was
/// imported with an FTP password), and a temporary password waiting in the
/// member's mail. Each costs exactly one hash of 19 MiB × 2 passes (the
/// example policy's argon2id), counted by the pool in blocks, not in time.
#[test]
fn every_denied_answer_costs_one_hash_at_the_policys_parameters() {
    const RUNS: &str = "credshift_api_hash_runs_total";
    const BLOCKS: &str = "credshift_api_hash_argon2_blocks_total";
    const ONE_HASH: u64 = 19_456 * 2;
    let smtp = SmtpServer::start();
    let s = Serve::start(Options {
        smtp: Some(&smtp),
        ..Default::default()
    });
    let work = |what: &str, call: &dyn Fn() -> (u16, Value), status: u16| {
        let (runs, blocks) = (api_counter(&s, RUNS), api_counter(&s, BLOCKS));
        let (got, body) = call();
        assert_eq!(got, status, "{what}: {body}");
        let spent = (
            api_counter(&s, RUNS) - runs,
            api_counter(&s, BLOCKS) - blocks,
        );
        eprintln!("{what}: {spent:?}");
        spent
    };
    let one = (1, ONE_HASH);
    let unknown = "ab999999";
    assert_eq!(
        work("no account", &|| s.verify(unknown, SUPPORT, "guess-1"), 401),
        one
    );
    assert_eq!(
        work(
            "wrong password",
            &|| s.verify(KENJI, SUPPORT, "guess-2"),
            401
        ),
        one
    );
    assert_eq!(
        work(
            "no such credential",
            &|| s.verify(KENJI, "ftp", "guess-3"),
            401
        ),
        one
    );
    assert_eq!(
        work(
            "no account, no such credential",
            &|| s.verify(unknown, "ftp", "guess-4"),
            401
        ),
        one
    );
    // Asking for recovery hashes nothing slow, whether the account exists or not.
    assert_eq!(
        work("recovery", &|| s.recovery(KENJI, SUPPORT), 202),
        (0, 0)
    );
    assert_eq!(
        work(
            "recovery, no account",
            &|| s.recovery(unknown, SUPPORT),
            202
        ),
        (0, 0)
    );
    let temp = temporary_password(&smtp.wait_for_mail("kenji@wakwak.example.jp", MAIL_WAIT));
    assert_eq!(
        work(
            "wrong password, ticket live",
            &|| s.verify(KENJI, SUPPORT, "guess-5"),
            401
        ),
        one
    );
    let change = |login_id| {
        s.change(
            &s.tokens.portal,
            login_id,
            SUPPORT,
            "guess-6",
            "a-new-password-77",
        )
    };
    assert_eq!(work("change, wrong current", &|| change(KENJI), 403), one);
    assert_eq!(work("change, no account", &|| change("ab999998"), 403), one);
    // The right temporary password is told apart anyway (it must be
    // changed); using it hashes it into the credential.
    let used = work(
        "temporary password",
        &|| s.verify(KENJI, SUPPORT, &temp),
        403,
    );
    assert_eq!(used, (2, 2 * ONE_HASH));
}

/// New passwords follow NIST SP 800-63B-4. By default a password must have
/// at least 15 characters (it is the only factor); it is refused when it
/// is a commonly used or breached one, from a list of 120,000, whatever
/// its case and whether typed in full width; and when it is the login ID.
/// The most telling reason is given first.
#[test]
fn new_passwords_are_long_not_common_not_the_login_id_in_any_width() {
    let s = Serve::start(Options::default());
    let change = |new: &str| {
        let (status, body) = s.change(&s.tokens.portal, TARO, SUPPORT, TARO_LOGIN, new);
        (status, body["error"].as_str().unwrap_or("").to_owned())
    };
    let refused = |code: &str| (422, code.to_owned());
    assert_eq!(change("ｐａｓｓｗｏｒｄ"), refused("blocklisted"));
    assert_eq!(change("PassWord"), refused("blocklisted"));
    assert_eq!(
        change("1qaz2wsx3edc4rfv"),
        refused("blocklisted"),
        "16 characters, and common"
    );
    assert_eq!(
        change("ＺＸＣＶＢＮＭ１２３４５６７８"),
        refused("blocklisted")
    );
    assert_eq!(change("AB000001"), refused("same_as_login_id"));
    assert_eq!(change("ａｂ０００００１"), refused("same_as_login_id"));
    assert_eq!(
        change("kinshicho-17"),
        refused("too_short"),
        "12 characters"
    );
    assert_eq!(
        change("shinjuku-rain-1"),
        (200, String::new()),
        "15 characters"
    );
    // Set in full width, it verifies however the member types it.
    let (status, body) = s.change(
        &s.tokens.portal,
        TARO,
        SUPPORT,
        "shinjuku-rain-1",
        "ｓｈｉｂｕｙａ－ｎｉｇｈｔ－２２",
    );
    assert_eq!(status, 200, "{body}");
    assert_ok(s.verify(TARO, SUPPORT, "shibuya-night-22"), false);
    assert_ok(
        s.verify(TARO, SUPPORT, "ｓｈｉｂｕｙａ－ｎｉｇｈｔ－２２"),
        false,
    );
}

/// What `credshift plan` on the manifests `s` serves prints to stderr (it must succeed).
fn plan_stderr(s: &Serve) -> String {
    files_cmd(s, "plan").1
}

/// `credshift CMD -f` on the serve's manifests and store: stdout, stderr.
fn files_cmd(s: &Serve, cmd: &str) -> (String, String) {
    let manifests = s.db.parent().expect("dir").join("manifests");
    let out = support::credshift()
        .args([cmd, "-f"])
        .arg(&manifests)
        .args(["--store", &s.store_url])
        .output()
        .expect("run credshift");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// Deleting or pruning a cutover mid-backfill never locks a member out.
/// GitOps prunes the CredentialCutover while its backfill is half done,
/// and `serve` is given the policy alone: the store remembers the split it
/// started, so the purposes stay in dual read. A member the backfill
/// reached answers with the new credentials (and a change lands in them);
/// one it had not reached still answers with the old login password, on
/// the support portal and on the connection. `plan` warns of the split.
#[test]
fn a_cutover_pruned_mid_backfill_keeps_every_member_able_to_log_in() {
    const CUTOVER: &str = "default/split-login-2018";
    let prune_mid_backfill = |manifests: &Path, store_url: &str| {
        std::fs::remove_file(manifests.join("cutover.yaml")).expect("prune the cutover");
        block_on(async {
            let store = Store::open(store_url).await.expect("open store");
            let targets = ["support".to_owned(), "connection".to_owned()];
            let split = credshift::store::SplitRef {
                cutover: CUTOVER,
                realm: REALM,
                source: "login",
                targets: &targets,
            };
            let now = jiff::Timestamp::now();
            let at = now - jiff::SignedDuration::from_hours(1);
            store.start_cutover(split, at, now).await.expect("start");
            // Two of the six members, in account order: Taro and Hanako.
            store
                .backfill_batch(split, 2, now)
                .await
                .expect("one batch");
            store.close().await;
        });
    };
    let s = Serve::start(Options {
        cutover_at: Some("2099-01-01T00:00:00+09:00"),
        before_serve: Some(&prune_mid_backfill),
        ..Default::default()
    });
    // Reached by the backfill: the copies answer, and a change lands in them.
    assert_ok(s.verify(TARO, SUPPORT, TARO_LOGIN), false);
    assert_ok(s.verify(TARO, CONNECTION, TARO_LOGIN), false);
    let new = "kinshicho-rain-17";
    assert_eq!(
        s.change(&s.tokens.portal, TARO, SUPPORT, TARO_LOGIN, new).0,
        200
    );
    assert_ok(s.verify(TARO, SUPPORT, new), false);
    assert_ok(s.verify(TARO, CONNECTION, TARO_LOGIN), false);
    // Not reached: the login password still answers for both.
    assert_ok(s.verify(KENJI, SUPPORT, KENJI_LOGIN), false);
    assert_ok(s.verify(KENJI, CONNECTION, KENJI_LOGIN), false);
    assert_denied(s.verify(KENJI, SUPPORT, "kenji-wrong-guess"));
    let log = s.log();
    assert!(log.contains(CUTOVER) && log.contains("dual read"), "{log}");

    let stderr = plan_stderr(&s);
    assert!(
        stderr.contains(&format!(
            "warning: realm {REALM}: cutover {CUTOVER} is under way"
        )),
        "{stderr}"
    );
}

/// A cutover declared (scheduled) and then pruned before `at` leaves no
/// member denied: the store remembers the split it was declared with, so
/// `serve` keeps answering both purposes with the login password, and
/// `plan` says why.
#[test]
fn a_cutover_pruned_before_it_started_keeps_the_login_password_answering() {
    let prune = |manifests: &Path, _: &str| {
        std::fs::remove_file(manifests.join("cutover.yaml")).expect("prune the cutover");
    };
    let s = Serve::start(Options {
        cutover_at: Some("2099-01-01T00:00:00+09:00"),
        before_serve: Some(&prune),
        ..Default::default()
    });
    for purpose in [SUPPORT, CONNECTION] {
        assert_ok(s.verify(TARO, purpose, TARO_LOGIN), false);
        assert_ok(s.verify(KENJI, purpose, KENJI_LOGIN), false);
    }
    assert_denied(s.verify(KENJI, SUPPORT, "kenji-wrong-guess"));
    let log = s.log();
    assert!(
        log.contains("is scheduled in the store")
            && !log.contains("purpose support-portal is routed")
            && !log.contains("purpose connection is routed"),
        "{log}"
    );
    let stderr = plan_stderr(&s);
    assert!(
        stderr.contains(&format!(
            "warning: realm {REALM}: cutover default/split-login-2018 is scheduled in the store for 2098-12-31T15:00:00Z"
        )),
        "{stderr}"
    );
    // `apply` on the same files routes as serve does.
    let (stdout, _) = files_cmd(&s, "apply");
    for purpose in [SUPPORT, CONNECTION] {
        assert!(
            stdout.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.get(2) == Some(&purpose)
                    && cols.get(3) == Some(&"login")
                    && cols.get(4) == Some(&"Source")
            }),
            "{stdout}"
        );
    }
}

/// A policy whose routing points at a credential the members lack, and
/// that no cutover creates, is reported rather than quietly denying them:
/// the six demo members imported, then the policy applied without its
/// cutover (synced before it, and the store has never seen the cutover).
/// `serve` logs each such purpose at start and `plan` warns, each with the
/// count of accounts affected.
#[test]
fn a_policy_routing_to_a_credential_members_lack_is_reported_with_the_count() {
    let s = Serve::start(Options {
        omit_cutover: true,
        ..Default::default()
    });
    let expected = [
        "purpose support-portal is routed to credential support, which 6 of 6 accounts lack",
        "purpose connection is routed to credential connection, which 6 of 6 accounts lack",
    ];
    let log = s.log();
    for line in expected {
        assert!(log.contains(line), "{line}\n{log}");
    }
    // Mail is held by every member: not reported.
    assert!(!log.contains("purpose mail is routed"), "{log}");
    let stderr = plan_stderr(&s);
    for line in expected {
        assert!(
            stderr.contains(&format!("warning: realm {REALM}: {line}")),
            "{stderr}"
        );
    }
}

/// Recovery mail that real mail servers accept: a `Message-ID` in the
/// sender's domain, a `Date`, MIME 1.0 with a UTF-8 text body and the
/// Japanese subject in encoded words. It goes through a submission relay
/// that demands STARTTLS and then AUTH (as on port 587), and through one
/// with implicit TLS (as on port 465), trusting the relay's CA. With a wrong
/// relay password the mail waits for a retry, and no log shows the password.
#[test]
fn recovery_mail_is_well_formed_and_goes_through_starttls_or_implicit_tls_with_auth() {
    let password = "relay-secret-7f3a9c";
    for security in [
        Security::StartTls {
            user: "credshift".into(),
            password: password.into(),
        },
        Security::ImplicitTls {
            user: "credshift".into(),
            password: password.into(),
        },
    ] {
        // Named without the relay password, which no message may show.
        let mode = match security {
            Security::StartTls { .. } => "STARTTLS",
            _ => "implicit TLS",
        };
        let smtp = SmtpServer::start_secured(security);
        let s = Serve::start(Options {
            smtp: Some(&smtp),
            ..Default::default()
        });
        assert_accepted(s.recovery(TARO, SUPPORT));
        let mail = smtp.wait_for_mail(TARO_MAIL, MAIL_WAIT);
        let what = format!("{mode}: {mail:#?}");
        assert!(mail.tls, "encrypted: {what}");
        assert_eq!(mail.login.as_deref(), Some("credshift"), "{what}");
        let domain = mail
            .header_from
            .rsplit('@')
            .next()
            .map(|d| d.trim_end_matches('>'))
            .unwrap_or_default();
        assert!(!domain.is_empty(), "{what}");
        assert!(
            mail.message_id.starts_with('<') && mail.message_id.ends_with(&format!("@{domain}>")),
            "a Message-ID in the sender's domain: {what}"
        );
        assert!(
            jiff::fmt::rfc2822::parse(&mail.date).is_ok(),
            "an RFC 5322 Date: {what}"
        );
        assert_eq!(mail.mime_version, "1.0", "{what}");
        assert!(
            mail.content_type.starts_with("text/plain")
                && mail
                    .content_type
                    .to_ascii_lowercase()
                    .replace('"', "")
                    .contains("charset=utf-8"),
            "{what}"
        );
        assert!(
            mail.raw_subject.is_ascii() && mail.raw_subject.contains("=?utf-8?"),
            "the subject in RFC 2047 encoded words: {what}"
        );
        assert_eq!(
            mail.subject,
            "【WAKWAK】仮パスワードのお知らせ / Your temporary password"
        );
        assert!(!s.log().contains(password), "the relay password in no log");
    }

    // The relay refuses a wrong password: the mail is kept for a retry.
    let smtp = SmtpServer::start_secured(Security::StartTls {
        user: "credshift".into(),
        password: password.into(),
    });
    let wrong = smtp.url().replace(password, "not-the-relay-password");
    let s = Serve::start(Options {
        smtp: Some(&smtp),
        smtp_url: Some(&wrong),
        ..Default::default()
    });
    assert_accepted(s.recovery(TARO, SUPPORT));
    let deadline = Instant::now() + MAIL_WAIT;
    while !s.log().contains("recovery mail not delivered") {
        assert!(
            Instant::now() < deadline,
            "a failed delivery is logged:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let counts = s.counts();
    assert_eq!(
        (counts.mail_pending, counts.mail_sent, counts.mail_dead),
        (1, 0, 0),
        "kept for a retry: {counts:?}"
    );
    assert!(smtp.mails().is_empty());
    let log = s.log();
    assert!(
        !log.contains("not-the-relay-password") && !log.contains(password),
        "no password in the log:\n{log}"
    );
}

/// A client generated from the OpenAPI description would read every answer
/// right: schemathesis (a property-based OpenAPI tester, run unmodified
/// with every check on) sends what the description allows and what it
/// forbids to the real server, and finds nothing the description does not
/// say: no undocumented status, no body outside its schema, no invalid
/// request accepted, no valid one refused, no missing token let through.
#[test]
fn schemathesis_with_every_check_finds_no_failure() {
    let s = Serve::start(Options::default());
    let scripts = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .expect("python3");
    let bin = PathBuf::from(String::from_utf8_lossy(&scripts.stdout).trim()).join("schemathesis");
    let work = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(&bin)
        .current_dir(work.path())
        .arg("run")
        .arg(format!("http://127.0.0.1:{}/openapi.json", s.port))
        .args(["--checks", "all", "--max-examples", "40", "--seed", "2"])
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", s.tokens.portal))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (pip install schemathesis==4.32.5; .ci/run does)",
                bin.display()
            )
        });
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}"
    );
    assert!(
        report.contains("generated") && !report.contains("unique failures"),
        "{report}"
    );
}
