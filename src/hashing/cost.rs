//! What a verify may cost. Hashing is attacker-triggered: any caller with a
//! token can make the API verify a password of its choosing against a
//! member's stored hash, and for the crypt(3) formats the work grows with
//! the stored rounds *and* with the password's length. This module predicts
//! that work from the hash's parameters and the password's length, so that
//! nothing is ever hashed past a fixed budget:
//!
//! - no password over [`MAX_PASSWORD_BYTES`] reaches a hash at all;
//! - a verify whose predicted cost exceeds [`verify_budget_ns`] is not run:
//!   the password counts as wrong (it cannot be that member's password
//!   within the bounds credshift promises), and the member's next login with
//!   a shorter password, or a reset, replaces the hash with argon2id;
//! - import refuses a hash that could not verify even a
//!   [`MIN_VERIFIABLE_BYTES`]-byte password within the budget ([`check_ceiling`]).
//!
//! The constants are nanoseconds per unit of work on one x86-64 core,
//! measured with `examples/hash_cost.rs` (BENCHMARKS.md); only their ratios
//! matter, because the budget is itself expressed through the same model.

use super::{Argon2Params, HashError, Scheme, legacy};

/// The longest password, in UTF-8 bytes, that any endpoint accepts; longer
/// ones are refused before anything is hashed. 1024 bytes hold 256
/// characters of any script (the policy's `maxLength` is at most 256).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A verify costs at most this many times the default policy's argon2id
/// (19 MiB, 2 passes): the budget every stored hash is held to. 24 admits
/// bcrypt cost 12 and passlib's default sha512-crypt (656,000 rounds) and
/// sha256-crypt (535,000 rounds) for passwords of 64 bytes and more.
pub const BUDGET_FACTOR: u64 = 24;

/// Every stored hash must verify a password this long within the budget
/// (NIST SP 800-63B: allow at least 64 characters); import refuses others.
pub const MIN_VERIFIABLE_BYTES: usize = 64;

/// The most memory an imported argon2 hash may need (64 MiB, three times
/// the default); the hashing threads' memory is bounded by it.
pub const MAX_IMPORTED_ARGON2_KIB: u64 = 64 * 1024;

// Nanoseconds per unit of work, measured on one core of the development
// machine (`examples/hash_cost.rs`); a machine where the formats' speeds
// differ is measured at start instead (`slowest_verify_here`).
/// One argon2 block (1 KiB) filled once.
const NS_ARGON2_BLOCK: u64 = 350;
/// One SHA-512 compression (128-byte block), as sha512-crypt runs it.
const NS_SHA512_BLOCK: u64 = 200;
/// One SHA-256 compression (64-byte block), as sha256-crypt runs it.
const NS_SHA256_BLOCK: u64 = 55;
/// One MD5 compression (64-byte block), as md5-crypt runs it.
const NS_MD5_BLOCK: u64 = 300;
/// One of bcrypt's 2^cost key-expansion iterations.
const NS_BCRYPT_ITERATION: u64 = 52_000;

fn argon2_ns(memory_kib: u64, iterations: u64) -> u64 {
    memory_kib
        .saturating_mul(iterations)
        .saturating_mul(NS_ARGON2_BLOCK)
}

/// The most one verify may cost, in the model's nanoseconds.
pub fn verify_budget_ns() -> u64 {
    let d = Argon2Params::default();
    argon2_ns(u64::from(d.memory_kib), u64::from(d.iterations)).saturating_mul(BUDGET_FACTOR)
}

/// The model's cost of checking an argon2id hash with these parameters.
pub fn argon2_cost_ns(params: Argon2Params) -> u64 {
    argon2_ns(u64::from(params.memory_kib), u64::from(params.iterations))
}

/// A Merkle–Damgård digest's shape: output bytes, block bytes, and the
/// padding it adds (the 0x80 byte and the length field).
#[derive(Clone, Copy)]
struct Digest {
    output: u64,
    block: u64,
    padding: u64,
}

const SHA512: Digest = Digest {
    output: 64,
    block: 128,
    padding: 17,
};
const SHA256: Digest = Digest {
    output: 32,
    block: 64,
    padding: 9,
};
const MD5: Digest = Digest {
    output: 16,
    block: 64,
    padding: 9,
};

impl Digest {
    fn blocks(self, bytes: u64) -> u64 {
        (bytes + self.padding).div_ceil(self.block)
    }

    /// Compressions of the crypt(3) rounds loop (md5-crypt, sha-crypt):
    /// round i hashes the password or the last digest, the salt unless
    /// 3 divides i, the password unless 7 divides i, and the digest or the
    /// password. The pattern repeats every 42 rounds.
    fn rounds_blocks(self, rounds: u64, password: u64, salt: u64) -> u64 {
        let round = |i: u64| {
            let mut n = password + self.output;
            if !i.is_multiple_of(3) {
                n += salt;
            }
            if !i.is_multiple_of(7) {
                n += password;
            }
            self.blocks(n)
        };
        let cycle: u64 = (0..42).map(round).sum();
        let rest: u64 = (0..rounds % 42).map(round).sum();
        (rounds / 42).saturating_mul(cycle).saturating_add(rest)
    }
}

