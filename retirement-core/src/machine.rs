//! The per-learner driver as a sans-IO machine: tubular's `retire_one_learner` protocol, turned
//! inside out.
//!
//! The runtime starts a [`Machine`] from a stored retirement, then loops: drain
//! [`Machine::poll_action`], perform each [`Action`] (write a state, call a service, wait), and
//! feed what happened back through [`Machine::handle_input`] with the current time. The machine
//! never waits, sleeps, reads a clock or knows what HTTP is.
//!
//! Protocol (contract §6.3–§6.4): resume from PENDING or any `X_COMPLETE`, skipping finished
//! stages; for each stage set `RETIRING_X` (`Starting: RETIRING_X`), call the service, set
//! `X_COMPLETE` with the response text; finally set COMPLETE (`Learner retirement complete.`).
//! On failure set ERRORED with a text that includes the response body (upstream records only
//! the status line, defect D14). Terminal, working and unknown states are refused with tubular's
//! exit-code meanings, except that a learner left in `RETIRING_X` by a worker whose lease expired
//! may be resumed: the step runs again, which is safe because steps are idempotent (defect D15).
//!
//! Every write must be acknowledged ([`Input::StateWritten`]) before the machine emits its next
//! call, so a write that fails, or fails because the lease was lost, never leads to a call.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::pipeline::{Pipeline, Position, StageKind};
use crate::retirement::{Retirement, RetirementId};
use crate::retry::{
    Attempts, RandomSource, RetryPolicy, SplitMix64, TransportErrorKind, Verdict, classify_status,
    classify_transport, reason_phrase,
};
use crate::state::{COMPLETE, ERRORED};
use crate::wait::{Wait, WaitingOn};

/// The response text of the final move to COMPLETE.
pub const COMPLETE_TEXT: &str = "Learner retirement complete.";

/// What to do with a learner found in a working state (`RETIRING_X`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnWorkingState {
    /// Refuse, as tubular does (exit -3): someone may be working on the learner.
    #[default]
    Refuse,
    /// Re-run the stage: the caller knows the previous worker's lease expired.
    Resume,
}

/// How the machine behaves; one value serves every learner of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverOptions {
    /// Retry rules for stage calls.
    pub retry: RetryPolicy,
    /// What to do with a learner in a working state.
    pub on_working_state: OnWorkingState,
    /// Response bodies longer than this are cut in log texts (at a character boundary).
    pub max_logged_body_bytes: usize,
}

impl Default for DriverOptions {
    fn default() -> DriverOptions {
        DriverOptions {
            retry: RetryPolicy::default(),
            on_working_state: OnWorkingState::Refuse,
            max_logged_body_bytes: 4096,
        }
    }
}

/// Something that happened, fed to [`Machine::handle_input`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// The last [`Action::SetState`] was durably written.
    StateWritten,
    /// The last [`Action::SetState`] failed. `lease_lost` means the write was fenced off because
    /// another worker now owns the learner: the machine then stops without writing anything.
    StateWriteFailed {
        /// Whether the lease was lost.
        lease_lost: bool,
        /// What went wrong (no PII).
        message: String,
    },
    /// The service answered the last [`Action::Call`] with an HTTP status, success or not; the
    /// machine classifies it.
    Response {
        /// The HTTP status.
        status: u16,
        /// The response body as text.
        body: String,
        /// The `Retry-After` delay, if the response had one.
        retry_after: Option<Duration>,
    },
    /// The last [`Action::Call`] got no HTTP answer.
    TransportError {
        /// How it failed.
        kind: TransportErrorKind,
        /// The client's description (no PII).
        message: String,
    },
    /// An in-process stage (no HTTP, e.g. a scrub in a database) failed and says itself
    /// whether trying again may help: transient failures are retried within the stage's
    /// budget like a 5xx, permanent ones set ERRORED at once.
    StepFailed {
        /// Whether a later attempt may succeed (a dropped connection, a lock timeout).
        transient: bool,
        /// What went wrong (no PII).
        message: String,
    },
    /// A stage established its own success without an HTTP status the machine could classify:
    /// a vendor lookup that found nothing to delete ("not found" meaning done, as the vendor
    /// documents), or an in-process stage. `message` is the log text (no PII).
    StepSucceeded {
        /// What was done, for the learner's log.
        message: String,
    },
    /// The call of a [`StageKind::Job`] stage started the vendor's job.
    JobStarted {
        /// The vendor's job id.
        job_id: String,
    },
    /// A poll ([`Action::PollJob`]) found the job still running. A finished job is
    /// [`Input::StepSucceeded`]; a failed one [`Input::StepFailed`] (permanent).
    JobRunning,
    /// The call of a [`StageKind::Manual`] stage asked a person to finish it.
    PersonAsked {
        /// What the person was given (a vendor task id), if anything.
        reference: String,
    },
    /// The runtime's lease on this learner expired or was taken: stop, write nothing more.
    LeaseExpired,
    /// Time passed; a scheduled retry may be due. Spurious ticks are harmless.
    Tick,
}

