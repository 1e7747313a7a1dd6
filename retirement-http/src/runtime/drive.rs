//! One learner's turn: the machine's actions performed (state writes fenced by the lease, step
//! calls through the [`StepCaller`]), the lease renewed, and tubular's one-learner protocol
//! ([`retire_one`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use retirement_core::{
    Action, Actor, DriverOptions, ERRORED, Input, Machine, OnWorkingState, Outcome, Pipeline,
    Retirement, RetirementId, SplitMix64, StageKind,
};
use retirement_store::{Claimed, Lease, RetirementStore, StoreError};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::breaker::{Admit, Breakers, Health};
use super::retry::retrying;
use super::{
    JITTER_SALT, LearnerReport, LearnerResult, RunObserver, RunOptions, RunSummary, Shared,
    StepCaller,
};

impl Shared {
    pub(super) fn track(&self, lease: &Lease) {
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(lease.retirement_id, lease.clone());
    }

    pub(super) fn untrack(&self, id: RetirementId) {
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    pub(super) async fn drain(
        &self,
        tasks: &mut JoinSet<LearnerReport>,
        summary: &mut RunSummary,
        observer: &dyn RunObserver,
    ) {
        while let Some(joined) = tasks.join_next().await {
            if let Ok(report) = joined {
                self.untrack(report.retirement_id);
                summary.add(&report);
                observer.finished(&report);
            }
        }
    }

    pub(super) async fn drive_claimed(&self, claimed: Claimed) -> LearnerReport {
        let Claimed {
            mut retirement,
            lease,
            resumes_working_state,
        } = claimed;
        let id = retirement.id();
        let mut driver = self.options.driver.clone();
        driver.on_working_state = if resumes_working_state {
            OnWorkingState::Resume
        } else {
            OnWorkingState::Refuse
        };
        let mut lease = Some(lease);
        let mut spare = true;
        let (mut calls, mut writes) = (0, 0);
        let mut report = loop {
            let (mut report, parked) =
                match drive(self, &retirement, &mut lease, driver.clone(), spare).await {
                    Turn::Ended(report) => (report, None),
                    Turn::Parked {
                        report,
                        service,
                        spared,
                    } => (report, Some((service, spared))),
                };
            calls += report.calls;
            writes += report.writes;
            let Some((service, spared)) = parked else {
                break report;
            };
            // An outage spares a learner ERRORED once per turn.
            spare &= !spared;
            match self.park(&service, id, &mut lease).await {
                Parked::Resume => {}
                Parked::GaveUp => {
                    report.result = LearnerResult::Deferred;
                    report.waiting_on = Some(service);
                    break report;
                }
                Parked::Stopped => {
                    report.result = LearnerResult::Interrupted;
                    break report;
                }
                Parked::LeaseLost => {
                    report.result = LearnerResult::LeaseLost;
                    report.outcome = Some(Outcome::LeaseLost);
                    break report;
                }
            }
            // The service is back: a fresh machine, with a fresh retry budget, resumes the
            // learner where it stands (its working state: the step runs again).
            let current = retrying(self, "read-back", None, || self.store.get(id)).await;
            match current.result {
                Ok(current) => retirement = current,
                Err(e) => {
                    tracing::warn!(retirement_id = id.0, error = %e, "reading a parked learner back failed; left resumable");
                    report.result = LearnerResult::Deferred;
                    report.waiting_on = Some(service);
                    break report;
                }
            }
            driver.on_working_state = OnWorkingState::Resume;
        };
        report.calls = calls;
        report.writes = writes;
        self.breakers.forget_probe(id);
        // A learner that reached an end state had its lease ended by that write.
        let ended = matches!(
            report.outcome,
            Some(Outcome::Completed | Outcome::Errored { recorded: true, .. })
        );
        if let Some(Outcome::Waiting { until, on, .. }) = &report.outcome {
            // Parked: nobody claims it before its next poll (or before `retire done`).
            let released = retrying(self, "park release", None, || {
                self.store
                    .release_until(id, lease.as_ref(), *until, self.now())
            })
            .await;
            if let Err(e) = released.result {
                tracing::warn!(retirement_id = id.0, error = %e, "releasing a parked learner failed; its lease runs out on its own");
            }
            tracing::info!(retirement_id = id.0, retired_username = %report.retired_username, waiting_on = %on, "parked");
        } else if let Some(lease) = &lease
            && report.result != LearnerResult::LeaseLost
            && !ended
            && let Err(e) = self.store.release(lease).await
        {
            // The lease runs out on its own; another worker then takes the learner.
            tracing::debug!(retirement_id = id.0, error = %e, "releasing a lease failed");
        }
        report
    }

    /// Waits, holding the lease but no slot, until `service` admits the learner (it is back,
    /// or this learner is to probe it), the patience runs out, shutdown, or the lease is lost.
    async fn park(&self, service: &str, id: RetirementId, lease: &mut Option<Lease>) -> Parked {
        use std::sync::atomic::Ordering;
        self.parked.fetch_add(1, Ordering::SeqCst);
        self.slots.notify_one();
        tracing::debug!(retirement_id = id.0, service, "parked: the service is down");
        let mut stop = self.stop.clone();
        let patience = self.breakers.policy().patience;
        let wake_for_lease = (self.options.lease_for / 2)
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(1));
        let parked = loop {
            if *stop.borrow() {
                break Parked::Stopped;
            }
            // Listen before looking, so a change in between is not missed.
            let changed = self.breakers.changes().notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = Instant::now();
            let (since, until) = match self.breakers.admit(service, id, now) {
                Admit::Go => break Parked::Resume,
                Admit::Wait { since, until } => (since, until),
            };
            let give_up = since + patience;
            if now >= give_up {
                break Parked::GaveUp;
            }
            let wake = until.min(give_up).min(now + wake_for_lease);
            tokio::select! {
                // In order, never at random: the same seed must run the same way.
                biased;
                () = tokio::time::sleep_until(wake) => {}
                () = &mut changed => {}
                _ = stop.changed() => {}
            }
            if !renew(self, lease).await {
                break Parked::LeaseLost;
            }
        };
        self.parked.fetch_sub(1, Ordering::SeqCst);
        self.slots.notify_one();
        parked
    }

