//! Legacy hash formats that members arrive with on import. They are only ever
//! verified, never written: a successful verify upgrades them to argon2id.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest as _, Md5};
use sha_crypt::PasswordVerifier as _;
use subtle::ConstantTimeEq as _;

use super::{HashError, Scheme};

/// The alphabet of crypt(3)'s own base64.
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn is_crypt_b64(s: &str) -> bool {
    s.bytes().all(|b| CRYPT_ALPHABET.contains(&b))
}

/// LDAP stores crypt(3) hashes as `{CRYPT}$6$...`; the prefix carries no information.
pub(super) fn strip_ldap_crypt(hash: &str) -> &str {
    match hash.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("{CRYPT}") => &hash[7..],
        _ => hash,
    }
}

const LDAP_PREFIXES: [(&str, Scheme); 4] = [
    ("{SSHA256}", Scheme::LdapSsha256),
    ("{SSHA512}", Scheme::LdapSsha512),
    ("{SSHA}", Scheme::LdapSsha1),
    ("{SHA}", Scheme::LdapSha1),
];

fn ldap_split(hash: &str) -> Option<(Scheme, &str)> {
    LDAP_PREFIXES.iter().find_map(|(prefix, scheme)| {
        let head = hash.get(..prefix.len())?;
        head.eq_ignore_ascii_case(prefix)
            .then(|| (*scheme, &hash[prefix.len()..]))
    })
}

pub(super) fn ldap_scheme(hash: &str) -> Option<Scheme> {
    ldap_split(hash).map(|(scheme, _)| scheme)
}

fn ldap_digest_len(scheme: Scheme) -> usize {
    match scheme {
        Scheme::LdapSsha256 => 32,
        Scheme::LdapSsha512 => 64,
        _ => 20,
    }
}

/// Decodes an LDAP hash into (digest, salt).
pub(super) fn parse_ldap(scheme: Scheme, hash: &str) -> Result<(Vec<u8>, Vec<u8>), HashError> {
    let (_, payload) =
        ldap_split(hash).ok_or(HashError::malformed(scheme, "missing scheme prefix"))?;
    let mut raw = BASE64
        .decode(payload.trim())
        .map_err(|_| HashError::malformed(scheme, "payload is not base64"))?;
    let len = ldap_digest_len(scheme);
    let salted = scheme != Scheme::LdapSha1;
    if (salted && raw.len() <= len) || (!salted && raw.len() != len) {
        return Err(HashError::malformed(scheme, "payload has the wrong length"));
    }
    let salt = raw.split_off(len);
    Ok((raw, salt))
}

pub(super) fn verify_ldap(scheme: Scheme, password: &[u8], hash: &str) -> Result<bool, HashError> {
    let (digest, salt) = parse_ldap(scheme, hash)?;
    fn salted<D: sha2::Digest>(password: &[u8], salt: &[u8]) -> Vec<u8> {
        let mut d = D::new();
        d.update(password);
        d.update(salt);
        d.finalize().to_vec()
    }
    let computed = match scheme {
        Scheme::LdapSsha256 => salted::<sha2::Sha256>(password, &salt),
        Scheme::LdapSsha512 => salted::<sha2::Sha512>(password, &salt),
        _ => salted::<sha1::Sha1>(password, &salt),
    };
    Ok(bool::from(computed.ct_eq(&digest)))
}

pub(super) fn validate_bcrypt(hash: &str) -> Result<(), HashError> {
    let bad = |reason| Err(HashError::malformed(Scheme::Bcrypt, reason));
    let parts: Vec<&str> = hash.split('$').collect();
    let [empty, _variant, cost, rest] = parts.as_slice() else {
        return bad("expected $2b$<cost>$<salt and hash>");
    };
    if !empty.is_empty() {
        return bad("expected $2b$<cost>$<salt and hash>");
    }
    match cost.parse::<u32>() {
        Ok(c) if cost.len() == 2 && (4..=31).contains(&c) => {}
        _ => return bad("cost must be two digits between 04 and 31"),
    }
    if rest.len() != 53 || !is_crypt_b64(rest) {
        return bad("salt and hash must be 53 characters of bcrypt base64");
    }
    Ok(())
}

/// A well-formed bcrypt hash's cost (log2 of its iterations).
pub(super) fn bcrypt_cost(hash: &str) -> Result<u32, HashError> {
    validate_bcrypt(hash)?;
    hash.get(4..6)
        .and_then(|c| c.parse().ok())
        .ok_or(HashError::malformed(
            Scheme::Bcrypt,
            "cost must be two digits",
        ))
}