impl Input {
    fn kind(&self) -> &'static str {
        match self {
            Input::StateWritten => "state_written",
            Input::StateWriteFailed { .. } => "state_write_failed",
            Input::Response { .. } => "response",
            Input::TransportError { .. } => "transport_error",
            Input::StepFailed { .. } => "step_failed",
            Input::StepSucceeded { .. } => "step_succeeded",
            Input::JobStarted { .. } => "job_started",
            Input::JobRunning => "job_running",
            Input::PersonAsked { .. } => "person_asked",
            Input::LeaseExpired => "lease_expired",
            Input::Tick => "tick",
        }
    }
}

/// Something the runtime must do, from [`Machine::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// For the log only: a stage finished in an earlier run is skipped.
    SkipStage {
        /// Zero-based stage index.
        stage: usize,
        /// Its working state.
        working_state: String,
    },
    /// Move the learner to `new_state` with `response` as the log text (upstream's PATCH
    /// `update_retirement_status`), then answer with [`Input::StateWritten`] or
    /// [`Input::StateWriteFailed`].
    SetState {
        /// The state to move to.
        new_state: String,
        /// The log text.
        response: String,
    },
    /// Call `service.operation` for the learner, then answer with [`Input::Response`] or
    /// [`Input::TransportError`].
    Call {
        /// Zero-based stage index.
        stage: usize,
        /// The service key, e.g. `LMS`.
        service: String,
        /// The operation, e.g. `retirement_lms_retire`.
        operation: String,
        /// 1 for the first attempt, then 2, 3, …
        attempt: u32,
    },
    /// Record `wait` beside the learner and append `note` to its log, in one write fenced by
    /// the lease, without moving it; then answer with [`Input::StateWritten`] or
    /// [`Input::StateWriteFailed`]. The store sets `wait.since` to the record's new `modified`.
    Park {
        /// What the learner waits on.
        wait: Wait,
        /// The log text (no PII).
        note: String,
    },
    /// Poll the job `job_id` of `service.operation`, then answer with [`Input::JobRunning`],
    /// [`Input::StepSucceeded`], [`Input::StepFailed`], [`Input::Response`] or
    /// [`Input::TransportError`].
    PollJob {
        /// Zero-based stage index.
        stage: usize,
        /// The service key.
        service: String,
        /// The operation.
        operation: String,
        /// The vendor's job id.
        job_id: String,
        /// 1 for the first attempt of this poll, then 2, 3, …
        attempt: u32,
    },
    /// Feed [`Input::Tick`] at or after `at`; nothing else is due before then.
    RetryAt {
        /// When the next attempt is due.
        at: DateTime<Utc>,
    },
    /// The machine is done; no further actions follow.
    Finish(Outcome),
}

/// tubular's exit codes for one learner (contract §6.5). Upstream passes the negative values to
/// the process exit, so the OS sees 256 + code (defect D20); [`ExitStatus::os_status`] gives that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExitStatus {
    /// 0: the learner is COMPLETE.
    Success,
    /// -1: setup failed, or fetching the learner failed.
    SetupFailed,
    /// -2: the learner was already ERRORED, ABORTED or COMPLETE.
    UserAtEndState,
    /// -3: the learner is in a working state (someone else may be working on it).
    UserInWorkingState,
    /// -4: a stage or a state update failed; the learner was set to ERRORED.
    WhileRetiring,
    /// -5: no such learner, or a malformed status.
    BadLearner,
    /// -6: the learner's state is not in this pipeline.
    UnknownState,
    /// -7: no or unreadable config.
    BadConfig,
}

impl ExitStatus {
    /// tubular's numeric code (0, -1 … -7).
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::SetupFailed => -1,
            ExitStatus::UserAtEndState => -2,
            ExitStatus::UserInWorkingState => -3,
            ExitStatus::WhileRetiring => -4,
            ExitStatus::BadLearner => -5,
            ExitStatus::UnknownState => -6,
            ExitStatus::BadConfig => -7,
        }
    }

    /// The status the OS reports for tubular's code: 0, 255, 254, … 249.
    pub fn os_status(self) -> u8 {
        self.code().rem_euclid(256) as u8
    }
}

