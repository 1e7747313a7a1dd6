//! [`Console`]: what an operator can see and do, over any store — the learners per state,
//! the statutory clock, one learner's timeline, and the audited actions — with no HTTP in
//! sight. The pages and the JSON API render what it returns; the CLI's `retire extend` calls
//! it too, so an action is audited the same way wherever it comes from.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use retirement_core::{
    Actor, CoreError, Deadline, LogEntry, Override, Pipeline, Position, Regime, Retirement,
    RetirementId, StageKind, Wait,
};
use retirement_store::{
    ActionKind, Journal, OperatorAction, QueueQuery, RetirementStore, RunRecord, StoreError,
};
use serde::Serialize;

use crate::clock::Clock;
use crate::error::HttpError;

/// Learners per page of the learners list.
pub const PAGE_SIZE: usize = 50;

/// Learners due within this many days are "due soon" on the overview and in alerts.
pub const DUE_SOON_DAYS: i64 = 7;

/// The console's view of one deployment.
#[derive(Clone)]
pub struct Console {
    /// The status store (SQL or the LMS).
    pub store: Arc<dyn RetirementStore>,
    /// Where extensions, reveals and runs are recorded (`None`: the LMS without a
    /// `lease_store`; those actions are unavailable).
    pub journal: Option<Arc<dyn Journal>>,
    /// The pipeline, with stage kinds.
    pub pipeline: Arc<Pipeline>,
    /// The statutory clock.
    pub regime: Regime,
    /// The wall clock.
    pub clock: Arc<dyn Clock>,
    /// A learner in a working state with no write for longer than this has lost its worker
    /// (the runtime's lease length).
    pub stuck_after: TimeDelta,
    /// What the store is, for the page header (`sqlite`, `postgres`, `mysql`, `lms`).
    pub store_kind: String,
}

/// One learner as the lists show it: no original username, email or name.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LearnerRow {
    /// The retirement id.
    pub retirement_id: i64,
    /// The retired (hashed) username.
    pub retired_username: String,
    /// The current state.
    pub state: String,
    /// The state before.
    pub last_state: String,
    /// When the request was received.
    pub requested: DateTime<Utc>,
    /// The last write.
    pub modified: DateTime<Utc>,
    /// The statutory due date (`None` once COMPLETE or ABORTED).
    pub due: Option<DateTime<Utc>>,
    /// Days left until `due` (negative: overdue).
    pub days_left: Option<i64>,
    /// Past the due moment.
    pub overdue: bool,
    /// Deadline extensions recorded.
    pub extensions: u32,
    /// What a parked learner waits on.
    pub waiting: Option<String>,
    /// In a working state with no write for longer than a lease, and not parked: its worker
    /// died; the next run resumes it.
    pub stuck: bool,
}

/// The overview page.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// Learners per state, in pipeline order, zero counts included.
    pub by_state: Vec<(String, usize)>,
    /// Open requests (not COMPLETE or ABORTED).
    pub open: usize,
    /// ERRORED learners.
    pub errored: usize,
    /// Working learners whose worker died.
    pub stuck: usize,
    /// Learners parked on a vendor job or a person.
    pub waiting: usize,
    /// Open requests past their due date.
    pub overdue: usize,
    /// Open requests due within [`DUE_SOON_DAYS`] (not yet overdue).
    pub due_soon: usize,
    /// Age in seconds of the oldest PENDING request.
    pub oldest_pending_seconds: Option<i64>,
    /// The last runs, newest first (empty without a journal).
    pub runs: Vec<RunRecord>,
    /// The statutory regime.
    pub regime: String,
}

/// How the learners list is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Soonest due first (the default: what a privacy officer asks first).
    #[default]
    Due,
    /// Oldest request first.
    Requested,
    /// Lowest retirement id first.
    Id,
    /// By state name, then id.
    State,
}

/// The learners list's filter (every field optional).
#[derive(Debug, Clone, Default, serde::Deserialize, Serialize)]
pub struct Filter {
    /// Only this state.
    pub state: Option<String>,
    /// Requested on or after this day.
    pub from: Option<NaiveDate>,
    /// Requested on or before this day.
    pub to: Option<NaiveDate>,
    /// At most this many days left (0: due today or overdue).
    pub max_days_left: Option<i64>,
    /// Only requests past their due moment.
    pub overdue: Option<bool>,
    /// The order.
    #[serde(default)]
    pub sort: Sort,
    /// The page, from 1.
    pub page: Option<usize>,
}

