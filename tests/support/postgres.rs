//! A throwaway PostgreSQL server from the machine's server binaries (initdb,
//! pg_ctl) in a temp dir on a free loopback port, unless `DATABASE_URL` names
//! one. Works as root (runs the server as the `postgres` or `nobody` user) and
//! as a normal user. Each test gets its own database.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

pub struct PgServer {
    /// URL of a database the tests may CREATE DATABASE from.
    pub admin_url: String,
    /// Held open for the life of the test binary; its EOF stops the server.
    _watchdog: Option<Mutex<(Child, ChildStdin)>>,
}

static SERVER: OnceLock<PgServer> = OnceLock::new();

/// The server for this test binary, started on first use.
pub fn server() -> &'static PgServer {
    SERVER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => PgServer {
            admin_url: url,
            _watchdog: None,
        },
        _ => start().unwrap_or_else(|e| {
            panic!(
                "cannot start a throwaway PostgreSQL server: {e}\n\
                 Install the server (Debian/Ubuntu: apt-get install -y postgresql) \
                 or set DATABASE_URL to a server where the user may CREATE DATABASE."
            )
        }),
    })
}

fn find_bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(dir) = candidates
        .into_iter()
        .rev()
        .find(|d| d.join("initdb").exists())
    {
        return Ok(dir);
    }
    let which = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output();
    match which {
        Ok(out) if out.status.success() => {
            let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            Ok(path.parent().map(Path::to_path_buf).unwrap_or_default())
        }
        _ => Err(
            "initdb and pg_ctl not found (looked in $PG_BIN, /usr/lib/postgresql/*/bin, $PATH)"
                .into(),
        ),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `runuser -u USER --` when running as root: PostgreSQL refuses to run as root.
fn run_as_prefix() -> Result<String, String> {
    if !is_root() {
        return Ok(String::new());
    }
    for user in ["postgres", "nobody"] {
        let exists = Command::new("id")
            .arg(user)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if exists {
            return Ok(format!("runuser -u {user} --"));
        }
    }
    Err("running as root and neither a 'postgres' nor a 'nobody' user exists".into())
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn start() -> Result<PgServer, String> {
    let bin = find_bin_dir()?;
    let run_as = run_as_prefix()?;
    let dir = tempfile::Builder::new()
        .prefix("credshift-pg-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?
        .keep();
    if !run_as.is_empty() {
        let user = run_as.split_whitespace().nth(2).unwrap_or("postgres");
        let status = Command::new("chown").arg("-R").arg(user).arg(&dir).status();
        if !status.map(|s| s.success()).unwrap_or(false) {
            return Err(format!("cannot chown {} to {user}", dir.display()));
        }
    }
    let port = free_port()?;
    let d = dir.display();
    let b = bin.display();
    // The watchdog starts the server, reports, then waits for EOF on stdin
    // (this test process exiting, however it exits) and stops and removes it.
    let script = format!(
        "set -e\n\
         {run_as} {b}/initdb -D {d}/data -U postgres --auth=trust --no-sync -E UTF8 --no-locale >{d}/initdb.log 2>&1\n\
         {run_as} {b}/pg_ctl -D {d}/data -l {d}/server.log -w -t 60 \
           -o \"-p {port} -h 127.0.0.1 -k {d} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300\" \
           start >/dev/null\n\
         echo STARTED\n\
         set +e\n\
         cat >/dev/null\n\
         {run_as} {b}/pg_ctl -D {d}/data -m immediate stop >/dev/null 2>&1\n\
         rm -rf {d}\n"
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    if line.trim() != "STARTED" {
        let logs = ["initdb.log", "server.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n");
        let _ = child.kill();
        return Err(format!("server did not start; its logs:\n{logs}"));
    }
    let stdin = child.stdin.take().ok_or("no stdin")?;
    Ok(PgServer {
        admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        _watchdog: Some(Mutex::new((child, stdin))),
    })
}

impl PgServer {
    /// Creates an empty database and returns its URL.
    pub async fn fresh_database(&self) -> String {
        use sqlx::Connection as _;
        let name = super::unique_name("t").replace('-', "_");
        let mut conn = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to the test PostgreSQL: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = conn.close().await;
        let base = self
            .admin_url
            .rsplit_once('/')
            .map_or(self.admin_url.as_str(), |(b, _)| b);
        format!("{base}/{name}")
    }
}

/// A PostgreSQL server of one test's own, which the test may stop and start
/// (fault tests). Stopped and removed on drop.
pub struct Dedicated {
    dir: PathBuf,
    bin: PathBuf,
    run_as: String,
    pub port: u16,
}

impl Dedicated {
    pub fn start_new() -> Dedicated {
        let bin = find_bin_dir().unwrap_or_else(|e| panic!("{e}"));
        let run_as = run_as_prefix().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::Builder::new()
            .prefix("credshift-pg-own-")
            .tempdir()
            .expect("temp dir")
            .keep();
        if let Some(user) = run_as.split_whitespace().nth(2) {
            let ok = Command::new("chown").arg("-R").arg(user).arg(&dir).status();
            assert!(
                ok.map(|s| s.success()).unwrap_or(false),
                "chown {}",
                dir.display()
            );
        }
        let port = free_port().expect("port");
        let server = Dedicated {
            dir,
            bin,
            run_as,
            port,
        };
        server.sh(&format!(
            "{} {}/initdb -D {}/data -U postgres --auth=trust --no-sync -E UTF8 --no-locale >/dev/null",
            server.run_as,
            server.bin.display(),
            server.dir.display()
        ));
        server.start();
        server
    }

    fn sh(&self, script: &str) {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start(&self) {
        self.sh(&format!(
            "{} {b}/pg_ctl -D {d}/data -l {d}/server.log -w -t 60 -o \"-p {p} -h 127.0.0.1 -k {d} -c fsync=off\" start >/dev/null",
            self.run_as,
            b = self.bin.display(),
            d = self.dir.display(),
            p = self.port
        ));
    }

    /// Stops the server cleanly (`-m fast`: open transactions roll back,
    /// then a shutdown checkpoint).
    pub fn stop(&self) {
        self.pg_ctl_stop("fast");
    }

    /// Stops the server as a crash would (`-m immediate`): no shutdown
    /// checkpoint, and WAL still in its buffers (commits that did not wait
    /// for it) is lost; the next start recovers.
    pub fn crash(&self) {
        self.pg_ctl_stop("immediate");
    }

    fn pg_ctl_stop(&self, mode: &str) {
        self.sh(&format!(
            "{} {}/pg_ctl -D {}/data -m {mode} -w stop >/dev/null",
            self.run_as,
            self.bin.display(),
            self.dir.display()
        ));
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Dedicated {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{} {}/pg_ctl -D {}/data -m immediate stop >/dev/null 2>&1; rm -rf {}",
                self.run_as,
                self.bin.display(),
                self.dir.display(),
                self.dir.display()
            ))
            .status();
    }
}
