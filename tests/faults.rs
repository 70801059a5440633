//! Faults of the embedded store's file system: SQLite on a full or
//! read-only file system gives a clear error, nothing is corrupted, and the
//! work resumes when space (or write access) returns. Uses a small tmpfs,
//! so it needs root (the test environment runs as root; CI too).

// A panic in a test is its failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::Connection as _;

/// A tmpfs of its own, unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size_kib: u64) -> SmallFs {
        let dir = tempfile::tempdir().expect("dir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "these tests mount a small tmpfs and need root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount {options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn members(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("members.csv");
    let mut text = String::from("login_id,base_email,login\n");
    for i in 0..n {
        text.push_str(&format!(
            "wk{i:07},member{i}@wakwak.example.jp,$1$saltsalt$qjXMvbEw8oaL.CzflDugX/\n"
        ));
    }
    std::fs::write(&path, text).expect("members");
    path
}

use support::credshift_output as credshift;

async fn integrity(url: &str) -> String {
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
    sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .expect("integrity_check")
}

async fn count(url: &str, sql: &'static str) -> i64 {
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
    sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_file_system_clear_error_no_corruption_and_resume() {
    let work = tempfile::tempdir().expect("dir");
    let csv = members(work.path(), 20_000);
    let fs = SmallFs::mount(1024);
    let db = fs.path().join("credshift.db");
    let url = format!("sqlite://{}", db.display());

    // The import runs out of space part way.
    let out = credshift(&[
        "accounts",
        "import",
        "--realm",
        "wakwak",
        "--store",
        &url,
        csv.to_str().expect("path"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("full"), "a clear error: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(integrity(&url).await, "ok", "no corruption");
    let partial = count(&url, "SELECT COUNT(*) FROM accounts").await;
    assert!(partial < 20_000, "{partial}");
    // Whole batches only: every stored account has its credential.
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM credentials").await,
        partial
    );

    // Space returns: the same command finishes the job.
    fs.remount("size=65536k");
    let out = credshift(&[
        "accounts",
        "import",
        "--realm",
        "wakwak",
        "--store",
        &url,
        csv.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&url, "SELECT COUNT(*) FROM accounts").await, 20_000);
    assert_eq!(integrity(&url).await, "ok");

    // A cutover that runs out of space mid-way resumes from its checkpoint.
    let manifests = work.path().join("m");
    std::fs::create_dir(&manifests).expect("dir");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/2018-split");
    std::fs::copy(examples.join("policy.yaml"), manifests.join("policy.yaml")).expect("copy");
    let cutover = std::fs::read_to_string(examples.join("cutover.yaml")).expect("cutover");
    std::fs::write(
        manifests.join("cutover.yaml"),
        cutover.replace("batchSize: 1000", "batchSize: 500"),
    )
    .expect("write");
    let used = fs2_used_kib(fs.path());
    fs.remount(&format!("size={}k", used + 768));
    let out = credshift(&[
        "apply",
        "--store",
        &url,
        "-f",
        manifests.to_str().expect("path"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "runs out of space: {stderr}");
    assert!(stderr.contains("full"), "{stderr}");
    assert_eq!(integrity(&url).await, "ok");
    let done = count(
        &url,
        "SELECT COALESCE(MAX(done), 0) FROM cutover_checkpoints",
    )
    .await;
    let copied = count(
        &url,
        "SELECT COUNT(*) FROM credentials WHERE name IN ('support', 'connection')",
    )
    .await;
    assert_eq!(
        copied,
        2 * done,
        "the checkpoint and the copies agree: nothing half-done"
    );
    assert!(done < 20_000);

    fs.remount("size=131072k");
    let out = credshift(&[
        "apply",
        "--store",
        &url,
        "-f",
        manifests.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM credentials WHERE name = 'support'"
        )
        .await,
        20_000
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM credentials WHERE name = 'connection'"
        )
        .await,
        20_000
    );
    assert_eq!(integrity(&url).await, "ok");
}

/// KiB in use on a file system (statvfs through `df`, in 1K blocks).
fn fs2_used_kib(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-k", "--output=used"])
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_file_system_clear_error_and_resume() {
    let work = tempfile::tempdir().expect("dir");
    let fs = SmallFs::mount(65536);
    let db = fs.path().join("credshift.db");
    let url = format!("sqlite://{}", db.display());
    let csv = members(work.path(), 2_000);
    let out = credshift(&[
        "accounts",
        "import",
        "--realm",
        "wakwak",
        "--store",
        &url,
        csv.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    fs.remount("ro");
    let manifests = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/2018-split");
    let yaml_only = work.path().join("m");
    std::fs::create_dir(&yaml_only).expect("dir");
    for name in ["policy.yaml", "cutover.yaml"] {
        std::fs::copy(manifests.join(name), yaml_only.join(name)).expect("copy");
    }
    let out = credshift(&[
        "apply",
        "--store",
        &url,
        "-f",
        yaml_only.to_str().expect("path"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("read"),
        "a clear error: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    fs.remount("rw");
    assert_eq!(integrity(&url).await, "ok");
    let out = credshift(&[
        "apply",
        "--store",
        &url,
        "-f",
        yaml_only.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM credentials WHERE name = 'support'"
        )
        .await,
        2_000
    );
}
