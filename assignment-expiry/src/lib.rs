//! The pure expiration rule engine for enterprise content assignments.
//!
//! Same purity rules as `retirement-core`: no I/O, no clock, no async; `now` is a parameter.
//! The rules themselves arrive with the assignment-expiry issue; for now the crate only fixes the
//! workspace layout.
#![warn(missing_docs)]
