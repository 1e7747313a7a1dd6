//! A console over a seeded SQLite store, served on 127.0.0.1 (features `fake` and `console`):
//! the console's HTTP tests and browser tests share it. Forty made-up learners in every kind
//! of state — PENDING, mid-pipeline, stuck, ERRORED, COMPLETE — requested over the last
//! sixty days, so some are overdue and some due soon.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use retirement_core::{
    Actor, OriginalIdentity, Pipeline, Regime, RetiredIdConfig, RetirementId, StageKind,
};
use retirement_store::{DieselStore, NewRetirement, RetirementStore, StoreOptions};

use crate::clock::Clock;
use crate::console::{self, Access, AccessConfig, Console, LmsSignIn, Operator};
use crate::error::HttpError;

/// The seeded operator's name.
pub const OPERATOR: &str = "ops.alice";
/// Its password.
pub const PASSWORD: &str = "correct horse battery staple";

/// How many learners are seeded.
pub const LEARNERS: usize = 40;

/// A clock stopped at one moment.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// One seeded learner.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// Its id.
    pub id: RetirementId,
    /// Its original username (never to be shown).
    pub username: String,
    /// Its original email (shown only after a reveal).
    pub email: String,
    /// The state it was seeded in.
    pub state: String,
}

/// The seeded store and a console over it.
pub struct ConsoleWorld {
    /// The store.
    pub store: Arc<DieselStore>,
    /// The console.
    pub console: Console,
    /// The learners, by seed order.
    pub learners: Vec<Seeded>,
    dir: std::path::PathBuf,
}

impl Drop for ConsoleWorld {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fail(e: impl std::fmt::Display) -> HttpError {
    HttpError::Fake(e.to_string())
}

/// What learner `i` is seeded as: the stages it finished, then where it stands.
fn plan(i: usize) -> (usize, &'static str) {
    match i % 8 {
        0 | 7 => (0, "pending"),
        1 => (2, "complete-state"),
        2 => (1, "errored"),
        3 => (6, "complete"),
        4 => (3, "working"),
        5 => (4, "stuck"),
        _ => (0, "errored"),
    }
}

impl ConsoleWorld {
    /// Seeds a fresh SQLite store at `now` and builds the console (GDPR clock, the six-stage
    /// example pipeline, its last stage manual so `done` has a learner to act on).
    pub async fn seeded(now: DateTime<Utc>) -> Result<ConsoleWorld, HttpError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "retire-console-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let url = format!("sqlite://{}", dir.join("console.db").display());
        let store = Arc::new(DieselStore::open(&url, &StoreOptions::default()).await?);
        store.migrate().await?;
        let (table, pipeline) = Pipeline::six_stage_example();
        let names: Vec<String> = table.names().map(str::to_owned).collect();
        store.sync_states(&names, false).await?;
        // The last stage is a person's (so `done` has a learner to act on).
        let manual = pipeline.stages()[pipeline.stages().len() - 1]
            .working_state
            .clone();
        let pipeline = pipeline.with_kinds(|s| {
            if s.working_state == manual {
                StageKind::Manual
            } else {
                StageKind::Call
            }
        });
        let ids = RetiredIdConfig::new(vec!["console-salt".into()]).map_err(fail)?;
        let learners = seed_examples(&store, &pipeline, &ids, now, LEARNERS, "Console").await?;
        let console = Console {
            store: store.clone(),
            journal: Some(store.clone()),
            pipeline: Arc::new(pipeline),
            regime: Regime::Gdpr,
            clock: Arc::new(FixedClock(now)),
            stuck_after: TimeDelta::minutes(5),
            store_kind: "sqlite".into(),
        };
        Ok(ConsoleWorld {
            store,
            console,
            learners,
            dir,
        })
    }

    /// Access for the seeded operator (its hash made now), optionally with LMS sign-in.
    pub fn access(&self, public_url: &str, lms: Option<LmsSignIn>) -> Result<Access, HttpError> {
        Access::new(AccessConfig {
            operators: vec![Operator {
                name: OPERATOR.into(),
                password_hash: console::access::hash_password(PASSWORD)?,
            }],
            lms,
            public_url: public_url.to_owned(),
            secure_cookies: false,
        })
    }

