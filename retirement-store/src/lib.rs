//! Persistence for retirement statuses, their logs and the assignment tables.
//!
//! [`DieselStore`] holds every line of SQL in the workspace. It speaks SQLite (bundled: the
//! embedded default), PostgreSQL and MySQL/MariaDB, chosen by URL (`sqlite://PATH`,
//! `postgres://…`, `mysql://…`), through diesel's query builder and diesel-async's pure-Rust
//! clients: no libpq, libmysqlclient or system SQLite is needed to build or run.
//!
//! # Example: a queue in embedded SQLite, claimed under a lease
//!
//! ```
//! use chrono::{DateTime, TimeDelta, Utc};
//! use retirement_core::{Actor, OriginalIdentity, Pipeline, RetiredIdConfig, SIX_STAGE_STATES};
//! use retirement_store::{
//!     ClaimRequest, DieselStore, NewRetirement, RetirementStore, StoreError, StoreOptions,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // `sqlite://retirement.db` for a file; `postgres://…` or `mysql://…` for a shared server.
//! let store = DieselStore::open("sqlite::memory:", &StoreOptions::default()).await?;
//! store.migrate().await?;
//! let states: Vec<String> = SIX_STAGE_STATES.iter().map(|s| s.to_string()).collect();
//! store.sync_states(&states, false).await?;
//! let (_, pipeline) = Pipeline::six_stage_example();
//!
//! // A learner asks to be forgotten.
//! let requested: DateTime<Utc> = "2026-11-01T10:00:00Z".parse()?;
//! let ids = RetiredIdConfig::new(vec!["the LMS's RETIRED_USER_SALTS".into()])?;
//! let original = OriginalIdentity {
//!     username: "ada".into(),
//!     email: "ada@example.org".into(),
//!     name: "Ada Lovelace".into(),
//! };
//! let learner = store
//!     .enqueue(NewRetirement::new(original, Some(42), &ids), requested)
//!     .await?;
//! assert_eq!(learner.current_state(), "PENDING");
//!
//! // After the 7-day cool-off a worker claims it, with a 5-minute lease…
//! let now = requested + TimeDelta::days(8);
//! let worker_1 = ClaimRequest::for_pipeline(&pipeline, "worker-1", 10, TimeDelta::minutes(5), 7);
//! let claimed = store.claim(&worker_1, now).await?;
//! assert_eq!(claimed.len(), 1);
//! let lease = claimed[0].lease.clone();
//! // …and every write it makes carries the lease.
//! store
//!     .advance(learner.id(), Some(&lease), "RETIRING_FORUMS", "", Actor::Driver, now)
//!     .await?;
//!
//! // While the lease runs nobody else gets the learner; once it expires, another worker
//! // resumes the step, and the first one's next write is fenced off.
//! let worker_2 = ClaimRequest::for_pipeline(&pipeline, "worker-2", 10, TimeDelta::minutes(5), 7);
//! assert!(store.claim(&worker_2, now + TimeDelta::minutes(1)).await?.is_empty());
//! let taken = store.claim(&worker_2, now + TimeDelta::minutes(6)).await?;
//! assert!(taken[0].resumes_working_state);
//! let late = now + TimeDelta::minutes(7);
//! let fenced = store
//!     .advance(learner.id(), Some(&lease), "FORUMS_COMPLETE", "", Actor::Driver, late)
//!     .await;
//! assert!(matches!(fenced, Err(StoreError::LeaseLost { .. })));
//! # Ok(())
//! # }
//! ```
//!
//! `examples/embedded_queue.rs` runs a small queue to COMPLETE and cleans it up.
//!
//! - [`RetirementStore`] is the trait the driver and admin commands use; `retirement-http`
//!   implements it over a real Open edX LMS. Every method is one transaction that enforces
//!   `retirement-core`'s rules.
//! - Leases with fencing let several processes share one queue: [`RetirementStore::claim`]
//!   sets owner, expiry and a new attempt number; every write-back carries the [`Lease`] and
//!   fails with [`StoreError::LeaseLost`] once the attempt moved on. No transaction is held
//!   open across a remote call.
//! - [`LeaseTable`] keeps the same fenced leases apart from the states, for the LMS-backed
//!   store in `retirement-http`: several driver hosts share one table while the LMS holds
//!   the states.
//! - [`Journal`] records what operators did besides moving learners (deadline extensions,
//!   reveals of an original email) and what each run did, for the console and the deadline
//!   clock. A SQL store is its own journal; the LMS store keeps it in its lease database.
//! - The assignment tables ([`DieselStore::import_assignments`], and the [`AssignmentStore`]
//!   this store and enterprise-access's schema implement: [`AssignmentStore::page`],
//!   [`AssignmentStore::write_expiries`], [`AssignmentStore::write_scrubs`], …) stream with
//!   keyset pagination and scrub PII from every table that held it, history included.
//!
//! Migrations are embedded per backend and applied only by an explicit
//! [`DieselStore::migrate`]; [`DieselStore::connect`] refuses a schema that is behind.
#![warn(missing_docs)]

// Lets src/testkit.rs name this crate `retirement_store` both here and where the store's own
// suite includes it as a module of its test crate.
extern crate self as retirement_store;

mod assignment_store;
mod assignments;
mod audit;
mod claim;
mod conn;
mod diesel_store;
pub mod enterprise_access;
mod error;
mod journal;
mod lease_table;
mod retirements;
mod rows;
mod schema;
#[cfg(feature = "testkit")]
pub mod testdb;
#[cfg(feature = "testkit")]
pub mod testkit;
#[cfg(test)]
mod tests;
mod waits;

pub use assignment_store::{
    AssignmentStore, Configuration, Cursor, EmailOutcome, ExpiryWrite, Notice, Notify, Page,
    PolicyLink, Row, RowContext, RowKey, Scan, ScrubWrite, Written,
};
pub use assignments::{DEFAULT_BATCH, ImportSummary};
pub use conn::{BackendKind, StoreOptions};
pub use diesel_store::DieselStore;
pub use error::{Result, StoreError};
pub use journal::{ActionKind, Journal, OperatorAction, RunRecord};
pub use lease_table::{Acquired, LeaseTable};
pub use retirement_core;
pub use retirements::{
    ClaimRequest, Claimed, Lease, MoveTarget, NewRetirement, QueueQuery, RetirementStore,
    StateWindow,
};
