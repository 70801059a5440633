//! The clients: one thread per member, each checking every answer it gets
//! against what the README documents, in the role it plays.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::population::Member;
use crate::support::http;
use crate::support::smtp::SmtpServer;
use crate::support::tokens::{Tokens, random_hex};
use crate::{BURST, CONNECTION, FAILURES, REALM, SUPPORT};

/// One answer a client got.
#[derive(Debug, Clone)]
pub struct Call {
    pub endpoint: &'static str,
    pub status: u16,
    /// `result` or `error` of the JSON answer.
    pub code: String,
    pub started: Instant,
    pub took: Duration,
}

/// What a client checks an answer against.
#[derive(Debug, Clone, Copy)]
pub enum Want {
    Ok {
        must_change: bool,
    },
    Denied,
    Changed,
    Accepted,
    /// A help-desk reset: a temporary password, to be changed.
    Reset,
    Error(u16, &'static str),
}

impl Want {
    pub fn matches(self, status: u16, body: &Value) -> bool {
        match self {
            Want::Ok { must_change: false } => {
                (status, body) == (200, &json!({"result": "ok", "must_change": false}))
            }
            Want::Ok { must_change: true } => {
                (status, body) == (403, &json!({"result": "must_change", "must_change": true}))
            }
            Want::Denied => (status, body) == (401, &json!({"result": "denied"})),
            Want::Changed => (status, body) == (200, &json!({"result": "changed"})),
            Want::Accepted => (status, body) == (202, &json!({"result": "accepted"})),
            Want::Reset => {
                status == 200
                    && body["must_change"] == true
                    && body["temporary_password"]
                        .as_str()
                        .is_some_and(|t| t.len() >= 12)
            }
            Want::Error(s, code) => status == s && body["error"] == code,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Wrong connection passwords one at a time from one client identity.
    Hammer,
    /// `BURST` wrong connection passwords at once from one client identity.
    Burst,
    SupportChange,
    ConnectionChange,
    BothChange,
    /// "Forgot your member support password": mail, redeem, change.
    SupportRecovery,
    /// Self-service asked for the connection password (nothing is sent),
    /// then the help desk resets it.
    ConnectionRecovery,
    /// Changes the policy refuses, with their documented codes.
    Refusals,
}

pub fn role(c: usize) -> Role {
    match (c, c % 8) {
        (0, _) => Role::Hammer,
        (1, _) => Role::Burst,
        (_, 0 | 6) => Role::SupportChange,
        (_, 1 | 7) => Role::ConnectionChange,
        (_, 2) => Role::BothChange,
        (_, 3) => Role::SupportRecovery,
        (_, 4) => Role::ConnectionRecovery,
        _ => Role::Refusals,
    }
}

/// What every client shares: the server, its tokens and mail, its window.
pub struct Ctx<'a> {
    pub port: u16,
    pub tokens: &'a Tokens,
    pub smtp: &'a SmtpServer,
    pub window: Window,
}

/// The throttling window serve runs with (`--throttle-window`). Windows
/// are fixed, aligned to multiples of their length since the epoch
/// (`window_start` in src/store/recovery.rs), so the test picks a length
/// whose current window has [`Window::ROOM`] left: each throttling run
/// then falls within one window, whenever the test runs, and what it
/// expects is what it gets.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub minutes: i64,
}

impl Window {
    /// More than the whole test takes on a slow machine.
    pub const ROOM: Duration = Duration::from_secs(40 * 60);

    /// The shortest length from an hour up whose current window has
    /// [`Window::ROOM`] left.
    pub fn choose() -> Window {
        let now = Timestamp::now().as_millisecond();
        let room = Self::ROOM.as_millis() as i64;
        (60..=24 * 60)
            .map(|minutes| Window { minutes })
            .find(|w| w.millis() - now.rem_euclid(w.millis()) > room)
            .expect("some length from an hour to a day leaves 40 minutes")
    }

