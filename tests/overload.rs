//! The member-facing API under hostile and overloaded callers, against the
//! real `credshift serve` binary on the example's store (README, "Limits
//! under load"). Nothing here asserts a latency: the tests count answers,
//! hashes, threads and bytes, and bound CPU time by the CPU time of a
//! default argon2id verify measured in the same run.
//!
//! The slowest stored hash of the example is Hanako's: passlib's default
//! sha512-crypt (656,000 rounds), copied into `support` and `connection` by
//! the 2018 split.

// A panic in a test is its failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use credshift::hashing::{BUDGET_FACTOR, MAX_PASSWORD_BYTES};
use serde_json::{Value, json};
use support::http;
use support::serve::{KENJI, Options, REALM, Serve, extra_member};

const SUPPORT: &str = "support-portal";
/// sha512-crypt with 656,000 rounds (examples/2018-split/members.csv).
const HANAKO: &str = "ab000002";
const KENJI_LOGIN: &str = "kenji-argon-66";

/// Flags that keep the per-client failure throttle out of the way of tests
/// that send many wrong passwords on purpose.
const NO_THROTTLE: [&str; 2] = ["--verify-failures", "1000000"];

fn verify_body(login_id: &str, password: &str) -> Value {
    json!({"realm": REALM, "login_id": login_id, "purpose": SUPPORT, "password": password})
}

