//! The runner against a store that loses the acknowledgement of some committed writes (the
//! connection breaks after the commit, as `chaos db` provokes): the retry is refused, and the
//! runner must recognise the write as done rather than set the learner ERRORED.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use retirement_core::{
    Actor, DriverOptions, LogEntry, OriginalIdentity, Override, Pipeline, RetiredIdConfig,
    Retirement, RetirementId, RetryPolicy, StateTable, SyncPlan,
};
use retirement_http::Steps;
use retirement_http::runtime::{NoObserver, RunOptions, Runner};
use retirement_store::{
    ClaimRequest, Claimed, DieselStore, Lease, MoveTarget, NewRetirement, QueueQuery, Result,
    RetirementStore, StateWindow, StoreError,
};

/// A `DieselStore` whose next write to each state in `lose` commits, then fails as transient.
struct AckLosing {
    inner: Arc<DieselStore>,
    lose: Mutex<HashSet<String>>,
}

#[async_trait]
impl RetirementStore for AckLosing {
    async fn state_table(&self) -> Result<StateTable> {
        self.inner.state_table().await
    }
    async fn sync_states(&self, desired: &[String], dry_run: bool) -> Result<SyncPlan> {
        self.inner.sync_states(desired, dry_run).await
    }
    async fn enqueue(&self, request: NewRetirement, now: DateTime<Utc>) -> Result<Retirement> {
        self.inner.enqueue(request, now).await
    }
    async fn was_requested(&self, retired_usernames: &[String]) -> Result<bool> {
        self.inner.was_requested(retired_usernames).await
    }
    async fn get(&self, id: RetirementId) -> Result<Retirement> {
        self.inner.get(id).await
    }
    async fn find_by_username(&self, original_username: &str) -> Result<Retirement> {
        self.inner.find_by_username(original_username).await
    }
    async fn find_by_email(&self, original_email: &str) -> Result<Retirement> {
        self.inner.find_by_email(original_email).await
    }
    async fn queue(&self, query: &QueueQuery, now: DateTime<Utc>) -> Result<Vec<Retirement>> {
        self.inner.queue(query, now).await
    }
    async fn by_state_and_date(
        &self,
        window: &StateWindow,
        now: DateTime<Utc>,
    ) -> Result<Vec<Retirement>> {
        self.inner.by_state_and_date(window, now).await
    }
    async fn advance(
        &self,
        id: RetirementId,
        lease: Option<&Lease>,
        new_state: &str,
        response: &str,
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<LogEntry> {
        let written = self
            .inner
            .advance(id, lease, new_state, response, actor, now)
            .await?;
        if self.lose.lock().unwrap().remove(new_state) {
            // Committed, but the answer never arrived.
            return Err(StoreError::Connection("connection closed".into()));
        }
        Ok(written)
    }
    async fn force(
        &self,
        id: RetirementId,
        to: &str,
        why: &Override,
        now: DateTime<Utc>,
    ) -> Result<Retirement> {
        self.inner.force(id, to, why, now).await
    }
    async fn bulk_move(
        &self,
        window: &StateWindow,
        target: &MoveTarget,
        why: &Override,
        now: DateTime<Utc>,
    ) -> Result<Vec<(RetirementId, LogEntry)>> {
        self.inner.bulk_move(window, target, why, now).await
    }
    async fn cancel(&self, id: RetirementId) -> Result<()> {
        self.inner.cancel(id).await
    }
    async fn cleanup(&self, original_usernames: &[String]) -> Result<Vec<Retirement>> {
        self.inner.cleanup(original_usernames).await
    }
    async fn claim(&self, request: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Claimed>> {
        self.inner.claim(request, now).await
    }
    async fn heartbeat(&self, lease: &Lease, until: DateTime<Utc>) -> Result<Lease> {
        self.inner.heartbeat(lease, until).await
    }
    async fn release(&self, lease: &Lease) -> Result<()> {
        self.inner.release(lease).await
    }
    async fn find_by_user_id(&self, lms_user_id: i64) -> Result<Retirement> {
        self.inner.find_by_user_id(lms_user_id).await
    }
    async fn park(
        &self,
        id: RetirementId,
        lease: Option<&Lease>,
        wait: &retirement_core::Wait,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<retirement_core::Wait> {
        self.inner.park(id, lease, wait, note, now).await
    }
    async fn release_until(
        &self,
        id: RetirementId,
        lease: Option<&Lease>,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.inner.release_until(id, lease, until, now).await
    }
    async fn wait_of(&self, id: RetirementId) -> Result<Option<retirement_core::Wait>> {
        self.inner.wait_of(id).await
    }
    async fn waits(&self) -> Result<Vec<(RetirementId, retirement_core::Wait)>> {
        self.inner.waits().await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_whose_acknowledgement_was_lost_is_not_an_error() {
    let (table, pipeline) = Pipeline::six_stage_example();
    let names: Vec<String> = table.names().map(str::to_owned).collect();
    let world = crate::support::lms_world(&names).await;
    let ids = RetiredIdConfig::new(vec!["salt".into()]).unwrap();
    let learner = world
        .store
        .enqueue(
            NewRetirement::new(
                OriginalIdentity {
                    username: "Ack.Learner".into(),
                    email: "ack@example.org".into(),
                    name: "Ack Learner".into(),
                },
                Some(42),
                &ids,
            ),
            Utc::now() - TimeDelta::days(30),
        )
        .await
        .unwrap();
    // A middle state, a working state, and the end state (whose write also ends the lease,
    // so the refused retry is a lost lease rather than an earlier state).
    let lose: HashSet<String> = ["FORUMS_COMPLETE", "RETIRING_LMS", "COMPLETE"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let store = Arc::new(AckLosing {
        inner: world.store.clone(),
        lose: Mutex::new(lose),
    });
    let steps = Arc::new(Steps::new(world.clients.clone(), None, 1));
    let runner = Runner::new(
        store.clone(),
        steps,
        Arc::new(pipeline),
        RunOptions {
            store_retry: RetryPolicy {
                budget: std::time::Duration::from_secs(5),
                ..retirement_http::runtime::default_store_retry()
            },
            // A failing step must fail this test quickly, not retry for tubular's 10 minutes.
            driver: DriverOptions {
                retry: RetryPolicy {
                    budget: std::time::Duration::from_secs(1),
                    ..RetryPolicy::default()
                },
                ..DriverOptions::default()
            },
            ..RunOptions::default()
        },
    );
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let summary = runner.run(stop, Arc::new(NoObserver)).await.unwrap();
    assert!(
        store.lose.lock().unwrap().is_empty(),
        "every acknowledgement was lost once"
    );
    assert_eq!((summary.completed, summary.errored), (1, 0), "{summary:?}");
    let after = world.store.get(learner.id()).await.unwrap();
    assert_eq!(after.current_state(), "COMPLETE");
    assert!(
        after.log().iter().all(|e| !e.to.starts_with("ERRORED")),
        "{:?}",
        after.log()
    );
    // Each stage called once: a lost acknowledgement repeats no step.
    let step_calls = world
        .fake
        .calls()
        .iter()
        .filter(|c| c.body.get("username").is_some())
        .count();
    assert_eq!(step_calls, 6);
}
