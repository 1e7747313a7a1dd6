//! The retirement pipeline: ordered stages `[working_state, complete_state, SERVICE, operation]`,
//! exactly as tubular's `retirement_pipeline` config key lists them.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::state::{END_STATES, PENDING, REQUIRED_STATES, StateTable};

/// The (service, operation) pairs whose 404 upstream counts as "nothing to delete".
const UPSTREAM_TOLERATED_404: &[(&str, &str)] = &[
    ("LMS", "retirement_retire_forum"),
    ("DEMOGRAPHICS", "retire_learner"),
    ("LICENSE_MANAGER", "retire_learner"),
];

/// The state list of the six-stage example pipeline ([`SIX_STAGE_EXAMPLE`]): upstream's operator
/// docs' stages plus notes and the LMS's misc step, with ecommerce in place of the docs'
/// `retire_mailings` stage, whose endpoint upstream removed (defect D9: it answers 404).
pub const SIX_STAGE_STATES: &[&str] = &[
    "PENDING",
    "RETIRING_FORUMS",
    "FORUMS_COMPLETE",
    "RETIRING_ECOM",
    "ECOM_COMPLETE",
    "RETIRING_ENROLLMENTS",
    "ENROLLMENTS_COMPLETE",
    "RETIRING_NOTES",
    "NOTES_COMPLETE",
    "RETIRING_LMS_MISC",
    "LMS_MISC_COMPLETE",
    "RETIRING_LMS",
    "LMS_COMPLETE",
    "ERRORED",
    "ABORTED",
    "COMPLETE",
];

/// The six-stage example pipeline (FORUMS, ECOM, ENROLLMENTS, NOTES, LMS_MISC, LMS) as
/// `retirement_pipeline` rows; the demo, the tests and the benchmarks share it.
pub const SIX_STAGE_EXAMPLE: &[[&str; 4]] = &[
    [
        "RETIRING_FORUMS",
        "FORUMS_COMPLETE",
        "LMS",
        "retirement_retire_forum",
    ],
    [
        "RETIRING_ECOM",
        "ECOM_COMPLETE",
        "ECOMMERCE",
        "retire_learner",
    ],
    [
        "RETIRING_ENROLLMENTS",
        "ENROLLMENTS_COMPLETE",
        "LMS",
        "retirement_unenroll",
    ],
    [
        "RETIRING_NOTES",
        "NOTES_COMPLETE",
        "LMS",
        "retirement_retire_notes",
    ],
    [
        "RETIRING_LMS_MISC",
        "LMS_MISC_COMPLETE",
        "LMS",
        "retirement_lms_retire_misc",
    ],
    [
        "RETIRING_LMS",
        "LMS_COMPLETE",
        "LMS",
        "retirement_lms_retire",
    ],
];

/// How a stage's work gets done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StageKind {
    /// One call (possibly sent in a batch with other learners'): its answer ends the stage.
    #[default]
    Call,
    /// The call starts a vendor job ([`crate::Input::JobStarted`]); the learner is parked and
    /// the job polled every `poll_every` until it is terminal.
    Job {
        /// Between polls.
        poll_every: std::time::Duration,
    },
    /// The call asks a person ([`crate::Input::PersonAsked`]); the learner is parked until an
    /// operator marks the stage done.
    Manual,
}

/// One stage: move to `working_state`, call `service.operation`, move to `complete_state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// The state the learner is in while the call runs, e.g. `RETIRING_FORUMS`.
    pub working_state: String,
    /// The state recorded once the call succeeded, e.g. `FORUMS_COMPLETE`.
    pub complete_state: String,
    /// The service key, e.g. `LMS`, `ECOMMERCE`.
    pub service: String,
    /// The operation of that service, e.g. `retirement_retire_forum`.
    pub operation: String,
    /// Whether a 404 answer means "nothing to delete" and counts as success. Upstream hard-codes
    /// this for three operations (see [`Stage::new`]); here it is a per-stage option, and the 404
    /// body is still written to the log (upstream records a bare `True`, defect D16).
    pub tolerate_404: bool,
    /// How its work gets done (default: one call).
    #[serde(default)]
    pub kind: StageKind,
}

