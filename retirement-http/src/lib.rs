//! HTTP adapters: the services' retirement APIs, OAuth2 client credentials, and a fake edX.
//!
//! - [`ServiceClients`] calls every retirement operation of the edX services exactly as
//!   upstream's clients do (paths with trailing slashes, bodies, `Authorization: JWT`), plus
//!   operator-configured generic services, with timeouts, connection reuse, per-service
//!   concurrency limits and optional rate limits. A call returns a [`CallOutcome`] — status and
//!   body, or the transport failure — and `retirement-core` decides what it means.
//! - [`TokenSource`] holds the one JWT all edX services accept, cached and refreshed before it
//!   expires and once on a 401. Secrets and tokens never appear in `Debug` or errors.
//! - [`LmsStore`] implements `retirement-store`'s `RetirementStore` over the LMS API, so the
//!   driver works against a real Open edX as tubular does (see its docs for what is emulated).
//! - [`runtime`] is the driver runtime: it claims learners, runs `retirement-core`'s machine for
//!   each with bounded concurrency and leases, and performs its actions through a
//!   [`runtime::StepCaller`]; [`Steps`] is the standard one (the HTTP clients, and the built-in
//!   assignments stage). [`clock`] is where it reads the time; [`transport`] how requests leave.
//! - [`completion`]: the completion feed, PII-free, for downstream erasure jobs.
//! - [`archive`]: `retire cleanup`'s archive in object storage (S3, GCS, Azure, files), verified.
//! - [`partner`]: the LMS's partner-reporting queue (fetch, cleanup).
//! - [`alerts`]: PII-free alerts to a webhook and/or SMTP, deduplicated and rate-limited.
//! - `console` (feature `console`): `retire serve`, the operator console over any store.
//! - `fake::FakeEdx` (feature `fake`) serves the same API on 127.0.0.1 for tests, the demo and
//!   benchmarks.
#![warn(missing_docs)]

pub mod alerts;
pub mod archive;
mod auth;
pub mod catalog;
mod client;
pub mod clock;
pub mod completion;
pub mod connectors;
#[cfg(feature = "console")]
pub mod console;
mod error;
pub mod expiry;
#[cfg(feature = "fake")]
pub mod fake;
mod lms_store;
pub mod partner;
pub mod runtime;
mod status_json;
mod steps;
pub mod transport;

pub use auth::{AccessToken, ClientCredentials, TokenSource, token_url};
pub use catalog::{GenericService, LearnerRef};
pub use client::{CallOutcome, HttpOptions, ServiceClients};
pub use connectors::Secret;
pub use error::HttpError;
pub use lms_store::LmsStore;
pub use retirement_core;
pub use steps::{ASSIGNMENTS_OPERATION, ASSIGNMENTS_SERVICE, Steps};
