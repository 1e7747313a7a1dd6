//! enterprise-catalog's content-metadata endpoint and enterprise-subsidy's subsidy record, as
//! their servers answer upstream's clients (`enterprise-access-integration.md` §5.2, §5.3).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::tokens::authorised;
use super::*;

use crate::expiry::MAX_CONTENT_KEYS;

fn record(state: &FakeState, headers: &HeaderMap, path: String) {
    state.lock().calls.push(RecordedCall {
        method: "GET".into(),
        path,
        authorization: header(headers, "authorization"),
        content_type: header(headers, "content-type"),
        body: serde_json::Value::Null,
        status: 0,
        learner_state: None,
        user_agent: header(headers, "user-agent"),
    });
}

/// `GET /api/v2/enterprise-catalogs/<uuid>/get_content_metadata/?content_keys=…&traverse_pagination=True`:
/// the course-level records whose key, parent key or one of whose runs matches a requested key,
/// in one page.
pub(super) async fn content_metadata(
    State(state): State<Arc<FakeState>>,
    Path(catalog): Path<String>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    record(
        &state,
        &headers,
        format!(
            "/api/v2/enterprise-catalogs/{catalog}/get_content_metadata/?{}",
            query.join("&")
        ),
    );
    if !authorised(&state, &headers) {
        return bare(401, "Authentication credentials were not provided.");
    }
    let keys: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "content_keys")
        .map(|(_, v)| v.as_str())
        .collect();
    if keys.len() > MAX_CONTENT_KEYS {
        return bare(400, format!("at most {MAX_CONTENT_KEYS} content_keys"));
    }
    let shared = state.lock();
    let Some(records) = shared.catalogs.get(&catalog) else {
        return bare(404, "Not found.");
    };
    let matches = |r: &serde_json::Value| {
        let key = r["key"].as_str().unwrap_or_default();
        let parent = r["parent_content_key"].as_str();
        let runs = r["normalized_metadata_by_run"].as_object();
        keys.iter().any(|k| {
            *k == key || parent == Some(*k) || runs.is_some_and(|runs| runs.contains_key(*k))
        })
    };
    let results: Vec<serde_json::Value> = records.iter().filter(|r| matches(r)).cloned().collect();
    axum::Json(serde_json::json!({
        "previous": null,
        "next": null,
        "count": results.len(),
        "results": results,
        "uuid": catalog,
        "title": "Fake catalog",
        "enterprise_customer": null,
    }))
    .into_response()
}

/// `GET /api/v1/subsidies/<uuid>/`: the subsidy record, 404 for an unknown one.
pub(super) async fn subsidy(
    State(state): State<Arc<FakeState>>,
    Path(subsidy): Path<String>,
    headers: HeaderMap,
) -> Response {
    record(&state, &headers, format!("/api/v1/subsidies/{subsidy}/"));
    if !authorised(&state, &headers) {
        return bare(401, "Authentication credentials were not provided.");
    }
    match state.lock().subsidies.get(&subsidy) {
        Some(found) => axum::Json(found.clone()).into_response(),
        None => bare(404, "No Subsidy matches the given query."),
    }
}

impl FakeEdx {
    /// Adds a course-level record to a catalog of the fake enterprise-catalog:
    /// `{"key", "normalized_metadata": {"enroll_by_date", …}, "normalized_metadata_by_run":
    /// {RUN: {"enroll_by_date", "end_date", …}}}`.
    pub fn add_catalog_record(&self, catalog_uuid: &str, record: serde_json::Value) {
        self.state
            .lock()
            .catalogs
            .entry(catalog_uuid.to_owned())
            .or_default()
            .push(record);
    }

    /// Sets a subsidy record of the fake enterprise-subsidy (`{"uuid", "expiration_datetime",
    /// "is_active", …}`).
    pub fn set_subsidy(&self, subsidy_uuid: &str, record: serde_json::Value) {
        self.state
            .lock()
            .subsidies
            .insert(subsidy_uuid.to_owned(), record);
    }
}

/// `GET /enterprise/api/v1/enterprise-customer/<uuid>/`: the LMS's enterprise-customer record.
pub(super) async fn enterprise_customer(
    State(state): State<Arc<FakeState>>,
    Path(uuid): Path<String>,
    headers: HeaderMap,
) -> Response {
    record(
        &state,
        &headers,
        format!("/enterprise/api/v1/enterprise-customer/{uuid}/"),
    );
    if !authorised(&state, &headers) {
        return bare(401, "Authentication credentials were not provided.");
    }
    match state.lock().customers.get(&uuid) {
        Some(found) => axum::Json(found.clone()).into_response(),
        None => bare(404, "Not found."),
    }
}

/// Braze's REST endpoints the expiration emails use (`/users/identify`, `/users/export/ids`,
/// `/users/alias/new`, `/users/track`, `/campaigns/trigger/send`), under `/braze`: the API key
/// as a bearer token, every call recorded with its body.
pub(super) async fn braze(
    State(state): State<Arc<FakeState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    state.lock().calls.push(RecordedCall {
        method: "POST".into(),
        path: path.clone(),
        authorization: header(&headers, "authorization"),
        content_type: header(&headers, "content-type"),
        body: json.clone(),
        status: 0,
        learner_state: None,
        user_agent: header(&headers, "user-agent"),
    });
    let expected = format!("Bearer {}", state.config.braze_api_key);
    if header(&headers, "authorization").as_deref() != Some(expected.as_str()) {
        return bare(401, "Invalid API key");
    }
    match path.trim_start_matches("/braze") {
        "/users/delete" => vendors::braze_delete(&state, &json),
        "/users/export/ids" => axum::Json(
            serde_json::json!({"users": [], "invalid_user_ids": [], "message": "success"}),
        )
        .into_response(),
        "/campaigns/trigger/send" => {
            if json["campaign_id"].as_str().is_none_or(str::is_empty)
                || json["recipients"].as_array().is_none_or(Vec::is_empty)
            {
                return bare(400, "campaign_id and recipients are required");
            }
            axum::Json(serde_json::json!({"dispatch_id": "fake-dispatch", "message": "success"}))
                .into_response()
        }
        "/users/identify" | "/users/alias/new" | "/users/track" => {
            axum::Json(serde_json::json!({"message": "success"})).into_response()
        }
        _ => bare(404, "Not found."),
    }
}

impl FakeEdx {
    /// Sets an enterprise customer of the fake LMS (`{"uuid", "name", "slug", "admin_users":
    /// [{"email"}]}`).
    pub fn set_enterprise_customer(&self, uuid: &str, record: serde_json::Value) {
        self.state.lock().customers.insert(uuid.to_owned(), record);
    }
}

impl FakeEdx {
    /// Empties a catalog of the fake enterprise-catalog (content that left the catalog).
    pub fn clear_catalog(&self, catalog_uuid: &str) {
        self.state
            .lock()
            .catalogs
            .insert(catalog_uuid.to_owned(), Vec::new());
    }
}