    fn millis(self) -> i64 {
        self.minutes * 60 * 1000
    }

    /// The flag's value.
    pub fn arg(self) -> String {
        format!("{}m", self.minutes)
    }

    /// The window now falls in.
    pub fn now(self) -> i64 {
        Timestamp::now().as_millisecond().div_euclid(self.millis())
    }

    /// Records a problem when the window is no longer `window`.
    pub fn assert_still(self, window: i64, name: &str, rec: &mut Record) {
        if self.now() != window {
            rec.problems.push(format!(
                "{name}: a throttling window ended during the run, which the length chosen ({} min) was to rule out",
                self.minutes
            ));
        }
    }
}

/// One client thread: its member, its identity, what it saw.
pub struct Client<'a> {
    pub ctx: &'a Ctx<'a>,
    pub name: String,
    /// The `client` it passes (the member's address, as a portal would).
    pub id: String,
    pub member: Member,
    pub rec: Record,
}

/// What a client saw and did.
#[derive(Default)]
pub struct Record {
    pub calls: Vec<Call>,
    pub problems: Vec<String>,
    /// Every password the client sent.
    pub secrets: Vec<String>,
    /// Throttled answers it caused, counted as documented: (verify, change).
    pub throttled: (usize, usize),
}

impl Record {
    pub fn extend(&mut self, other: Record) {
        self.calls.extend(other.calls);
        self.problems.extend(other.problems);
        self.secrets.extend(other.secrets);
    }
}

