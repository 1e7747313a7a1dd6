//! Where the runtime reads the time. Waiting always goes through tokio's timers, and the wall
//! clock through a [`Clock`]: [`SystemClock`] in production, [`TokioClock`] in a simulation,
//! where tokio's clock is paused and jumps to the next timer, so a run of hours takes
//! milliseconds and the same seed gives the same run.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};

/// The wall clock the runtime stamps writes and leases with.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A wall clock that follows tokio's clock from a fixed start: virtual under
/// `tokio::time::pause` (simulations), real otherwise.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: DateTime<Utc>,
    at: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `start` now and moves with tokio's clock.
    pub fn starting_at(start: DateTime<Utc>) -> TokioClock {
        TokioClock {
            start,
            at: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().duration_since(self.at);
        self.start + TimeDelta::from_std(elapsed).unwrap_or(TimeDelta::MAX)
    }
}
