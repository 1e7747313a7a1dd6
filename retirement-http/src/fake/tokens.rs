//! The OAuth2 token endpoint and the token check every other endpoint makes.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use axum::extract::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::*;

pub(super) async fn issue_token(
    State(state): State<Arc<FakeState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if form.get("grant_type").map(String::as_str) == Some("authorization_code") {
        return code_grant(&state, &form);
    }
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

pub(super) fn authorised(state: &FakeState, headers: &HeaderMap) -> bool {
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

/// The LMS's OAuth2 authorization endpoint, as a signed-in user who approves at once: a
/// redirect back with a one-time code (or `error=access_denied` when nobody is signed in).
pub(super) async fn authorize(
    State(state): State<Arc<FakeState>>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let (Some(redirect), Some(client_id)) = (query.get("redirect_uri"), query.get("client_id"))
    else {
        return (
            StatusCode::BAD_REQUEST,
            "redirect_uri and client_id are required",
        )
            .into_response();
    };
    if query.get("response_type").map(String::as_str) != Some("code") {
        return (StatusCode::BAD_REQUEST, "unsupported_response_type").into_response();
    }
    let state_param = query.get("state").cloned().unwrap_or_default();
    let mut shared = state.lock();
    let mut url = match reqwest::Url::parse(redirect) {
        Ok(url) => url,
        Err(_) => return (StatusCode::BAD_REQUEST, "bad redirect_uri").into_response(),
    };
    if client_id != &state.config.client_id {
        url.query_pairs_mut()
            .append_pair("error", "invalid_client")
            .append_pair("state", &state_param);
    } else if let Some((user, staff)) = shared.sign_in.clone() {
        shared.issued += 1;
        let code = format!("fake-code-{}", shared.issued);
        shared
            .codes
            .insert(code.clone(), (redirect.clone(), user, staff));
        url.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &state_param);
    } else {
        url.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", &state_param);
    }
    axum::response::Redirect::to(url.as_str()).into_response()
}

/// `grant_type=authorization_code`: one use per code, same redirect URI, the client's secret;
/// answers a JWT whose claims carry the username and `administrator` (the LMS's is_staff).
fn code_grant(state: &FakeState, form: &HashMap<String, String>) -> Response {
    use base64::Engine as _;
    let mut shared = state.lock();
    let code = form.get("code").cloned().unwrap_or_default();
    let granted = shared.codes.remove(&code);
    let client_ok = form.get("client_id") == Some(&state.config.client_id)
        && form.get("client_secret") == Some(&state.config.client_secret);
    match granted {
        Some((redirect, user, staff))
            if client_ok && form.get("redirect_uri") == Some(&redirect) =>
        {
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
            let claims = b64.encode(
                serde_json::json!({
                    "preferred_username": user,
                    "administrator": staff,
                    "iss": "fake-lms",
                })
                .to_string(),
            );
            shared.issued += 1;
            axum::Json(serde_json::json!({
                "access_token": format!("{header}.{claims}.fake-signature"),
                "expires_in": 3600,
                "token_type": "JWT",
            }))
            .into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": "invalid_grant"})),
        )
            .into_response(),
    }
}
