//! `retire serve`: the operator console (issue 16) — the queue as a whole, the statutory
//! clock, one learner's timeline, and the audited actions, in server-rendered HTML and as a
//! JSON API under the same routes (`Accept: application/json`), plus `/metrics`.
//!
//! - [`Console`] (ops) is what an operator sees and does, over any store; no HTTP.
//! - [`access`]: sessions, password operators (argon2 hashes), LMS sign-in, CSRF tokens.
//! - `pages`: the HTML. `routes` (here): the axum router.
//!
//! Nothing is served without a session (`/metrics` also takes a bearer token for scrapers);
//! every POST carries the session's CSRF token (form field `csrf` or header `X-CSRF-Token`);
//! cookies are `HttpOnly`, `SameSite=Strict`, and `Secure` unless the console is plain HTTP
//! on loopback.

pub mod access;
mod ops;
mod pages;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use retirement_core::{Override, RetirementId};
use serde::Serialize;

pub use access::{Access, AccessConfig, LmsSignIn, Operator, Session};
pub use ops::{
    ActionName, Availability, BulkResult, Console, DUE_SOON_DAYS, Filter, LearnerPage, LearnerRow,
    LearnerView, Overview, PAGE_SIZE, Sort, TimelineEntry,
};

use crate::connectors::Secret;
use crate::error::HttpError;

/// The console's shared state.
struct App {
    console: Console,
    access: Access,
    metrics_token: Option<Secret>,
    flash: Mutex<HashMap<String, String>>,
}

/// The console's router.
pub fn router(console: Console, access: Access, metrics_token: Option<Secret>) -> Router {
    let app = Arc::new(App {
        console,
        access,
        metrics_token,
        flash: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/", get(overview))
        .route("/login", get(login_page).post(login))
        .route("/login/lms", get(login_lms))
        .route("/login/lms/callback", get(login_lms_callback))
        .route("/logout", post(logout))
        .route("/learners", get(learners))
        .route("/learners/{id}", get(learner))
        .route("/learners/{id}/{action}", post(act))
        .route("/bulk", get(bulk_page).post(bulk))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The session of a request, with its cookie id.
fn session_of(app: &App, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = cookie(headers, &app.access.cookie_name())?;
    let session = app.access.session(id, app.console.now())?;
    Some((id.to_owned(), session))
}

/// What an anonymous request gets: 401 for the API, the sign-in page for a browser.
fn anonymous(headers: &HeaderMap) -> Response {
    if wants_json(headers) {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": "sign in first"})),
        )
            .into_response()
    } else {
        Redirect::to("/login").into_response()
    }
}

macro_rules! signed_in {
    ($app:expr, $headers:expr) => {
        match session_of(&$app, &$headers) {
            Some(found) => found,
            None => return anonymous(&$headers),
        }
    };
}

/// Constant-time string comparison (CSRF tokens).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn csrf_ok(session: &Session, headers: &HeaderMap, form: &[(String, String)]) -> bool {
    let given = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .or_else(|| field(form, "csrf"));
    given.is_some_and(|token| same(token, &session.csrf))
}

fn forbidden(headers: &HeaderMap, session: Option<&Session>) -> Response {
    let message = "The form's CSRF token is missing or wrong: reload the page and try again.";
    if wants_json(headers) {
        (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({"error": message})),
        )
            .into_response()
    } else {
        (StatusCode::FORBIDDEN, pages::error(session, 403, message)).into_response()
    }
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn failure(headers: &HeaderMap, session: Option<&Session>, e: &HttpError) -> Response {
    let status = match e {
        HttpError::NotFound(_) => StatusCode::NOT_FOUND,
        HttpError::Refused(_) => StatusCode::CONFLICT,
        HttpError::Store(retirement_store::StoreError::Core(_)) => StatusCode::CONFLICT,
        HttpError::Store(retirement_store::StoreError::NotFound { .. }) => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_GATEWAY,
    };
    let message = e.to_string();
    if wants_json(headers) {
        (status, axum::Json(serde_json::json!({"error": message}))).into_response()
    } else {
        (status, pages::error(session, status.as_u16(), &message)).into_response()
    }
}

fn json<T: Serialize>(value: &T) -> Response {
    axum::Json(value).into_response()
}

fn take_flash(app: &App, id: &str) -> Option<String> {
    app.flash
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(id)
}

fn set_flash(app: &App, id: &str, message: String) {
    app.flash
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.to_owned(), message);
}

