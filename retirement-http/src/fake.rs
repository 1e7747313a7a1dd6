//! A fake edX on 127.0.0.1 for tests, the demo and the benchmarks: token issuing and expiry,
//! the retirement step endpoints with upstream's state guard, per-path fault injection, and a
//! record of every call (including any two overlapping calls for one learner).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Form, Path, Query};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use chrono::{DateTime, Utc};
use retirement_core::{SplitMix64, StateTable};
use serde::Serialize;

use crate::catalog;
use crate::clock::Clock;
use crate::error::HttpError;
use crate::status_json::{StatusJson, status_list};
use crate::transport::{Answer, Failure, Transport};
use retirement_core::TransportErrorKind;
use retirement_store::{DieselStore, QueueQuery, RetirementStore, StateWindow, StoreError};

/// What a path does instead of answering normally.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fault {
    /// Answer with this status (and `body`) instead of success.
    pub status: Option<u16>,
    /// The body for `status`.
    pub body: Option<String>,
    /// Wait this long before answering.
    pub latency: Duration,
    /// Never answer (the client's timeout must fire).
    pub hang: bool,
    /// Send headers, then break the connection off mid-body.
    pub reset: bool,
    /// Apply the fault to this share of calls only (0 < rate ≤ 1; 0 means always), drawn from
    /// the fake's seeded generator.
    pub rate: f64,
}

/// One recorded call.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedCall {
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The JSON body (`null` when empty or not JSON).
    pub body: serde_json::Value,
    /// The status answered (0 when the call hung or was cut off).
    pub status: u16,
    /// The learner's state in `FakeConfig::lms_store` when the call arrived (every step
    /// call naming a learner the store knows): what the chaos runs check each call against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learner_state: Option<String>,
}

/// How the fake is set up. `Debug` leaves the client secret out.
#[derive(Clone)]
pub struct FakeConfig {
    /// The OAuth2 client it accepts.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// How long an issued token lives.
    pub token_ttl: Duration,
    /// The seed of the fault generator.
    pub seed: u64,
    /// Enforce the step endpoints' state guard (learners must be known and in a working state).
    pub enforce_state_guard: bool,
    /// Serve the LMS's retirement status API from this store (and guard the step endpoints
    /// with its states): the fake LMS of the LMS-backed store's tests and the demo.
    pub lms_store: Option<Arc<DieselStore>>,
}

impl std::fmt::Debug for FakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &format_args!("<redacted>"))
            .field("token_ttl", &self.token_ttl)
            .field("seed", &self.seed)
            .field("enforce_state_guard", &self.enforce_state_guard)
            .field("lms_store", &self.lms_store)
            .finish()
    }
}

impl Default for FakeConfig {
    fn default() -> FakeConfig {
        FakeConfig {
            client_id: "retirement-worker".into(),
            client_secret: "s3cret".into(),
            token_ttl: Duration::from_secs(3600),
            seed: 7,
            enforce_state_guard: false,
            lms_store: None,
        }
    }
}

#[derive(Default)]
struct Shared {
    tokens: HashMap<String, Instant>,
    issued: u64,
    calls: Vec<RecordedCall>,
    in_flight: HashMap<String, u32>,
    overlaps: Vec<String>,
    faults: HashMap<String, Vec<Fault>>,
    learners: HashMap<String, String>,
    pauses: HashMap<String, Arc<PauseGate>>,
    answers: Vec<(String, u16)>,
}

/// A held path: each answer waits, computed, until the test releases it.
struct PauseGate {
    arrived: tokio::sync::Notify,
    released: tokio::sync::watch::Sender<bool>,
}

/// Holds the answers of one path of a [`FakeEdx`] after they were computed and before they
/// are sent: a request "in flight" for as long as a test needs, to order events exactly.
/// Dropping it releases the path.
pub struct Pause {
    state: Arc<FakeState>,
    path: String,
    gate: Arc<PauseGate>,
}

impl Pause {
    /// Waits until an answer on the path was computed and is being held.
    pub async fn arrived(&self) {
        self.gate.arrived.notified().await;
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        self.state.lock().pauses.remove(&self.path);
        let _ = self.gate.released.send(true);
    }
}

/// The fake LMS's clock: the real time unless a test set one or made it follow another clock
/// (a simulation's). Cloning shares it.
#[derive(Clone, Default)]
pub struct FakeClock(Arc<Mutex<FakeTime>>);

#[derive(Default)]
enum FakeTime {
    #[default]
    Real,
    Fixed(DateTime<Utc>),
    Follow(Arc<dyn Clock>),
}

impl FakeClock {
    /// From now on the fake LMS reads `now` (or, with `None`, the real clock again).
    pub fn set(&self, now: Option<DateTime<Utc>>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = match now {
            Some(now) => FakeTime::Fixed(now),
            None => FakeTime::Real,
        };
    }

