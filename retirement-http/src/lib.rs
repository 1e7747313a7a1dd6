//! HTTP adapters: the services' retirement APIs, OAuth2 client credentials, the LMS-backed
//! store, and the driver runtime.
//!
//! # Example: the driver runtime over a store, with your own step caller
//!
//! [`runtime::Runner`] claims learners from any [`retirement_store::RetirementStore`], runs
//! each through `retirement-core`'s machine with bounded concurrency and leases, and performs
//! every call through a [`runtime::StepCaller`] — yours, or [`Steps`] over the HTTP clients:
//!
//! ```
//! use std::sync::Arc;
//!
//! use async_trait::async_trait;
//! use chrono::{DateTime, TimeDelta, Utc};
//! use retirement_core::{Input, OriginalIdentity, Pipeline, RetiredIdConfig, Retirement, Stage};
//! use retirement_http::runtime::{NoObserver, RunOptions, Runner, StepCaller};
//! use retirement_store::{DieselStore, NewRetirement, RetirementStore, StoreOptions};
//!
//! /// Your own services. The machine decides about retries from what you return.
//! struct MyServices;
//!
//! #[async_trait]
//! impl StepCaller for MyServices {
//!     async fn call(&self, stage: &Stage, learner: &Retirement, _now: DateTime<Utc>) -> Input {
//!         // e.g. DELETE https://crm.example.org/users/{lms_user_id}
//!         Input::StepSucceeded {
//!             message: format!("{} erased {}", stage.service, learner.retired_username()),
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (table, pipeline) = Pipeline::six_stage_example();
//! let store = Arc::new(DieselStore::open("sqlite::memory:", &StoreOptions::default()).await?);
//! store.migrate().await?;
//! let states: Vec<String> = table.names().map(str::to_owned).collect();
//! store.sync_states(&states, false).await?;
//! let ids = RetiredIdConfig::new(vec!["the LMS's RETIRED_USER_SALTS".into()])?;
//! let original = OriginalIdentity {
//!     username: "ada".into(),
//!     email: "ada@example.org".into(),
//!     name: "Ada Lovelace".into(),
//! };
//! // Requested 8 days ago: past the default 7-day cool-off.
//! let requested = Utc::now() - TimeDelta::days(8);
//! let learner = store.enqueue(NewRetirement::new(original, Some(42), &ids), requested).await?;
//!
//! let runner = Runner::new(
//!     store.clone(),
//!     Arc::new(MyServices),
//!     Arc::new(pipeline),
//!     RunOptions::default(),
//! );
//! // Set `stop` to true (e.g. on SIGTERM) for a graceful shutdown.
//! let (_stop, stopped) = tokio::sync::watch::channel(false);
//! let summary = runner.run(stopped, Arc::new(NoObserver)).await?;
//! assert_eq!((summary.claimed, summary.completed, summary.calls), (1, 1, 6));
//! assert_eq!(store.get(learner.id()).await?.current_state(), "COMPLETE");
//! # Ok(())
//! # }
//! ```
//!
//! With the edX services instead, the step caller is [`Steps`] over [`ServiceClients`] (here
//! against `fake::FakeEdx`, the fake edX of the `fake` feature, on 127.0.0.1):
//!
//! ```
//! # use std::sync::Arc;
//! # use chrono::{TimeDelta, Utc};
//! # use retirement_core::{OriginalIdentity, Pipeline, RetiredIdConfig};
//! # use retirement_http::runtime::{NoObserver, RunOptions, Runner};
//! # use retirement_store::{DieselStore, NewRetirement, RetirementStore, StoreOptions};
//! use retirement_http::fake::{FakeConfig, FakeEdx};
//! use retirement_http::{ClientCredentials, HttpOptions, ServiceClients, Steps};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (table, pipeline) = Pipeline::six_stage_example();
//! # let store = Arc::new(DieselStore::open("sqlite::memory:", &StoreOptions::default()).await?);
//! # store.migrate().await?;
//! # let states: Vec<String> = table.names().map(str::to_owned).collect();
//! # store.sync_states(&states, false).await?;
//! # let ids = RetiredIdConfig::new(vec!["salt".into()])?;
//! # let original = OriginalIdentity { username: "ada".into(), email: "ada@example.org".into(), name: "Ada".into() };
//! # store.enqueue(NewRetirement::new(original, Some(42), &ids), Utc::now() - TimeDelta::days(8)).await?;
//! let edx = FakeEdx::start(FakeConfig::default()).await?;
//! // tubular's `base_urls`; the LMS also issues the one JWT every service accepts.
//! let base_urls = ["lms", "ecommerce"]
//!     .into_iter()
//!     .map(|service| (service.to_owned(), edx.base_url()))
//!     .collect();
//! let credentials = ClientCredentials {
//!     client_id: "retirement-worker".into(),
//!     client_secret: "s3cret".into(),
//! };
//! let clients = ServiceClients::new(base_urls, credentials, Vec::new(), &HttpOptions::default())?;
//! let steps = Steps::new(Arc::new(clients), None, 2026);
//! let runner = Runner::new(store.clone(), Arc::new(steps), Arc::new(pipeline), RunOptions::default());
//! let (_stop, stopped) = tokio::sync::watch::channel(false);
//! let summary = runner.run(stopped, Arc::new(NoObserver)).await?;
//! assert_eq!(summary.completed, 1);
//! // One call per stage, e.g. POST /api/discussion/v1/accounts/retire_forum/.
//! assert_eq!(edx.calls().len(), 6);
//! # Ok(())
//! # }
//! ```
//!
//! `examples/embed_runtime.rs` does the same with a service that fails and recovers.
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
