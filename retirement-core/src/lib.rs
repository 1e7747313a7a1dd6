//! The pure, sans-IO Open edX learner-retirement state machine.
//!
//! Open edX retires (GDPR-erases) a learner by moving their status through an ordered table of
//! states — PENDING → `RETIRING_X` → `X_COMPLETE` → … → COMPLETE, with ERRORED and ABORTED as dead
//! ends — calling each service's retirement API on the way. This crate holds those rules and
//! nothing else: no I/O, no clock, no async. Time comes in as a `now` parameter; effects go out
//! as values.
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
