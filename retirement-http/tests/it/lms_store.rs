//! The LMS-backed store against the fake LMS, which serves the status API from a SQLite
//! `DieselStore`: what the LMS API allows of the store suite.
//!
//! Not applicable, because the LMS API has no such call: state sync, enqueue, the request
//! ledger, lookup by id before a listing, real leases (heartbeat and fencing are emulated), and
//! one-transaction bulk moves and cleanups.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use retirement_core::{Actor, OriginalIdentity, Override, Pipeline, RetiredIdConfig, RetirementId};
use retirement_http::fake::{FakeConfig, FakeEdx};
use retirement_http::{ClientCredentials, HttpOptions, LmsStore, ServiceClients};
use retirement_store::{
    ClaimRequest, DieselStore, NewRetirement, QueueQuery, RetirementStore, StoreError, StoreOptions,
};

struct Setup {
    direct: Arc<DieselStore>,
    lms: LmsStore,
    fake: FakeEdx,
    pipeline: Pipeline,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn setup(learners: usize) -> Setup {
    let dir = std::env::temp_dir().join(format!(
        "lms-store-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("lms.db").display());
    let direct = DieselStore::open(&url, &StoreOptions::default())
        .await
        .unwrap();
    direct.migrate().await.unwrap();
    let (table, pipeline) = Pipeline::six_stage_example();
    let names: Vec<String> = table.names().map(str::to_owned).collect();
    direct.sync_states(&names, false).await.unwrap();
    let ids = RetiredIdConfig::new(vec!["salt".into()]).unwrap();
    let long_ago = Utc::now() - TimeDelta::days(30);
    for n in 0..learners {
        let original = OriginalIdentity {
            username: format!("Learner{n}"),
            email: format!("learner{n}@example.com"),
            name: format!("Learner {n}"),
        };
        direct
            .enqueue(
                NewRetirement::new(original, Some(n as i64 + 1), &ids),
                long_ago,
            )
            .await
            .unwrap();
    }
    let direct = Arc::new(direct);
    let fake = FakeEdx::start(FakeConfig {
        lms_store: Some(direct.clone()),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let base_urls: BTreeMap<String, String> =
        [("lms".to_string(), fake.base_url())].into_iter().collect();
    let credentials = ClientCredentials {
        client_id: "retirement-worker".into(),
        client_secret: "s3cret".into(),
    };
    let clients = Arc::new(
        ServiceClients::new(base_urls, credentials, Vec::new(), &HttpOptions::default()).unwrap(),
    );
    let lms = LmsStore::new(clients).unwrap();
    Setup {
        direct,
        lms,
        fake,
        pipeline,
        _dir: TempDir(dir),
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread")]
async fn lookups_and_listings_match_the_stores_own() {
    let s = setup(3).await;
    let via_lms = s.lms.find_by_username("Learner1").await.unwrap();
    let direct = s.direct.find_by_username("Learner1").await.unwrap();
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
        .direct
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
        s.direct.get(learner.id()).await.unwrap().current_state(),
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
    let log = s.direct.get(learner.id()).await.unwrap().log().to_vec();
    assert!(
        log.last()
            .unwrap()
            .text
            .contains("Forced by operator ops to PENDING: retry forums")
    );
    assert_eq!(call(&s.fake), Some(0), "status API calls are recorded");
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
    // Just moved into a working state: not claimable until the lease length has passed.
    let again = s.lms.claim(&request, Utc::now()).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].retirement.id(), first.retirement.id());
    let later = s
        .lms
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
        s.direct.get(b.id()).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    s.lms.cancel(a.id()).await.unwrap();
    assert!(matches!(
        s.lms.cancel(a.id()).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
}
