//! Callers authenticate as a channel with a bearer token. Tokens are kept
//! only as SHA-256 digests (they are long random strings, so a fast hash is
//! right), compared in constant time, and never logged.

use std::path::Path;

use axum::http::{HeaderMap, header};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name, for logs and rate limits.
    pub name: String,
    /// The channel it speaks for (`portal`, `utility`, `helpdesk`, `radius`, …).
    pub channel: String,
    /// Realms it may act on (`*` for all).
    pub realms: Vec<String>,
    /// May reset any credential through the help desk endpoint.
    pub administrator: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    channel: String,
    realms: Vec<String>,
    /// Hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    sha256: String,
    #[serde(default)]
    administrator: bool,
}

/// Why a token file cannot be used: the file (and line:column, when the
/// YAML is malformed), and what is wrong. Never holds a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}{at}: {problem}")]
pub struct TokenFileError {
    path: String,
    at: String,
    problem: String,
}

/// The token table.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<(Caller, [u8; 32])>,
}

impl Tokens {
    /// Reads a YAML token file (also what a mounted Kubernetes Secret holds).
    pub fn load(path: &Path) -> Result<Tokens, TokenFileError> {
        let bad = |at: String, problem: String| TokenFileError {
            path: path.display().to_string(),
            at,
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(String::new(), e.to_string()))?;
        let file: TokenFile = serde_saphyr::from_str(&text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            let problem = e.to_string().lines().next().unwrap_or_default().to_owned();
            bad(at, problem)
        })?;
        let mut entries = Vec::new();
        for (i, t) in file.tokens.into_iter().enumerate() {
            let field =
                |f: &str, problem: String| bad(String::new(), format!("tokens[{i}].{f} {problem}"));
            crate::names::Name::parse(&t.channel).map_err(|e| field("channel", e.to_string()))?;
            let digest = hex_digest(&t.sha256)
                .ok_or_else(|| field("sha256", "must be 64 hex characters".into()))?;
            if t.realms.is_empty() {
                return Err(field(
                    "realms",
                    "must name at least one realm (or \"*\")".into(),
                ));
            }
            entries.push((
                Caller {
                    name: t.name,
                    channel: t.channel,
                    realms: t.realms,
                    administrator: t.administrator,
                },
                digest,
            ));
        }
        Ok(Tokens { entries })
    }

    /// The caller behind `Authorization: Bearer <token>`, if any.
    pub fn authenticate(&self, headers: &HeaderMap) -> Option<Caller> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?
            .trim();
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare with every entry, so timing does not tell which one matched.
        let mut found = None;
        for (caller, expected) in &self.entries {
            if bool::from(expected.ct_eq(&digest)) {
                found = Some(caller.clone());
            }
        }
        found
    }
}

fn hex_digest(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_by_digest_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        let digest = Sha256::digest(b"portal-secret-token");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(
            &path,
            format!("tokens:\n  - name: portal\n    channel: portal\n    realms: [wakwak]\n    sha256: {hex}\n"),
        )
        .unwrap();
        let tokens = Tokens::load(&path).unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            "Bearer portal-secret-token".parse().unwrap(),
        );
        assert_eq!(
            tokens.authenticate(&h).map(|c| c.channel),
            Some("portal".into())
        );
        h.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert!(tokens.authenticate(&h).is_none());
        std::fs::write(
            &path,
            "tokens:\n  - name: x\n    channel: Bad Channel\n    realms: []\n    sha256: 00\n",
        )
        .unwrap();
        let err = Tokens::load(&path).unwrap_err();
        assert!(err.to_string().contains("tokens[0].channel"), "{err}");
    }
}
