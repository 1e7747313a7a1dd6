//! The driver runtime: claims learners from a [`RetirementStore`], runs each through
//! `retirement-core`'s [`Machine`], performs its actions (state writes to the store, calls
//! through [`StepCaller`]) and feeds the results back.
//!
//! - [`Runner::run`] retires the whole queue with bounded concurrency. Each learner is held by a
//!   lease that is renewed while its step runs; a learner whose worker died is claimed again once
//!   the lease expired and its interrupted step re-runs (steps are idempotent).
//! - [`retire_one`] is tubular's `retire_one_learner`: one learner, no lease, tubular's refusals.
//! - Shutdown (a `watch` channel set to `true`): no more claims; a learner mid-step finishes the
//!   step and records it, then stops before its next stage; its lease is released so the next run
//!   resumes it at once. Learners still busy after the grace period are dropped and released.
//!
//! Logs (`tracing`) name learners by retirement id and retired username only. A failing
//! response body goes to the learner's log in the store, never to the process log: services
//! may echo personal data in error bodies.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use retirement_core::{
    Action, Actor, Attempts, DriverOptions, ExitStatus, Input, Machine, OnWorkingState, Outcome,
    Pipeline, Retirement, RetirementId, RetryPolicy, SplitMix64, Stage, Verdict,
};
use retirement_store::{
    ClaimRequest, Claimed, DieselStore, Lease, QueueQuery, RetirementStore, StoreError,
};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::clock::{Clock, SystemClock};

use crate::catalog::LearnerRef;
use crate::client::ServiceClients;

/// The service key of the built-in stage that scrubs the learner's enterprise assignments in
/// the store (`[RETIRING_ASSIGNMENTS, ASSIGNMENTS_COMPLETE, ASSIGNMENTS, scrub_learner]`).
pub const ASSIGNMENTS_SERVICE: &str = "ASSIGNMENTS";
/// The built-in assignments stage's operation.
pub const ASSIGNMENTS_OPERATION: &str = "scrub_learner";

/// Performs one stage's call for one learner and says what happened.
#[async_trait]
pub trait StepCaller: Send + Sync {
    /// Calls `stage` for `learner` once; the machine decides about retries.
    async fn call(&self, stage: &Stage, learner: &Retirement, now: DateTime<Utc>) -> Input;
}

/// The standard steps: HTTP services through [`ServiceClients`], and the built-in
/// [`ASSIGNMENTS_SERVICE`] stage through the assignment tables of a SQL store.
pub struct Steps {
    clients: Arc<ServiceClients>,
    assignments: Option<Arc<DieselStore>>,
    nonce: Mutex<SplitMix64>,
}

impl Steps {
    /// Steps over `clients`, with the assignments stage served by `assignments` when given.
    /// `nonce_seed` seeds the unique tombstones (use fresh randomness in production).
    pub fn new(
        clients: Arc<ServiceClients>,
        assignments: Option<Arc<DieselStore>>,
        nonce_seed: u64,
    ) -> Steps {
        Steps {
            clients,
            assignments,
            nonce: Mutex::new(SplitMix64::new(nonce_seed)),
        }
    }

    /// Checks that every stage can be performed: a config error before any learner is touched.
    pub fn check_pipeline(&self, pipeline: &Pipeline) -> Result<(), String> {
        for (index, stage) in pipeline.stages().iter().enumerate() {
            if stage.service == ASSIGNMENTS_SERVICE {
                if stage.operation != ASSIGNMENTS_OPERATION {
                    return Err(format!(
                        "retirement_pipeline stage {index}: the built-in {ASSIGNMENTS_SERVICE} \
                         service has one operation, {ASSIGNMENTS_OPERATION}"
                    ));
                }
                if self.assignments.is_none() {
                    return Err(format!(
                        "retirement_pipeline stage {index}: the {ASSIGNMENTS_SERVICE} stage needs \
                         a SQL store holding the assignments (set assignments_store)"
                    ));
                }
                continue;
            }
            let single = Pipeline::without_table(vec![stage.clone()]).map_err(|e| e.to_string())?;
            self.clients
                .check_pipeline(&single)
                .map_err(|e| format!("retirement_pipeline stage {index}: {e}"))?;
        }
        Ok(())
    }