/// One page of learners.
#[derive(Debug, Clone, Serialize)]
pub struct LearnerPage {
    /// The rows of this page.
    pub rows: Vec<LearnerRow>,
    /// How many matched in all.
    pub total: usize,
    /// This page, from 1.
    pub page: usize,
    /// How many pages.
    pub pages: usize,
}

/// An action on one learner, as the learner page offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionName {
    /// Move to any state.
    Reset,
    /// Back to where the driver resumes the failed stage (ERRORED).
    Retry,
    /// COMPLETE back to PENDING: every stage again.
    Rerun,
    /// Delete a PENDING request.
    Cancel,
    /// A person's manual stage is done.
    Done,
    /// Extend the statutory deadline.
    Extend,
    /// Show the original email (logged).
    Reveal,
}

impl ActionName {
    /// Every action, in page order.
    pub const ALL: [ActionName; 7] = [
        ActionName::Retry,
        ActionName::Reset,
        ActionName::Rerun,
        ActionName::Done,
        ActionName::Cancel,
        ActionName::Extend,
        ActionName::Reveal,
    ];

    /// The route segment and form name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionName::Reset => "reset",
            ActionName::Retry => "retry",
            ActionName::Rerun => "rerun",
            ActionName::Cancel => "cancel",
            ActionName::Done => "done",
            ActionName::Extend => "extend",
            ActionName::Reveal => "reveal",
        }
    }
}

/// Whether an action is open to a learner, and why not.
#[derive(Debug, Clone, Serialize)]
pub struct Availability {
    /// The action.
    pub action: ActionName,
    /// `None`: available; otherwise why not.
    pub unavailable: Option<String>,
}

/// One line of a learner's timeline: a log entry or a journal action.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who: `request`, `driver` or `operator:NAME`.
    pub actor: String,
    /// What: `A -> B`, `extend`, `reveal`.
    pub what: String,
    /// The text (a service's answer, an operator's reason).
    pub text: String,
}

/// One learner's page.
#[derive(Debug, Clone, Serialize)]
pub struct LearnerView {
    /// The summary row.
    pub row: LearnerRow,
    /// The LMS user id, if known.
    pub lms_user_id: Option<i64>,
    /// The retired email.
    pub retired_email: String,
    /// Log and journal, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// What a parked learner waits on.
    pub wait: Option<Wait>,
    /// Each action and whether it is open.
    pub actions: Vec<Availability>,
    /// The states a reset may move to.
    pub reset_targets: Vec<String>,
}

/// What a bulk retry did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct BulkResult {
    /// Learners moved, with the state each went to.
    pub moved: Vec<(i64, String)>,
    /// Learners refused, with why.
    pub refused: Vec<(i64, String)>,
}

fn refused(message: impl Into<String>) -> HttpError {
    HttpError::Refused(message.into())
}

fn is_finished(state: &str) -> bool {
    state == retirement_core::COMPLETE || state == retirement_core::ABORTED
}

impl Console {
    /// Now, by the console's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Every learner in a state of the pipeline (listings carry no log).
    pub async fn all(&self) -> Result<Vec<Retirement>, HttpError> {
        let query = QueueQuery {
            states: self
                .pipeline
                .all_states()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            cool_off_days: 0,
            limit: None,
        };
        Ok(self.store.queue(&query, self.now()).await?)
    }

    async fn extensions(&self) -> Result<BTreeMap<RetirementId, u32>, HttpError> {
        match &self.journal {
            Some(journal) => Ok(journal.extensions().await?),
            None => Ok(BTreeMap::new()),
        }
    }

    /// The statutory deadline of `r` with `extensions`, now.
    pub fn deadline(&self, r: &Retirement, extensions: u32) -> Deadline {
        Deadline::at(self.regime, r.created(), extensions, self.now())
    }

    fn row(&self, r: &Retirement, extensions: u32, wait: Option<&Wait>) -> LearnerRow {
        let now = self.now();
        let finished = is_finished(r.current_state());
        let deadline = (!finished).then(|| self.deadline(r, extensions));
        let wait = wait.filter(|w| w.applies_to(r));
        let working = matches!(
            self.pipeline.position(r.current_state()),
            Position::Working(_)
        );
        LearnerRow {
            retirement_id: r.id().0,
            retired_username: r.retired_username().to_owned(),
            state: r.current_state().to_owned(),
            last_state: r.last_state().to_owned(),
            requested: r.created(),
            modified: r.modified(),
            due: deadline.map(|d| d.due),
            days_left: deadline.map(|d| d.days_left),
            overdue: deadline.is_some_and(|d| d.overdue),
            extensions,
            waiting: wait.map(ToString::to_string),
            stuck: working && wait.is_none() && now - r.modified() > self.stuck_after,
        }
    }

