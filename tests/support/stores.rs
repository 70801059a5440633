//! A fresh, migrated store on each database, and `store_test!`, which runs
//! one test body against both.

use credshift::store::Store;

/// A fresh store; for SQLite it owns the temp dir holding the file.
pub struct TestStore {
    pub store: Store,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    pub async fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("credshift.db").display());
        let store = Store::open(&url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        TestStore {
            store,
            url,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> TestStore {
        let url = super::postgres::server().fresh_database().await;
        let store = Store::open(&url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        TestStore {
            store,
            url,
            _dir: None,
        }
    }
}

/// `store_test!(name, body)` makes `name::sqlite` and `name::postgres`, each
/// calling `body(TestStore)` on a fresh store of that kind.
#[macro_export]
macro_rules! store_test {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body($crate::support::stores::TestStore::sqlite().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body($crate::support::stores::TestStore::postgres().await).await;
            }
        }
    };
}
