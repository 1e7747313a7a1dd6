//! The store scenarios every `RetirementStore` shares (`retirement_store::testkit`), run against
//! the LMS-backed store. The same scenarios run on SQLite, PostgreSQL and MariaDB in
//! retirement-store's suite.
//!
//! The LMS reads its own clock while the scenarios pass `now` to every call, so the store under
//! test here is `LmsStore` behind [`Clocked`], which sets the fake LMS's clock to each call's
//! `now` first. What the scenarios need but the LMS API has not — state sync and enqueue — goes
//! through the `DieselStore` the fake LMS serves from. Not in the shared set, and why: state
//! sync, enqueue and the request ledger (no such LMS calls), lookups by id before a listing (the
//! API is keyed by username), fenced leases and heartbeats (emulated with `modified`; a stale
//! worker is not fenced), one-transaction bulk moves and cleanup, the PII column scan (needs SQL).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use retirement_core::{Actor, LogEntry, Override, Retirement, RetirementId, StateTable, SyncPlan};
use retirement_http::LmsStore;
use retirement_http::fake::FakeClock;
use retirement_store::testkit::{Ctx, scenarios};
use retirement_store::{
    ClaimRequest, Claimed, Lease, MoveTarget, NewRetirement, QueueQuery, Result, RetirementStore,
    StateWindow,
};

/// `LmsStore` with the fake LMS's clock set to each call's `now`.
struct Clocked {
    lms: LmsStore,
    clock: FakeClock,
}

impl Clocked {
    fn at(&self, now: DateTime<Utc>) -> &LmsStore {
        self.clock.set(Some(now));
        &self.lms
    }
}

#[async_trait]
impl RetirementStore for Clocked {
    async fn state_table(&self) -> Result<StateTable> {
        self.lms.state_table().await
    }
    async fn sync_states(&self, desired: &[String], dry_run: bool) -> Result<SyncPlan> {
        self.lms.sync_states(desired, dry_run).await
    }
    async fn enqueue(&self, request: NewRetirement, now: DateTime<Utc>) -> Result<Retirement> {
        self.at(now).enqueue(request, now).await
    }
    async fn was_requested(&self, retired_usernames: &[String]) -> Result<bool> {
        self.lms.was_requested(retired_usernames).await
    }
    async fn get(&self, id: RetirementId) -> Result<Retirement> {
        self.lms.get(id).await
    }
    async fn find_by_username(&self, original_username: &str) -> Result<Retirement> {
        self.lms.find_by_username(original_username).await
    }
    async fn find_by_email(&self, original_email: &str) -> Result<Retirement> {
        self.lms.find_by_email(original_email).await
    }
    async fn queue(&self, query: &QueueQuery, now: DateTime<Utc>) -> Result<Vec<Retirement>> {
        self.at(now).queue(query, now).await
    }
    async fn by_state_and_date(
        &self,
        window: &StateWindow,
        now: DateTime<Utc>,
    ) -> Result<Vec<Retirement>> {
        self.at(now).by_state_and_date(window, now).await
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
        self.at(now)
            .advance(id, lease, new_state, response, actor, now)
            .await
    }
    async fn force(
        &self,
        id: RetirementId,
        to: &str,
        why: &Override,
        now: DateTime<Utc>,
    ) -> Result<Retirement> {
        self.at(now).force(id, to, why, now).await
    }
    async fn bulk_move(
        &self,
        window: &StateWindow,
        target: &MoveTarget,
        why: &Override,
        now: DateTime<Utc>,
    ) -> Result<Vec<(RetirementId, LogEntry)>> {
        self.at(now).bulk_move(window, target, why, now).await
    }
    async fn cancel(&self, id: RetirementId) -> Result<()> {
        self.lms.cancel(id).await
    }
    async fn cleanup(&self, original_usernames: &[String]) -> Result<Vec<Retirement>> {
        self.lms.cleanup(original_usernames).await
    }
    async fn claim(&self, request: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Claimed>> {
        self.at(now).claim(request, now).await
    }
    async fn heartbeat(&self, lease: &Lease, until: DateTime<Utc>) -> Result<Lease> {
        self.lms.heartbeat(lease, until).await
    }
    async fn release(&self, lease: &Lease) -> Result<()> {
        self.lms.release(lease).await
    }
    async fn find_by_user_id(&self, lms_user_id: i64) -> Result<Retirement> {
        self.lms.find_by_user_id(lms_user_id).await
    }
    async fn park(
        &self,
        id: RetirementId,
        lease: Option<&Lease>,
        wait: &retirement_core::Wait,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<retirement_core::Wait> {
        self.lms.park(id, lease, wait, note, now).await
    }
    async fn release_until(
        &self,
        id: RetirementId,
        lease: Option<&Lease>,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.lms.release_until(id, lease, until, now).await
    }
    async fn wait_of(&self, id: RetirementId) -> Result<Option<retirement_core::Wait>> {
        self.lms.wait_of(id).await
    }
    async fn waits(&self) -> Result<Vec<(RetirementId, retirement_core::Wait)>> {
        self.lms.waits().await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lms_backed_store_passes_the_shared_store_scenarios() {
    let mut failures = Vec::new();
    let all = scenarios();
    assert!(all.len() >= 7, "the shared set shrank: {}", all.len());
    for scenario in all {
        let world = crate::support::lms_world(&[]).await;
        let store = Arc::new(Clocked {
            lms: LmsStore::new(world.clients.clone()).unwrap(),
            clock: world.fake.clock(),
        });
        let ctx = Ctx {
            store,
            setup: world.store.clone(),
        };
        if let Err(e) = tokio::spawn((scenario.run)(ctx)).await {
            failures.push(format!("{}: {e}", scenario.name));
        }
    }
    assert!(
        failures.is_empty(),
        "failed on the LMS-backed store: {failures:#?}"
    );
}
