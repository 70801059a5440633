//! Self-signed TLS certificates for the tests' HTTPS servers, made with
//! the `openssl` command line.

use std::path::{Path, PathBuf};
use std::process::Command;

/// An EC P-256 certificate (valid one day) for `subject`, with
/// `subject_alt_name` (e.g. `IP:127.0.0.1`), and its key, written as
/// `cert.pem` and `key.pem` into `dir`; their paths.
pub fn self_signed(dir: &Path, subject: &str, subject_alt_name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", subject])
        .arg("-addext")
        .arg(format!("subjectAltName={subject_alt_name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}
