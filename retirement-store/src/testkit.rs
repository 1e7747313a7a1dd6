//! The part of the store suite that every [`RetirementStore`] must pass — the SQL backends and
//! the LMS-backed store alike (feature `testkit`, for test code only).
//!
//! Each scenario gets a [`Ctx`]: `store` is the store under test; `setup` is a `DieselStore`
//! holding the same data, used for what the store under test may not offer (state sync and
//! enqueue, which the LMS API has not) and to look behind it. For the SQL backends both are the
//! same store.
//!
//! Messages are compared by their upstream text with `ends_with`: a SQL store answers with the
//! text itself, the LMS-backed store with "the LMS answered 400: <text>" (and the LMS's own
//! spelling, "eariler" included).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use retirement_core::{
    Actor, OriginalIdentity, Override, Pipeline, RetiredIdConfig, Retirement, RetirementId,
};

// `retirement_store::` rather than `crate::`: the store's own suite includes this file as a
// module of its test crate.
use retirement_store::{
    ClaimRequest, DieselStore, NewRetirement, QueueQuery, RetirementStore, StateWindow, StoreError,
};

/// What a scenario runs against.
#[derive(Clone)]
pub struct Ctx {
    /// The store under test.
    pub store: Arc<dyn RetirementStore>,
    /// A SQL store with the same data, for setup and for looking behind `store`.
    pub setup: Arc<DieselStore>,
}

/// One scenario of the shared suite.
pub struct Scenario {
    /// Its name.
    pub name: &'static str,
    /// Runs it; panics on failure.
    pub run: fn(Ctx) -> Pin<Box<dyn Future<Output = ()> + Send>>,
}

macro_rules! scenario {
    ($name:ident) => {
        Scenario {
            name: stringify!($name),
            run: |ctx| Box::pin($name(ctx)),
        }
    };
}

/// Every shared scenario.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        scenario!(shared_lookup_is_exact_case),
        scenario!(shared_queue_listing_and_messages),
        scenario!(shared_date_window_and_messages),
        scenario!(shared_transitions_and_refusals),
        scenario!(shared_cancel_only_from_pending),
        scenario!(shared_cleanup_all_or_nothing),
        scenario!(shared_claims_and_expired_leases),
    ]
}

/// 2026-11-01 12:00 UTC plus `days`.
pub fn day(days: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap() + TimeDelta::days(days)
}

fn learner(n: usize) -> OriginalIdentity {
    OriginalIdentity {
        username: format!("Learner{n}"),
        email: format!("learner{n}@example.com"),
        name: format!("Learner Number {n}"),
    }
}

impl Ctx {
    /// Syncs the six-stage example's states into the setup store; returns its pipeline.
    pub async fn six_stage(&self) -> Pipeline {
        let (table, pipeline) = Pipeline::six_stage_example();
        let names: Vec<String> = table.names().map(str::to_owned).collect();
        self.setup.sync_states(&names, false).await.unwrap();
        pipeline
    }

    /// Enqueues learner `n` at `at` through the setup store and returns it as the store under
    /// test sees it.
    pub async fn enqueue(&self, n: usize, at: DateTime<Utc>) -> Retirement {
        let ids = RetiredIdConfig::new(vec!["salt".into()]).unwrap();
        self.setup
            .enqueue(NewRetirement::new(learner(n), Some(n as i64 + 1), &ids), at)
            .await
            .unwrap();
        self.store
            .find_by_username(&learner(n).username)
            .await
            .unwrap()
    }
}

fn assert_message(err: &StoreError, upstream: &str) {
    assert!(
        err.to_string().ends_with(upstream),
        "expected …{upstream:?}, got {err}"
    );
}

async fn shared_lookup_is_exact_case(ctx: Ctx) {
    ctx.six_stage().await;
    let r = ctx.enqueue(7, day(0)).await;
    assert_eq!(
        ctx.store.find_by_username("Learner7").await.unwrap().id(),
        r.id()
    );
    assert_eq!(r.original(), &learner(7));
    for other in ["learner7", "LEARNER7", "Learner"] {
        let err = ctx.store.find_by_username(other).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{other}: {err}");
    }
}

