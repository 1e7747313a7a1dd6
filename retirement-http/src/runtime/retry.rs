//! The one retry helper of the runtime's store calls, built on `retirement-core`'s
//! [`retirement_core::RetryPolicy`].

use std::future::Future;

use chrono::{DateTime, Utc};
use retirement_core::{Attempts, Verdict};
use retirement_store::StoreError;

use super::Shared;

/// What [`retrying`] came to.
pub(super) struct Retried<T> {
    pub(super) result: Result<T, StoreError>,
    /// Attempts after the first.
    pub(super) retries: u32,
}

/// Runs a store call, retrying transient failures with [`RunOptions::store_retry`]'s backoff
/// (full jitter) on tokio's clock, until it succeeds, fails for good, the policy's budget is
/// spent, or the next try would fall after `until` (a lease's end).
pub(super) async fn retrying<T, F, Fut>(
    shared: &Shared,
    what: &'static str,
    until: Option<DateTime<Utc>>,
    mut call: F,
) -> Retried<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let policy = &shared.options.store_retry;
    let mut attempts = Attempts::new(shared.now());
    loop {
        let error = match call().await {
            Ok(value) => {
                return Retried {
                    result: Ok(value),
                    retries: attempts.made() - 1,
                };
            }
            Err(e) => e,
        };
        let now = shared.now();
        let next = if error.is_transient() {
            let mut jitter = shared.jitter.lock().unwrap_or_else(|p| p.into_inner());
            policy
                .next_attempt_at(Verdict::Backoff, &mut attempts, None, now, &mut *jitter)
                .filter(|at| until.is_none_or(|end| *at < end))
        } else {
            None
        };
        let Some(at) = next else {
            return Retried {
                result: Err(error),
                retries: attempts.made() - 1,
            };
        };
        tracing::warn!(error = %error, attempt = attempts.made(), "{what} failed; retrying");
        tokio::time::sleep((at - now).to_std().unwrap_or_default()).await;
    }
}
