//! Password hashes: the policy's argon2id, the legacy formats members are
//! imported with, and a bounded pool that keeps this CPU-heavy work off the
//! async executor.
//!
//! Nothing here knows about accounts or SQL; the store and the engine call in.

mod cost;
mod legacy;
mod pool;
mod seal;
mod secret;
mod ticket;

pub use cost::{
    BUDGET_FACTOR, MAX_IMPORTED_ARGON2_KIB, MAX_PASSWORD_BYTES, MIN_VERIFIABLE_BYTES,
    argon2_cost_ns, check_ceiling, slowest_verify_here, verify_budget_ns, verify_cost_ns,
    within_budget,
};
pub use pool::{HashPool, Overloaded, PoolSize};
pub use seal::{KEY_ENV as OUTBOX_KEY_ENV, SealError, Sealer};
pub use secret::Secret;
pub use ticket::{MIN_TICKET_BITS, is_fast_ticket, ticket_hash, ticket_matches};

use argon2::{Argon2, PasswordHash, PasswordHasher};

/// The bytes of a password that bcrypt reads; the rest is ignored.
pub const BCRYPT_MAX_BYTES: usize = 72;

/// A hash format credshift can verify. Only [`Scheme::Argon2id`] is ever written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Argon2id,
    Argon2i,
    Argon2d,
    /// `$2a$`, `$2b$`, `$2y$`.
    Bcrypt,
    /// `$6$`, with or without `rounds=`.
    Sha512Crypt,
    /// `$5$`, with or without `rounds=`.
    Sha256Crypt,
    /// `$1$`.
    Md5Crypt,
    /// LDAP `{SSHA}`: salted SHA-1.
    LdapSsha1,
    /// LDAP `{SSHA256}`.
    LdapSsha256,
    /// LDAP `{SSHA512}`.
    LdapSsha512,
    /// LDAP `{SHA}`: unsalted SHA-1, the weakest format accepted on import.
    LdapSha1,
}

impl Scheme {
    /// The name used in errors, metrics and `accounts show`.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Argon2id => "argon2id",
            Scheme::Argon2i => "argon2i",
            Scheme::Argon2d => "argon2d",
            Scheme::Bcrypt => "bcrypt",
            Scheme::Sha512Crypt => "sha512-crypt",
            Scheme::Sha256Crypt => "sha256-crypt",
            Scheme::Md5Crypt => "md5-crypt",
            Scheme::LdapSsha1 => "ldap-ssha",
            Scheme::LdapSsha256 => "ldap-ssha256",
            Scheme::LdapSsha512 => "ldap-ssha512",
            Scheme::LdapSha1 => "ldap-sha",
        }
    }

    /// Recognises the format from its prefix, without judging the rest.
    pub fn detect(hash: &str) -> Result<Scheme, HashError> {
        let hash = legacy::strip_ldap_crypt(hash);
        let scheme = if hash.starts_with("$argon2id$") {
            Scheme::Argon2id
        } else if hash.starts_with("$argon2i$") {
            Scheme::Argon2i
        } else if hash.starts_with("$argon2d$") {
            Scheme::Argon2d
        } else if hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$") {
            Scheme::Bcrypt
        } else if hash.starts_with("$6$") {
            Scheme::Sha512Crypt
        } else if hash.starts_with("$5$") {
            Scheme::Sha256Crypt
        } else if hash.starts_with("$1$") {
            Scheme::Md5Crypt
        } else if let Some(scheme) = legacy::ldap_scheme(hash) {
            scheme
        } else {
            return Err(HashError::UnknownScheme);
        };
        Ok(scheme)
    }
}

