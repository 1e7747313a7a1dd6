//! A learner parked in a working state: waiting on a vendor's asynchronous job, or on a person
//! who must finish a manual step. The wait is stored beside the record (it survives restarts)
//! and holds only what is valid for its kind.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::retirement::Retirement;

/// What a parked learner waits on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "snake_case")]
pub enum WaitingOn {
    /// A vendor job, polled until it is terminal.
    Job {
        /// The vendor's job id (Segment's `regulateId`, Amplitude's day).
        job_id: String,
        /// When to poll it next.
        next_poll: DateTime<Utc>,
    },
    /// A person: the stage is done when an operator marks it (`retire done`).
    Person {
        /// What the person was given (a vendor task id), if anything.
        reference: String,
    },
}

/// A learner's wait in a working state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wait {
    /// The working state the learner waits in.
    pub working_state: String,
    /// The stage's service key.
    pub service: String,
    /// What it waits on.
    #[serde(flatten)]
    pub on: WaitingOn,
    /// The record's `modified` when the wait was recorded: a wait applies only while the
    /// learner has not moved since (an operator's reset makes an old job id stale).
    pub since: DateTime<Utc>,
}

impl Wait {
    /// Whether this wait still describes `record`: same working state, not moved since.
    pub fn applies_to(&self, record: &Retirement) -> bool {
        record.current_state() == self.working_state && record.modified() == self.since
    }

    /// When the learner should be claimed again: the next poll, or never (a person).
    pub fn until(&self) -> Option<DateTime<Utc>> {
        match &self.on {
            WaitingOn::Job { next_poll, .. } => Some(*next_poll),
            WaitingOn::Person { .. } => None,
        }
    }
}

/// `waiting on SEGMENT job reg-1 (next poll 2026-…)` / `waiting for a person to finish
/// SALESFORCE (task 00T…)`: no learner data.
impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.on {
            WaitingOn::Job { job_id, next_poll } => write!(
                f,
                "waiting on {} job {job_id} (next poll {})",
                self.service,
                next_poll.to_rfc3339()
            ),
            WaitingOn::Person { reference } if reference.is_empty() => {
                write!(f, "waiting for a person to finish {}", self.service)
            }
            WaitingOn::Person { reference } => write!(
                f,
                "waiting for a person to finish {} ({reference})",
                self.service
            ),
        }
    }
}
