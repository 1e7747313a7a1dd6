//! `retire demo`: the whole system on one machine with nothing but this binary — a fake edX on
//! 127.0.0.1 that guards its step endpoints with the learners' states, a temporary SQLite
//! store, made-up learners, and the six-stage pipeline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeDelta, Utc};
use clap::Args;
use retirement_core::{OriginalIdentity, Pipeline, RetiredIdConfig, SIX_STAGE_STATES};
use retirement_http::Steps;
use retirement_http::fake::{FakeConfig, FakeEdx};
use retirement_http::runtime::{RunOptions, Runner};
use retirement_http::{ClientCredentials, HttpOptions, ServiceClients};
use retirement_store::{DieselStore, NewRetirement, RetirementStore, StoreOptions};

use super::Global;
use super::drive::{Progress, stop_on_signals};
use crate::error::{CliError, exit};
use crate::logging;
use crate::wiring::random_u64;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many learners to retire.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    learners: u32,
    /// Learners retired at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    concurrency: u32,
    /// Keep the SQLite file in this directory instead of a temporary one (inspect it with
    /// `retire status --store sqlite://DIR/demo.db …`).
    #[arg(long, value_name = "DIR")]
    keep_in: Option<PathBuf>,
}

struct TempDir(PathBuf, bool);

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub(crate) async fn demo(global: &Global, args: DemoArgs) -> Result<u8, CliError> {
    let dir = match &args.keep_in {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(CliError::io(format!("creating {}", dir.display())))?;
            TempDir(dir.clone(), false)
        }
        None => {
            let dir = std::env::temp_dir().join(format!(
                "retire-demo-{}-{:x}",
                std::process::id(),
                random_u64()
            ));
            std::fs::create_dir_all(&dir)
                .map_err(CliError::io(format!("creating {}", dir.display())))?;
            TempDir(dir, true)
        }
    };
    let db = dir.0.join("demo.db");
    let url = format!("sqlite://{}", db.display());
    let store = Arc::new(DieselStore::open(&url, &StoreOptions::default()).await?);
    store.migrate().await?;
    let states: Vec<String> = SIX_STAGE_STATES.iter().map(|s| s.to_string()).collect();
    store.sync_states(&states, false).await?;
    let (_, pipeline) = Pipeline::six_stage_example();
    let pipeline = Arc::new(pipeline);

    let fake_config = FakeConfig {
        lms_store: Some(store.clone()),
        enforce_state_guard: true,
        ..FakeConfig::default()
    };
    let credentials = ClientCredentials {
        client_id: fake_config.client_id.clone(),
        client_secret: fake_config.client_secret.clone(),
    };
    let fake = FakeEdx::start(fake_config).await?;
    let base_urls: BTreeMap<String, String> = ["lms", "ecommerce"]
        .into_iter()
        .map(|k| (k.to_owned(), fake.base_url()))
        .collect();
    let clients = Arc::new(ServiceClients::new(
        base_urls,
        credentials,
        Vec::new(),
        &HttpOptions::default(),
    )?);

    println!(
        "demo: fake edX at {}, store {}, {} learners, six stages, concurrency {}",
        fake.base_url(),
        store.redacted_url(),
        args.learners,
        args.concurrency
    );
    let ids = RetiredIdConfig::new(vec!["demo-salt".into()])
        .map_err(|e| CliError::Refused(e.to_string()))?;
    let requested = Utc::now() - TimeDelta::days(30);
    for n in 1..=args.learners {
        let original = OriginalIdentity {
            username: format!("demo_learner_{n}"),
            email: format!("demo.learner.{n}@example.com"),
            name: format!("Demo Learner {n}"),
        };
        store
            .enqueue(
                NewRetirement::new(original, Some(i64::from(n)), &ids),
                requested,
            )
            .await?;
    }

    let steps = Arc::new(Steps::new(clients, Some(store.clone()), random_u64()));
    steps.check_pipeline(&pipeline).map_err(CliError::Refused)?;
    let runner = Runner::new(
        store.clone(),
        steps,
        pipeline,
        RunOptions {
            concurrency: args.concurrency as usize,
            seed: random_u64(),
            ..RunOptions::default()
        },
    );
    let bar = logging::progress(
        Some(u64::from(args.learners)),
        logging::interactive(global.log_format),
    );
    let started = Instant::now();
    let summary = runner
        .run(stop_on_signals(), Arc::new(Progress(bar.clone())))
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let calls = fake.calls().len();
    let overlaps = fake.overlaps().len();
    println!(
        "learners completed: {} of {} (errored {}, interrupted {})",
        summary.completed, args.learners, summary.errored, summary.interrupted
    );
    println!(
        "calls made:         {calls} service calls, {} state writes; {overlaps} overlapping calls for one learner",
        summary.writes
    );
    println!("wall time:          {seconds:.2} s");
    println!(
        "learners per second: {:.0}",
        summary.completed as f64 / seconds.max(1e-9)
    );
    if !dir.1 {
        println!("store kept at {}", db.display());
    }
    Ok(
        if summary.completed == u64::from(args.learners) && overlaps == 0 {
            exit::OK
        } else {
            exit::FAILED
        },
    )
}
