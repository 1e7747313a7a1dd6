//! States, enqueue, lookups, listings, transitions, bulk moves, cancel and cleanup.

use chrono::NaiveDate;
use retirement_store::retirement_core::{Actor, CoreError, Override, Retirement, RetirementId};
use retirement_store::{
    ActionKind, DieselStore, Journal, MoveTarget, OperatorAction, QueueQuery, RetirementStore,
    RunRecord, StateWindow, StoreError, StoreOptions,
};

use crate::harness::Test;
use crate::{Store, day, enqueue, ids, learner, with_default_states};

pub(crate) fn tests() -> Vec<Test> {
    vec![
        crate::test!(migrations_are_explicit_and_checked),
        crate::test!(states_sync_and_its_refusals),
        crate::test!(enqueue_and_its_refusals),
        crate::test!(lookup_is_exact_case),
        crate::test!(queue_listing_and_its_messages),
        crate::test!(date_window_listing),
        crate::test!(transitions_write_state_and_log),
        crate::test!(bulk_moves_are_all_or_nothing),
        crate::test!(cancel_only_from_pending),
        crate::test!(cleanup_is_all_or_nothing_and_leaves_no_pii),
        crate::test!(journal_records_actions_and_runs),
    ]
}

/// Enqueues learner `n` on day 0 and moves it through `states` on day 8.
async fn enqueue_through(store: &Store, n: usize, states: &[&str]) -> Retirement {
    let r = enqueue(store, n, day(0)).await;
    for state in states {
        store
            .advance(r.id(), None, state, "ok", Actor::Driver, day(8))
            .await
            .unwrap();
    }
    r
}

fn operator(reason: &str) -> Override {
    Override {
        operator: "ops-alice".into(),
        reason: reason.into(),
    }
}

async fn migrations_are_explicit_and_checked(store: Store) {
    // The harness migrated this database: nothing pending, connect succeeds, migrate is a no-op.
    assert!(store.pending_migrations().await.unwrap().is_empty());
    assert!(store.migrate().await.unwrap().is_empty());
    // A second, empty database is refused by `connect` with the pending list.
    let empty = crate::harness::Provisioned::create(store.backend(), admin_url(&store).as_deref())
        .await
        .unwrap();
    let err = DieselStore::connect(&empty.url, &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::SchemaBehind { pending } if pending == &["20261123000001", "20261204000001", "20261205000001", "20261206000001"]),
        "{err}"
    );
    assert!(err.to_string().contains("run `retire db migrate`"), "{err}");
    let opened = DieselStore::open(&empty.url, &StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(
        opened.migrate().await.unwrap(),
        vec![
            "20261123000001",
            "20261204000001",
            "20261205000001",
            "20261206000001"
        ]
    );
    drop(opened);
    DieselStore::connect(&empty.url, &StoreOptions::default())
        .await
        .unwrap();
    empty.finish().await;
}

fn admin_url(store: &DieselStore) -> Option<String> {
    match store.backend() {
        retirement_store::BackendKind::Sqlite => None,
        retirement_store::BackendKind::Postgres => {
            std::env::var("RETIREMENT_TEST_POSTGRES_URL").ok()
        }
        retirement_store::BackendKind::Mysql => std::env::var("RETIREMENT_TEST_MYSQL_URL").ok(),
    }
}

async fn states_sync_and_its_refusals(store: Store) {
    let names: Vec<String> = [
        "PENDING",
        "RETIRING_A",
        "A_COMPLETE",
        "ERRORED",
        "ABORTED",
        "COMPLETE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // A dry run plans but writes nothing.
    let plan = store.sync_states(&names, true).await.unwrap();
    assert_eq!(plan.added, names);
    assert!(store.state_table().await.unwrap().is_empty());
    store.sync_states(&names, false).await.unwrap();
    let table = store.state_table().await.unwrap();
    assert_eq!(table.names().collect::<Vec<_>>(), names);
    assert_eq!(table.get("A_COMPLETE").unwrap().execution_order, 21);
    assert!(table.get("COMPLETE").unwrap().dead_end);

    // An invalid list is refused with core's message, and nothing changes.
    let bad: Vec<String> = vec!["PENDING".into(), "COMPLETE".into()];
    let err = store.sync_states(&bad, false).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Core(CoreError::MissingRequiredStates { .. })
        ),
        "{err}"
    );

    // Re-sync with a stage added: kept states get new orders, the table is replaced.
    let mut more = names.clone();
    more.splice(3..3, ["RETIRING_B".to_string(), "B_COMPLETE".to_string()]);
    let plan = store.sync_states(&more, false).await.unwrap();
    assert_eq!(plan.added, vec!["RETIRING_B", "B_COMPLETE"]);
    assert_eq!(
        store
            .state_table()
            .await
            .unwrap()
            .names()
            .collect::<Vec<_>>(),
        more
    );

    // Refused while a learner is being processed (any non-required state), even as a dry run.
    let r = enqueue(&store, 1, day(0)).await;
    store
        .advance(
            r.id(),
            None,
            "RETIRING_A",
            "Starting",
            Actor::Driver,
            day(1),
        )
        .await
        .unwrap();
    for dry_run in [true, false] {
        let err = store.sync_states(&names, dry_run).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Core(CoreError::LearnersBeingProcessed)),
            "{err}"
        );
    }
    assert_eq!(
        store
            .state_table()
            .await
            .unwrap()
            .names()
            .collect::<Vec<_>>(),
        more
    );
}

