//! Bearer tokens of the API's callers and the token file `credshift serve`
//! reads (SHA-256 digests only), plus the random bytes tests make them from.

use sha2::{Digest as _, Sha256};

/// `n` random bytes from the kernel.
pub fn random_bytes(n: usize) -> Vec<u8> {
    use std::io::Read as _;
    let mut out = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut out))
        .expect("/dev/urandom");
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn random_hex(bytes: usize) -> String {
    hex(&random_bytes(bytes))
}

pub fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

/// One token per caller, each named after its channel, except the help
/// desk's administrator (channel helpdesk, administrator: true).
#[derive(Debug, Clone)]
pub struct Tokens {
    pub portal: String,
    pub utility: String,
    pub helpdesk: String,
    pub admin: String,
    /// The RADIUS servers, which verify connection passwords.
    pub radius: String,
}

impl Tokens {
    pub fn new() -> Tokens {
        let t = |name: &str| format!("{name}-{}", random_hex(24));
        Tokens {
            portal: t("portal"),
            utility: t("utility"),
            helpdesk: t("helpdesk"),
            admin: t("admin"),
            radius: t("radius"),
        }
    }

    pub fn all(&self) -> [&str; 5] {
        [
            &self.portal,
            &self.utility,
            &self.helpdesk,
            &self.admin,
            &self.radius,
        ]
    }

    /// The token file for `realm`.
    pub fn yaml(&self, realm: &str) -> String {
        let entry = |name: &str, channel: &str, token: &str, admin: bool| {
            format!(
                "  - name: {name}\n    channel: {channel}\n    realms: [{realm}]\n    sha256: {}\n    administrator: {admin}\n",
                sha256_hex(token)
            )
        };
        [
            "tokens:\n".to_owned(),
            entry("portal", "portal", &self.portal, false),
            entry("utility", "utility", &self.utility, false),
            entry("helpdesk", "helpdesk", &self.helpdesk, false),
            entry("admin", "helpdesk", &self.admin, true),
            entry("radius", "radius", &self.radius, false),
        ]
        .concat()
    }
}
