//! What one verify costs, per stored-hash format and password length, next
//! to the default argon2id on the same core: the evidence behind the cost
//! model in `src/hashing/cost.rs` (the budget a verify may spend and the
//! ceilings import enforces).
//!
//!     cargo run --release --example hash_cost [-- SAMPLES]
//!
//! One line per case: `format params bytes ns model_ns ratio`, where `ns` is
//! the median of SAMPLES (default 5) verifies on one thread, `model_ns` what
//! the cost model predicts and `ratio` the measured cost over the default
//! argon2id's.

// A measurement tool on inputs it makes itself: a failure is a panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use argon2::PasswordHasher as _;
use credshift::hashing::{self, Argon2Params, Secret};

fn sha_crypt(algorithm: sha_crypt::Algorithm, rounds: u32, password: &[u8]) -> String {
    let params = sha_crypt::Params::new(rounds).expect("rounds");
    sha_crypt::ShaCrypt::new(algorithm, params)
        .hash_password_with_salt(password, b"0123456789ab")
        .expect("sha-crypt")
        .to_string()
}

fn argon2(memory_kib: u32, iterations: u32, password: &[u8]) -> String {
    let params = argon2::Params::new(memory_kib, iterations, 1, None).expect("params");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_with_salt(password, b"0123456789abcdef")
        .expect("argon2")
        .to_string()
}

fn median_ns(samples: usize, password: &Secret, hash: &str) -> u64 {
    let mut times: Vec<u64> = (0..samples.max(1))
        .map(|_| {
            let t = Instant::now();
            let _ = hashing::verify_password(password, hash);
            u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
        })
        .collect();
    times.sort_unstable();
    times[times.len() / 2]
}

fn main() {
    let samples: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let default = Argon2Params::default();
    let reference = {
        let pw = Secret::from("0123456789abcdef");
        let hash = argon2(
            default.memory_kib,
            default.iterations,
            pw.expose().as_bytes(),
        );
        median_ns(samples, &pw, &hash)
    };
    println!("format params bytes ns model_ns ratio");
    let lengths = [16usize, 64, 256, hashing::MAX_PASSWORD_BYTES];
    let mut cases: Vec<(String, String)> = Vec::new();
    for rounds in [5_000, 100_000, 535_000, 656_000] {
        cases.push((
            format!("sha512-crypt rounds={rounds}"),
            sha_crypt(sha_crypt::Algorithm::Sha512Crypt, rounds, b"x"),
        ));
        cases.push((
            format!("sha256-crypt rounds={rounds}"),
            sha_crypt(sha_crypt::Algorithm::Sha256Crypt, rounds, b"x"),
        ));
    }
    for cost in [10, 12] {
        cases.push((
            format!("bcrypt cost={cost}"),
            bcrypt::hash_with_salt(b"x", cost, *b"0123456789abcdef")
                .expect("bcrypt")
                .format_for_version(bcrypt::Version::TwoB),
        ));
    }
    for (m, t) in [(19_456, 2), (65_536, 1), (65_536, 3)] {
        cases.push((format!("argon2id m={m},t={t}"), argon2(m, t, b"x")));
    }
    cases.push((
        "md5-crypt".to_owned(),
        "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/".to_owned(),
    ));
    for (name, hash) in &cases {
        for len in lengths {
            let pw = Secret::new("p".repeat(len));
            let ns = median_ns(samples, &pw, hash);
            let model = hashing::verify_cost_ns(hash, len).unwrap_or(u64::MAX);
            let (format, params) = name.split_once(' ').unwrap_or((name, "-"));
            println!(
                "{format} {params} {len} {ns} {model} {:.2}",
                ns as f64 / reference as f64
            );
        }
    }
    println!("argon2id-default - 16 {reference} - 1.00");
}
