//! Persistence for retirement statuses, their logs and the assignment tables.
//!
//! [`DieselStore`] holds every line of SQL in the workspace. It speaks SQLite (bundled: the
//! embedded default), PostgreSQL and MySQL/MariaDB, chosen by URL (`sqlite://PATH`,
//! `postgres://…`, `mysql://…`), through diesel's query builder and diesel-async's pure-Rust
//! clients: no libpq, libmysqlclient or system SQLite is needed to build or run.
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
//! - The assignment tables ([`DieselStore::import_assignments`],
//!   [`DieselStore::expire_assignments`], …) stream with keyset pagination and scrub PII from
//!   every table that held it, history included.
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