/// Predicted nanoseconds of verifying a `password_len`-byte password
/// against `hash`. `Err`: the hash is malformed.
pub fn verify_cost_ns(hash: &str, password_len: usize) -> Result<u64, HashError> {
    let scheme = Scheme::detect(hash)?;
    let body = legacy::strip_ldap_crypt(hash);
    let len = password_len as u64;
    Ok(match scheme {
        Scheme::Argon2id | Scheme::Argon2i | Scheme::Argon2d => {
            let (m, t) = super::argon2_cost(scheme, body)?;
            argon2_ns(m, t)
        }
        Scheme::Bcrypt => {
            let cost = legacy::bcrypt_cost(body)?;
            (1u64 << cost.min(63)).saturating_mul(NS_BCRYPT_ITERATION)
        }
        Scheme::Sha512Crypt | Scheme::Sha256Crypt => {
            let (digest, ns) = if scheme == Scheme::Sha512Crypt {
                (SHA512, NS_SHA512_BLOCK)
            } else {
                (SHA256, NS_SHA256_BLOCK)
            };
            let (rounds, salt) = legacy::sha_crypt_cost(scheme, body)?;
            // Before the rounds: the password hashed once per byte of it
            // (the "P sequence"), and the salt up to 271 times.
            let setup = digest.blocks(len.saturating_mul(len))
                + digest.blocks(271 * salt)
                + 4 * digest.blocks(len + salt + digest.output);
            digest
                .rounds_blocks(rounds, len, salt)
                .saturating_add(setup)
                .saturating_mul(ns)
        }
        Scheme::Md5Crypt => {
            let (salt, _) = legacy::parse_md5_crypt(body)?;
            MD5.rounds_blocks(1000, len, salt.len() as u64)
                .saturating_add(3 * MD5.blocks(2 * len + 16))
                .saturating_mul(NS_MD5_BLOCK)
        }
        Scheme::LdapSsha1 | Scheme::LdapSsha256 | Scheme::LdapSsha512 | Scheme::LdapSha1 => {
            let (_, salt) = legacy::parse_ldap(scheme, body)?;
            SHA512
                .blocks(len + salt.len() as u64)
                .saturating_mul(NS_SHA512_BLOCK)
        }
    })
}

/// Whether `hash` can verify a [`MIN_VERIFIABLE_BYTES`]-byte password
/// within the budget (and, for argon2, within [`MAX_IMPORTED_ARGON2_KIB`]);
/// the error says how far over it is.
pub fn check_ceiling(hash: &str) -> Result<(), HashError> {
    let scheme = Scheme::detect(hash)?;
    if matches!(scheme, Scheme::Argon2id | Scheme::Argon2i | Scheme::Argon2d) {
        let (memory_kib, _) = super::argon2_cost(scheme, legacy::strip_ldap_crypt(hash))?;
        if memory_kib > MAX_IMPORTED_ARGON2_KIB {
            return Err(HashError::TooMuchMemory {
                scheme: scheme.name(),
                memory_kib,
            });
        }
    }
    let cost = verify_cost_ns(hash, MIN_VERIFIABLE_BYTES)?;
    let default = argon2_cost_ns(Argon2Params::default()).max(1);
    if cost > verify_budget_ns() {
        return Err(HashError::TooCostly {
            scheme: scheme.name(),
            times: cost.div_ceil(default),
        });
    }
    Ok(())
}

/// Whether verifying a `password_len`-byte password against `hash` stays
/// within the budget (and the length within [`MAX_PASSWORD_BYTES`]).
/// argon2 costs the same for any password: its hashes are bounded when
/// they are stored (import, or the policy's own parameters), not here.
pub fn within_budget(hash: &str, password_len: usize) -> Result<bool, HashError> {
    if password_len > MAX_PASSWORD_BYTES {
        return Ok(false);
    }
    Ok(match Scheme::detect(hash)? {
        Scheme::Argon2id | Scheme::Argon2i | Scheme::Argon2d => true,
        _ => verify_cost_ns(hash, password_len)? <= verify_budget_ns(),
    })
}

/// One well-formed hash of each family, for measuring the model against
/// the clock; whether a password matches does not change the cost.
const SAMPLES: [&str; 5] = [
    "$6$rounds=5000$wE1eSy.VcFpWxkWE$eFCGOgYyXJNHmh.cdvILsyRLP73fH57y0CAVS.ZEcRcEJeYnNTMG6WBDZg2YSo6CT4ZxxRUGYlvZUnqeVZMpR/",
    "$5$rounds=5000$iEnZssHV9rhO8Qc3$Zk6Fu4CZtJtOHRf3pFv8QBxqWsgqdzuRmRk64FVcSNA",
    "$2b$06$GBsxoNhv2.jX5d9Ulda57O25kNrd5KjRbNRpidxqIVg7ama2pQWk6",
    "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/",
    "$argon2id$v=19$m=19456,t=2,p=1$2ntPybmXMmYMYezdmzOmdA$Uw+T+4rIxO1getUraQVBwTx3bhuLu6TBj+Z7xKadXts",
];

