//! The third-party services' erasure APIs, each under its own path prefix of the fake and
//! following that vendor's documented contract (auth, body, limits, answers): Braze
//! (`/braze/users/delete`), Amplitude (`/amplitude`), HubSpot (`/hubspot`), Segment's Public
//! API (`/segment`), Salesforce Marketing Cloud (`/sfmc`), the edX fork's Red Ventures
//! (`/redventures`), Commerce Coordinator and the LMS certificates stage. Faults apply to
//! every one of these paths ([`super::FakeEdx::set_fault`]), `Retry-After` included.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::tokens::authorised;
use super::*;
use crate::GenericService;
use crate::connectors::{Auth, Connector, OAuth2, Request, Secret, TokenEncoding, vendors};

/// The path prefixes of the fake vendors (faults apply to them).
pub(super) const PREFIXES: &[&str] = &[
    "/braze/",
    "/amplitude/",
    "/hubspot/",
    "/segment/",
    "/sfmc/",
    "/redventures/",
    "/lms/user_retirement/",
    "/api/certificates/v1/",
    "/salesforce/",
];

/// How long the connectors set up against the fake wait to fill a batch, in seconds.
pub const BATCH_WAIT: f64 = 0.2;
/// How often the connectors set up against the fake poll a job, in seconds.
pub const POLL_EVERY: f64 = 1.0;

/// Braze: at most 50 ids per `users/delete` request.
pub const BRAZE_MAX_IDS: usize = 50;
/// Segment: at most 5,000 subject ids per regulation.
pub const SEGMENT_MAX_IDS: usize = 5000;
/// Amplitude: at most 100 ids per deletion request.
pub const AMPLITUDE_MAX_IDS: usize = 100;

/// The vendors' credentials the fake accepts (one value each, as a test sets them).
pub const AMPLITUDE_API_KEY: &str = "amplitude-key";
/// Amplitude's secret key.
pub const AMPLITUDE_SECRET_KEY: &str = "amplitude-secret";
/// HubSpot's private-app token.
pub const HUBSPOT_TOKEN: &str = "hubspot-token";
/// Segment's Public API token.
pub const SEGMENT_TOKEN: &str = "segment-token";
/// Marketing Cloud's client id and secret.
pub const SFMC_CLIENT: (&str, &str) = ("sfmc-client", "sfmc-secret");
/// Salesforce's connected app (client id, secret) and the Task assignee.
pub const SALESFORCE_CLIENT: (&str, &str, &str) = ("sf-client", "sf-secret", "005ASSIGNEE");
/// Red Ventures' client id and secret, and the audience it requires.
pub const RV_CLIENT: (&str, &str, &str) = (
    "rv-client",
    "rv-secret",
    "https://privacy.redventures.example",
);

/// What the fake vendors hold and were asked to do.
#[derive(Debug, Default, Clone)]
pub struct VendorData {
    /// HubSpot contacts by email.
    pub hubspot_contacts: HashSet<String>,
    /// Emails HubSpot blocklisted (a GDPR delete of an unknown email).
    pub hubspot_blocklist: Vec<String>,
    /// Marketing Cloud contact keys by email.
    pub sfmc_contacts: HashMap<String, String>,
    /// Red Ventures' known emails.
    pub rv_emails: HashSet<String>,
    /// Every erasure done, as (service, id).
    pub deleted: Vec<(String, String)>,
    /// Segment regulations by id: subject ids and status.
    pub segment_regulations: BTreeMap<String, (Vec<String>, String)>,
    /// Amplitude deletion jobs by day: user ids and status.
    pub amplitude_jobs: BTreeMap<String, (Vec<String>, String)>,
    /// The poll on which a vendor job finishes (Segment, Amplitude): 0 and 1 both mean the
    /// first; `u32::MAX`, never.
    pub polls_to_finish: u32,
    /// Polls of each job so far.
    pub polls: BTreeMap<String, u32>,
    /// Salesforce Leads: email → Lead id.
    pub salesforce_leads: HashMap<String, String>,
    /// Salesforce Tasks created: (Task id, WhoId).
    pub salesforce_tasks: Vec<(String, String)>,
    /// Vendor OAuth2 tokens issued (Marketing Cloud, Red Ventures).
    pub tokens: HashSet<String>,
    issued: u64,
}