/// Why a stored hash string cannot be used. Never carries the hash or a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error(
        "unknown hash format (expected argon2, bcrypt, sha512-crypt, sha256-crypt, md5-crypt or LDAP {{SSHA}})"
    )]
    UnknownScheme,
    #[error("malformed {scheme} hash: {reason}")]
    Malformed {
        scheme: &'static str,
        reason: &'static str,
    },
    #[error("invalid argon2 parameters: {0}")]
    Parameters(String),
    /// Verifying a password against it would cost more than credshift's
    /// budget allows even for a short password.
    #[error(
        "{scheme} hash costs {times}× the default argon2id to verify a 64-byte password; at most {max}× is accepted",
        max = cost::BUDGET_FACTOR
    )]
    TooCostly { scheme: &'static str, times: u64 },
    /// An argon2 hash that needs more memory than an imported hash may.
    #[error(
        "{scheme} hash needs {memory_kib} KiB to verify; at most {max} KiB is accepted",
        max = cost::MAX_IMPORTED_ARGON2_KIB
    )]
    TooMuchMemory {
        scheme: &'static str,
        memory_kib: u64,
    },
    /// Not about the hash: the pool had no slot for it.
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
}

impl HashError {
    fn malformed(scheme: Scheme, reason: &'static str) -> HashError {
        HashError::Malformed {
            scheme: scheme.name(),
            reason,
        }
    }
}