    /// Every learner as a row.
    pub async fn rows(&self) -> Result<Vec<LearnerRow>, HttpError> {
        let learners = self.all().await?;
        let extensions = self.extensions().await?;
        let waits: BTreeMap<RetirementId, Wait> = self.store.waits().await?.into_iter().collect();
        Ok(learners
            .iter()
            .map(|r| {
                self.row(
                    r,
                    extensions.get(&r.id()).copied().unwrap_or(0),
                    waits.get(&r.id()),
                )
            })
            .collect())
    }

    /// The overview.
    pub async fn overview(&self) -> Result<Overview, HttpError> {
        let rows = self.rows().await?;
        let now = self.now();
        let mut by_state: Vec<(String, usize)> = self
            .pipeline
            .all_states()
            .into_iter()
            .map(|s| (s.to_owned(), 0))
            .collect();
        for row in &rows {
            match by_state.iter_mut().find(|(s, _)| *s == row.state) {
                Some((_, n)) => *n += 1,
                None => by_state.push((row.state.clone(), 1)),
            }
        }
        let open: Vec<&LearnerRow> = rows.iter().filter(|r| r.due.is_some()).collect();
        let runs = match &self.journal {
            Some(journal) => journal.recent_runs(10).await?,
            None => Vec::new(),
        };
        Ok(Overview {
            open: open.len(),
            errored: rows
                .iter()
                .filter(|r| r.state == retirement_core::ERRORED)
                .count(),
            stuck: rows.iter().filter(|r| r.stuck).count(),
            waiting: rows.iter().filter(|r| r.waiting.is_some()).count(),
            overdue: open.iter().filter(|r| r.overdue).count(),
            due_soon: open
                .iter()
                .filter(|r| !r.overdue && r.days_left.is_some_and(|d| d <= DUE_SOON_DAYS))
                .count(),
            oldest_pending_seconds: rows
                .iter()
                .filter(|r| r.state == retirement_core::PENDING)
                .map(|r| (now - r.requested).num_seconds())
                .max(),
            by_state,
            runs,
            regime: self.regime.to_string(),
        })
    }

    /// One page of the learners that match `filter`.
    pub async fn learners(&self, filter: &Filter) -> Result<LearnerPage, HttpError> {
        let mut rows: Vec<LearnerRow> = self
            .rows()
            .await?
            .into_iter()
            .filter(|r| filter.state.as_ref().is_none_or(|s| *s == r.state))
            .filter(|r| filter.from.is_none_or(|d| r.requested.date_naive() >= d))
            .filter(|r| filter.to.is_none_or(|d| r.requested.date_naive() <= d))
            .filter(|r| filter.overdue.is_none_or(|o| r.overdue == o))
            .filter(|r| {
                filter
                    .max_days_left
                    .is_none_or(|max| r.days_left.is_some_and(|d| d <= max))
            })
            .collect();
        match filter.sort {
            Sort::Due => rows.sort_by_key(|r| (r.due.is_none(), r.due, r.retirement_id)),
            Sort::Requested => rows.sort_by_key(|r| (r.requested, r.retirement_id)),
            Sort::Id => rows.sort_by_key(|r| r.retirement_id),
            Sort::State => {
                rows.sort_by(|a, b| (&a.state, a.retirement_id).cmp(&(&b.state, b.retirement_id)))
            }
        }
        let total = rows.len();
        let pages = total.div_ceil(PAGE_SIZE).max(1);
        let page = filter.page.unwrap_or(1).clamp(1, pages);
        let rows = rows
            .into_iter()
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .collect();
        Ok(LearnerPage {
            rows,
            total,
            page,
            pages,
        })
    }

    async fn get(&self, id: RetirementId) -> Result<Retirement, HttpError> {
        match self.store.get(id).await {
            Err(StoreError::NotFound { .. }) => Err(HttpError::NotFound(format!(
                "no retirement {id} in the store"
            ))),
            other => Ok(other?),
        }
    }

    /// The stage whose working state `r` is parked in by hand (a manual stage).
    fn manual_stage(&self, r: &Retirement) -> Option<&retirement_core::Stage> {
        self.pipeline
            .stages()
            .iter()
            .find(|s| s.working_state == r.current_state() && s.kind == StageKind::Manual)
    }

    /// Where a retry of an ERRORED learner resumes: the state before the stage that failed.
    fn retry_target(&self, r: &Retirement) -> Result<String, String> {
        if r.current_state() != retirement_core::ERRORED {
            return Err(format!(
                "only ERRORED learners are retried; this one is in {}",
                r.current_state()
            ));
        }
        let stages = self.pipeline.stages();
        match self.pipeline.position(r.last_state()) {
            Position::Working(0) | Position::Pending => Ok(retirement_core::PENDING.to_owned()),
            Position::Working(i) => Ok(stages[i - 1].complete_state.clone()),
            Position::Complete(i) => Ok(stages[i].complete_state.clone()),
            _ => Err(format!(
                "its last state {} is not a stage of the pipeline: reset it to a state by hand",
                r.last_state()
            )),
        }
    }

