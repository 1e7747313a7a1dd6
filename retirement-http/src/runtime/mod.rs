//! The driver runtime: claims learners from a [`RetirementStore`], runs each through
//! `retirement-core`'s [`Machine`](retirement_core::Machine), performs its actions (state
//! writes to the store, calls through [`StepCaller`]) and feeds the results back.
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
//!
//! The runtime knows only the store trait and the [`StepCaller`] trait (a tidy test checks it
//! names no HTTP client): `options` (defaults), `report` (what a run says), `drive` (one
//! learner's turn), `retry` (the store retry helper).

mod breaker;
mod drive;
mod options;
mod report;
mod retry;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use retirement_core::{Input, Outcome, Pipeline, Retirement, RetirementId, SplitMix64, Stage};
use retirement_store::{ClaimRequest, Claimed, Lease, QueueQuery, RetirementStore};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use breaker::OutagePolicy;
pub use drive::retire_one;
pub use options::{
    DEFAULT_CONCURRENCY, DEFAULT_COOL_OFF_DAYS, DEFAULT_LEASE, RunOptions, default_store_retry,
    default_worker_id,
};
pub use report::{LearnerReport, LearnerResult, NoObserver, RunError, RunObserver, RunSummary};

use breaker::Breakers;
use retry::retrying;

/// Performs one stage's call for one learner and says what happened.
#[async_trait]
pub trait StepCaller: Send + Sync {
    /// Calls `stage` for `learner` once; the machine decides about retries.
    async fn call(&self, stage: &Stage, learner: &Retirement, now: DateTime<Utc>) -> Input;

    /// Polls the vendor job `job_id` that `stage`'s call started for `learner`: running,
    /// finished ([`Input::StepSucceeded`]), failed ([`Input::StepFailed`]) or an HTTP
    /// answer the machine classifies. A caller without job stages never gets asked.
    async fn poll(
        &self,
        stage: &Stage,
        _learner: &Retirement,
        _job_id: &str,
        _now: DateTime<Utc>,
    ) -> Input {
        Input::StepFailed {
            transient: false,
            message: format!("{} {} has no job to poll", stage.service, stage.operation),
        }
    }
}