    fn next_nonce(&self) -> u64 {
        self.nonce
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_u64()
    }
}

#[async_trait]
impl StepCaller for Steps {
    async fn call(&self, stage: &Stage, learner: &Retirement, now: DateTime<Utc>) -> Input {
        if stage.service == ASSIGNMENTS_SERVICE {
            let Some(store) = &self.assignments else {
                return Input::StepFailed {
                    transient: false,
                    message: "no assignments store is configured".into(),
                };
            };
            let mut seed = SplitMix64::new(self.next_nonce());
            let mut nonce = move || seed.next_u64();
            return match store
                .scrub_learner_assignments(
                    &learner.original().email,
                    learner.parts().lms_user_id,
                    now,
                    &mut nonce,
                )
                .await
            {
                Ok(summary) => Input::Response {
                    status: 200,
                    body: serde_json::json!({ "scrubbed_assignments": summary.scrubbed.len() })
                        .to_string(),
                    retry_after: None,
                },
                // The store says itself whether trying again may help; no made-up status.
                Err(e) => Input::StepFailed {
                    transient: e.is_transient(),
                    message: format!("assignment store: {e}"),
                },
            };
        }
        let parts = learner.parts();
        let target = LearnerRef {
            original_username: &learner.original().username,
            lms_user_id: parts.lms_user_id,
            retired_username: learner.retired_username(),
        };
        match self
            .clients
            .call(&stage.service, &stage.operation, &target)
            .await
        {
            Ok(outcome) => outcome.into_input(),
            // Configuration errors are caught by `check_pipeline`; record one as a failure.
            Err(e) => Input::Response {
                status: 500,
                body: e.to_string(),
                retry_after: None,
            },
        }
    }
}

/// How a [`Runner`] works. Defaults are stated per field.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// This worker's id in leases (default `<host>:<pid>`; never a learner).
    pub worker: String,
    /// Learners retired at once (default 8).
    pub concurrency: usize,
    /// Claim at most this many learners in this run (default unlimited).
    pub limit: Option<usize>,
    /// The lease length (default 5 minutes), renewed while a learner is worked on.
    pub lease_for: TimeDelta,
    /// PENDING learners are retired only after this many days (tubular: 7).
    pub cool_off_days: i64,
    /// The machine's options (retry policy, logged body size).
    pub driver: DriverOptions,
    /// Seeds the retry jitter.
    pub seed: u64,
    /// After shutdown is asked for, how long busy learners may take to finish their step.
    pub shutdown_grace: Duration,
    /// How store calls that failed transiently (a dropped connection, a lock timeout, an LMS
    /// 5xx) are retried: backoff with full jitter within the policy's budget (default 100 ms
    /// doubling to 5 s, 60 s in all), then the learner is given up on (claims: the run stops).
    pub store_retry: RetryPolicy,
    /// The wall clock (default the system's; a simulation's follows tokio's paused clock).
    /// Every wait goes through tokio's timers.
    pub clock: Arc<dyn Clock>,
}

