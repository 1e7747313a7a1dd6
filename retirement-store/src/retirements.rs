//! The store trait the driver and admin commands use, and its argument types.
//!
//! [`crate::DieselStore`] implements it over SQL; `retirement-http` implements it over a real
//! Open edX LMS. Callers hold `Arc<dyn RetirementStore>` and never see SQL.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use retirement_core::{
    Actor, LogEntry, OriginalIdentity, Override, PENDING, Pipeline, RetiredIdConfig, Retirement,
    RetirementId, StateTable, SyncPlan, Wait,
};

use crate::error::Result;

/// A learner to enqueue: the originals plus their hashed identifiers.
#[derive(Debug, Clone)]
pub struct NewRetirement {
    /// The LMS user id, when known.
    pub lms_user_id: Option<i64>,
    /// The originals (PII; `Debug` redacts them).
    pub original: OriginalIdentity,
    /// The hashed username.
    pub retired_username: String,
    /// The hashed email.
    pub retired_email: String,
}

impl NewRetirement {
    /// Hashes the originals with the newest salt, as upstream's `create_retirement` does.
    pub fn new(
        original: OriginalIdentity,
        lms_user_id: Option<i64>,
        ids: &RetiredIdConfig,
    ) -> NewRetirement {
        NewRetirement {
            lms_user_id,
            retired_username: ids.retired_username(&original.username),
            retired_email: ids.retired_email(&original.email),
            original,
        }
    }
}

/// A queue listing (upstream's `retirement_queue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueQuery {
    /// The states to list; all must exist, none repeated.
    pub states: Vec<String>,
    /// Only learners requested strictly more than this many days ago.
    pub cool_off_days: i64,
    /// At most this many, lowest ids first.
    pub limit: Option<i64>,
}

/// A window of learners in one state, by the day they were requested (UTC, both days
/// included), as upstream's `retirements_by_status_and_date`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWindow {
    /// The state.
    pub state: String,
    /// The first day.
    pub start: NaiveDate,
    /// The last day (today or earlier, not before `start`).
    pub end: NaiveDate,
}

/// Where a bulk move sends each learner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveTarget {
    /// To this state (e.g. COMPLETE → PENDING to rerun every stage).
    To(String),
    /// Back to where the driver can resume (see `Retirement::rewind`).
    Rewind,
}

/// A worker's lease on one learner. Every write the worker makes carries it; a write whose
/// attempt no longer matches fails with [`crate::StoreError::LeaseLost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The learner.
    pub retirement_id: RetirementId,
    /// Who holds it (a worker id: host and process, never a learner).
    pub owner: String,
    /// The fencing number: raised by every claim and every operator override.
    pub attempt: i64,
    /// When it runs out unless extended by a heartbeat.
    pub expires: DateTime<Utc>,
}

/// What to claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The worker's id.
    pub owner: String,
    /// At most this many learners.
    pub limit: i64,
    /// The lease length.
    pub lease_for: TimeDelta,
    /// PENDING learners are claimable only after this many days.
    pub cool_off_days: i64,
    /// States a driver starts from: PENDING and every `*_COMPLETE` of the pipeline.
    pub resume_states: Vec<String>,
    /// The pipeline's working states: claimable only when their lease expired (or never
    /// existed), meaning the worker that was in the middle of the step is gone.
    pub working_states: Vec<String>,
}

impl ClaimRequest {
    /// The claim for `pipeline`: its queue states and working states.
    pub fn for_pipeline(
        pipeline: &Pipeline,
        owner: impl Into<String>,
        limit: i64,
        lease_for: TimeDelta,
        cool_off_days: i64,
    ) -> ClaimRequest {
        ClaimRequest {
            owner: owner.into(),
            limit,
            lease_for,
            cool_off_days,
            resume_states: pipeline
                .queue_states()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            working_states: pipeline
                .stages()
                .iter()
                .map(|s| s.working_state.clone())
                .collect(),
        }
    }

    pub(crate) fn other_states(&self) -> Vec<String> {
        self.resume_states
            .iter()
            .chain(&self.working_states)
            .filter(|s| s.as_str() != PENDING)
            .cloned()
            .collect()
    }
}

/// One claimed learner.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The record, without its log.
    pub retirement: Retirement,
    /// The lease to carry on every write.
    pub lease: Lease,
    /// The learner was in a working state: the worker before us died mid-step, so the step
    /// must be run again (`OnWorkingState::Resume`).
    pub resumes_working_state: bool,
}

/// Persistence for retirements, shared by the driver and the admin commands.
///
/// Every method is one transaction and enforces `retirement-core`'s rules. Listings and claims
/// return records without their log (as upstream's API leaves `responses` out); `get`,
/// `find_by_username` and `cleanup` include it.
#[async_trait]
pub trait RetirementStore: Send + Sync {
    /// The state table.
    async fn state_table(&self) -> Result<StateTable>;

    /// Makes the state table mirror `desired` (upstream's `populate_retirement_states`) and
    /// returns the plan; with `dry_run`, only plans. Refused while any learner is being
    /// processed.
    async fn sync_states(&self, desired: &[String], dry_run: bool) -> Result<SyncPlan>;

    /// Queues a learner in the initial state and records the ledger row.
    async fn enqueue(&self, request: NewRetirement, now: DateTime<Utc>) -> Result<Retirement>;

    /// Whether any of these hashed usernames (one per historical salt) was ever queued, even
    /// if its status was since cleaned up.
    async fn was_requested(&self, retired_usernames: &[String]) -> Result<bool>;

    /// One retirement with its log.
    async fn get(&self, id: RetirementId) -> Result<Retirement>;

    /// One retirement by original username, exact case, with its log.
    async fn find_by_username(&self, original_username: &str) -> Result<Retirement>;

