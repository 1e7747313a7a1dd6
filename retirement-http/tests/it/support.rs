//! What the store-backed tests share: a SQLite store in its own directory, a fake LMS serving
//! it, and clients pointed at the fake.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use retirement_http::fake::{FakeConfig, FakeEdx};
use retirement_http::{ClientCredentials, HttpOptions, ServiceClients};
use retirement_store::{DieselStore, RetirementStore, StoreOptions};

/// A directory removed when dropped.
pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) struct LmsWorld {
    pub(crate) store: Arc<DieselStore>,
    pub(crate) fake: FakeEdx,
    pub(crate) clients: Arc<ServiceClients>,
    _dir: TempDir,
}

/// A migrated SQLite store holding `states` (none synced when empty), the fake LMS over it, and
/// clients for the fake.
pub(crate) async fn lms_world(states: &[String]) -> LmsWorld {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir =
        TempDir(std::env::temp_dir().join(format!("retirement-http-{}-{n}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let url = format!("sqlite://{}", dir.0.join("lms.db").display());
    let store = DieselStore::open(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    if !states.is_empty() {
        store.sync_states(states, false).await.unwrap();
    }
    let store = Arc::new(store);
    let fake = FakeEdx::start(FakeConfig {
        lms_store: Some(store.clone()),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let base_urls: BTreeMap<String, String> = ["lms", "ecommerce"]
        .iter()
        .map(|key| (key.to_string(), fake.base_url()))
        .collect();
    let credentials = ClientCredentials {
        client_id: "retirement-worker".into(),
        client_secret: "s3cret".into(),
    };
    let clients = Arc::new(
        ServiceClients::new(base_urls, credentials, Vec::new(), &HttpOptions::default()).unwrap(),
    );
    LmsWorld {
        store,
        fake,
        clients,
        _dir: dir,
    }
}

/// An S3 target whose endpoint nobody listens on (port 9 on loopback), with no retries: every
/// upload fails at once.
pub(crate) fn unreachable_s3(url: &str) -> retirement_http::archive::ArchiveTarget {
    retirement_http::archive::ArchiveTarget::open_with(
        url,
        false,
        [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("AWS_ACCESS_KEY_ID", "k"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_MAX_RETRIES", "0"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
    .expect("an S3 URL opens without a request")
}
