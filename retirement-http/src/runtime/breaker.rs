//! Circuit breakers, one per service endpoint (`SERVICE operation`, a stage's call): an outage
//! is not a learner's error.
//!
//! A service is **down** when its calls fail for transport reasons, 5xx or 429 for several
//! different learners in a row with no success between them, or when a learner has run out of
//! retries on it and nobody's call succeeded there for [`OutagePolicy::quiet_for`] at some
//! point while it was failing (so a run at concurrency 1 sees an outage too). While a service is down the runtime starts no
//! call on it: the learners that reach it are parked, holding their leases but no slot, and
//! one of them probes it after a wait that doubles from [`OutagePolicy::first_probe_after`] up
//! to [`OutagePolicy::max_probe_interval`]. The first probe that gets any answer of the
//! service's own (2xx–4xx but 429) closes the breaker and the parked learners go on, each with
//! a fresh retry budget. A learner parked longer than [`OutagePolicy::patience`] ends its turn
//! resumable: its lease released, the run's summary naming the service as down.
//!
//! ERRORED stays for what is the learner's own: a 4xx, or a failure while the service works
//! for others. A learner is spared ERRORED for an outage once per turn: if it fails again the
//! same way after the service came back, the failure is its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use retirement_core::{Input, RetirementId};
use tokio::sync::Notify;
use tokio::time::Instant;

/// When a service counts as down and how the runtime waits for it. Defaults per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutagePolicy {
    /// Different learners failing in a row on one endpoint, no success between, that make it
    /// down (default 5: at a 10% failure rate, five in a row happen once in 100,000).
    pub learners_to_open: usize,
    /// The wait before the first probe of a down service (default 5 s); each failed probe
    /// doubles it.
    pub first_probe_after: Duration,
    /// The longest wait between two probes (default 5 minutes).
    pub max_probe_interval: Duration,
    /// How long a learner waits for a down service before its turn ends, resumable
    /// (default 15 minutes; the run then reports the service as down).
    pub patience: Duration,
    /// A learner out of retries on a service that answered nobody successfully for this long
    /// while it was failing there is spared ERRORED: the service is down (default 60 s).
    pub quiet_for: Duration,
}

impl Default for OutagePolicy {
    fn default() -> OutagePolicy {
        OutagePolicy {
            learners_to_open: 5,
            first_probe_after: Duration::from_secs(5),
            max_probe_interval: Duration::from_secs(300),
            patience: Duration::from_secs(900),
            quiet_for: Duration::from_secs(60),
        }
    }
}

/// What a call's result says about its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Health {
    /// The service answered for itself (2xx–4xx but 429, or an in-process stage's
    /// permanent failure): it works, whatever it thinks of this learner.
    Works,
    /// No answer, 5xx, 429, or an in-process stage's transient failure.
    Failing,
}

impl Health {
    pub(super) fn of(input: &Input) -> Option<Health> {
        match input {
            Input::Response { status, .. } => Some(match status {
                429 | 500..=599 | 104 => Health::Failing,
                _ => Health::Works,
            }),
            Input::TransportError { .. } => Some(Health::Failing),
            Input::StepFailed { transient, .. } => Some(if *transient {
                Health::Failing
            } else {
                Health::Works
            }),
            _ => None,
        }
    }
}

/// May a learner call a service now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Yes (the service is up, or this learner is its probe).
    Go,
    /// No: the service has been down since `since`; ask again at `until` or when the
    /// breakers change.
    Wait { since: Instant, until: Instant },
}

#[derive(Debug)]
enum State {
    Up {
        /// Learners whose calls failed since the last success, in order, without repeats.
        failing: Vec<RetirementId>,
    },
    Down {
        since: Instant,
        probe_at: Instant,
        interval: Duration,
        /// The learner probing now, if any.
        probe: Option<RetirementId>,
    },
}