/// A counter from `/metrics` (0 when it has not been touched yet).
fn metric(serve: &Serve, name: &str) -> f64 {
    let (status, text) = http::get(serve.port, "/metrics");
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .filter(|rest| rest.starts_with(' '))
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// The server's user + system CPU time, in clock ticks (/proc/PID/stat).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start at ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// A line `Name:  N kB` of /proc/PID/status, in bytes.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The server's threads by name.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(|t| t.ok())
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The log without terminal colours.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Sends `n` verifies from `parallel` threads; their statuses.
fn verifies(serve: &Serve, n: usize, parallel: usize, body: &Value) -> Vec<u16> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..parallel)
            .map(|_| {
                let next = next.clone();
                s.spawn(move || {
                    let mut out = Vec::new();
                    while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n {
                        let r =
                            http::post_raw(serve.port, "/v1/verify", &serve.tokens.portal, body);
                        out.push(r.status);
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("client thread"))
            .collect()
    })
}

/// Every password field is capped in bytes before anything is hashed, with
/// a `400` that names the field; a password of exactly the cap is checked.
#[test]
fn every_password_field_is_capped_before_any_hash() {
    let serve = Serve::start(Options {
        args: &NO_THROTTLE,
        ..Default::default()
    });
    let over = "p".repeat(MAX_PASSWORD_BYTES + 1);
    let huge = "p".repeat(15_000);
    let runs_before = metric(&serve, "credshift_api_hash_runs_total");
    for password in [&over, &huge] {
        let r = serve.verify(HANAKO, SUPPORT, password);
        assert_eq!(r.0, 400, "{}", r.1);
        assert_eq!(r.1["error"], "password_too_long");
        assert!(
            r.1["detail"].as_str().unwrap().starts_with("password "),
            "{}",
            r.1
        );
        // Multi-byte characters count in bytes: 342 × 3 bytes is over the cap.
        let r = serve.verify(KENJI, SUPPORT, &"パ".repeat(342));
        assert_eq!(r.1["error"], "password_too_long");
    }
    for (current, new, field) in [
        (over.as_str(), "a-fine-new-password", "current_password"),
        (KENJI_LOGIN, over.as_str(), "new_password"),
    ] {
        let r = serve.change(&serve.tokens.portal, KENJI, SUPPORT, current, new);
        assert_eq!(r.0, 400, "{}", r.1);
        assert_eq!(r.1["error"], "password_too_long");
        assert!(
            r.1["detail"].as_str().unwrap().starts_with(field),
            "{}",
            r.1
        );
    }
    assert_eq!(
        metric(&serve, "credshift_api_hash_runs_total"),
        runs_before,
        "a refused password was hashed"
    );
    let at_cap = "p".repeat(MAX_PASSWORD_BYTES);
    assert_eq!(serve.verify(KENJI, SUPPORT, &at_cap).0, 401);
    assert!(metric(&serve, "credshift_api_hash_runs_total") > runs_before);
}

/// A long password against the slowest stored hash costs the server at
/// most the documented factor of a default argon2id verify (CPU time of
/// the server process, both measured in this run), and the padding of
/// denied answers exceeds the slowest verify the server ran.
#[test]
fn a_long_password_on_the_slowest_legacy_hash_stays_within_the_budget() {
    let serve = Serve::start(Options {
        args: &NO_THROTTLE,
        ..Default::default()
    });
    let pid = serve.pid();
    const N: usize = 8;
    let per_verify = |login_id: &str, len: usize| {
        let body = verify_body(login_id, &"w".repeat(len));
        let before = cpu_ticks(pid);
        let statuses = verifies(&serve, N, 4, &body);
        assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
        (cpu_ticks(pid) - before) as f64 / N as f64
    };
    let argon2 = per_verify(KENJI, 16).max(0.5);
    let ticks_per_second = 100.0;
    let mut slowest: f64 = argon2;
    for len in [16, 48, 64, 80, 256, MAX_PASSWORD_BYTES] {
        let cost = per_verify(HANAKO, len);
        let ratio = cost / argon2;
        eprintln!("sha512-crypt 656000 rounds, {len} bytes: {ratio:.1}× argon2id");
        assert!(
            ratio <= BUDGET_FACTOR as f64 * 1.5,
            "{len} bytes cost {ratio:.1}× the default argon2id (budget {BUDGET_FACTOR}×)"
        );
        slowest = slowest.max(cost);
    }
    let log = strip_ansi(&serve.log());
    let floor_ms: f64 = log
        .lines()
        .filter_map(|l| l.split("min_denial_time_ms=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no min_denial_time_ms in the log:\n{log}"));
    let slowest_ms = slowest * 1000.0 / ticks_per_second;
    assert!(
        floor_ms > slowest_ms,
        "the padding ({floor_ms} ms) is below the slowest verify ({slowest_ms} ms)"
    );
}

/// Clients that send a verify and hang up at once, from many threads, do
/// not raise the hashes running above the pool: the hashing threads stay
/// at the pool's size, the server's peak memory stays under the README's
/// bound, and a member's verify still succeeds afterwards.
#[test]
fn a_storm_of_clients_that_hang_up_keeps_threads_and_memory_bounded() {
    const THREADS: usize = 2;
    let serve = Serve::start(Options {
        args: &[
            "--verify-failures",
            "1000000",
            "--hash-threads",
            "2",
            "--hash-queue",
            "8",
        ],
        ..Default::default()
    });
    let pid = serve.pid();
    let body = serde_json::to_vec(&verify_body(KENJI, "a-wrong-password")).expect("json");
    let request = format!(
        "POST /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        serve.tokens.portal,
        body.len()
    );
    let mut wire = request.into_bytes();
    wire.extend_from_slice(&body);
    let stop_at = Instant::now() + Duration::from_secs(6);
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let mut most_threads = 0;
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                while Instant::now() < stop_at {
                    if let Ok(mut c) = TcpStream::connect(("127.0.0.1", serve.port))
                        && c.write_all(&wire).is_ok()
                    {
                        sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let _ = c.shutdown(std::net::Shutdown::Both);
                    }
                }
            });
        }
        while Instant::now() < stop_at {
            let names = thread_names(pid);
            let hashing = names
                .iter()
                .filter(|n| n.starts_with("credshift-hash"))
                .count();
            assert_eq!(hashing, THREADS, "hashing threads: {names:?}");
            most_threads = most_threads.max(names.len());
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let sent = sent.into_inner();
    let peak_mib = status_kib(pid, "VmHWM:") / 1024;
    let runs = metric(&serve, "credshift_api_hash_runs_total");
    eprintln!(
        "{sent} requests sent and dropped; {runs} hashes run; peak RSS {peak_mib} MiB; at most {most_threads} threads"
    );
    // README: 64 MiB + hashing threads × 64 MiB + connections × 64 KiB.
    let bound_mib = 64 + THREADS as u64 * 64 + 1024 * 64 / 1024;
    assert!(
        peak_mib <= bound_mib,
        "peak RSS {peak_mib} MiB over {bound_mib} MiB"
    );
    assert!(most_threads <= 32, "{most_threads} threads");
    assert!(sent > 100, "the storm sent only {sent} requests");
    assert!(runs <= sent as f64 + 10.0);
    // Once the storm is over, the member gets in.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = serve.verify(KENJI, SUPPORT, KENJI_LOGIN);
        if r.0 == 200 {
            assert_eq!(r.1["result"], "ok");
            break;
        }
        assert_eq!(r.0, 503, "{}", r.1);
        assert!(Instant::now() < deadline, "still shedding a minute later");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A saturated API answers `503` with `Retry-After` at once for what it
/// cannot queue, never anything else, counts what it shed, and lets a
/// member's verify through once the load is gone.
#[test]
fn a_saturated_api_sheds_with_503_and_recovers() {
    let serve = Serve::start(Options {
        args: &[
            "--verify-failures",
            "1000000",
            "--hash-threads",
            "1",
            "--hash-queue",
            "2",
        ],
        // Checks of one account take turns: each client guesses at its own
        // member, all with Hanako's 656,000-round sha512-crypt.
        extra_members: 24,
        extra_like: Some(HANAKO),
        ..Default::default()
    });
    const CLIENTS: usize = 24;
    let barrier = Barrier::new(CLIENTS);
    let answers: Vec<http::Response> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let body = verify_body(&extra_member(i + 1), &"w".repeat(64));
                let (barrier, serve) = (&barrier, &serve);
                s.spawn(move || {
                    barrier.wait();
                    http::post_raw(serve.port, "/v1/verify", &serve.tokens.portal, &body)
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().expect("client"))
            .collect()
    });
    let shed: Vec<_> = answers.iter().filter(|r| r.status == 503).collect();
    let denied = answers.iter().filter(|r| r.status == 401).count();
    assert_eq!(shed.len() + denied, CLIENTS, "other answers: {answers:?}");
    // One running and two queued at a time; each takes hundreds of ms.
    assert!(shed.len() >= CLIENTS / 2, "only {} shed", shed.len());
    assert!(denied >= 3, "only {denied} checked");
    for r in &shed {
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.json()["error"], "overloaded");
    }
    assert_eq!(
        metric(&serve, "credshift_api_hash_shed_total"),
        shed.len() as f64
    );
    let r = serve.verify(KENJI, SUPPORT, KENJI_LOGIN);
    assert_eq!(r, (200, json!({"result": "ok", "must_change": false})));
}

