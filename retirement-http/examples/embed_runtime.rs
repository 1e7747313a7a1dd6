//! Embedding the driver runtime in a service of your own: a retirement queue in embedded
//! SQLite, your own step caller for your own services, and an observer for progress. The
//! "ecommerce" service here answers 503 to its first two calls; the runtime retries it (with
//! the backoff of `RunOptions::driver.retry`) and every learner completes. A second run, over
//! the same queue with the edX services faked on 127.0.0.1, shows the standard `Steps`.
//!
//! Run it with `cargo run -p retirement-http --example embed_runtime`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use retirement_core::{Input, OriginalIdentity, Pipeline, RetiredIdConfig, Retirement, Stage};
use retirement_http::fake::{FakeConfig, FakeEdx};
use retirement_http::runtime::{
    LearnerReport, NoObserver, RunObserver, RunOptions, Runner, StepCaller,
};
use retirement_http::{ClientCredentials, HttpOptions, ServiceClients, Steps};
use retirement_store::{DieselStore, NewRetirement, RetirementStore, StoreOptions};

/// Your services: ECOMMERCE is flaky at first, everything else erases at once.
struct MyServices {
    ecommerce_failures_left: AtomicU32,
}

#[async_trait]
impl StepCaller for MyServices {
    async fn call(&self, stage: &Stage, learner: &Retirement, _now: DateTime<Utc>) -> Input {
        if stage.service == "ECOMMERCE"
            && self
                .ecommerce_failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Input::Response {
                status: 503,
                body: "try again later".into(),
                retry_after: None,
            };
        }
        Input::StepSucceeded {
            message: format!(
                "{} {} erased {}",
                stage.service,
                stage.operation,
                learner.retired_username()
            ),
        }
    }
}

/// Prints each learner as it finishes (retired usernames only: never an original).
struct Progress;

impl RunObserver for Progress {
    fn finished(&self, report: &LearnerReport) {
        println!(
            "retirement {} ({}): {:?} after {} call(s)",
            report.retirement_id, report.retired_username, report.result, report.calls
        );
    }
}

async fn queue(
    store: &DieselStore,
    first: i64,
    count: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    let ids = RetiredIdConfig::new(vec!["example-salt".into()])?;
    for n in first..first + count {
        let original = OriginalIdentity {
            username: format!("learner{n}"),
            email: format!("learner{n}@example.org"),
            name: format!("Learner {n}"),
        };
        store
            .enqueue(
                NewRetirement::new(original, Some(n), &ids),
                Utc::now() - TimeDelta::days(8),
            )
            .await?;
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (table, pipeline) = Pipeline::six_stage_example();
    let pipeline = Arc::new(pipeline);
    let store = Arc::new(DieselStore::open("sqlite::memory:", &StoreOptions::default()).await?);
    store.migrate().await?;
    let states: Vec<String> = table.names().map(str::to_owned).collect();
    store.sync_states(&states, false).await?;
    queue(&store, 1, 3).await?;

    let mut options = RunOptions {
        concurrency: 2,
        ..RunOptions::default()
    };
    options.driver.retry.initial_backoff = Duration::from_millis(50);
    let services = Arc::new(MyServices {
        ecommerce_failures_left: AtomicU32::new(2),
    });
    let runner = Runner::new(store.clone(), services, pipeline.clone(), options.clone());
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let summary = runner.run(stopped.clone(), Arc::new(Progress)).await?;
    println!(
        "your services: {} claimed, {} completed, {} calls (2 of them retried)",
        summary.claimed, summary.completed, summary.calls
    );
    assert_eq!((summary.completed, summary.errored), (3, 0));
    assert_eq!(summary.calls, 3 * 6 + 2);

    // The same runtime with the edX services' HTTP clients, against the fake edX.
    queue(&store, 4, 2).await?;
    let edx = FakeEdx::start(FakeConfig::default()).await?;
    let base_urls = ["lms", "ecommerce"]
        .into_iter()
        .map(|service| (service.to_owned(), edx.base_url()))
        .collect();
    let credentials = ClientCredentials {
        client_id: "retirement-worker".into(),
        client_secret: "s3cret".into(),
    };
    let clients = ServiceClients::new(base_urls, credentials, Vec::new(), &HttpOptions::default())?;
    let steps = Arc::new(Steps::new(Arc::new(clients), None, 2026));
    let runner = Runner::new(store.clone(), steps, pipeline, options);
    let summary = runner.run(stopped, Arc::new(NoObserver)).await?;
    println!(
        "edX services: {} completed with {} HTTP calls to {}",
        summary.completed,
        edx.calls().len(),
        edx.base_url()
    );
    assert_eq!(summary.completed, 2);
    assert_eq!(edx.calls().len(), 2 * 6);
    Ok(())
}