fn record(
    state: &FakeState,
    method: &str,
    path: String,
    headers: &HeaderMap,
    body: &serde_json::Value,
) {
    state.lock().calls.push(RecordedCall {
        method: method.into(),
        path,
        authorization: header(headers, "authorization"),
        content_type: header(headers, "content-type"),
        body: body.clone(),
        status: 0,
        learner_state: None,
        user_agent: header(headers, "user-agent"),
    });
}

fn json_answer(status: u16, body: serde_json::Value) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(body)).into_response()
}

fn strings(value: &serde_json::Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    header(headers, "authorization")?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

/// `POST /braze/users/delete` (called from the enterprise Braze handler): `external_ids`, at
/// most 50, strings; 201 `{"deleted": n, "message": "success"}`; unknown ids are no error.
pub(super) fn braze_delete(state: &FakeState, json: &serde_json::Value) -> Response {
    let Some(ids) = strings(&json["external_ids"]) else {
        return json_answer(
            400,
            serde_json::json!({"message": "external_ids must be an array of strings"}),
        );
    };
    if ids.is_empty() || ids.len() > BRAZE_MAX_IDS {
        return json_answer(
            400,
            serde_json::json!({"message": format!("between 1 and {BRAZE_MAX_IDS} external_ids")}),
        );
    }
    let mut shared = state.lock();
    for id in &ids {
        shared.vendors.deleted.push(("BRAZE".into(), id.clone()));
    }
    json_answer(
        201,
        serde_json::json!({"deleted": ids.len(), "message": "success"}),
    )
}

/// `POST /amplitude/api/2/deletions/users`: HTTP Basic (API key, secret key); `user_ids`
/// (at most 100), `requester`, flags as the strings `"True"`/`"False"`; 200 with the day's job.
pub(super) async fn amplitude_delete(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    record(
        &state,
        "POST",
        "/amplitude/api/2/deletions/users".into(),
        &headers,
        &json,
    );
    if !amplitude_authorised(&headers) {
        return json_answer(
            401,
            serde_json::json!({"error": "Invalid API key or secret"}),
        );
    }
    let Some(ids) = strings(&json["user_ids"]) else {
        return json_answer(
            400,
            serde_json::json!({"error": "user_ids must be a list of strings"}),
        );
    };
    let flags_ok = ["ignore_invalid_id", "delete_from_org"]
        .iter()
        .all(|k| json.get(*k).is_none_or(|v| v == "True" || v == "False"));
    if ids.is_empty()
        || ids.len() > AMPLITUDE_MAX_IDS
        || !flags_ok
        || json["requester"].as_str().is_none()
    {
        return json_answer(400, serde_json::json!({"error": "invalid request"}));
    }
    let mut shared = state.lock();
    for id in &ids {
        shared
            .vendors
            .deleted
            .push(("AMPLITUDE".into(), id.clone()));
    }
    let job = shared
        .vendors
        .amplitude_jobs
        .entry("2026-12-31".into())
        .or_insert_with(|| (Vec::new(), "staging".into()));
    job.0.extend(ids.iter().cloned());
    json_answer(
        200,
        serde_json::json!([{
            "day": "2026-12-31",
            "status": "staging",
            "amplitude_ids": ids.iter().map(|id| serde_json::json!({"user_id": id, "requester": json["requester"]})).collect::<Vec<_>>(),
        }]),
    )
}

/// `POST /hubspot/crm/v3/objects/contacts/gdpr-delete`: bearer private-app token,
/// `{"objectId": <email>, "idProperty": "email"}`; 204; an unknown email is blocklisted.
pub(super) async fn hubspot_gdpr_delete(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    record(
        &state,
        "POST",
        "/hubspot/crm/v3/objects/contacts/gdpr-delete".into(),
        &headers,
        &json,
    );
    if bearer(&headers).as_deref() != Some(HUBSPOT_TOKEN) {
        return json_answer(
            401,
            serde_json::json!({"status": "error", "category": "INVALID_AUTHENTICATION"}),
        );
    }
    let (Some(email), Some("email")) = (json["objectId"].as_str(), json["idProperty"].as_str())
    else {
        return json_answer(
            400,
            serde_json::json!({"status": "error", "category": "VALIDATION_ERROR"}),
        );
    };
    let mut shared = state.lock();
    if shared.vendors.hubspot_contacts.remove(email) {
        shared
            .vendors
            .deleted
            .push(("HUBSPOT".into(), email.to_owned()));
    } else {
        shared.vendors.hubspot_blocklist.push(email.to_owned());
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /segment/regulations`: bearer token; `regulationType`, `subjectType` `USER_ID`,
/// `subjectIds` (at most 5,000); 200 `{"data": {"regulateId": …}}`.
pub(super) async fn segment_create(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    record(
        &state,
        "POST",
        "/segment/regulations".into(),
        &headers,
        &json,
    );
    if bearer(&headers).as_deref() != Some(SEGMENT_TOKEN) {
        return json_answer(
            401,
            serde_json::json!({"errors": [{"type": "unauthorized", "message": "Unauthorized"}]}),
        );
    }
    let types = [
        "SUPPRESS_WITH_DELETE",
        "DELETE_ONLY",
        "SUPPRESS_ONLY",
        "UNSUPPRESS",
        "DELETE_INTERNAL",
        "DELETE_ARCHIVE_ONLY",
    ];
    let ok_type = json["regulationType"]
        .as_str()
        .is_some_and(|t| types.contains(&t));
    let Some(ids) = strings(&json["subjectIds"]) else {
        return json_answer(
            400,
            serde_json::json!({"errors": [{"type": "validation", "message": "subjectIds"}]}),
        );
    };
    if !ok_type || json["subjectType"] != "USER_ID" || ids.is_empty() || ids.len() > SEGMENT_MAX_IDS
    {
        return json_answer(
            400,
            serde_json::json!({"errors": [{"type": "validation", "message": "invalid regulation"}]}),
        );
    }
    let mut shared = state.lock();
    shared.vendors.issued += 1;
    let id = format!("reg-{}", shared.vendors.issued);
    for subject in &ids {
        shared
            .vendors
            .deleted
            .push(("SEGMENT".into(), subject.clone()));
    }
    shared
        .vendors
        .segment_regulations
        .insert(id.clone(), (ids, "INITIALIZED".into()));
    json_answer(200, serde_json::json!({"data": {"regulateId": id}}))
}

/// `GET /segment/regulations/{id}`: `{"data": {"regulation": {"id", "overallStatus"}}}`.
pub(super) async fn segment_status(
    State(state): State<Arc<FakeState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    record(
        &state,
        "GET",
        format!("/segment/regulations/{id}"),
        &headers,
        &serde_json::Value::Null,
    );
    if bearer(&headers).as_deref() != Some(SEGMENT_TOKEN) {
        return json_answer(
            401,
            serde_json::json!({"errors": [{"type": "unauthorized"}]}),
        );
    }
    let mut shared = state.lock();
    let vendors = &mut shared.vendors;
    let polls = {
        let n = vendors.polls.entry(id.clone()).or_default();
        *n += 1;
        *n
    };
    let finish = vendors.polls_to_finish;
    match vendors.segment_regulations.get_mut(&id) {
        Some((_, status)) => {
            let running = matches!(status.as_str(), "INITIALIZED" | "RUNNING");
            if running && polls >= finish {
                *status = "FINISHED".into();
            } else if running {
                *status = "RUNNING".into();
            }
            json_answer(
                200,
                serde_json::json!({"data": {"regulation": {"id": id, "overallStatus": status}}}),
            )
        }
        None => json_answer(404, serde_json::json!({"errors": [{"type": "not-found"}]})),
    }
}

/// `GET /amplitude/api/2/deletions/users?start_day=…&end_day=…`: the deletion jobs of those
/// days, each with its status (`staging`, `submitted`, `done`).
pub(super) async fn amplitude_jobs(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    record(
        &state,
        "GET",
        "/amplitude/api/2/deletions/users".into(),
        &headers,
        &serde_json::Value::Null,
    );
    if !amplitude_authorised(&headers) {
        return json_answer(
            401,
            serde_json::json!({"error": "Invalid API key or secret"}),
        );
    }
    let (Some(start), Some(end)) = (query.get("start_day"), query.get("end_day")) else {
        return json_answer(
            400,
            serde_json::json!({"error": "start_day and end_day are required"}),
        );
    };
    let mut shared = state.lock();
    let vendors = &mut shared.vendors;
    let finish = vendors.polls_to_finish;
    let days: Vec<String> = vendors
        .amplitude_jobs
        .range(start.clone()..=end.clone())
        .map(|(day, _)| day.clone())
        .collect();
    let mut jobs = Vec::new();
    for day in days {
        let polls = {
            let n = vendors.polls.entry(format!("amplitude {day}")).or_default();
            *n += 1;
            *n
        };
        if let Some((ids, status)) = vendors.amplitude_jobs.get_mut(&day) {
            if polls >= finish {
                *status = "done".into();
            } else if status.as_str() == "staging" {
                *status = "submitted".into();
            }
            let ids: Vec<serde_json::Value> = ids
                .iter()
                .map(|id| serde_json::json!({"user_id": id}))
                .collect();
            jobs.push(serde_json::json!({"day": day, "status": status, "amplitude_ids": ids}));
        }
    }
    json_answer(200, serde_json::Value::Array(jobs))
}

/// Salesforce's REST API: `GET …/query?q=SELECT Id FROM Lead WHERE Email='…'` and
/// `POST …/sobjects/Task`, with the connected app's OAuth2 token.
pub(super) async fn salesforce(
    State(state): State<Arc<FakeState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let path = uri.path().to_owned();
    // The query holds the email by Salesforce's design: the record keeps the path only.
    record(&state, method.as_str(), path.clone(), &headers, &json);
    if !vendor_token_ok(&state, &headers) {
        return json_answer(
            401,
            serde_json::json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
        );
    }
    let malformed = || json_answer(400, serde_json::json!([{"errorCode": "MALFORMED_QUERY"}]));
    if method == axum::http::Method::GET && path.ends_with("/query") {
        let Some(literal) = query
            .get("q")
            .and_then(|q| q.strip_prefix("SELECT Id FROM Lead WHERE Email='"))
            .and_then(|rest| rest.strip_suffix('\''))
        else {
            return malformed();
        };
        // A SOQL string literal: \' and \\ are escapes; a bare quote would end it.
        let mut email = String::new();
        let mut chars = literal.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(next) => email.push(next),
                    None => return malformed(),
                },
                '\'' => return malformed(),
                other => email.push(other),
            }
        }
        let shared = state.lock();
        let records: Vec<serde_json::Value> = shared
            .vendors
            .salesforce_leads
            .get(&email)
            .map(|id| vec![serde_json::json!({"attributes": {"type": "Lead"}, "Id": id})])
            .unwrap_or_default();
        return json_answer(
            200,
            serde_json::json!({"totalSize": records.len(), "done": true, "records": records}),
        );
    }
    if method == axum::http::Method::POST && path.ends_with("/sobjects/Task") {
        let (Some(who), Some(owner)) = (json["WhoId"].as_str(), json["OwnerId"].as_str()) else {
            return json_answer(
                400,
                serde_json::json!([{"errorCode": "REQUIRED_FIELD_MISSING"}]),
            );
        };
        if owner != SALESFORCE_CLIENT.2 {
            return json_answer(
                400,
                serde_json::json!([{"errorCode": "INVALID_CROSS_REFERENCE_KEY"}]),
            );
        }
        let mut shared = state.lock();
        shared.vendors.issued += 1;
        let id = format!("00T{:012}", shared.vendors.issued);
        shared
            .vendors
            .salesforce_tasks
            .push((id.clone(), who.to_owned()));
        return json_answer(
            201,
            serde_json::json!({"id": id, "success": true, "errors": []}),
        );
    }
    json_answer(404, serde_json::json!([{"errorCode": "NOT_FOUND"}]))
}

/// A vendor OAuth2 token endpoint: Marketing Cloud's (`/sfmc/v2/token`, JSON body,
/// `account_id` allowed) or Red Ventures' (`/redventures/oauth/token`, form body with the
/// audience it requires).
pub(super) async fn vendor_token(
    State(state): State<Arc<FakeState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let fields: HashMap<String, String> = if path.starts_with("/sfmc/") {
        serde_json::from_slice(&body).unwrap_or_default()
    } else {
        serde_urlencoded_pairs(&body)
    };
    // Never record the secret: the privacy scan reads the call record.
    let mut shown: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .filter(|(k, _)| k.as_str() != "client_secret")
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    shown.insert("client_secret".into(), "<not recorded>".into());
    record(
        &state,
        "POST",
        path.clone(),
        &headers,
        &serde_json::Value::Object(shown),
    );
    let get = |k: &str| fields.get(k).map(String::as_str);
    let ok = get("grant_type") == Some("client_credentials")
        && if path.starts_with("/sfmc/") {
            (get("client_id"), get("client_secret")) == (Some(SFMC_CLIENT.0), Some(SFMC_CLIENT.1))
        } else if path.starts_with("/salesforce/") {
            (get("client_id"), get("client_secret"))
                == (Some(SALESFORCE_CLIENT.0), Some(SALESFORCE_CLIENT.1))
        } else {
            (get("client_id"), get("client_secret"), get("audience"))
                == (Some(RV_CLIENT.0), Some(RV_CLIENT.1), Some(RV_CLIENT.2))
        };
    if !ok {
        return json_answer(401, serde_json::json!({"error": "invalid_client"}));
    }
    let mut shared = state.lock();
    shared.vendors.issued += 1;
    let token = format!("vendor-token-{}", shared.vendors.issued);
    shared.vendors.tokens.insert(token.clone());
    json_answer(
        200,
        serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 1080}),
    )
}

fn serde_urlencoded_pairs(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn vendor_token_ok(state: &FakeState, headers: &HeaderMap) -> bool {
    bearer(headers).is_some_and(|t| state.lock().vendors.tokens.contains(&t))
}

/// Marketing Cloud's REST calls: `contacts/v1/addresses/email/search` (the contact key of an
/// email, none when unknown) and `contacts/v1/contacts/actions/delete?type=keys`.
pub(super) async fn sfmc_rest(
    State(state): State<Arc<FakeState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let path = uri.path().to_owned();
    let shown = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    record(&state, "POST", shown, &headers, &json);
    if !vendor_token_ok(&state, &headers) {
        return json_answer(
            401,
            serde_json::json!({"message": "Not Authorized", "errorcode": 0}),
        );
    }
    match path.as_str() {
        "/sfmc/contacts/v1/addresses/email/search" => {
            let Some(emails) = strings(&json["ChannelAddressList"]) else {
                return json_answer(
                    400,
                    serde_json::json!({"message": "ChannelAddressList is required"}),
                );
            };
            let shared = state.lock();
            let entities: Vec<serde_json::Value> = emails
                .iter()
                .map(|email| {
                    let keys: Vec<serde_json::Value> = shared
                        .vendors
                        .sfmc_contacts
                        .get(email)
                        .map(|key| vec![serde_json::json!({"contactKey": key, "createDate": "2024-01-02T03:04:05"})])
                        .unwrap_or_default();
                    serde_json::json!({"channelAddress": email, "contactKeyDetails": keys})
                })
                .collect();
            json_answer(
                200,
                serde_json::json!({"channelAddressResponseEntities": entities, "operationStatus": "OK", "requestServiceMessageID": "fake"}),
            )
        }
        "/sfmc/contacts/v1/contacts/actions/delete" => {
            if uri.query() != Some("type=keys") {
                return json_answer(400, serde_json::json!({"message": "type=keys is required"}));
            }
            let Some(keys) = strings(&json["values"]) else {
                return json_answer(400, serde_json::json!({"message": "values is required"}));
            };
            if json["DeleteOperationType"] != "ContactAndAttributes" {
                return json_answer(400, serde_json::json!({"message": "DeleteOperationType"}));
            }
            let mut shared = state.lock();
            shared
                .vendors
                .sfmc_contacts
                .retain(|_, key| !keys.contains(key));
            for key in &keys {
                shared
                    .vendors
                    .deleted
                    .push(("SALESFORCE_MARKETING_CLOUD".into(), key.clone()));
            }
            shared.vendors.issued += 1;
            json_answer(
                200,
                serde_json::json!({"operationInitiated": true, "operationID": shared.vendors.issued, "hasErrors": false, "resultMessages": []}),
            )
        }
        _ => json_answer(404, serde_json::json!({"message": "Not Found"})),
    }
}

/// Red Ventures (edX fork): `DELETE /redventures/deletion?email=<email>` with its OAuth2
/// token; 204, or 404 for an email it does not hold.
pub(super) async fn redventures_delete(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    // The email is in the URL by the vendor's design; the record keeps the path only.
    record(
        &state,
        "DELETE",
        "/redventures/deletion".into(),
        &headers,
        &serde_json::Value::Null,
    );
    if !vendor_token_ok(&state, &headers) {
        return json_answer(401, serde_json::json!({"error": "unauthorized"}));
    }
    let Some(email) = query.get("email") else {
        return json_answer(400, serde_json::json!({"error": "email is required"}));
    };
    let mut shared = state.lock();
    if shared.vendors.rv_emails.remove(email) {
        shared
            .vendors
            .deleted
            .push(("RED_VENTURES".into(), email.clone()));
        StatusCode::NO_CONTENT.into_response()
    } else {
        json_answer(404, serde_json::json!({"error": "not found"}))
    }
}

/// An Open edX service's JWT-guarded stage outside the catalog: Commerce Coordinator's
/// `POST /lms/user_retirement/` (`{"edx_lms_user_id": <id>}`) and the LMS's
/// `POST /api/certificates/v1/retire_certs_s3_for_user` (`{"username": <retired username>}`).
pub(super) async fn jwt_stage(
    State(state): State<Arc<FakeState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let path = uri.path().to_owned();
    record(&state, "POST", path.clone(), &headers, &json);
    if !authorised(&state, &headers) {
        return json_answer(
            401,
            serde_json::json!({"detail": "Authentication credentials were not provided."}),
        );
    }
    let (service, id) = if path == "/lms/user_retirement/" {
        (
            "COMMERCE_COORDINATOR",
            json["edx_lms_user_id"].as_i64().map(|i| i.to_string()),
        )
    } else {
        ("CERTIFICATES", json["username"].as_str().map(str::to_owned))
    };
    let Some(id) = id else {
        return json_answer(400, serde_json::json!({"detail": "missing learner"}));
    };
    state.lock().vendors.deleted.push((service.into(), id));
    json_answer(200, serde_json::json!({"detail": "retired"}))
}

/// HTTP Basic with Amplitude's API key and secret key.
fn amplitude_authorised(headers: &HeaderMap) -> bool {
    let expected = format!(
        "Basic {}",
        base64(format!("{AMPLITUDE_API_KEY}:{AMPLITUDE_SECRET_KEY}").as_bytes())
    );
    header(headers, "authorization").as_deref() == Some(expected.as_str())
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl FakeEdx {
    /// What the fake vendors hold and did.
    pub fn vendors(&self) -> VendorData {
        self.lock().vendors.clone()
    }

    /// Lets a test or the demo seed the vendors' data.
    pub fn with_vendors<T>(&self, f: impl FnOnce(&mut VendorData) -> T) -> T {
        f(&mut self.lock().vendors)
    }

    /// Every built-in connector, and the edX fork's services expressed by config (Red
    /// Ventures, Commerce Coordinator, the certificates stage), set up against this fake:
    /// the one list the tests, the demo and the benches use.
    pub fn vendor_connectors(&self) -> Vec<Connector> {
        let base = self.base_url();
        let mut connectors: Vec<Connector> = [
            ("BRAZE", serde_json::json!({"api_url": format!("{base}/braze"), "api_key": self.state.config.braze_api_key, "batch_wait_seconds": BATCH_WAIT})),
            ("AMPLITUDE", serde_json::json!({"api_url": format!("{base}/amplitude"), "api_key": AMPLITUDE_API_KEY, "secret_key": AMPLITUDE_SECRET_KEY, "batch_wait_seconds": BATCH_WAIT, "poll_every_seconds": POLL_EVERY})),
            ("HUBSPOT", serde_json::json!({"api_url": format!("{base}/hubspot"), "access_token": HUBSPOT_TOKEN})),
            ("SEGMENT", serde_json::json!({"api_url": format!("{base}/segment"), "token": SEGMENT_TOKEN, "batch_wait_seconds": BATCH_WAIT, "poll_every_seconds": POLL_EVERY})),
            ("SALESFORCE_MARKETING_CLOUD", serde_json::json!({"subdomain": "fake", "client_id": SFMC_CLIENT.0, "client_secret": SFMC_CLIENT.1, "auth_url": format!("{base}/sfmc"), "rest_url": format!("{base}/sfmc")})),
            ("SALESFORCE", serde_json::json!({"instance_url": format!("{base}/salesforce"), "client_id": SALESFORCE_CLIENT.0, "client_secret": SALESFORCE_CLIENT.1, "assignee_id": SALESFORCE_CLIENT.2})),
        ]
        .into_iter()
        .map(|(service, value)| vendors::connector(service, value).expect("the fake's settings are valid"))
        .collect();
        connectors.extend(
            self.config_services()
                .iter()
                .map(|s| s.connector().expect("the fake's services are valid")),
        );
        connectors
    }

    /// The edX fork's services as `services:` entries against this fake (what the docs show
    /// operators): Red Ventures (vendor OAuth2 with an audience, email in the query, 404 means
    /// not found), Commerce Coordinator and the certificates stage (LMS JWT).
    pub fn config_services(&self) -> Vec<GenericService> {
        let base = self.base_url();
        vec![
            GenericService {
                service: "RED_VENTURES".into(),
                operation: "delete_user".into(),
                base_url: String::new(),
                path: String::new(),
                method: "POST".into(),
                body_template: serde_json::Value::Null,
                auth: Some(Auth::Oauth2(OAuth2 {
                    token_url: format!("{base}/redventures/oauth/token"),
                    client_id: RV_CLIENT.0.into(),
                    client_secret: Secret::new(RV_CLIENT.1),
                    audience: Some(RV_CLIENT.2.into()),
                    scope: None,
                    extra: BTreeMap::new(),
                    encoding: TokenEncoding::Form,
                })),
                request: Some(Request {
                    method: "DELETE".into(),
                    url: format!("{base}/redventures/deletion?email={{email}}"),
                    json: None,
                    headers: BTreeMap::new(),
                }),
                lookup: None,
                not_found: vec![404],
            },
            GenericService {
                service: "COMMERCE_COORDINATOR".into(),
                operation: "retire_learner".into(),
                base_url: base.clone(),
                path: "lms/user_retirement".into(),
                method: "POST".into(),
                body_template: serde_json::json!({"edx_lms_user_id": "{lms_user_id}"}),
                auth: None,
                request: None,
                lookup: None,
                not_found: Vec::new(),
            },
            GenericService {
                service: "LMS_CERTIFICATES".into(),
                operation: "retire_certs_s3_for_user".into(),
                base_url: String::new(),
                path: String::new(),
                method: "POST".into(),
                body_template: serde_json::Value::Null,
                auth: None,
                request: Some(Request {
                    method: "POST".into(),
                    url: format!("{base}/api/certificates/v1/retire_certs_s3_for_user"),
                    json: Some(serde_json::json!({"username": "{retired_username}"})),
                    headers: BTreeMap::new(),
                }),
                lookup: None,
                not_found: Vec::new(),
            },
        ]
    }
}
