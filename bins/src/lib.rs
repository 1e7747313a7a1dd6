//! The operators' commands: `retire` (the driver and admin CLI) and `expire-assignments` (the
//! assignment expiry cron).
//!
//! The binaries in `src/bin` only call [`retire::main`] and [`expire::main`]. This library
//! holds what belongs to binaries and nowhere else: the YAML config ([`config`]), flags, exit
//! statuses ([`error::exit`]), logs and progress bars ([`logging`]), and the metrics file
//! ([`metrics`]). Retirement logic lives in `retirement-core`; the runtime that drives it in
//! `retirement_http::runner`; persistence in `retirement-store`.
#![warn(missing_docs)]

pub mod alerts;
pub mod config;
pub mod error;
pub mod expire;
pub mod logging;
pub mod metrics;
pub mod retire;
#[cfg(feature = "demo")]
pub mod sandbox;
pub mod wiring;

pub use error::CliError;