/// How one learner's run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Every stage ran and the learner is COMPLETE.
    Completed,
    /// Refused: the learner was already in a terminal state.
    AlreadyAtEnd {
        /// That state.
        state: String,
    },
    /// Refused: the learner is in a working state and resuming it was not allowed.
    InWorkingState {
        /// That state.
        state: String,
    },
    /// A stage or a write failed; the learner was set to ERRORED unless `recorded` is false.
    Errored {
        /// The state the failure happened in (a working state, or the state being written).
        state: String,
        /// The text written to the log (the failing response, status and body).
        message: String,
        /// Whether the ERRORED write succeeded.
        recorded: bool,
    },
    /// Refused: the stored status has no current state.
    BadLearner {
        /// The retirement.
        retirement_id: RetirementId,
    },
    /// Refused: the learner's state is not in this pipeline.
    UnknownState {
        /// The retirement.
        retirement_id: RetirementId,
        /// Its state.
        state: String,
    },
    /// The learner is parked in `state`, waiting on a vendor job or a person: release its
    /// lease until `until` (`None`: until an operator marks the stage done).
    Waiting {
        /// The working state it waits in.
        state: String,
        /// When to claim it again.
        until: Option<DateTime<Utc>>,
        /// What it waits on (no learner data), e.g. `SEGMENT job reg-1`.
        on: String,
    },
    /// The lease was lost; nothing more was written.
    LeaseLost,
}

impl Outcome {
    /// tubular's exit code for this outcome. A lost lease maps to -3: another worker owns the
    /// learner, as when tubular finds it in a working state.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Outcome::Completed => ExitStatus::Success,
            Outcome::AlreadyAtEnd { .. } => ExitStatus::UserAtEndState,
            Outcome::InWorkingState { .. } | Outcome::LeaseLost | Outcome::Waiting { .. } => {
                ExitStatus::UserInWorkingState
            }
            Outcome::Errored { .. } => ExitStatus::WhileRetiring,
            Outcome::BadLearner { .. } => ExitStatus::BadLearner,
            Outcome::UnknownState { .. } => ExitStatus::UnknownState,
        }
    }
}

/// tubular's messages for each outcome, naming the learner by retirement id (tubular prints the
/// whole status, PII included).
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Completed => f.write_str("Retirement complete for learner"),
            Outcome::AlreadyAtEnd { state } => write!(f, "User already in end state: {state}"),
            Outcome::InWorkingState { state } => {
                write!(f, "User is already in a working state! {state}")
            }
            Outcome::Errored { state, message, .. } => {
                write!(f, "Error encountered in state \"{state}\"\n{message}")
            }
            Outcome::BadLearner { retirement_id } => write!(
                f,
                "Bad learner response missing current_state or state_name: retirement {retirement_id}"
            ),
            Outcome::UnknownState {
                retirement_id,
                state,
            } => write!(
                f,
                "Unknown learner retirement state for learner: retirement {retirement_id} in state {state}"
            ),
            Outcome::LeaseLost => f.write_str("Lease lost: another worker owns this learner"),
            Outcome::Waiting { state, until, on } => match until {
                Some(until) => write!(
                    f,
                    "Waiting in {state} on {on}; polled again after {}",
                    until.to_rfc3339()
                ),
                None => write!(
                    f,
                    "Waiting in {state} for a person to finish {on}; mark it with `retire done`"
                ),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    WritingWorking {
        stage: usize,
    },
    Calling {
        stage: usize,
        attempts: Attempts,
        /// The job being polled, for a poll; `None` for the stage's own call.
        job: Option<String>,
    },
    Waiting {
        stage: usize,
        attempts: Attempts,
        until: DateTime<Utc>,
        job: Option<String>,
    },
    Parking {
        outcome: Outcome,
    },
    WritingComplete {
        stage: usize,
    },
    WritingFinal,
    WritingErrored {
        outcome: Outcome,
    },
    Done,
}

impl Step {
    fn name(&self) -> &'static str {
        match self {
            Step::WritingWorking { .. } => "writing a working state",
            Step::Calling { .. } => "waiting for a call's result",
            Step::Waiting { .. } => "waiting to retry a call",
            Step::Parking { .. } => "recording a wait",
            Step::WritingComplete { .. } => "writing a completion state",
            Step::WritingFinal => "writing COMPLETE",
            Step::WritingErrored { .. } => "writing ERRORED",
            Step::Done => "finished",
        }
    }
}

/// One learner's run through the pipeline.
#[derive(Debug, Clone)]
pub struct Machine<R: RandomSource = SplitMix64> {
    pipeline: Arc<Pipeline>,
    options: DriverOptions,
    random: R,
    step: Step,
    actions: VecDeque<Action>,
}

