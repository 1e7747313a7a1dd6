//! The store suite, run against SQLite, PostgreSQL and MariaDB/MySQL (see `harness.rs`).

mod assignments;
mod enterprise_access;
mod harness;
mod lease_table;
mod leases;
mod retirements;
#[path = "../../src/testdb.rs"]
#[allow(dead_code, unreachable_pub)]
mod testdb;
#[path = "../../src/testkit.rs"]
#[allow(dead_code, unreachable_pub)]
mod testkit;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use retirement_store::retirement_core::{
    DEFAULT_RETIREMENT_STATES, OriginalIdentity, RetiredIdConfig, Retirement,
};
use retirement_store::{DieselStore, NewRetirement, RetirementStore};

fn main() {
    links_no_system_database_library();
    let mut tests = retirements::tests();
    tests.extend(leases::tests());
    tests.extend(lease_table::tests());
    tests.extend(enterprise_access::tests());
    tests.extend(assignments::tests());
    // The scenarios every RetirementStore shares (the LMS-backed store runs them too).
    tests.extend(
        testkit::scenarios()
            .into_iter()
            .map(|scenario| harness::Test {
                name: scenario.name,
                run: Box::new(move |store| {
                    (scenario.run)(testkit::Ctx {
                        store: store.clone(),
                        setup: store,
                    })
                }),
                servers_only: false,
            }),
    );
    std::process::exit(harness::run(tests));
}

/// The store is built without libpq, libmysqlclient, a system SQLite or OpenSSL: none of them
/// is mapped into this test process, which links the whole store.
fn links_no_system_database_library() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    for library in [
        "libpq.so",
        "libsqlite3.so",
        "libmysqlclient",
        "libmariadb",
        "libssl.so",
    ] {
        assert!(
            !maps.contains(library),
            "the store links the system library {library}"
        );
    }
    println!("test links_no_system_database_library ... ok");
}

/// 2026-11-01 12:00 UTC plus `days`.
pub fn day(days: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap() + chrono::TimeDelta::days(days)
}

pub fn ids() -> RetiredIdConfig {
    RetiredIdConfig::new(vec!["old-salt".into(), "new-salt".into()]).unwrap()
}

pub fn learner(n: usize) -> OriginalIdentity {
    OriginalIdentity {
        username: format!("Learner{n}"),
        email: format!("learner{n}@example.com"),
        name: format!("Learner Number {n}"),
    }
}

/// Syncs the upstream default states.
pub async fn with_default_states(store: &DieselStore) {
    let names: Vec<String> = DEFAULT_RETIREMENT_STATES
        .iter()
        .map(|s| s.to_string())
        .collect();
    store.sync_states(&names, false).await.unwrap();
}

/// Enqueues learner `n` at `at`.
pub async fn enqueue(store: &DieselStore, n: usize, at: DateTime<Utc>) -> Retirement {
    store
        .enqueue(NewRetirement::new(learner(n), Some(n as i64), &ids()), at)
        .await
        .unwrap()
}

pub type Store = Arc<DieselStore>;