    /// Serves the console on 127.0.0.1 until the returned sender is dropped; returns its URL.
    pub async fn serve(
        &self,
        lms: Option<LmsSignIn>,
    ) -> Result<(String, tokio::sync::oneshot::Sender<()>), HttpError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(fail)?;
        let url = format!("http://{}", listener.local_addr().map_err(fail)?);
        let router = console::router(
            self.console.clone(),
            self.access(&url, lms)?,
            Some(crate::Secret::new("metrics-token")),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(console::serve(listener, router, async move {
            let _ = stopped.await;
        }));
        Ok((url, stop))
    }

    /// The seeded learners in `state`.
    pub fn in_state(&self, state: &str) -> Vec<&Seeded> {
        self.learners.iter().filter(|l| l.state == state).collect()
    }
}

/// Seeds `count` made-up learners into `store` along `pipeline` as of `now`, requested over
/// the last `count * 1.5` days: PENDING, mid-pipeline (a live worker or a dead one),
/// ERRORED, COMPLETE (the console's tests; `retire demo --serve`'s queue). Originals are
/// `{prefix}.Learner{i}`, `{prefix-lowercase}.learner{i}@example.com`, `{prefix} Person {i}`.
pub async fn seed_examples(
    store: &DieselStore,
    pipeline: &Pipeline,
    ids: &RetiredIdConfig,
    now: DateTime<Utc>,
    count: usize,
    prefix: &str,
) -> Result<Vec<Seeded>, HttpError> {
    let stages = pipeline.stages().to_vec();
    let mut learners = Vec::with_capacity(count);
    for i in 0..count {
        let username = format!("{prefix}.Learner{i}");
        let email = format!("{}.learner{i}@example.com", prefix.to_lowercase());
        let requested = now - TimeDelta::hours(36 * i as i64 + 5);
        let r = store
            .enqueue(
                NewRetirement::new(
                    OriginalIdentity {
                        username: username.clone(),
                        email: email.clone(),
                        name: format!("{prefix} Person {i}"),
                    },
                    Some(1_000_000 + i as i64),
                    ids,
                ),
                requested,
            )
            .await?;
        let (done, then) = plan(i);
        // Driver writes an hour after the request; a stuck learner's last write is old.
        let at = requested + TimeDelta::hours(1);
        let mut state = retirement_core::PENDING.to_owned();
        for stage in stages.iter().take(done.min(stages.len())) {
            for to in [&stage.working_state, &stage.complete_state] {
                store
                    .advance(r.id(), None, to, "ok", Actor::Driver, at)
                    .await?;
                state = to.clone();
            }
        }
        let step = |n: usize| stages.get(n).map(|s| s.working_state.clone());
        match then {
            "complete" => {
                store
                    .advance(
                        r.id(),
                        None,
                        retirement_core::COMPLETE,
                        "",
                        Actor::Driver,
                        at,
                    )
                    .await?;
                state = retirement_core::COMPLETE.to_owned();
            }
            "errored" | "working" | "stuck" => {
                let working = step(done).unwrap_or_else(|| stages[0].working_state.clone());
                // A live worker started the step a minute ago; the others long ago.
                let started = if then == "working" {
                    now - TimeDelta::minutes(1)
                } else {
                    at
                };
                store
                    .advance(r.id(), None, &working, "Starting", Actor::Driver, started)
                    .await?;
                state = working;
                if then == "errored" {
                    store
                        .advance(
                            r.id(),
                            None,
                            retirement_core::ERRORED,
                            "the service answered 500: internal error",
                            Actor::Driver,
                            at,
                        )
                        .await?;
                    state = retirement_core::ERRORED.to_owned();
                }
            }
            _ => {}
        }
        learners.push(Seeded {
            id: r.id(),
            username,
            email,
            state,
        });
    }
    Ok(learners)
}