impl<R: RandomSource> Machine<R> {
    /// Starts a run for `retirement` at `now`; the first actions are ready to poll. A refused
    /// learner's only action is [`Action::Finish`].
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use retirement_core::*;
    /// # let now: chrono::DateTime<chrono::Utc> = "2026-12-04T09:00:00Z".parse().unwrap();
    /// # let (table, pipeline) = Pipeline::six_stage_example();
    /// # let ids = RetiredIdConfig::new(vec!["salt".into()]).unwrap();
    /// # let original = OriginalIdentity { username: "ada".into(), email: "ada@example.org".into(), name: "Ada".into() };
    /// # let learner = Retirement::create(RetirementId(1), None, original, ids.retired_username("ada"), ids.retired_email("ada@example.org"), &table, now).unwrap();
    /// let pipeline = Arc::new(pipeline);
    /// // A PENDING learner starts with its first stage's working state.
    /// let mut machine = Machine::start(&learner, pipeline.clone(), DriverOptions::default(), SplitMix64::new(1), now);
    /// assert!(matches!(machine.poll_action(), Some(Action::SetState { new_state, .. }) if new_state == "RETIRING_FORUMS"));
    ///
    /// // A learner already ERRORED is refused, as tubular refuses it (exit -2).
    /// let mut errored = learner.clone();
    /// errored.advance(&table, "ERRORED", "a stage failed", Actor::Driver, now).unwrap();
    /// let mut refused = Machine::start(&errored, pipeline, DriverOptions::default(), SplitMix64::new(1), now);
    /// let Some(Action::Finish(outcome)) = refused.poll_action() else { panic!() };
    /// assert_eq!(outcome.exit_status().code(), -2);
    /// ```
    pub fn start(
        retirement: &Retirement,
        pipeline: Arc<Pipeline>,
        options: DriverOptions,
        random: R,
        now: DateTime<Utc>,
    ) -> Machine<R> {
        Machine::start_with(retirement, None, pipeline, options, random, now)
    }

    /// [`Machine::start`] for a learner with a stored [`Wait`]: a learner parked on a job is
    /// polled (or, claimed before its next poll, parked again at once); one parked on a person
    /// stays parked. A wait that no longer applies (the learner moved since) is ignored.
    pub fn start_with(
        retirement: &Retirement,
        wait: Option<&Wait>,
        pipeline: Arc<Pipeline>,
        options: DriverOptions,
        random: R,
        now: DateTime<Utc>,
    ) -> Machine<R> {
        let mut machine = Machine {
            pipeline,
            options,
            random,
            step: Step::Done,
            actions: VecDeque::new(),
        };
        let state = retirement.current_state();
        let position = machine.pipeline.position(state);
        match position {
            _ if state.trim().is_empty() => machine.finish(Outcome::BadLearner {
                retirement_id: retirement.id(),
            }),
            Position::Unknown => machine.finish(Outcome::UnknownState {
                retirement_id: retirement.id(),
                state: state.to_owned(),
            }),
            Position::End => machine.finish(Outcome::AlreadyAtEnd {
                state: state.to_owned(),
            }),
            Position::Working(stage)
                if let Some(wait) = wait.filter(|w| w.applies_to(retirement))
                    && machine.resume_wait(stage, wait, now) => {}
            Position::Working(stage) => match machine.options.on_working_state {
                OnWorkingState::Refuse => machine.finish(Outcome::InWorkingState {
                    state: state.to_owned(),
                }),
                OnWorkingState::Resume => {
                    machine.skip_before(stage);
                    machine.call(stage, Attempts::new(now), None);
                }
            },
            Position::Pending => machine.begin_stage(0),
            Position::Complete(done) => {
                machine.skip_before(done + 1);
                machine.begin_stage(done + 1);
            }
        }
        machine
    }

