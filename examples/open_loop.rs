//! Open-loop load for `bench/overload.sh`: `POST /v1/verify` at a fixed
//! rate, whatever the server answers, the way logins arrive at an ISP (a
//! closed-loop client such as wrk slows down when the server does, and so
//! never overloads it). Keep-alive connections are reused, as a portal's
//! connection pool would; a request due while all are busy opens another.
//!
//!     cargo run --release --example open_loop -- PORT TOKEN_FILE MEMBERS.tsv REALM PURPOSE RATE SECONDS
//!
//! MEMBERS.tsv holds `login_id<TAB>password` lines; every request uses the
//! right password of a member picked in turn. Prints one JSON line with
//! what was sent and what came back within the window: `ok` (200 with
//! `"result":"ok"`), `shed` (503 with Retry-After), `other` answers,
//! transport `errors`, their rates, and the latency percentiles of `ok`.

// A measurement tool on inputs it makes itself: a failure is a panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Mutex;

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    ok: AtomicU64,
    shed: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
    ok_latency_us: Mutex<Vec<u64>>,
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Idle keep-alive connections.
type Idle = std::sync::Mutex<Vec<tokio::net::TcpStream>>;

/// One request on an idle connection (or a new one); the status, whether
/// the body says ok, and whether it carries Retry-After.
async fn call(port: u16, idle: &Idle, request: &[u8]) -> std::io::Result<(u16, bool, bool)> {
    let reused = idle.lock().ok().and_then(|mut v| v.pop());
    if let Some(stream) = reused {
        // The server may have closed it (idle timeout, a shed request).
        if let Ok(answer) = exchange(stream, idle, request).await {
            return Ok(answer);
        }
    }
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    exchange(stream, idle, request).await
}

async fn exchange(
    mut stream: tokio::net::TcpStream,
    idle: &Idle,
    request: &[u8],
) -> std::io::Result<(u16, bool, bool)> {
    stream.write_all(request).await?;
    let mut raw = Vec::with_capacity(512);
    let mut chunk = [0u8; 2048];
    let (head_end, length) = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&chunk[..n]);
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (at + 4, length);
        }
    };
    while raw.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = String::from_utf8_lossy(&raw[head_end..]);
    if !head.contains("\r\nconnection: close")
        && let Ok(mut v) = idle.lock()
    {
        v.push(stream);
    }
    Ok((
        status,
        body.contains("\"result\":\"ok\""),
        head.contains("\r\nretry-after:"),
    ))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, token_file, members, realm, purpose, rate, seconds] = args.as_slice() else {
        return Err(
            "usage: open_loop PORT TOKEN_FILE MEMBERS.tsv REALM PURPOSE RATE SECONDS".into(),
        );
    };
    let port: u16 = port.parse()?;
    let rate: f64 = rate.parse()?;
    let seconds: f64 = seconds.parse()?;
    let token = std::fs::read_to_string(token_file)?.trim().to_owned();
    let requests: Vec<Vec<u8>> = std::fs::read_to_string(members)?
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(id, pw)| {
            let body = format!(
                "{{\"realm\":{},\"login_id\":{},\"purpose\":{},\"password\":{}}}",
                json_string(realm),
                json_string(id),
                json_string(purpose),
                json_string(pw)
            );
            format!(
                "POST /v1/verify HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect();
    if requests.is_empty() || rate <= 0.0 || seconds <= 0.0 {
        return Err("no members, or a rate or window that is not positive".into());
    }
    let requests = Arc::new(requests);
    let counts = Arc::new(Counts::default());
    let idle: Arc<Idle> = Arc::new(std::sync::Mutex::new(Vec::new()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let window = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    runtime.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut n = 0usize;
        while started.elapsed() < window {
            tick.tick().await;
            let (requests, counts, idle) = (requests.clone(), counts.clone(), idle.clone());
            let i = n % requests.len();
            n += 1;
            counts.sent.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let sent = Instant::now();
                let answer =
                    tokio::time::timeout(Duration::from_secs(30), call(port, &idle, &requests[i]))
                        .await;
                // Only answers within the window count.
                if started.elapsed() > window {
                    return;
                }
                match answer {
                    Ok(Ok((200, true, _))) => {
                        counts.ok.fetch_add(1, Ordering::Relaxed);
                        let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                        counts.ok_latency_us.lock().await.push(us);
                    }
                    Ok(Ok((503, _, true))) => {
                        counts.shed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Ok(_)) => {
                        counts.other.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        let rest = window.saturating_sub(started.elapsed());
        tokio::time::sleep(rest).await;
    });
    let elapsed = window.as_secs_f64();
    let mut latencies = runtime.block_on(async { counts.ok_latency_us.lock().await.clone() });
    latencies.sort_unstable();
    let pct = |p: f64| {
        if latencies.is_empty() {
            0.0
        } else {
            let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            latencies[i] as f64 / 1000.0
        }
    };
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "offered_rate": rate,
            "seconds": elapsed,
            "sent": get(&counts.sent),
            "ok": get(&counts.ok),
            "shed": get(&counts.shed),
            "other": get(&counts.other),
            "errors": get(&counts.errors),
            "ok_rate": get(&counts.ok) as f64 / elapsed,
            "shed_rate": get(&counts.shed) as f64 / elapsed,
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
        })
    );
    // In-flight requests past the window are dropped with the runtime.
    drop(runtime);
    Ok(())
}
