//! The connection password on the network: Debian's FreeRADIUS 3 with the
//! shipped `deploy/freeradius/` module and virtual server checks PAP
//! requests against a real `credshift serve`, and `radtest` and `radclient`
//! play the NAS (the BRAS). Right connection passwords are accepted for
//! every legacy hash format the demo members hold; wrong and unknown are
//! rejected; a station that guessed wrong too often is rejected even with
//! the right password while another station is not; CHAP is rejected
//! without asking credshift. rlm_rest reads every answer without a warning.

// A panic in a test is its failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::process::{Guard, Process, free_port};
use support::serve::{DEMO, Options, REALM, Serve};

/// The NAS's shared secret with the RADIUS server.
const NAS_SECRET: &str = "testing123-nas-secret";

/// A FreeRADIUS server running `deploy/freeradius/` against `serve`.
struct Radius {
    process: Process,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Radius {
    /// Debian's configuration (/etc/freeradius/3.0) with only what the
    /// shipped files use enabled: the `always` module, the credshift rest
    /// instance and virtual server (on a free port), and one client, the
    /// test as the NAS. Runs as this user, in the foreground, logging to a
    /// file.
    fn start(serve: &Serve) -> Radius {
        let dir = tempfile::tempdir().expect("temp dir");
        let raddb = dir.path().join("raddb");
        copy_dir(Path::new("/etc/freeradius/3.0"), &raddb);
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/freeradius");
        for sub in ["mods-enabled", "sites-enabled"] {
            std::fs::remove_dir_all(raddb.join(sub)).expect("clear");
            std::fs::create_dir(raddb.join(sub)).expect("mkdir");
        }
        std::fs::copy(
            raddb.join("mods-available/always"),
            raddb.join("mods-enabled/always"),
        )
        .expect("always");
        std::fs::copy(
            shipped.join("mods-available/credshift"),
            raddb.join("mods-enabled/credshift"),
        )
        .expect("module");
        let port = free_port();
        let site = std::fs::read_to_string(shipped.join("sites-available/credshift"))
            .expect("site")
            .replace("port = 1812", &format!("port = {port}"))
            .replace("ipaddr = *", "ipaddr = 127.0.0.1");
        assert!(
            site.contains(&format!("port = {port}")),
            "the site's port moved"
        );
        std::fs::write(raddb.join("sites-enabled/credshift"), site).expect("site");
        std::fs::write(
            raddb.join("clients.conf"),
            format!("client nas {{\n\tipaddr = 127.0.0.1\n\tsecret = {NAS_SECRET}\n}}\n"),
        )
        .expect("clients.conf");
        // Run as whoever runs the tests, not as the freerad user.
        let conf = std::fs::read_to_string(raddb.join("radiusd.conf")).expect("radiusd.conf");
        let conf: String = conf
            .lines()
            .filter(|l| {
                let t = l.trim_start();
                !t.starts_with("user =") && !t.starts_with("group =")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(raddb.join("radiusd.conf"), conf).expect("radiusd.conf");

        // Foreground, with request debugging: rlm_rest's parse warnings
        // are request messages, logged only then.
        let mut cmd = Command::new(freeradius());
        cmd.arg("-fxx")
            .arg("-d")
            .arg(&raddb)
            .args(["-l", "stdout"])
            .env(
                "CREDSHIFT_API_URL",
                format!("http://127.0.0.1:{}", serve.port),
            )
            .env("CREDSHIFT_REALM", REALM)
            .env("CREDSHIFT_RADIUS_TOKEN", &serve.tokens.radius);
        // `-l stdout`: its log is its stdout.
        let log = dir.path().join("radiusd.log");
        let mut process = Process::start_keeping(
            cmd,
            Guard::Watchdog,
            &dir.path().join("radiusd.err"),
            Some(&log),
        );
        let ready = process.wait_for("ready", Duration::from_secs(30), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Ready to process requests"))
        });
        if let Err(why) = ready {
            panic!(
                "freeradius {why}; log:\n{}{}",
                process.out_text(),
                process.log_text()
            );
        }
        Radius {
            process,
            port,
            _dir: dir,
        }
    }

    /// What FreeRADIUS logged so far.
    fn log(&self) -> String {
        format!("{}{}", self.process.out_text(), self.process.log_text())
    }

    /// `radtest USER PASSWORD` as a NAS: whether it was accepted.
    fn radtest(&self, user: &str, password: &str) -> bool {
        let out = Command::new("radtest")
            .args([
                user,
                password,
                &format!("127.0.0.1:{}", self.port),
                "0",
                NAS_SECRET,
            ])
            .output()
            .expect("radtest (apt-get install freeradius-utils)");
        self.accepted(&out)
    }

    /// An Access-Request with these attributes, through `radclient`.
    fn request(&self, attributes: &str) -> std::process::Output {
        let mut cmd = Command::new("radclient");
        cmd.args(["-x", "-r", "1", "-t", "10"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["auth", NAS_SECRET]);
        support::output_with_stdin(cmd, attributes)
    }

    /// Whether a PAP request from `station` was accepted.
    fn pap_from(&self, user: &str, password: &str, station: &str) -> bool {
        let out = self.request(&format!(
            "User-Name = \"{user}\", User-Password = \"{password}\", Calling-Station-Id = \"{station}\"\n"
        ));
        self.accepted(&out)
    }

    fn accepted(&self, out: &std::process::Output) -> bool {
        let text = String::from_utf8_lossy(&out.stdout);
        match (
            text.contains("Received Access-Accept"),
            text.contains("Received Access-Reject"),
        ) {
            (true, false) => true,
            (false, true) => false,
            _ => panic!(
                "no answer from FreeRADIUS: {text}{}\nits log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            ),
        }
    }
}

/// The FreeRADIUS daemon of Debian's package (`freeradius`; `radiusd` elsewhere).
fn freeradius() -> PathBuf {
    ["/usr/sbin/freeradius", "/usr/sbin/radiusd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("FreeRADIUS 3 (apt-get install freeradius freeradius-rest freeradius-utils)")
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-rL")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(
        status.success(),
        "cp -rL {} {}",
        from.display(),
        to.display()
    );
}

/// Every sentence of the module's doc comment, against the real server.
#[test]
fn freeradius_checks_connection_passwords_through_rlm_rest() {
    let serve = Serve::start(Options::default());
    let radius = Radius::start(&serve);

    // After the 2018 split the connection password is the old login
    // password, in whatever format it was imported.
    for (login_id, password) in DEMO {
        assert!(
            radius.radtest(login_id, password),
            "{login_id}: the right connection password is accepted\n{}",
            radius.log()
        );
    }
    let (taro, taro_password) = DEMO[0];
    assert!(
        !radius.radtest(taro, "not-the-password"),
        "a wrong password"
    );
    assert!(
        !radius.radtest("zz999999", taro_password),
        "an unknown member"
    );

    // Ten wrong guesses from one station: it is throttled, the right
    // password included, while the member's own station gets in.
    let (jiro, jiro_password) = DEMO[2];
    for i in 0..10 {
        assert!(!radius.pap_from(jiro, &format!("guess-{i}"), "02-00-5e-00-53-01"));
    }
    assert!(
        !radius.pap_from(jiro, jiro_password, "02-00-5e-00-53-01"),
        "a throttled station is rejected, even with the right password"
    );
    assert!(
        radius.pap_from(jiro, jiro_password, "02-00-5e-00-53-02"),
        "another station is not"
    );

    // CHAP needs the plaintext on the server: rejected, credshift not asked
    // (rlm_rest logs each call it makes, with its URI).
    let calls = |r: &Radius| r.log().matches("/v1/radius/authenticate").count();
    let before = calls(&radius);
    assert!(
        before > 0,
        "rlm_rest's calls are in the log:\n{}",
        radius.log()
    );
    let chap = radius.request(&format!(
        "User-Name = \"{taro}\", CHAP-Password = \"{taro_password}\"\n"
    ));
    assert!(!radius.accepted(&chap), "CHAP is rejected");
    assert!(
        String::from_utf8_lossy(&chap.stdout)
            .contains("only PAP can be checked against hashed passwords"),
        "by the virtual server, which says why: {}",
        String::from_utf8_lossy(&chap.stdout)
    );
    assert_eq!(calls(&radius), before, "without asking credshift");

    // rlm_rest read every answer as attributes, without a warning.
    let log = radius.log();
    for complaint in ["WARNING", "Failed parsing", "rlm_rest (credshift): Failed"] {
        assert!(
            !log.lines()
                .any(|l| l.contains("credshift") && l.contains(complaint)),
            "FreeRADIUS complained ({complaint}):\n{log}"
        );
    }
    assert!(
        !serve.log().contains(jiro_password),
        "no password in serve's log"
    );
}
