//! The crate's one error type.
//!
//! Where upstream (Open edX) has a message for the same refusal, the variant's `Display` is that
//! message, so operators and clients meet the text they already know. Two upstream messages carry
//! typos ("eariler", "deleteare"); `Display` spells them correctly and
//! [`CoreError::upstream_text`] returns the byte-exact upstream text for the places that must
//! reproduce the wire contract (the fake edX, LMS compatibility tests).
//!
//! No variant holds an original username, email or name: learners are named by retirement id.

use crate::retirement::RetirementId;

/// Everything `retirement-core` can refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    // ----- the state table (upstream `populate_retirement_states`) -----
    /// The list of states to build a table from is empty.
    #[error("settings.RETIREMENT_STATES does not exist or is empty.")]
    NoStates,
    /// One of PENDING, ERRORED, ABORTED, COMPLETE is missing; `listed` is the list as Python prints it.
    #[error(
        "settings.RETIREMENT_STATES ({listed}) does not contain all required states (PENDING,ERRORED,ABORTED,COMPLETE)"
    )]
    MissingRequiredStates {
        /// The offered list, formatted as a Python list.
        listed: String,
    },
    /// PENDING is not the first state.
    #[error("PENDING must be the first state")]
    PendingNotFirst,
    /// The last three states are not ERRORED, ABORTED, COMPLETE in that order.
    #[error("The last 3 states must be these (in this order): ['ERRORED', 'ABORTED', 'COMPLETE']")]
    WrongEndStates,
    /// A state name appears twice (upstream does not check; the database then fails).
    #[error("state {name} is listed more than once")]
    DuplicateState {
        /// The repeated name.
        name: String,
    },
    /// A state name is empty or blank.
    #[error("state names must not be empty (position {position})")]
    EmptyStateName {
        /// Zero-based position in the list.
        position: usize,
    },
    /// A state name is longer than the 30 characters of upstream's `state_name` column.
    #[error("state name {name} is {len} characters long; the limit is 30")]
    StateNameTooLong {
        /// The offending name.
        name: String,
        /// Its length in characters.
        len: usize,
    },
    /// A `RETIRING_X` state is not directly followed by its `X_COMPLETE` (upstream documents the
    /// rule but never checks it).
    #[error("state {working} must be directly followed by {expected}, found {found}")]
    UnpairedWorkingState {
        /// The `RETIRING_X` state.
        working: String,
        /// The `X_COMPLETE` it needs next.
        expected: String,
        /// What follows it instead (`nothing` at the end of the list).
        found: String,
    },
    /// Two stored states share an execution order.
    #[error("states {first} and {second} share execution order {order}")]
    DuplicateExecutionOrder {
        /// The shared order.
        order: i32,
        /// One state.
        first: String,
        /// The other.
        second: String,
    },
    /// `sync` refused: learners sit in states other than the four required ones.
    #[error(
        "Users are currently being processed. All users must be in one of these states to run this command: PENDING,ERRORED,ABORTED,COMPLETE"
    )]
    LearnersBeingProcessed,
    /// `sync` refused: learners sit in states the sync would delete; `states` is a Python set.
    #[error("Users exist in a state that is marked for deletion! States to delete are: {states}")]
    LearnersInDeletedStates {
        /// The states, formatted as a Python set.
        states: String,
    },

    // ----- the retirement record -----
    /// The table has no states, so there is no initial state to create a retirement in.
    #[error("Default state does not exist! Populate retirement states to retire users.")]
    NoDefaultState,
    /// A transition request body lacks a required key (`username`, `new_state`, `response`).
    #[error("RetirementStatus: Required key {key} missing from update")]
    MissingUpdateKey {
        /// The missing key.
        key: &'static str,
    },
    /// A transition request body has a key other than the three required ones and `force`.
    #[error("RetirementStatus: Unknown key {key} in update")]
    UnknownUpdateKey {
        /// The unexpected key.
        key: String,
    },
    /// A non-forced move out of a dead-end state (ERRORED, ABORTED, COMPLETE). Upstream's guard
    /// for this never fires (defect D1); ours does.
    #[error("RetirementStatus: Unable to move user from {current}")]
    DeadEnd {
        /// The current state in its string form, e.g. `ERRORED (step 131)`.
        current: String,
    },
    /// A non-forced move to an unknown, equal or earlier state.
    #[error("{new_state} does not exist or is an earlier state than current state {current}")]
    NotLaterState {
        /// The requested state.
        new_state: String,
        /// The current state in its string form.
        current: String,
    },
    /// A state name that the table does not know (a forced move to it is a 500 upstream, D3).
    #[error("unknown retirement state {name}")]
    UnknownState {
        /// The unknown name.
        name: String,
    },
    /// An operator override without the operator's name or a reason.
    #[error("an operator override needs a non-empty {field}")]
    MissingAuditField {
        /// `operator` or `reason`.
        field: &'static str,
    },
    /// `rerun` of a retirement that is not COMPLETE.
    #[error("only a COMPLETE retirement can be rerun; retirement {retirement_id} is in {state}")]
    NotComplete {
        /// The retirement.
        retirement_id: RetirementId,
        /// Its current state.
        state: String,
    },
    /// `rewind` found no earlier state to go back to.
    #[error("retirement {retirement_id} has no state to rewind to from {state}")]
    NothingToRewind {
        /// The retirement.
        retirement_id: RetirementId,
        /// Its current state.
        state: String,
    },
    /// Cancellation of a retirement outside PENDING. Upstream names the learner by original
    /// username here; we name the retirement id (privacy).
    #[error(
        "Retirement requests can only be cancelled for users in the PENDING state. Current request state for retirement {retirement_id}: {state}"
    )]
    NotPending {
        /// The retirement.
        retirement_id: RetirementId,
        /// Its current state name.
        state: String,
    },
    /// A step endpoint was asked to act on a learner outside a working state.
    #[error("{status} is in {state}, not a valid state to perform retirement actions on.")]
    NotActionable {
        /// The status in upstream's string form (`User: … State: … Last Updated: …`).
        status: String,
        /// The current state name.
        state: String,
    },

    // ----- the pipeline -----
    /// The pipeline has no stages.
    #[error("retirement_pipeline has no stages")]
    EmptyPipeline,
    /// A stage's service or operation is empty.
    #[error("retirement_pipeline stage {index}: service and operation must not be empty")]
    StageFieldEmpty {
        /// Zero-based stage index.
        index: usize,
    },
    /// A stage names a state the table does not know.
    #[error("retirement_pipeline stage {index}: state {state} is not in the state table")]
    StageStateUnknown {
        /// Zero-based stage index.
        index: usize,
        /// The unknown state.
        state: String,
    },
    /// A stage's completion state does not directly follow its working state in the table.
    #[error(
        "retirement_pipeline stage {index}: {complete} must directly follow {working} in the state table"
    )]
    StageNotAdjacent {
        /// Zero-based stage index.
        index: usize,
        /// The working state.
        working: String,
        /// The completion state.
        complete: String,
    },
    /// A state is used by two stages, or twice by one.
    #[error("retirement_pipeline stage {index}: state {state} is used more than once")]
    StageStateReused {
        /// Zero-based stage index.
        index: usize,
        /// The reused state.
        state: String,
    },
    /// A stage's states come before the previous stage's in the table, so the LMS would refuse
    /// the backward move.
    #[error(
        "retirement_pipeline stage {index}: {state} comes before the previous stage's states in the state table"
    )]
    StageOutOfOrder {
        /// Zero-based stage index.
        index: usize,
        /// The out-of-order state.
        state: String,
    },
    /// A stage uses PENDING, ERRORED, ABORTED or COMPLETE.
    #[error(
        "retirement_pipeline stage {index}: {state} is a required state and cannot belong to a stage"
    )]
    StageUsesRequiredState {
        /// Zero-based stage index.
        index: usize,
        /// The required state.
        state: String,
    },
    /// A stage's working state ends in `_COMPLETE`, in which the LMS refuses step calls.
    #[error(
        "retirement_pipeline stage {index}: working state {state} ends in _COMPLETE, where the LMS refuses retirement actions"
    )]
    WorkingStateNamedComplete {
        /// Zero-based stage index.
        index: usize,
        /// The working state.
        state: String,
    },

    // ----- retired identifiers -----
    /// No salt was configured for retired identifiers.
    #[error("Salt must be a list -or- tuple of all historical salts.")]
    NoSalts,

    // ----- the driver machine -----
    /// An input arrived that the machine was not waiting for (a runtime bug, not a learner's).
    #[error("driver input {input} is not expected while the machine is {step}")]
    UnexpectedInput {
        /// The input's kind.
        input: &'static str,
        /// What the machine was doing.
        step: &'static str,
    },
}

impl CoreError {
    /// The byte-exact message upstream sends for this refusal, typos included.
    ///
    /// Use it only where the wire contract must be reproduced (the fake edX, LMS compatibility
    /// tests). It differs from `Display` for [`CoreError::NotLaterState`] ("eariler", defect D11)
    /// and [`CoreError::LearnersInDeletedStates`] ("deleteare", defect D5).
    pub fn upstream_text(&self) -> String {
        match self {
            CoreError::NotLaterState { new_state, current } => format!(
                "{new_state} does not exist or is an eariler state than current state {current}"
            ),
            CoreError::LearnersInDeletedStates { states } => format!(
                "Users exist in a state that is marked for deletion! States to deleteare: {states}"
            ),
            other => other.to_string(),
        }
    }
}