async fn shared_queue_listing_and_messages(ctx: Ctx) {
    let pipeline = ctx.six_stage().await;
    let done = pipeline.stages()[0].complete_state.clone();
    let a = ctx.enqueue(1, day(0)).await;
    let b = ctx.enqueue(2, day(1)).await;
    let c = ctx.enqueue(3, day(2)).await;
    ctx.store
        .advance(c.id(), None, &done, "done", Actor::Driver, day(2))
        .await
        .unwrap();
    let query = |states: &[&str], cool_off_days, limit| QueueQuery {
        states: states.iter().map(|s| s.to_string()).collect(),
        cool_off_days,
        limit,
    };
    let ids = |list: Vec<Retirement>| list.iter().map(|r| r.id()).collect::<Vec<RetirementId>>();
    let now = day(8);
    assert_eq!(
        ids(ctx
            .store
            .queue(&query(&["PENDING"], 7, None), now)
            .await
            .unwrap()),
        vec![a.id()]
    );
    assert_eq!(
        ids(ctx
            .store
            .queue(&query(&["PENDING", &done], 0, None), now)
            .await
            .unwrap()),
        vec![a.id(), b.id(), c.id()]
    );
    assert_eq!(
        ids(ctx
            .store
            .queue(&query(&[&done, "PENDING"], 0, Some(2)), now)
            .await
            .unwrap()),
        vec![a.id(), b.id()]
    );
    let refused = |q| {
        let store = ctx.store.clone();
        async move { store.queue(&q, now).await.unwrap_err() }
    };
    assert_message(
        &refused(query(&["PENDING"], -1, None)).await,
        "Invalid argument for cool_off_days, must be greater than 0.",
    );
    assert_message(
        &refused(query(&[], 7, None)).await,
        "Param \"states\" required with at least one state.",
    );
    assert_message(
        &refused(query(&["PENDING", "NOPE"], 7, None)).await,
        "Unknown state. Requested: [\"PENDING\", \"NOPE\"] Found: [\"PENDING\"]",
    );
}

async fn shared_date_window_and_messages(ctx: Ctx) {
    ctx.six_stage().await;
    let d = |dd| NaiveDate::from_ymd_opt(2026, 11, dd).unwrap();
    let a = ctx.enqueue(1, day(0)).await;
    let b = ctx.enqueue(2, day(1)).await;
    ctx.enqueue(3, day(3)).await;
    let window = |start, end| StateWindow {
        state: "PENDING".into(),
        start,
        end,
    };
    let now = day(10);
    let listed = ctx
        .store
        .by_state_and_date(&window(d(1), d(2)), now)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id()).collect::<Vec<_>>(),
        vec![a.id(), b.id()]
    );
    let bad = "Dates must be today or earlier, and start must be earlier than end.";
    assert_message(
        &ctx.store
            .by_state_and_date(&window(d(3), d(2)), now)
            .await
            .unwrap_err(),
        bad,
    );
    assert_message(
        &ctx.store
            .by_state_and_date(&window(d(1), d(12)), now)
            .await
            .unwrap_err(),
        bad,
    );
    let unknown = StateWindow {
        state: "NOPE".into(),
        start: d(1),
        end: d(2),
    };
    assert_message(
        &ctx.store
            .by_state_and_date(&unknown, now)
            .await
            .unwrap_err(),
        "Unknown retirement state.",
    );
}

