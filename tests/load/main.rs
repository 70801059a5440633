//! 200 concurrent API clients mixing verify, change and recovery during a
//! cutover: no 5xx, the invariant holds, throttling behaves as documented
//! (README, "The member-facing API").
//!
//! A PostgreSQL store gets 30,000 members through `credshift accounts
//! import` (real hashes: the example's legacy formats and argon2id). A real
//! `credshift serve` runs on the example policy with the 2018 split moved to
//! a few seconds from now, delivering recovery mail to a real SMTP receiver;
//! a real `credshift apply` (the file driver) runs the backfill with a small
//! `batchSize` while 200 client threads call the API over HTTP. Another
//! transaction holds the row of an account the backfill reaches in its last
//! batch until the load is over, so the whole load is answered in the
//! dual-read phase however fast this machine is.
//!
//! The scenario, one step after another on the same servers (setting them
//! up is most of the cost, so it is done once):
//! - [`Run::prepare`]: the members, the manifests, serve;
//! - [`Run::before_at`]: before `at` the source governs;
//! - [`Run::load`]: `apply` from `at`, 200 clients ([`clients`]) in the
//!   dual-read phase, each owning one member whose password it knows and
//!   checking every answer it gets, two of them attackers;
//! - then, once `apply` has completed the cutover, what must hold: every
//!   account holding `login` holds exactly one `support` and one
//!   `connection`, untouched ones the login hash in both
//!   ([`observe::check_invariant`]); every member answers with the passwords
//!   its client left it; the source is retained; mail went to the base
//!   addresses of support recoveries only; every answer is documented;
//!   `/metrics` counts exactly the answers the clients saw; no password used
//!   by the test is in any log.
//!
//! Throughput and latency are printed, never asserted.

// A panic in a test is its failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod clients;
mod observe;
mod population;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use credshift::store::Store;
use jiff::Timestamp;
use sqlx::Connection as _;
use support::http;
use support::process::{Guard, Process, on_free_port};
use support::serve::{DEMO, block_on, example_dir};
use support::smtp::SmtpServer;
use support::tokens::{Tokens, random_bytes};

use clients::{Call, Client, Ctx, Record, Report, Role, Want, Window, run_client};
use observe::{
    Progress, RowHold, StopOnDrop, check_invariant, checkpoint, last_unknown_in_scope, metric,
    monitor, print_latencies, verify_final,
};
use population::{Member, Population, population};

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
/// README: `--verify-failures` (10) per `--throttle-window`, the default
/// this serve runs with; the window's length is the test's
/// ([`clients::Window`]).
const FAILURES: usize = 10;
/// README: `--min-denial-time` (250ms), the default this serve runs with.
/// Kept: the padding sleeps, it does not burn CPU, and the clients are
/// concurrent, so it lengthens each answer, not the run.
const MIN_DENIAL: Duration = Duration::from_millis(250);
/// Wrong guesses the burst attacker sends at once.
const BURST: usize = 30;

#[test]
fn two_hundred_clients_during_a_cutover() {
    let run = Run::prepare();
    let setup = run.before_at();
    let mut load = run.load(setup);
    let mut problems = load.problems();
    run.answered_in_dual_read(&load);
    let apply_out = run.apply_completes(&mut load);
    run.invariant_holds(&load);
    let final_calls = run.members_answer_after_the_cutover(&load, &mut problems);
    run.source_is_retained(&load, &mut problems);
    run.mail_went_to_base_addresses_only(&load, &mut problems);
    run.every_answer_is_documented(&load, &final_calls);
    run.metrics_count_what_the_clients_saw(&load);
    run.no_secret_in_any_log(&load, &apply_out);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    eprintln!("total {:.1?}", run.started.elapsed());
}

/// The servers and what the test knows, set up once.
struct Run {
    started: Instant,
    dir: tempfile::TempDir,
    store: String,
    population: Population,
    /// Accounts holding `login`: what the cutover splits.
    in_scope: i64,
    at: Timestamp,
    manifests: PathBuf,
    tokens: Tokens,
    outbox_key: String,
    smtp: SmtpServer,
    serve: Process,
    port: u16,
    window: Window,
}

