//! A deterministic runtime for the driver machine: an in-memory record as the store, a scripted
//! function as the services, a simulated clock, and crash injection. It records a readable trace
//! for snapshots and the facts the property tests check.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use retirement_core::{
    Action, Actor, DriverOptions, Input, Machine, OnWorkingState, OriginalIdentity, Outcome,
    Override, Pipeline, Retirement, RetirementId, RetirementParts, SplitMix64, StateTable, Wait,
};

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap()
}

/// A call the "services" received, with the learner's stored state at that moment.
#[derive(Debug, Clone)]
pub(crate) struct CallSeen {
    pub(crate) stage: usize,
    pub(crate) state_at_call: String,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RunEnd {
    Finished(Outcome),
    Crashed,
}

pub(crate) struct Sim {
    pub(crate) table: StateTable,
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) record: Retirement,
    pub(crate) now: DateTime<Utc>,
    pub(crate) trace: Vec<String>,
    pub(crate) calls: Vec<CallSeen>,
    /// Every state the record was in, in order, starting with the initial one.
    pub(crate) history: Vec<String>,
    /// The stored wait (a parked learner), as a store keeps it beside the record.
    pub(crate) wait: Option<Wait>,
    /// What polls of a job answer, in order; then `poll_default` (a vendor keeps saying
    /// what it said last: a finished job stays finished).
    pub(crate) poll_replies: std::collections::VecDeque<Input>,
    pub(crate) poll_default: Input,
    /// Polls made: (stage, job id, time).
    pub(crate) polls: Vec<(usize, String, DateTime<Utc>)>,
}

impl Sim {
    /// A learner in PENDING with the six-stage example pipeline.
    pub(crate) fn six_stage() -> Sim {
        let (table, pipeline) = Pipeline::six_stage_example();
        Sim::new(table, pipeline)
    }

    pub(crate) fn new(table: StateTable, pipeline: Pipeline) -> Sim {
        let record = Retirement::create(
            RetirementId(1),
            Some(1001),
            OriginalIdentity {
                username: "learner".into(),
                email: "learner@example.invalid".into(),
                name: "A Learner".into(),
            },
            "retired__user_x".into(),
            "retired__user_x@retired.invalid".into(),
            &table,
            t0(),
        )
        .unwrap();
        Sim {
            history: vec![record.current_state().to_owned()],
            table,
            pipeline: Arc::new(pipeline),
            record,
            now: t0(),
            trace: Vec::new(),
            calls: Vec::new(),
            wait: None,
            poll_replies: Default::default(),
            poll_default: Input::JobRunning,
            polls: Vec::new(),
        }
    }

    /// Puts the learner in `state` by an operator override (as an admin would).
    pub(crate) fn put_in(&mut self, state: &str) {
        let why = Override {
            operator: "test".into(),
            reason: "set up".into(),
        };
        self.record
            .force(&self.table, state, &why, self.now)
            .unwrap();
        self.history.push(state.to_owned());
    }

    /// Puts the learner in a state the table may not know (a hand-edited database).
    pub(crate) fn put_in_raw(&mut self, state: &str) {
        let mut parts: RetirementParts = self.record.clone().into_parts();
        parts.current_state = state.to_owned();
        self.record = Retirement::from_parts(parts);
    }

    fn elapsed(&self, at: DateTime<Utc>) -> String {
        let ms = (at - t0()).num_milliseconds();
        format!("+{}.{:03}s", ms / 1000, ms % 1000)
    }

