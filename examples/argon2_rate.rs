//! The physical limit for `bench/verify.sh`: raw argon2 verifies per second on
//! this machine's cores, with the same PHC strings that the API verifies and
//! the same verify function (`credshift::hashing::verify_password`: the
//! `argon2` crate into a block array each thread reuses), and nothing else
//! (no HTTP, no store, no pool).
//!
//!     cargo run --release --example argon2_rate -- HASHES.tsv SECONDS [THREADS]
//!
//! HASHES.tsv holds `password<TAB>phc` lines. Prints one line:
//! `verifies=N seconds=S rate=R threads=T`.

// A measurement tool on inputs it makes itself: a failure is a panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use credshift::hashing::{Secret, verify_password};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: argon2_rate HASHES.tsv SECONDS [THREADS]";
    let file = args.next().ok_or(usage)?;
    let seconds: f64 = args.next().ok_or(usage)?.parse()?;
    let threads = match args.next() {
        Some(t) => t.parse()?,
        None => std::thread::available_parallelism()?.get(),
    };
    let pairs: Vec<(String, String)> = std::fs::read_to_string(&file)?
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            // The line holds a password: name it by number only.
            l.split_once('\t')
                .map(|(p, h)| (p.to_owned(), h.to_owned()))
                .ok_or_else(|| format!("{file}:{}: not `password<TAB>phc`", i + 1))
        })
        .collect::<Result<_, _>>()?;
    if pairs.is_empty() {
        return Err(format!("{file}: no hashes").into());
    }
    let pairs: Vec<(Secret, String)> = pairs
        .into_iter()
        .map(|(p, h)| (Secret::new(p), h))
        .collect();
    for (i, (password, phc)) in pairs.iter().enumerate() {
        if !verify_password(password, phc).map_err(|e| format!("{file}: pair {}: {e}", i + 1))? {
            return Err(format!("{file}: pair {} does not verify", i + 1).into());
        }
    }

    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (pairs, stop, done) = (&pairs, &stop, &done);
            s.spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let (password, phc) = &pairs[i % pairs.len()];
                    // Parsed every time, as the API parses the stored string.
                    if verify_password(password, phc).unwrap_or(false) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    i += threads;
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "verifies={n} seconds={elapsed:.3} rate={:.1} threads={threads}",
        n as f64 / elapsed
    );
    Ok(())
}