async fn enqueue_and_its_refusals(store: Store) {
    // No states yet: upstream's exact message, and nothing written.
    let err = store
        .enqueue(
            retirement_store::NewRetirement::new(learner(1), Some(1), &ids()),
            day(0),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Default state does not exist! Populate retirement states to retire users."
    );
    assert!(
        !store
            .was_requested(&ids().all_retired_usernames("Learner1"))
            .await
            .unwrap()
    );

    with_default_states(&store).await;
    let r = enqueue(&store, 1, day(0)).await;
    assert_eq!(r.current_state(), "PENDING");
    assert_eq!(r.last_state(), "PENDING");
    assert_eq!(r.retired_username(), ids().retired_username("Learner1"));
    let stored = store.get(r.id()).await.unwrap();
    assert_eq!(stored, r);
    assert_eq!(
        stored.responses_text(),
        "Created in state PENDING (step 1) by create_retirement"
    );

    // The same learner again: the status row is found first; the message names no PII.
    let err = store
        .enqueue(
            retirement_store::NewRetirement::new(learner(1), Some(1), &ids()),
            day(1),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyHasStatus { retirement_id } if retirement_id == r.id())
    );
    assert!(!err.to_string().contains("Learner1"), "{err}");

    // A case variant hashes to the same retired username: the ledger refuses it.
    let mut variant = learner(1);
    variant.username = "LEARNER1".into();
    let err = store
        .enqueue(
            retirement_store::NewRetirement::new(variant, Some(9), &ids()),
            day(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyHasRequest), "{err}");
    assert_eq!(
        err.to_string(),
        "User already has a retirement request row!"
    );

    // The ledger answers for every historical salt.
    let old_salt_only = retirement_core::RetiredIdConfig::new(vec!["new-salt".into()])
        .unwrap()
        .retired_username("Learner1");
    assert!(store.was_requested(&[old_salt_only]).await.unwrap());
    assert!(
        !store
            .was_requested(&ids().all_retired_usernames("Learner2"))
            .await
            .unwrap()
    );
}

async fn lookup_is_exact_case(store: Store) {
    with_default_states(&store).await;
    let r = enqueue(&store, 7, day(0)).await;
    assert_eq!(
        store.find_by_username("Learner7").await.unwrap().id(),
        r.id()
    );
    for other in ["learner7", "LEARNER7", "Learner7 ", "Learner"] {
        let err = store.find_by_username(other).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{other}: {err}");
        assert!(!err.to_string().contains(other.trim()), "{err}");
    }
    let err = store.get(RetirementId(r.id().0 + 1000)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no retirement status matches retirement {}",
            r.id().0 + 1000
        )
    );
}