impl Stage {
    /// A stage with upstream's 404 tolerance: on for `LMS retirement_retire_forum`,
    /// `DEMOGRAPHICS retire_learner` and `LICENSE_MANAGER retire_learner`, off elsewhere.
    pub fn new(
        working_state: impl Into<String>,
        complete_state: impl Into<String>,
        service: impl Into<String>,
        operation: impl Into<String>,
    ) -> Stage {
        let service = service.into();
        let operation = operation.into();
        let tolerate_404 = UPSTREAM_TOLERATED_404
            .iter()
            .any(|(s, o)| *s == service && *o == operation);
        Stage {
            working_state: working_state.into(),
            complete_state: complete_state.into(),
            service,
            operation,
            tolerate_404,
            kind: StageKind::Call,
        }
    }

    /// The same stage done the `kind` way.
    pub fn with_kind(mut self, kind: StageKind) -> Stage {
        self.kind = kind;
        self
    }

    /// The same stage with 404 tolerance set explicitly.
    pub fn with_tolerate_404(mut self, tolerate_404: bool) -> Stage {
        self.tolerate_404 = tolerate_404;
        self
    }
}

/// Where a state sits in a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// PENDING: nothing done yet.
    Pending,
    /// The working state of stage `i`.
    Working(usize),
    /// The completion state of stage `i`.
    Complete(usize),
    /// ERRORED, ABORTED or COMPLETE.
    End,
    /// A state this pipeline does not name (tubular's exit -6).
    Unknown,
}

/// A validated, ordered list of stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pipeline {
    stages: Vec<Stage>,
}

impl Pipeline {
    /// Validates `stages` against the state table: every state known, each completion state
    /// directly after its working state, stages in table order, no state used twice, no
    /// required state in a stage, no working state named `*_COMPLETE`.
    ///
    /// ```
    /// use retirement_core::{Pipeline, Stage, StateTable};
    ///
    /// let table = StateTable::from_names(&[
    ///     "PENDING", "RETIRING_FORUMS", "FORUMS_COMPLETE", "RETIRING_LMS", "LMS_COMPLETE",
    ///     "ERRORED", "ABORTED", "COMPLETE",
    /// ])?;
    /// // tubular's `retirement_pipeline` rows: [working, complete, SERVICE, operation].
    /// let pipeline = Pipeline::new(
    ///     vec![
    ///         Stage::new("RETIRING_FORUMS", "FORUMS_COMPLETE", "LMS", "retirement_retire_forum"),
    ///         Stage::new("RETIRING_LMS", "LMS_COMPLETE", "LMS", "retirement_lms_retire"),
    ///     ],
    ///     &table,
    /// )?;
    /// assert_eq!(pipeline.queue_states(), ["PENDING", "FORUMS_COMPLETE", "LMS_COMPLETE"]);
    ///
    /// // Stages out of the table's order are refused.
    /// let reversed = Pipeline::new(pipeline.stages().iter().rev().cloned().collect(), &table);
    /// assert!(reversed.is_err());
    /// # Ok::<(), retirement_core::CoreError>(())
    /// ```
    pub fn new(stages: Vec<Stage>, table: &StateTable) -> Result<Pipeline, CoreError> {
        let pipeline = Pipeline::without_table(stages)?;
        let mut previous_complete: Option<usize> = None;
        for (index, stage) in pipeline.stages.iter().enumerate() {
            let lookup = |state: &str| {
                table
                    .position(state)
                    .ok_or_else(|| CoreError::StageStateUnknown {
                        index,
                        state: state.to_owned(),
                    })
            };
            let working = lookup(&stage.working_state)?;
            let complete = lookup(&stage.complete_state)?;
            if complete != working + 1 {
                return Err(CoreError::StageNotAdjacent {
                    index,
                    working: stage.working_state.clone(),
                    complete: stage.complete_state.clone(),
                });
            }
            if previous_complete.is_some_and(|p| working < p) {
                return Err(CoreError::StageOutOfOrder {
                    index,
                    state: stage.working_state.clone(),
                });
            }
            previous_complete = Some(complete);
        }
        Ok(pipeline)
    }