    /// One retirement by original email, any case (upstream's cancel command lower-cases the
    /// address it is given), with its log. Several case-variant matches are refused.
    async fn find_by_email(&self, original_email: &str) -> Result<Retirement>;

    /// One retirement by the learner's LMS user id, with its log.
    async fn find_by_user_id(&self, lms_user_id: i64) -> Result<Retirement>;

    /// The queue listing.
    async fn queue(&self, query: &QueueQuery, now: DateTime<Utc>) -> Result<Vec<Retirement>>;

    /// Learners in one state requested within a window of days.
    async fn by_state_and_date(
        &self,
        window: &StateWindow,
        now: DateTime<Utc>,
    ) -> Result<Vec<Retirement>>;

    /// A validated forward move (upstream's non-forced `update_retirement_status`). A worker
    /// passes its lease; without one the move is refused while a worker holds a live lease.
    /// A move to an end state (COMPLETE, ERRORED, ABORTED) also ends the lease.
    async fn advance(
        &self,
        id: RetirementId,
        lease: Option<&Lease>,
        new_state: &str,
        response: &str,
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<LogEntry>;

    /// An audited operator override to any known state. It ends any lease: the worker holding
    /// it gets "lease lost" on its next write.
    async fn force(
        &self,
        id: RetirementId,
        to: &str,
        why: &Override,
        now: DateTime<Utc>,
    ) -> Result<Retirement>;

    /// Moves every learner of a window at once, all or nothing, ending their leases.
    async fn bulk_move(
        &self,
        window: &StateWindow,
        target: &MoveTarget,
        why: &Override,
        now: DateTime<Utc>,
    ) -> Result<Vec<(RetirementId, LogEntry)>>;

    /// Cancels a PENDING retirement: deletes its status, log and ledger row.
    async fn cancel(&self, id: RetirementId) -> Result<()>;

    /// Removes COMPLETE retirements by original username, all or nothing: originals are
    /// overwritten with `redacted`, then status and log rows deleted. Returns the records as
    /// they were (originals and log included) for the caller to archive. Ledger rows stay.
    async fn cleanup(&self, original_usernames: &[String]) -> Result<Vec<Retirement>>;

    /// Claims up to `limit` actionable learners, lowest id first, for `request.owner`. Fewer
    /// than `limit` means nothing more is claimable now: the runner stops claiming on it, so a
    /// store whose candidates can be lost to other workers mid-claim must look again rather
    /// than return short (the LMS store with a shared lease table does).
    ///
    /// ```
    /// # use retirement_core::{OriginalIdentity, Pipeline, RetiredIdConfig, SIX_STAGE_STATES};
    /// # use retirement_store::{DieselStore, NewRetirement, StoreOptions};
    /// use chrono::{DateTime, TimeDelta, Utc};
    /// use retirement_store::{ClaimRequest, RetirementStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = DieselStore::open("sqlite::memory:", &StoreOptions::default()).await?;
    /// # store.migrate().await?;
    /// # let states: Vec<String> = SIX_STAGE_STATES.iter().map(|s| s.to_string()).collect();
    /// # store.sync_states(&states, false).await?;
    /// # let ids = RetiredIdConfig::new(vec!["salt".into()])?;
    /// let requested: DateTime<Utc> = "2026-11-01T10:00:00Z".parse()?;
    /// # let original = OriginalIdentity { username: "ada".into(), email: "ada@example.org".into(), name: "Ada".into() };
    /// # store.enqueue(NewRetirement::new(original, None, &ids), requested).await?;
    /// let (_, pipeline) = Pipeline::six_stage_example();
    /// let request = ClaimRequest::for_pipeline(&pipeline, "worker-1", 10, TimeDelta::minutes(5), 7);
    /// // Within the 7-day cool-off, a PENDING learner is not claimable…
    /// assert!(store.claim(&request, requested + TimeDelta::days(3)).await?.is_empty());
    /// // …after it, it is, with a lease until five minutes later.
    /// let now = requested + TimeDelta::days(8);
    /// let claimed = store.claim(&request, now).await?;
    /// assert_eq!(claimed[0].lease.owner, "worker-1");
    /// assert_eq!(claimed[0].lease.expires, now + TimeDelta::minutes(5));
    /// assert!(!claimed[0].resumes_working_state);
    /// # Ok(())
    /// # }
    /// ```
    async fn claim(&self, request: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Claimed>>;

    /// Extends a lease to `until`.
    async fn heartbeat(&self, lease: &Lease, until: DateTime<Utc>) -> Result<Lease>;

    /// Gives a lease up (after the learner reached an end state, or on shutdown).
    async fn release(&self, lease: &Lease) -> Result<()>;

    /// Parks a learner in its working state (issue 15): records `wait` and appends `note` to
    /// its log without moving it, in one write fenced by `lease` (without one, refused while
    /// a worker holds a live lease, as `advance`). Returns the wait as stored, whose `since`
    /// is the record's new `modified`.
    async fn park(
        &self,
        id: RetirementId,
        lease: Option<&Lease>,
        wait: &Wait,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Wait>;

    /// Gives `lease` up until `until` (`None`: until an operator moves the learner): the
    /// learner is not claimable before then. Without a lease (`retire learner`), the same for
    /// a learner nobody holds.
    async fn release_until(
        &self,
        id: RetirementId,
        lease: Option<&Lease>,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// The stored wait of a learner, if any. It may no longer apply
    /// ([`retirement_core::Wait::applies_to`]).
    async fn wait_of(&self, id: RetirementId) -> Result<Option<Wait>>;

    /// Every stored wait, by retirement id (some may no longer apply).
    async fn waits(&self) -> Result<Vec<(RetirementId, Wait)>>;
}