async fn queue_listing_and_its_messages(store: Store) {
    with_default_states(&store).await;
    let a = enqueue(&store, 1, day(0)).await;
    let b = enqueue(&store, 2, day(1)).await;
    let c = enqueue(&store, 3, day(2)).await;
    store
        .advance(
            c.id(),
            None,
            "LOCKING_COMPLETE",
            "done",
            Actor::Driver,
            day(2),
        )
        .await
        .unwrap();
    let query = |states: &[&str], cool_off_days, limit| QueueQuery {
        states: states.iter().map(|s| s.to_string()).collect(),
        cool_off_days,
        limit,
    };
    let ids_of = |list: Vec<Retirement>| list.iter().map(|r| r.id()).collect::<Vec<_>>();
    // Cool-off is strict: created < now − days.
    let now = day(8);
    assert_eq!(
        ids_of(
            store
                .queue(&query(&["PENDING"], 7, None), now)
                .await
                .unwrap()
        ),
        vec![a.id()]
    );
    assert_eq!(
        ids_of(
            store
                .queue(&query(&["PENDING"], 0, None), now)
                .await
                .unwrap()
        ),
        vec![a.id(), b.id()]
    );
    assert_eq!(
        ids_of(
            store
                .queue(&query(&["PENDING", "LOCKING_COMPLETE"], 0, None), now)
                .await
                .unwrap()
        ),
        vec![a.id(), b.id(), c.id()]
    );
    assert_eq!(
        ids_of(
            store
                .queue(&query(&["LOCKING_COMPLETE", "PENDING"], 0, Some(2)), now)
                .await
                .unwrap()
        ),
        vec![a.id(), b.id()]
    );
    // Listings carry no log.
    assert!(
        store
            .queue(&query(&["PENDING"], 0, None), now)
            .await
            .unwrap()[0]
            .log()
            .is_empty()
    );

    let message = |q: QueueQuery| {
        let store = store.clone();
        async move { store.queue(&q, now).await.unwrap_err().to_string() }
    };
    assert_eq!(
        message(query(&["PENDING"], -1, None)).await,
        "Invalid argument for cool_off_days, must be greater than 0."
    );
    assert_eq!(
        message(query(&[], 7, None)).await,
        "Param \"states\" required with at least one state."
    );
    assert_eq!(
        message(query(&["PENDING", "NOPE"], 7, None)).await,
        "Unknown state. Requested: [\"PENDING\", \"NOPE\"] Found: [\"PENDING\"]"
    );
    assert_eq!(
        message(query(&["PENDING", "PENDING"], 7, None)).await,
        "Unknown state. Requested: [\"PENDING\", \"PENDING\"] Found: [\"PENDING\"]"
    );
    assert_eq!(
        message(query(&["PENDING"], 7, Some(-1))).await,
        "Limit could not be parsed: -1, please ensure this is an integer"
    );
}

async fn date_window_listing(store: Store) {
    with_default_states(&store).await;
    let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
    // day(0) is 2026-11-01 12:00.
    let a = enqueue(&store, 1, day(0)).await;
    let b = enqueue(&store, 2, day(1)).await;
    let _c = enqueue(&store, 3, day(3)).await;
    let window = |start, end| StateWindow {
        state: "PENDING".into(),
        start,
        end,
    };
    let now = day(10);
    let ids: Vec<_> = store
        .by_state_and_date(&window(d(2026, 11, 1), d(2026, 11, 2)), now)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id())
        .collect();
    assert_eq!(ids, vec![a.id(), b.id()]);
    // start == end is one whole day.
    assert_eq!(
        store
            .by_state_and_date(&window(d(2026, 11, 2), d(2026, 11, 2)), now)
            .await
            .unwrap()
            .len(),
        1
    );
    let err = |w| {
        let store = store.clone();
        async move {
            store
                .by_state_and_date(&w, now)
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let bad = "Dates must be today or earlier, and start must be earlier than end.";
    assert_eq!(err(window(d(2026, 11, 3), d(2026, 11, 2))).await, bad);
    assert_eq!(err(window(d(2026, 11, 1), d(2026, 11, 12))).await, bad);
    assert_eq!(
        err(StateWindow {
            state: "NOPE".into(),
            start: d(2026, 11, 1),
            end: d(2026, 11, 2)
        })
        .await,
        "Unknown retirement state."
    );
}

async fn transitions_write_state_and_log(store: Store) {
    with_default_states(&store).await;
    let r = enqueue(&store, 1, day(0)).await;
    let entry = store
        .advance(
            r.id(),
            None,
            "LOCKING_ACCOUNT",
            "Starting: LMS retirement_lms_retire",
            Actor::Driver,
            day(8),
        )
        .await
        .unwrap();
    assert_eq!(entry.from.as_deref(), Some("PENDING (step 1)"));
    assert_eq!(entry.to, "LOCKING_ACCOUNT (step 11)");
    let loaded = store.get(r.id()).await.unwrap();
    assert_eq!(loaded.current_state(), "LOCKING_ACCOUNT");
    assert_eq!(loaded.last_state(), "PENDING");
    assert_eq!(loaded.modified(), day(8));
    assert_eq!(loaded.log().len(), 2);
    assert_eq!(loaded.log()[1], entry);

    // Same state and backwards: upstream's message (typo fixed in ours, see core).
    let err = store
        .advance(r.id(), None, "PENDING", "x", Actor::Driver, day(8))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Core(CoreError::NotLaterState { .. })),
        "{err}"
    );
    let err = store
        .advance(r.id(), None, "NOPE", "x", Actor::Driver, day(8))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Core(CoreError::NotLaterState { .. })),
        "{err}"
    );

    // Into a dead end, then out of it only by an audited override.
    store
        .advance(r.id(), None, "ERRORED", "500 boom", Actor::Driver, day(9))
        .await
        .unwrap();
    let err = store
        .advance(r.id(), None, "COMPLETE", "x", Actor::Driver, day(9))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Core(CoreError::DeadEnd { .. })),
        "{err}"
    );
    let err = store
        .force(
            r.id(),
            "PENDING",
            &Override {
                operator: "ops".into(),
                reason: " ".into(),
            },
            day(9),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Core(CoreError::MissingAuditField { field: "reason" })
        ),
        "{err}"
    );
    let err = store
        .force(r.id(), "NOPE", &operator("fixed"), day(9))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Core(CoreError::UnknownState { .. })),
        "{err}"
    );
    let forced = store
        .force(r.id(), "PENDING", &operator("forum fixed"), day(10))
        .await
        .unwrap();
    assert_eq!(forced.current_state(), "PENDING");
    assert_eq!(forced.last_state(), "ERRORED");
    let last = forced.log().last().unwrap();
    assert_eq!(last.actor, Actor::Operator("ops-alice".into()));
    assert!(last.text.contains("forum fixed"), "{}", last.text);
    // Nothing was half-written by the refusals: exactly four entries.
    assert_eq!(store.get(r.id()).await.unwrap().log().len(), 4);
}