    pub(super) fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        self.options.clock.now()
    }
}

/// Retires one learner the way tubular's `retire_one_learner` does: no lease, a learner in a
/// working state is refused (-3), and the outcome maps to tubular's exit codes. State writes
/// go through the store's `advance`, which refuses while another worker holds a live lease.
pub async fn retire_one(
    store: Arc<dyn RetirementStore>,
    steps: Arc<dyn StepCaller>,
    pipeline: Arc<Pipeline>,
    retirement: &Retirement,
    options: RunOptions,
) -> LearnerReport {
    let (_keep, stop) = watch::channel(false);
    let shared = Shared {
        store,
        steps,
        pipeline,
        options: options.clone(),
        stop,
        leases: Mutex::new(HashMap::new()),
        jitter: Mutex::new(SplitMix64::new(options.seed ^ JITTER_SALT)),
        breakers: Arc::new(Breakers::new(options.outage.clone())),
        parked: Default::default(),
        slots: tokio::sync::Notify::new(),
    };
    let mut driver = options.driver;
    driver.on_working_state = OnWorkingState::Refuse;
    // One learner: no outage handling (tubular's protocol; the caller retries the job).
    match drive(&shared, retirement, &mut None, driver, false).await {
        Turn::Ended(report) => {
            if let Some(Outcome::Waiting { until, .. }) = &report.outcome {
                let id = retirement.id();
                if let Err(e) = shared
                    .store
                    .release_until(id, None, *until, shared.now())
                    .await
                {
                    tracing::warn!(retirement_id = id.0, error = %e, "recording when to look at a parked learner again failed");
                }
            }
            report
        }
        Turn::Parked {
            mut report,
            service,
            ..
        } => {
            report.result = LearnerResult::Deferred;
            report.waiting_on = Some(service);
            report
        }
    }
}

/// A breaker's key: the stage's endpoint (`LMS retirement_lms_retire`), so one broken
/// endpoint of a service is told apart from the service's other endpoints that work.
fn endpoint(stage: &retirement_core::Stage) -> String {
    format!("{} {}", stage.service, stage.operation)
}

/// How [`Shared::park`] ended.
enum Parked {
    /// The service admits the learner: go on.
    Resume,
    /// The service stayed down past the patience.
    GaveUp,
    Stopped,
    LeaseLost,
}

/// How one machine's run ended.
enum Turn {
    Ended(LearnerReport),
    /// The next call's service is down: the learner waits (its calls and writes so far in
    /// `report`). `spared`: it would have been set ERRORED, had the outage not explained it.
    Parked {
        report: LearnerReport,
        service: String,
        spared: bool,
    },
}