    /// The next thing to do, if any. Drain it after every [`Machine::handle_input`].
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use retirement_core::*;
    /// # let now: chrono::DateTime<chrono::Utc> = "2026-12-04T09:00:00Z".parse().unwrap();
    /// # let (table, pipeline) = Pipeline::six_stage_example();
    /// # let ids = RetiredIdConfig::new(vec!["salt".into()]).unwrap();
    /// # let original = OriginalIdentity { username: "ada".into(), email: "ada@example.org".into(), name: "Ada".into() };
    /// # let learner = Retirement::create(RetirementId(1), None, original, ids.retired_username("ada"), ids.retired_email("ada@example.org"), &table, now).unwrap();
    /// let mut machine = Machine::start(&learner, Arc::new(pipeline), DriverOptions::default(), SplitMix64::new(1), now);
    /// assert!(matches!(machine.poll_action(), Some(Action::SetState { .. })));
    /// // Nothing more until the write is acknowledged.
    /// assert_eq!(machine.poll_action(), None);
    /// machine.handle_input(now, Input::StateWritten).unwrap();
    /// assert!(matches!(
    ///     machine.poll_action(),
    ///     Some(Action::Call { service, attempt: 1, .. }) if service == "LMS"
    /// ));
    /// ```
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether the machine has finished (its last action is, or was, [`Action::Finish`]).
    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    /// Feeds what happened at `now`. An input the machine is not waiting for is refused with
    /// [`CoreError::UnexpectedInput`] and changes nothing.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use retirement_core::*;
    /// # let now: chrono::DateTime<chrono::Utc> = "2026-12-04T09:00:00Z".parse().unwrap();
    /// # let (table, pipeline) = Pipeline::six_stage_example();
    /// # let ids = RetiredIdConfig::new(vec!["salt".into()]).unwrap();
    /// # let original = OriginalIdentity { username: "ada".into(), email: "ada@example.org".into(), name: "Ada".into() };
    /// # let learner = Retirement::create(RetirementId(1), None, original, ids.retired_username("ada"), ids.retired_email("ada@example.org"), &table, now).unwrap();
    /// let mut machine = Machine::start(&learner, Arc::new(pipeline), DriverOptions::default(), SplitMix64::new(1), now);
    /// machine.poll_action(); // SetState RETIRING_FORUMS
    /// // A response while the machine waits for the state write is refused.
    /// let early = Input::Response { status: 204, body: String::new(), retry_after: None };
    /// assert!(matches!(machine.handle_input(now, early), Err(CoreError::UnexpectedInput { .. })));
    /// machine.handle_input(now, Input::StateWritten).unwrap();
    /// machine.poll_action(); // Call LMS retirement_retire_forum
    /// // A 503 is retried later: the machine names the time, the caller keeps the clock.
    /// let busy = Input::Response { status: 503, body: String::new(), retry_after: None };
    /// machine.handle_input(now, busy).unwrap();
    /// let Some(Action::RetryAt { at }) = machine.poll_action() else { panic!() };
    /// assert!(at > now);
    /// ```
    pub fn handle_input(&mut self, now: DateTime<Utc>, input: Input) -> Result<(), CoreError> {
        let step = std::mem::replace(&mut self.step, Step::Done);
        match (step, input) {
            (Step::Done, input) => self.unexpected(Step::Done, &input),
            (_, Input::LeaseExpired) => {
                // Fenced: drop anything not yet performed and write nothing more.
                self.actions.clear();
                self.finish(Outcome::LeaseLost);
                Ok(())
            }
            (Step::WritingWorking { stage }, Input::StateWritten) => {
                self.call(stage, Attempts::new(now), None);
                Ok(())
            }
            (Step::Parking { outcome }, Input::StateWritten) => {
                self.finish(outcome);
                Ok(())
            }
            (
                Step::Parking { outcome },
                Input::StateWriteFailed {
                    lease_lost,
                    message,
                },
            ) => {
                if lease_lost {
                    self.finish(Outcome::LeaseLost);
                } else {
                    let state = match &outcome {
                        Outcome::Waiting { state, .. } => state.clone(),
                        _ => String::new(),
                    };
                    // The job runs (or the person was asked), but nobody would know: ERRORED,
                    // so an operator resets the learner and the stage is asked again.
                    self.fail(state, format!("Failed to record the wait: {message}"));
                }
                Ok(())
            }
            (
                Step::Calling {
                    stage, job: None, ..
                },
                Input::JobStarted { job_id },
            ) => {
                self.park_on_job(stage, job_id, now);
                Ok(())
            }
            (
                Step::Calling {
                    stage, job: None, ..
                },
                Input::PersonAsked { reference },
            ) => {
                self.park_on_person(stage, reference);
                Ok(())
            }
            (
                Step::Calling {
                    stage,
                    job: Some(job),
                    ..
                },
                Input::JobRunning,
            ) => {
                self.wait_for_next_poll(stage, &job, now);
                Ok(())
            }
            (Step::WritingComplete { stage }, Input::StateWritten) => {
                self.begin_stage(stage + 1);
                Ok(())
            }
            (Step::WritingFinal, Input::StateWritten) => {
                self.finish(Outcome::Completed);
                Ok(())
            }
            (Step::WritingErrored { outcome }, Input::StateWritten) => {
                self.finish(outcome);
                Ok(())
            }
            (Step::WritingErrored { outcome }, Input::StateWriteFailed { lease_lost, .. }) => {
                match (lease_lost, outcome) {
                    (true, _) => self.finish(Outcome::LeaseLost),
                    (false, Outcome::Errored { state, message, .. }) => {
                        self.finish(Outcome::Errored {
                            state,
                            message,
                            recorded: false,
                        })
                    }
                    (false, other) => self.finish(other),
                }
                Ok(())
            }
            (
                step @ (Step::WritingWorking { .. }
                | Step::WritingComplete { .. }
                | Step::WritingFinal),
                Input::StateWriteFailed {
                    lease_lost,
                    message,
                },
            ) => {
                if lease_lost {
                    self.finish(Outcome::LeaseLost);
                } else {
                    let state = match step {
                        Step::WritingWorking { stage } => self.stage_working(stage),
                        Step::WritingComplete { stage } => {
                            self.pipeline.stages()[stage].complete_state.clone()
                        }
                        _ => COMPLETE.to_owned(),
                    };
                    let text = format!("Failed to record state {state}: {message}");
                    self.fail(state, text);
                }
                Ok(())
            }
            (
                Step::Calling {
                    stage,
                    mut attempts,
                    job,
                },
                Input::Response {
                    status,
                    body,
                    retry_after,
                },
            ) => {
                let verdict = classify_status(status, self.pipeline.stages()[stage].tolerate_404);
                match verdict {
                    Verdict::Success | Verdict::Tolerated404 => {
                        let text = if verdict == Verdict::Tolerated404 {
                            format!(
                                "404 tolerated (nothing to delete): {}",
                                self.logged_body(&body)
                            )
                        } else if body.trim().is_empty() {
                            format!("<Response [{status}]>")
                        } else {
                            self.logged_body(&body)
                        };
                        self.complete_stage(stage, &text);
                    }
                    Verdict::Backoff | Verdict::GatewayTimeout => {
                        let next = self.options.retry.next_attempt_at(
                            verdict,
                            &mut attempts,
                            retry_after,
                            now,
                            &mut self.random,
                        );
                        match (next, job) {
                            (Some(until), job) => self.wait(stage, attempts, until, job),
                            // A poll out of retries: the job may well be fine; poll later.
                            (None, Some(job)) => self.wait_for_next_poll(stage, &job, now),
                            (None, None) => self.fail_http(stage, &attempts, status, &body),
                        }
                    }
                    Verdict::Fail => self.fail_http(stage, &attempts, status, &body),
                }
                Ok(())
            }
            (
                Step::Calling {
                    stage,
                    mut attempts,
                    job,
                },
                Input::TransportError { kind, message },
            ) => {
                let verdict = classify_transport(kind);
                let next = self.options.retry.next_attempt_at(
                    verdict,
                    &mut attempts,
                    None,
                    now,
                    &mut self.random,
                );
                match (next, job) {
                    (Some(until), job) => self.wait(stage, attempts, until, job),
                    (None, Some(job)) => self.wait_for_next_poll(stage, &job, now),
                    (None, None) => {
                        let what = format!("{} error for", transport_kind_label(kind));
                        self.fail_stage(stage, &what, &attempts, &message);
                    }
                }
                Ok(())
            }
            (
                Step::Calling {
                    stage,
                    mut attempts,
                    job,
                },
                Input::StepFailed { transient, message },
            ) => {
                let next = if transient {
                    self.options.retry.next_attempt_at(
                        Verdict::Backoff,
                        &mut attempts,
                        None,
                        now,
                        &mut self.random,
                    )
                } else {
                    None
                };
                match (next, job) {
                    (Some(until), job) => self.wait(stage, attempts, until, job),
                    (None, Some(job)) if transient => self.wait_for_next_poll(stage, &job, now),
                    (None, _) => {
                        let what = if transient {
                            "Transient failure in"
                        } else {
                            "Permanent failure in"
                        };
                        self.fail_stage(stage, what, &attempts, &message);
                    }
                }
                Ok(())
            }
            (Step::Calling { stage, .. }, Input::StepSucceeded { message }) => {
                let text = self.logged_body(&message);
                self.complete_stage(stage, &text);
                Ok(())
            }
            (
                Step::Waiting {
                    stage,
                    attempts,
                    until,
                    job,
                },
                Input::Tick,
            ) => {
                if now >= until {
                    self.call(stage, attempts, job);
                } else {
                    self.step = Step::Waiting {
                        stage,
                        attempts,
                        until,
                        job,
                    };
                }
                Ok(())
            }
            (step, Input::Tick) => {
                self.step = step;
                Ok(())
            }
            (step, input) => self.unexpected(step, &input),
        }
    }