#[derive(Debug)]
struct Breaker {
    state: State,
    /// When this breaker first saw a call (a silence can start no earlier).
    seen_since: Instant,
    last_success: Option<Instant>,
    /// The latest stretches of at least `quiet_for` without any success, oldest first.
    silences: std::collections::VecDeque<(Instant, Instant)>,
}

/// Silences kept per endpoint: enough to cover a retry budget's worth of outages.
const SILENCES_KEPT: usize = 64;

impl Breaker {
    fn new(now: Instant) -> Breaker {
        Breaker {
            state: State::Up {
                failing: Vec::new(),
            },
            seen_since: now,
            last_success: None,
            silences: Default::default(),
        }
    }

    /// Notes a success at `now`, and the silence it ends if that lasted `quiet_for`.
    fn succeeded(&mut self, now: Instant, quiet_for: Duration) {
        // Until its first success an endpoint counts as silent however long that was: it has
        // not shown that it works.
        let since = self.last_success.unwrap_or(self.seen_since);
        if self.last_success.is_none() || now.duration_since(since) >= quiet_for {
            self.silences.push_back((since, now));
            if self.silences.len() > SILENCES_KEPT {
                self.silences.pop_front();
            }
        }
        self.last_success = Some(now);
    }

    /// Whether a silence of `quiet_for` overlapped `from..to`, the one going on now included.
    fn silent_during(&self, from: Instant, to: Instant, now: Instant, quiet_for: Duration) -> bool {
        let since = self.last_success.unwrap_or(self.seen_since);
        let ongoing = (self.last_success.is_none() || now.duration_since(since) >= quiet_for)
            .then_some((since, now));
        self.silences
            .iter()
            .copied()
            .chain(ongoing)
            .any(|(start, end)| start < to && end > from)
    }
}

/// The breakers of every service a runner calls. They outlive one run (`--watch` passes).
#[derive(Debug)]
pub(super) struct Breakers {
    policy: OutagePolicy,
    services: Mutex<HashMap<String, Breaker>>,
    /// Wakes parked learners when a breaker changes. A plain `Notify` (one waiter list, woken
    /// in order), not a `watch` channel, whose waiters are spread at random over several
    /// lists: the simulation needs the same order every time.
    changed: Notify,
}

impl Breakers {
    pub(super) fn new(policy: OutagePolicy) -> Breakers {
        Breakers {
            policy,
            services: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        }
    }

    pub(super) fn policy(&self) -> &OutagePolicy {
        &self.policy
    }

    fn with<T>(&self, service: &str, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        f(services
            .entry(service.to_owned())
            .or_insert_with(|| Breaker::new(Instant::now())))
    }

    fn notify(&self) {
        self.changed.notify_waiters();
    }

    /// Wakes whenever a breaker changes (enable the future before reading the breakers).
    pub(super) fn changes(&self) -> &Notify {
        &self.changed
    }

    pub(super) fn admit(&self, service: &str, learner: RetirementId, now: Instant) -> Admit {
        self.with(service, |b| match &mut b.state {
            State::Up { .. } => Admit::Go,
            State::Down {
                since,
                probe_at,
                probe,
                ..
            } => {
                if *probe == Some(learner) || (probe.is_none() && now >= *probe_at) {
                    *probe = Some(learner);
                    Admit::Go
                } else {
                    // While another learner probes, its result (a change) is what to wait for.
                    let until = match probe {
                        Some(_) => now + self.policy.max_probe_interval,
                        None => *probe_at,
                    };
                    Admit::Wait {
                        since: *since,
                        until,
                    }
                }
            }
        })
    }

