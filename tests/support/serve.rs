//! A real `credshift serve` on its own SQLite store, filled by
//! `credshift apply -f examples/2018-split`, for the API suites.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use credshift::store::{RecoveryCounts, Store};
use serde_json::{Value, json};

use super::http::{self, Response};
use super::process::{Guard, Process, on_free_port};
use super::smtp::SmtpServer;
use super::tokens::{Tokens, random_bytes};

pub const REALM: &str = "wakwak";
/// Stored as argon2id with the default parameters (m=19456, t=2), so a
/// wrong password costs what the unknown-account dummy verify costs.
pub const KENJI: &str = "ab000006";

/// The demo members of examples/2018-split and their login passwords (its
/// README); each mail password is the login ID followed by `-mail`.
pub const DEMO: [(&str, &str); 6] = [
    ("ab000001", "taro-login-1998"),
    ("ab000002", "hanako-pass-2001"),
    ("ab000003", "jiro-secret-77"),
    ("ab000004", "saburo-ldap-pw"),
    ("ab000005", "yoko-sunrise-5"),
    ("ab000006", "kenji-argon-66"),
];

pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/2018-split")
}

pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// A step between `apply` and `serve`: the manifests directory, the store's URL.
pub type BeforeServe = dyn Fn(&Path, &str);

/// How to start a serve.
#[derive(Default)]
pub struct Options<'a> {
    /// Replaces the cutover's `at` (the example's is 2018-04-18T00:00:00+09:00).
    pub cutover_at: Option<&'a str>,
    /// Replaces the support password's ticket `ttl` (the example's is 24h).
    pub ttl: Option<&'a str>,
    /// Sets `recovery.helpdesk.ttl` of every help-desk credential (by
    /// default 24h).
    pub helpdesk_ttl: Option<&'a str>,
    /// Deliver recovery mail to this server (trusting its CA, if it has one).
    pub smtp: Option<&'a SmtpServer>,
    /// The relay URL to use instead of the server's own (a wrong password, say).
    pub smtp_url: Option<&'a str>,
    /// More `credshift serve` flags.
    pub args: &'a [&'a str],
    /// Serve HTTPS with a fresh self-signed certificate for 127.0.0.1
    /// (made with `openssl`); readiness is then the listener accepting.
    pub tls: bool,
    /// `--log` (default `info`).
    pub log: Option<&'a str>,
    /// Extra members `ab1000NN` (NN from 01), each with KENJI's hashes (or
    /// `extra_like`'s) and
    /// the base address `ab1000NN@wakwak.example.jp`.
    pub extra_members: usize,
    /// Whose hashes the extra members copy instead of KENJI's.
    pub extra_like: Option<&'a str>,
    /// Leave the cutover out of the manifests altogether: the policy is
    /// applied as if synced before its cutover ever was.
    pub omit_cutover: bool,
    /// Run after `apply` and before `serve` starts, with the manifests
    /// directory and the store's URL (to change either).
    pub before_serve: Option<&'a BeforeServe>,
}

pub fn extra_member(n: usize) -> String {
    format!("ab1{n:05}")
}

/// A running `credshift serve` on its own store, under the watchdog
/// ([`Guard::Watchdog`]); stopped on drop.
pub struct Serve {
    pub process: Process,
    pub port: u16,
    pub store_url: String,
    pub db: PathBuf,
    pub tokens: Tokens,
    /// CREDSHIFT_OUTBOX_KEY (base64) and its raw bytes.
    pub outbox_key: String,
    pub outbox_key_bytes: Vec<u8>,
    pub _dir: tempfile::TempDir,
}

