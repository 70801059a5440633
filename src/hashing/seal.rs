//! Sealing the outbox payload: the temporary password lives in plaintext
//! only inside this encrypted blob (ChaCha20-Poly1305, random nonce) until
//! the mail is sent, and is erased then.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngExt as _;
use zeroize::Zeroizing;

/// The environment variable holding the outbox key (32 bytes, base64).
pub const KEY_ENV: &str = "CREDSHIFT_OUTBOX_KEY";

/// Why a payload cannot be sealed or opened, or the key is unusable. Never
/// holds the key or the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("{KEY_ENV} is not base64")]
    KeyNotBase64,
    #[error("{KEY_ENV} must be 32 bytes, got {0}")]
    KeyLength(usize),
    #[error("cannot seal the payload")]
    Seal,
    #[error("sealed payload too short")]
    TooShort,
    #[error("cannot open the payload (wrong key?)")]
    Open,
}

/// Encrypts and decrypts outbox payloads with one key. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

impl Sealer {
    /// From 32 key bytes in base64 (e.g. `head -c32 /dev/urandom | base64`).
    pub fn from_base64(key: &str) -> Result<Sealer, SealError> {
        let bytes = Zeroizing::new(
            BASE64
                .decode(key.trim())
                .map_err(|_| SealError::KeyNotBase64)?,
        );
        let key = Key::try_from(&bytes[..]).map_err(|_| SealError::KeyLength(bytes.len()))?;
        Ok(Sealer {
            cipher: ChaCha20Poly1305::new(&key),
        })
    }

    /// From the environment; `None` when unset.
    pub fn from_env() -> Result<Option<Sealer>, SealError> {
        match std::env::var(KEY_ENV) {
            Ok(v) if !v.trim().is_empty() => Sealer::from_base64(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// `nonce || ciphertext`.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce_bytes = [0u8; 12];
        rand::rng().fill(&mut nonce_bytes[..]);
        let nonce = Nonce::try_from(&nonce_bytes[..]).map_err(|_| SealError::Seal)?;
        let sealed = self
            .cipher
            .encrypt(&nonce, plaintext)
            .map_err(|_| SealError::Seal)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() < 12 {
            return Err(SealError::TooShort);
        }
        let (nonce, body) = sealed.split_at(12);
        let nonce = Nonce::try_from(nonce).map_err(|_| SealError::TooShort)?;
        self.cipher
            .decrypt(&nonce, body)
            .map(Zeroizing::new)
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_and_tamper() {
        let s = Sealer::from_base64(&BASE64.encode([7u8; 32])).unwrap();
        let sealed = s.seal(b"temp-pass-123").unwrap();
        assert!(!sealed.windows(13).any(|w| w == b"temp-pass-123"));
        assert_eq!(&s.open(&sealed).unwrap()[..], b"temp-pass-123");
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(s.open(&bad).is_err());
        assert!(Sealer::from_base64("short").is_err());
        let short_key = BASE64.encode([7u8; 16]);
        assert_eq!(
            Sealer::from_base64(&short_key).map(|_| ()),
            Err(SealError::KeyLength(16))
        );
    }
}
