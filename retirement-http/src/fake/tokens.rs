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