impl Serve {
    /// Copies the example (with the options' edits), applies it to a fresh
    /// SQLite store (imports the members and, with the real date, completes
    /// the 2018 split), and starts `credshift serve` on it.
    pub fn start(o: Options<'_>) -> Serve {
        let dir = tempfile::tempdir().expect("temp dir");
        let manifests = dir.path().join("manifests");
        std::fs::create_dir_all(&manifests).expect("mkdir");
        for name in ["policy.yaml", "cutover.yaml", "members.csv"] {
            if o.omit_cutover && name == "cutover.yaml" {
                continue;
            }
            let mut text = std::fs::read_to_string(example_dir().join(name)).expect("example");
            if let (Some(ttl), "policy.yaml") = (o.ttl, name) {
                assert!(text.contains("ttl: 24h"), "the example's ttl moved");
                text = text.replace("ttl: 24h", &format!("ttl: {ttl}"));
            }
            if let (Some(ttl), "policy.yaml") = (o.helpdesk_ttl, name) {
                let mode = "        mode: Helpdesk\n";
                assert!(
                    text.contains(mode),
                    "the example's help-desk recovery moved"
                );
                text = text.replace(
                    mode,
                    &format!("{mode}        helpdesk:\n          ttl: {ttl}\n"),
                );
            }
            if name == "members.csv" && o.extra_members > 0 {
                let like = o.extra_like.unwrap_or(KENJI);
                let row = text
                    .lines()
                    .find(|l| l.starts_with(like))
                    .unwrap_or_else(|| panic!("{like} in members.csv"))
                    .to_owned();
                let hashes = row.split_once(".jp,").expect("csv row").1;
                for n in 1..=o.extra_members {
                    let id = extra_member(n);
                    text.push_str(&format!("{id},{id}@wakwak.example.jp,{hashes}\n"));
                }
            }
            if let (Some(at), "cutover.yaml") = (o.cutover_at, name) {
                let from = "at: \"2018-04-18T00:00:00+09:00\"";
                assert!(text.contains(from), "the example's cutover date moved");
                text = text.replace(from, &format!("at: \"{at}\""));
            }
            std::fs::write(manifests.join(name), text).expect("write manifest");
        }
        let db = dir.path().join("credshift.db");
        let store_url = format!("sqlite://{}", db.display());
        let out = super::credshift()
            .args(["apply", "-f"])
            .arg(&manifests)
            .args(["--store", &store_url])
            .output()
            .expect("run credshift apply");
        assert!(
            out.status.success(),
            "credshift apply failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(hook) = o.before_serve {
            hook(&manifests, &store_url);
        }
        let tokens = Tokens::new();
        let tokens_file = dir.path().join("tokens.yaml");
        std::fs::write(&tokens_file, tokens.yaml(REALM)).expect("tokens file");
        let outbox_key_bytes = random_bytes(32);
        let outbox_key = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(&outbox_key_bytes)
        };
        let tls_args: Vec<String> = if o.tls {
            let (cert, key) = super::tls::self_signed(dir.path(), "/CN=localhost", "IP:127.0.0.1");
            vec![
                format!("--tls-cert={}", cert.display()),
                format!("--tls-key={}", key.display()),
            ]
        } else {
            Vec::new()
        };
        let log = dir.path().join("serve.log");
        let (process, port) = on_free_port(
            |port| {
                let mut cmd = super::credshift();
                cmd.args(["serve", "-f"])
                    .arg(&manifests)
                    .args(["--store", &store_url, "--tokens"])
                    .arg(&tokens_file)
                    .args(["--listen", &format!("127.0.0.1:{port}")])
                    .args(["--log", o.log.unwrap_or("info")])
                    .args(o.args)
                    .args(&tls_args)
                    .env("CREDSHIFT_OUTBOX_KEY", &outbox_key);
                // As a Secret would give it: the URL may carry a password.
                if let Some(smtp) = o.smtp {
                    cmd.env("CREDSHIFT_SMTP", o.smtp_url.unwrap_or(&smtp.url()));
                    if let Some(ca) = &smtp.ca {
                        cmd.arg("--smtp-ca-file").arg(ca);
                    }
                }
                Process::start(cmd, Guard::Watchdog, &log)
            },
            |serve, port| {
                if o.tls {
                    serve.wait_listening(port, Duration::from_secs(60))
                } else {
                    serve.wait_http(port, "/readyz", Duration::from_secs(60))
                }
            },
        );
        Serve {
            process,
            port,
            store_url,
            db,
            tokens,
            outbox_key,
            outbox_key_bytes,
            _dir: dir,
        }
    }

    /// What serve wrote to stderr so far.
    pub fn log(&self) -> String {
        self.process.log_text()
    }

    /// The process id of `credshift serve` itself, for reading its memory
    /// and threads from /proc.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn call(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        http::post(self.port, path, token, &body)
    }

    pub fn verify_raw(&self, login_id: &str, purpose: &str, password: &str) -> Response {
        http::post_raw(
            self.port,
            "/v1/verify",
            &self.tokens.portal,
            &json!({"realm": REALM, "login_id": login_id, "purpose": purpose, "password": password}),
        )
    }

    /// Verifies through the portal's token (the caller does not matter for verify).
    pub fn verify(&self, login_id: &str, purpose: &str, password: &str) -> (u16, Value) {
        let r = self.verify_raw(login_id, purpose, password);
        (r.status, r.json())
    }

    pub fn verify_from(
        &self,
        login_id: &str,
        purpose: &str,
        password: &str,
        client: &str,
    ) -> (u16, Value) {
        self.call(
            "/v1/verify",
            &self.tokens.radius,
            json!({"realm": REALM, "login_id": login_id, "purpose": purpose, "password": password, "client": client}),
        )
    }

    pub fn change(
        &self,
        token: &str,
        login_id: &str,
        purpose: &str,
        current: &str,
        new: &str,
    ) -> (u16, Value) {
        self.call(
            "/v1/change",
            token,
            json!({"realm": REALM, "login_id": login_id, "purpose": purpose,
                   "current_password": current, "new_password": new}),
        )
    }

    pub fn recovery_raw(&self, token: &str, login_id: &str, purpose: &str) -> Response {
        http::post_raw(
            self.port,
            "/v1/recovery",
            token,
            &json!({"realm": REALM, "login_id": login_id, "purpose": purpose}),
        )
    }

    /// A recovery request through the portal on behalf of the member at `client`.
    pub fn recovery_raw_from(&self, client: &str, login_id: &str, purpose: &str) -> Response {
        http::post_raw(
            self.port,
            "/v1/recovery",
            &self.tokens.portal,
            &json!({"realm": REALM, "login_id": login_id, "purpose": purpose, "client": client}),
        )
    }

    /// [`Serve::recovery_raw_from`], status and body.
    pub fn recovery_from(&self, client: &str, login_id: &str, purpose: &str) -> (u16, Value) {
        let r = self.recovery_raw_from(client, login_id, purpose);
        (r.status, r.json())
    }

    /// A recovery request through the portal ("forgot your member support password").
    pub fn recovery(&self, login_id: &str, purpose: &str) -> (u16, Value) {
        let r = self.recovery_raw(&self.tokens.portal, login_id, purpose);
        (r.status, r.json())
    }

    pub fn reset(&self, token: &str, login_id: &str, purpose: &str) -> (u16, Value) {
        self.call(
            "/v1/helpdesk/reset",
            token,
            json!({"realm": REALM, "login_id": login_id, "purpose": purpose}),
        )
    }

    pub fn counts(&self) -> RecoveryCounts {
        block_on(async {
            let store = Store::open(&self.store_url).await.expect("open store");
            let c = store.recovery_counts(REALM).await.expect("recovery counts");
            store.close().await;
            c
        })
    }
}