    /// Runs one machine until it finishes, or crashes after `crash_after` side-effecting actions
    /// (the action is performed, its result is never fed back).
    pub(crate) fn run(
        &mut self,
        options: &DriverOptions,
        seed: u64,
        respond: &mut dyn FnMut(usize, u32) -> Input,
        crash_after: Option<usize>,
    ) -> RunEnd {
        let mut machine = Machine::start_with(
            &self.record,
            self.wait.as_ref(),
            Arc::clone(&self.pipeline),
            options.clone(),
            SplitMix64::new(seed),
            self.now,
        );
        let mut performed = 0usize;
        loop {
            let action = machine
                .poll_action()
                .expect("a running machine always has a next action");
            self.trace
                .push(format!("-> {}", self.describe_action(&action)));
            let input = match action {
                Action::SkipStage { .. } => continue,
                Action::Finish(outcome) => {
                    assert!(machine.is_done());
                    assert_eq!(machine.poll_action(), None, "nothing follows Finish");
                    return RunEnd::Finished(outcome);
                }
                Action::SetState {
                    new_state,
                    response,
                } => {
                    let result = self.record.advance(
                        &self.table,
                        &new_state,
                        &response,
                        Actor::Driver,
                        self.now,
                    );
                    match result {
                        Ok(_) => {
                            self.history.push(new_state);
                            Input::StateWritten
                        }
                        Err(e) => Input::StateWriteFailed {
                            lease_lost: false,
                            message: e.to_string(),
                        },
                    }
                }
                Action::Call { stage, attempt, .. } => {
                    self.calls.push(CallSeen {
                        stage,
                        state_at_call: self.record.current_state().to_owned(),
                    });
                    let input = respond(stage, attempt);
                    self.now += TimeDelta::seconds(1);
                    input
                }
                Action::RetryAt { at } => {
                    assert!(at >= self.now, "retries are never scheduled in the past");
                    self.now = at;
                    Input::Tick
                }
                Action::Park { mut wait, note } => {
                    self.record.note(&note, Actor::Driver, self.now);
                    wait.since = self.record.modified();
                    self.wait = Some(wait);
                    Input::StateWritten
                }
                Action::PollJob { stage, job_id, .. } => {
                    self.polls.push((stage, job_id, self.now));
                    let input = self
                        .poll_replies
                        .pop_front()
                        .unwrap_or_else(|| self.poll_default.clone());
                    self.now += TimeDelta::seconds(1);
                    input
                }
            };
            if !matches!(input, Input::Tick) {
                performed += 1;
                if crash_after == Some(performed) {
                    self.trace.push("!! crash".into());
                    return RunEnd::Crashed;
                }
            }
            self.trace.push(format!("<- {}", describe_input(&input)));
            machine.handle_input(self.now, input).unwrap();
        }
    }

    /// Runs, restarting after each crash with the lease treated as expired, until a run finishes.
    pub(crate) fn run_with_crashes(
        &mut self,
        options: &DriverOptions,
        seed: u64,
        respond: &mut dyn FnMut(usize, u32) -> Input,
        crashes: &[usize],
    ) -> Outcome {
        let resume = DriverOptions {
            on_working_state: OnWorkingState::Resume,
            ..options.clone()
        };
        for (i, crash_after) in crashes.iter().enumerate() {
            let opts = if i == 0 { options } else { &resume };
            match self.run(opts, seed + i as u64, respond, Some(*crash_after)) {
                RunEnd::Finished(outcome) => return outcome,
                RunEnd::Crashed => {}
            }
        }
        let opts = if crashes.is_empty() { options } else { &resume };
        match self.run(opts, seed + crashes.len() as u64, respond, None) {
            RunEnd::Finished(outcome) => outcome,
            RunEnd::Crashed => unreachable!("no crash was requested"),
        }
    }

    fn describe_action(&self, action: &Action) -> String {
        match action {
            Action::SkipStage { working_state, .. } => {
                format!("SkipStage {working_state} (completed in previous run)")
            }
            Action::SetState {
                new_state,
                response,
            } => format!("SetState {new_state} {response:?}"),
            Action::Call {
                service,
                operation,
                attempt,
                ..
            } => format!("Call {service} {operation} attempt {attempt}"),
            Action::RetryAt { at } => format!("RetryAt {}", self.elapsed(*at)),
            Action::Park { wait, note } => format!("Park {wait} {note:?}"),
            Action::PollJob {
                service,
                job_id,
                attempt,
                ..
            } => format!("PollJob {service} {job_id} attempt {attempt}"),
            Action::Finish(outcome) => format!(
                "Finish exit {}: {:?}",
                outcome.exit_status().code(),
                outcome.to_string()
            ),
        }
    }

    pub(crate) fn trace_text(&self) -> String {
        self.trace.join("\n")
    }
}

pub(crate) fn describe_input(input: &Input) -> String {
    match input {
        Input::StateWritten => "StateWritten".into(),
        Input::StateWriteFailed {
            lease_lost,
            message,
        } => format!("StateWriteFailed lease_lost={lease_lost} {message:?}"),
        Input::Response {
            status,
            body,
            retry_after,
        } => match retry_after {
            Some(d) => format!("Response {status} {body:?} retry-after {}s", d.as_secs()),
            None => format!("Response {status} {body:?}"),
        },
        Input::TransportError { kind, message } => {
            format!("TransportError {kind:?} {message:?}")
        }
        Input::StepFailed { transient, message } => {
            format!("StepFailed transient={transient} {message:?}")
        }
        Input::StepSucceeded { message } => format!("StepSucceeded {message:?}"),
        Input::JobStarted { job_id } => format!("JobStarted {job_id}"),
        Input::JobRunning => "JobRunning".into(),
        Input::PersonAsked { reference } => format!("PersonAsked {reference:?}"),
        Input::LeaseExpired => "LeaseExpired".into(),
        Input::Tick => "Tick".into(),
    }
}

pub(crate) fn ok() -> Input {
    Input::Response {
        status: 204,
        body: String::new(),
        retry_after: None,
    }
}

pub(crate) fn status(status: u16, body: &str) -> Input {
    Input::Response {
        status,
        body: body.into(),
        retry_after: None,
    }
}
