//! The members: the six demo members of the example and 30,000 more, a
//! sample of which have passwords the test knows, hashed in six real
//! formats.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use credshift::hashing::{Argon2Params, Secret, hash_password};
use sha2::Digest as _;

use crate::support::serve::DEMO;
use crate::support::serve::example_dir;
use crate::support::tokens::random_hex;
use crate::{MEMBERS, SAMPLE};

/// A member whose password the test knows.
#[derive(Debug, Clone)]
pub struct Member {
    pub login_id: String,
    pub email: String,
    pub password: String,
}

/// What was imported.
pub struct Population {
    pub csv: String,
    /// The sample (`SAMPLE`, in login-ID order), then the six demo members.
    pub known: Vec<Member>,
    /// Every account's imported (login, mail) hashes; `None`: no login (out of scope).
    pub imported: HashMap<String, (Option<String>, String)>,
}

/// The example's (login, mail) hashes, by demo member.
pub fn demo_hashes() -> Vec<(String, String, String, String)> {
    let mut reader =
        csv::Reader::from_path(example_dir().join("members.csv")).expect("members.csv");
    reader
        .records()
        .map(|r| {
            let r = r.expect("members.csv row");
            (
                r[0].to_owned(),
                r[1].to_owned(),
                r[2].to_owned(),
                r[3].to_owned(),
            )
        })
        .collect()
}

/// md5-crypt (`-1`), sha256-crypt (`-5`) or sha512-crypt (`-6`) hashes, one per password.
pub fn openssl_crypt(flag: &str, passwords: &[&str]) -> Vec<String> {
    let mut child = Command::new("openssl")
        .args(["passwd", flag, "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl (the tests need it, README: Testing)");
    let mut input = passwords.join("\n");
    input.push('\n');
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write passwords");
    let out = child.wait_with_output().expect("openssl passwd");
    assert!(out.status.success(), "openssl passwd {flag} failed");
    let hashes: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(hashes.len(), passwords.len(), "openssl passwd {flag}");
    hashes
}

/// `{SSHA}`: base64(SHA-1(password ‖ salt) ‖ salt), as LDAP servers store it.
pub fn ssha(password: &str) -> String {
    use base64::Engine as _;
    let salt = random_hex(4).into_bytes();
    let mut h = sha1::Sha1::new();
    h.update(password.as_bytes());
    h.update(&salt);
    let mut raw: Vec<u8> = h.finalize().iter().copied().collect();
    raw.extend_from_slice(&salt);
    format!(
        "{{SSHA}}{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Real hashes of the sample's passwords, six formats in turn: argon2id with
/// the policy's default parameters, md5-crypt, sha512-crypt, bcrypt,
/// {SSHA}, sha256-crypt.
pub fn sample_hashes(passwords: &[String]) -> Vec<String> {
    let mut hashes = vec![String::new(); passwords.len()];
    let of = |scheme: usize| -> Vec<usize> { (scheme..passwords.len()).step_by(6).collect() };
    for (scheme, flag) in [(1, "-1"), (2, "-6"), (5, "-5")] {
        let idx = of(scheme);
        let pws: Vec<&str> = idx.iter().map(|&i| passwords[i].as_str()).collect();
        for (i, h) in idx.into_iter().zip(openssl_crypt(flag, &pws)) {
            hashes[i] = h;
        }
    }
    for i in of(4) {
        hashes[i] = ssha(&passwords[i]);
    }
    // argon2id and bcrypt cost real CPU: two threads.
    let slow: Vec<usize> = of(0).into_iter().chain(of(3)).collect();
    let computed: Vec<(usize, String)> = std::thread::scope(|s| {
        let workers: Vec<_> = slow
            .chunks(slow.len().div_ceil(2))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|&i| {
                            let pw = &passwords[i];
                            let h = if i % 6 == 0 {
                                hash_password(&Secret::from(pw.as_str()), Argon2Params::default())
                                    .expect("argon2id")
                            } else {
                                bcrypt::hash(pw, 8).expect("bcrypt")
                            };
                            (i, h)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("hash worker"))
            .collect()
    });
    for (i, h) in computed {
        hashes[i] = h;
    }
    hashes
}

pub fn population() -> Population {
    let demo = demo_hashes();
    let step = MEMBERS / SAMPLE;
    let sample_at = |k: usize| k * step + step / 2;
    let passwords: Vec<String> = (0..SAMPLE)
        .map(|k| format!("member-{k:03}-{}", random_hex(6)))
        .collect();
    let hashes = sample_hashes(&passwords);
    let mut csv = String::from("login_id,base_email,login,mail\n");
    let mut known = Vec::new();
    let mut imported = HashMap::new();
    let mut row = |login_id: &str, email: &str, login: Option<&str>, mail: &str| {
        csv.push_str(&format!(
            "{login_id},{email},{},\"{mail}\"\n",
            login.map(|h| format!("\"{h}\"")).unwrap_or_default()
        ));
        imported.insert(
            login_id.to_owned(),
            (login.map(str::to_owned), mail.to_owned()),
        );
    };
    for ((login_id, email, login, mail), (demo_id, password)) in demo.iter().zip(DEMO) {
        assert_eq!(login_id, demo_id, "examples/2018-split/members.csv changed");
        row(login_id, email, Some(login), mail);
        known.push(Member {
            login_id: login_id.clone(),
            email: email.clone(),
            password: password.to_owned(),
        });
    }
    let mut k = 0;
    for n in 0..MEMBERS {
        let login_id = format!("wk{n:06}");
        let email = format!("{login_id}@wakwak.example.jp");
        let (_, _, demo_login, demo_mail) = &demo[n % demo.len()];
        if k < SAMPLE && n == sample_at(k) {
            row(&login_id, &email, Some(&hashes[k]), demo_mail);
            known.push(Member {
                login_id,
                email,
                password: passwords[k].clone(),
            });
            k += 1;
        } else if n % 101 == 0 {
            // A member with mail only: out of the cutover's scope.
            row(&login_id, &email, None, demo_mail);
        } else {
            row(&login_id, &email, Some(demo_login), demo_mail);
        }
    }
    // Sample first, demo members last.
    known.rotate_left(DEMO.len());
    Population {
        csv,
        known,
        imported,
    }
}