/// What the load left: the clients' reports and the cutover's course.
struct Load {
    setup: Record,
    reports: Vec<Report>,
    samples: Vec<(Instant, Option<Progress>)>,
    started: Instant,
    elapsed: Duration,
    metrics_after_load: String,
    apply: Process,
}

impl Load {
    fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .reports
            .iter()
            .flat_map(|r| r.rec.problems.clone())
            .collect();
        problems.extend(self.setup.problems.clone());
        problems
    }

    fn calls(&self) -> Vec<Call> {
        self.reports
            .iter()
            .flat_map(|r| r.rec.calls.clone())
            .collect()
    }

    fn touched(&self) -> HashSet<String> {
        self.reports
            .iter()
            .map(|r| r.member.login_id.clone())
            .collect()
    }
}

impl Run {
    /// Members imported with their hashes, the example's policy and cutover
    /// with `at` some seconds ahead and small batches, serve started.
    fn prepare() -> Run {
        let started = Instant::now();
        let dir = tempfile::tempdir().expect("temp dir");
        let store = block_on(support::postgres::server().fresh_database());

        let population = population();
        eprintln!("members and hashes made in {:.1?}", started.elapsed());
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
            started.elapsed()
        );

        // `at` some seconds ahead: serve starts in one or two.
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
        let window = Window::choose();
        eprintln!("throttling window: {} minutes", window.minutes);
        let (serve, port) = on_free_port(
            |port| {
                let mut cmd = support::credshift();
                cmd.arg("serve")
                    .arg("-f")
                    .arg(&manifests)
                    .args(["--store", &store, "--tokens"])
                    .arg(dir.path().join("tokens.yaml"))
                    .args(["--listen", &format!("127.0.0.1:{port}")])
                    .args(["--smtp", &smtp.url(), "--log", "debug"])
                    .args(["--throttle-window", &window.arg()])
                    // Room for every client at once: this test holds the API
                    // to no 5xx, so nothing may be shed (tests/overload.rs sheds).
                    .args(["--hash-queue", "256"])
                    .env("CREDSHIFT_OUTBOX_KEY", &outbox_key);
                Process::start(cmd, Guard::Watchdog, &dir.path().join("serve.log"))
            },
            |serve, port| serve.wait_http(port, "/readyz", Duration::from_secs(60)),
        );
        Run {
            started,
            dir,
            store,
            population,
            in_scope,
            at,
            manifests,
            tokens,
            outbox_key,
            smtp,
            serve,
            port,
            window,
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            port: self.port,
            tokens: &self.tokens,
            smtp: &self.smtp,
            window: self.window,
        }
    }

    /// The member client `c` owns: the sample's, and the demo members for
    /// clients 2 to 7.
    fn member_of(&self, c: usize) -> Member {
        let (sample, demo) = self.population.known.split_at(SAMPLE);
        if (2..2 + DEMO.len()).contains(&c) {
            demo[c - 2].clone()
        } else {
            sample[c].clone()
        }
    }

    /// Before `at` the source answers and governs: the portal cannot change
    /// the support purpose (the login password is changed via the utility).
    fn before_at(&self) -> Record {
        let ctx = self.ctx();
        let (sample, _) = self.population.known.split_at(SAMPLE);
        let mut setup = Client::new(
            &ctx,
            "setup".into(),
            "10.10.0.1".into(),
            sample[SAMPLE - 1].clone(),
        );
        assert!(
            Timestamp::now() + Duration::from_millis(1500) < self.at,
            "serve took more than 8 s to start: the check before `at` cannot be made"
        );
        let p = setup.member.password.clone();
        let portal = self.tokens.portal.clone();
        let new = setup.fresh("before-at");
        setup.change(
            "before `at`: the portal may not change",
            &portal,
            SUPPORT,
            &p,
            &new,
            Want::Error(403, "channel_not_allowed"),
        );
        setup.rec
    }

    /// From `at`: `apply` (the file driver) runs the backfill while the
    /// clients run. Another application holds one account the backfill
    /// reaches in its last batches, so the whole load runs in the dual-read
    /// phase however fast the backfill is; it lets go once the load is over.
    fn load(&self, setup: Record) -> Load {
        let hold = RowHold::start(
            &self.store,
            block_on(last_unknown_in_scope(&self.store, &self.population.known)),
        );
        std::thread::sleep(Duration::from_millis(
            (self.at.as_millisecond() - Timestamp::now().as_millisecond()).max(0) as u64 + 200,
        ));
        let apply_started = Instant::now();
        let mut cmd = support::credshift();
        cmd.args(["apply", "-f"]).arg(&self.manifests).args([
            "--store",
            &self.store,
            "--log",
            "info",
        ]);
        let apply = Process::start_keeping(
            cmd,
            Guard::Watchdog,
            &self.dir.path().join("apply.log"),
            Some(&self.dir.path().join("apply.out")),
        );
        let ctx = self.ctx();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (samples, reports, started, elapsed, metrics_after_load) = std::thread::scope(|s| {
            let watcher = s.spawn(|| monitor(self.store.clone(), &stop));
            // Stops the monitor however this closure ends (the scope joins it).
            let _stop = StopOnDrop(&stop);
            // The load starts once the backfill has started.
            let deadline = Instant::now() + Duration::from_secs(60);
            let first = block_on(async {
                let mut conn = sqlx::PgConnection::connect(&self.store)
                    .await
                    .expect("connect");
                loop {
                    if let Some(cp) = checkpoint(&mut conn).await {
                        return cp;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "the cutover did not start; apply:\n{}",
                        apply.log_text()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            let started = Instant::now();
            eprintln!(
                "load starts at checkpoint {first:?}, {:.1?} after apply",
                apply_started.elapsed()
            );
            assert!(
                first.0 == "running" && first.1 < first.2,
                "the backfill must still be running when the load starts: {first:?}"
            );
            let clients: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let (ctx, member) = (&ctx, self.member_of(c));
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
            let elapsed = started.elapsed();
            let metrics = http::get(self.port, "/metrics").1;
            hold.release();
            drop(_stop);
            (
                watcher.join().expect("monitor"),
                reports,
                started,
                elapsed,
                metrics,
            )
        });
        let load = Load {
            setup,
            reports,
            samples,
            started,
            elapsed,
            metrics_after_load,
            apply,
        };
        print_latencies(&load.calls(), load.elapsed);
        load
    }

    /// The cutover ran during the load: every answer came while it was in
    /// its dual-read phase, changes and verifies among them.
    fn answered_in_dual_read(&self, load: &Load) {
        let calls = load.calls();
        let completed_at = load
            .samples
            .iter()
            .find(|(_, cp)| cp.as_ref().is_some_and(|c| c.0 != "running"))
            .map(|(t, _)| *t);
        let during = |c: &&Call| completed_at.is_none_or(|t| c.started + c.took < t);
        let dual_read: Vec<&Call> = calls.iter().filter(during).collect();
        let ok = |endpoint: &str| {
            dual_read
                .iter()
                .filter(|c| c.endpoint == endpoint && c.status == 200)
                .count()
        };
        let (dual_changes, dual_verifies) = (ok("/v1/change"), ok("/v1/verify"));
        let backfill_started = load
            .samples
            .iter()
            .find(|(_, cp)| cp.is_some())
            .map(|s| s.0);
        eprintln!(
            "dual read: {} of {} answers while the backfill ran ({dual_verifies} verify ok, \
             {dual_changes} changes); backfill of {} accounts took {:.1?}, \
             completed {:.1?} after the load started (None: after the load)",
            dual_read.len(),
            calls.len(),
            self.in_scope,
            completed_at
                .zip(backfill_started)
                .map(|(end, start)| end.duration_since(start)),
            completed_at.map(|t| t.duration_since(load.started)),
        );
        let at_load_end = load
            .samples
            .iter()
            .rfind(|(t, _)| *t <= load.started + load.elapsed)
            .and_then(|(_, cp)| cp.clone());
        eprintln!("checkpoint when the load ended: {at_load_end:?}");
        assert!(
            dual_read.len() == calls.len() && dual_changes > 0 && dual_verifies > 0,
            "the whole load must be answered in the dual-read phase ({} of {} were; the held \
             account keeps the backfill from completing), changes and verifies among it",
            dual_read.len(),
            calls.len()
        );
    }

    /// `apply` completes the cutover and says so in its status table; its output.
    fn apply_completes(&self, load: &mut Load) -> String {
        let apply = &mut load.apply;
        let status = apply.wait(Duration::from_secs(300));
        let out = apply.out_text();
        assert!(
            status.is_some_and(|s| s.success()),
            "apply: {status:?}\n{out}\n{}",
            apply.log_text()
        );
        let progress = format!("{0}/{0} (100%)", self.in_scope);
        assert!(
            out.lines().any(|l| l.starts_with(CUTOVER)
                && l.contains("Completed")
                && l.contains(&progress)),
            "apply's status table: {out}"
        );
        out
    }

    /// The invariant over every account, read from the store.
    fn invariant_holds(&self, load: &Load) {
        let broken = block_on(check_invariant(
            &self.store,
            &self.population,
            &load.touched(),
        ));
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
        eprintln!("invariant checked at {:.1?}", self.started.elapsed());
    }

    /// What the clients' members answer to now, in the Direct phase (and a
    /// few members nobody touched, whose hashes the invariant compared);
    /// the answers it took.
    fn members_answer_after_the_cutover(
        &self,
        load: &Load,
        problems: &mut Vec<String>,
    ) -> Vec<Call> {
        let touched = load.touched();
        let mut members: Vec<(&Member, &str, &str)> = self
            .population
            .known
            .iter()
            .filter(|m| !touched.contains(&m.login_id))
            .step_by(10)
            .map(|m| (m, m.password.as_str(), m.password.as_str()))
            .collect();
        for r in &load.reports {
            members.push((self.known(&r.member), &r.support, &r.connection));
        }
        let mut checks = Vec::new();
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
        let ctx = self.ctx();
        let Record {
            problems: final_problems,
            calls,
            ..
        } = verify_final(&ctx, checks);
        problems.extend(final_problems);
        eprintln!(
            "{} answers checked after the cutover at {:.1?}",
            calls.len(),
            self.started.elapsed()
        );
        calls
    }

    /// The member as the test knows it (with the password it was imported with).
    fn known(&self, member: &Member) -> &Member {
        self.population
            .known
            .iter()
            .find(|m| m.login_id == member.login_id)
            .expect("a known member")
    }

    /// The source is retained for rollback: `login` still holds the old
    /// password (`credshift accounts verify`, a few members of each role).
    fn source_is_retained(&self, load: &Load, problems: &mut Vec<String>) {
        let mut logins: Vec<(&Member, String, bool)> = load
            .reports
            .iter()
            .filter(|r| r.role != Role::Refusals)
            .step_by(20)
            .map(|r| self.known(&r.member))
            .map(|m| (m, m.password.clone(), true))
            .collect();
        // And one that must fail, so that the check can.
        logins.push((logins[0].0, "not-the-login-password".into(), false));
        let login_checks: Vec<_> = logins
            .into_iter()
            .map(|(m, password, matches)| {
                let mut verify = support::credshift()
                    .args(["accounts", "verify", "--realm", REALM, "--credential"])
                    .args(["login", "--store", &self.store, &m.login_id])
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
    }

    /// Mail: one for each support recovery, at the base address; none for
    /// the connection. Read once the outbox has nothing left to send.
    fn mail_went_to_base_addresses_only(&self, load: &Load, problems: &mut Vec<String>) {
        let mut want: Vec<String> = load
            .reports
            .iter()
            .filter(|r| r.role == Role::SupportRecovery)
            .map(|r| r.member.email.clone())
            .collect();
        want.sort();
        let counts = block_on(async {
            let store = Store::open(&self.store).await.expect("open store");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let c = store.recovery_counts(REALM).await.expect("recovery counts");
                if c.mail_pending == 0 || Instant::now() > deadline {
                    store.close().await;
                    return c;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        assert_eq!(
            (counts.mail_pending, counts.mail_dead),
            (0, 0),
            "every queued mail delivered: {counts:?}"
        );
        let mut mailed: Vec<String> = self.smtp.mails().into_iter().flat_map(|m| m.to).collect();
        mailed.sort();
        if mailed != want || counts.mail_sent != want.len() as i64 {
            problems.push(format!(
                "recovery mail went to {mailed:?} ({} sent), expected exactly {want:?}",
                counts.mail_sent
            ));
        }
    }

    /// Every answer is one the README documents for its endpoint; none is a
    /// 5xx; denials take at least --min-denial-time (a floor, not a speed).
    fn every_answer_is_documented(&self, load: &Load, final_calls: &[Call]) {
        let mut all_calls = load.calls();
        all_calls.extend(load.setup.calls.iter().cloned());
        all_calls.extend(final_calls.iter().cloned());
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
            self.serve
                .log_text()
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
    }

    /// Throttling, from the server's own count: exactly the attackers'
    /// answers; and every other outcome in /metrics is exactly what the
    /// clients saw.
    fn metrics_count_what_the_clients_saw(&self, load: &Load) {
        let calls = load.calls();
        let count = |endpoint: &str, status: u16, code: Option<&str>| {
            calls
                .iter()
                .chain(&load.setup.calls)
                .filter(|c| {
                    c.endpoint == endpoint && c.status == status && code.is_none_or(|k| c.code == k)
                })
                .count()
        };
        let text = &load.metrics_after_load;
        let m = |e: &str, o: &str| metric(text, e, o);
        assert!(m("verify", "ok") > 0, "metrics: {text}");
        let (hammer, burst) = (&load.reports[0], &load.reports[1]);
        let burst_throttled = m("verify", "throttled") as i64
            - (hammer.rec.throttled.0 + burst.rec.throttled.0) as i64;
        let burst_checked = BURST as i64 - burst_throttled;
        eprintln!(
            "throttled: verify {} (hammer {}, burst {} + 1), change {}; burst of {BURST}: {burst_checked} checked against the hash (documented: at most {FAILURES})",
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
                count("/v1/change", 403, Some("channel_not_allowed"))
                    + count("/v1/change", 422, None),
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
            (
                "throttled changes",
                m("change", "throttled"),
                hammer.rec.throttled.1,
            ),
        ];
        for (what, server, clients) in accounted {
            assert_eq!(
                server, clients,
                "{what}: /metrics counts {server}, the clients saw {clients}"
            );
        }
        // The checks of one account take turns (src/engine/guesses.rs), each
        // reading the counts the one before wrote, so of a burst sent at once
        // at most `FAILURES` guesses reach the hash (fewer if the account's
        // streak of failures had begun before it) and the rest are
        // throttled. (Counted after the hash without turns, every guess of
        // the burst was checked: 30 of 30.)
        assert!(
            (1..=FAILURES as i64).contains(&burst_checked),
            "{burst_checked} guesses of a burst of {BURST} checked against the hash"
        );
    }

    /// No password, temporary password, token or key in any log or in /metrics.
    fn no_secret_in_any_log(&self, load: &Load, apply_out: &str) {
        let mut secrets: Vec<String> = load
            .reports
            .iter()
            .flat_map(|r| r.rec.secrets.clone())
            .collect();
        secrets.extend(load.setup.secrets.iter().cloned());
        secrets.extend(self.population.known.iter().map(|m| m.password.clone()));
        secrets.extend([
            self.tokens.portal.clone(),
            self.tokens.utility.clone(),
            self.tokens.helpdesk.clone(),
            self.tokens.radius.clone(),
            self.outbox_key.clone(),
        ]);
        let places = [
            ("serve's log", self.serve.log_text()),
            (
                "apply's output",
                format!("{apply_out}{}", load.apply.log_text()),
            ),
            ("/metrics", http::get(self.port, "/metrics").1),
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
            self.started.elapsed()
        );
    }
}