    fn unexpected(&mut self, step: Step, input: &Input) -> Result<(), CoreError> {
        let error = CoreError::UnexpectedInput {
            input: input.kind(),
            step: step.name(),
        };
        self.step = step;
        Err(error)
    }

    fn stage_working(&self, stage: usize) -> String {
        self.pipeline.stages()[stage].working_state.clone()
    }

    fn skip_before(&mut self, stage: usize) {
        for index in 0..stage.min(self.pipeline.stages().len()) {
            let working_state = self.stage_working(index);
            self.actions.push_back(Action::SkipStage {
                stage: index,
                working_state,
            });
        }
    }

    fn begin_stage(&mut self, stage: usize) {
        match self.pipeline.stages().get(stage) {
            Some(s) => {
                let new_state = s.working_state.clone();
                let response = format!("Starting: {new_state}");
                self.actions.push_back(Action::SetState {
                    new_state,
                    response,
                });
                self.step = Step::WritingWorking { stage };
            }
            None => {
                self.actions.push_back(Action::SetState {
                    new_state: COMPLETE.to_owned(),
                    response: COMPLETE_TEXT.to_owned(),
                });
                self.step = Step::WritingFinal;
            }
        }
    }

    fn call(&mut self, stage: usize, attempts: Attempts, job: Option<String>) {
        let s = &self.pipeline.stages()[stage];
        let (service, operation, attempt) =
            (s.service.clone(), s.operation.clone(), attempts.made());
        self.actions.push_back(match &job {
            None => Action::Call {
                stage,
                service,
                operation,
                attempt,
            },
            Some(job_id) => Action::PollJob {
                stage,
                service,
                operation,
                job_id: job_id.clone(),
                attempt,
            },
        });
        self.step = Step::Calling {
            stage,
            attempts,
            job,
        };
    }

