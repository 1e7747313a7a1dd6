//! How requests reach the services. [`Network`] sends them with reqwest; a simulation plugs
//! in a [`Transport`] that answers inside the process (the fake edX's in-process transport),
//! so a whole run can go on under tokio's paused clock with no socket, deterministically.
//!
//! Requests are built with reqwest's builder either way, each carrying its own total timeout
//! ([`reqwest::Request::timeout`]), which every transport honours.

use std::time::Duration;

use async_trait::async_trait;
use retirement_core::TransportErrorKind;

/// A whole HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// The `Retry-After` delay, when given in seconds.
    pub retry_after: Option<Duration>,
    /// The body as text, or how it broke off after the headers came.
    pub body: Result<String, Failure>,
}

/// A request that got no (whole) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// How it failed.
    pub kind: TransportErrorKind,
    /// A description without the URL's query, secrets or PII.
    pub message: String,
}

/// Sends a request and reads its whole answer.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Sends `request` within its own timeout (`request.timeout()`).
    async fn send(&self, request: reqwest::Request) -> Result<Answer, Failure>;
}

/// The network, through a reqwest client (its connection pool and connect timeout).
#[derive(Debug, Clone)]
pub struct Network {
    client: reqwest::Client,
}

impl Network {
    /// Requests go through `client`.
    pub fn new(client: reqwest::Client) -> Network {
        Network { client }
    }
}

#[async_trait]
impl Transport for Network {
    async fn send(&self, request: reqwest::Request) -> Result<Answer, Failure> {
        let response = self.client.execute(request).await.map_err(|e| Failure {
            kind: classify(&e),
            message: describe(&e),
        })?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let body = response.text().await.map_err(|e| Failure {
            kind: TransportErrorKind::Reset,
            message: format!("HTTP {status}, then the body broke off: {}", describe(&e)),
        });
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
}

/// `Retry-After` in seconds, when present and numeric.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A reqwest error's description without its URL, and the source chain that says why.
pub(crate) fn describe(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut message = error.to_string();
    if let Some(url) = error.url() {
        message = message.replace(&format!(" ({url})"), "");
    }
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn classify(error: &reqwest::Error) -> TransportErrorKind {
    if error.is_timeout() {
        TransportErrorKind::Timeout
    } else if error.is_connect() {
        TransportErrorKind::Connect
    } else {
        let text = describe(error).to_lowercase();
        if [
            "reset",
            "closed",
            "incomplete",
            "broken pipe",
            "unexpected eof",
        ]
        .iter()
        .any(|w| text.contains(w))
            || error.is_body()
        {
            TransportErrorKind::Reset
        } else {
            TransportErrorKind::Other
        }
    }
}
