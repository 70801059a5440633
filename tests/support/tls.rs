//! TLS certificates for the tests' servers, made with the `openssl`
//! command line: self-signed ones for HTTPS servers that curl and openssl
//! talk to, and a CA with a server certificate it signed for clients that
//! verify chains as browsers do (rustls, in credshift's mail relay client).

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

/// A CA (EC P-256, valid one day) and a server certificate it signed for
/// `subject_alt_name` (not a CA itself), written into `dir`: the paths of
/// the CA's certificate, the server's certificate and the server's key.
pub fn ca_and_server(dir: &Path, subject_alt_name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir).expect("mkdir");
    let (ca_cert, ca_key) = self_signed(&ca_dir, "/CN=credshift test CA", "DNS:ca.invalid");
    let (cert, key, csr, ext) = (
        dir.join("server.pem"),
        dir.join("server-key.pem"),
        dir.join("server.csr"),
        dir.join("server.ext"),
    );
    std::fs::write(
        &ext,
        format!("basicConstraints=CA:FALSE\nsubjectAltName={subject_alt_name}\n"),
    )
    .expect("write the extensions");
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-subj", "/CN=credshift test server", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "1", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(&ca_cert)
        .arg("-CAkey")
        .arg(&ca_key)
        .args(["-CAcreateserial", "-extfile"])
        .arg(&ext)
        .arg("-out")
        .arg(&cert));
    (ca_cert, cert, key)
}