async fn bulk_moves_are_all_or_nothing(store: Store) {
    with_default_states(&store).await;
    let d = |dd| NaiveDate::from_ymd_opt(2026, 11, dd).unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        let r = enqueue_through(&store, n, &["RETIRING_FORUMS", "ERRORED"]).await;
        ids.push(r.id());
    }
    let window = StateWindow {
        state: "ERRORED".into(),
        start: d(1),
        end: d(1),
    };
    // Rewind: the last state was a working state, so each lands one before it.
    let moved = store
        .bulk_move(
            &window,
            &MoveTarget::Rewind,
            &operator("forums back"),
            day(9),
        )
        .await
        .unwrap();
    assert_eq!(moved.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
    for id in &ids {
        assert_eq!(
            store.get(*id).await.unwrap().current_state(),
            "LOCKING_COMPLETE"
        );
    }
    // All or nothing: one learner that cannot move stops the whole batch.
    let pending = StateWindow {
        state: "PENDING".into(),
        start: d(1),
        end: d(2),
    };
    let fresh = enqueue(&store, 10, day(1)).await;
    let other = enqueue(&store, 11, day(1)).await;
    store
        .force(other.id(), "PENDING", &operator("touch"), day(2))
        .await
        .unwrap();
    let err = store
        .bulk_move(&pending, &MoveTarget::Rewind, &operator("x"), day(9))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Core(CoreError::NothingToRewind { retirement_id, .. }) if retirement_id == fresh.id()),
        "{err}"
    );
    assert_eq!(store.get(other.id()).await.unwrap().log().len(), 2);
    // Rerun: to a named state.
    let moved = store
        .bulk_move(
            &pending,
            &MoveTarget::To("LOCKING_COMPLETE".into()),
            &operator("skip lock"),
            day(9),
        )
        .await
        .unwrap();
    assert_eq!(moved.len(), 2);
    assert_eq!(
        store.get(fresh.id()).await.unwrap().current_state(),
        "LOCKING_COMPLETE"
    );
}

