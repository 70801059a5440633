//! Issue 8: 200 concurrent API clients mixing verify, change and recovery
//! during a cutover: no 5xx, the invariant holds, throttling behaves as
//! documented (README, "The member-facing API").
//!
//! A PostgreSQL store gets 30,000 members through `credshift accounts
//! import` (real hashes: the example's legacy formats and argon2id). A real
//! `credshift serve` runs on the example policy with the 2018 split moved to
//! a few seconds from now, delivering recovery mail to a real SMTP receiver;
//! a real `credshift apply` (the file driver) runs the backfill with a small
//! `batchSize` while 200 client threads call the API over HTTP. Another
//! transaction holds the row of an account the backfill reaches in its last
//! batch until the load is over, so the whole load is answered in the
//! dual-read phase however fast this machine is (it once was not: the
//! backfill finished before the first change on a quiet machine). Each client owns one member whose
//! password it knows and checks every answer it gets: changes of the support
//! password (portal) and of the connection password (utility), self-service
//! recovery of the support password (mail to the base address), recovery of
//! the connection password (refused as documented: help desk only, then a
//! help-desk reset), refused changes, and two attackers: one hammering wrong
//! passwords one at a time, one sending a burst in parallel.
//!
//! Afterwards, once `apply` has completed the cutover: every account holding
//! `login` holds exactly one `support` and one `connection`; untouched ones
//! hold the login hash in both; every member the clients know answers with
//! the passwords its client left it; `/metrics` counts exactly the answers
//! the clients saw; no password used by the test is in any log.
//!
//! Throughput and latency are printed, never asserted.

// A panic in a test is its failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use credshift::hashing::{Argon2Params, Secret, hash_password};
use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::Digest as _;
use sqlx::Connection as _;
use support::http;
use support::serve::DEMO;
use support::smtp::SmtpServer;
use support::tokens::{Tokens, random_bytes, random_hex};

const REALM: &str = "wakwak";
const CUTOVER: &str = "default/split-login-2018";
const SUPPORT: &str = "support-portal";
const CONNECTION: &str = "connection";

/// Accounts in the store besides the six demo members.
const MEMBERS: usize = 30_000;
/// Members (spread over the login-ID order) whose passwords the test knows.
const SAMPLE: usize = 300;
/// Concurrent client threads; client `c` owns one known member.
const CLIENTS: usize = 200;
/// Accounts per backfill transaction: small, so the backfill runs through much of the load.
const BATCH_SIZE: u32 = 10;
/// README: `--verify-failures` (10) per `--throttle-window` (15m), the
/// defaults this serve runs with. The window is fixed, aligned to multiples
/// of 15 minutes since the epoch (src/store/recovery.rs, `rate_limit`).
const FAILURES: usize = 10;
const WINDOW_MS: i64 = 15 * 60 * 1000;
/// README: `--min-denial-time` (250ms), the default this serve runs with.
/// Kept: the padding sleeps, it does not burn CPU, and the clients are
/// concurrent, so it lengthens each answer, not the run.
const MIN_DENIAL: Duration = Duration::from_millis(250);
/// Wrong guesses the burst attacker sends at once.
const BURST: usize = 30;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/2018-split")
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

// ---------------------------------------------------------------------------
// The members.

/// A member whose password the test knows.
#[derive(Debug, Clone)]
struct Member {
    login_id: String,
    email: String,
    password: String,
}

/// What was imported.
struct Population {
    csv: String,
    /// The sample (`SAMPLE`, in login-ID order), then the six demo members.
    known: Vec<Member>,
    /// Every account's imported (login, mail) hashes; `None`: no login (out of scope).
    imported: HashMap<String, (Option<String>, String)>,
}

/// The example's (login, mail) hashes, by demo member.
fn demo_hashes() -> Vec<(String, String, String, String)> {
    let mut reader =
        csv::Reader::from_path(example_dir().join("members.csv")).expect("members.csv");
    reader
        .records()
        .map(|r| {
            let r = r.expect("members.csv row");
            (
                r[0].to_owned(),
                r[1].to_owned(),
                r[2].to_owned(),
                r[3].to_owned(),
            )
        })
        .collect()
}