    fn wait(
        &mut self,
        stage: usize,
        attempts: Attempts,
        until: DateTime<Utc>,
        job: Option<String>,
    ) {
        self.actions.push_back(Action::RetryAt { at: until });
        self.step = Step::Waiting {
            stage,
            attempts,
            until,
            job,
        };
    }

    /// Picks up a learner's stored wait; `false` when the stage's kind does not match it (the
    /// caller then treats the learner as any other in a working state).
    fn resume_wait(&mut self, stage: usize, wait: &Wait, now: DateTime<Utc>) -> bool {
        let kind = self.pipeline.stages()[stage].kind;
        match (kind, &wait.on) {
            (StageKind::Job { .. }, WaitingOn::Job { job_id, next_poll }) => {
                self.skip_before(stage);
                if now < *next_poll {
                    self.finish(Outcome::Waiting {
                        state: self.stage_working(stage),
                        until: Some(*next_poll),
                        on: format!("{} job {job_id}", wait.service),
                    });
                } else {
                    self.call(stage, Attempts::new(now), Some(job_id.clone()));
                }
                true
            }
            (StageKind::Manual, WaitingOn::Person { .. }) => {
                self.skip_before(stage);
                self.finish(Outcome::Waiting {
                    state: self.stage_working(stage),
                    until: None,
                    on: wait.service.clone(),
                });
                true
            }
            _ => false,
        }
    }

    fn poll_every(&self, stage: usize) -> Option<Duration> {
        match self.pipeline.stages()[stage].kind {
            StageKind::Job { poll_every } => Some(poll_every),
            _ => None,
        }
    }

    fn next_poll(&self, stage: usize, now: DateTime<Utc>) -> DateTime<Utc> {
        let every = self.poll_every(stage).unwrap_or(Duration::from_secs(3600));
        now + chrono::Duration::from_std(every).unwrap_or(chrono::Duration::hours(1))
    }

    fn park_on_job(&mut self, stage: usize, job_id: String, now: DateTime<Utc>) {
        let s = &self.pipeline.stages()[stage];
        let (service, working) = (s.service.clone(), s.working_state.clone());
        if self.poll_every(stage).is_none() {
            let text = format!(
                "{service} {} started a job ({job_id}), but the stage is not a job stage",
                s.operation
            );
            self.fail(working, text);
            return;
        }
        let next_poll = self.next_poll(stage, now);
        let note = format!(
            "Job started: {service} {job_id}; polled until it is terminal (next poll {})",
            next_poll.to_rfc3339()
        );
        self.actions.push_back(Action::Park {
            wait: Wait {
                working_state: working.clone(),
                service: service.clone(),
                on: WaitingOn::Job {
                    job_id: job_id.clone(),
                    next_poll,
                },
                since: now,
            },
            note,
        });
        self.step = Step::Parking {
            outcome: Outcome::Waiting {
                state: working,
                until: Some(next_poll),
                on: format!("{service} job {job_id}"),
            },
        };
    }

