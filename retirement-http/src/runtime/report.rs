//! What a run reports: each learner's [`LearnerReport`], the run's [`RunSummary`], the
//! [`RunObserver`] hooks and [`RunError`].

use retirement_core::{ExitStatus, Outcome, RetirementId};
use retirement_store::StoreError;
use serde::Serialize;

/// How one learner's turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LearnerResult {
    /// COMPLETE.
    Completed,
    /// ERRORED (or the ERRORED write failed too).
    Errored,
    /// Refused (end, working, unknown or malformed state).
    Refused,
    /// Another worker or an operator took the learner over.
    LeaseLost,
    /// Stopped by shutdown between stages; resumed by the next run.
    Interrupted,
    /// Its next step's service was down for longer than the run's patience: left in its
    /// state with its lease released, resumed by a later run.
    Deferred,
    /// Parked in a working state on a vendor job (polled by a later run) or a person
    /// (`retire done`).
    Waiting,
}

/// One learner's turn, for progress and summaries (no PII).
#[derive(Debug, Clone, Serialize)]
pub struct LearnerReport {
    /// The retirement.
    pub retirement_id: RetirementId,
    /// The hashed username.
    pub retired_username: String,
    /// How it ended.
    pub result: LearnerResult,
    /// The machine's outcome (absent when interrupted).
    pub outcome: Option<Outcome>,
    /// Service calls made.
    pub calls: u64,
    /// State writes made.
    pub writes: u64,
    /// The endpoint (`SERVICE operation`) a deferred learner waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<String>,
}

impl LearnerReport {
    /// tubular's exit status for this learner.
    pub fn exit_status(&self) -> ExitStatus {
        match &self.outcome {
            Some(outcome) => outcome.exit_status(),
            None => ExitStatus::UserInWorkingState,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    /// Learners claimed.
    pub claimed: u64,
    /// Learners that reached COMPLETE.
    pub completed: u64,
    /// Learners set to ERRORED.
    pub errored: u64,
    /// Learners refused by the machine.
    pub refused: u64,
    /// Learners lost to another worker or an operator.
    pub lease_lost: u64,
    /// Learners stopped by shutdown (resumed by the next run).
    pub interrupted: u64,
    /// Learners left resumable because their next step's service was down.
    pub deferred: u64,
    /// Learners parked on a vendor job or a person.
    pub waiting: u64,
    /// Endpoints (`SERVICE operation`) still down when the run ended, with learners waiting
    /// on them, resumable (sorted).
    pub services_down: Vec<String>,
    /// Service calls made.
    pub calls: u64,
    /// State writes made.
    pub writes: u64,
    /// Whether shutdown was asked for.
    pub shutdown: bool,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Retirement ids of the ERRORED learners.
    pub errored_ids: Vec<RetirementId>,
}

impl RunSummary {
    pub(super) fn add(&mut self, report: &LearnerReport) {
        self.calls += report.calls;
        self.writes += report.writes;
        match report.result {
            LearnerResult::Completed => self.completed += 1,
            LearnerResult::Errored => {
                self.errored += 1;
                self.errored_ids.push(report.retirement_id);
            }
            LearnerResult::Refused => self.refused += 1,
            LearnerResult::LeaseLost => self.lease_lost += 1,
            LearnerResult::Interrupted => self.interrupted += 1,
            LearnerResult::Waiting => self.waiting += 1,
            LearnerResult::Deferred => {
                self.deferred += 1;
                if let Some(endpoint) = &report.waiting_on
                    && !self.services_down.contains(endpoint)
                {
                    self.services_down.push(endpoint.clone());
                    self.services_down.sort();
                }
            }
        }
    }

    /// Adds another run's figures (for `--watch` totals).
    pub fn merge(&mut self, other: &RunSummary) {
        self.claimed += other.claimed;
        self.completed += other.completed;
        self.errored += other.errored;
        self.refused += other.refused;
        self.lease_lost += other.lease_lost;
        self.interrupted += other.interrupted;
        self.deferred += other.deferred;
        self.waiting += other.waiting;
        // What is down now is what the latest pass saw.
        self.services_down = other.services_down.clone();
        self.calls += other.calls;
        self.writes += other.writes;
        self.shutdown |= other.shutdown;
        self.seconds += other.seconds;
        self.errored_ids.extend(&other.errored_ids);
    }
}

/// What the runner reports as it goes (progress bars, metrics).
pub trait RunObserver: Send + Sync {
    /// Learners were claimed.
    fn claimed(&self, _count: usize) {}
    /// A learner's turn ended.
    fn finished(&self, _report: &LearnerReport) {}
}

/// An observer that ignores everything.
pub struct NoObserver;
impl RunObserver for NoObserver {}

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store failed in a way retrying did not fix.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// The queue is larger than the fail-safe allows (tubular's `user_count_error_threshold`).
    #[error("Too many learners to retire! Expected {threshold} or fewer, got {count}!")]
    TooManyLearners {
        /// The threshold.
        threshold: usize,
        /// How many are queued (counted up to threshold + 1).
        count: usize,
    },
}