/// md5-crypt (`-1`), sha256-crypt (`-5`) or sha512-crypt (`-6`) hashes, one per password.
fn openssl_crypt(flag: &str, passwords: &[&str]) -> Vec<String> {
    let mut child = Command::new("openssl")
        .args(["passwd", flag, "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl (the tests need it, README: Testing)");
    let mut input = passwords.join("\n");
    input.push('\n');
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write passwords");
    let out = child.wait_with_output().expect("openssl passwd");
    assert!(out.status.success(), "openssl passwd {flag} failed");
    let hashes: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(hashes.len(), passwords.len(), "openssl passwd {flag}");
    hashes
}

/// `{SSHA}`: base64(SHA-1(password ‖ salt) ‖ salt), as LDAP servers store it.
fn ssha(password: &str) -> String {
    use base64::Engine as _;
    let salt = random_hex(4).into_bytes();
    let mut h = sha1::Sha1::new();
    h.update(password.as_bytes());
    h.update(&salt);
    let mut raw: Vec<u8> = h.finalize().iter().copied().collect();
    raw.extend_from_slice(&salt);
    format!(
        "{{SSHA}}{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Real hashes of the sample's passwords, six formats in turn: argon2id with
/// the policy's default parameters, md5-crypt, sha512-crypt, bcrypt,
/// {SSHA}, sha256-crypt.
fn sample_hashes(passwords: &[String]) -> Vec<String> {
    let mut hashes = vec![String::new(); passwords.len()];
    let of = |scheme: usize| -> Vec<usize> { (scheme..passwords.len()).step_by(6).collect() };
    for (scheme, flag) in [(1, "-1"), (2, "-6"), (5, "-5")] {
        let idx = of(scheme);
        let pws: Vec<&str> = idx.iter().map(|&i| passwords[i].as_str()).collect();
        for (i, h) in idx.into_iter().zip(openssl_crypt(flag, &pws)) {
            hashes[i] = h;
        }
    }
    for i in of(4) {
        hashes[i] = ssha(&passwords[i]);
    }
    // argon2id and bcrypt cost real CPU: two threads.
    let slow: Vec<usize> = of(0).into_iter().chain(of(3)).collect();
    let computed: Vec<(usize, String)> = std::thread::scope(|s| {
        let workers: Vec<_> = slow
            .chunks(slow.len().div_ceil(2))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|&i| {
                            let pw = &passwords[i];
                            let h = if i % 6 == 0 {
                                hash_password(&Secret::from(pw.as_str()), Argon2Params::default())
                                    .expect("argon2id")
                            } else {
                                bcrypt::hash(pw, 8).expect("bcrypt")
                            };
                            (i, h)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("hash worker"))
            .collect()
    });
    for (i, h) in computed {
        hashes[i] = h;
    }
    hashes
}

fn population() -> Population {
    let demo = demo_hashes();
    let step = MEMBERS / SAMPLE;
    let sample_at = |k: usize| k * step + step / 2;
    let passwords: Vec<String> = (0..SAMPLE)
        .map(|k| format!("member-{k:03}-{}", random_hex(6)))
        .collect();
    let hashes = sample_hashes(&passwords);
    let mut csv = String::from("login_id,base_email,login,mail\n");
    let mut known = Vec::new();
    let mut imported = HashMap::new();
    let mut row = |login_id: &str, email: &str, login: Option<&str>, mail: &str| {
        csv.push_str(&format!(
            "{login_id},{email},{},\"{mail}\"\n",
            login.map(|h| format!("\"{h}\"")).unwrap_or_default()
        ));
        imported.insert(
            login_id.to_owned(),
            (login.map(str::to_owned), mail.to_owned()),
        );
    };
    for ((login_id, email, login, mail), (demo_id, password)) in demo.iter().zip(DEMO) {
        assert_eq!(login_id, demo_id, "examples/2018-split/members.csv changed");
        row(login_id, email, Some(login), mail);
        known.push(Member {
            login_id: login_id.clone(),
            email: email.clone(),
            password: password.to_owned(),
        });
    }
    let mut k = 0;
    for n in 0..MEMBERS {
        let login_id = format!("wk{n:06}");
        let email = format!("{login_id}@wakwak.example.jp");
        let (_, _, demo_login, demo_mail) = &demo[n % demo.len()];
        if k < SAMPLE && n == sample_at(k) {
            row(&login_id, &email, Some(&hashes[k]), demo_mail);
            known.push(Member {
                login_id,
                email,
                password: passwords[k].clone(),
            });
            k += 1;
        } else if n % 101 == 0 {
            // A member with mail only: out of the cutover's scope.
            row(&login_id, &email, None, demo_mail);
        } else {
            row(&login_id, &email, Some(demo_login), demo_mail);
        }
    }
    // Sample first, demo members last.
    known.rotate_left(DEMO.len());
    Population {
        csv,
        known,
        imported,
    }
}

// ---------------------------------------------------------------------------
// Processes.

/// Runs `"$0" "$@"` and sends it SIGTERM once the shell's stdin (a pipe from
/// this process) closes: on drop, and when the test binary is killed.
const WATCHDOG: &str = r#"exec 3<&0; "$0" "$@" </dev/null & pid=$!; (cat <&3 >/dev/null; kill $pid 2>/dev/null) & wait $pid"#;

/// A `credshift` process under the watchdog, its output in files; stopped on drop.
struct Proc {
    child: Child,
    watch: Option<ChildStdin>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    fn start(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let (stdout, stderr) = (
            dir.join(format!("{name}.out")),
            dir.join(format!("{name}.log")),
        );
        let mut cmd = Command::new("sh");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CREDSHIFT_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .args(["-c", WATCHDOG])
            .arg(support::credshift_bin())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start credshift");
        let watch = child.stdin.take();
        Proc {
            child,
            watch,
            stdout,
            stderr,
        }
    }

    fn out(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Its exit status, waiting up to `timeout`.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.watch.take();
        if self.wait(Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `credshift serve` on `store` with the manifests in `manifests`, ready.
fn start_serve(
    dir: &Path,
    manifests: &Path,
    store: &str,
    smtp: &SmtpServer,
    outbox_key: &str,
) -> (Proc, u16) {
    let tokens_file = dir.join("tokens.yaml");
    let manifests = manifests.to_str().expect("utf-8 path");
    let tokens_file = tokens_file.to_str().expect("utf-8 path");
    for _ in 0..3 {
        let port = support::controller::free_port();
        let listen = format!("127.0.0.1:{port}");
        let smtp_url = smtp.url();
        let mut serve = Proc::start(
            dir,
            "serve",
            &[
                "serve",
                "-f",
                manifests,
                "--store",
                store,
                "--tokens",
                tokens_file,
                "--listen",
                &listen,
                "--smtp",
                &smtp_url,
                "--log",
                "debug",
                // Room for every client at once: this test holds the API to
                // no 5xx, so nothing may be shed (tests/overload.rs sheds).
                "--hash-queue",
                "256",
            ],
            &[("CREDSHIFT_OUTBOX_KEY", outbox_key)],
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && serve.child.try_wait().ok().flatten().is_none() {
            if http::request(port, "GET", "/readyz", "", None).is_ok_and(|r| r.status == 200) {
                return (serve, port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = serve.log();
        // Someone took the port between free_port() and bind: try another.
        assert!(
            log.contains("listen on"),
            "credshift serve did not start; log:\n{log}"
        );
    }
    panic!("credshift serve could not listen on a free port three times");
}

// ---------------------------------------------------------------------------
// Clients.

/// One answer a client got.
#[derive(Debug, Clone)]
struct Call {
    endpoint: &'static str,
    status: u16,
    /// `result` or `error` of the JSON answer.
    code: String,
    started: Instant,
    took: Duration,
}

/// What a client checks an answer against.
#[derive(Debug, Clone, Copy)]
enum Want {
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
    fn matches(self, status: u16, body: &Value) -> bool {
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
enum Role {
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

fn role(c: usize) -> Role {
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

struct Ctx<'a> {
    port: u16,
    tokens: &'a Tokens,
    smtp: &'a SmtpServer,
}

/// One client thread: its member, its identity, what it saw.
struct Client<'a> {
    ctx: &'a Ctx<'a>,
    name: String,
    /// The `client` it passes (the member's address, as a portal would).
    id: String,
    member: Member,
    rec: Record,
}

/// What a client saw and did.
#[derive(Default)]
struct Record {
    calls: Vec<Call>,
    problems: Vec<String>,
    /// Every password the client sent.
    secrets: Vec<String>,
    /// Throttled answers it caused, counted as documented: (verify, change).
    throttled: (usize, usize),
    /// Throttling runs it discarded because a window boundary fell inside them.
    void_runs: usize,
}

impl Record {
    fn extend(&mut self, other: Record) {
        self.calls.extend(other.calls);
        self.problems.extend(other.problems);
        self.secrets.extend(other.secrets);
    }
}

impl<'a> Client<'a> {
    fn new(ctx: &'a Ctx<'a>, name: String, id: String, member: Member) -> Client<'a> {
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

    fn fresh(&mut self, what: &str) -> String {
        let pw = format!("{what}-{}", random_hex(16));
        self.rec.secrets.push(pw.clone());
        pw
    }

    fn send(
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
    fn expect(
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

    fn verify_body(&self, login_id: &str, client: &str, purpose: &str, password: &str) -> Value {
        json!({"realm": REALM, "login_id": login_id, "purpose": purpose, "password": password, "client": client})
    }

    /// The caller that verifies `purpose`: the portal its support
    /// password, the RADIUS servers the connection password.
    fn verifier(&self, purpose: &str) -> String {
        let t = self.ctx.tokens;
        if purpose == SUPPORT {
            &t.portal
        } else {
            &t.radius
        }
        .clone()
    }

    /// Verifies `password` for `purpose` from the client identity `client`.
    fn verify_from(&mut self, what: &str, client: &str, purpose: &str, password: &str, want: Want) {
        let body = self.verify_body(&self.member.login_id.clone(), client, purpose, password);
        let token = self.verifier(purpose);
        self.expect(what, "/v1/verify", &token, body, want);
    }

    fn verify(&mut self, what: &str, purpose: &str, password: &str, want: Want) {
        let id = self.id.clone();
        self.verify_from(what, &id, purpose, password, want);
    }

    fn wrong(&mut self, what: &str, client: &str, purpose: &str) {
        let pw = self.fresh("wrong");
        self.verify_from(what, client, purpose, &pw, Want::Denied);
    }

    #[allow(clippy::too_many_arguments)]
    fn change_from(
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

    fn change(
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
    fn recovery(&mut self, what: &str, login_id: &str, purpose: &str) {
        let token = self.ctx.tokens.portal.clone();
        let body =
            json!({"realm": REALM, "login_id": login_id, "purpose": purpose, "client": self.id});
        self.expect(what, "/v1/recovery", &token, body, Want::Accepted);
    }

    /// A help-desk reset; the temporary password when it was given.
    fn reset(&mut self, what: &str, purpose: &str, want: Want) -> Option<String> {
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
    fn mailed_temporary_password(&mut self) -> Option<String> {
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
    fn run(&mut self, role: Role) -> (String, String) {
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
    fn own_token(&self, purpose: &str) -> String {
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
    fn change_own(&mut self, purpose: &str) -> String {
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
    fn use_temporary(&mut self, purpose: &str, temp: &str, other: &str) -> String {
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
    fn after_change(&mut self, changed: &str, new: &str, other: &str, other_pw: &str) {
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
    /// clients are not affected. One guess at a time, within one window
    /// (a run a window boundary falls into is discarded and repeated).
    fn hammer(&mut self) {
        let p = self.member.password.clone();
        let utility = self.ctx.tokens.utility.clone();
        for attempt in 1..=3 {
            wait_for_window_margin(Duration::from_secs(30));
            let (window, mark) = (window_index(), self.rec.problems.len());
            let attacker = format!("203.0.113.{attempt}");
            for i in 1..FAILURES {
                self.wrong(&format!("hammer, failure {i}"), &attacker, CONNECTION);
            }
            self.verify_from(
                "hammer, right password after 9 failures: still checked",
                &attacker,
                CONNECTION,
                &p,
                Want::Ok { must_change: false },
            );
            self.wrong("hammer, failure 10", &attacker, CONNECTION);
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
                &self.verify_body(&login_id, &attacker, CONNECTION, &p),
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
                    &attacker,
                    CONNECTION,
                );
            }
            // A too-short new password: refused with `too_short` if the
            // current one were checked, so nothing is written either way.
            self.change_from(
                "hammer, change with the right current password",
                &utility,
                &attacker,
                CONNECTION,
                &p,
                "short",
                Want::Error(403, "wrong_current_password"),
            );
            self.verify_from(
                "hammer, other purpose",
                &attacker,
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
            if window_index() == window {
                self.rec.throttled = (5, 1);
                return;
            }
            // The count restarted in the middle: what this run expected no longer applies.
            self.rec.problems.truncate(mark);
            self.rec.void_runs += 1;
        }
        self.rec.problems.push(format!(
            "{}: three runs crossed a window boundary",
            self.name
        ));
    }

    /// `BURST` wrong guesses sent at once from one client identity. Prints
    /// how many the server checked (from /metrics, after the load).
    fn burst(&mut self) {
        let p = self.member.password.clone();
        let id = self.id.clone();
        self.verify(
            "burst, the member before",
            CONNECTION,
            &p,
            Want::Ok { must_change: false },
        );
        wait_for_window_margin(Duration::from_secs(30));
        let (window, mark) = (window_index(), self.rec.problems.len());
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
        if window_index() != window {
            self.rec.problems.truncate(mark);
            self.rec.void_runs += 1;
        }
    }
}

fn window_index() -> i64 {
    Timestamp::now().as_millisecond().div_euclid(WINDOW_MS)
}

/// Sleeps past the next throttling-window boundary when it is closer than `margin`.
fn wait_for_window_margin(margin: Duration) {
    let left = WINDOW_MS - Timestamp::now().as_millisecond().rem_euclid(WINDOW_MS);
    if left < margin.as_millis() as i64 {
        std::thread::sleep(Duration::from_millis(left as u64 + 500));
    }
}

struct Report {
    member: Member,
    role: Role,
    support: String,
    connection: String,
    rec: Record,
}

fn run_client(ctx: &Ctx<'_>, c: usize, member: Member) -> Report {
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

// ---------------------------------------------------------------------------
// Observations.

/// A cutover checkpoint: (phase, done, total).
type Progress = (String, i64, i64);

/// The cutover's checkpoint, `None` before it starts.
async fn checkpoint(conn: &mut sqlx::PgConnection) -> Option<Progress> {
    sqlx::query_as("SELECT phase, done, total FROM cutover_checkpoints WHERE cutover = $1")
        .bind(CUTOVER)
        .fetch_optional(conn)
        .await
        .expect("read the checkpoint")
}

/// Checkpoint samples taken every 50 ms by a thread until `stop`.
fn monitor(url: String, stop: &std::sync::atomic::AtomicBool) -> Vec<(Instant, Option<Progress>)> {
    block_on(async {
        let mut conn = sqlx::PgConnection::connect(&url)
            .await
            .expect("monitor connects");
        let mut samples = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            samples.push((Instant::now(), checkpoint(&mut conn).await));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        samples
    })
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Another application's transaction holding one account row `FOR UPDATE`
/// until released. The backfill batch that reaches that account waits for it
/// (its copy takes a key-share lock on the row), so the cutover stays in its
/// dual-read phase for as long as the hold lasts, on a fast machine as on a
/// slow one; nothing else waits, since no client touches that account.
struct RowHold {
    release: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl RowHold {
    /// Locks account `id` and returns once the lock is held.
    fn start(url: &str, id: i64) -> RowHold {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (held_tx, held) = std::sync::mpsc::channel::<()>();
        let url = url.to_owned();
        let thread = std::thread::spawn(move || {
            block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url)
                    .await
                    .expect("the holder connects");
                let mut tx = conn.begin().await.expect("BEGIN");
                sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .expect("lock the held account");
                let _ = held_tx.send(());
                // Sender dropped or a message: either way, let go.
                let _ = released.recv();
                tx.commit().await.expect("COMMIT the hold");
            })
        });
        held.recv().expect("the holder locked its row");
        RowHold { release, thread }
    }

    fn release(self) {
        let _ = self.release.send(());
        self.thread.join().expect("the holder");
    }
}

/// The in-scope account (holding `login`) with the highest id that no client
/// knows: the backfill reaches it in its last batches. [`RowHold`] holds it.
async fn last_unknown_in_scope(url: &str, known: &[Member]) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let known: Vec<String> = known.iter().map(|m| m.login_id.clone()).collect();
    let id: i64 = sqlx::query_scalar(
        "SELECT a.id FROM accounts a JOIN credentials c ON c.account_id = a.id \
         WHERE a.realm = $1 AND c.name = 'login' AND a.login_id <> ALL($2) \
         ORDER BY a.id DESC LIMIT 1",
    )
    .bind(REALM)
    .bind(&known)
    .fetch_one(&mut conn)
    .await
    .expect("the last unknown account in scope");
    let _ = conn.close().await;
    id
}

/// `credshift_api_requests_total{endpoint, outcome}` from /metrics.
fn metric(text: &str, endpoint: &str, outcome: &str) -> usize {
    let (e, o) = (
        format!("endpoint=\"{endpoint}\""),
        format!("outcome=\"{outcome}\""),
    );
    text.lines()
        .filter(|l| {
            l.starts_with("credshift_api_requests_total{") && l.contains(&e) && l.contains(&o)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as usize
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn print_latencies(calls: &[Call], elapsed: Duration) {
    let mut by_endpoint: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for c in calls {
        by_endpoint.entry(c.endpoint).or_default().push(c.took);
        by_endpoint.entry("all").or_default().push(c.took);
    }
    eprintln!(
        "load: {} requests in {:.1}s = {:.1} requests/s",
        calls.len(),
        elapsed.as_secs_f64(),
        calls.len() as f64 / elapsed.as_secs_f64()
    );
    for (endpoint, mut v) in by_endpoint {
        v.sort();
        eprintln!(
            "  {endpoint:<20} n={:<5} p50={:>6.0?} p90={:>6.0?} p99={:>6.0?} max={:>6.0?}",
            v.len(),
            percentile(&v, 50),
            percentile(&v, 90),
            percentile(&v, 99),
            v[v.len() - 1]
        );
    }
}

/// The cutover invariant over every account, read from the store.
async fn check_invariant(
    url: &str,
    population: &Population,
    touched: &HashSet<String>,
) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
        i64,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.login_id, \
           MAX(c.hash) FILTER (WHERE c.name = 'login'), \
           MAX(c.hash) FILTER (WHERE c.name = 'support'), \
           MAX(c.hash) FILTER (WHERE c.name = 'connection'), \
           MAX(c.hash) FILTER (WHERE c.name = 'mail'), \
           COUNT(*) FILTER (WHERE c.name = 'support'), \
           COUNT(*) FILTER (WHERE c.name = 'connection') \
         FROM accounts a LEFT JOIN credentials c ON c.account_id = a.id \
         WHERE a.realm = $1 GROUP BY a.id, a.login_id",
    )
    .bind(REALM)
    .fetch_all(&mut conn)
    .await
    .expect("read accounts");
    let _ = conn.close().await;
    let mut problems = Vec::new();
    if rows.len() != population.imported.len() {
        problems.push(format!(
            "{} accounts, {} imported",
            rows.len(),
            population.imported.len()
        ));
    }
    for (login_id, login, support, connection, mail, n_support, n_connection) in rows {
        let Some((imported_login, imported_mail)) = population.imported.get(&login_id) else {
            problems.push(format!("{login_id}: an account nobody imported"));
            continue;
        };
        if mail.as_ref() != Some(imported_mail) {
            problems.push(format!("{login_id}: the mail password changed"));
        }
        match (&login, (n_support, n_connection)) {
            (Some(_), (1, 1)) | (None, (0, 0)) => {}
            (l, n) => problems.push(format!(
                "{login_id}: login {}, (support, connection) credentials {n:?}",
                if l.is_some() { "held" } else { "absent" }
            )),
        }
        if login.is_some()
            && !touched.contains(&login_id)
            && (&login != imported_login || support != login || connection != login)
        {
            problems.push(format!(
                "{login_id}: nobody changed it, yet support and connection are not both the imported login hash"
            ));
        }
    }
    problems
}

/// Passwords a member's credential answers to, checked through the API
/// (purposes) in parallel; problems found.
fn verify_final(ctx: &Ctx<'_>, checks: Vec<(Member, &'static str, String, Want)>) -> Record {
    let chunks: Vec<Vec<_>> = checks
        .chunks(checks.len().div_ceil(16))
        .map(<[_]>::to_vec)
        .collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = chunks
            .into_iter()
            .enumerate()
            .map(|(w, chunk)| {
                s.spawn(move || {
                    let mut rec = Record::default();
                    for (member, purpose, password, want) in chunk {
                        let name = format!("final check of {}", member.login_id);
                        let mut c = Client::new(ctx, name, format!("10.30.0.{w}"), member);
                        let what = format!("{purpose} after the cutover");
                        c.verify(&what, purpose, &password, want);
                        rec.extend(c.rec);
                    }
                    rec
                })
            })
            .collect();
        let mut all = Record::default();
        for w in workers {
            all.extend(w.join().expect("final check"));
        }
        all
    })
}

// ---------------------------------------------------------------------------

#[test]
fn two_hundred_clients_during_a_cutover() {
    let test_started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = block_on(support::postgres::server().fresh_database());

    // Members, imported with their hashes.
    let population = population();
    eprintln!("members and hashes made in {:.1?}", test_started.elapsed());
    let members_csv = dir.path().join("members.csv");
    std::fs::write(&members_csv, &population.csv).expect("members.csv");
    let import = support::credshift()
        .args(["accounts", "import", "--realm", REALM, "--store", &store])
        // Setup, not under test: fewer, larger transactions.
        .args(["--batch-size", "5000"])
        .arg(&members_csv)
        .output()
        .expect("credshift accounts import");
    assert!(
        import.status.success(),
        "import failed:\n{}{}",
        String::from_utf8_lossy(&import.stdout),
        String::from_utf8_lossy(&import.stderr)
    );
    let in_scope = population
        .imported
        .values()
        .filter(|(l, _)| l.is_some())
        .count() as i64;
    eprintln!(
        "imported {} accounts ({in_scope} holding login) in {:.1?}",
        population.imported.len(),
        test_started.elapsed()
    );

    // The example's policy and cutover, `at` some seconds ahead (serve
    // starts in one or two), small batches.
    let at = Timestamp::from_second(Timestamp::now().as_second() + 10).expect("at");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    std::fs::copy(
        example_dir().join("policy.yaml"),
        manifests.join("policy.yaml"),
    )
    .expect("policy");
    let cutover = std::fs::read_to_string(example_dir().join("cutover.yaml")).expect("cutover");
    for from in ["at: \"2018-04-18T00:00:00+09:00\"", "batchSize: 1000"] {
        assert!(
            cutover.contains(from),
            "the example's cutover changed: {from}"
        );
    }
    let cutover = cutover
        .replace(
            "at: \"2018-04-18T00:00:00+09:00\"",
            &format!("at: \"{}\"", at.strftime("%Y-%m-%dT%H:%M:%S+00:00")),
        )
        .replace("batchSize: 1000", &format!("batchSize: {BATCH_SIZE}"));
    std::fs::write(manifests.join("cutover.yaml"), cutover).expect("cutover");

    let tokens = Tokens::new();
    std::fs::write(dir.path().join("tokens.yaml"), tokens.yaml(REALM)).expect("tokens");
    let outbox_key = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(random_bytes(32))
    };
    let smtp = SmtpServer::start();
    let (serve, port) = start_serve(dir.path(), &manifests, &store, &smtp, &outbox_key);
    let ctx = Ctx {
        port,
        tokens: &tokens,
        smtp: &smtp,
    };
    let (sample, demo) = population.known.split_at(SAMPLE);
    let member_of = |c: usize| {
        if (2..2 + DEMO.len()).contains(&c) {
            demo[c - 2].clone()
        } else {
            sample[c].clone()
        }
    };

    // Before `at` the source answers and governs: the portal cannot change
    // the support purpose (the login password is changed via the utility).
    let mut setup = Client::new(
        &ctx,
        "setup".into(),
        "10.10.0.1".into(),
        sample[SAMPLE - 1].clone(),
    );
    assert!(
        Timestamp::now() + Duration::from_millis(1500) < at,
        "serve took more than 8 s to start: the check before `at` cannot be made"
    );
    let p = setup.member.password.clone();
    let portal = tokens.portal.clone();
    let new = setup.fresh("before-at");
    setup.change(
        "before `at`: the portal may not change",
        &portal,
        SUPPORT,
        &p,
        &new,
        Want::Error(403, "channel_not_allowed"),
    );

    // Another application holds one account the backfill reaches in its last
    // batches, so the whole load runs in the dual-read phase however fast the
    // backfill is; it lets go once the load is over.
    let hold = RowHold::start(
        &store,
        block_on(last_unknown_in_scope(&store, &population.known)),
    );

    // From `at`: `apply` (file driver) runs the backfill while the load runs.
    std::thread::sleep(Duration::from_millis(
        (at.as_millisecond() - Timestamp::now().as_millisecond()).max(0) as u64 + 200,
    ));
    let manifests_arg = manifests.to_str().expect("utf-8");
    let apply_started = Instant::now();
    let mut apply = Proc::start(
        dir.path(),
        "apply",
        &[
            "apply",
            "-f",
            manifests_arg,
            "--store",
            &store,
            "--log",
            "info",
        ],
        &[],
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (samples, reports, load_started, load_elapsed, mut metrics_after_load) =
        std::thread::scope(|s| {
            let watcher = s.spawn(|| monitor(store.clone(), &stop));
            // Stops the monitor however this closure ends (the scope joins it).
            let _stop = StopOnDrop(&stop);
            // The load starts once the backfill has started.
            let deadline = Instant::now() + Duration::from_secs(60);
            let started = block_on(async {
                let mut conn = sqlx::PgConnection::connect(&store).await.expect("connect");
                loop {
                    if let Some(cp) = checkpoint(&mut conn).await {
                        return cp;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "the cutover did not start; apply:\n{}",
                        apply.log()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            let load_started = Instant::now();
            eprintln!(
                "load starts at checkpoint {started:?}, {:.1?} after apply",
                apply_started.elapsed()
            );
            assert!(
                started.0 == "running" && started.1 < started.2,
                "the backfill must still be running when the load starts: {started:?}"
            );
            let clients: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let (ctx, member) = (&ctx, member_of(c));
                    std::thread::Builder::new()
                        .stack_size(512 * 1024)
                        .spawn_scoped(s, move || run_client(ctx, c, member))
                        .expect("client thread")
                })
                .collect();
            let reports: Vec<Report> = clients
                .into_iter()
                .map(|h| h.join().expect("client panicked"))
                .collect();
            let elapsed = load_started.elapsed();
            let metrics = http::get(port, "/metrics").1;
            hold.release();
            drop(_stop);
            (
                watcher.join().expect("monitor"),
                reports,
                load_started,
                elapsed,
                metrics,
            )
        });
    let mut problems: Vec<String> = reports
        .iter()
        .flat_map(|r| r.rec.problems.clone())
        .collect();
    problems.extend(setup.rec.problems.clone());
    let load_calls: Vec<Call> = reports.iter().flat_map(|r| r.rec.calls.clone()).collect();
    print_latencies(&load_calls, load_elapsed);

    // The cutover ran during the load: when did it complete?
    let completed_at = samples
        .iter()
        .find(|(_, cp)| cp.as_ref().is_some_and(|c| c.0 != "running"))
        .map(|(t, _)| *t);
    let during = |c: &&Call| completed_at.is_none_or(|t| c.started + c.took < t);
    let dual_read: Vec<&Call> = load_calls.iter().filter(during).collect();
    let dual_changes = dual_read
        .iter()
        .filter(|c| c.endpoint == "/v1/change" && c.status == 200)
        .count();
    let dual_verifies = dual_read
        .iter()
        .filter(|c| c.endpoint == "/v1/verify" && c.status == 200)
        .count();
    let backfill_started = samples.iter().find(|(_, cp)| cp.is_some()).map(|s| s.0);
    eprintln!(
        "dual read: {} of {} answers while the backfill ran ({dual_verifies} verify ok, \
         {dual_changes} changes); backfill of {in_scope} accounts took {:.1?}, \
         completed {:.1?} after the load started (None: after the load)",
        dual_read.len(),
        load_calls.len(),
        completed_at
            .zip(backfill_started)
            .map(|(end, start)| end.duration_since(start)),
        completed_at.map(|t| t.duration_since(load_started)),
    );
    let at_load_end = samples
        .iter()
        .rfind(|(t, _)| *t <= load_started + load_elapsed)
        .and_then(|(_, cp)| cp.clone());
    eprintln!("checkpoint when the load ended: {at_load_end:?}");
    assert!(
        dual_read.len() == load_calls.len() && dual_changes > 0 && dual_verifies > 0,
        "the whole load must be answered in the dual-read phase ({} of {} were; the held \
         account keeps the backfill from completing), changes and verifies among it",
        dual_read.len(),
        load_calls.len()
    );

    // `apply` completes the cutover.
    let status = apply.wait(Duration::from_secs(300));
    let apply_out = apply.out();
    assert!(
        status.is_some_and(|s| s.success()),
        "apply: {status:?}\n{apply_out}\n{}",
        apply.log()
    );
    let progress = format!("{in_scope}/{in_scope} (100%)");
    assert!(
        apply_out
            .lines()
            .any(|l| l.starts_with(CUTOVER) && l.contains("Completed") && l.contains(&progress)),
        "apply's status table: {apply_out}"
    );

    // The invariant over every account.
    let touched: HashSet<String> = reports.iter().map(|r| r.member.login_id.clone()).collect();
    let broken = block_on(check_invariant(&store, &population, &touched));
    assert!(
        broken.is_empty(),
        "cutover invariant broken for {} accounts:\n{}",
        broken.len(),
        broken
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    eprintln!("invariant checked at {:.1?}", test_started.elapsed());

    // What the clients' members answer to now, in the Direct phase (and a
    // few members nobody touched, whose hashes the invariant compared).
    let mut checks = Vec::new();
    let mut members: Vec<(&Member, &str, &str)> = population
        .known
        .iter()
        .filter(|m| !touched.contains(&m.login_id))
        .step_by(10)
        .map(|m| (m, m.password.as_str(), m.password.as_str()))
        .collect();
    for r in &reports {
        let m = population
            .known
            .iter()
            .find(|m| m.login_id == r.member.login_id);
        members.push((m.expect("a known member"), &r.support, &r.connection));
    }
    for (m, s, c) in members {
        for (purpose, pw) in [(SUPPORT, s), (CONNECTION, c)] {
            checks.push((
                m.clone(),
                purpose,
                pw.to_owned(),
                Want::Ok { must_change: false },
            ));
            if pw != m.password {
                checks.push((m.clone(), purpose, m.password.clone(), Want::Denied));
            }
        }
    }
    let Record {
        problems: final_problems,
        calls: final_calls,
        ..
    } = verify_final(&ctx, checks);
    problems.extend(final_problems);
    eprintln!(
        "{} answers checked after the cutover at {:.1?}",
        final_calls.len(),
        test_started.elapsed()
    );
    // The source is retained for rollback: `login` still holds the old
    // password (`credshift accounts verify`, a few members of each role).
    let mut logins: Vec<(&Member, String, bool)> = reports
        .iter()
        .filter(|r| r.role != Role::Refusals)
        .step_by(20)
        .filter_map(|r| {
            population
                .known
                .iter()
                .find(|m| m.login_id == r.member.login_id)
        })
        .map(|m| (m, m.password.clone(), true))
        .collect();
    // And one that must fail, so that the check can.
    logins.push((logins[0].0, "not-the-login-password".into(), false));
    let login_checks: Vec<_> = logins
        .into_iter()
        .map(|(m, password, matches)| {
            let mut verify = support::credshift()
                .args(["accounts", "verify", "--realm", REALM, "--credential"])
                .args(["login", "--store", &store, &m.login_id])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("credshift accounts verify");
            writeln!(verify.stdin.take().expect("stdin"), "{password}").expect("password");
            (m.login_id.clone(), matches, verify)
        })
        .collect();
    for (login_id, matches, mut verify) in login_checks {
        let status = verify.wait().expect("accounts verify");
        if status.code() != Some(if matches { 0 } else { 1 }) {
            problems.push(format!(
                "{login_id}: credshift accounts verify --credential login: {status}, expected {}",
                if matches { "a match" } else { "no match" }
            ));
        }
    }

    // Mail: one for each support recovery, at the base address; none for the connection.
    std::thread::sleep(Duration::from_secs(1));
    let mut mailed: Vec<String> = smtp.mails().into_iter().flat_map(|m| m.to).collect();
    mailed.sort();
    let mut want_mailed: Vec<String> = reports
        .iter()
        .filter(|r| r.role == Role::SupportRecovery)
        .map(|r| r.member.email.clone())
        .collect();
    want_mailed.sort();
    if mailed != want_mailed {
        problems.push(format!(
            "recovery mail went to {mailed:?}, expected exactly {want_mailed:?}"
        ));
    }

    // Every answer is documented; none is a 5xx.
    let mut all_calls = load_calls.clone();
    all_calls.extend(setup.rec.calls.iter().cloned());
    all_calls.extend(final_calls);
    let documented: HashMap<&str, &[u16]> = HashMap::from([
        ("/v1/verify", &[200, 400, 401, 403, 404][..]),
        ("/v1/change", &[200, 400, 401, 403, 404, 422][..]),
        ("/v1/recovery", &[202, 400, 401, 403, 404, 429][..]),
        ("/v1/helpdesk/reset", &[200, 400, 401, 403, 404][..]),
    ]);
    let mut statuses: BTreeMap<(&str, u16), usize> = BTreeMap::new();
    for c in &all_calls {
        *statuses.entry((c.endpoint, c.status)).or_default() += 1;
    }
    eprintln!("answers: {statuses:?}");
    let server_errors = all_calls.iter().filter(|c| c.status >= 500).count();
    assert_eq!(
        server_errors,
        0,
        "5xx answers: {statuses:?}\nserve log:\n{}",
        serve
            .log()
            .lines()
            .filter(|l| l.contains("ERROR"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    for ((endpoint, status), n) in &statuses {
        assert!(
            documented[endpoint].contains(status),
            "{n} undocumented {status} answers from {endpoint}"
        );
    }
    // Denials take at least --min-denial-time (a floor, not a speed).
    let fast_denials = all_calls
        .iter()
        .filter(|c| {
            (c.endpoint == "/v1/verify" && c.status == 401)
                || (c.endpoint == "/v1/change" && c.code == "wrong_current_password")
                || c.endpoint == "/v1/recovery"
        })
        .filter(|c| c.took < MIN_DENIAL)
        .count();
    assert_eq!(
        fast_denials, 0,
        "denials or recovery answers faster than --min-denial-time"
    );

    // Throttling, from the server's own count: exactly the attackers' answers.
    let count = |endpoint: &str, status: u16, code: Option<&str>| {
        load_calls
            .iter()
            .chain(&setup.rec.calls)
            .filter(|c| {
                c.endpoint == endpoint && c.status == status && code.is_none_or(|k| c.code == k)
            })
            .count()
    };
    let m = |e: &str, o: &str| metric(&metrics_after_load, e, o);
    assert!(m("verify", "ok") > 0, "metrics: {metrics_after_load}");
    let (hammer, burst) = (&reports[0], &reports[1]);
    let void_runs: usize = reports.iter().map(|r| r.rec.void_runs).sum();
    let burst_throttled =
        m("verify", "throttled") as i64 - (hammer.rec.throttled.0 + burst.rec.throttled.0) as i64;
    let burst_checked = BURST as i64 - burst_throttled;
    eprintln!(
        "throttled: verify {} (hammer {}, burst {} + 1), change {}; burst of {BURST}: {burst_checked} checked against the hash (documented: at most {FAILURES}); void runs {void_runs}",
        m("verify", "throttled"),
        hammer.rec.throttled.0,
        burst_throttled,
        m("change", "throttled"),
    );
    let accounted = [
        (
            "verify ok",
            m("verify", "ok"),
            count("/v1/verify", 200, None),
        ),
        (
            "verify denied",
            m("verify", "denied") + m("verify", "throttled"),
            count("/v1/verify", 401, None),
        ),
        (
            "verify must change",
            m("verify", "must_change"),
            count("/v1/verify", 403, None),
        ),
        (
            "change changed",
            m("change", "changed"),
            count("/v1/change", 200, None),
        ),
        (
            "change denied",
            m("change", "denied") + m("change", "throttled"),
            count("/v1/change", 403, Some("wrong_current_password")),
        ),
        (
            "change refused",
            m("change", "refused"),
            count("/v1/change", 403, Some("channel_not_allowed")) + count("/v1/change", 422, None),
        ),
        (
            "recovery accepted",
            m("recovery", "accepted"),
            count("/v1/recovery", 202, None),
        ),
        (
            "reset",
            m("helpdesk_reset", "reset"),
            count("/v1/helpdesk/reset", 200, None),
        ),
        (
            "reset refused",
            m("helpdesk_reset", "refused"),
            count("/v1/helpdesk/reset", 403, None),
        ),
    ];
    for (what, server, clients) in accounted {
        assert_eq!(
            server, clients,
            "{what}: /metrics counts {server}, the clients saw {clients}"
        );
    }
    if void_runs == 0 {
        assert_eq!(
            m("change", "throttled"),
            hammer.rec.throttled.1,
            "throttled changes"
        );
        // The checks of one account take turns (src/engine/guesses.rs),
        // each reading the counts the one before wrote, so of a burst sent
        // at once at most `FAILURES` guesses reach the hash (fewer if the
        // account's streak of failures had begun before it) and the rest
        // are throttled. (Counted after the hash without turns, every guess
        // of the burst was checked: 30 of 30.)
        assert!(
            (1..=FAILURES as i64).contains(&burst_checked),
            "{burst_checked} guesses of a burst of {BURST} checked against the hash"
        );
    }
    metrics_after_load = http::get(port, "/metrics").1;

    // No password, temporary password, token or key in any log or in /metrics.
    let mut secrets: Vec<String> = reports.iter().flat_map(|r| r.rec.secrets.clone()).collect();
    secrets.extend(setup.rec.secrets.iter().cloned());
    secrets.extend(population.known.iter().map(|m| m.password.clone()));
    secrets.extend([
        tokens.portal.clone(),
        tokens.utility.clone(),
        tokens.helpdesk.clone(),
        tokens.radius.clone(),
        outbox_key.clone(),
    ]);
    let places = [
        ("serve's log", serve.log()),
        ("apply's output", format!("{apply_out}{}", apply.log())),
        ("/metrics", metrics_after_load),
    ];
    assert!(
        places[0].1.contains("DEBUG"),
        "serve ran with debug logging"
    );
    // One pass over each text: the secrets as one alternation of literals.
    let escaped: Vec<String> = secrets.iter().map(|s| regex::escape(s)).collect();
    let any_secret = regex::RegexBuilder::new(&escaped.join("|"))
        .size_limit(1 << 26)
        .build()
        .expect("secrets regex");
    for (place, text) in &places {
        let leaked = any_secret.find_iter(text).count();
        // The message shows where, never the secret itself.
        let at = any_secret.find(text).map(|m| m.start());
        assert_eq!(
            leaked, 0,
            "{leaked} secrets in {place} (first at byte {at:?})"
        );
    }
    eprintln!(
        "{} secrets looked for in {} bytes of logs at {:.1?}",
        secrets.len(),
        places.iter().map(|(_, t)| t.len()).sum::<usize>(),
        test_started.elapsed()
    );

    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    eprintln!("total {:.1?}", test_started.elapsed());
}
