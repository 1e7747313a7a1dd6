//! The LMS's partner-reporting queue (`UserRetirementPartnerReportingStatus`): the pipeline's
//! `PUT retirement_partner_report/` queues a learner enrolled in any org (the orgs a test
//! gives with [`FakeEdx::set_partner_orgs`]); `POST retirement_partner_report/` answers the
//! rows not yet being processed and marks them; `POST retirement_partner_report_cleanup/`
//! deletes exactly the named rows that are being processed, as upstream's views.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use retirement_store::RetirementStore as _;

use super::tokens::authorised;
use super::{FakeEdx, FakeState};

/// One queued learner.
#[derive(Debug, Clone)]
pub(super) struct PartnerEntry {
    user_id: i64,
    username: String,
    email: String,
    name: String,
    orgs: Vec<String>,
    /// Orgs with their own headings, as `[{org, field_headings}]`.
    orgs_config: Vec<serde_json::Value>,
    created: chrono::DateTime<chrono::Utc>,
    processing: bool,
}

/// After a successful `PUT retirement_partner_report/`: queue `username` once, if enrolled
/// in any org.
pub(super) async fn queue(state: &FakeState, username: &str) {
    let orgs = state
        .lock()
        .partner_orgs
        .get(username)
        .cloned()
        .unwrap_or_default();
    if orgs.is_empty() {
        return;
    }
    let Some(store) = &state.config.lms_store else {
        return;
    };
    let Ok(r) = store.find_by_username(username).await else {
        return;
    };
    let mut shared = state.lock();
    if shared.partner_rows.iter().any(|e| e.username == username) {
        return;
    }
    let original = r.original().clone();
    shared.partner_rows.push(PartnerEntry {
        user_id: r.parts().lms_user_id.unwrap_or_default(),
        username: original.username,
        email: original.email,
        name: original.name,
        orgs,
        orgs_config: Vec::new(),
        created: state.clock.now(),
        processing: false,
    });
}

pub(super) async fn report(
    State(state): State<Arc<FakeState>>,
    headers: axum::http::HeaderMap,
) -> Response {
    if !authorised(&state, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut shared = state.lock();
    let mut rows = Vec::new();
    for entry in shared.partner_rows.iter_mut().filter(|e| !e.processing) {
        entry.processing = true;
        let mut row = serde_json::json!({
            "user_id": entry.user_id,
            "original_username": entry.username,
            "original_email": entry.email,
            "original_name": entry.name,
            "orgs": entry.orgs,
            "created": entry.created.to_rfc3339(),
        });
        if !entry.orgs_config.is_empty() {
            row["orgs_config"] = serde_json::Value::Array(entry.orgs_config.clone());
            row["student_id"] = serde_json::json!(format!("student-{}", entry.user_id));
        }
        rows.push(row);
    }
    axum::Json(rows).into_response()
}

pub(super) async fn cleanup(
    State(state): State<Arc<FakeState>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorised(&state, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let names: Vec<String> = serde_json::from_slice::<Vec<serde_json::Value>>(&body)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v["original_username"].as_str().map(str::to_owned))
        .collect();
    if names.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json("No original_usernames given."),
        )
            .into_response();
    }
    let mut shared = state.lock();
    let found = shared
        .partner_rows
        .iter()
        .filter(|e| e.processing && names.contains(&e.username))
        .count();
    if found != names.len() {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(format!(
                "{} original_usernames given, {found} found!\nGiven usernames:\n{names:?}",
                names.len()
            )),
        )
            .into_response();
    }
    shared
        .partner_rows
        .retain(|e| !(e.processing && names.contains(&e.username)));
    StatusCode::NO_CONTENT.into_response()
}

impl FakeEdx {
    /// The orgs `username` is enrolled in (a learner with none is not queued for partners).
    pub fn set_partner_orgs(&self, username: &str, orgs: &[&str]) {
        self.state.lock().partner_orgs.insert(
            username.to_owned(),
            orgs.iter().map(|o| o.to_string()).collect(),
        );
    }

    /// Queues a learner for the partner report directly (as the pipeline's stage would),
    /// with the learner's orgs and, for orgs with their own CSV headings, `(org, headings)`
    /// (such rows also carry a `student_id`, `student-{user_id}`).
    pub fn queue_partner_row(
        &self,
        user_id: i64,
        original: &retirement_core::OriginalIdentity,
        orgs: &[&str],
        orgs_config: &[(&str, &[&str])],
    ) {
        let created = self.state.clock.now();
        self.state.lock().partner_rows.push(PartnerEntry {
            user_id,
            username: original.username.clone(),
            email: original.email.clone(),
            name: original.name.clone(),
            orgs: orgs.iter().map(|o| o.to_string()).collect(),
            orgs_config: orgs_config
                .iter()
                .map(|(org, headings)| serde_json::json!({"org": org, "field_headings": headings}))
                .collect(),
            created,
            processing: false,
        });
    }

    /// The partner queue: each row's original username and whether it is being processed.
    pub fn partner_rows(&self) -> Vec<(String, bool)> {
        self.state
            .lock()
            .partner_rows
            .iter()
            .map(|e| (e.username.clone(), e.processing))
            .collect()
    }
}