    /// Validates what can be checked without the state table: for the LMS-backed mode, where
    /// the LMS holds the table and offers no API to read it (the LMS still refuses illegal
    /// moves). Checks non-empty fields, no state used twice, no required state in a stage and
    /// no working state named `*_COMPLETE`.
    pub fn without_table(stages: Vec<Stage>) -> Result<Pipeline, CoreError> {
        if stages.is_empty() {
            return Err(CoreError::EmptyPipeline);
        }
        let mut used = HashSet::new();
        for (index, stage) in stages.iter().enumerate() {
            if stage.service.trim().is_empty() || stage.operation.trim().is_empty() {
                return Err(CoreError::StageFieldEmpty { index });
            }
            for state in [&stage.working_state, &stage.complete_state] {
                if state.trim().is_empty() {
                    return Err(CoreError::EmptyStateName { position: index });
                }
                if REQUIRED_STATES.contains(&state.as_str()) {
                    return Err(CoreError::StageUsesRequiredState {
                        index,
                        state: state.clone(),
                    });
                }
                if !used.insert(state.as_str()) {
                    return Err(CoreError::StageStateReused {
                        index,
                        state: state.clone(),
                    });
                }
            }
            if stage.working_state.ends_with("_COMPLETE") {
                return Err(CoreError::WorkingStateNamedComplete {
                    index,
                    state: stage.working_state.clone(),
                });
            }
        }
        Ok(Pipeline { stages })
    }

    /// The six-stage example: [`SIX_STAGE_EXAMPLE`] over [`SIX_STAGE_STATES`], with its table.
    pub fn six_stage_example() -> (StateTable, Pipeline) {
        let table = StateTable::from_names(SIX_STAGE_STATES).expect("the example states are valid");
        let stages = SIX_STAGE_EXAMPLE
            .iter()
            .map(|[w, c, s, o]| Stage::new(*w, *c, *s, *o))
            .collect();
        let pipeline = Pipeline::new(stages, &table).expect("the example pipeline is valid");
        (table, pipeline)
    }

    /// The same pipeline with each stage's kind set by `kind_of` (what the service's adapter
    /// does: one call, a vendor job, a person's step).
    pub fn with_kinds(mut self, kind_of: impl Fn(&Stage) -> StageKind) -> Pipeline {
        for stage in &mut self.stages {
            stage.kind = kind_of(stage);
        }
        self
    }

    /// The stages in order.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Where `state` sits in this pipeline.
    pub fn position(&self, state: &str) -> Position {
        if state == PENDING {
            return Position::Pending;
        }
        if END_STATES.contains(&state) {
            return Position::End;
        }
        for (i, stage) in self.stages.iter().enumerate() {
            if stage.working_state == state {
                return Position::Working(i);
            }
            if stage.complete_state == state {
                return Position::Complete(i);
            }
        }
        Position::Unknown
    }

    /// tubular's `all_states`: PENDING, each stage's pair, then ERRORED, ABORTED, COMPLETE.
    pub fn all_states(&self) -> Vec<&str> {
        let mut all = Vec::with_capacity(self.stages.len() * 2 + 4);
        all.push(PENDING);
        for stage in &self.stages {
            all.push(stage.working_state.as_str());
            all.push(stage.complete_state.as_str());
        }
        all.extend(END_STATES);
        all
    }

    /// The states a queue listing asks for (`get_learners_to_retire`): PENDING and every
    /// completion state; never working, ERRORED or terminal states.
    pub fn queue_states(&self) -> Vec<&str> {
        std::iter::once(PENDING)
            .chain(self.stages.iter().map(|s| s.complete_state.as_str()))
            .collect()
    }

    /// The index of the first stage still to run for a learner in `state`, or `None` when
    /// `state` is not a resumable one (working, end or unknown).
    pub fn first_stage_after(&self, state: &str) -> Option<usize> {
        match self.position(state) {
            Position::Pending => Some(0),
            Position::Complete(i) => Some(i + 1),
            _ => None,
        }
    }
}