    fn park_on_person(&mut self, stage: usize, reference: String) {
        let s = &self.pipeline.stages()[stage];
        let (service, working) = (s.service.clone(), s.working_state.clone());
        if s.kind != StageKind::Manual {
            let text = format!(
                "{service} {} asked a person, but the stage is not a manual stage",
                s.operation
            );
            self.fail(working, text);
            return;
        }
        let note = if reference.is_empty() {
            format!(
                "Waiting for a person to finish {service}; mark it with `retire done --stage {working}`"
            )
        } else {
            format!(
                "Waiting for a person to finish {service} ({reference}); mark it with `retire done --stage {working}`"
            )
        };
        self.actions.push_back(Action::Park {
            wait: Wait {
                working_state: working.clone(),
                service: service.clone(),
                on: WaitingOn::Person { reference },
                since: DateTime::<Utc>::MIN_UTC,
            },
            note,
        });
        self.step = Step::Parking {
            outcome: Outcome::Waiting {
                state: working,
                until: None,
                on: service,
            },
        };
    }

    /// A poll found the job running (or could not reach the vendor within the budget): park
    /// until the next poll, without writing anything.
    fn wait_for_next_poll(&mut self, stage: usize, job: &str, now: DateTime<Utc>) {
        let s = &self.pipeline.stages()[stage];
        let outcome = Outcome::Waiting {
            state: s.working_state.clone(),
            until: Some(self.next_poll(stage, now)),
            on: format!("{} job {job}", s.service),
        };
        self.finish(outcome);
    }

    fn complete_stage(&mut self, stage: usize, result: &str) {
        let new_state = self.pipeline.stages()[stage].complete_state.clone();
        let response = format!("Ending: {new_state} with response:\n{result}");
        self.actions.push_back(Action::SetState {
            new_state,
            response,
        });
        self.step = Step::WritingComplete { stage };
    }

    fn fail_http(&mut self, stage: usize, attempts: &Attempts, status: u16, body: &str) {
        let s = &self.pipeline.stages()[stage];
        let class = if (400..500).contains(&status) {
            "Client Error"
        } else if status >= 500 {
            "Server Error"
        } else {
            "Unexpected Status"
        };
        let text = format!(
            "{status} {class}: {} for {} {} ({}):\n{}",
            reason_phrase(status),
            s.service,
            s.operation,
            attempts_label(attempts),
            self.logged_body(body)
        );
        let state = self.stage_working(stage);
        self.fail(state, text);
    }

    /// ERRORED in `stage`'s working state: `<what> SERVICE operation (N attempts):\n<detail>`.
    fn fail_stage(&mut self, stage: usize, what: &str, attempts: &Attempts, detail: &str) {
        let stage_def = &self.pipeline.stages()[stage];
        let text = format!(
            "{what} {} {} ({}):\n{detail}",
            stage_def.service,
            stage_def.operation,
            attempts_label(attempts),
        );
        let state = self.stage_working(stage);
        self.fail(state, text);
    }

    fn fail(&mut self, state: String, message: String) {
        self.actions.push_back(Action::SetState {
            new_state: ERRORED.to_owned(),
            response: message.clone(),
        });
        self.step = Step::WritingErrored {
            outcome: Outcome::Errored {
                state,
                message,
                recorded: true,
            },
        };
    }

    fn finish(&mut self, outcome: Outcome) {
        self.actions.push_back(Action::Finish(outcome));
        self.step = Step::Done;
    }

    fn logged_body(&self, body: &str) -> String {
        truncate_utf8(body, self.options.max_logged_body_bytes)
    }
}

fn attempts_label(attempts: &Attempts) -> String {
    match attempts.made() {
        1 => "1 attempt".to_owned(),
        n => format!("{n} attempts"),
    }
}

fn transport_kind_label(kind: TransportErrorKind) -> &'static str {
    match kind {
        TransportErrorKind::Connect => "Connection",
        TransportErrorKind::Reset => "Connection reset",
        TransportErrorKind::Timeout => "Timeout",
        TransportErrorKind::Other => "Transport",
    }
}

/// `text` cut to at most `max` bytes at a character boundary, saying how much was cut.
pub(crate) fn truncate_utf8(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [{} more bytes not logged]",
        &text[..end],
        text.len() - end
    )
}