/// Retires the queue of a store through a pipeline.
pub struct Runner {
    store: Arc<dyn RetirementStore>,
    steps: Arc<dyn StepCaller>,
    pipeline: Arc<Pipeline>,
    options: RunOptions,
    /// Per-service outage state; outlives one run (`--watch` passes).
    breakers: Arc<Breakers>,
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
    breakers: Arc<Breakers>,
    /// Learners parked on a down service: they hold a task but no slot.
    parked: std::sync::atomic::AtomicUsize,
    /// Wakes the claim loop when a learner parks or goes on.
    slots: tokio::sync::Notify,
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
        let breakers = Arc::new(Breakers::new(options.outage.clone()));
        Runner {
            store,
            steps,
            pipeline,
            options,
            breakers,
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
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use async_trait::async_trait;
    /// # use chrono::{DateTime, TimeDelta, Utc};
    /// # use retirement_core::{Input, OriginalIdentity, Pipeline, RetiredIdConfig, Retirement, Stage};
    /// # use retirement_store::{DieselStore, NewRetirement, RetirementStore, StoreOptions};
    /// use retirement_http::runtime::{NoObserver, RunOptions, Runner, StepCaller};
    /// # struct Succeeds;
    /// # #[async_trait]
    /// # impl StepCaller for Succeeds {
    /// #     async fn call(&self, _: &Stage, _: &Retirement, _: DateTime<Utc>) -> Input {
    /// #         Input::StepSucceeded { message: "done".into() }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (table, pipeline) = Pipeline::six_stage_example();
    /// # let store = Arc::new(DieselStore::open("sqlite::memory:", &StoreOptions::default()).await?);
    /// # store.migrate().await?;
    /// # store.sync_states(&table.names().map(str::to_owned).collect::<Vec<_>>(), false).await?;
    /// # let ids = RetiredIdConfig::new(vec!["salt".into()])?;
    /// # for n in 0..3 {
    /// #     let original = OriginalIdentity { username: format!("l{n}"), email: format!("l{n}@example.org"), name: String::new() };
    /// #     store.enqueue(NewRetirement::new(original, None, &ids), Utc::now() - TimeDelta::days(8)).await?;
    /// # }
    /// // Three learners are due. A run limited to two claims two and leaves the third.
    /// let options = RunOptions { limit: Some(2), ..RunOptions::default() };
    /// let runner = Runner::new(store.clone(), Arc::new(Succeeds), Arc::new(pipeline), options);
    /// let (stop, stopped) = tokio::sync::watch::channel(false);
    /// let summary = runner.run(stopped.clone(), Arc::new(NoObserver)).await?;
    /// assert_eq!((summary.claimed, summary.completed), (2, 2));
    ///
    /// // Asked to stop before it starts, a run claims nothing.
    /// stop.send(true)?;
    /// let stopped_run = runner.run(stopped, Arc::new(NoObserver)).await?;
    /// assert_eq!(stopped_run.claimed, 0);
    /// assert!(stopped_run.shutdown);
    /// # Ok(())
    /// # }
    /// ```
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
            breakers: self.breakers.clone(),
            parked: Default::default(),
            slots: tokio::sync::Notify::new(),
        });
        // A service still down from an earlier pass is probed again at once.
        self.breakers.new_run(Instant::now());
        let concurrency = self.options.concurrency.max(1);
        // Claim in batches once enough room is free: fewer claim transactions at high
        // concurrency. A claim runs beside the learners (never while every slot waits on it)
        // and claims a few ahead, so a slot that frees starts its next learner at once.
        let batch_threshold = (concurrency / 8).max(1);
        let prefetch = batch_threshold;
        let mut summary = RunSummary::default();
        let mut tasks: JoinSet<LearnerReport> = JoinSet::new();
        let mut ready: std::collections::VecDeque<Claimed> = Default::default();
        let mut claiming: Option<ClaimFuture> = None;
        let mut stop_rx = stop;
        let mut stopping = *stop_rx.borrow();
        let mut exhausted = false;
        let mut deadline: Option<Instant> = None;
        loop {
            // Parked learners hold a task but no slot, up to a bound.
            let parked = shared
                .parked
                .load(std::sync::atomic::Ordering::SeqCst)
                .min(tasks.len());
            let mut active = tasks.len() - parked;
            // A learner claimed ahead that waited too long for a slot (every slot busy with
            // long retries) goes back: its lease is not renewed while it waits.
            let stale_after = shared.now() + self.options.lease_for / 2;
            if ready.iter().any(|c| c.lease.expires < stale_after) {
                let (fresh, stale): (Vec<Claimed>, Vec<Claimed>) = ready
                    .drain(..)
                    .partition(|c| c.lease.expires >= stale_after);
                ready.extend(fresh);
                for learner in stale {
                    shared.untrack(learner.lease.retirement_id);
                    summary.claimed -= 1;
                    let _ = self.store.release(&learner.lease).await;
                }
                exhausted = false;
            }
            while active < concurrency
                && !stopping
                && let Some(learner) = ready.pop_front()
            {
                let shared = shared.clone();
                tasks.spawn(async move { shared.drive_claimed(learner).await });
                active += 1;
            }
            let limit_left = self
                .options
                .limit
                .map_or(usize::MAX, |l| l.saturating_sub(summary.claimed as usize));
            let room = (concurrency + prefetch).saturating_sub(active + ready.len());
            let want = room.min(limit_left);
            // A service down past the patience ends the run's claims: the run winds down
            // and says so.
            let outage_over = self.breakers.down_past_patience(Instant::now());
            if claiming.is_none()
                && !stopping
                && !exhausted
                && !outage_over
                && parked < concurrency * 4
                && want > 0
                && (active == 0 || room >= batch_threshold)
            {
                let request = ClaimRequest::for_pipeline(
                    &self.pipeline,
                    self.options.worker.clone(),
                    want as i64,
                    self.options.lease_for,
                    self.options.cool_off_days,
                );
                let shared = shared.clone();
                claiming = Some(Box::pin(async move {
                    let claimed = retrying(&shared, "claim", None, || {
                        shared.store.claim(&request, shared.now())
                    })
                    .await;
                    (want, claimed.result)
                }));
            }
            if tasks.is_empty() && ready.is_empty() && claiming.is_none() {
                let done = stopping || exhausted || outage_over || limit_left == 0;
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
            let claim_done = async {
                match claiming.as_mut() {
                    Some(claim) => claim.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // In order, never at random: the same seed must run the same way.
                biased;
                (wanted, claimed) = claim_done => {
                    claiming = None;
                    match claimed {
                        Ok(claimed) => {
                            if claimed.len() < wanted {
                                exhausted = true;
                            }
                            summary.claimed += claimed.len() as u64;
                            if !claimed.is_empty() {
                                observer.claimed(claimed.len());
                                tracing::debug!(count = claimed.len(), "claimed learners");
                            }
                            for learner in claimed {
                                shared.track(&learner.lease);
                                ready.push_back(learner);
                            }
                        }
                        Err(e) => {
                            // Let the learners in hand finish before reporting the failure.
                            shared.drain(&mut tasks, &mut summary, &*observer).await;
                            release_unstarted(&shared, &mut ready, &mut summary).await;
                            return Err(e.into());
                        }
                    }
                }
                joined = tasks.join_next(), if !tasks.is_empty() => {
                    if let Some(report) = joined.and_then(|r| r.ok()) {
                        shared.untrack(report.retirement_id);
                        log_report(&report);
                        summary.add(&report);
                        observer.finished(&report);
                    }
                }
                () = shared.slots.notified() => {}
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
                    // A claim still on its way is let finish, so its leases can be released.
                    if let Some(claim) = claiming.take()
                        && let (_, Ok(claimed)) = claim.await
                    {
                        summary.claimed += claimed.len() as u64;
                        for learner in claimed {
                            shared.track(&learner.lease);
                            ready.push_back(learner);
                        }
                    }
                    let leftover: Vec<Lease> = shared.leases.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, l)| l).collect();
                    for lease in leftover {
                        summary.interrupted += 1;
                        let _ = self.store.release(&lease).await;
                    }
                    ready.clear();
                    break;
                }
            }
            if stopping && !ready.is_empty() {
                release_unstarted(&shared, &mut ready, &mut summary).await;
            }
        }
        summary.shutdown = stopping;
        if !summary.services_down.is_empty() {
            tracing::warn!(services = ?summary.services_down, deferred = summary.deferred, "run ends with services down: their learners wait, resumable");
        }
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }
}