/// The default [`RunOptions::store_retry`].
pub fn default_store_retry() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(5),
        budget: Duration::from_secs(60),
        gateway_timeout_wait: Duration::ZERO,
        gateway_timeout_retries: 0,
    }
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            worker: default_worker_id(),
            concurrency: 8,
            limit: None,
            lease_for: TimeDelta::minutes(5),
            cool_off_days: 7,
            driver: DriverOptions::default(),
            seed: 0x5eed,
            shutdown_grace: Duration::from_secs(30),
            store_retry: default_store_retry(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// `<hostname>:<pid>`, the default worker id.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}:{}", std::process::id())
}

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
    fn add(&mut self, report: &LearnerReport) {
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

/// Retires the queue of a store through a pipeline.
pub struct Runner {
    store: Arc<dyn RetirementStore>,
    steps: Arc<dyn StepCaller>,
    pipeline: Arc<Pipeline>,
    options: RunOptions,
}

struct Shared {
    store: Arc<dyn RetirementStore>,
    steps: Arc<dyn StepCaller>,
    pipeline: Arc<Pipeline>,
    options: RunOptions,
    stop: watch::Receiver<bool>,
    /// Leases of learners being worked on, released if their task is dropped at the deadline.
    leases: Mutex<HashMap<RetirementId, Lease>>,
    /// The jitter of store retries.
    jitter: Mutex<SplitMix64>,
}

/// Keeps the store retries' jitter apart from the machines' (same seed).
const JITTER_SALT: u64 = 0x5703_e4e7_1e5e_ed00;

impl Runner {
    /// A runner over `store` calling `steps` for `pipeline`.
    pub fn new(
        store: Arc<dyn RetirementStore>,
        steps: Arc<dyn StepCaller>,
        pipeline: Arc<Pipeline>,
        options: RunOptions,
    ) -> Runner {
        Runner {
            store,
            steps,
            pipeline,
            options,
        }
    }

    /// Counts the queue (learners past the cool-off in PENDING or a completion state) up to
    /// `threshold + 1` and refuses when it is above `threshold`: tubular's fail-safe against a
    /// flooded queue.
    pub async fn check_threshold(&self, threshold: usize) -> Result<(), RunError> {
        let query = QueueQuery {
            states: self
                .pipeline
                .queue_states()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            cool_off_days: self.options.cool_off_days,
            limit: Some(threshold as i64 + 1),
        };
        let count = self
            .store
            .queue(&query, self.options.clock.now())
            .await?
            .len();
        if count > threshold {
            return Err(RunError::TooManyLearners { threshold, count });
        }
        Ok(())
    }

    /// Claims and retires learners until none is actionable, the limit is reached, or `stop`
    /// turns `true`.
    pub async fn run(
        &self,
        stop: watch::Receiver<bool>,
        observer: Arc<dyn RunObserver>,
    ) -> Result<RunSummary, RunError> {
        let started = Instant::now();
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            steps: self.steps.clone(),
            pipeline: self.pipeline.clone(),
            options: self.options.clone(),
            stop: stop.clone(),
            leases: Mutex::new(HashMap::new()),
            jitter: Mutex::new(SplitMix64::new(self.options.seed ^ JITTER_SALT)),
        });
        let concurrency = self.options.concurrency.max(1);
        // Claim in batches once enough slots are free: fewer claim transactions at high
        // concurrency, and never a slot idle for long.
        let batch_threshold = (concurrency / 8).max(1);
        let mut summary = RunSummary::default();
        let mut tasks: JoinSet<LearnerReport> = JoinSet::new();
        let mut stop_rx = stop;
        let mut stopping = *stop_rx.borrow();
        let mut exhausted = false;
        let mut deadline: Option<Instant> = None;
        loop {
            let limit_left = self
                .options
                .limit
                .map_or(usize::MAX, |l| l.saturating_sub(summary.claimed as usize));
            let free = concurrency - tasks.len().min(concurrency);
            let want = free.min(limit_left);
            if !stopping && !exhausted && want > 0 && (tasks.is_empty() || free >= batch_threshold)
            {
                let request = ClaimRequest::for_pipeline(
                    &self.pipeline,
                    self.options.worker.clone(),
                    want as i64,
                    self.options.lease_for,
                    self.options.cool_off_days,
                );
                let claim = retrying(&shared, "claim", None, Some(&mut stop_rx), || {
                    self.store.claim(&request, shared.now())
                })
                .await;
                match claim.result {
                    Ok(claimed) => {
                        if claimed.len() < want {
                            exhausted = true;
                        }
                        summary.claimed += claimed.len() as u64;
                        if !claimed.is_empty() {
                            observer.claimed(claimed.len());
                            tracing::debug!(count = claimed.len(), "claimed learners");
                        }
                        for learner in claimed {
                            shared.track(&learner.lease);
                            let shared = shared.clone();
                            tasks.spawn(async move { shared.drive_claimed(learner).await });
                        }
                    }
                    Err(_) if claim.stopped => {
                        stopping = true;
                        continue;
                    }
                    Err(e) => {
                        // Let the learners in hand finish before reporting the failure.
                        shared.drain(&mut tasks, &mut summary, &*observer).await;
                        return Err(e.into());
                    }
                }
            }
            if tasks.is_empty() {
                let done = stopping || exhausted || limit_left == 0;
                if done {
                    break;
                }
                continue;
            }
            if stopping && deadline.is_none() {
                deadline = Some(Instant::now() + self.options.shutdown_grace);
            }
            let grace_over = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                joined = tasks.join_next() => {
                    if let Some(report) = joined.and_then(|r| r.ok()) {
                        shared.untrack(report.retirement_id);
                        log_report(&report);
                        summary.add(&report);
                        observer.finished(&report);
                    }
                }
                changed = stop_rx.changed(), if !stopping => {
                    if changed.is_err() || *stop_rx.borrow() {
                        stopping = true;
                        tracing::info!(busy = tasks.len(), "shutdown requested: no more claims; busy learners finish their step");
                    }
                }
                () = grace_over => {
                    tracing::warn!(busy = tasks.len(), "shutdown grace period over: dropping busy learners and releasing their leases");
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    let leftover: Vec<Lease> = shared.leases.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, l)| l).collect();
                    for lease in leftover {
                        summary.interrupted += 1;
                        let _ = self.store.release(&lease).await;
                    }
                    break;
                }
            }
        }
        summary.shutdown = stopping;
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }
}

