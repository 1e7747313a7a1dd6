//! Claims, heartbeats, expiry, fencing and concurrent claimers.

use std::collections::HashSet;

use chrono::TimeDelta;
use retirement_store::retirement_core::{Actor, Override, Pipeline};
use retirement_store::{ClaimRequest, RetirementStore, StoreError};

use crate::harness::Test;
use crate::{Store, day, enqueue};

pub(crate) fn tests() -> Vec<Test> {
    vec![
        crate::test!(claim_sets_a_lease_that_others_skip),
        crate::test!(crash_between_claim_and_write_back),
        crate::test!(reaching_an_end_state_ends_the_lease),
        crate::test!(operator_override_fences_the_worker),
        crate::test!(sqlite_style_claimers_never_double_claim),
        crate::test!(servers eight_claimers_over_2000_learners),
    ]
}

/// The six-stage example's states and a claim for it.
async fn six_stage(store: &Store) -> Pipeline {
    let (table, pipeline) = Pipeline::six_stage_example();
    let names: Vec<String> = table.names().map(str::to_owned).collect();
    store.sync_states(&names, false).await.unwrap();
    pipeline
}

fn claim(pipeline: &Pipeline, owner: &str, limit: i64) -> ClaimRequest {
    ClaimRequest::for_pipeline(pipeline, owner, limit, TimeDelta::minutes(5), 7)
}

async fn reaching_an_end_state_ends_the_lease(store: Store) {
    let pipeline = six_stage(&store).await;
    let a = enqueue(&store, 1, day(0)).await;
    let now = day(8);
    let claimed = store.claim(&claim(&pipeline, "w1", 10), now).await.unwrap();
    let lease = &claimed[0].lease;
    let working = pipeline.stages()[0].working_state.clone();
    store
        .advance(a.id(), Some(lease), &working, "s", Actor::Driver, now)
        .await
        .unwrap();
    // Mid-pipeline the lease stands: a heartbeat extends it.
    let lease = store
        .heartbeat(lease, now + TimeDelta::minutes(6))
        .await
        .unwrap();
    store
        .advance(a.id(), Some(&lease), "ERRORED", "boom", Actor::Driver, now)
        .await
        .unwrap();
    // The write to ERRORED ended it: nothing left to heartbeat or release.
    assert!(matches!(
        store.heartbeat(&lease, now + TimeDelta::minutes(7)).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        store.release(&lease).await,
        Err(StoreError::LeaseLost { .. })
    ));
}

async fn claim_sets_a_lease_that_others_skip(store: Store) {
    let pipeline = six_stage(&store).await;
    let a = enqueue(&store, 1, day(0)).await;
    let young = enqueue(&store, 2, day(5)).await;
    let now = day(8);
    let claimed = store.claim(&claim(&pipeline, "w1", 10), now).await.unwrap();
    // The young learner is still in its cool-off.
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].retirement.id(), a.id());
    assert_eq!(claimed[0].lease.attempt, 1);
    assert_eq!(claimed[0].lease.expires, now + TimeDelta::minutes(5));
    assert!(!claimed[0].resumes_working_state);
    // Leased: nobody else gets it, and unfenced writes are refused.
    assert!(
        store
            .claim(&claim(&pipeline, "w2", 10), now)
            .await
            .unwrap()
            .is_empty()
    );
    let working = pipeline.stages()[0].working_state.clone();
    let err = store
        .advance(a.id(), None, &working, "s", Actor::Driver, now)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "retirement {} is leased to a worker until {}; wait for it, or use an operator reset",
            a.id(),
            (now + TimeDelta::minutes(5)).to_rfc3339()
        )
    );
    // The lease holder writes; heartbeat extends; release frees it for the next claim.
    let lease = &claimed[0].lease;
    store
        .advance(a.id(), Some(lease), &working, "s", Actor::Driver, now)
        .await
        .unwrap();
    let extended = store
        .heartbeat(lease, now + TimeDelta::minutes(10))
        .await
        .unwrap();
    assert!(
        store
            .claim(&claim(&pipeline, "w2", 10), now + TimeDelta::minutes(7))
            .await
            .unwrap()
            .is_empty()
    );
    store.release(&extended).await.unwrap();
    // Released in a working state: claimable at once, flagged for resumption.
    let again = store.claim(&claim(&pipeline, "w2", 10), now).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].lease.attempt, 2);
    assert!(again[0].resumes_working_state);
    let _ = young;
}

