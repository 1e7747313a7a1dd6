//! The core's machine driving real calls through the clients to the fake edX: 404s are
//! tolerated only where the pipeline says so.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use retirement_core::{
    Action, Actor, DriverOptions, Input, Machine, OriginalIdentity, Outcome, Pipeline,
    RetiredIdConfig, RetirementId, SplitMix64, Stage, StateTable,
};
use retirement_http::fake::Fault;
use retirement_http::{LearnerRef, ServiceClients};
use retirement_store::{DieselStore, NewRetirement, RetirementStore};

const STATES: &[&str] = &[
    "PENDING",
    "RETIRING_FORUMS",
    "FORUMS_COMPLETE",
    "RETIRING_LMS",
    "LMS_COMPLETE",
    "ERRORED",
    "ABORTED",
    "COMPLETE",
];

/// Runs one learner through `pipeline` to its outcome, writing each state to `store`.
async fn drive(
    store: &DieselStore,
    clients: &ServiceClients,
    pipeline: Arc<Pipeline>,
    id: RetirementId,
) -> Outcome {
    let record = store.get(id).await.unwrap();
    let mut now = Utc::now();
    let mut machine = Machine::start(
        &record,
        pipeline,
        DriverOptions::default(),
        SplitMix64::new(1),
        now,
    );
    let learner = LearnerRef::of(&record);
    loop {
        match machine
            .poll_action()
            .expect("the machine always has a next action")
        {
            Action::SkipStage { .. } => {}
            Action::SetState {
                new_state,
                response,
            } => {
                store
                    .advance(id, None, &new_state, &response, Actor::Driver, now)
                    .await
                    .unwrap();
                machine.handle_input(now, Input::StateWritten).unwrap();
            }
            Action::Call {
                service, operation, ..
            } => {
                let outcome = clients.call(&service, &operation, &learner).await.unwrap();
                machine.handle_input(now, outcome.into_input()).unwrap();
            }
            // Virtual time: jump to the retry instead of waiting for it.
            Action::RetryAt { at } => {
                now = at.max(now + TimeDelta::milliseconds(1));
                machine.handle_input(now, Input::Tick).unwrap();
            }
            Action::Park { .. } | Action::PollJob { .. } => {
                unreachable!("the six-stage pipeline has no job or manual stage")
            }
            Action::Finish(outcome) => return outcome,
        }
    }
}

fn pipeline() -> Arc<Pipeline> {
    let table = StateTable::from_names(STATES).unwrap();
    let stages = vec![
        Stage::new(
            "RETIRING_FORUMS",
            "FORUMS_COMPLETE",
            "LMS",
            "retirement_retire_forum",
        ),
        Stage::new(
            "RETIRING_LMS",
            "LMS_COMPLETE",
            "LMS",
            "retirement_lms_retire",
        ),
    ];
    Arc::new(Pipeline::new(stages, &table).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_404_is_success_only_where_the_stage_tolerates_it() {
    let names: Vec<String> = STATES.iter().map(|s| s.to_string()).collect();
    let world = crate::support::lms_world(&names).await;
    let (store, fake, clients, pipeline) = (&world.store, &world.fake, &world.clients, pipeline());
    let ids = RetiredIdConfig::new(vec!["salt".into()]).unwrap();
    let enqueue = |n: i64| {
        let original = OriginalIdentity {
            username: format!("Learner{n}"),
            email: format!("l{n}@example.com"),
            name: String::new(),
        };
        store.enqueue(
            NewRetirement::new(original, Some(n), &ids),
            Utc::now() - TimeDelta::days(30),
        )
    };
    let not_found = Fault {
        status: Some(404),
        body: Some("No information about learner".into()),
        ..Fault::default()
    };

    // The forum answers 404 ("never posted"): tolerated, the learner completes.
    fake.set_fault(
        "/api/discussion/v1/accounts/retire_forum/",
        Some(not_found.clone()),
    );
    let a = enqueue(1).await.unwrap();
    assert_eq!(
        drive(store, clients, pipeline.clone(), a.id()).await,
        Outcome::Completed
    );
    let log = store.get(a.id()).await.unwrap().log().to_vec();
    assert!(
        log.iter()
            .any(|e| e.text.contains("No information about learner")),
        "the 404 body is logged"
    );

    // The final LMS step answers 404: not tolerated, the learner is ERRORED with the body.
    fake.set_fault("/api/user/v1/accounts/retire/", Some(not_found));
    let b = enqueue(2).await.unwrap();
    match drive(store, clients, pipeline.clone(), b.id()).await {
        Outcome::Errored {
            state,
            message,
            recorded,
        } => {
            assert_eq!(state, "RETIRING_LMS");
            assert!(
                message.contains("404") && message.contains("No information about learner"),
                "{message}"
            );
            assert!(recorded);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.get(b.id()).await.unwrap().current_state(), "ERRORED");
    assert!(fake.overlaps().is_empty());
}