    fn availability(&self, r: &Retirement, extensions: u32) -> Vec<Availability> {
        let no_journal = "needs a database to record it in (with store: lms, set lease_store)";
        ActionName::ALL
            .iter()
            .map(|&action| {
                let unavailable = match action {
                    ActionName::Reset => None,
                    ActionName::Retry => self.retry_target(r).err(),
                    ActionName::Rerun => (r.current_state() != retirement_core::COMPLETE)
                        .then(|| "only a COMPLETE learner is rerun".to_owned()),
                    ActionName::Cancel => {
                        (r.current_state() != retirement_core::PENDING).then(|| {
                            format!(
                                "only a PENDING request can be cancelled; this one is in {}",
                                r.current_state()
                            )
                        })
                    }
                    ActionName::Done => self.manual_stage(r).is_none().then(|| {
                        "only a learner waiting in a manual stage is marked done".to_owned()
                    }),
                    ActionName::Extend => {
                        if self.journal.is_none() {
                            Some(no_journal.to_owned())
                        } else if is_finished(r.current_state()) {
                            Some("the request is answered".to_owned())
                        } else {
                            self.regime
                                .max_extensions()
                                .filter(|max| extensions >= *max)
                                .map(|max| {
                                    format!(
                                        "{} allows {max} extension(s); already extended",
                                        self.regime
                                    )
                                })
                        }
                    }
                    ActionName::Reveal => self.journal.is_none().then(|| no_journal.to_owned()),
                };
                Availability {
                    action,
                    unavailable,
                }
            })
            .collect()
    }

    /// One learner with its timeline and actions.
    pub async fn learner(&self, id: RetirementId) -> Result<LearnerView, HttpError> {
        let r = self.get(id).await?;
        let actions = match &self.journal {
            Some(journal) => journal.actions_of(id).await?,
            None => Vec::new(),
        };
        let extensions = actions
            .iter()
            .filter(|a| a.kind == ActionKind::Extend)
            .count() as u32;
        let wait = self.store.wait_of(id).await?.filter(|w| w.applies_to(&r));
        let mut timeline: Vec<TimelineEntry> = r.log().iter().map(timeline_of_log).collect();
        timeline.extend(actions.iter().map(|a| TimelineEntry {
            at: a.at,
            actor: Actor::Operator(a.operator.clone()).to_string(),
            what: a.kind.to_string(),
            text: a.reason.clone(),
        }));
        timeline.sort_by_key(|e| e.at);
        let p = r.parts();
        Ok(LearnerView {
            row: self.row(&r, extensions, wait.as_ref()),
            lms_user_id: p.lms_user_id,
            retired_email: p.retired_email.clone(),
            timeline,
            actions: self.availability(&r, extensions),
            reset_targets: self
                .pipeline
                .all_states()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            wait,
        })
    }

    fn check(&self, r: &Retirement, action: ActionName) -> Result<(), HttpError> {
        let open = self.availability(r, 0);
        match open.iter().find(|a| a.action == action) {
            Some(Availability {
                unavailable: Some(why),
                ..
            }) => Err(refused(format!("{}: {why}", action.as_str()))),
            _ => Ok(()),
        }
    }

    fn audited(why: &Override) -> Result<(), HttpError> {
        if why.operator.trim().is_empty() {
            return Err(
                StoreError::Core(CoreError::MissingAuditField { field: "operator" }).into(),
            );
        }
        if why.reason.trim().is_empty() {
            return Err(StoreError::Core(CoreError::MissingAuditField { field: "reason" }).into());
        }
        Ok(())
    }

    /// Moves a learner to `to`, audited (`retire reset`).
    pub async fn reset(
        &self,
        id: RetirementId,
        to: &str,
        why: &Override,
    ) -> Result<Retirement, HttpError> {
        Self::audited(why)?;
        Ok(self.store.force(id, to, why, self.now()).await?)
    }

    /// Retries an ERRORED learner from the stage that failed, audited.
    pub async fn retry(&self, id: RetirementId, why: &Override) -> Result<Retirement, HttpError> {
        Self::audited(why)?;
        let r = self.get(id).await?;
        let to = self.retry_target(&r).map_err(refused)?;
        Ok(self.store.force(id, &to, why, self.now()).await?)
    }