    /// From now on the fake LMS reads `clock`.
    pub fn follow(&self, clock: Arc<dyn Clock>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = FakeTime::Follow(clock);
    }

    fn now(&self) -> DateTime<Utc> {
        match &*self.0.lock().unwrap_or_else(|p| p.into_inner()) {
            FakeTime::Real => Utc::now(),
            FakeTime::Fixed(now) => *now,
            FakeTime::Follow(clock) => clock.now(),
        }
    }
}

struct FakeState {
    clock: FakeClock,
    config: FakeConfig,
    shared: Mutex<Shared>,
    random: Mutex<SplitMix64>,
    /// The guard's state table: upstream's default, or the LMS store's (reloaded when a
    /// state is missing, so a sync after start is seen).
    table: Mutex<StateTable>,
}

/// A running fake edX: on 127.0.0.1 ([`FakeEdx::start`]) or inside the process
/// ([`FakeEdx::in_process`]). Dropping it stops the server.
pub struct FakeEdx {
    address: Option<SocketAddr>,
    state: Arc<FakeState>,
    router: Router,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeEdx {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

/// The path each stage of `pipeline` calls (`/api/…/`), from the catalog, in stage order: the
/// one list the tests, the simulation, the chaos runs and the benches check calls against.
/// Stages outside the catalog (generic or built-in services) are left out.
pub fn step_paths(pipeline: &retirement_core::Pipeline) -> Vec<String> {
    pipeline
        .stages()
        .iter()
        .filter_map(|stage| catalog::find(&stage.service, &stage.operation))
        .map(|op| format!("/{}", op.path))
        .collect()
}

/// The six-stage example pipeline's step paths ([`step_paths`]).
pub fn six_stage_step_paths() -> Vec<String> {
    step_paths(&retirement_core::Pipeline::six_stage_example().1)
}

/// The base URL of an in-process fake (never resolved: its requests never leave the process).
pub const IN_PROCESS_URL: &str = "http://fake-edx.invalid";

/// Answers requests with the fake's router inside the process: no socket, so a simulation
/// under tokio's paused clock is deterministic. Honours each request's timeout on tokio's
/// clock; a dropped request drops its handler (as a closed connection would).
struct InProcess {
    router: Router,
}

#[async_trait::async_trait]
impl Transport for InProcess {
    async fn send(&self, request: reqwest::Request) -> Result<Answer, Failure> {
        use tower::ServiceExt;
        let timeout = request.timeout().copied();
        let request: axum::http::Request<reqwest::Body> =
            request.try_into().map_err(|e: reqwest::Error| Failure {
                kind: TransportErrorKind::Other,
                message: crate::transport::describe(&e),
            })?;
        let (parts, body) = request.into_parts();
        let bytes = body
            .as_bytes()
            .map(Bytes::copy_from_slice)
            .unwrap_or_default();
        let request = Request::from_parts(parts, Body::from(bytes));
        let router = self.router.clone();
        let exchange = async move {
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let status = response.status().as_u16();
            let retry_after = crate::transport::retry_after(response.headers());
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| Failure {
                    kind: TransportErrorKind::Reset,
                    message: format!("HTTP {status}, then the body broke off: {e}"),
                });
            Answer {
                status,
                retry_after,
                body,
            }
        };
        match timeout {
            Some(limit) => tokio::time::timeout(limit, exchange)
                .await
                .map_err(|_| Failure {
                    kind: TransportErrorKind::Timeout,
                    message: "operation timed out".into(),
                }),
            None => Ok(exchange.await),
        }
    }
}

impl FakeEdx {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    pub async fn start(config: FakeConfig) -> Result<FakeEdx, HttpError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| HttpError::Fake(e.to_string()))?;
        let address = listener
            .local_addr()
            .map_err(|e| HttpError::Fake(e.to_string()))?;
        let mut fake = FakeEdx::in_process(config);
        let app = fake.router.clone();
        fake.address = Some(address);
        fake.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        Ok(fake)
    }

    /// The fake without a socket: reach it through [`FakeEdx::transport`] at
    /// [`IN_PROCESS_URL`].
    pub fn in_process(config: FakeConfig) -> FakeEdx {
        let state = Arc::new(FakeState {
            clock: FakeClock::default(),
            random: Mutex::new(SplitMix64::new(config.seed)),
            config,
            shared: Mutex::new(Shared::default()),
            table: Mutex::new(StateTable::upstream_default()),
        });
        let accounts = "/api/user/v1/accounts";
        let router = Router::new()
            .route("/oauth2/access_token", post(issue_token))
            .route(&format!("{accounts}/retirement_queue/"), get(lms_queue))
            .route(
                &format!("{accounts}/retirements_by_status_and_date/"),
                get(lms_by_date),
            )
            .route(
                &format!("{accounts}/{{username}}/retirement_status/"),
                get(lms_status),
            )
            .route(
                &format!("{accounts}/update_retirement_status/"),
                patch(lms_update),
            )
            .route(
                &format!("{accounts}/retirement_cleanup/"),
                post(lms_cleanup),
            )
            .route(&format!("{accounts}/cancel_retirement/"), post(lms_cancel))
            .fallback(step)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                around_answers,
            ))
            .with_state(state.clone());
        FakeEdx {
            address: None,
            state,
            router,
            server: None,
        }
    }

    /// A transport that answers with this fake inside the process (for
    /// [`crate::ServiceClients::with_transport`]).
    pub fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(InProcess {
            router: self.router.clone(),
        })
    }

    /// `http://127.0.0.1:<port>`, or [`IN_PROCESS_URL`] for an in-process fake.
    pub fn base_url(&self) -> String {
        match self.address {
            Some(address) => format!("http://{address}"),
            None => IN_PROCESS_URL.to_owned(),
        }
    }

    /// The LMS status API's clock (cool-off, date checks, `modified`), settable by tests.
    pub fn clock(&self) -> FakeClock {
        self.state.clock.clone()
    }

    /// Every call so far, in arrival order (token requests excluded).
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.lock().calls.clone()
    }

    /// Every answer of the LMS status API so far, as (path, status), in order: the status its
    /// handler (or a status fault) gave, even where a fault then lost or held the answer.
    pub fn status_api_answers(&self) -> Vec<(String, u16)> {
        self.lock().answers.clone()
    }

    /// Usernames that had two calls in flight at once.
    pub fn overlaps(&self) -> Vec<String> {
        self.lock().overlaps.clone()
    }

    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.lock().issued
    }

    /// Expires every issued token now (a service then answers 401).
    pub fn expire_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// Sets (or with `None`, clears) the fault of one path.
    pub fn set_fault(&self, path: &str, fault: Option<Fault>) {
        self.set_fault_mix(path, fault.into_iter().collect());
    }

    /// Sets several faults on one path (an empty list clears them). One seeded draw per call
    /// picks at most one: the first whose `rate` band, stacked in list order, holds the draw
    /// (a `rate` of 0 means "always" and takes whatever the earlier bands left).
    pub fn set_fault_mix(&self, path: &str, faults: Vec<Fault>) {
        let mut shared = self.lock();
        if faults.is_empty() {
            shared.faults.remove(path);
        } else {
            shared.faults.insert(path.to_owned(), faults);
        }
    }

    /// Holds every answer on `path` (computed, not yet sent) until the returned [`Pause`] is
    /// dropped.
    pub fn pause(&self, path: &str) -> Pause {
        let gate = Arc::new(PauseGate {
            arrived: tokio::sync::Notify::new(),
            released: tokio::sync::watch::channel(false).0,
        });
        self.lock().pauses.insert(path.to_owned(), gate.clone());
        Pause {
            state: self.state.clone(),
            path: path.to_owned(),
            gate,
        }
    }

    /// Records a learner's current state for the step endpoints' guard.
    pub fn set_learner_state(&self, original_username: &str, state: &str) {
        self.lock()
            .learners
            .insert(original_username.to_owned(), state.to_owned());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.state.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl FakeState {
    async fn actionable(&self, current: &str) -> bool {
        let known = self
            .table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(current)
            .is_some();
        if !known
            && let Some(store) = &self.config.lms_store
            && let Ok(table) = store.state_table().await
        {
            *self.table.lock().unwrap_or_else(|p| p.into_inner()) = table;
        }
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_actionable(current)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fault this call of `path` meets, if any: one seeded draw picks at most one.
    fn pick_fault(&self, path: &str) -> Option<Fault> {
        let faults = self.lock().faults.get(path).cloned().unwrap_or_default();
        if faults.iter().all(|f| f.rate <= 0.0) {
            return faults.into_iter().next();
        }
        let draw = self
            .random
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_u64() as f64
            / u64::MAX as f64;
        let mut band = 0.0;
        faults.into_iter().find(|f| {
            if f.rate <= 0.0 {
                return true;
            }
            band += f.rate;
            draw < band
        })
    }
}

async fn issue_token(
    State(state): State<Arc<FakeState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("client_id") == Some(&state.config.client_id)
        && form.get("client_secret") == Some(&state.config.client_secret)
        && form.get("token_type").map(String::as_str) == Some("jwt");
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let mut shared = state.lock();
    shared.issued += 1;
    let token = format!("fake-jwt-{}", shared.issued);
    shared
        .tokens
        .insert(token.clone(), Instant::now() + state.config.token_ttl);
    axum::Json(serde_json::json!({
        "access_token": token,
        "expires_in": state.config.token_ttl.as_secs(),
        "token_type": "JWT",
    }))
    .into_response()
}

/// Decrements a learner's in-flight count however the handler ends (a client that times out
/// drops the connection, and with it this future).
struct InFlight {
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

/// The LMS status API's faults and pauses, around its handlers (the step endpoints apply
/// their own faults, before the state guard's answer):
/// - `status`: answered instead of the handler (nothing written);
/// - `latency`: waited before answering (after the handler ran);
/// - `reset`: the handler ran (a write committed), then the answer breaks off: a lost
///   acknowledgement;
/// - `hang`: the handler ran, then no answer ever comes.
///
/// Then, while the path is paused ([`FakeEdx::pause`]), the computed answer is held.
async fn around_answers(
    State(state): State<Arc<FakeState>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let fault = if is_status_api(&path) {
        state.pick_fault(&path)
    } else {
        None
    };
    let response = match &fault {
        Some(Fault {
            status: Some(status),
            body,
            ..
        }) => bare(*status, body.clone().unwrap_or_default()),
        _ => next.run(request).await,
    };
    if is_status_api(&path) {
        let status = response.status().as_u16();
        state.lock().answers.push((path.clone(), status));
    }
    if let Some(fault) = &fault {
        if !fault.latency.is_zero() {
            tokio::time::sleep(fault.latency).await;
        }
        if fault.hang {
            std::future::pending::<()>().await;
        }
        if fault.reset {
            return broken_answer();
        }
    }
    let gate = state.lock().pauses.get(&path).cloned();
    if let Some(gate) = gate {
        let mut released = gate.released.subscribe();
        gate.arrived.notify_one();
        let _ = released.wait_for(|r| *r).await;
    }
    response
}

/// Whether `path` belongs to the LMS retirement status API (served from `lms_store`).
fn is_status_api(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/user/v1/accounts/") else {
        return false;
    };
    matches!(
        rest,
        "retirement_queue/"
            | "retirements_by_status_and_date/"
            | "update_retirement_status/"
            | "retirement_cleanup/"
            | "cancel_retirement/"
    ) || rest.ends_with("/retirement_status/")
}

/// Headers, the start of a body, then a broken connection.
fn broken_answer() -> Response {
    let broken = futures_util::stream::iter([
        Ok::<Bytes, std::io::Error>(Bytes::from_static(b"{\"partial\"")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset by fake",
        )),
    ]);
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from_stream(broken))
        .unwrap_or_default()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn step(State(state): State<Arc<FakeState>>, request: Request) -> Response {
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
    let authorised = record
        .authorization
        .as_deref()
        .and_then(|h| h.strip_prefix("JWT "))
        .is_some_and(|token| {
            state
                .lock()
                .tokens
                .get(token)
                .is_some_and(|expires| *expires > Instant::now())
        });
    if !authorised {
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
    let username = json
        .get("username")
        .or_else(|| json.get("original_username"))
        .and_then(|u| u.as_str())
        .map(str::to_owned);
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
            return respond(&state, record, status, body);
        }
    }
    record.status = if operation.name == "retirement_unenroll" {
        200
    } else {
        204
    };
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
fn path_matches(template: &str, path: &str) -> bool {
    let path = path.trim_start_matches('/');
    match template.split_once("{user_id}") {
        None => template == path,
        Some((prefix, suffix)) => path
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())),
    }
}

