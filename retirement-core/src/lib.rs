//! The pure, sans-IO Open edX learner-retirement state machine.
//!
//! Open edX retires (GDPR-erases) a learner by moving their status through an ordered table of
//! states — PENDING → `RETIRING_X` → `X_COMPLETE` → … → COMPLETE, with ERRORED and ABORTED as dead
//! ends — calling each service's retirement API on the way. This crate holds those rules and
//! nothing else: no I/O, no clock, no async. Time comes in as a `now` parameter; effects go out
//! as values.
//!
//! # Example: one learner, your own I/O loop
//!
//! A [`Machine`] says what to do next ([`Machine::poll_action`]); you do it — write the state,
//! call the service — and tell it what happened ([`Machine::handle_input`]). Here the "store" is
//! the [`Retirement`] value itself and every service answers 204:
//!
//! ```
//! use std::sync::Arc;
//!
//! use chrono::{DateTime, Utc};
//! use retirement_core::{
//!     Action, Actor, DriverOptions, Input, Machine, OriginalIdentity, Outcome, Pipeline,
//!     RetiredIdConfig, Retirement, RetirementId, SplitMix64,
//! };
//!
//! let now: DateTime<Utc> = "2026-12-04T09:00:00Z".parse().unwrap();
//! let (table, pipeline) = Pipeline::six_stage_example();
//! let ids = RetiredIdConfig::new(vec!["the LMS's RETIRED_USER_SALTS".into()])?;
//! let original = OriginalIdentity {
//!     username: "ada".into(),
//!     email: "ada@example.org".into(),
//!     name: "Ada Lovelace".into(),
//! };
//! let mut learner = Retirement::create(
//!     RetirementId(1),
//!     Some(42),
//!     original.clone(),
//!     ids.retired_username(&original.username),
//!     ids.retired_email(&original.email),
//!     &table,
//!     now,
//! )?;
//!
//! let mut machine = Machine::start(
//!     &learner,
//!     Arc::new(pipeline),
//!     DriverOptions::default(),
//!     SplitMix64::new(7), // jitter for retries; seed it from the OS in production
//!     now,
//! );
//! let mut called = Vec::new();
//! let outcome = loop {
//!     match machine.poll_action().expect("a running machine always has a next action") {
//!         Action::SetState { new_state, response } => {
//!             // Your store's write (upstream: PATCH update_retirement_status).
//!             learner.advance(&table, &new_state, &response, Actor::Driver, now)?;
//!             machine.handle_input(now, Input::StateWritten)?;
//!         }
//!         Action::Call { service, operation, .. } => {
//!             // Your HTTP call; the machine classifies the answer.
//!             called.push(format!("{service} {operation}"));
//!             let answer = Input::Response { status: 204, body: String::new(), retry_after: None };
//!             machine.handle_input(now, answer)?;
//!         }
//!         Action::Finish(outcome) => break outcome,
//!         other => panic!("not in this run: {other:?}"),
//!     }
//! };
//! assert_eq!(outcome, Outcome::Completed);
//! assert_eq!(learner.current_state(), "COMPLETE");
//! assert_eq!(called[0], "LMS retirement_retire_forum");
//! assert_eq!(called.len(), 6);
//! # Ok::<(), retirement_core::CoreError>(())
//! ```
//!
//! Retries arrive as [`Action::RetryAt`]: feed [`Input::Tick`] at or after that time, from
//! whatever clock you keep. `examples/drive_one_learner.rs` shows a failing service retried
//! that way.
//!
//! The central types:
//! - [`StateTable`]: the ordered states, built and synchronised like upstream's
//!   `populate_retirement_states` ([`plan_sync`]).
//! - [`Pipeline`]: tubular's `retirement_pipeline`, a list of [`Stage`]s checked against the table.
//! - [`Retirement`]: one learner's status record with its append-only log, and its transitions
//!   ([`Retirement::advance`], [`Retirement::force`], [`Retirement::rerun`], [`Retirement::rewind`],
//!   [`Retirement::check_cancellable`]).
//! - [`Machine`]: the per-learner driver. It consumes [`Input`]s and emits [`Action`]s; retries
//!   are decided by [`RetryPolicy`] with jitter from an injected [`RandomSource`].
//! - [`RetiredIdConfig`]: user-util-compatible retired usernames and emails.
//!
//! Original usernames, emails and names live only in [`OriginalIdentity`], whose `Debug` redacts
//! them; errors and outcomes name learners by [`RetirementId`].
#![warn(missing_docs)]

mod deadline;
mod error;
mod machine;
mod pipeline;
mod retired_id;
mod retirement;
mod retry;
mod state;
mod wait;

#[cfg(test)]
mod tests;

pub use deadline::{Deadline, Regime};
pub use error::CoreError;
pub use machine::{
    Action, COMPLETE_TEXT, DriverOptions, ExitStatus, Input, Machine, OnWorkingState, Outcome,
};
pub use pipeline::{Pipeline, Position, SIX_STAGE_EXAMPLE, SIX_STAGE_STATES, Stage, StageKind};
pub use retired_id::{
    DEFAULT_RETIRED_EMAIL_DOMAIN, DEFAULT_RETIRED_PREFIX, RetiredIdConfig, hash as retired_hash,
};
pub use retirement::{
    Actor, LogEntry, OriginalIdentity, Override, Retirement, RetirementId, RetirementParts,
    validate_update_keys,
};
pub use retry::{
    Attempts, RandomSource, RetryPolicy, SplitMix64, TransportErrorKind, Verdict, classify_status,
    classify_transport, reason_phrase,
};
pub use state::{
    ABORTED, COMPLETE, DEFAULT_RETIREMENT_STATES, END_STATES, ERRORED, MAX_STATE_NAME_LEN, PENDING,
    REQUIRED_STATES, State, StateTable, SyncPlan, plan_sync,
};
pub use wait::{Wait, WaitingOn};