async fn shared_transitions_and_refusals(ctx: Ctx) {
    let pipeline = ctx.six_stage().await;
    let stage = &pipeline.stages()[0];
    let r = ctx.enqueue(1, day(0)).await;
    ctx.store
        .advance(
            r.id(),
            None,
            &stage.working_state,
            "Starting",
            Actor::Driver,
            day(8),
        )
        .await
        .unwrap();
    let seen = ctx.store.find_by_username("Learner1").await.unwrap();
    assert_eq!(
        (seen.current_state(), seen.last_state()),
        (stage.working_state.as_str(), "PENDING")
    );
    // Backwards and same-state moves are refused with upstream's message (either spelling).
    for target in ["PENDING", stage.working_state.as_str()] {
        let err = ctx
            .store
            .advance(r.id(), None, target, "x", Actor::Driver, day(8))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("does not exist or is an"), "{err}");
    }
    let why = Override {
        operator: "ops".into(),
        reason: "retry the forums".into(),
    };
    let forced = ctx
        .store
        .force(r.id(), "PENDING", &why, day(9))
        .await
        .unwrap();
    assert_eq!(forced.current_state(), "PENDING");
    // Behind the store: one log entry per change, the override's reason recorded.
    let log = ctx.setup.get(r.id()).await.unwrap().log().to_vec();
    assert_eq!(log.len(), 3);
    assert!(log[2].text.contains("retry the forums"), "{}", log[2].text);
}

async fn shared_cancel_only_from_pending(ctx: Ctx) {
    let pipeline = ctx.six_stage().await;
    let a = ctx.enqueue(1, day(0)).await;
    let b = ctx.enqueue(2, day(0)).await;
    let working = &pipeline.stages()[0].working_state;
    ctx.store
        .advance(b.id(), None, working, "s", Actor::Driver, day(8))
        .await
        .unwrap();
    let err = ctx.store.cancel(b.id()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Retirement requests can only be cancelled for users in the PENDING state. Current request state for retirement {}: {working}",
            b.id()
        )
    );
    ctx.store.cancel(a.id()).await.unwrap();
    assert!(matches!(
        ctx.setup.get(a.id()).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert!(matches!(
        ctx.store.cancel(a.id()).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
}

async fn shared_cleanup_all_or_nothing(ctx: Ctx) {
    ctx.six_stage().await;
    let done = ctx.enqueue(1, day(0)).await;
    ctx.enqueue(2, day(0)).await;
    ctx.store
        .advance(done.id(), None, "COMPLETE", "ok", Actor::Driver, day(8))
        .await
        .unwrap();
    let names = |ns: &[usize]| ns.iter().map(|n| learner(*n).username).collect::<Vec<_>>();
    for bad in [names(&[1, 2]), names(&[1, 42])] {
        let err = ctx.store.cleanup(&bad).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "Not all usernames exist in the COMPLETE state."
        );
    }
    ctx.setup.get(done.id()).await.unwrap();
    let removed = ctx.store.cleanup(&names(&[1])).await.unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].original(), &learner(1));
    assert!(matches!(
        ctx.setup.get(done.id()).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
}

async fn shared_claims_and_expired_leases(ctx: Ctx) {
    let pipeline = ctx.six_stage().await;
    let a = ctx.enqueue(1, day(0)).await;
    let young = ctx.enqueue(2, day(5)).await;
    let request = ClaimRequest::for_pipeline(&pipeline, "w1", 10, TimeDelta::minutes(5), 7);
    let now = day(8);
    let claimed = ctx.store.claim(&request, now).await.unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|c| c.retirement.id())
            .collect::<Vec<_>>(),
        vec![a.id()],
        "the young one is cooling off"
    );
    let first = &claimed[0];
    assert!(!first.resumes_working_state);
    let working = &pipeline.stages()[0].working_state;
    ctx.store
        .advance(
            a.id(),
            Some(&first.lease),
            working,
            "Starting",
            Actor::Driver,
            now,
        )
        .await
        .unwrap();
    // In a working state under a live lease: nobody else may claim it.
    let other = ClaimRequest {
        owner: "w2".into(),
        ..request.clone()
    };
    assert!(
        ctx.store
            .claim(&other, now + TimeDelta::minutes(1))
            .await
            .unwrap()
            .is_empty()
    );
    // The worker is gone: once the lease has run out, it is claimable and must be resumed.
    let later = ctx
        .store
        .claim(&other, now + TimeDelta::minutes(6))
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].retirement.id(), a.id());
    assert!(later[0].resumes_working_state);
    let _ = young;
}