async fn crash_between_claim_and_write_back(store: Store) {
    let pipeline = six_stage(&store).await;
    let a = enqueue(&store, 1, day(0)).await;
    let now = day(8);
    let stage = &pipeline.stages()[0];
    let first = store
        .claim(&claim(&pipeline, "w1", 1), now)
        .await
        .unwrap()
        .remove(0);
    store
        .advance(
            a.id(),
            Some(&first.lease),
            &stage.working_state,
            "Starting",
            Actor::Driver,
            now,
        )
        .await
        .unwrap();
    // w1 "crashes" here. Before expiry nobody can take over.
    assert!(
        store
            .claim(&claim(&pipeline, "w2", 1), now + TimeDelta::minutes(4))
            .await
            .unwrap()
            .is_empty()
    );
    // After expiry w2 reclaims it, in the working state, with a new attempt number.
    let later = now + TimeDelta::minutes(6);
    let second = store
        .claim(&claim(&pipeline, "w2", 1), later)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(second.retirement.current_state(), stage.working_state);
    assert!(second.resumes_working_state);
    assert_eq!(second.lease.attempt, first.lease.attempt + 1);
    // The stale worker wakes up: every write fails closed, nothing is written.
    let err = store
        .advance(
            a.id(),
            Some(&first.lease),
            &stage.complete_state,
            "late",
            Actor::Driver,
            later,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseLost { attempt: 1, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("lease lost on retirement {} (attempt 1)", a.id())
    );
    assert!(matches!(
        store.heartbeat(&first.lease, later).await.unwrap_err(),
        StoreError::LeaseLost { .. }
    ));
    assert!(matches!(
        store.release(&first.lease).await.unwrap_err(),
        StoreError::LeaseLost { .. }
    ));
    let record = store.get(a.id()).await.unwrap();
    assert_eq!(record.current_state(), stage.working_state);
    assert_eq!(record.log().len(), 2);
    // The new holder finishes the step.
    store
        .advance(
            a.id(),
            Some(&second.lease),
            &stage.complete_state,
            "204",
            Actor::Driver,
            later,
        )
        .await
        .unwrap();
}

async fn operator_override_fences_the_worker(store: Store) {
    let pipeline = six_stage(&store).await;
    let a = enqueue(&store, 1, day(0)).await;
    let now = day(8);
    let held = store
        .claim(&claim(&pipeline, "w1", 1), now)
        .await
        .unwrap()
        .remove(0);
    let why = Override {
        operator: "ops".into(),
        reason: "abort this one".into(),
    };
    store.force(a.id(), "ABORTED", &why, now).await.unwrap();
    let working = &pipeline.stages()[0].working_state;
    let err = store
        .advance(a.id(), Some(&held.lease), working, "s", Actor::Driver, now)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
    assert_eq!(store.get(a.id()).await.unwrap().current_state(), "ABORTED");
}

/// Runs `claimers` concurrent claimers in batches of `batch` until the queue is empty and
/// checks that no id was handed out twice.
async fn claim_everything(
    store: &Store,
    pipeline: &Pipeline,
    learners: usize,
    claimers: usize,
    batch: i64,
) {
    let mut tasks = Vec::new();
    for w in 0..claimers {
        let store = store.clone();
        let request = claim(pipeline, &format!("worker-{w}"), batch);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store.claim(&request, day(8)).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|c| c.retirement.id()));
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(
        all.len(),
        distinct.len(),
        "double claims: {} of {}",
        all.len() - distinct.len(),
        all.len()
    );
    assert_eq!(distinct.len(), learners);
}

async fn sqlite_style_claimers_never_double_claim(store: Store) {
    let pipeline = six_stage(&store).await;
    for n in 0..200 {
        enqueue(&store, n, day(0)).await;
    }
    claim_everything(&store, &pipeline, 200, 4, 7).await;
}

async fn eight_claimers_over_2000_learners(store: Store) {
    let pipeline = six_stage(&store).await;
    // Enqueue concurrently: the store is a pool.
    let mut tasks = Vec::new();
    for chunk in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for n in (chunk * 250)..(chunk * 250 + 250) {
                enqueue(&store, n, day(0)).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    claim_everything(&store, &pipeline, 2000, 8, 5).await;
}
