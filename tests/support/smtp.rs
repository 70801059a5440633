//! A real SMTP server on loopback (Python's `aiosmtpd`) that records every
//! message it accepts as a JSON file: envelope sender and recipients, the
//! decoded subject and the decoded text body. The Python process exits when
//! its stdin reaches EOF, so it goes away with the test binary even when the
//! binary is killed; it is also killed on drop.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The receiver: `python3 -c SCRIPT PORT DIR MODE [CERT KEY USER PASSWORD]`
/// (MODE `plain`, `starttls` or `tls`: submission that requires STARTTLS
/// then AUTH, or implicit TLS then AUTH). Each message becomes
/// `DIR/NNNNNN.json` (written to a temporary name, then renamed, so a reader
/// never sees half a file).
const SCRIPT: &str = r#"
import email, email.policy, json, os, ssl, sys, threading
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

port, out, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
seq = [0]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        raw = email.message_from_bytes(envelope.content, policy=email.policy.compat32)
        part = msg.get_body(preferencelist=("plain",)) or msg
        body = "" if part.is_multipart() else part.get_content()
        with lock:
            seq[0] += 1
            n = seq[0]
        login = getattr(session, "auth_data", None)
        record = {
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "header_from": str(msg.get("from", "")),
            "subject": str(msg.get("subject", "")),
            "raw_subject": str(raw.get("subject", "")),
            "message_id": str(msg.get("message-id", "")),
            "date": str(msg.get("date", "")),
            "mime_version": str(msg.get("mime-version", "")),
            "content_type": str(msg.get("content-type", "")),
            "body": body,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "login": login.login.decode() if login is not None else None,
        }
        tmp = os.path.join(out, "%06d.json.tmp" % n)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False)
        os.rename(tmp, os.path.join(out, "%06d.json" % n))
        return "250 Message accepted for delivery"

kwargs = {}
if mode != "plain":
    cert, key, user, password = sys.argv[4:8]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == user.encode() and auth_data.password == password.encode()
        # handled=False: aiosmtpd answers a failure with 535 itself (left
        # unset, it waits for a reply that never comes).
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)
    kwargs = dict(authenticator=authenticator, auth_required=True)
    if mode == "starttls":
        kwargs.update(tls_context=context, require_starttls=True, auth_require_tls=True)
    else:
        # The whole connection is TLS; aiosmtpd's own check of it sees
        # only STARTTLS, so it is not asked to.
        kwargs.update(ssl_context=context, auth_require_tls=False)

controller = Controller(Handler(), hostname="127.0.0.1", port=port, **kwargs)
controller.start()
print("READY", flush=True)
try:
    sys.stdin.read()
finally:
    controller.stop()
"#;

/// One received message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// Envelope sender (`MAIL FROM`).
    pub from: String,
    /// Envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The `From:` header.
    pub header_from: String,
    /// The decoded `Subject:`.
    pub subject: String,
    /// The `Subject:` header as it travelled (RFC 2047 encoded words).
    pub raw_subject: String,
    pub message_id: String,
    pub date: String,
    pub mime_version: String,
    pub content_type: String,
    /// The decoded text/plain body.
    pub body: String,
    /// Whether the session was encrypted (STARTTLS or implicit TLS).
    pub tls: bool,
    /// The user it authenticated as, if it did.
    pub login: Option<String>,
    /// The file it was recorded in (`NNNNNN.json`, in arrival order).
    pub file: String,
}

/// What the receiver demands of its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Plain SMTP, as a relay inside a cluster.
    Plain,
    /// Submission: STARTTLS, then AUTH as `user` with `password`.
    StartTls { user: String, password: String },
    /// Implicit TLS (as on port 465), then AUTH.
    ImplicitTls { user: String, password: String },
}

/// A running receiver; killed on drop.
pub struct SmtpServer {
    pub port: u16,
    pub dir: PathBuf,
    pub security: Security,
    /// The CA that signed its certificate (TLS modes).
    pub ca: Option<PathBuf>,
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
    /// Mails already handed out by `wait_for_mail`.
    taken: Mutex<HashSet<String>>,
    _temp: tempfile::TempDir,
}

fn install_hint() -> &'static str {
    "the SMTP test server needs Python 3 with aiosmtpd: pip install aiosmtpd"
}

