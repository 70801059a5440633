//! `credshift` as a long-running process in the tests (serve, controller),
//! one way for every suite: its output in files, readiness by polling, and
//! a stop that cannot be forgotten.
//!
//! A [`Guard::Watchdog`] process runs under a small shell that sends it
//! SIGTERM when a pipe from this process closes: on drop, and also when
//! the test binary itself is killed, so no server outlives the tests. A
//! test that signals the process itself at chosen moments (SIGKILL
//! mid-batch, SIGTERM to see a graceful exit) starts it
//! [`Guard::Direct`]: the child is then credshift itself, and it is
//! stopped on drop.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Runs `"$0" "$@"` with stdin from /dev/null and sends it SIGTERM once
/// the shell's own stdin reaches EOF; exits with its status.
const WATCHDOG: &str = r#"exec 3<&0; "$0" "$@" </dev/null & pid=$!; (cat <&3 >/dev/null; kill $pid 2>/dev/null) & wait $pid"#;

/// How long a stopped process has to exit after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(10);

/// A port nothing listens on at the moment (someone may take it before
/// the caller binds it: see [`on_free_port`]).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Who stops the process when the test is done with it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Guard {
    /// The watchdog shell, also when the test binary is killed.
    Watchdog,
    /// The test, on drop; the child is credshift itself.
    Direct,
}

/// A running credshift; stopped (SIGTERM, then SIGKILL after [`GRACE`]) on drop.
pub struct Process {
    child: Child,
    guard: Guard,
    /// The watchdog's pipe: closing it stops the process.
    watch: Option<ChildStdin>,
    /// Where its stderr (the log) goes.
    pub log: PathBuf,
    /// Where its stdout goes, when kept.
    pub stdout: Option<PathBuf>,
}

impl Process {
    /// Starts `cmd` (made by [`super::credshift`]) with stdin closed,
    /// stderr to `log` and stdout discarded.
    pub fn start(cmd: Command, guard: Guard, log: &Path) -> Process {
        Process::start_keeping(cmd, guard, log, None)
    }

    /// The same, keeping stdout in `stdout`.
    pub fn start_keeping(cmd: Command, guard: Guard, log: &Path, stdout: Option<&Path>) -> Process {
        let mut cmd = match guard {
            Guard::Direct => cmd,
            Guard::Watchdog => under_watchdog(&cmd),
        };
        cmd.stdin(match guard {
            Guard::Direct => Stdio::null(),
            Guard::Watchdog => Stdio::piped(),
        })
        .stderr(std::fs::File::create(log).expect("log file"))
        .stdout(match stdout {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("stdout file")),
            None => Stdio::null(),
        });
        let mut child = cmd.spawn().expect("start credshift");
        let watch = child.stdin.take();
        Process {
            child,
            guard,
            watch,
            log: log.to_owned(),
            stdout: stdout.map(Path::to_owned),
        }
    }

    /// What it wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What it wrote to stdout so far (empty when not kept).
    pub fn out_text(&self) -> String {
        self.stdout
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Panics with its log if it has exited.
    pub fn assert_running(&mut self, when: &str) {
        if let Some(status) = self.exited() {
            panic!(
                "credshift exited ({status}) {when}; log:\n{}",
                self.log_text()
            );
        }
    }

    /// Its exit status, waiting up to `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `check` until it holds; `Err` when the process exits first or
    /// `timeout` passes.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Err(format!("exited ({status}) before {what}"));
            }
            if check() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not {what} in {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until GET `path` on `port` answers 200.
    pub fn wait_http(&mut self, port: u16, path: &str, timeout: Duration) -> Result<(), String> {
        self.wait_for(&format!("answering {path}"), timeout, || {
            super::http::request(port, "GET", path, "", None).is_ok_and(|r| r.status == 200)
        })
    }

    /// Waits until `port` accepts connections (serve binds it only once ready).
    pub fn wait_listening(&mut self, port: u16, timeout: Duration) -> Result<(), String> {
        self.wait_for("listening", timeout, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    }

    /// The process id of credshift itself (under a watchdog, the shell's
    /// child), for signals and for reading its memory and threads from /proc.
    pub fn pid(&self) -> u32 {
        self.credshift_pid().unwrap_or_else(|| {
            panic!(
                "no credshift process under the watchdog {}",
                self.child.id()
            )
        })
    }

    fn credshift_pid(&self) -> Option<u32> {
        let id = self.child.id();
        if self.guard == Guard::Direct {
            return Some(id);
        }
        std::fs::read_to_string(format!("/proc/{id}/task/{id}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "credshift")
            })
    }

    /// Sends `signal` (a name `kill` knows: TERM, KILL, STOP, CONT) to credshift.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// SIGTERM, then SIGKILL if it has not exited within [`GRACE`]; its
    /// exit status when it exited by itself.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        match self.guard {
            Guard::Watchdog => drop(self.watch.take()),
            Guard::Direct => {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(self.child.id().to_string())
                    .status();
            }
        }
        if let Some(status) = self.wait(GRACE) {
            return Some(status);
        }
        self.kill();
        None
    }

    /// SIGKILL now, credshift itself (not just its watchdog).
    pub fn kill(&mut self) {
        if self.exited().is_none()
            && let Some(pid) = self.credshift_pid()
        {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        drop(self.watch.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `cmd` run by the watchdog shell, with the same arguments and environment.
fn under_watchdog(cmd: &Command) -> Command {
    let mut sh = Command::new("sh");
    sh.args([OsStr::new("-c"), OsStr::new(WATCHDOG), cmd.get_program()])
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => sh.env(key, value),
            None => sh.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        sh.current_dir(dir);
    }
    sh
}

/// Starts a server on a free port and waits until `ready`; when someone
/// took the port between [`free_port`] and the server's bind (its log says
/// "listen on"), tries another, three times in all.
pub fn on_free_port(
    mut start: impl FnMut(u16) -> Process,
    mut ready: impl FnMut(&mut Process, u16) -> Result<(), String>,
) -> (Process, u16) {
    let mut attempt = 1;
    loop {
        let port = free_port();
        let mut process = start(port);
        let Err(why) = ready(&mut process, port) else {
            return (process, port);
        };
        process.stop();
        let log = process.log_text();
        if attempt == 3 || !log.contains("listen on") {
            panic!("credshift did not start ({why}); log:\n{log}");
        }
        attempt += 1;
    }
}
