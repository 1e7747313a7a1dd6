//! [`Steps`], the standard [`StepCaller`]: HTTP services through [`ServiceClients`], and the
//! built-in [`ASSIGNMENTS_SERVICE`] stage through the assignment tables of a SQL store. The
//! runtime knows only the [`StepCaller`] trait.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use retirement_core::{Input, Pipeline, Retirement, SplitMix64, Stage};
use retirement_store::AssignmentStore;

use crate::catalog::LearnerRef;
use crate::client::ServiceClients;
use crate::runtime::StepCaller;

/// The service key of the built-in stage that scrubs the learner's enterprise assignments in
/// the store (`[RETIRING_ASSIGNMENTS, ASSIGNMENTS_COMPLETE, ASSIGNMENTS, scrub_learner]`).
pub const ASSIGNMENTS_SERVICE: &str = "ASSIGNMENTS";
/// The built-in assignments stage's operation.
pub const ASSIGNMENTS_OPERATION: &str = "scrub_learner";

/// The standard steps: HTTP services through [`ServiceClients`], and the built-in
/// [`ASSIGNMENTS_SERVICE`] stage through the assignment tables of a SQL store.
pub struct Steps {
    clients: Arc<ServiceClients>,
    assignments: Option<Arc<dyn AssignmentStore>>,
    nonce: Mutex<SplitMix64>,
}

impl Steps {
    /// Steps over `clients`, with the assignments stage served by `assignments` when given.
    /// `nonce_seed` seeds the unique tombstones (use fresh randomness in production).
    pub fn new(
        clients: Arc<ServiceClients>,
        assignments: Option<Arc<dyn AssignmentStore>>,
        nonce_seed: u64,
    ) -> Steps {
        Steps {
            clients,
            assignments,
            nonce: Mutex::new(SplitMix64::new(nonce_seed)),
        }
    }

    /// `pipeline` with each stage's kind as its service's adapter does it (a vendor job, a
    /// person's step, or one call).
    pub fn kinds(&self, pipeline: Pipeline) -> Pipeline {
        pipeline.with_kinds(|stage| self.clients.stage_kind(&stage.service, &stage.operation))
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
            return match crate::expiry::scrub_learner(
                store.as_ref(),
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
                    transient: matches!(&e, crate::HttpError::Store(s) if s.is_transient()),
                    message: format!("assignment store: {e}"),
                },
            };
        }
        let target = LearnerRef::of(learner);
        match self
            .clients
            .call(&stage.service, &stage.operation, &target)
            .await
        {
            Ok(outcome) => outcome.into_input(),
            // Configuration errors are caught by `check_pipeline`: a permanent failure.
            Err(e) => Input::StepFailed {
                transient: false,
                message: e.to_string(),
            },
        }
    }

    async fn poll(
        &self,
        stage: &Stage,
        learner: &Retirement,
        job_id: &str,
        _now: DateTime<Utc>,
    ) -> Input {
        match self
            .clients
            .poll(
                &stage.service,
                &stage.operation,
                &LearnerRef::of(learner),
                job_id,
            )
            .await
        {
            Ok(outcome) => outcome.into_input(),
            Err(e) => Input::StepFailed {
                transient: false,
                message: e.to_string(),
            },
        }
    }
}