async fn overview(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (id, session) = signed_in!(app, headers);
    match app.console.overview().await {
        Ok(o) if wants_json(&headers) => json(&o),
        Ok(o) => pages::overview(
            &session,
            &o,
            &app.console.pipeline,
            &app.console.store_kind,
            take_flash(&app, &id).as_deref(),
        )
        .into_response(),
        Err(e) => failure(&headers, Some(&session), &e),
    }
}

async fn login_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if session_of(&app, &headers).is_some() {
        return Redirect::to("/").into_response();
    }
    pages::login(
        None,
        !app.access.config.operators.is_empty(),
        app.access.config.lms.is_some(),
    )
    .into_response()
}

fn signed_in_response(app: &App, id: &str, to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    if let Ok(value) = HeaderValue::from_str(&app.access.set_cookie(id)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn login(State(app): State<Arc<App>>, Form(form): Form<Vec<(String, String)>>) -> Response {
    let name = field(&form, "name").unwrap_or_default();
    let password = field(&form, "password").unwrap_or_default();
    match app
        .access
        .sign_in_password(name, password, app.console.now())
    {
        Ok((id, session)) => {
            tracing::info!(operator = %session.operator, via = "password", "console sign-in");
            signed_in_response(&app, &id, "/")
        }
        Err(e) => {
            tracing::warn!("console sign-in refused");
            (
                StatusCode::UNAUTHORIZED,
                pages::login(
                    Some(&e.to_string()),
                    !app.access.config.operators.is_empty(),
                    app.access.config.lms.is_some(),
                ),
            )
                .into_response()
        }
    }
}

const SIGN_IN_COOKIE: &str = "retire_signin";

async fn login_lms(State(app): State<Arc<App>>) -> Response {
    match app.access.lms_authorize_url(app.console.now()) {
        Some((url, state)) => {
            let mut response = Redirect::to(&url).into_response();
            // SameSite=Lax: the LMS's redirect back is a top-level navigation from its site.
            let cookie = format!(
                "{SIGN_IN_COOKIE}={state}; Path=/login/lms; HttpOnly; SameSite=Lax; Max-Age=600{}",
                if app.access.config.secure_cookies {
                    "; Secure"
                } else {
                    ""
                }
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        None => (
            StatusCode::NOT_FOUND,
            pages::error(None, 404, "LMS sign-in is not set up."),
        )
            .into_response(),
    }
}

#[derive(serde::Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn login_lms_callback(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let page = |message: String| {
        (
            StatusCode::UNAUTHORIZED,
            pages::login(
                Some(&message),
                !app.access.config.operators.is_empty(),
                app.access.config.lms.is_some(),
            ),
        )
            .into_response()
    };
    if let Some(error) = callback.error {
        return page(format!("The LMS refused the sign-in ({error})."));
    }
    let (Some(code), Some(state)) = (callback.code, callback.state) else {
        return page("The LMS sent no code back.".into());
    };
    match app
        .access
        .sign_in_lms(
            &code,
            &state,
            cookie(&headers, SIGN_IN_COOKIE),
            app.console.now(),
        )
        .await
    {
        Ok((id, session)) => {
            tracing::info!(operator = %session.operator, via = "lms", "console sign-in");
            signed_in_response(&app, &id, "/")
        }
        Err(e) => {
            tracing::warn!(reason = %e, "console LMS sign-in refused");
            page(e.to_string())
        }
    }
}

async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let (id, session) = signed_in!(app, headers);
    if !csrf_ok(&session, &headers, &form) {
        return forbidden(&headers, Some(&session));
    }
    app.access.sign_out(&id);
    let mut response = Redirect::to("/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&app.access.clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn learners(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let (_, session) = signed_in!(app, headers);
    let raw = raw.unwrap_or_default();
    // Empty form fields mean "any".
    let pairs: Vec<(String, String)> = url_pairs(&raw)
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let encoded = serde_urlencoded_pairs(&pairs);
    let filter: Filter = match serde_json::to_value(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), filter_value(k, v)))
            .collect::<serde_json::Map<_, _>>(),
    )
    .and_then(serde_json::from_value)
    {
        Ok(f) => f,
        Err(e) => {
            return failure(
                &headers,
                Some(&session),
                &HttpError::Refused(format!("bad filter: {e}")),
            );
        }
    };
    match app.console.learners(&filter).await {
        Ok(page) if wants_json(&headers) => json(&page),
        Ok(page) => {
            let states: Vec<String> = app
                .console
                .pipeline
                .all_states()
                .into_iter()
                .map(str::to_owned)
                .collect();
            let without_page: Vec<(String, String)> =
                pairs.into_iter().filter(|(k, _)| k != "page").collect();
            let _ = encoded;
            pages::learners(
                &session,
                &page,
                &filter,
                &states,
                &serde_urlencoded_pairs(&without_page),
            )
            .into_response()
        }
        Err(e) => failure(&headers, Some(&session), &e),
    }
}

