//! The completion feed (issue 17): which learners finished retiring since a time, with no
//! original username, email or name — for downstream erasure jobs (a data warehouse's own
//! clean-up, say) that must follow the pipeline. Read from the store: a learner is listed
//! while its COMPLETE status exists, so a downstream job polls more often than `retire
//! cleanup` removes statuses (its default cool-off is 37 days).

use chrono::{DateTime, Utc};
use retirement_core::{Pipeline, Position, Retirement};
use retirement_store::{QueueQuery, RetirementStore};
use serde::Serialize;

use crate::error::HttpError;

/// One learner who reached COMPLETE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Completion {
    /// The retirement id.
    pub retirement_id: i64,
    /// The retired (hashed) username: what downstream systems key the learner by.
    pub retired_username: String,
    /// The LMS user id, if known.
    pub lms_user_id: Option<i64>,
    /// When the learner reached COMPLETE.
    pub completed: DateTime<Utc>,
    /// The stages run, in order (`SERVICE operation`), as the log shows them entered.
    pub stages: Vec<String>,
}

impl Completion {
    /// The completion of `r` (with its log) under `pipeline`; `None` unless COMPLETE.
    pub fn of(r: &Retirement, pipeline: &Pipeline) -> Option<Completion> {
        if r.current_state() != retirement_core::COMPLETE {
            return None;
        }
        let completed = r
            .log()
            .iter()
            .rev()
            .find(|e| e.to == retirement_core::COMPLETE || e.to.starts_with("COMPLETE "))
            .map_or(r.modified(), |e| e.at);
        let mut stages: Vec<String> = Vec::new();
        for entry in r.log() {
            let state = entry.to.split(' ').next().unwrap_or_default();
            if let Position::Working(i) = pipeline.position(state) {
                let stage = &pipeline.stages()[i];
                let name = format!("{} {}", stage.service, stage.operation);
                if !stages.contains(&name) {
                    stages.push(name);
                }
            }
        }
        Some(Completion {
            retirement_id: r.id().0,
            retired_username: r.retired_username().to_owned(),
            lms_user_id: r.parts().lms_user_id,
            completed,
            stages,
        })
    }
}

/// Every learner that reached COMPLETE at or after `since`, oldest first.
pub async fn completed_since(
    store: &dyn RetirementStore,
    pipeline: &Pipeline,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<Completion>, HttpError> {
    let query = QueueQuery {
        states: vec![retirement_core::COMPLETE.to_owned()],
        cool_off_days: 0,
        limit: None,
    };
    let mut out = Vec::new();
    for listed in store.queue(&query, now).await? {
        // A listing's `modified` is the last write: nothing older can have completed since.
        if listed.modified() < since {
            continue;
        }
        let full = store.get(listed.id()).await?;
        if let Some(c) = Completion::of(&full, pipeline).filter(|c| c.completed >= since) {
            out.push(c);
        }
    }
    out.sort_by_key(|c| (c.completed, c.retirement_id));
    Ok(out)
}

/// Posts `{"completed": [...]}` to a downstream webhook.
pub async fn post(url: &crate::Secret, feed: &[Completion]) -> Result<(), HttpError> {
    let fail = |message: String| HttpError::Service {
        service: "completion webhook".into(),
        message,
    };
    let response = reqwest::Client::new()
        .post(url.expose())
        .timeout(std::time::Duration::from_secs(30))
        .json(&serde_json::json!({ "completed": feed }))
        .send()
        .await
        .map_err(|e| fail(e.without_url().to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("answered {}", response.status())));
    }
    Ok(())
}