impl SmtpServer {
    /// Starts a receiver on a free loopback port.
    pub fn start() -> SmtpServer {
        Self::start_with(None, Security::Plain)
    }

    /// Starts a receiver on `port` (e.g. one a process was told to use
    /// before anything listened there).
    pub fn start_on(port: u16) -> SmtpServer {
        Self::start_with(Some(port), Security::Plain)
    }

    /// Starts a receiver that demands `security`, with a certificate for
    /// 127.0.0.1 signed by a CA of its own ([`SmtpServer::ca`]).
    pub fn start_secured(security: Security) -> SmtpServer {
        Self::start_with(None, security)
    }

    fn start_with(port: Option<u16>, security: Security) -> SmtpServer {
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start(port, &security) {
                Ok(s) => return s,
                Err(e) => last_error = e,
            }
        }
        panic!(
            "cannot start the SMTP test server ({}): {last_error}",
            install_hint()
        );
    }

    fn try_start(port: Option<u16>, security: &Security) -> Result<SmtpServer, String> {
        let temp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let dir = temp.path().join("mail");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = temp.path().join("smtpd.log");
        let log_file = std::fs::File::create(&log).map_err(|e| format!("log file: {e}"))?;
        let port = port.unwrap_or_else(super::process::free_port);
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(SCRIPT).arg(port.to_string()).arg(&dir);
        let ca = match security {
            Security::Plain => {
                cmd.arg("plain");
                None
            }
            Security::StartTls { user, password } | Security::ImplicitTls { user, password } => {
                let (ca, cert, key) = super::tls::ca_and_server(temp.path(), "IP:127.0.0.1");
                cmd.arg(if matches!(security, Security::StartTls { .. }) {
                    "starttls"
                } else {
                    "tls"
                })
                .arg(cert)
                .arg(key)
                .arg(user)
                .arg(password);
                Some(ca)
            }
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("python3: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let ready = rx
            .recv_timeout(Duration::from_secs(20))
            .map(|l| l.trim() == "READY")
            .unwrap_or(false);
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::fs::read_to_string(&log).unwrap_or_default());
        }
        Ok(SmtpServer {
            port,
            dir,
            security: security.clone(),
            ca,
            child,
            stdin,
            log,
            taken: Mutex::new(HashSet::new()),
            _temp: temp,
        })
    }

    /// Its URL for `credshift --smtp`: `smtp://127.0.0.1:PORT`, with the
    /// credentials and `?tls=required` for STARTTLS, or `smtps://`.
    pub fn url(&self) -> String {
        match &self.security {
            Security::Plain => format!("smtp://127.0.0.1:{}", self.port),
            Security::StartTls { user, password } => {
                format!(
                    "smtp://{user}:{password}@127.0.0.1:{}?tls=required",
                    self.port
                )
            }
            Security::ImplicitTls { user, password } => {
                format!("smtps://{user}:{password}@127.0.0.1:{}", self.port)
            }
        }
    }

    /// Every message received so far, in arrival order.
    pub fn mails(&self) -> Vec<Mail> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".json"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .into_iter()
            .map(|n| read_mail(&self.dir.join(&n), n))
            .collect()
    }

    /// Messages received so far for `to`.
    pub fn mails_to(&self, to: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == to))
            .collect()
    }

    /// The oldest message for `to` not yet returned by this method, waiting
    /// up to `timeout` for it to arrive.
    pub fn wait_for_mail(&self, to: &str, timeout: Duration) -> Mail {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut taken = self.taken.lock().expect("lock");
                if let Some(m) = self
                    .mails_to(to)
                    .into_iter()
                    .find(|m| !taken.contains(&m.file))
                {
                    taken.insert(m.file.clone());
                    return m;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "no mail for {to} within {timeout:?}; received: {:#?}; smtpd log:\n{}",
                    self.mails(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn read_mail(path: &Path, file: String) -> Mail {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    Mail {
        from: s("from"),
        to: v["to"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        header_from: s("header_from"),
        subject: s("subject"),
        raw_subject: s("raw_subject"),
        message_id: s("message_id"),
        date: s("date"),
        mime_version: s("mime_version"),
        content_type: s("content_type"),
        body: s("body"),
        tls: v["tls"].as_bool().unwrap_or(false),
        login: v["login"].as_str().map(str::to_owned),
        file,
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
