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

/// The receiver: `python3 -c SCRIPT PORT DIR`. Each message becomes
/// `DIR/NNNNNN.json` (written to a temporary name, then renamed, so a reader
/// never sees half a file).
const SCRIPT: &str = r#"
import email, email.policy, json, os, sys, threading
from aiosmtpd.controller import Controller

port, out = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
seq = [0]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",)) or msg
        body = "" if part.is_multipart() else part.get_content()
        with lock:
            seq[0] += 1
            n = seq[0]
        record = {
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "header_from": str(msg.get("from", "")),
            "subject": str(msg.get("subject", "")),
            "body": body,
        }
        tmp = os.path.join(out, "%06d.json.tmp" % n)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False)
        os.rename(tmp, os.path.join(out, "%06d.json" % n))
        return "250 Message accepted for delivery"

controller = Controller(Handler(), hostname="127.0.0.1", port=port)
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
    /// The decoded text/plain body.
    pub body: String,
    /// The file it was recorded in (`NNNNNN.json`, in arrival order).
    pub file: String,
}

/// A running receiver; killed on drop.
pub struct SmtpServer {
    pub port: u16,
    pub dir: PathBuf,
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
        Self::start_with(None)
    }

    /// Starts a receiver on `port` (e.g. one a process was told to use
    /// before anything listened there).
    pub fn start_on(port: u16) -> SmtpServer {
        Self::start_with(Some(port))
    }

    fn start_with(port: Option<u16>) -> SmtpServer {
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start(port) {
                Ok(s) => return s,
                Err(e) => last_error = e,
            }
        }
        panic!(
            "cannot start the SMTP test server ({}): {last_error}",
            install_hint()
        );
    }

    fn try_start(port: Option<u16>) -> Result<SmtpServer, String> {
        let temp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let dir = temp.path().join("mail");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = temp.path().join("smtpd.log");
        let log_file = std::fs::File::create(&log).map_err(|e| format!("log file: {e}"))?;
        let port = port.unwrap_or_else(super::controller::free_port);
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .arg(port.to_string())
            .arg(&dir)
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
            child,
            stdin,
            log,
            taken: Mutex::new(HashSet::new()),
            _temp: temp,
        })
    }

    /// `smtp://127.0.0.1:PORT`, for `credshift serve --smtp`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
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
        body: s("body"),
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
