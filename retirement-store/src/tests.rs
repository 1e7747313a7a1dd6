//! Unit tests of the crate's own bookkeeping.

use crate::BackendKind;
use crate::conn::{StoreUrl, redact_password};

/// Every text column of the schema is in the privacy audit's list, so a column added later
/// cannot escape `text_columns_containing`.
#[test]
fn audit_scans_every_text_column() {
    let schema = include_str!("schema.rs");
    let audit = include_str!("audit.rs");
    let mut table = "";
    let mut checked = 0;
    for line in schema.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_suffix('{') {
            table = rest.split_whitespace().next().unwrap_or_default();
        } else if let Some((column, kind)) = line.split_once(" -> ")
            && (kind.trim_end_matches(',').ends_with("Text") || kind.contains("Text>"))
        {
            let entry = format!("{table}.{column}");
            assert!(audit.contains(&entry), "the audit does not scan {entry}");
            checked += 1;
        }
    }
    assert!(
        checked >= 25,
        "parsed only {checked} text columns from schema.rs"
    );
}

#[test]
fn store_urls_pick_the_backend_and_hide_passwords() {
    let cases = [
        (
            "sqlite://retirement.db",
            BackendKind::Sqlite,
            "retirement.db",
        ),
        ("sqlite:/var/lib/r.db", BackendKind::Sqlite, "/var/lib/r.db"),
        (
            "postgres://u:pw@db/q",
            BackendKind::Postgres,
            "postgres://u:pw@db/q",
        ),
        (
            "postgresql://db/q",
            BackendKind::Postgres,
            "postgresql://db/q",
        ),
        ("mysql://root@db/q", BackendKind::Mysql, "mysql://root@db/q"),
        (
            "mariadb://root@db/q",
            BackendKind::Mysql,
            "mysql://root@db/q",
        ),
    ];
    for (url, kind, target) in cases {
        let parsed = StoreUrl::parse(url).unwrap();
        assert_eq!(
            (parsed.kind, parsed.target.as_str()),
            (kind, target),
            "{url}"
        );
        assert!(!parsed.redacted.contains("pw"), "{url}");
    }
    assert_eq!(
        redact_password("postgres://u:secret@h/d"),
        "postgres://u:***@h/d"
    );
    let err = StoreUrl::parse("redis://u:secret@h")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("unsupported store URL") && !err.contains("secret"),
        "{err}"
    );
    assert!(StoreUrl::parse("sqlite://").is_err());
}

#[test]
fn transient_errors_are_the_ones_worth_retrying() {
    use diesel::result::{DatabaseErrorKind, Error};
    let db = |kind, message: &str| {
        crate::StoreError::Database(Error::DatabaseError(kind, Box::new(message.to_owned())))
    };
    assert!(
        db(
            DatabaseErrorKind::SerializationFailure,
            "could not serialize"
        )
        .is_transient()
    );
    assert!(
        db(
            DatabaseErrorKind::Unknown,
            "Deadlock found when trying to get lock"
        )
        .is_transient()
    );
    assert!(db(DatabaseErrorKind::Unknown, "database is locked").is_transient());
    // A connection lost mid-statement (what diesel-async reports; `chaos db` cuts them).
    assert!(db(DatabaseErrorKind::Unknown, "connection closed").is_transient());
    assert!(
        db(
            DatabaseErrorKind::Unknown,
            "Lost connection to MySQL server during query"
        )
        .is_transient()
    );
    assert!(crate::StoreError::Database(Error::BrokenTransactionManager).is_transient());
    assert!(crate::StoreError::Connection("reset".into()).is_transient());
    assert!(!db(DatabaseErrorKind::UniqueViolation, "duplicate key").is_transient());
    assert!(!crate::StoreError::NotAllComplete.is_transient());
    let lost = crate::StoreError::LeaseLost {
        retirement_id: retirement_core::RetirementId(3),
        attempt: 2,
    };
    assert!(
        !lost.is_transient(),
        "a lost lease must stop the worker, not be retried"
    );
}

/// A SQLite call dropped mid-statement (a cancelled request, a timeout) leaves the connection
/// usable: the next call must not find it still held by the abandoned statement (found by
/// `chaos kill`: diesel-async panicked "Cannot access shared transaction state").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_call_dropped_mid_statement_leaves_the_connection_usable() {
    use crate::{DieselStore, RetirementStore, StoreOptions};
    let dir = std::env::temp_dir().join(format!("store-cancel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("cancel.db").display());
    let store = DieselStore::open(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
        .sync_states(
            &[
                "PENDING".into(),
                "ERRORED".into(),
                "ABORTED".into(),
                "COMPLETE".into(),
            ],
            false,
        )
        .await
        .unwrap();
    let states: Vec<String> = ["PENDING", "ERRORED", "ABORTED", "COMPLETE"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for _ in 0..300 {
        // Dropped right after its first poll, while its transaction runs on the blocking pool.
        let _ =
            tokio::time::timeout(std::time::Duration::ZERO, store.sync_states(&states, true)).await;
        let plan = store.sync_states(&states, true).await.unwrap();
        assert!(plan.added.is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