    /// Sends a COMPLETE learner back to PENDING, audited.
    pub async fn rerun(&self, id: RetirementId, why: &Override) -> Result<Retirement, HttpError> {
        Self::audited(why)?;
        let r = self.get(id).await?;
        self.check(&r, ActionName::Rerun)?;
        Ok(self
            .store
            .force(id, retirement_core::PENDING, why, self.now())
            .await?)
    }

    /// Cancels a PENDING request. The store deletes it, log included; the journal then
    /// records who cancelled it and why (the one trace left: ids, a name and a reason).
    pub async fn cancel(&self, id: RetirementId, why: &Override) -> Result<(), HttpError> {
        Self::audited(why)?;
        let r = self.get(id).await?;
        self.check(&r, ActionName::Cancel)?;
        self.store.cancel(id).await?;
        if let Some(journal) = &self.journal
            && let Err(e) = journal
                .record_action(&OperatorAction {
                    retirement_id: id,
                    at: self.now(),
                    operator: why.operator.clone(),
                    kind: ActionKind::Cancel,
                    reason: why.reason.clone(),
                })
                .await
        {
            tracing::warn!(retirement_id = id.0, error = %e, "the cancellation could not be journalled");
        }
        Ok(())
    }

    /// Marks the manual stage a learner waits in as done, audited (`retire done`).
    pub async fn done(&self, id: RetirementId, why: &Override) -> Result<Retirement, HttpError> {
        Self::audited(why)?;
        let r = self.get(id).await?;
        let stage = self.manual_stage(&r).ok_or_else(|| {
            refused(format!(
                "done: {} is not a manual stage's working state",
                r.current_state()
            ))
        })?;
        let to = stage.complete_state.clone();
        Ok(self.store.force(id, &to, why, self.now()).await?)
    }

    /// Extends a learner's statutory deadline by one period of the regime, audited; returns
    /// the new deadline.
    pub async fn extend(&self, id: RetirementId, why: &Override) -> Result<Deadline, HttpError> {
        Self::audited(why)?;
        let journal = self.journal.as_ref().ok_or_else(|| {
            refused("extend: needs a database to record it in (with store: lms, set lease_store)")
        })?;
        let r = self.get(id).await?;
        let before = journal
            .actions_of(id)
            .await?
            .iter()
            .filter(|a| a.kind == ActionKind::Extend)
            .count() as u32;
        let open = self.availability(&r, before);
        if let Some(why_not) = open
            .iter()
            .find(|a| a.action == ActionName::Extend)
            .and_then(|a| a.unavailable.clone())
        {
            return Err(refused(format!("extend: {why_not}")));
        }
        journal
            .record_action(&OperatorAction {
                retirement_id: id,
                at: self.now(),
                operator: why.operator.clone(),
                kind: ActionKind::Extend,
                reason: why.reason.clone(),
            })
            .await?;
        Ok(self.deadline(&r, before + 1))
    }

    /// The learner's original email, after recording who asked and why.
    pub async fn reveal(&self, id: RetirementId, why: &Override) -> Result<String, HttpError> {
        Self::audited(why)?;
        let journal = self.journal.as_ref().ok_or_else(|| {
            refused("reveal: needs a database to record it in (with store: lms, set lease_store)")
        })?;
        let r = self.get(id).await?;
        journal
            .record_action(&OperatorAction {
                retirement_id: id,
                at: self.now(),
                operator: why.operator.clone(),
                kind: ActionKind::Reveal,
                reason: why.reason.clone(),
            })
            .await?;
        Ok(r.original().email.clone())
    }

    /// Retries each ERRORED learner of `ids` from its failed stage; the others are refused
    /// one by one, and the rest still move.
    pub async fn retry_all(&self, ids: &[RetirementId], why: &Override) -> BulkResult {
        let mut result = BulkResult::default();
        if let Err(e) = Self::audited(why) {
            result.refused = ids.iter().map(|id| (id.0, e.to_string())).collect();
            return result;
        }
        for &id in ids {
            match self.retry(id, why).await {
                Ok(r) => result.moved.push((id.0, r.current_state().to_owned())),
                Err(e) => result.refused.push((id.0, e.to_string())),
            }
        }
        result
    }
}

fn timeline_of_log(entry: &LogEntry) -> TimelineEntry {
    TimelineEntry {
        at: entry.at,
        actor: entry.actor.to_string(),
        what: match &entry.from {
            Some(from) if *from == entry.to => format!("{} (note)", entry.to),
            Some(from) => format!("{from} -> {}", entry.to),
            None => format!("created in {}", entry.to),
        },
        text: entry.text.clone(),
    }
}
