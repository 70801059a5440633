//! How a recovery ticket's temporary password is stored.
//!
//! A temporary password is drawn at random with at least
//! [`MIN_TICKET_BITS`] bits of entropy, so nobody can guess it offline from
//! a fast hash any more than from a slow one (NIST SP 800-63B, look-up
//! secrets). Stored as SHA-256, checking a ticket costs microseconds rather
//! than a second argon2 run: a denied verify costs one argon2 whether or not
//! the account has a live ticket, so neither the clock nor the load of the
//! hashing pool tells that a recovery is under way.

use subtle::ConstantTimeEq as _;

use super::Secret;

/// The entropy a temporary password must have to be stored as a fast hash.
pub const MIN_TICKET_BITS: f64 = 112.0;

/// The stored form's prefix; anything else is an argon2 PHC string written
/// before tickets were stored this way, checked through the hashing pool.
const PREFIX: &str = "sha256$";

/// Domain separation: the digest of a ticket is never that of anything else.
const CONTEXT: &[u8] = b"credshift recovery ticket v1\0";

fn digest(password: &Secret) -> [u8; 32] {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(CONTEXT);
    hasher.update(password.expose().as_bytes());
    hasher.finalize().into()
}

/// The stored form of a new ticket's temporary password.
pub fn ticket_hash(password: &Secret) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest(password));
    format!("{PREFIX}{encoded}")
}

/// Whether `stored` is in the fast form (else an older argon2 ticket).
pub fn is_fast_ticket(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// Whether `password` is the ticket stored as `stored` (fast form only),
/// compared in constant time.
pub fn ticket_matches(stored: &str, password: &Secret) -> bool {
    use base64::Engine as _;
    let Some(encoded) = stored.strip_prefix(PREFIX) else {
        return false;
    };
    let Ok(expected) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded) else {
        return false;
    };
    expected.ct_eq(&digest(password)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_matches_its_password_only() {
        let stored = ticket_hash(&Secret::from("Q7mZp3xKv9TwR2nYb8Hc"));
        assert!(is_fast_ticket(&stored));
        assert!(ticket_matches(
            &stored,
            &Secret::from("Q7mZp3xKv9TwR2nYb8Hc")
        ));
        assert!(!ticket_matches(
            &stored,
            &Secret::from("Q7mZp3xKv9TwR2nYb8Hd")
        ));
        assert!(!ticket_matches(&stored, &Secret::from("")));
        assert!(!stored.contains("Q7mZp3xKv9TwR2nYb8Hc"));
    }

    #[test]
    fn an_argon2_or_damaged_ticket_never_matches_as_fast() {
        let argon2 = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(!is_fast_ticket(argon2));
        assert!(!ticket_matches(argon2, &Secret::from("anything")));
        assert!(!ticket_matches("sha256$***", &Secret::from("anything")));
        assert!(!ticket_matches("sha256$", &Secret::from("")));
    }
}