    /// Records what a call of `learner` on `service` said about the service.
    pub(super) fn record(
        &self,
        service: &str,
        learner: RetirementId,
        health: Health,
        now: Instant,
    ) {
        let learners_to_open = self.policy.learners_to_open.max(1);
        let first = self.policy.first_probe_after;
        let max = self.policy.max_probe_interval;
        let changed = self.with(service, |b| match (&mut b.state, health) {
            (_, Health::Works) => {
                let was_down = matches!(b.state, State::Down { .. });
                b.succeeded(now, self.policy.quiet_for);
                b.state = State::Up {
                    failing: Vec::new(),
                };
                if was_down {
                    tracing::info!(service, "service answers again: parked learners go on");
                }
                was_down
            }
            (State::Up { failing }, Health::Failing) => {
                if !failing.contains(&learner) {
                    failing.push(learner);
                }
                if failing.len() >= learners_to_open {
                    tracing::warn!(
                        service,
                        learners = failing.len(),
                        "service down: calls failed for several learners in a row; parking its learners and probing"
                    );
                    b.state = down(now, first);
                    true
                } else {
                    false
                }
            }
            (
                State::Down {
                    probe, interval, ..
                },
                Health::Failing,
            ) => {
                if *probe == Some(learner) {
                    let next = interval.saturating_mul(2).min(max);
                    let since = match b.state {
                        State::Down { since, .. } => since,
                        State::Up { .. } => now,
                    };
                    b.state = State::Down {
                        since,
                        probe_at: now + next,
                        interval: next,
                        probe: None,
                    };
                    tracing::info!(service, next_probe_in_s = next.as_secs(), "probe failed; service still down");
                    true
                } else {
                    false
                }
            }
        });
        if changed {
            self.notify();
        }
    }

    /// A learner ran out of retries on `service`, failing there from `streak_started` to its
    /// last call, started at `attempt_started`: when the endpoint answered nobody successfully
    /// for [`OutagePolicy::quiet_for`] at some point in that stretch, an outage explains the
    /// failure (not the learner's fault) and this opens its breaker. Returns whether it did
    /// (or it already was down).
    pub(super) fn outage_explains(
        &self,
        service: &str,
        streak_started: Instant,
        attempt_started: Instant,
    ) -> bool {
        let first = self.policy.first_probe_after;
        let quiet_for = self.policy.quiet_for;
        let now = Instant::now();
        let (explained, changed) = self.with(service, |b| {
            if !b.silent_during(streak_started, attempt_started, now, quiet_for) {
                return (false, false);
            }
            match &mut b.state {
                State::Down { probe, .. } => {
                    // A probe that ran out of retries failed.
                    let was_probe = probe.take().is_some();
                    (true, was_probe)
                }
                State::Up { .. } => {
                    tracing::warn!(service, "service down: a learner ran out of retries and no call has succeeded lately; parking its learners and probing");
                    b.state = down(now, first);
                    (true, true)
                }
            }
        });
        if changed {
            self.notify();
        }
        explained
    }

    /// At the start of a run: a service still down is probed again at once, with a fresh
    /// patience.
    pub(super) fn new_run(&self, now: Instant) {
        let first = self.policy.first_probe_after;
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        for b in services.values_mut() {
            if let State::Down { .. } = b.state {
                b.state = State::Down {
                    since: now,
                    probe_at: now,
                    interval: first,
                    probe: None,
                };
            }
        }
    }

    /// Whether a service has been down longer than the patience.
    pub(super) fn down_past_patience(&self, now: Instant) -> bool {
        let services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        services.values().any(|b| match b.state {
            State::Down { since, .. } => now.duration_since(since) >= self.policy.patience,
            State::Up { .. } => false,
        })
    }

    /// A learner's turn ended: it probes nothing any more.
    pub(super) fn forget_probe(&self, learner: RetirementId) {
        let mut changed = false;
        {
            let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
            for b in services.values_mut() {
                if let State::Down { probe, .. } = &mut b.state
                    && *probe == Some(learner)
                {
                    *probe = None;
                    changed = true;
                }
            }
        }
        if changed {
            self.notify();
        }
    }
}

fn down(now: Instant, first: Duration) -> State {
    State::Down {
        since: now,
        probe_at: now + first,
        interval: first,
        probe: None,
    }
}