/// Reads until the server closes the connection (or `within` passes);
/// whether it was closed.
fn closed_by_server(c: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

/// Slowloris clients (headers a byte at a time, a body that never ends, a
/// connection that says nothing, a keep-alive connection left idle) are cut
/// off by the server's timeouts, and a member waiting behind a full
/// connection table gets answered once they are.
#[test]
fn slowloris_clients_are_cut_off() {
    let serve = Serve::start(Options {
        args: &[
            "--header-read-timeout",
            "1s",
            "--request-timeout",
            "3s",
            "--idle-timeout",
            "2s",
            "--max-connections",
            "4",
        ],
        ..Default::default()
    });
    let port = serve.port;
    let bound = Duration::from_secs(15);
    std::thread::scope(|s| {
        // Three drip headers; the fourth sends headers and drips its body.
        // Each has connected and sent its first bytes before the member
        // connects: the server accepts in that order.
        let (connected, each_connected) = std::sync::mpsc::channel();
        let drippers: Vec<_> = (0..4)
            .map(|i| {
                let connected = connected.clone();
                s.spawn(move || {
                    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                    let head = if i < 3 {
                        "POST /v1/verify HTTP/1.1\r\nHost: x\r\n".to_owned()
                    } else {
                        "POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".to_owned()
                    };
                    c.write_all(head.as_bytes()).expect("write");
                    let _ = connected.send(());
                    let started = Instant::now();
                    let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut buf = [0u8; 512];
                    while started.elapsed() < bound {
                        let drip: &[u8] = if i < 3 { b"X-Slow: 1\r\n" } else { b" " };
                        if c.write_all(drip).is_err() {
                            return (i, true, String::new());
                        }
                        match c.read(&mut buf) {
                            Ok(0) => return (i, true, String::new()),
                            Ok(n) => {
                                return (i, true, String::from_utf8_lossy(&buf[..n]).into_owned());
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) => {}
                            Err(_) => return (i, true, String::new()),
                        }
                    }
                    (i, false, String::new())
                })
            })
            .collect();
        // With all four connections taken, a member waits in the backlog
        // and is answered once the server has cut the drippers off.
        for _ in 0..4 {
            each_connected
                .recv_timeout(bound)
                .expect("every slow client connected");
        }
        let token = serve.tokens.portal.clone();
        let member = s.spawn(move || {
            http::post_raw(port, "/v1/verify", &token, &verify_body(KENJI, KENJI_LOGIN))
        });
        for d in drippers {
            let (i, cut, got) = d.join().expect("dripper");
            assert!(cut, "slow client {i} was never cut off");
            if i == 3 && !got.is_empty() {
                assert!(got.starts_with("HTTP/1.1 408"), "body dripper got {got:?}");
            }
        }
        let r = member.join().expect("member");
        assert_eq!(r.status, 200, "{:?}", r.text());
    });
    // A connection that sends nothing is closed after the header timeout.
    let mut silent = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    assert!(
        closed_by_server(&mut silent, bound),
        "silent connection kept"
    );
    // A keep-alive connection left idle after an answer is closed too.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut first = [0u8; 256];
    let _ = idle.set_read_timeout(Some(Duration::from_secs(10)));
    let n = idle.read(&mut first).expect("answer");
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&first[..n])
    );
    assert!(closed_by_server(&mut idle, bound), "idle connection kept");
}

