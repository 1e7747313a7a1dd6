//! Faults and pause gates around the LMS status API's answers.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;

use super::*;

/// The LMS status API's faults and pauses, around its handlers (the step endpoints apply
/// their own faults, before the state guard's answer):
/// - `status`: answered instead of the handler (nothing written);
/// - `latency`: waited before answering (after the handler ran);
/// - `reset`: the handler ran (a write committed), then the answer breaks off: a lost
///   acknowledgement;
/// - `hang`: the handler ran, then no answer ever comes.
///
/// Then, while the path is paused ([`FakeEdx::pause`]), the computed answer is held.
pub(super) async fn around_answers(
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
            retry_after,
            ..
        }) => bare_after(*status, body.clone().unwrap_or_default(), *retry_after),
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
pub(super) fn is_status_api(path: &str) -> bool {
    if path.starts_with("/api/v2/enterprise-catalogs/")
        || path.starts_with("/api/v1/subsidies/")
        || path.starts_with("/enterprise/api/v1/enterprise-customer/")
        || vendors::PREFIXES.iter().any(|p| path.starts_with(p))
    {
        // enterprise-catalog's and enterprise-subsidy's endpoints take faults the same way.
        return true;
    }
    if path == "/api/user/v1/accounts" || path == "/v1/accounts/bulk_retire_users" {
        return true;
    }
    let Some(rest) = path.strip_prefix("/api/user/v1/accounts/") else {
        return false;
    };
    matches!(
        rest,
        "retirement_queue/"
            | "retirements_by_status_and_date/"
            | "update_retirement_status/"
            | "retirement_cleanup/"
            | "retirement_partner_report_cleanup/"
            | "cancel_retirement/"
    ) || rest.ends_with("/retirement_status/")
}

/// Headers, the start of a body, then a broken connection.
pub(super) fn broken_answer() -> Response {
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
