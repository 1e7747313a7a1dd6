//! [`RunOptions`]: how a [`super::Runner`] works, each default defined once here.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use retirement_core::{DriverOptions, RetryPolicy};

use super::breaker::OutagePolicy;
use crate::clock::{Clock, SystemClock};

/// How a [`Runner`](super::Runner) works. Defaults are stated per field.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// This worker's id in leases (default `<host>:<pid>`; never a learner).
    pub worker: String,
    /// Learners retired at once (default 8).
    pub concurrency: usize,
    /// Claim at most this many learners in this run (default unlimited).
    pub limit: Option<usize>,
    /// The lease length (default 5 minutes), renewed while a learner is worked on.
    pub lease_for: TimeDelta,
    /// PENDING learners are retired only after this many days (tubular: 7).
    pub cool_off_days: i64,
    /// The machine's options (retry policy, logged body size).
    pub driver: DriverOptions,
    /// Seeds the retry jitter.
    pub seed: u64,
    /// After shutdown is asked for, how long busy learners may take to finish their step.
    pub shutdown_grace: Duration,
    /// How store calls that failed transiently (a dropped connection, a lock timeout, an LMS
    /// 5xx) are retried: backoff with full jitter within the policy's budget (default 100 ms
    /// doubling to 5 s, 60 s in all), then the learner is given up on (claims: the run stops).
    pub store_retry: RetryPolicy,
    /// When a service counts as down, how it is probed, and how long learners wait for it
    /// (see [`OutagePolicy`]'s defaults).
    pub outage: OutagePolicy,
    /// The wall clock (default the system's; a simulation's follows tokio's paused clock).
    /// Every wait goes through tokio's timers.
    pub clock: Arc<dyn Clock>,
}

/// The default [`RunOptions::store_retry`].
pub fn default_store_retry() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(5),
        budget: Duration::from_secs(60),
        gateway_timeout_wait: Duration::ZERO,
        gateway_timeout_retries: 0,
    }
}

/// Learners retired at once by default (config `concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 8;
/// The default lease length (config `lease_seconds`; the console's "stuck" threshold).
pub const DEFAULT_LEASE: TimeDelta = TimeDelta::minutes(5);
/// PENDING learners wait this many days by default (tubular's cool-off; config
/// `cool_off_days`).
pub const DEFAULT_COOL_OFF_DAYS: i64 = 7;

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            worker: default_worker_id(),
            concurrency: DEFAULT_CONCURRENCY,
            limit: None,
            lease_for: DEFAULT_LEASE,
            cool_off_days: DEFAULT_COOL_OFF_DAYS,
            driver: DriverOptions::default(),
            seed: 0x5eed,
            shutdown_grace: Duration::from_secs(30),
            store_retry: default_store_retry(),
            outage: OutagePolicy::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// `<hostname>:<pid>`, the default worker id.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}:{}", std::process::id())
}