/// A well-formed sha-crypt hash's rounds and salt length.
pub(super) fn sha_crypt_cost(scheme: Scheme, hash: &str) -> Result<(u64, u64), HashError> {
    validate_sha_crypt(scheme, hash)?;
    let mut fields = hash.split('$').skip(2);
    let mut field = fields.next();
    let mut rounds = 5000;
    if let Some(r) = field.and_then(|f| f.strip_prefix("rounds=")) {
        rounds = r
            .parse()
            .map_err(|_| HashError::malformed(scheme, "rounds must be a number"))?;
        field = fields.next();
    }
    Ok((rounds, field.map_or(0, |s| s.len() as u64)))
}

/// `$5$` / `$6$`, `[rounds=N$]salt$checksum`.
pub(super) fn validate_sha_crypt(scheme: Scheme, hash: &str) -> Result<(), HashError> {
    let bad = |reason| Err(HashError::malformed(scheme, reason));
    let checksum_len = if scheme == Scheme::Sha512Crypt {
        86
    } else {
        43
    };
    let mut fields = hash.split('$').skip(2);
    let mut field = fields.next();
    if let Some(rounds) = field.and_then(|f| f.strip_prefix("rounds=")) {
        match rounds.parse::<u32>() {
            Ok(r) if (1000..=999_999_999).contains(&r) => {}
            _ => return bad("rounds must be a number between 1000 and 999999999"),
        }
        field = fields.next();
    }
    let Some(salt) = field else {
        return bad("missing salt");
    };
    if salt.len() > 16 || salt.contains(':') || salt.contains('\n') {
        return bad("salt must be at most 16 characters");
    }
    match fields.next() {
        Some(sum) if sum.len() == checksum_len && is_crypt_b64(sum) => {}
        _ => return bad("checksum has the wrong length or alphabet"),
    }
    if fields.next().is_some() {
        return bad("unexpected trailing field");
    }
    Ok(())
}

pub(super) fn verify_sha_crypt(
    scheme: Scheme,
    password: &[u8],
    hash: &str,
) -> Result<bool, HashError> {
    match sha_crypt::ShaCrypt::default().verify_password(password, hash) {
        Ok(()) => Ok(true),
        Err(sha_crypt::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(_) => Err(HashError::malformed(scheme, "cannot be verified")),
    }
}

/// `$1$salt$checksum` -> (salt, checksum).
pub(super) fn parse_md5_crypt(hash: &str) -> Result<(&str, &str), HashError> {
    let bad = |reason| Err(HashError::malformed(Scheme::Md5Crypt, reason));
    let Some(rest) = hash.strip_prefix("$1$") else {
        return bad("expected $1$<salt>$<checksum>");
    };
    let Some((salt, checksum)) = rest.split_once('$') else {
        return bad("expected $1$<salt>$<checksum>");
    };
    if salt.is_empty() || salt.len() > 8 {
        return bad("salt must be 1 to 8 characters");
    }
    if checksum.len() != 22 || !is_crypt_b64(checksum) {
        return bad("checksum must be 22 characters of crypt base64");
    }
    Ok((salt, checksum))
}

pub(super) fn verify_md5_crypt(password: &[u8], hash: &str) -> Result<bool, HashError> {
    let (salt, checksum) = parse_md5_crypt(hash)?;
    let computed = md5_crypt_checksum(password, salt.as_bytes());
    Ok(bool::from(computed.as_bytes().ct_eq(checksum.as_bytes())))
}

/// Poul-Henning Kamp's md5-crypt, as in FreeBSD and glibc. Small and frozen,
/// so it is written here rather than pulled in with an unmaintained crate.
fn md5_crypt_checksum(password: &[u8], salt: &[u8]) -> String {
    const MAGIC: &[u8] = b"$1$";
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();

    let mut ctx = Md5::new()
        .chain_update(password)
        .chain_update(MAGIC)
        .chain_update(salt);
    for chunk in password.chunks(16) {
        ctx.update(&alternate[..chunk.len()]);
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut digest = ctx.finalize();

    for round in 0..1000 {
        let mut ctx = Md5::new();
        if round & 1 == 1 {
            ctx.update(password);
        } else {
            ctx.update(digest);
        }
        if round % 3 != 0 {
            ctx.update(salt);
        }
        if round % 7 != 0 {
            ctx.update(password);
        }
        if round & 1 == 1 {
            ctx.update(digest);
        } else {
            ctx.update(password);
        }
        digest = ctx.finalize();
    }

    let d = digest;
    let mut out = String::with_capacity(22);
    let mut push = |value: u32, chars: usize| {
        let mut v = value;
        for _ in 0..chars {
            out.push(CRYPT_ALPHABET[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        push(
            (u32::from(d[a]) << 16) | (u32::from(d[b]) << 8) | u32::from(d[c]),
            4,
        );
    }
    push(u32::from(d[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_crypt_known_answer() {
        // Made with passlib 1.7.4: md5_crypt.using(salt="5pZSV9va").hash("password").
        assert_eq!(
            md5_crypt_checksum(b"password", b"5pZSV9va"),
            "azfrPr6af3Fc7dLblQXVa0"
        );
    }
}
