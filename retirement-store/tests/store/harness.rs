//! The runner: every test of the suite against every backend, each test on a fresh database.
//!
//! SQLite always runs (a temporary file). PostgreSQL and MariaDB/MySQL run when
//! `RETIREMENT_TEST_POSTGRES_URL` / `RETIREMENT_TEST_MYSQL_URL` name a server; each test creates
//! its own database there and drops it afterwards. Without the variable a backend prints one
//! line saying it was skipped; under `CI=true` a missing variable or an unreachable server fails
//! the run instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use retirement_store::{BackendKind, DieselStore, StoreOptions};

use crate::testdb::TestDatabase;

pub(crate) type TestFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
pub(crate) type TestFn = Box<dyn Fn(Arc<DieselStore>) -> TestFuture>;

/// A test of the shared suite.
pub(crate) struct Test {
    pub name: &'static str,
    pub run: TestFn,
    /// Server backends only (e.g. many concurrent claimers: SQLite has one writer).
    pub servers_only: bool,
}

/// Declares the suite: `suite![name, …]` for `async fn name(store: Arc<DieselStore>)`.
#[macro_export]
macro_rules! test {
    ($name:path) => {
        $crate::harness::Test {
            name: stringify!($name),
            run: Box::new(|store| Box::pin($name(store))),
            servers_only: false,
        }
    };
    (servers $name:path) => {
        $crate::harness::Test {
            name: stringify!($name),
            run: Box::new(|store| Box::pin($name(store))),
            servers_only: true,
        }
    };
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A database made for one test, dropped by `finish`: a temporary SQLite file, or a database
/// on a server (`testdb`, shared with other crates' tests).
pub(crate) struct Provisioned {
    pub url: String,
    place: Place,
}

enum Place {
    SqliteFile(String),
    Server(TestDatabase),
}

impl Provisioned {
    pub(crate) async fn create(
        kind: BackendKind,
        admin_url: Option<&str>,
    ) -> Result<Provisioned, String> {
        match kind {
            BackendKind::Sqlite => {
                let n = COUNTER.fetch_add(1, Ordering::SeqCst);
                let path = std::env::temp_dir()
                    .join(format!("retirement_test_{}_{n}.db", std::process::id()))
                    .display()
                    .to_string();
                Ok(Provisioned {
                    url: format!("sqlite://{path}"),
                    place: Place::SqliteFile(path),
                })
            }
            BackendKind::Postgres | BackendKind::Mysql => {
                let admin = admin_url.expect("server backends have a URL");
                let db = TestDatabase::create(admin).await?;
                Ok(Provisioned {
                    url: db.url.clone(),
                    place: Place::Server(db),
                })
            }
        }
    }

    pub(crate) async fn finish(self) {
        match self.place {
            Place::SqliteFile(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{path}{suffix}"));
                }
            }
            Place::Server(db) => db.drop_database().await,
        }
    }
}

/// A fresh, migrated store for one test.
pub(crate) async fn fresh_store(
    kind: BackendKind,
    admin_url: Option<&str>,
) -> Result<(Arc<DieselStore>, Provisioned), String> {
    let db = Provisioned::create(kind, admin_url).await?;
    let store = DieselStore::open(&db.url, &StoreOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    Ok((Arc::new(store), db))
}

/// Runs the suite; returns the process exit code.
pub(crate) fn run(tests: Vec<Test>) -> i32 {
    // libtest's conventions: positional filters (a test runs when any matches), `--skip PATTERN`,
    // and flags that take a value are consumed rather than taken for filters.
    let mut args: Vec<String> = Vec::new();
    let mut skips: Vec<String> = Vec::new();
    let mut raw = std::env::args().skip(1);
    while let Some(arg) = raw.next() {
        match arg.as_str() {
            "--skip" => skips.extend(raw.next()),
            "--test-threads" | "--color" | "--format" | "--logfile" | "-Z" => {
                raw.next();
            }
            flag if flag.starts_with('-') => {}
            _ => args.push(arg),
        }
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let backends = [
        (BackendKind::Sqlite, None),
        (BackendKind::Postgres, Some("RETIREMENT_TEST_POSTGRES_URL")),
        (BackendKind::Mysql, Some("RETIREMENT_TEST_MYSQL_URL")),
    ];
    let (mut passed, mut failed, mut filtered) = (0, 0, 0);
    let mut failures = Vec::new();
    for (kind, var) in backends {
        let url = match var {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(url) if !url.is_empty() => Some(url),
                _ if ci => {
                    println!("{kind}: FAILED: {var} is not set and CI=true");
                    failed += 1;
                    failures.push(format!("{kind}: {var} not set"));
                    continue;
                }
                _ => {
                    println!("{kind}: skipped ({var} is not set)");
                    continue;
                }
            },
        };
        // Reachability first, so an unreachable server is one clear failure, not one per test.
        if let Err(e) = runtime.block_on(async {
            let db = Provisioned::create(kind, url.as_deref()).await?;
            db.finish().await;
            Ok::<(), String>(())
        }) {
            if ci || kind == BackendKind::Sqlite {
                println!("{kind}: FAILED: {e}");
                failed += 1;
                failures.push(format!("{kind}: {e}"));
            } else {
                println!("{kind}: skipped (server unreachable: {e})");
            }
            continue;
        }
        for test in &tests {
            let full = format!("{kind}::{}", test.name);
            let selected = args.is_empty() || args.iter().any(|f| full.contains(f.as_str()));
            if !selected || skips.iter().any(|f| full.contains(f.as_str())) {
                filtered += 1;
                continue;
            }
            if test.servers_only && kind == BackendKind::Sqlite {
                continue;
            }
            let outcome = runtime.block_on(async {
                let (store, db) = fresh_store(kind, url.as_deref()).await?;
                let result = tokio::spawn((test.run)(store)).await;
                db.finish().await;
                result.map_err(|e| {
                    if e.is_panic() {
                        let panic = e.into_panic();
                        panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_else(|| "panicked".into())
                    } else {
                        e.to_string()
                    }
                })
            });
            match outcome {
                Ok(()) => {
                    println!("test {full} ... ok");
                    passed += 1;
                }
                Err(e) => {
                    println!("test {full} ... FAILED\n    {e}");
                    failures.push(full);
                    failed += 1;
                }
            }
        }
    }
    println!("\nstore suite: {passed} passed; {failed} failed; {filtered} filtered out");
    for failure in &failures {
        println!("    failed: {failure}");
    }
    if failed > 0 { 1 } else { 0 }
}
