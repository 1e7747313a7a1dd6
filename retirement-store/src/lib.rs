//! Persistence for retirement statuses, their logs and the assignment tables.
//!
//! This crate will hold every line of SQL in the workspace: diesel-backed storage with SQLite as
//! the embedded default and PostgreSQL or MySQL/MariaDB for deployments that share one queue
//! between several workers, plus fenced leases so two workers never act on one learner at once.
//! It is filled by the persistence issue; for now it only fixes the workspace layout.
#![warn(missing_docs)]

pub use retirement_core;