/// The longest a verify may take on this machine: each family's sample
/// verified against the clock (median of three), the worst ratio of clock
/// to model applied to the larger of the budget and `policy_ns` (the
/// costliest argon2id a policy asks for, in the model's nanoseconds).
/// CPU-heavy (about 50 ms): run it on a hashing thread.
pub fn slowest_verify_here(policy_ns: u64) -> std::time::Duration {
    let password = super::Secret::new("p".repeat(MIN_VERIFIABLE_BYTES));
    let mut worst = 1.0_f64;
    for hash in SAMPLES {
        let Ok(model) = verify_cost_ns(hash, MIN_VERIFIABLE_BYTES) else {
            continue;
        };
        let mut times: Vec<u128> = (0..3)
            .map(|_| {
                let started = std::time::Instant::now();
                let _ = super::verify_password(&password, hash);
                started.elapsed().as_nanos()
            })
            .collect();
        times.sort_unstable();
        worst = worst.max(times[1] as f64 / model.max(1) as f64);
    }
    let longest = verify_budget_ns().max(policy_ns) as f64 * worst;
    std::time::Duration::from_nanos(longest.min(u64::MAX as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_is_well_formed() {
        for hash in SAMPLES {
            assert!(super::super::validate(hash).is_ok(), "{hash}");
        }
    }

    /// The budget admits what real exports hold: bcrypt cost 12, and
    /// passlib's default sha512-crypt and sha256-crypt rounds for a 64-byte
    /// password; it refuses bcrypt 13 and sha512-crypt at a million rounds.
    #[test]
    fn the_ceiling_admits_real_exports_and_refuses_pinning_costs() {
        let bcrypt = |cost: u32| {
            format!("$2b${cost:02}$GBsxoNhv2.jX5d9Ulda57O25kNrd5KjRbNRpidxqIVg7ama2pQWk6")
        };
        let sha512 = |rounds: u32| {
            format!(
                "$6$rounds={rounds}$wE1eSy.VcFpWxkWE$eFCGOgYyXJNHmh.cdvILsyRLP73fH57y0CAVS.ZEcRcEJeYnNTMG6WBDZg2YSo6CT4ZxxRUGYlvZUnqeVZMpR/"
            )
        };
        let sha256 = |rounds: u32| {
            format!(
                "$5$rounds={rounds}$iEnZssHV9rhO8Qc3$Zk6Fu4CZtJtOHRf3pFv8QBxqWsgqdzuRmRk64FVcSNA"
            )
        };
        assert!(check_ceiling(&bcrypt(12)).is_ok());
        assert!(check_ceiling(&sha512(656_000)).is_ok());
        assert!(check_ceiling(&sha256(535_000)).is_ok());
        assert!(check_ceiling(&bcrypt(13)).is_err());
        assert!(check_ceiling(&bcrypt(31)).is_err());
        assert!(check_ceiling(&sha512(1_000_000)).is_err());
        assert!(check_ceiling(&sha512(999_999_999)).is_err());
        let huge = "$argon2id$v=19$m=4194304,t=1,p=1$2ntPybmXMmYMYezdmzOmdA$Uw+T+4rIxO1getUraQVBwTx3bhuLu6TBj+Z7xKadXts";
        assert!(matches!(
            check_ceiling(huge),
            Err(HashError::TooMuchMemory { .. })
        ));
        let slow = "$argon2id$v=19$m=65536,t=20,p=1$2ntPybmXMmYMYezdmzOmdA$Uw+T+4rIxO1getUraQVBwTx3bhuLu6TBj+Z7xKadXts";
        assert!(matches!(
            check_ceiling(slow),
            Err(HashError::TooCostly { .. })
        ));
    }

    /// Long passwords on high-round crypt(3) hashes are the amplifier: the
    /// work grows with the length, and past the budget nothing is hashed.
    #[test]
    fn the_budget_grows_with_the_password_and_cuts_off() {
        let hash = "$6$rounds=656000$fnbFM7DtxAMOkpvj$g1JLGcNGM2r/qAck2q9Pp41F5w2bN79wXiumoO7rYx18kifwCRfySDIfC0zs6ix3NYCbQuo8.pCB.Ujo3W9/Q/";
        let short = verify_cost_ns(hash, 16).unwrap();
        let long = verify_cost_ns(hash, MAX_PASSWORD_BYTES).unwrap();
        assert!(long > 5 * short, "{short} {long}");
        assert!(within_budget(hash, MIN_VERIFIABLE_BYTES).unwrap());
        assert!(!within_budget(hash, MAX_PASSWORD_BYTES).unwrap());
        assert!(!within_budget(SAMPLES[4], MAX_PASSWORD_BYTES + 1).unwrap());
        assert!(within_budget(SAMPLES[4], MAX_PASSWORD_BYTES).unwrap());
    }
}
