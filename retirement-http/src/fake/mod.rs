//! A fake edX on 127.0.0.1 for tests, the demo and the benchmarks: token issuing and expiry,
//! the retirement step endpoints with upstream's state guard, per-path fault injection, and a
//! record of every call (including any two overlapping calls for one learner).

//!
//! Split by concern: `tokens` (the OAuth2 token endpoint), `steps` (the step endpoints and their
//! state guard), `lms` (the LMS retirement status API over `FakeConfig::lms_store`), `faults`
//! (faults and pause gates around the status API), `in_process` (the socket-less transport),
//! `enterprise` (enterprise-catalog's content metadata and enterprise-subsidy's subsidies).

#[cfg(feature = "console")]
pub mod console;
mod enterprise;
mod faults;
mod in_process;
mod lms;
mod partner;
pub mod sinks;
mod steps;
mod tokens;
mod vendors;

pub use vendors::{
    AMPLITUDE_API_KEY, AMPLITUDE_MAX_IDS, AMPLITUDE_SECRET_KEY, BATCH_WAIT, BRAZE_MAX_IDS,
    HUBSPOT_TOKEN, POLL_EVERY, RV_CLIENT, SALESFORCE_CLIENT, SEGMENT_MAX_IDS, SEGMENT_TOKEN,
    SFMC_CLIENT, VendorData,
};

use faults::around_answers;
use in_process::InProcess;
pub use lms::{FakeUser, LMS_COOL_OFF_DAYS};
use lms::{lms_by_date, lms_cancel, lms_cleanup, lms_queue, lms_status, lms_update};
use steps::step;
use tokens::issue_token;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use chrono::{DateTime, Utc};
use retirement_core::{SplitMix64, StateTable};
use serde::Serialize;

use crate::catalog;
use crate::clock::Clock;
use crate::error::HttpError;
use crate::transport::Transport;
use retirement_store::{DieselStore, RetirementStore};

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
    /// With `status`: the `Retry-After` header, in seconds (a rate limit's 429).
    pub retry_after: Option<Duration>,
    /// The fault ends at this instant of tokio's clock (a service down for a while, then
    /// back); `None`: it lasts until cleared.
    pub until: Option<Instant>,
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
    /// The `User-Agent` header: `retire` names its worker there, so a run with several
    /// workers can tell who called (left out of snapshots: it carries the version).
    #[serde(skip)]
    pub user_agent: Option<String>,
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
    /// The REST API key the fake Braze (under `/braze`) accepts.
    pub braze_api_key: String,
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
            braze_api_key: "braze-key".into(),
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
    /// enterprise-catalog's records by catalog uuid.
    catalogs: HashMap<String, Vec<serde_json::Value>>,
    /// enterprise-subsidy's records by subsidy uuid.
    subsidies: HashMap<String, serde_json::Value>,
    /// The LMS's enterprise customers by uuid.
    customers: HashMap<String, serde_json::Value>,
    /// The third-party vendors' data.
    vendors: VendorData,
    /// The LMS's user accounts (the account lookup, bulk retirement).
    users: Vec<FakeUser>,
    /// Who the LMS's OAuth2 provider signs in (`set_sign_in`): username and staff flag.
    sign_in: Option<(String, bool)>,
    /// Authorization codes issued: code -> (redirect_uri, username, staff).
    codes: HashMap<String, (String, String, bool)>,
    /// The orgs each learner is enrolled in (the partner queue's source).
    partner_orgs: HashMap<String, Vec<String>>,
    /// The partner-reporting queue.
    partner_rows: Vec<partner::PartnerEntry>,
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
            .route("/oauth2/authorize", get(tokens::authorize))
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
                &format!("{accounts}/retirement_partner_report/"),
                post(partner::report).put(step),
            )
            .route(
                &format!("{accounts}/retirement_partner_report_cleanup/"),
                post(partner::cleanup),
            )
            .route(
                &format!("{accounts}/retirement_cleanup/"),
                post(lms_cleanup),
            )
            .route(&format!("{accounts}/cancel_retirement/"), post(lms_cancel))
            .route(accounts, get(lms::lms_accounts))
            .route("/v1/accounts/bulk_retire_users", post(lms::lms_bulk_retire))
            .route(
                "/api/v2/enterprise-catalogs/{catalog}/get_content_metadata/",
                get(enterprise::content_metadata),
            )
            .route("/api/v1/subsidies/{subsidy}/", get(enterprise::subsidy))
            .route(
                "/enterprise/api/v1/enterprise-customer/{uuid}/",
                get(enterprise::enterprise_customer),
            )
            .route("/braze/{*rest}", post(enterprise::braze))
            .route(
                "/amplitude/api/2/deletions/users",
                post(vendors::amplitude_delete).get(vendors::amplitude_jobs),
            )
            .route(
                "/salesforce/services/oauth2/token",
                post(vendors::vendor_token),
            )
            .route(
                "/salesforce/services/data/{version}/{*rest}",
                get(vendors::salesforce).post(vendors::salesforce),
            )
            .route(
                "/hubspot/crm/v3/objects/contacts/gdpr-delete",
                post(vendors::hubspot_gdpr_delete),
            )
            .route("/segment/regulations", post(vendors::segment_create))
            .route("/segment/regulations/{id}", get(vendors::segment_status))
            .route("/sfmc/v2/token", post(vendors::vendor_token))
            .route("/redventures/oauth/token", post(vendors::vendor_token))
            .route("/sfmc/contacts/{*rest}", post(vendors::sfmc_rest))
            .route(
                "/redventures/deletion",
                axum::routing::delete(vendors::redventures_delete),
            )
            .route("/lms/user_retirement/", post(vendors::jwt_stage))
            .route(
                "/api/certificates/v1/retire_certs_s3_for_user",
                post(vendors::jwt_stage),
            )
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

    /// The user the LMS's OAuth2 provider signs in when a browser arrives at
    /// `/oauth2/authorize` (`None`: the user declines, `error=access_denied`).
    pub fn set_sign_in(&self, user: Option<(&str, bool)>) {
        self.state.lock().sign_in = user.map(|(name, staff)| (name.to_owned(), staff));
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
        let now = Instant::now();
        let faults: Vec<Fault> = self
            .lock()
            .faults
            .get(path)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f.until.is_none_or(|end| now < end))
            .collect();
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

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn bare_after(status: u16, message: impl Into<String>, retry_after: Option<Duration>) -> Response {
    let mut response = bare(status, message);
    if let Some(after) = retry_after
        && let Ok(value) = axum::http::HeaderValue::from_str(&after.as_secs().to_string())
    {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

fn bare(status: u16, message: impl Into<String>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(serde_json::Value::String(message.into()))).into_response()
}
