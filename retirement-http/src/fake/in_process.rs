//! The fake's socket-less transport, for simulations under a paused clock.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;

use crate::transport::{Answer, Failure, Transport};
use retirement_core::TransportErrorKind;

/// Answers requests with the fake's router inside the process: no socket, so a simulation
/// under tokio's paused clock is deterministic. Honours each request's timeout on tokio's
/// clock; a dropped request drops its handler (as a closed connection would).
pub(super) struct InProcess {
    pub(super) router: Router,
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