// ----- the LMS retirement status API, served from `FakeConfig::lms_store` -----

fn authorised(state: &FakeState, headers: &HeaderMap) -> bool {
    header(headers, "authorization")
        .as_deref()
        .and_then(|h| h.strip_prefix("JWT "))
        .is_some_and(|token| {
            state
                .lock()
                .tokens
                .get(token)
                .is_some_and(|expires| *expires > Instant::now())
        })
}

fn bare(status: u16, message: impl Into<String>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(serde_json::Value::String(message.into()))).into_response()
}

/// Checks auth and that a store is configured; records the call.
fn lms_gate(
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
    });
    if !authorised(state, headers) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    state.config.lms_store.clone().ok_or(StatusCode::NOT_FOUND)
}

async fn lms_queue(
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

async fn lms_by_date(
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
async fn list_response(
    store: &DieselStore,
    listed: Result<Vec<retirement_core::Retirement>, StoreError>,
) -> Response {
    match (listed, store.state_table().await) {
        (Ok(list), Ok(table)) => axum::Json(status_list(&list, &table)).into_response(),
        (Err(e), _) | (_, Err(e)) => bare(400, e.to_string()),
    }
}

async fn lms_status(
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

async fn lms_update(
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

async fn lms_cleanup(
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

async fn lms_cancel(
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