/// A filter field as JSON: numbers for the numeric fields, strings otherwise.
fn filter_value(key: &str, value: &str) -> serde_json::Value {
    match key {
        "overdue" => match value {
            "true" | "on" | "1" => serde_json::Value::Bool(true),
            "false" | "0" => serde_json::Value::Bool(false),
            other => serde_json::Value::from(other),
        },
        "max_days_left" | "page" => value
            .trim()
            .parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| serde_json::Value::from(value)),
        _ => serde_json::Value::from(value),
    }
}

fn url_pairs(raw: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{raw}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

fn serde_urlencoded_pairs(pairs: &[(String, String)]) -> String {
    let mut url = match reqwest::Url::parse("http://x/") {
        Ok(url) => url,
        Err(_) => return String::new(),
    };
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

fn parse_id(id: &str) -> Result<RetirementId, HttpError> {
    id.parse::<i64>()
        .map(RetirementId)
        .map_err(|_| HttpError::NotFound(format!("{id:?} is not a retirement id")))
}

async fn learner(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (sid, session) = signed_in!(app, headers);
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return failure(&headers, Some(&session), &e),
    };
    match app.console.learner(id).await {
        Ok(view) if wants_json(&headers) => json(&view),
        Ok(view) => pages::learner(
            &session,
            &view,
            take_flash(&app, &sid).as_deref(),
            None,
            None,
        )
        .into_response(),
        Err(e) => failure(&headers, Some(&session), &e),
    }
}

async fn act(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let (sid, session) = signed_in!(app, headers);
    if !csrf_ok(&session, &headers, &form) {
        tracing::warn!(operator = %session.operator, "console action refused: bad CSRF token");
        return forbidden(&headers, Some(&session));
    }
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return failure(&headers, Some(&session), &e),
    };
    let Some(action) = ActionName::ALL.into_iter().find(|a| a.as_str() == action) else {
        return failure(
            &headers,
            Some(&session),
            &HttpError::NotFound(format!("no action {action:?}")),
        );
    };
    let why = Override {
        operator: session.operator.clone(),
        reason: field(&form, "reason").unwrap_or_default().trim().to_owned(),
    };
    let console = &app.console;
    let result: Result<(String, Option<String>), HttpError> = match action {
        ActionName::Reset => match field(&form, "to") {
            Some(to) => console
                .reset(id, to, &why)
                .await
                .map(|r| (format!("Reset to {}.", r.current_state()), None)),
            None => Err(HttpError::Refused("reset: choose a state".into())),
        },
        ActionName::Retry => console
            .retry(id, &why)
            .await
            .map(|r| (format!("Retrying: moved to {}.", r.current_state()), None)),
        ActionName::Rerun => console
            .rerun(id, &why)
            .await
            .map(|r| (format!("Rerun: moved to {}.", r.current_state()), None)),
        ActionName::Done => console.done(id, &why).await.map(|r| {
            (
                format!("Manual step done: moved to {}.", r.current_state()),
                None,
            )
        }),
        ActionName::Cancel => console.cancel(id, &why).await.map(|()| {
            (
                format!("Retirement {id} cancelled: its request is deleted."),
                None,
            )
        }),
        ActionName::Extend => console.extend(id, &why).await.map(|d| {
            (
                format!(
                    "Deadline extended: now due {} ({}).",
                    d.due.format("%Y-%m-%d"),
                    d.describe()
                ),
                None,
            )
        }),
        ActionName::Reveal => console.reveal(id, &why).await.map(|email| {
            (
                "Revealed (recorded in the timeline).".to_owned(),
                Some(email),
            )
        }),
    };
    match result {
        Ok((message, revealed)) => {
            tracing::info!(
                operator = %session.operator,
                retirement_id = id.0,
                action = action.as_str(),
                "console action"
            );
            if wants_json(&headers) {
                #[derive(Serialize)]
                struct Done {
                    retirement_id: i64,
                    action: &'static str,
                    message: String,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    original_email: Option<String>,
                }
                return json(&Done {
                    retirement_id: id.0,
                    action: action.as_str(),
                    message,
                    original_email: revealed,
                });
            }
            match (action, revealed) {
                (ActionName::Cancel, _) => {
                    set_flash(&app, &sid, message);
                    Redirect::to("/").into_response()
                }
                // The email is shown on this response only: never in a URL or a flash.
                (_, Some(email)) => match console.learner(id).await {
                    Ok(view) => pages::learner(&session, &view, Some(&message), None, Some(&email))
                        .into_response(),
                    Err(e) => failure(&headers, Some(&session), &e),
                },
                (_, None) => {
                    set_flash(&app, &sid, message);
                    Redirect::to(&format!("/learners/{}", id.0)).into_response()
                }
            }
        }
        Err(e) => {
            if wants_json(&headers) || matches!(e, HttpError::NotFound(_)) {
                return failure(&headers, Some(&session), &e);
            }
            match console.learner(id).await {
                Ok(view) => (
                    StatusCode::CONFLICT,
                    pages::learner(&session, &view, None, Some(&e.to_string()), None),
                )
                    .into_response(),
                Err(_) => failure(&headers, Some(&session), &e),
            }
        }
    }
}

