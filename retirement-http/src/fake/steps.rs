//! The retirement step endpoints: the LMS's state guard, faults, the call record.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::catalog;
use retirement_store::RetirementStore;

use super::faults::broken_answer;
use super::tokens::authorised;
use super::*;

/// Decrements a learner's in-flight count however the handler ends (a client that times out
/// drops the connection, and with it this future).
pub(super) struct InFlight {
    state: Arc<FakeState>,
    username: Option<String>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(username) = &self.username {
            let mut shared = self.state.lock();
            if let Some(count) = shared.in_flight.get_mut(username) {
                *count = count.saturating_sub(1);
            }
        }
    }
}

pub(super) async fn step(State(state): State<Arc<FakeState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let method = parts.method.to_string();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    let mut record = RecordedCall {
        method: method.clone(),
        path: path.clone(),
        authorization: header(&parts.headers, "authorization"),
        content_type: header(&parts.headers, "content-type"),
        body: json.clone(),
        status: 0,
        learner_state: None,
        user_agent: header(&parts.headers, "user-agent"),
    };
    let respond =
        |state: &FakeState, mut record: RecordedCall, status: u16, body: serde_json::Value| {
            record.status = status;
            state.lock().calls.push(record);
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if body.is_null() {
                code.into_response()
            } else {
                (code, axum::Json(body)).into_response()
            }
        };

    // Authentication: a live token issued by this fake.
    if !authorised(&state, &parts.headers) {
        return respond(
            &state,
            record,
            401,
            serde_json::json!({"detail": "Authentication credentials were not provided."}),
        );
    }
    let Some(operation) = catalog::OPERATIONS
        .iter()
        .find(|op| op.method == method && path_matches(op.path, &path))
    else {
        return respond(&state, record, 404, serde_json::Value::Null);
    };
    // Removed upstream by DEPR-8 (defect D9): a pipeline that still lists it fails here as it
    // would against a real LMS.
    if operation.name == "retirement_retire_mailings" {
        return respond(&state, record, 404, serde_json::Value::Null);
    }
    // credentials' replace_usernames names the learner as the key of its one mapping.
    let mapped = json["username_mappings"][0]
        .as_object()
        .and_then(|m| m.keys().next().cloned());
    let username = json
        .get("username")
        .or_else(|| json.get("original_username"))
        .and_then(|u| u.as_str())
        .map(str::to_owned)
        .or(mapped);
    let _in_flight = {
        let mut shared = state.lock();
        if let Some(username) = &username {
            let count = shared.in_flight.entry(username.clone()).or_default();
            *count += 1;
            if *count > 1 {
                shared.overlaps.push(username.clone());
            }
        }
        InFlight {
            state: state.clone(),
            username: username.clone(),
        }
    };

    let stored_state = match (&state.config.lms_store, &username) {
        (Some(store), Some(u)) => store
            .find_by_username(u)
            .await
            .ok()
            .map(|r| r.current_state().to_owned()),
        _ => None,
    };
    record.learner_state = stored_state.clone();

    // The state guard of the LMS step endpoints (upstream's status codes, defect D4 included).
    if (state.config.enforce_state_guard || state.config.lms_store.is_some())
        && operation.service == "LMS"
    {
        let current = match (&state.config.lms_store, &username) {
            (Some(_), _) => stored_state,
            (None, Some(u)) => state.lock().learners.get(u).cloned(),
            _ => None,
        };
        match current {
            None => return respond(&state, record, 404, serde_json::Value::Null),
            Some(current) if !state.actionable(&current).await => {
                let code = match operation.name {
                    "retirement_retire_forum"
                    | "retirement_unenroll"
                    | "retirement_partner_queue" => 500,
                    "retirement_retire_notes" => 405,
                    _ => 400,
                };
                return respond(
                    &state,
                    record,
                    code,
                    serde_json::json!(format!(
                        "{current} is not a valid state to perform retirement actions on."
                    )),
                );
            }
            Some(_) => {}
        }
    }

    if let Some(fault) = state.pick_fault(&path) {
        if !fault.latency.is_zero() {
            tokio::time::sleep(fault.latency).await;
        }
        if fault.hang {
            state.lock().calls.push(record);
            tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        if fault.reset {
            state.lock().calls.push(record);
            return broken_answer();
        }
        if let Some(status) = fault.status {
            let body = fault
                .body
                .clone()
                .map(serde_json::Value::String)
                .unwrap_or(serde_json::Value::Null);
            let mut response = respond(&state, record, status, body);
            if let Some(after) = fault.retry_after
                && let Ok(value) = axum::http::HeaderValue::from_str(&after.as_secs().to_string())
            {
                response.headers_mut().insert("retry-after", value);
            }
            return response;
        }
    }
    if operation.service == "CREDENTIALS" {
        // The answer lists every mapping it replaced (the worker's JWT is enough here).
        let mappings = json["username_mappings"].clone();
        return respond(
            &state,
            record,
            200,
            serde_json::json!({"successful_replacements": mappings, "failed_replacements": []}),
        );
    }
    record.status = if operation.name == "retirement_unenroll" {
        200
    } else {
        204
    };
    if operation.name == "retirement_partner_queue"
        && let Some(username) = &username
    {
        partner::queue(&state, username).await;
    }
    if operation.name == "retirement_unenroll" {
        return respond(
            &state,
            record,
            200,
            serde_json::json!(["course-v1:edX+DemoX+Demo_Course"]),
        );
    }
    respond(&state, record, 204, serde_json::Value::Null)
}

/// Whether `path` is `/<template>` with `{user_id}` standing for digits.
pub(super) fn path_matches(template: &str, path: &str) -> bool {
    let path = path.trim_start_matches('/');
    match template.split_once("{user_id}") {
        None => template == path,
        Some((prefix, suffix)) => path
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())),
    }
}
