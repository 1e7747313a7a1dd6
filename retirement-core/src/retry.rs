//! Which call results are transient, and when to try again: pure functions of the result, the
//! attempt history, `now` and an injected random source.
//!
//! The rules follow tubular's (`edx_api.py`, contract §6.6), with the waits computed here instead
//! of slept in a decorator:
//! - 2xx succeeds; a 404 succeeds where the stage tolerates it ("nothing to delete").
//! - 5xx other than 504, 429, status 104 and connection failures (refused, reset) are retried
//!   with exponential backoff and full jitter (each wait uniform in `[0, nominal]`, nominal 1 s,
//!   2 s, 4 s, … capped), honouring `Retry-After`, until the stage's time budget (600 s) is spent.
//! - 504 is retried once after 60 s (a gateway timeout usually means the server is still busy).
//!   A client-side timeout is treated the same way: the server may still be working, so an
//!   immediate retry would overlap with it. Upstream had no timeouts (defect D12).
//! - Every other status (4xx, 1xx, 3xx) fails at once.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// How a call without an HTTP answer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportErrorKind {
    /// The connection could not be made (refused, DNS, connect timeout).
    Connect,
    /// The connection broke mid-request (reset, closed early).
    Reset,
    /// No answer within the request timeout.
    Timeout,
    /// Anything else the HTTP client reports.
    Other,
}

/// What the retry rules make of one call result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The call succeeded.
    Success,
    /// A 404 the stage tolerates: nothing to delete.
    Tolerated404,
    /// Transient: retry with exponential backoff.
    Backoff,
    /// Slow server: retry after the gateway-timeout wait, a limited number of times.
    GatewayTimeout,
    /// Permanent: stop.
    Fail,
}

/// Classifies an HTTP status.
pub fn classify_status(status: u16, tolerate_404: bool) -> Verdict {
    match status {
        200..=299 => Verdict::Success,
        404 if tolerate_404 => Verdict::Tolerated404,
        504 => Verdict::GatewayTimeout,
        // 104 is what some proxies report for a connection reset by peer (ECONNRESET).
        104 | 429 | 500..=599 => Verdict::Backoff,
        _ => Verdict::Fail,
    }
}

/// Classifies a transport failure.
pub fn classify_transport(kind: TransportErrorKind) -> Verdict {
    match kind {
        TransportErrorKind::Timeout => Verdict::GatewayTimeout,
        TransportErrorKind::Connect | TransportErrorKind::Reset | TransportErrorKind::Other => {
            Verdict::Backoff
        }
    }
}

/// The retry budget and waits for one stage's call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// The first backoff's nominal wait; each further one doubles (tubular: 1 s).
    pub initial_backoff: Duration,
    /// The largest nominal backoff wait.
    pub max_backoff: Duration,
    /// No retry is scheduled later than this after the stage's first attempt (tubular: 600 s).
    pub budget: Duration,
    /// The wait before retrying a 504 or a timeout (tubular: 60 s).
    pub gateway_timeout_wait: Duration,
    /// How many times a 504 or a timeout is retried (tubular: once).
    pub gateway_timeout_retries: u32,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            budget: Duration::from_secs(600),
            gateway_timeout_wait: Duration::from_secs(60),
            gateway_timeout_retries: 1,
        }
    }
}

/// What one stage's call has been through so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    /// When the first attempt started.
    pub first_at: DateTime<Utc>,
    /// Backoff retries already scheduled.
    pub backoff_retries: u32,
    /// Gateway-timeout retries already scheduled.
    pub gateway_retries: u32,
}

impl Attempts {
    /// A stage whose first attempt starts at `now`.
    pub fn new(now: DateTime<Utc>) -> Attempts {
        Attempts {
            first_at: now,
            backoff_retries: 0,
            gateway_retries: 0,
        }
    }

    /// The number of attempts made so far (the first plus every retry).
    pub fn made(&self) -> u32 {
        1 + self.backoff_retries + self.gateway_retries
    }
}

impl RetryPolicy {
    /// When to try again after a transient failure, or `None` to give up. Records the retry in
    /// `attempts` when one is scheduled.
    pub fn next_attempt_at(
        &self,
        verdict: Verdict,
        attempts: &mut Attempts,
        retry_after: Option<Duration>,
        now: DateTime<Utc>,
        random: &mut impl RandomSource,
    ) -> Option<DateTime<Utc>> {
        let wait = match verdict {
            Verdict::Backoff => {
                let doublings = attempts.backoff_retries.min(32);
                let nominal = self
                    .initial_backoff
                    .saturating_mul(2u32.saturating_pow(doublings))
                    .min(self.max_backoff);
                nominal.mul_f64(random.next_unit())
            }
            Verdict::GatewayTimeout if attempts.gateway_retries < self.gateway_timeout_retries => {
                self.gateway_timeout_wait
            }
            _ => return None,
        };
        let wait = wait.max(retry_after.unwrap_or_default());
        let at = now + TimeDelta::from_std(wait).ok()?;
        let spent = (at - attempts.first_at).to_std().unwrap_or_default();
        if spent > self.budget {
            return None;
        }
        match verdict {
            Verdict::Backoff => attempts.backoff_retries += 1,
            _ => attempts.gateway_retries += 1,
        }
        Some(at)
    }
}

/// A source of uniform random numbers, injected so jitter is reproducible in tests.
pub trait RandomSource {
    /// A number uniform in `[0, 1)`.
    fn next_unit(&mut self) -> f64;
}

/// SplitMix64: tiny, fast and good enough for jitter. Seed it from the OS in production and
/// from a constant in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl RandomSource for SplitMix64 {
    fn next_unit(&mut self) -> f64 {
        // The top 53 bits give every representable double in [0, 1) with equal spacing.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The standard reason phrase for a status, for log texts shaped like upstream's
/// `500 Server Error: Internal Server Error`.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}