impl<'a> Client<'a> {
    pub fn new(ctx: &'a Ctx<'a>, name: String, id: String, member: Member) -> Client<'a> {
        let rec = Record {
            secrets: vec![member.password.clone()],
            ..Record::default()
        };
        Client {
            ctx,
            name,
            id,
            member,
            rec,
        }
    }

    pub fn fresh(&mut self, what: &str) -> String {
        let pw = format!("{what}-{}", random_hex(16));
        self.rec.secrets.push(pw.clone());
        pw
    }

    pub fn send(
        &mut self,
        endpoint: &'static str,
        token: &str,
        body: &Value,
    ) -> Option<http::Response> {
        let bytes = serde_json::to_vec(body).expect("JSON");
        let started = Instant::now();
        let answer = http::request(self.ctx.port, "POST", endpoint, token, Some(&bytes));
        let took = started.elapsed();
        match answer {
            Ok(r) => {
                let json: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                let code = json["error"]
                    .as_str()
                    .or(json["result"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                self.rec.calls.push(Call {
                    endpoint,
                    status: r.status,
                    code,
                    started,
                    took,
                });
                Some(r)
            }
            Err(e) => {
                self.rec
                    .problems
                    .push(format!("{}: {endpoint}: {e}", self.name));
                self.rec.calls.push(Call {
                    endpoint,
                    status: 0,
                    code: e.to_string(),
                    started,
                    took,
                });
                None
            }
        }
    }

    /// Sends, and records a problem unless the answer is `want`.
    pub fn expect(
        &mut self,
        what: &str,
        endpoint: &'static str,
        token: &str,
        body: Value,
        want: Want,
    ) -> Value {
        let Some(r) = self.send(endpoint, token, &body) else {
            return Value::Null;
        };
        let json: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if !want.matches(r.status, &json) {
            self.rec.problems.push(format!(
                "{}: {what}: expected {want:?}, got {} {}",
                self.name,
                r.status,
                r.text()
            ));
        }
        json
    }

    pub fn verify_body(
        &self,
        login_id: &str,
        client: &str,
        purpose: &str,
        password: &str,
    ) -> Value {
        json!({"realm": REALM, "login_id": login_id, "purpose": purpose, "password": password, "client": client})
    }

    /// The caller that verifies `purpose`: the portal its support
    /// password, the RADIUS servers the connection password.
    pub fn verifier(&self, purpose: &str) -> String {
        let t = self.ctx.tokens;
        if purpose == SUPPORT {
            &t.portal
        } else {
            &t.radius
        }
        .clone()
    }

    /// Verifies `password` for `purpose` from the client identity `client`.
    pub fn verify_from(
        &mut self,
        what: &str,
        client: &str,
        purpose: &str,
        password: &str,
        want: Want,
    ) {
        let body = self.verify_body(&self.member.login_id.clone(), client, purpose, password);
        let token = self.verifier(purpose);
        self.expect(what, "/v1/verify", &token, body, want);
    }

    pub fn verify(&mut self, what: &str, purpose: &str, password: &str, want: Want) {
        let id = self.id.clone();
        self.verify_from(what, &id, purpose, password, want);
    }

    pub fn wrong(&mut self, what: &str, client: &str, purpose: &str) {
        let pw = self.fresh("wrong");
        self.verify_from(what, client, purpose, &pw, Want::Denied);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn change_from(
        &mut self,
        what: &str,
        token: &str,
        client: &str,
        purpose: &str,
        current: &str,
        new: &str,
        want: Want,
    ) {
        let body = json!({"realm": REALM, "login_id": self.member.login_id, "purpose": purpose,
                          "current_password": current, "new_password": new, "client": client});
        self.expect(what, "/v1/change", token, body, want);
    }

    pub fn change(
        &mut self,
        what: &str,
        token: &str,
        purpose: &str,
        current: &str,
        new: &str,
        want: Want,
    ) {
        let id = self.id.clone();
        self.change_from(what, token, &id, purpose, current, new, want);
    }

    /// A recovery request through the portal, on behalf of this member's client.
    pub fn recovery(&mut self, what: &str, login_id: &str, purpose: &str) {
        let token = self.ctx.tokens.portal.clone();
        let body =
            json!({"realm": REALM, "login_id": login_id, "purpose": purpose, "client": self.id});
        self.expect(what, "/v1/recovery", &token, body, Want::Accepted);
    }

    /// A help-desk reset; the temporary password when it was given.
    pub fn reset(&mut self, what: &str, purpose: &str, want: Want) -> Option<String> {
        let token = self.ctx.tokens.helpdesk.clone();
        let body = json!({"realm": REALM, "login_id": self.member.login_id, "purpose": purpose});
        let json = self.expect(what, "/v1/helpdesk/reset", &token, body, want);
        let temp = json["temporary_password"].as_str().map(str::to_owned);
        if let Some(t) = &temp {
            self.rec.secrets.push(t.clone());
        }
        temp
    }

    /// The temporary password mailed to the member's base address.
    pub fn mailed_temporary_password(&mut self) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mail = loop {
            if let Some(mail) = self.ctx.smtp.mails_to(&self.member.email).pop() {
                break mail;
            }
            if Instant::now() > deadline {
                self.rec
                    .problems
                    .push(format!("{}: no recovery mail within 60s", self.name));
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let temp = mail
            .body
            .split("仮パスワード: ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next());
        match temp {
            Some(t)
                if mail.to == [self.member.email.clone()]
                    && mail
                        .body
                        .starts_with(&format!("{} 様", self.member.login_id)) =>
            {
                self.rec.secrets.push(t.to_owned());
                Some(t.to_owned())
            }
            _ => {
                self.rec.problems.push(format!(
                    "{}: not this member's recovery mail: {mail:?}",
                    self.name
                ));
                None
            }
        }
    }

    /// Runs the role; returns the member's (support, connection) passwords after it.
    pub fn run(&mut self, role: Role) -> (String, String) {
        let p = self.member.password.clone();
        let (portal, utility) = (
            self.ctx.tokens.portal.clone(),
            self.ctx.tokens.utility.clone(),
        );
        match role {
            Role::Hammer => {
                self.hammer();
                return (p.clone(), p);
            }
            Role::Burst => {
                self.burst();
                return (p.clone(), p);
            }
            _ => {}
        }
        self.verify(
            "support, right",
            SUPPORT,
            &p,
            Want::Ok { must_change: false },
        );
        let id = self.id.clone();
        self.wrong("connection, wrong", &id, CONNECTION);
        match role {
            Role::SupportChange => {
                let s = self.change_own(SUPPORT);
                self.after_change(SUPPORT, &s, CONNECTION, &p);
                (s, p)
            }
            Role::ConnectionChange => {
                let c = self.change_own(CONNECTION);
                self.after_change(CONNECTION, &c, SUPPORT, &p);
                (p, c)
            }
            Role::BothChange => {
                let (s, c) = (self.change_own(SUPPORT), self.change_own(CONNECTION));
                self.verify("support, new", SUPPORT, &s, Want::Ok { must_change: false });
                self.verify(
                    "connection, new",
                    CONNECTION,
                    &c,
                    Want::Ok { must_change: false },
                );
                self.verify("support, the other new", SUPPORT, &c, Want::Denied);
                self.verify("connection, old", CONNECTION, &p, Want::Denied);
                (s, c)
            }
            Role::SupportRecovery => {
                let login_id = self.member.login_id.clone();
                self.recovery("recovery, support", &login_id, SUPPORT);
                let Some(temp) = self.mailed_temporary_password() else {
                    return (p.clone(), p);
                };
                let still = Want::Ok { must_change: false };
                self.verify("support, old until the ticket is used", SUPPORT, &p, still);
                let s = self.use_temporary(SUPPORT, &temp, CONNECTION);
                (s, p)
            }
            Role::ConnectionRecovery => {
                let login_id = self.member.login_id.clone();
                let what = "recovery, connection (help desk only: nothing sent)";
                self.recovery(what, &login_id, CONNECTION);
                let Some(temp) = self.reset("help desk resets connection", CONNECTION, Want::Reset)
                else {
                    return (p.clone(), p);
                };
                let c = self.use_temporary(CONNECTION, &temp, SUPPORT);
                (p, c)
            }
            Role::Refusals => {
                let x = self.fresh("refused");
                let refused = |code| Want::Error(403, code);
                self.verify(
                    "connection, right",
                    CONNECTION,
                    &p,
                    Want::Ok { must_change: false },
                );
                self.change(
                    "portal may not change connection",
                    &portal,
                    CONNECTION,
                    &p,
                    &x,
                    refused("channel_not_allowed"),
                );
                self.change(
                    "utility may not change support",
                    &utility,
                    SUPPORT,
                    &p,
                    &x,
                    refused("channel_not_allowed"),
                );
                let wrong = self.fresh("wrong");
                self.change(
                    "wrong current password",
                    &utility,
                    CONNECTION,
                    &wrong,
                    &x,
                    refused("wrong_current_password"),
                );
                let login_id = self.member.login_id.clone();
                self.change(
                    "new = login ID",
                    &portal,
                    SUPPORT,
                    &p,
                    &login_id,
                    Want::Error(422, "same_as_login_id"),
                );
                self.change(
                    "too short",
                    &portal,
                    SUPPORT,
                    &p,
                    "short",
                    Want::Error(422, "too_short"),
                );
                self.change(
                    "blocklisted",
                    &portal,
                    SUPPORT,
                    &p,
                    "password123",
                    Want::Error(422, "blocklisted"),
                );
                self.reset(
                    "help desk may not reset support",
                    SUPPORT,
                    Want::Error(403, "not_helpdesk_recoverable"),
                );
                self.recovery("recovery, connection", &login_id, CONNECTION);
                let unknown = format!("zz{}", &login_id[2..]);
                self.recovery("recovery, unknown login ID", &unknown, SUPPORT);
                let body = self.verify_body(&unknown, &id, SUPPORT, &p);
                self.expect(
                    "verify, unknown login ID",
                    "/v1/verify",
                    &portal,
                    body,
                    Want::Denied,
                );
                (p.clone(), p)
            }
            Role::Hammer | Role::Burst => unreachable!(),
        }
    }

    /// The token of the channel that changes `purpose`'s password
    /// (examples/2018-split/policy.yaml, `changeVia`).
    pub fn own_token(&self, purpose: &str) -> String {
        let t = self.ctx.tokens;
        if purpose == SUPPORT {
            &t.portal
        } else {
            &t.utility
        }
        .clone()
    }

    /// Changes `purpose`'s password from the member's own through its
    /// channel; returns the new one.
    pub fn change_own(&mut self, purpose: &str) -> String {
        let (token, p, new) = (
            self.own_token(purpose),
            self.member.password.clone(),
            self.fresh(purpose),
        );
        self.change(
            &format!("{purpose}, changed"),
            &token,
            purpose,
            &p,
            &new,
            Want::Changed,
        );
        new
    }

    /// With a temporary password for `purpose` (mailed or from the help
    /// desk): it lets the member in with must-change, the old password no
    /// longer does, `other` keeps the old one; then the member sets a new
    /// password through its channel, and it answers. Returns it.
    pub fn use_temporary(&mut self, purpose: &str, temp: &str, other: &str) -> String {
        let token = self.own_token(purpose);
        let p = self.member.password.clone();
        self.verify(
            "temporary password",
            purpose,
            temp,
            Want::Ok { must_change: true },
        );
        self.verify(
            "old password after the temporary one",
            purpose,
            &p,
            Want::Denied,
        );
        self.verify(
            "other purpose untouched",
            other,
            &p,
            Want::Ok { must_change: false },
        );
        let new = self.fresh(purpose);
        self.change(
            "sets a new password",
            &token,
            purpose,
            temp,
            &new,
            Want::Changed,
        );
        self.verify(
            "new password",
            purpose,
            &new,
            Want::Ok { must_change: false },
        );
        new
    }

    /// After a change of `changed` to `new`: it answers to the new password,
    /// not the old one; `other` keeps `other_pw` and does not take the new one.
    pub fn after_change(&mut self, changed: &str, new: &str, other: &str, other_pw: &str) {
        let old = self.member.password.clone();
        self.verify(
            "changed, new",
            changed,
            new,
            Want::Ok { must_change: false },
        );
        self.verify("changed, old", changed, &old, Want::Denied);
        self.verify(
            "other, unchanged",
            other,
            other_pw,
            Want::Ok { must_change: false },
        );
        self.verify("other, not the new one", other, new, Want::Denied);
    }

    /// README: after `--verify-failures` (10) failed verifies within the
    /// window, the (account, purpose, client) triple is answered "denied"
    /// without a check until the window ends; a wrong current password on
    /// /v1/change counts against the same triple; other purposes and other
    /// clients are not affected. One guess at a time, all within one
    /// window ([`Ctx::window`]).
    pub fn hammer(&mut self) {
        let p = self.member.password.clone();
        let utility = self.ctx.tokens.utility.clone();
        let window = self.ctx.window.now();
        let attacker = "203.0.113.1";
        for i in 1..FAILURES {
            self.wrong(&format!("hammer, failure {i}"), attacker, CONNECTION);
        }
        self.verify_from(
            "hammer, right password after 9 failures: still checked",
            attacker,
            CONNECTION,
            &p,
            Want::Ok { must_change: false },
        );
        self.wrong("hammer, failure 10", attacker, CONNECTION);
        // From now on: denied without a check, looking like any denial.
        let (radius, login_id, id) = (
            self.verifier(CONNECTION),
            self.member.login_id.clone(),
            self.id.clone(),
        );
        let not_it = self.fresh("wrong");
        let ordinary = self.send(
            "/v1/verify",
            &radius,
            &self.verify_body(&login_id, &id, CONNECTION, &not_it),
        );
        let throttled = self.send(
            "/v1/verify",
            &radius,
            &self.verify_body(&login_id, attacker, CONNECTION, &p),
        );
        if let (Some(a), Some(b)) = (ordinary, throttled)
            && (a.comparable() != b.comparable()
                || b.status != 401
                || b.header("retry-after").is_some())
        {
            self.rec.problems.push(format!(
                "{}: the throttled answer differs from a denial: {:?} vs {:?}",
                self.name,
                b.comparable(),
                a.comparable()
            ));
        }
        for i in 0..4 {
            self.wrong(
                &format!("hammer, throttled guess {i}"),
                attacker,
                CONNECTION,
            );
        }
        // A too-short new password: refused with `too_short` if the
        // current one were checked, so nothing is written either way.
        self.change_from(
            "hammer, change with the right current password",
            &utility,
            attacker,
            CONNECTION,
            &p,
            "short",
            Want::Error(403, "wrong_current_password"),
        );
        self.verify_from(
            "hammer, other purpose",
            attacker,
            SUPPORT,
            &p,
            Want::Ok { must_change: false },
        );
        self.verify_from(
            "hammer, the member's own client",
            &id,
            CONNECTION,
            &p,
            Want::Ok { must_change: false },
        );
        self.rec.throttled = (5, 1);
        self.ctx
            .window
            .assert_still(window, &self.name, &mut self.rec);
    }

    /// `BURST` wrong guesses sent at once from one client identity. Prints
    /// how many the server checked (from /metrics, after the load).
    pub fn burst(&mut self) {
        let p = self.member.password.clone();
        let id = self.id.clone();
        self.verify(
            "burst, the member before",
            CONNECTION,
            &p,
            Want::Ok { must_change: false },
        );
        let window = self.ctx.window.now();
        let attacker = "203.0.113.200";
        let barrier = Barrier::new(BURST);
        let ctx = self.ctx;
        let member = self.member.clone();
        let name = self.name.clone();
        let subs: Vec<Client<'_>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..BURST)
                .map(|i| {
                    let (barrier, member, name) = (&barrier, member.clone(), name.clone());
                    s.spawn(move || {
                        let mut sub = Client::new(
                            ctx,
                            format!("{name} guess {i}"),
                            attacker.to_owned(),
                            member,
                        );
                        let pw = sub.fresh("burst");
                        let body = sub.verify_body(
                            &sub.member.login_id.clone(),
                            attacker,
                            CONNECTION,
                            &pw,
                        );
                        barrier.wait();
                        let token = sub.verifier(CONNECTION);
                        sub.expect("burst guess", "/v1/verify", &token, body, Want::Denied);
                        sub
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("burst thread"))
                .collect()
        });
        for sub in subs {
            self.rec.extend(sub.rec);
        }
        self.verify_from(
            "burst, right password after the burst: throttled",
            attacker,
            CONNECTION,
            &p,
            Want::Denied,
        );
        // The burst made a streak of failures at the account: past
        // `FAILURES` in a row the next check waits 1 s, then 2 s, … from
        // any client. Once it has passed, the member's own client gets in
        // (and ends the streak).
        std::thread::sleep(Duration::from_millis(4500));
        self.verify_from(
            "burst, the member's own client",
            &id,
            CONNECTION,
            &p,
            Want::Ok { must_change: false },
        );
        self.rec.throttled.0 += 1;
        self.ctx
            .window
            .assert_still(window, &self.name, &mut self.rec);
    }
}

pub struct Report {
    pub member: Member,
    pub role: Role,
    pub support: String,
    pub connection: String,
    pub rec: Record,
}

pub fn run_client(ctx: &Ctx<'_>, c: usize, member: Member) -> Report {
    let role = role(c);
    let name = format!("client {c} ({}, {role:?})", member.login_id);
    let mut client = Client::new(ctx, name, format!("10.20.{}.{}", c / 256, c % 256), member);
    let (support, connection) = client.run(role);
    Report {
        member: client.member,
        role,
        support,
        connection,
        rec: client.rec,
    }
}
