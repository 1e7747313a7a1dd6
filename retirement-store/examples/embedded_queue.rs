//! Embedding `retirement-store`: a retirement queue in an embedded SQLite file, worked by a
//! job of your own. Three learners are queued, one worker claims them under a lease and moves
//! each through the six-stage pipeline's states (where your own calls would go), and the
//! COMPLETE records are then removed, their originals redacted first.
//!
//! Run it with `cargo run -p retirement-store --example embedded_queue`.

use chrono::{DateTime, TimeDelta, Utc};
use retirement_core::{
    Actor, COMPLETE, OriginalIdentity, Pipeline, RetiredIdConfig, SIX_STAGE_STATES,
};
use retirement_store::{
    ClaimRequest, DieselStore, NewRetirement, QueueQuery, RetirementStore, StoreOptions,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("retire-embedded-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("retirement.db").display());
    let store = DieselStore::open(&url, &StoreOptions::default()).await?;
    let applied = store.migrate().await?;
    println!("{url}: {} migration(s) applied", applied.len());
    let states: Vec<String> = SIX_STAGE_STATES.iter().map(|s| s.to_string()).collect();
    store.sync_states(&states, false).await?;
    let (_, pipeline) = Pipeline::six_stage_example();

    let requested: DateTime<Utc> = "2026-11-01T10:00:00Z".parse()?;
    let ids = RetiredIdConfig::new(vec!["example-salt".into()])?;
    let mut usernames = Vec::new();
    for n in 1..=3 {
        let original = OriginalIdentity {
            username: format!("learner{n}"),
            email: format!("learner{n}@example.org"),
            name: format!("Learner {n}"),
        };
        usernames.push(original.username.clone());
        let queued = store
            .enqueue(NewRetirement::new(original, Some(100 + n), &ids), requested)
            .await?;
        println!(
            "queued retirement {} as {}",
            queued.id(),
            queued.retired_username()
        );
    }

    // The job: claim what is due and move each learner through its stages.
    let mut now = requested + TimeDelta::days(8);
    let claim =
        ClaimRequest::for_pipeline(&pipeline, "example-worker", 10, TimeDelta::minutes(5), 7);
    let claimed = store.claim(&claim, now).await?;
    assert_eq!(claimed.len(), 3);
    for learner in &claimed {
        let id = learner.retirement.id();
        for stage in pipeline.stages() {
            now += TimeDelta::seconds(1);
            store
                .advance(
                    id,
                    Some(&learner.lease),
                    &stage.working_state,
                    "",
                    Actor::Driver,
                    now,
                )
                .await?;
            // … call `stage.service`'s `stage.operation` here …
            let done = format!("{} {} answered 204", stage.service, stage.operation);
            store
                .advance(
                    id,
                    Some(&learner.lease),
                    &stage.complete_state,
                    &done,
                    Actor::Driver,
                    now,
                )
                .await?;
        }
        // Reaching COMPLETE (or ERRORED) ends the lease; a worker that stops early gives it
        // back with `release`.
        store
            .advance(id, Some(&learner.lease), COMPLETE, "", Actor::Driver, now)
            .await?;
        println!("retirement {id} is COMPLETE");
    }
    // Nothing is left to claim or list.
    let queue = QueueQuery {
        states: pipeline
            .queue_states()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        cool_off_days: 0,
        limit: None,
    };
    assert!(store.queue(&queue, now).await?.is_empty());
    assert!(store.claim(&claim, now).await?.is_empty());

    // Cleanup: the records come back (originals included) for an archive, then are gone.
    let removed = store.cleanup(&usernames).await?;
    println!("cleaned up {} retirement(s)", removed.len());
    assert_eq!(removed.len(), 3);
    for username in &usernames {
        assert!(store.find_by_username(username).await.is_err());
    }
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