async fn errored(app: &App) -> Result<Vec<LearnerRow>, HttpError> {
    Ok(app
        .console
        .rows()
        .await?
        .into_iter()
        .filter(|r| r.state == retirement_core::ERRORED)
        .collect())
}

async fn bulk_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (_, session) = signed_in!(app, headers);
    match errored(&app).await {
        Ok(rows) if wants_json(&headers) => json(&rows),
        Ok(rows) => pages::bulk(&session, &rows, None).into_response(),
        Err(e) => failure(&headers, Some(&session), &e),
    }
}

async fn bulk(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let (_, session) = signed_in!(app, headers);
    if !csrf_ok(&session, &headers, &form) {
        return forbidden(&headers, Some(&session));
    }
    let mut ids = Vec::new();
    for (k, v) in &form {
        if k == "id" {
            match parse_id(v) {
                Ok(id) => ids.push(id),
                Err(e) => return failure(&headers, Some(&session), &e),
            }
        }
    }
    let why = Override {
        operator: session.operator.clone(),
        reason: field(&form, "reason").unwrap_or_default().trim().to_owned(),
    };
    let result = app.console.retry_all(&ids, &why).await;
    tracing::info!(
        operator = %session.operator,
        moved = result.moved.len(),
        refused = result.refused.len(),
        "console bulk retry"
    );
    if wants_json(&headers) {
        return json(&result);
    }
    match errored(&app).await {
        Ok(rows) => pages::bulk(&session, &rows, Some(&result)).into_response(),
        Err(e) => failure(&headers, Some(&session), &e),
    }
}

async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let by_token =
        matches!((&app.metrics_token, bearer), (Some(t), Some(b)) if same(t.expose(), b));
    if !by_token && session_of(&app, &headers).is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            "sign in, or send the metrics bearer token\n",
        )
            .into_response();
    }
    match app.console.overview().await {
        Ok(o) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            render_metrics(&o),
        )
            .into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response(),
    }
}

/// The overview as Prometheus text.
pub fn render_metrics(o: &Overview) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP retirement_learners Learners in each state.\n# TYPE retirement_learners gauge"
    );
    for (state, n) in &o.by_state {
        let _ = writeln!(out, "retirement_learners{{state=\"{state}\"}} {n}");
    }
    let gauges = [
        (
            "retirement_errored",
            "Learners in ERRORED.",
            o.errored as i64,
        ),
        (
            "retirement_overdue",
            "Open requests past their statutory due date.",
            o.overdue as i64,
        ),
        (
            "retirement_due_soon",
            "Open requests due within 7 days, not yet overdue.",
            o.due_soon as i64,
        ),
        (
            "retirement_stuck",
            "Learners in a working state whose worker died.",
            o.stuck as i64,
        ),
        (
            "retirement_waiting",
            "Learners parked on a vendor job or a person.",
            o.waiting as i64,
        ),
        (
            "retirement_oldest_pending_age_seconds",
            "Age of the oldest PENDING request (0 when none).",
            o.oldest_pending_seconds.unwrap_or(0),
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    out
}