/// Runs one learner's machine until it ends or parks on a down service. With `spare`, a
/// failure that the service's outage explains parks the learner instead of ERRORED.
async fn drive(
    shared: &Shared,
    retirement: &Retirement,
    lease: &mut Option<Lease>,
    driver: DriverOptions,
    spare: bool,
) -> Turn {
    let id = retirement.id();
    let seed = shared.options.seed ^ (id.0 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // A learner in the working state of a job or manual stage may be parked: its wait says
    // what to do (poll the job, stay parked). Other learners need no read.
    let parkable = shared
        .pipeline
        .stages()
        .iter()
        .any(|s| s.kind != StageKind::Call && s.working_state == retirement.current_state());
    let wait = if parkable {
        let read = retrying(shared, "wait read", None, || shared.store.wait_of(id)).await;
        match read.result {
            Ok(wait) => wait,
            Err(e) => {
                tracing::warn!(retirement_id = id.0, error = %e, "reading a learner's wait failed; left for a later run");
                return Turn::Ended(LearnerReport {
                    retirement_id: id,
                    retired_username: retirement.retired_username().to_owned(),
                    result: LearnerResult::Deferred,
                    outcome: None,
                    calls: 0,
                    writes: 0,
                    waiting_on: None,
                });
            }
        }
    } else {
        None
    };
    let mut machine = Machine::start_with(
        retirement,
        wait.as_ref(),
        shared.pipeline.clone(),
        driver,
        SplitMix64::new(seed),
        shared.now(),
    );
    let mut report = LearnerReport {
        retirement_id: id,
        retired_username: retirement.retired_username().to_owned(),
        result: LearnerResult::Refused,
        outcome: None,
        calls: 0,
        writes: 0,
        waiting_on: None,
    };
    let working: Vec<&str> = shared
        .pipeline
        .stages()
        .iter()
        .map(|s| s.working_state.as_str())
        .collect();
    // The stage whose calls have failed (transport, 5xx, 429) since its last success: when the
    // first of them and the last one started.
    let mut failing: Option<(usize, Instant, Instant)> = None;
    loop {
        let Some(action) = machine.poll_action() else {
            // The machine always ends with Finish; this is a bug, not a learner's fault.
            tracing::error!(
                retirement_id = id.0,
                "the machine stopped without an outcome"
            );
            return Turn::Ended(report);
        };
        let input = match action {
            Action::SkipStage { working_state, .. } => {
                tracing::debug!(retirement_id = id.0, state = %working_state, "State completed in previous run, skipping");
                continue;
            }
            Action::SetState {
                new_state,
                response,
            } => {
                if shared.stopping() && working.contains(&new_state.as_str()) {
                    report.result = LearnerResult::Interrupted;
                    return Turn::Ended(report);
                }
                // Out of retries on a service that has answered nobody since: an outage,
                // not this learner's failure.
                if let Some((stage, streak_started, attempt_started)) = failing
                    && spare
                    && new_state == ERRORED
                {
                    let endpoint = endpoint(&shared.pipeline.stages()[stage]);
                    if shared
                        .breakers
                        .outage_explains(&endpoint, streak_started, attempt_started)
                    {
                        return Turn::Parked {
                            report,
                            service: endpoint,
                            spared: true,
                        };
                    }
                }
                if !renew(shared, lease).await {
                    Input::LeaseExpired
                } else {
                    report.writes += 1;
                    write_state(shared, id, lease.as_ref(), &new_state, &response).await
                }
            }
            // A stage's call, or a poll of the job it started: the same guard (the endpoint's
            // breaker, the lease) and the same health record.
            Action::Call { stage: index, .. } | Action::PollJob { stage: index, .. } => {
                let job = match &action {
                    Action::PollJob { job_id, .. } => Some(job_id.as_str()),
                    _ => None,
                };
                let stage = &shared.pipeline.stages()[index];
                let endpoint = endpoint(stage);
                if let Admit::Wait { .. } = shared.breakers.admit(&endpoint, id, Instant::now()) {
                    return Turn::Parked {
                        report,
                        service: endpoint,
                        spared: false,
                    };
                }
                if !renew(shared, lease).await {
                    Input::LeaseExpired
                } else {
                    report.calls += 1;
                    let started = Instant::now();
                    let input = match job {
                        None => shared.steps.call(stage, retirement, shared.now()).await,
                        Some(job_id) => {
                            shared
                                .steps
                                .poll(stage, retirement, job_id, shared.now())
                                .await
                        }
                    };
                    if let Some(health) = Health::of(&input) {
                        shared
                            .breakers
                            .record(&endpoint, id, health, Instant::now());
                        failing = match health {
                            Health::Works => None,
                            Health::Failing => match failing {
                                Some((i, streak, _)) if i == index => Some((i, streak, started)),
                                _ => Some((index, started, started)),
                            },
                        };
                    }
                    input
                }
            }
            Action::Park { wait, note } => {
                if !renew(shared, lease).await {
                    Input::LeaseExpired
                } else {
                    report.writes += 1;
                    let parked = retrying(shared, "park", None, || {
                        shared
                            .store
                            .park(id, lease.as_ref(), &wait, &note, shared.now())
                    })
                    .await;
                    match parked.result {
                        Ok(_) => Input::StateWritten,
                        Err(StoreError::LeaseLost { .. }) => Input::StateWriteFailed {
                            lease_lost: true,
                            message: "lease lost".into(),
                        },
                        Err(e) => Input::StateWriteFailed {
                            lease_lost: false,
                            message: e.to_string(),
                        },
                    }
                }
            }
            Action::RetryAt { at } => {
                match wait_until(shared, lease, at).await {
                    Wait::Due => Input::Tick,
                    Wait::LeaseLost => Input::LeaseExpired,
                    // Stopped while waiting to retry: the learner stays in its working state
                    // with its lease released, so the next run claims it and runs the step.
                    Wait::Stopped => {
                        report.result = LearnerResult::Interrupted;
                        return Turn::Ended(report);
                    }
                }
            }
            Action::Finish(outcome) => {
                report.result = match &outcome {
                    Outcome::Completed => LearnerResult::Completed,
                    Outcome::Errored { .. } => LearnerResult::Errored,
                    Outcome::LeaseLost => LearnerResult::LeaseLost,
                    Outcome::Waiting { .. } => LearnerResult::Waiting,
                    _ => LearnerResult::Refused,
                };
                report.outcome = Some(outcome);
                return Turn::Ended(report);
            }
        };
        if let Err(e) = machine.handle_input(shared.now(), input) {
            tracing::error!(retirement_id = id.0, error = %e, "the machine refused an input");
            return Turn::Ended(report);
        }
    }
}

/// Extends the lease when less than half of it is left. `false` when it was lost.
async fn renew(shared: &Shared, lease: &mut Option<Lease>) -> bool {
    let Some(current) = lease.as_ref() else {
        return true;
    };
    let now = shared.now();
    if current.expires - now > shared.options.lease_for / 2 {
        return true;
    }
    let until = now + shared.options.lease_for;
    // Retried only while the lease still holds: after that another worker may have it.
    let renewed = retrying(shared, "lease renewal", Some(current.expires), || {
        shared.store.heartbeat(current, until)
    })
    .await;
    match renewed.result {
        Ok(renewed) => {
            shared.track(&renewed);
            *lease = Some(renewed);
            true
        }
        Err(e) => {
            tracing::warn!(retirement_id = current.retirement_id.0, error = %e, "lease lost");
            false
        }
    }
}

enum Wait {
    Due,
    LeaseLost,
    Stopped,
}

async fn wait_until(shared: &Shared, lease: &mut Option<Lease>, at: DateTime<Utc>) -> Wait {
    let mut stop = shared.stop.clone();
    loop {
        if *stop.borrow() {
            return Wait::Stopped;
        }
        let now = shared.now();
        if now >= at {
            return Wait::Due;
        }
        // Wake to renew the lease before half of it is gone, or when the retry is due.
        let renew_at = lease
            .as_ref()
            .map(|l| l.expires - shared.options.lease_for / 2)
            .unwrap_or(at);
        let until = at.min(renew_at.max(now + TimeDelta::milliseconds(10)));
        let pause = (until - now).to_std().unwrap_or_default();
        tokio::select! {
            // In order, never at random: the same seed must run the same way.
            biased;
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
        if !renew(shared, lease).await {
            return Wait::LeaseLost;
        }
    }
}

/// Writes a state, retrying transient store failures within the store retry policy. A write
/// whose acknowledgement was lost (the connection broke after the commit) is recognised by
/// reading the learner back: its retry is refused (an earlier state, or a lease the end state
/// already ended), and the learner is found in the state written.
async fn write_state(
    shared: &Shared,
    id: RetirementId,
    lease: Option<&Lease>,
    new_state: &str,
    response: &str,
) -> Input {
    let written = retrying(shared, "state write", None, || {
        shared
            .store
            .advance(id, lease, new_state, response, Actor::Driver, shared.now())
    })
    .await;
    let error = match written.result {
        Ok(_) => return Input::StateWritten,
        Err(e) => e,
    };
    // An earlier attempt may have landed: only then can a refusal mean "already written".
    if written.retries > 0 && already_in(shared, id, new_state).await {
        return Input::StateWritten;
    }
    match error {
        StoreError::LeaseLost { .. } => Input::StateWriteFailed {
            lease_lost: true,
            message: "lease lost".into(),
        },
        e => Input::StateWriteFailed {
            lease_lost: false,
            message: e.to_string(),
        },
    }
}

/// Whether the learner is in `state`, reading it back through transient failures.
async fn already_in(shared: &Shared, id: RetirementId, state: &str) -> bool {
    let current = retrying(shared, "read-back", None, || shared.store.get(id)).await;
    current
        .result
        .is_ok_and(|current| current.current_state() == state)
}
