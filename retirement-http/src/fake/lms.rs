//! The LMS retirement status API, served from `FakeConfig::lms_store`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::status_json::{StatusJson, status_list};
use retirement_store::{DieselStore, QueueQuery, RetirementStore, StateWindow, StoreError};

use super::tokens::authorised;
use super::*;

/// Checks auth and that a store is configured; records the call.
pub(super) fn lms_gate(
    state: &FakeState,
    headers: &HeaderMap,
    method: &str,
    path: &str,
) -> Result<Arc<DieselStore>, StatusCode> {
    state.lock().calls.push(RecordedCall {
        method: method.to_owned(),
        path: path.to_owned(),
        authorization: header(headers, "authorization"),
        content_type: header(headers, "content-type"),
        body: serde_json::Value::Null,
        status: 0,
        learner_state: None,
        user_agent: header(headers, "user-agent"),
    });
    if !authorised(state, headers) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    state.config.lms_store.clone().ok_or(StatusCode::NOT_FOUND)
}

pub(super) async fn lms_queue(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    // A list of pairs: `states` repeats.
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let store = match lms_gate(
        &state,
        &headers,
        "GET",
        "/api/user/v1/accounts/retirement_queue/",
    ) {
        Ok(store) => store,
        Err(code) => return code.into_response(),
    };
    let Some(days) = pairs
        .iter()
        .find(|(k, _)| k == "cool_off_days")
        .map(|(_, v)| v.clone())
    else {
        return bare(400, "Missing required parameter: 'cool_off_days'");
    };
    let Ok(cool_off_days) = days.parse::<i64>() else {
        return bare(400, "Invalid cool_off_days, should be integer.");
    };
    let states: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "states")
        .map(|(_, v)| v.clone())
        .collect();
    let limit = match pairs.iter().find(|(k, _)| k == "limit") {
        None => None,
        Some((_, v)) => match v.parse::<i64>() {
            Ok(limit) => Some(limit),
            Err(_) => {
                return bare(
                    400,
                    format!("Limit could not be parsed: {v}, please ensure this is an integer"),
                );
            }
        },
    };
    let query = QueueQuery {
        states,
        cool_off_days,
        limit,
    };
    list_response(&store, store.queue(&query, state.clock.now()).await).await
}

pub(super) async fn lms_by_date(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let store = match lms_gate(
        &state,
        &headers,
        "GET",
        "/api/user/v1/accounts/retirements_by_status_and_date/",
    ) {
        Ok(store) => store,
        Err(code) => return code.into_response(),
    };
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (Some(start), Some(end), Some(state_name)) =
        (get("start_date"), get("end_date"), get("state"))
    else {
        let missing = ["start_date", "end_date", "state"]
            .into_iter()
            .find(|n| get(n).is_none())
            .unwrap_or("state");
        return bare(400, format!("Missing required parameter: '{missing}'"));
    };
    let parse = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d");
    let (start, end) = match (parse(&start), parse(&end)) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return bare(400, format!("Invalid start or end date: {e}")),
    };
    let window = StateWindow {
        state: state_name,
        start,
        end,
    };
    let listed = store.by_state_and_date(&window, state.clock.now()).await;
    list_response(&store, listed).await
}

/// A status list as JSON, or the store's refusal as a bare 400 string.
pub(super) async fn list_response(
    store: &DieselStore,
    listed: Result<Vec<retirement_core::Retirement>, StoreError>,
) -> Response {
    match (listed, store.state_table().await) {
        (Ok(list), Ok(table)) => axum::Json(status_list(&list, &table)).into_response(),
        (Err(e), _) | (_, Err(e)) => bare(400, e.to_string()),
    }
}

pub(super) async fn lms_status(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Response {
    let store = match lms_gate(
        &state,
        &headers,
        "GET",
        "/api/user/v1/accounts/{username}/retirement_status/",
    ) {
        Ok(store) => store,
        Err(code) => return code.into_response(),
    };
    match (
        store.find_by_username(&username).await,
        store.state_table().await,
    ) {
        (Ok(r), Ok(table)) => axum::Json(StatusJson::from_retirement(&r, &table)).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

pub(super) async fn lms_update(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let store = match lms_gate(
        &state,
        &headers,
        "PATCH",
        "/api/user/v1/accounts/update_retirement_status/",
    ) {
        Ok(store) => store,
        Err(code) => return code.into_response(),
    };
    let json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&body).unwrap_or_default();
    let Some(username) = json
        .get("username")
        .and_then(|u| u.as_str())
        .filter(|u| !u.is_empty())
    else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"message": "The user was not specified."})),
        )
            .into_response();
    };
    if let Err(e) = retirement_core::validate_update_keys(json.keys().map(String::as_str)) {
        return bare(400, e.upstream_text());
    }
    let retirement = match store.find_by_username(username).await {
        Ok(r) => r,
        Err(_) => return StatusCode::NOT_FOUND.into_response(),
    };
    let new_state = json
        .get("new_state")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let response = json
        .get("response")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    // Only a JSON `true` forces (upstream takes any truthy value, the string "false" too: D2).
    let forced = json.get("force").and_then(|v| v.as_bool()).unwrap_or(false);
    let now = state.clock.now();
    let result = if forced {
        let why = retirement_core::Override {
            operator: "lms-api".into(),
            reason: response.to_owned(),
        };
        store
            .force(retirement.id(), new_state, &why, now)
            .await
            .map(|_| ())
    } else {
        store
            .advance(
                retirement.id(),
                None,
                new_state,
                response,
                retirement_core::Actor::Driver,
                now,
            )
            .await
            .map(|_| ())
    };
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(StoreError::Core(e)) => bare(400, e.upstream_text()),
        Err(StoreError::NotFound { .. }) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => bare(500, e.to_string()),
    }
}