fn log_report(report: &LearnerReport) {
    let id = report.retirement_id.0;
    let user = report.retired_username.as_str();
    match (&report.result, &report.outcome) {
        (LearnerResult::Completed, _) => {
            tracing::debug!(
                retirement_id = id,
                retired_username = user,
                "learner retired"
            );
        }
        (LearnerResult::Errored, Some(Outcome::Errored { state, message, .. })) => {
            // The first line is the status line; the body stays in the store's log.
            let headline = message.lines().next().unwrap_or_default();
            tracing::warn!(retirement_id = id, retired_username = user, state = %state, error = %headline, "learner set to ERRORED; `retire status` shows the response");
        }
        (LearnerResult::Interrupted, _) => {
            tracing::info!(
                retirement_id = id,
                retired_username = user,
                "stopped between stages by shutdown; the next run resumes it"
            );
        }
        (_, outcome) => {
            let text = outcome.as_ref().map(|o| o.to_string()).unwrap_or_default();
            tracing::warn!(retirement_id = id, retired_username = user, outcome = %text, "learner not retired");
        }
    }
}

impl Shared {
    fn track(&self, lease: &Lease) {
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(lease.retirement_id, lease.clone());
    }

    fn untrack(&self, id: RetirementId) {
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    async fn drain(
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

    async fn drive_claimed(&self, claimed: Claimed) -> LearnerReport {
        let Claimed {
            retirement,
            lease,
            resumes_working_state,
        } = claimed;
        let mut driver = self.options.driver.clone();
        driver.on_working_state = if resumes_working_state {
            OnWorkingState::Resume
        } else {
            OnWorkingState::Refuse
        };
        let mut lease = Some(lease);
        let report = drive(self, &retirement, &mut lease, driver).await;
        // A learner that reached an end state had its lease ended by that write.
        let ended = matches!(
            report.outcome,
            Some(Outcome::Completed | Outcome::Errored { recorded: true, .. })
        );
        if let Some(lease) = &lease
            && report.result != LearnerResult::LeaseLost
            && !ended
            && let Err(e) = self.store.release(lease).await
        {
            // The lease runs out on its own; another worker then takes the learner.
            tracing::debug!(retirement_id = retirement.id().0, error = %e, "releasing a lease failed");
        }
        report
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    fn now(&self) -> DateTime<Utc> {
        self.options.clock.now()
    }
}

/// What [`retrying`] came to.
struct Retried<T> {
    result: Result<T, StoreError>,
    /// Attempts after the first.
    retries: u32,
    /// Shutdown was asked for while waiting to retry.
    stopped: bool,
}

/// Runs a store call, retrying transient failures with [`RunOptions::store_retry`]'s backoff
/// (full jitter) on tokio's clock, until it succeeds, fails for good, the policy's budget is
/// spent, the next try would fall after `until` (a lease's end), or — when `stop` is given —
/// shutdown is asked for.
async fn retrying<T, F, Fut>(
    shared: &Shared,
    what: &'static str,
    until: Option<DateTime<Utc>>,
    mut stop: Option<&mut watch::Receiver<bool>>,
    mut call: F,
) -> Retried<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let policy = &shared.options.store_retry;
    let mut attempts = Attempts::new(shared.now());
    loop {
        let error = match call().await {
            Ok(value) => {
                return Retried {
                    result: Ok(value),
                    retries: attempts.made() - 1,
                    stopped: false,
                };
            }
            Err(e) => e,
        };
        let now = shared.now();
        let next = if error.is_transient() {
            let mut jitter = shared.jitter.lock().unwrap_or_else(|p| p.into_inner());
            policy
                .next_attempt_at(Verdict::Backoff, &mut attempts, None, now, &mut *jitter)
                .filter(|at| until.is_none_or(|end| *at < end))
        } else {
            None
        };
        let Some(at) = next else {
            return Retried {
                result: Err(error),
                retries: attempts.made() - 1,
                stopped: false,
            };
        };
        tracing::warn!(error = %error, attempt = attempts.made(), "{what} failed; retrying");
        let pause = tokio::time::sleep((at - now).to_std().unwrap_or_default());
        match stop.as_deref_mut() {
            Some(stop) => {
                tokio::select! {
                    () = pause => {}
                    _ = stop.wait_for(|s| *s) => {
                        return Retried { result: Err(error), retries: attempts.made() - 1, stopped: true };
                    }
                }
            }
            None => pause.await,
        }
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
    };
    let mut driver = options.driver;
    driver.on_working_state = OnWorkingState::Refuse;
    drive(&shared, retirement, &mut None, driver).await
}

/// Runs one learner's machine to its end.
async fn drive(
    shared: &Shared,
    retirement: &Retirement,
    lease: &mut Option<Lease>,
    driver: DriverOptions,
) -> LearnerReport {
    let id = retirement.id();
    let seed = shared.options.seed ^ (id.0 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut machine = Machine::start(
        retirement,
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
    };
    let working: Vec<&str> = shared
        .pipeline
        .stages()
        .iter()
        .map(|s| s.working_state.as_str())
        .collect();
    loop {
        let Some(action) = machine.poll_action() else {
            // The machine always ends with Finish; this is a bug, not a learner's fault.
            tracing::error!(
                retirement_id = id.0,
                "the machine stopped without an outcome"
            );
            return report;
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
                    return report;
                }
                if !renew(shared, lease).await {
                    Input::LeaseExpired
                } else {
                    report.writes += 1;
                    write_state(shared, id, lease.as_ref(), &new_state, &response).await
                }
            }
            Action::Call { stage, .. } => {
                if !renew(shared, lease).await {
                    Input::LeaseExpired
                } else {
                    report.calls += 1;
                    let stage = &shared.pipeline.stages()[stage];
                    shared.steps.call(stage, retirement, shared.now()).await
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
                        return report;
                    }
                }
            }
            Action::Finish(outcome) => {
                report.result = match &outcome {
                    Outcome::Completed => LearnerResult::Completed,
                    Outcome::Errored { .. } => LearnerResult::Errored,
                    Outcome::LeaseLost => LearnerResult::LeaseLost,
                    _ => LearnerResult::Refused,
                };
                report.outcome = Some(outcome);
                return report;
            }
        };
        if let Err(e) = machine.handle_input(shared.now(), input) {
            tracing::error!(retirement_id = id.0, error = %e, "the machine refused an input");
            return report;
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
    let renewed = retrying(shared, "lease renewal", Some(current.expires), None, || {
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
    let written = retrying(shared, "state write", None, None, || {
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
    let current = retrying(shared, "read-back", None, None, || shared.store.get(id)).await;
    current
        .result
        .is_ok_and(|current| current.current_state() == state)
}