async fn cancel_only_from_pending(store: Store) {
    with_default_states(&store).await;
    let a = enqueue(&store, 1, day(0)).await;
    let b = enqueue(&store, 2, day(0)).await;
    store
        .advance(b.id(), None, "LOCKING_ACCOUNT", "s", Actor::Driver, day(8))
        .await
        .unwrap();
    let err = store.cancel(b.id()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Retirement requests can only be cancelled for users in the PENDING state. Current request state for retirement {}: LOCKING_ACCOUNT",
            b.id()
        )
    );
    store.get(b.id()).await.unwrap();
    store.cancel(a.id()).await.unwrap();
    assert!(matches!(
        store.get(a.id()).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    // The ledger row went with it: the learner may request again.
    assert!(
        !store
            .was_requested(&ids().all_retired_usernames("Learner1"))
            .await
            .unwrap()
    );
    let again = enqueue(&store, 1, day(1)).await;
    assert_ne!(again.id(), a.id(), "ids are never reused");
    assert!(matches!(
        store.cancel(a.id()).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
}

async fn cleanup_is_all_or_nothing_and_leaves_no_pii(store: Store) {
    with_default_states(&store).await;
    let mut done = Vec::new();
    for n in 0..3 {
        done.push(enqueue_through(&store, n, &["LMS_COMPLETE", "COMPLETE"]).await);
    }
    let pending = enqueue(&store, 9, day(0)).await;
    let names = |ns: &[usize]| ns.iter().map(|n| learner(*n).username).collect::<Vec<_>>();
    // Unknown, wrong state and repeated names: refused, nothing touched.
    for bad in [names(&[0, 1, 42]), names(&[0, 9]), names(&[0, 0])] {
        let err = store.cleanup(&bad).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "Not all usernames exist in the COMPLETE state."
        );
    }
    assert_eq!(
        store.get(done[0].id()).await.unwrap().original().username,
        "Learner0"
    );
    assert!(store.cleanup(&[]).await.unwrap().is_empty());

    let removed = store.cleanup(&names(&[0, 1, 2])).await.unwrap();
    assert_eq!(removed.len(), 3);
    assert_eq!(removed[1].original(), &learner(1));
    assert_eq!(removed[1].log().len(), 3);
    for r in &done {
        assert!(matches!(
            store.get(r.id()).await.unwrap_err(),
            StoreError::NotFound { .. }
        ));
    }
    // No original of a cleaned learner is left in any text column; the PENDING one still is.
    let mut needles = Vec::new();
    for n in 0..3 {
        let l = learner(n);
        needles.extend([l.username, l.email, l.name]);
    }
    assert_eq!(
        store.text_columns_containing(&needles).await.unwrap(),
        Vec::<&str>::new()
    );
    assert_eq!(
        store
            .text_columns_containing(&[learner(9).email])
            .await
            .unwrap(),
        vec!["retirement_statuses.original_email"]
    );
    // The ledger keeps the hashes: the learners count as retired forever.
    assert!(
        store
            .was_requested(&ids().all_retired_usernames("Learner0"))
            .await
            .unwrap()
    );
    // Not idempotent, as upstream: a second call is refused.
    assert!(matches!(
        store.cleanup(&names(&[0])).await.unwrap_err(),
        StoreError::NotAllComplete
    ));
    let _ = pending;
}

async fn journal_records_actions_and_runs(store: Store) {
    with_default_states(&store).await;
    let a = enqueue(&store, 1, day(0)).await;
    let b = enqueue(&store, 2, day(0)).await;
    let action = |id, kind, reason: &str, d| OperatorAction {
        retirement_id: id,
        at: day(d),
        operator: "ops-alice".into(),
        kind,
        reason: reason.into(),
    };
    store
        .record_action(&action(a.id(), ActionKind::Extend, "complex request", 3))
        .await
        .unwrap();
    store
        .record_action(&action(a.id(), ActionKind::Reveal, "ticket 12", 4))
        .await
        .unwrap();
    store
        .record_action(&action(a.id(), ActionKind::Extend, "second period", 5))
        .await
        .unwrap();
    store
        .record_action(&action(b.id(), ActionKind::Extend, "vendor backlog", 5))
        .await
        .unwrap();
    // A blank reason is refused and records nothing.
    let err = store
        .record_action(&action(b.id(), ActionKind::Extend, "  ", 6))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidArgument(_)), "{err}");
    let of_a = store.actions_of(a.id()).await.unwrap();
    assert_eq!(
        of_a,
        vec![
            action(a.id(), ActionKind::Extend, "complex request", 3),
            action(a.id(), ActionKind::Reveal, "ticket 12", 4),
            action(a.id(), ActionKind::Extend, "second period", 5),
        ]
    );
    let counts = store.extensions().await.unwrap();
    assert_eq!(counts.get(&a.id()), Some(&2));
    assert_eq!(counts.get(&b.id()), Some(&1));
    // Cancelling a learner takes its journal with it.
    store.cancel(b.id()).await.unwrap();
    assert!(store.actions_of(b.id()).await.unwrap().is_empty());
    assert_eq!(store.extensions().await.unwrap().get(&b.id()), None);

    let run = |n: u64| RunRecord {
        started: day(n as i64),
        ended: day(n as i64) + chrono::TimeDelta::seconds(90),
        worker: format!("host-{n}"),
        outcome: if n == 2 {
            "errored".into()
        } else {
            "ok".into()
        },
        claimed: n * 10,
        completed: n * 9,
        errored: n,
        waiting: 0,
        deferred: 0,
    };
    for n in 1..=3 {
        store.record_run(&run(n)).await.unwrap();
    }
    assert_eq!(store.recent_runs(2).await.unwrap(), vec![run(3), run(2)]);
}