/// The throttling counters hold no caller input: nothing is written for a
/// login ID that cannot exist or a `client` that is refused, nor for a right
/// password (a success costs the store no write); the keys that are written
/// are SHA-256 digests, and the counters of ended windows are deleted.
#[test]
fn throttling_counters_hold_no_caller_input_and_expire() {
    let serve = Serve::start(Options {
        args: &["--throttle-window", "4s"],
        ..Default::default()
    });
    let rows = || -> Vec<(String, String)> {
        support::serve::block_on(async {
            use sqlx::Connection as _;
            let mut conn = sqlx::AnyConnection::connect(&serve.store_url)
                .await
                .expect("connect");
            sqlx::query_as::<_, (String, String)>("SELECT scope, key FROM rate_limits")
                .fetch_all(&mut conn)
                .await
                .expect("rate_limits")
        })
    };
    sqlx::any::install_default_drivers();
    assert!(rows().is_empty());
    let client = "198.51.100.7";
    let refused = [
        json!({"realm": REALM, "login_id": "x' OR '1'='1", "purpose": SUPPORT, "password": "x", "client": client}),
        json!({"realm": REALM, "login_id": KENJI, "purpose": SUPPORT, "password": "x", "client": "a\u{202e}b"}),
        json!({"realm": REALM, "login_id": KENJI, "purpose": SUPPORT, "password": "x", "client": "c".repeat(500)}),
    ];
    for body in &refused {
        let r = http::post_raw(serve.port, "/v1/verify", &serve.tokens.portal, body);
        assert!(matches!(r.status, 400 | 401), "{}", r.text());
    }
    assert!(rows().is_empty(), "written before validation: {:?}", rows());
    for _ in 0..3 {
        assert_eq!(serve.verify(KENJI, SUPPORT, KENJI_LOGIN).0, 200);
    }
    assert!(rows().is_empty(), "written on success: {:?}", rows());
    // Windows start on multiples of their length since the epoch; the wrong
    // attempt is made early in one, so its counter cannot have expired (and
    // been pruned) by the time it is looked at after the padded answer.
    let window_ms = 4_000;
    while epoch_millis() % window_ms > 300 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = http::post_raw(
        serve.port,
        "/v1/verify",
        &serve.tokens.portal,
        &json!({"realm": REALM, "login_id": KENJI, "purpose": SUPPORT, "password": "wrong", "client": client}),
    );
    assert_eq!(r.status, 401);
    let written = rows();
    assert_eq!(written.len(), 1, "{written:?}");
    let key = &written[0].1;
    assert!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key:?}"
    );
    assert!(!key.contains(KENJI) && !key.contains(client));
    // Four-second windows, pruned every window: gone within a few.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !rows().is_empty() {
        assert!(Instant::now() < deadline, "expired counters kept");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Over HTTPS the handshake is held to the header timeout too: a client
/// that connects and never says hello, or stops halfway through its hello,
/// is cut off, while a real TLS client (curl) is answered.
#[test]
fn a_tls_client_that_never_finishes_the_handshake_is_cut_off() {
    let serve = Serve::start(Options {
        args: &["--header-read-timeout", "1s"],
        tls: true,
        ..Default::default()
    });
    let bound = Duration::from_secs(15);
    let mut silent = TcpStream::connect(("127.0.0.1", serve.port)).expect("connect");
    assert!(
        closed_by_server(&mut silent, bound),
        "silent TLS client kept"
    );
    let mut halfway = TcpStream::connect(("127.0.0.1", serve.port)).expect("connect");
    // The first bytes of a TLS 1.2+ ClientHello record, then nothing.
    halfway
        .write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ])
        .expect("write");
    assert!(closed_by_server(&mut halfway, bound), "half a hello kept");
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("https://127.0.0.1:{}/healthz", serve.port))
        .output()
        .expect("curl (apt-get install curl)");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
}

/// Milliseconds since the Unix epoch, as the store aligns its windows.
fn epoch_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}