pub(super) async fn lms_cleanup(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let store = match lms_gate(
        &state,
        &headers,
        "POST",
        "/api/user/v1/accounts/retirement_cleanup/",
    ) {
        Ok(store) => store,
        Err(code) => return code.into_response(),
    };
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let Some(list) = json.get("usernames").and_then(|u| u.as_array()) else {
        return bare(400, "Usernames should be an array.");
    };
    let usernames: Vec<String> = list
        .iter()
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect();
    match store.cleanup(&usernames).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => bare(400, e.to_string()),
    }
}

pub(super) async fn lms_cancel(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let store = match lms_gate(
        &state,
        &headers,
        "POST",
        "/api/user/v1/accounts/cancel_retirement/",
    ) {
        Ok(store) => store,
        Err(code) => return code.into_response(),
    };
    let message = |m: String| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"message": m})),
        )
            .into_response()
    };
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let Some(id) = json.get("retirement_id").and_then(|v| v.as_i64()) else {
        return message("retirement_id must be specified.".into());
    };
    match store.cancel(retirement_core::RetirementId(id)).await {
        Ok(()) => axum::Json(serde_json::json!({"success": true})).into_response(),
        Err(StoreError::NotFound { .. }) => message("Retirement does not exist!".into()),
        // Upstream names the original username here; the fake names the retirement id.
        Err(e) => message(e.to_string()),
    }
}

/// The LMS's `COOL_OFF_DAYS` setting (upstream's default): a retirement can be cancelled
/// from the account lookup only this long after it was requested.
pub const LMS_COOL_OFF_DAYS: i64 = 14;

/// A user account of the fake LMS, for the staff account lookup and `bulk_retire_users`.
#[derive(Clone)]
pub struct FakeUser {
    /// The LMS user id.
    pub id: i64,
    /// The username.
    pub username: String,
    /// The email.
    pub email: String,
    /// The full name.
    pub name: String,
}

/// `GET /api/user/v1/accounts?email=…` or `?lms_user_id=…` (staff only): a retired email
/// answers 404 with `error_msg`, `can_cancel_retirement` (requested within
/// [`LMS_COOL_OFF_DAYS`]) and `retirement_id` (only when cancellable), as upstream's view.
pub(super) async fn lms_accounts(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let store = match lms_gate(&state, &headers, "GET", "/api/user/v1/accounts") {
        Ok(store) => store,
        Err(code) => return code.into_response(),
    };
    let account = |u: &FakeUser| serde_json::json!([{"id": u.id, "username": u.username, "email": u.email, "name": u.name}]);
    if let Some(email) = query.get("email") {
        if let Ok(r) = store.find_by_email(email).await {
            let cancellable =
                r.created() > state.clock.now() - chrono::TimeDelta::days(LMS_COOL_OFF_DAYS);
            return (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({
                    "error_msg": "This email is associated to a retired account.",
                    "can_cancel_retirement": cancellable,
                    "retirement_id": if cancellable { Some(r.id().0) } else { None },
                })),
            )
                .into_response();
        }
        let users = state.lock().users.clone();
        return match users.iter().find(|u| u.email.eq_ignore_ascii_case(email)) {
            Some(u) => axum::Json(account(u)).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    if let Some(id) = query.get("lms_user_id") {
        let Ok(id) = id.parse::<i64>() else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        if let Ok(r) = store.find_by_user_id(id).await {
            let body = serde_json::json!([{"id": id, "username": r.original().username}]);
            return axum::Json(body).into_response();
        }
        let users = state.lock().users.clone();
        return match users.iter().find(|u| u.id == id) {
            Some(u) => axum::Json(account(u)).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    StatusCode::BAD_REQUEST.into_response()
}

/// `POST /v1/accounts/bulk_retire_users`: `usernames` as one comma-separated string; each
/// known user not yet queued is queued (PENDING); always 200 with the successes and failures.
pub(super) async fn lms_bulk_retire(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let store = match lms_gate(&state, &headers, "POST", "/v1/accounts/bulk_retire_users") {
        Ok(store) => store,
        Err(code) => return code.into_response(),
    };
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let Some(list) = json["usernames"].as_str() else {
        return bare(400, "usernames is required");
    };
    let ids = match retirement_core::RetiredIdConfig::new(vec!["fake-lms-salt".into()]) {
        Ok(ids) => ids,
        Err(e) => return bare(500, e.to_string()),
    };
    let users = state.lock().users.clone();
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(user) = users.iter().find(|u| u.username == name) else {
            failed.push(name.to_owned());
            continue;
        };
        let request = retirement_store::NewRetirement::new(
            retirement_core::OriginalIdentity {
                username: user.username.clone(),
                email: user.email.clone(),
                name: user.name.clone(),
            },
            Some(user.id),
            &ids,
        );
        match store.enqueue(request, state.clock.now()).await {
            Ok(_) => ok.push(name.to_owned()),
            Err(_) => failed.push(name.to_owned()),
        }
    }
    ok.sort();
    axum::Json(serde_json::json!({
        "successful_user_retirements": ok,
        "failed_user_retirements": failed,
    }))
    .into_response()
}

impl FakeEdx {
    /// Adds a user account to the fake LMS (for the account lookup and bulk retirement).
    pub fn add_user(&self, user: FakeUser) {
        self.lock().users.push(user);
    }
}
