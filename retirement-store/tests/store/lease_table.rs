//! The shared lease table (`lease_store:` beside `store: lms`): acquisition, fencing, expiry,
//! revocation and racing acquirers.

use std::collections::HashMap;

use chrono::TimeDelta;
use retirement_store::retirement_core::RetirementId;
use retirement_store::{LeaseTable, StoreError};

use crate::harness::Test;
use crate::{Store, day};

pub(crate) fn tests() -> Vec<Test> {
    vec![
        crate::test!(a_lease_is_held_fenced_and_handed_on_with_its_last_state),
        crate::test!(an_expired_lease_is_taken_over_and_fences_its_old_holder),
        crate::test!(a_revoked_lease_fences_its_holder_and_forgets_the_state),
        crate::test!(racing_acquirers_take_each_learner_once),
    ]
}

fn lost(e: StoreError) -> bool {
    matches!(e, StoreError::LeaseLost { .. })
}

async fn a_lease_is_held_fenced_and_handed_on_with_its_last_state(store: Store) {
    let (id, now) = (RetirementId(7), day(0));
    let five = now + TimeDelta::minutes(5);
    let first = store.acquire(id, "w1", five, now).await.unwrap().unwrap();
    assert_eq!(first.lease.attempt, 1);
    assert_eq!(first.lease.expires, five);
    assert_eq!(first.last_state, None, "never leased before");
    // Live: nobody else gets it, and it is listed with its owner.
    assert_eq!(store.acquire(id, "w2", five, now).await.unwrap(), None);
    assert_eq!(store.live(now).await.unwrap(), vec![first.lease.clone()]);
    assert_eq!(
        store.live_on(id, now).await.unwrap(),
        Some(first.lease.clone())
    );
    assert_eq!(store.live_on(RetirementId(99), now).await.unwrap(), None);
    store
        .fence(&first.lease, "RETIRING_FORUMS", now)
        .await
        .unwrap();
    let renewed = store
        .renew(&first.lease, now + TimeDelta::minutes(10))
        .await
        .unwrap();
    assert_eq!(renewed.expires, now + TimeDelta::minutes(10));
    store
        .fence(&renewed, "FORUMS_COMPLETE", now + TimeDelta::minutes(8))
        .await
        .unwrap();
    store.release(&renewed).await.unwrap();
    assert!(store.live(now).await.unwrap().is_empty());
    // The next holder learns the state last written, under a raised fencing number.
    let second = store.acquire(id, "w2", five, now).await.unwrap().unwrap();
    assert_eq!(second.lease.attempt, 2);
    assert_eq!(second.last_state.as_deref(), Some("FORUMS_COMPLETE"));
    // The first holder's lease is gone for every fenced operation.
    assert!(lost(store.fence(&renewed, "X", now).await.unwrap_err()));
    assert!(lost(store.renew(&renewed, five).await.unwrap_err()));
    assert!(lost(store.release(&renewed).await.unwrap_err()));
}

async fn an_expired_lease_is_taken_over_and_fences_its_old_holder(store: Store) {
    let (id, now) = (RetirementId(8), day(0));
    let first = store
        .acquire(id, "w1", now + TimeDelta::minutes(5), now)
        .await
        .unwrap()
        .unwrap();
    let later = now + TimeDelta::minutes(6);
    // Out of time: even before anyone takes it over, its holder may not write.
    assert!(lost(
        store
            .fence(&first.lease, "RETIRING_X", later)
            .await
            .unwrap_err()
    ));
    assert!(store.live(later).await.unwrap().is_empty());
    let second = store
        .acquire(id, "w2", later + TimeDelta::minutes(5), later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.lease.attempt, 2);
    assert!(lost(
        store
            .renew(&first.lease, later + TimeDelta::minutes(5))
            .await
            .unwrap_err()
    ));
    store
        .fence(&second.lease, "RETIRING_X", later)
        .await
        .unwrap();
}

async fn a_revoked_lease_fences_its_holder_and_forgets_the_state(store: Store) {
    let (id, now) = (RetirementId(9), day(0));
    let five = now + TimeDelta::minutes(5);
    let first = store.acquire(id, "w1", five, now).await.unwrap().unwrap();
    store
        .fence(&first.lease, "RETIRING_LMS", now)
        .await
        .unwrap();
    store.revoke(id).await.unwrap();
    assert!(lost(
        store
            .fence(&first.lease, "LMS_COMPLETE", now)
            .await
            .unwrap_err()
    ));
    // Free at once, with no recorded state: the operator's move made it unknown.
    let next = store.acquire(id, "w2", five, now).await.unwrap().unwrap();
    assert_eq!(next.lease.attempt, 3);
    assert_eq!(next.last_state, None);
    // Revoking a learner never leased is harmless.
    store.revoke(RetirementId(10)).await.unwrap();
}

async fn racing_acquirers_take_each_learner_once(store: Store) {
    let now = day(0);
    let mut tasks = Vec::new();
    for worker in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("w{worker}");
            let mut mine = Vec::new();
            for n in 0..150 {
                // Each worker walks the learners from a different place, so races happen on
                // both the insert (never leased) and the update (released) paths.
                let id = RetirementId(100 + (n + worker * 25) % 150);
                if let Some(a) = store
                    .acquire(id, &owner, now + TimeDelta::minutes(5), now)
                    .await
                    .unwrap()
                {
                    mine.push(a.lease);
                }
            }
            mine
        }));
    }
    let mut holders: HashMap<i64, usize> = HashMap::new();
    let mut leases = Vec::new();
    for task in tasks {
        for lease in task.await.unwrap() {
            *holders.entry(lease.retirement_id.0).or_default() += 1;
            leases.push(lease);
        }
    }
    assert_eq!(holders.len(), 150, "every learner was taken");
    assert!(holders.values().all(|&n| n == 1), "one holder each");
    // Second round over released rows: again exactly one winner per learner.
    for lease in &leases {
        store.release(lease).await.unwrap();
    }
    let mut tasks = Vec::new();
    for worker in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = 0;
            for n in 0..150 {
                let id = RetirementId(100 + n);
                let owner = format!("v{worker}");
                if store
                    .acquire(id, &owner, now + TimeDelta::minutes(5), now)
                    .await
                    .unwrap()
                    .is_some()
                {
                    won += 1;
                }
            }
            won
        }));
    }
    let mut won = 0;
    for task in tasks {
        won += task.await.unwrap();
    }
    assert_eq!(won, 150);
}