/// argon2id cost parameters of a credential policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Params {
    /// OWASP's recommendation: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Argon2Params {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl Argon2Params {
    fn to_argon2(self) -> Result<Argon2<'static>, HashError> {
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| HashError::Parameters(e.to_string()))?;
        Ok(Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

/// Hashes a new password as an argon2id PHC string. CPU-heavy: call through [`HashPool`].
pub fn hash_password(password: &Secret, params: Argon2Params) -> Result<String, HashError> {
    let hasher = params.to_argon2()?;
    let hash = hasher
        .hash_password(password.expose().as_bytes())
        .map_err(|e| HashError::Parameters(e.to_string()))?;
    Ok(hash.to_string())
}

/// Checks that a stored hash string is well-formed, without a password. Used on import.
pub fn validate(hash: &str) -> Result<Scheme, HashError> {
    let scheme = Scheme::detect(hash)?;
    let body = legacy::strip_ldap_crypt(hash);
    match scheme {
        Scheme::Argon2id | Scheme::Argon2i | Scheme::Argon2d => {
            let parsed = PasswordHash::new(body)
                .map_err(|_| HashError::malformed(scheme, "not a valid PHC string"))?;
            argon2::Params::try_from(&parsed)
                .map_err(|_| HashError::malformed(scheme, "invalid parameters"))?;
            if parsed.hash.is_none() || parsed.salt.is_none() {
                return Err(HashError::malformed(scheme, "missing salt or hash"));
            }
        }
        Scheme::Bcrypt => legacy::validate_bcrypt(body)?,
        Scheme::Sha512Crypt | Scheme::Sha256Crypt => legacy::validate_sha_crypt(scheme, body)?,
        Scheme::Md5Crypt => {
            legacy::parse_md5_crypt(body)?;
        }
        Scheme::LdapSsha1 | Scheme::LdapSsha256 | Scheme::LdapSsha512 | Scheme::LdapSha1 => {
            legacy::parse_ldap(scheme, body)?;
        }
    }
    Ok(scheme)
}

/// The argon2 blocks a verify against `hash` fills (memory in KiB × passes);
/// 0 for the other formats and for a hash that cannot be read.
pub fn argon2_blocks(hash: &str) -> u64 {
    match Scheme::detect(hash) {
        Ok(scheme @ (Scheme::Argon2id | Scheme::Argon2i | Scheme::Argon2d)) => {
            argon2_cost(scheme, legacy::strip_ldap_crypt(hash))
                .map_or(0, |(memory, passes)| memory * passes)
        }
        _ => 0,
    }
}

/// An argon2 PHC hash's memory (KiB) and passes, the two factors of its cost.
fn argon2_cost(scheme: Scheme, hash: &str) -> Result<(u64, u64), HashError> {
    let parsed = PasswordHash::new(hash)
        .map_err(|_| HashError::malformed(scheme, "not a valid PHC string"))?;
    let params = argon2::Params::try_from(&parsed)
        .map_err(|_| HashError::malformed(scheme, "invalid parameters"))?;
    Ok((u64::from(params.m_cost()), u64::from(params.t_cost())))
}

/// Verifies a password against any supported hash, in constant time where the
/// format allows. `Ok(false)` is a wrong password; `Err` is an unusable hash.
/// CPU-heavy: call through [`HashPool`].
///
/// A password the budget does not allow to be checked against this hash
/// (over [`MAX_PASSWORD_BYTES`], or long enough to make a high-round
/// crypt(3) hash cost more than [`verify_budget_ns`]) is not hashed: it is
/// `Ok(false)`, a wrong password.
pub fn verify_password(password: &Secret, hash: &str) -> Result<bool, HashError> {
    let scheme = validate(hash)?;
    let body = legacy::strip_ldap_crypt(hash);
    let pw = password.expose().as_bytes();
    if !within_budget(hash, pw.len())? {
        return Ok(false);
    }
    match scheme {
        Scheme::Argon2id | Scheme::Argon2i | Scheme::Argon2d => {
            let parsed = PasswordHash::new(body)
                .map_err(|_| HashError::malformed(scheme, "not a valid PHC string"))?;
            verify_argon2(pw, &parsed)
                .ok_or_else(|| HashError::malformed(scheme, "cannot be verified"))
        }
        Scheme::Bcrypt => {
            bcrypt::verify(pw, body).map_err(|_| HashError::malformed(scheme, "cannot be verified"))
        }
        Scheme::Sha512Crypt | Scheme::Sha256Crypt => legacy::verify_sha_crypt(scheme, pw, body),
        Scheme::Md5Crypt => legacy::verify_md5_crypt(pw, body),
        Scheme::LdapSsha1 | Scheme::LdapSsha256 | Scheme::LdapSsha512 | Scheme::LdapSha1 => {
            legacy::verify_ldap(scheme, pw, body)
        }
    }
}

/// Block arrays up to this size (64 MiB, three times the default cost) are
/// kept by each hashing thread for its next hash; larger ones (a legacy
/// argon2 hash with a huge `m`) are allocated for one hash only.
const KEEP_BLOCKS: usize = 64 * 1024;

thread_local! {
    /// The argon2 block array of this thread's last hash. Reusing it saves
    /// mapping and zeroing 19 MiB per verify (page faults and memset took
    /// about 9 % of an API verify's CPU, BENCHMARKS.md). argon2 overwrites
    /// every block before it reads it, so what a previous hash left is never
    /// used. Freed when the thread ends (tokio ends idle blocking threads
    /// after 10 s); the contents are argon2 state, as freed memory was before.
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Recomputes an argon2 PHC hash with its own variant, version and
/// parameters into this thread's block array, and compares in constant time.
/// `None`: the string cannot be verified (bad parameters, salt or output).
fn verify_argon2(password: &[u8], parsed: &PasswordHash) -> Option<bool> {
    use subtle::ConstantTimeEq as _;
    let algorithm = argon2::Algorithm::try_from(parsed.algorithm.as_str()).ok()?;
    let version = match parsed.version {
        Some(v) => argon2::Version::try_from(v).ok()?,
        None => argon2::Version::default(),
    };
    let params = argon2::Params::try_from(parsed).ok()?;
    let (salt, expected) = (parsed.salt.as_ref()?, parsed.hash.as_ref()?);
    let blocks = params.block_count();
    let hasher = Argon2::new(algorithm, version, params);
    let mut output = [0u8; argon2::password_hash::phc::Output::MAX_LENGTH];
    let output = output.get_mut(..expected.len())?;
    let hashed = if blocks <= KEEP_BLOCKS {
        BLOCKS.with_borrow_mut(|kept| {
            if kept.len() < blocks {
                kept.resize(blocks, argon2::Block::new());
            }
            hasher.hash_password_into_with_memory(password, salt, output, &mut kept[..blocks])
        })
    } else {
        hasher.hash_password_into(password, salt, output)
    };
    hashed.ok()?;
    Some(output.ct_eq(expected.as_bytes()).into())
}

/// Whether a hash that just verified should be replaced by one made with
/// `params`: any legacy format, and argon2 with other parameters or variant.
pub fn needs_upgrade(hash: &str, params: Argon2Params) -> bool {
    let Ok(Scheme::Argon2id) = Scheme::detect(hash) else {
        return true;
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        return true;
    };
    if parsed.version != Some(argon2::Version::V0x13.into()) {
        return true;
    }
    match argon2::Params::try_from(&parsed) {
        Ok(p) => {
            p.m_cost() != params.memory_kib
                || p.t_cost() != params.iterations
                || p.p_cost() != params.parallelism
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> Argon2Params {
        Argon2Params {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn argon2id_round_trip_and_wrong_password() {
        let pw = Secret::from("correct horse");
        let hash = hash_password(&pw, fast()).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(verify_password(&pw, &hash).unwrap());
        assert!(!verify_password(&Secret::from("correct horsE"), &hash).unwrap());
    }

    /// The thread's reused block array gives the same answers as the argon2
    /// crate's own verify (a fresh zeroed array each time) for every variant,
    /// both versions, other output lengths and lanes, and a hash too large to
    /// keep: hashed in an order that leaves a larger, dirty array behind.
    #[test]
    fn verify_with_reused_blocks_agrees_with_the_argon2_crate() {
        use argon2::password_hash::CustomizedPasswordHasher as _;
        use argon2::{Algorithm, Params, PasswordVerifier as _, Version};
        let cases = [
            (Algorithm::Argon2id, Version::V0x13, 2048, 2, 1, 32),
            (Algorithm::Argon2id, Version::V0x13, 64, 1, 1, 32),
            (Algorithm::Argon2i, Version::V0x13, 1024, 3, 2, 24),
            (Algorithm::Argon2d, Version::V0x10, 512, 1, 4, 64),
            (Algorithm::Argon2id, Version::V0x10, 4096, 1, 1, 16),
            (
                Algorithm::Argon2id,
                Version::V0x13,
                KEEP_BLOCKS as u32 + 8,
                1,
                1,
                32,
            ),
            (Algorithm::Argon2i, Version::V0x13, 256, 2, 1, 32),
        ];
        for (algorithm, version, m, t, p, len) in cases {
            let params = Params::new(m, t, p, Some(len)).unwrap();
            let hash = Argon2::default()
                .hash_password_customized(
                    b"correct horse",
                    b"saltsaltsaltsalt",
                    Some(algorithm.as_str()),
                    Some(version.into()),
                    params,
                )
                .unwrap()
                .to_string();
            let parsed = PasswordHash::new(&hash).unwrap();
            for pw in [&b"correct horse"[..], b"correct horsE", b""] {
                let reference = Argon2::default().verify_password(pw, &parsed).is_ok();
                assert_eq!(verify_argon2(pw, &parsed), Some(reference), "{hash} {pw:?}");
            }
            assert!(verify_argon2(b"correct horse", &parsed).unwrap(), "{hash}");
        }
    }

    #[test]
    fn upgrade_is_needed_for_other_params_and_legacy_formats() {
        let pw = Secret::from("correct horse");
        let hash = hash_password(&pw, fast()).unwrap();
        assert!(!needs_upgrade(&hash, fast()));
        assert!(needs_upgrade(&hash, Argon2Params::default()));
        assert!(needs_upgrade("$1$abc$0123456789012345678901", fast()));
    }

    #[test]
    fn unknown_formats_are_errors_not_panics() {
        let pw = Secret::from("x");
        for bad in ["", "plain", "$99$x$y", "{MD5}abc", "$argon2id$v=19$m=abc"] {
            assert!(
                verify_password(&pw, bad).is_err(),
                "{bad:?} must be rejected"
            );
        }
    }

    #[test]
    fn errors_never_echo_the_hash() {
        let err = validate("$6$rounds=notanumber$saltsalt$abc").unwrap_err();
        assert!(!err.to_string().contains("saltsalt"), "{err}");
    }
}