/// A claim on its way: how many were wanted, and what the store answered.
type ClaimFuture = std::pin::Pin<
    Box<dyn Future<Output = (usize, Result<Vec<Claimed>, retirement_store::StoreError>)> + Send>,
>;

/// Releases the leases of claimed learners never started (shutdown, or a failed run): the next
/// run takes them at once.
async fn release_unstarted(
    shared: &Shared,
    ready: &mut std::collections::VecDeque<Claimed>,
    summary: &mut RunSummary,
) {
    for learner in ready.drain(..) {
        shared.untrack(learner.lease.retirement_id);
        summary.interrupted += 1;
        let _ = shared.store.release(&learner.lease).await;
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
        (LearnerResult::Deferred, _) => {
            tracing::info!(
                retirement_id = id,
                retired_username = user,
                "its next step's service is down: left resumable for a later run"
            );
        }
        (LearnerResult::Interrupted, _) => {
            tracing::info!(
                retirement_id = id,
                retired_username = user,
                "stopped between stages by shutdown; the next run resumes it"
            );
        }
        // Parked on a vendor job or a person: logged as "parked" when its lease was released.
        (LearnerResult::Waiting, _) => {}
        (_, outcome) => {
            let text = outcome.as_ref().map(|o| o.to_string()).unwrap_or_default();
            tracing::warn!(retirement_id = id, retired_username = user, outcome = %text, "learner not retired");
        }
    }
}
