//! [`Journal`]: `retirement_actions` and `retirement_runs`, what operators did that is not a
//! state change (a statutory deadline extended, an original email revealed, a request
//! cancelled, each with the operator's name and reason) and what each `retire run` did. A SQL store is its own journal;
//! the LMS store keeps its journal in the lease database, as it keeps its leases and waits.
//! Nothing here names a learner but by retirement id.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;
use retirement_core::RetirementId;

use crate::diesel_store::{DieselStore, with_conn};
use crate::error::{Result, StoreError};
use crate::rows::{from_micros, micros};
use crate::schema::{retirement_actions as a, retirement_runs as r};

/// What an operator did besides moving a learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKind {
    /// The statutory deadline was extended by one period of the regime.
    Extend,
    /// The learner's original email was shown to the operator.
    Reveal,
    /// The PENDING request was cancelled (recorded after the request and its log are gone:
    /// the only trace of who cancelled it and why).
    Cancel,
    /// `retire cleanup` is about to archive the learner to the object named in the reason
    /// (written before the upload, so a re-run after a crash finds the object and neither
    /// loses nor duplicates the learner).
    Archived,
}

impl ActionKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Extend => "extend",
            ActionKind::Reveal => "reveal",
            ActionKind::Cancel => "cancel",
            ActionKind::Archived => "archived",
        }
    }

    fn parse(text: &str) -> Result<ActionKind> {
        match text {
            "extend" => Ok(ActionKind::Extend),
            "reveal" => Ok(ActionKind::Reveal),
            "cancel" => Ok(ActionKind::Cancel),
            "archived" => Ok(ActionKind::Archived),
            other => Err(StoreError::InvalidArgument(format!(
                "retirement_actions: unknown kind {other:?}"
            ))),
        }
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One journal entry about one learner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorAction {
    /// The learner.
    pub retirement_id: RetirementId,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (the operator's name, from the CLI's `--operator` or the console's session).
    pub operator: String,
    /// What.
    pub kind: ActionKind,
    /// Why, as the operator gave it (required, never empty).
    pub reason: String,
}

/// What one `retire run` did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRecord {
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub ended: DateTime<Utc>,
    /// The worker name (host and process).
    pub worker: String,
    /// How it ended: `ok`, `errored` (some learners ERRORED), `interrupted`, `refused` (the
    /// user-count threshold) or `failed`.
    pub outcome: String,
    /// Learners claimed.
    pub claimed: u64,
    /// Learners that reached COMPLETE.
    pub completed: u64,
    /// Learners that reached ERRORED.
    pub errored: u64,
    /// Learners parked on a vendor job or a person.
    pub waiting: u64,
    /// Learners left for a later run (a service down, a lease lost).
    pub deferred: u64,
}

/// The operator journal. See the module docs.
#[async_trait]
pub trait Journal: Send + Sync {
    /// Records one action. The caller has checked that the learner exists.
    async fn record_action(&self, action: &OperatorAction) -> Result<()>;

    /// A learner's actions, oldest first.
    async fn actions_of(&self, id: RetirementId) -> Result<Vec<OperatorAction>>;

    /// How many times each learner's deadline was extended (learners never extended are
    /// absent).
    async fn extensions(&self) -> Result<BTreeMap<RetirementId, u32>>;

    /// Records a finished run.
    async fn record_run(&self, run: &RunRecord) -> Result<()>;

    /// The last `limit` runs, newest first.
    async fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>>;
}

fn count(table: &str, value: i64) -> Result<u64> {
    u64::try_from(value)
        .map_err(|_| StoreError::InvalidArgument(format!("{table}: negative count {value}")))
}

#[async_trait]
impl Journal for DieselStore {
    async fn record_action(&self, action: &OperatorAction) -> Result<()> {
        if action.reason.trim().is_empty() || action.operator.trim().is_empty() {
            return Err(StoreError::InvalidArgument(
                "an operator action needs an operator and a reason".into(),
            ));
        }
        with_conn!(self, c => {
            diesel::insert_into(a::table)
                .values((
                    a::retirement_id.eq(action.retirement_id.0),
                    a::at.eq(micros(action.at)),
                    a::operator.eq(&action.operator),
                    a::kind.eq(action.kind.as_str()),
                    a::reason.eq(&action.reason),
                ))
                .execute(c)
                .await?
        });
        Ok(())
    }

    async fn actions_of(&self, id: RetirementId) -> Result<Vec<OperatorAction>> {
        let rows: Vec<(i64, String, String, String)> = with_conn!(self, c => {
            a::table
                .filter(a::retirement_id.eq(id.0))
                .order(a::id.asc())
                .select((a::at, a::operator, a::kind, a::reason))
                .load(c)
                .await?
        });
        rows.into_iter()
            .map(|(at, operator, kind, reason)| {
                Ok(OperatorAction {
                    retirement_id: id,
                    at: from_micros("retirement_actions", at)?,
                    operator,
                    kind: ActionKind::parse(&kind)?,
                    reason,
                })
            })
            .collect()
    }

    async fn extensions(&self) -> Result<BTreeMap<RetirementId, u32>> {
        let ids: Vec<i64> = with_conn!(self, c => {
            a::table
                .filter(a::kind.eq(ActionKind::Extend.as_str()))
                .select(a::retirement_id)
                .load(c)
                .await?
        });
        let mut counts = BTreeMap::new();
        for id in ids {
            *counts.entry(RetirementId(id)).or_insert(0) += 1;
        }
        Ok(counts)
    }

    async fn record_run(&self, run: &RunRecord) -> Result<()> {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        with_conn!(self, c => {
            diesel::insert_into(r::table)
                .values((
                    r::started.eq(micros(run.started)),
                    r::ended.eq(micros(run.ended)),
                    r::worker.eq(&run.worker),
                    r::outcome.eq(&run.outcome),
                    r::claimed.eq(n(run.claimed)),
                    r::completed.eq(n(run.completed)),
                    r::errored.eq(n(run.errored)),
                    r::waiting.eq(n(run.waiting)),
                    r::deferred.eq(n(run.deferred)),
                ))
                .execute(c)
                .await?
        });
        Ok(())
    }

    async fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        type Row = (i64, i64, String, String, i64, i64, i64, i64, i64);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<Row> = with_conn!(self, c => {
            r::table
                .order(r::id.desc())
                .limit(limit)
                .select((
                    r::started,
                    r::ended,
                    r::worker,
                    r::outcome,
                    r::claimed,
                    r::completed,
                    r::errored,
                    r::waiting,
                    r::deferred,
                ))
                .load(c)
                .await?
        });
        rows.into_iter()
            .map(
                |(
                    started,
                    ended,
                    worker,
                    outcome,
                    claimed,
                    completed,
                    errored,
                    waiting,
                    deferred,
                )| {
                    Ok(RunRecord {
                        started: from_micros("retirement_runs", started)?,
                        ended: from_micros("retirement_runs", ended)?,
                        worker,
                        outcome,
                        claimed: count("retirement_runs", claimed)?,
                        completed: count("retirement_runs", completed)?,
                        errored: count("retirement_runs", errored)?,
                        waiting: count("retirement_runs", waiting)?,
                        deferred: count("retirement_runs", deferred)?,
                    })
                },
            )
            .collect()
    }
}
