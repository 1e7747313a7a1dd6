//! The LMS-backed store against the fake LMS, which serves the status API from a SQLite
//! `DieselStore`: what the LMS API allows of the store suite.
//!
//! Not applicable, because the LMS API has no such call: state sync, enqueue, the request
//! ledger, lookup by id before a listing, real leases (heartbeat and fencing are emulated), and
//! one-transaction bulk moves and cleanups.

use chrono::{TimeDelta, Utc};
use retirement_core::{Actor, OriginalIdentity, Override, Pipeline, RetiredIdConfig, RetirementId};
use retirement_http::LmsStore;
use retirement_http::fake::FakeEdx;
use retirement_store::{ClaimRequest, NewRetirement, QueueQuery, RetirementStore, StoreError};

struct Setup {
    world: crate::support::LmsWorld,
    lms: LmsStore,
    pipeline: Pipeline,
}

async fn setup(learners: usize) -> Setup {
    let (table, pipeline) = Pipeline::six_stage_example();
    let names: Vec<String> = table.names().map(str::to_owned).collect();
    let world = crate::support::lms_world(&names).await;
    let ids = RetiredIdConfig::new(vec!["salt".into()]).unwrap();
    let long_ago = Utc::now() - TimeDelta::days(30);
    for n in 0..learners {
        let original = OriginalIdentity {
            username: format!("Learner{n}"),
            email: format!("learner{n}@example.com"),
            name: format!("Learner {n}"),
        };
        world
            .store
            .enqueue(
                NewRetirement::new(original, Some(n as i64 + 1), &ids),
                long_ago,
            )
            .await
            .unwrap();
    }
    let lms = LmsStore::new(world.clients.clone()).unwrap();
    Setup {
        world,
        lms,
        pipeline,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lookups_and_listings_match_the_stores_own() {
    let s = setup(3).await;
    let via_lms = s.lms.find_by_username("Learner1").await.unwrap();
    let direct = s.world.store.find_by_username("Learner1").await.unwrap();
    assert_eq!(via_lms.parts().id, direct.parts().id);
    assert_eq!(via_lms.original(), direct.original());
    assert_eq!(via_lms.created(), direct.created());
    assert_eq!(via_lms.current_state(), "PENDING");
    assert!(
        via_lms.log().is_empty(),
        "the LMS API leaves `responses` out"
    );
    assert!(matches!(
        s.lms.find_by_username("learner1").await.unwrap_err(),
        StoreError::NotFound { .. }
    ));

    let query = QueueQuery {
        states: vec!["PENDING".into()],
        cool_off_days: 7,
        limit: Some(2),
    };
    let ids: Vec<RetirementId> = s
        .lms
        .queue(&query, Utc::now())
        .await
        .unwrap()
        .iter()
        .map(|r| r.id())
        .collect();
    let direct_ids: Vec<RetirementId> = s
        .world
        .store
        .queue(&query, Utc::now())
        .await
        .unwrap()
        .iter()
        .map(|r| r.id())
        .collect();
    assert_eq!(ids, direct_ids);
    // The LMS's validation messages come through unchanged.
    let bad = QueueQuery {
        states: vec!["NOPE".into()],
        cool_off_days: 7,
        limit: None,
    };
    let err = s.lms.queue(&bad, Utc::now()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the LMS answered 400: Unknown state. Requested: [\"NOPE\"] Found: []"
    );
    // Everything unsupported says so.
    assert!(matches!(
        s.lms.state_table().await.unwrap_err(),
        StoreError::Unsupported { .. }
    ));
    assert!(matches!(
        s.lms.was_requested(&[]).await.unwrap_err(),
        StoreError::Unsupported { .. }
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn transitions_go_through_the_lms_rules() {
    let s = setup(1).await;
    let learner = s.lms.find_by_username("Learner0").await.unwrap();
    let stage = &s.pipeline.stages()[0];
    let call = |lms: &FakeEdx| lms.calls().last().map(|c| c.status);
    let now = Utc::now();
    s.lms
        .advance(
            learner.id(),
            None,
            &stage.working_state,
            "Starting",
            Actor::Driver,
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        s.world
            .store
            .get(learner.id())
            .await
            .unwrap()
            .current_state(),
        stage.working_state
    );
    // Backwards: the LMS's 400 with its wire text (typo included).
    let err = s
        .lms
        .advance(learner.id(), None, "PENDING", "x", Actor::Driver, now)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Lms { status: 400, message } if message.contains("eariler")),
        "{err}"
    );
    // A forced move carries the operator and reason in its text.
    let why = Override {
        operator: "ops".into(),
        reason: "retry forums".into(),
    };
    let forced = s
        .lms
        .force(learner.id(), "PENDING", &why, now)
        .await
        .unwrap();
    assert_eq!(forced.current_state(), "PENDING");
    let log = s
        .world
        .store
        .get(learner.id())
        .await
        .unwrap()
        .log()
        .to_vec();
    assert!(
        log.last()
            .unwrap()
            .text
            .contains("Forced by operator ops to PENDING: retry forums")
    );
    assert_eq!(
        call(&s.world.fake),
        Some(0),
        "status API calls are recorded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn claims_emulate_leases_with_the_modified_time() {
    let s = setup(2).await;
    let request = ClaimRequest::for_pipeline(&s.pipeline, "w1", 10, TimeDelta::minutes(5), 7);
    let now = Utc::now();
    let claimed = s.lms.claim(&request, now).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let first = &claimed[0];
    let stage = &s.pipeline.stages()[0];
    s.lms
        .advance(
            first.retirement.id(),
            Some(&first.lease),
            &stage.working_state,
            "Starting",
            Actor::Driver,
            now,
        )
        .await
        .unwrap();
    // This process never claims again what it holds, however the LMS lists it.
    assert!(s.lms.claim(&request, Utc::now()).await.unwrap().is_empty());
    // Another process sees only the LMS: the learner just moved into a working state is not
    // claimable until the lease length has passed; the other one is.
    let other_process = LmsStore::new(s.world.clients.clone()).unwrap();
    let request = ClaimRequest::for_pipeline(&s.pipeline, "w2", 10, TimeDelta::minutes(5), 7);
    let again = other_process.claim(&request, Utc::now()).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].retirement.id(), first.retirement.id());
    let later = LmsStore::new(s.world.clients.clone())
        .unwrap()
        .claim(&request, Utc::now() + TimeDelta::minutes(6))
        .await
        .unwrap();
    let resumed = later
        .iter()
        .find(|c| c.retirement.id() == first.retirement.id())
        .unwrap();
    assert!(resumed.resumes_working_state);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_and_cleanup_map_the_lms_answers() {
    let s = setup(2).await;
    let a = s.lms.find_by_username("Learner0").await.unwrap();
    let b = s.lms.find_by_username("Learner1").await.unwrap();
    s.lms
        .advance(b.id(), None, "COMPLETE", "done", Actor::Driver, Utc::now())
        .await
        .unwrap();
    let err = s.lms.cancel(b.id()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Retirement requests can only be cancelled for users in the PENDING state. Current request state for retirement {}: COMPLETE",
            b.id()
        )
    );
    let err = s.lms.cleanup(&["Learner0".into()]).await.unwrap_err();
    assert!(matches!(err, StoreError::NotAllComplete), "{err}");
    let removed = s.lms.cleanup(&["Learner1".into()]).await.unwrap();
    assert_eq!(removed[0].original().username, "Learner1");
    assert!(matches!(
        s.world.store.get(b.id()).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    s.lms.cancel(a.id()).await.unwrap();
    assert!(matches!(
        s.lms.cancel(a.id()).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_move_of_a_learner_another_worker_moved_is_a_lost_lease() {
    let s = setup(1).await;
    let request = ClaimRequest::for_pipeline(&s.pipeline, "w1", 10, TimeDelta::minutes(5), 7);
    let mine = s.lms.claim(&request, Utc::now()).await.unwrap();
    // Another process sees the same PENDING learner on the LMS and starts its first stage.
    let other_process = LmsStore::new(s.world.clients.clone()).unwrap();
    let request = ClaimRequest::for_pipeline(&s.pipeline, "w2", 10, TimeDelta::minutes(5), 7);
    let theirs = other_process.claim(&request, Utc::now()).await.unwrap();
    let working = &s.pipeline.stages()[0].working_state;
    other_process
        .advance(
            theirs[0].retirement.id(),
            Some(&theirs[0].lease),
            working,
            "Starting",
            Actor::Driver,
            Utc::now(),
        )
        .await
        .unwrap();
    // This process's move is refused by the LMS: the other worker has the learner.
    let refused = s
        .lms
        .advance(
            mine[0].retirement.id(),
            Some(&mine[0].lease),
            working,
            "Starting",
            Actor::Driver,
            Utc::now(),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLost { .. })),
        "{refused:?}"
    );
    let now = s.world.store.find_by_username("Learner0").await.unwrap();
    assert_eq!(
        now.current_state(),
        working.as_str(),
        "nothing written over"
    );
}

const QUEUE_PATH: &str = "/api/user/v1/accounts/retirement_queue/";
const UPDATE_PATH: &str = "/api/user/v1/accounts/update_retirement_status/";

/// Moves a claimed learner through every stage but the last write (to COMPLETE).
async fn drive_to_last_stage(s: &Setup, lms: &LmsStore, lease: &retirement_store::Lease) {
    for stage in s.pipeline.stages() {
        for state in [&stage.working_state, &stage.complete_state] {
            lms.advance(
                lease.retirement_id,
                Some(lease),
                state,
                "ok",
                Actor::Driver,
                Utc::now(),
            )
            .await
            .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_older_than_this_process_s_last_write_never_claims_the_learner() {
    let s = setup(1).await;
    let lms = std::sync::Arc::new(LmsStore::new(s.world.clients.clone()).unwrap());
    let request = ClaimRequest::for_pipeline(&s.pipeline, "w1", 8, TimeDelta::minutes(5), 7);
    let claimed = lms.claim(&request, Utc::now()).await.unwrap();
    let lease = claimed[0].lease.clone();
    drive_to_last_stage(&s, &lms, &lease).await;

    // A listing is computed by the LMS (the learner in its last completion state) and is
    // still on its way when the learner's COMPLETE write lands and its hold ends.
    let pause = s.world.fake.pause(QUEUE_PATH);
    let listing = {
        let (lms, request) = (lms.clone(), request.clone());
        tokio::spawn(async move { lms.claim(&request, Utc::now()).await })
    };
    pause.arrived().await;
    lms.advance(
        lease.retirement_id,
        Some(&lease),
        "COMPLETE",
        "done",
        Actor::Driver,
        Utc::now(),
    )
    .await
    .unwrap();
    drop(pause);
    let stale = listing.await.unwrap().unwrap();
    assert!(
        stale.is_empty(),
        "a COMPLETE learner was claimed again from a listing older than its last write: {:?}",
        stale
            .iter()
            .map(|c| c.retirement.current_state())
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_whose_acknowledgement_was_lost_is_not_a_lost_lease() {
    use retirement_http::fake::Fault;
    let s = setup(1).await;
    let request = ClaimRequest::for_pipeline(&s.pipeline, "w1", 8, TimeDelta::minutes(5), 7);
    let claimed = s.lms.claim(&request, Utc::now()).await.unwrap();
    let lease = claimed[0].lease.clone();
    let working = &s.pipeline.stages()[0].working_state;
    // The LMS commits the move, then the answer breaks off.
    s.world.fake.set_fault(
        UPDATE_PATH,
        Some(Fault {
            reset: true,
            ..Fault::default()
        }),
    );
    let start_stage = || {
        s.lms.advance(
            lease.retirement_id,
            Some(&lease),
            working,
            "Starting",
            Actor::Driver,
            Utc::now(),
        )
    };
    let lost = start_stage().await;
    assert!(
        lost.as_ref().is_err_and(StoreError::is_transient),
        "{lost:?}"
    );
    s.world.fake.set_fault(UPDATE_PATH, None);
    // The move is already there: the retry looks first and stands as written, unrefused.
    let retried = start_stage().await;
    assert!(retried.is_ok(), "{retried:?}");
    // And the learner is still this process's: no listing hands it out again.
    let again = s
        .lms
        .claim(&request, Utc::now() + TimeDelta::minutes(10))
        .await
        .unwrap();
    assert!(again.is_empty(), "claimed twice");
}

/// A lease table of its own (`lease_store:`), in a temporary SQLite file.
async fn lease_table(name: &str) -> std::sync::Arc<retirement_store::DieselStore> {
    let path = std::env::temp_dir().join(format!("retire-leases-{}-{name}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let table = retirement_store::DieselStore::open(
        &format!("sqlite://{}", path.display()),
        &retirement_store::StoreOptions::default(),
    )
    .await
    .unwrap();
    table.migrate().await.unwrap();
    std::sync::Arc::new(table)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_lease_table_keeps_hosts_apart_and_fences_a_host_whose_lease_was_taken() {
    let s = setup(2).await;
    let table = lease_table("apart").await;
    let host = || {
        LmsStore::new(s.world.clients.clone())
            .unwrap()
            .with_leases(table.clone())
    };
    let (one, two) = (host(), host());
    let now = Utc::now();
    let request =
        |owner: &str| ClaimRequest::for_pipeline(&s.pipeline, owner, 10, TimeDelta::minutes(5), 7);
    let claimed = one.claim(&request("one"), now).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let lease = claimed[0].lease.clone();
    let working = &s.pipeline.stages()[0].working_state;
    one.advance(
        lease.retirement_id,
        Some(&lease),
        working,
        "Starting",
        Actor::Driver,
        now,
    )
    .await
    .unwrap();
    // Host one holds both: host two, with no in-process memory of them, gets neither.
    assert!(two.claim(&request("two"), now).await.unwrap().is_empty());
    // Nor can a lease-less write (an operator's, `retire learner`) touch them meanwhile.
    let refused = two
        .advance(
            lease.retirement_id,
            None,
            "ERRORED",
            "x",
            Actor::Driver,
            now,
        )
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::Leased { .. }), "{refused}");
    // Host one stalls past its lease; host two takes both over, resuming the working state.
    let later = now + TimeDelta::minutes(6);
    let taken = two.claim(&request("two"), later).await.unwrap();
    assert_eq!(taken.len(), 2);
    let resumed = taken
        .iter()
        .find(|c| c.retirement.id() == lease.retirement_id)
        .unwrap();
    assert!(resumed.resumes_working_state);
    assert!(resumed.lease.attempt > lease.attempt);
    // Host one wakes up: its next write and renewal are refused, and the LMS is untouched.
    let complete = &s.pipeline.stages()[0].complete_state;
    let fenced = one
        .advance(
            lease.retirement_id,
            Some(&lease),
            complete,
            "done",
            Actor::Driver,
            later,
        )
        .await
        .unwrap_err();
    assert!(matches!(fenced, StoreError::LeaseLost { .. }), "{fenced}");
    assert!(matches!(
        one.heartbeat(&lease, later + TimeDelta::minutes(5)).await,
        Err(StoreError::LeaseLost { .. })
    ));
    let state = s.lms.find_by_username("Learner0").await.unwrap();
    assert_eq!(state.current_state(), working.as_str());
    // Host two goes on from there.
    two.advance(
        lease.retirement_id,
        Some(&resumed.lease),
        complete,
        "done",
        Actor::Driver,
        later,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_older_than_another_host_s_write_is_read_again_before_driving() {
    use retirement_store::LeaseTable;
    let s = setup(1).await;
    let table = lease_table("stale").await;
    let one = LmsStore::new(s.world.clients.clone())
        .unwrap()
        .with_leases(table.clone());
    let two = std::sync::Arc::new(
        LmsStore::new(s.world.clients.clone())
            .unwrap()
            .with_leases(table.clone()),
    );
    let request =
        |owner: &str| ClaimRequest::for_pipeline(&s.pipeline, owner, 10, TimeDelta::minutes(5), 7);
    // Host one learns the learner from a listing, and lets it go.
    let first = one
        .claim(&request("one"), Utc::now())
        .await
        .unwrap()
        .remove(0);
    one.release(&first.lease).await.unwrap();
    let id = first.retirement.id();

    // Host two's listing is computed (the learner PENDING, nobody's lease) and held on its way…
    let pause = s.world.fake.pause(QUEUE_PATH);
    let listing = {
        let (two, request) = (two.clone(), request("two"));
        tokio::spawn(async move { two.claim(&request, Utc::now()).await })
    };
    pause.arrived().await;
    // …while host one takes the lease, runs the first stage and lets go again.
    let lease = table
        .acquire(id, "one", Utc::now() + TimeDelta::minutes(5), Utc::now())
        .await
        .unwrap()
        .unwrap()
        .lease;
    let stage = &s.pipeline.stages()[0];
    for state in [&stage.working_state, &stage.complete_state] {
        one.advance(id, Some(&lease), state, "ok", Actor::Driver, Utc::now())
            .await
            .unwrap();
    }
    one.release(&lease).await.unwrap();
    drop(pause);
    // Host two wins the lease, sees from the table that its listing is older than the last
    // write, and drives the learner from where it really is.
    let claimed = listing.await.unwrap().unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        claimed[0].retirement.current_state(),
        stage.complete_state.as_str()
    );
    assert!(!claimed[0].resumes_working_state);
}
