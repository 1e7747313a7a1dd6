//! `retire demo`: the whole system on one machine with nothing but this binary — a fake edX on
//! 127.0.0.1 that guards its step endpoints with the learners' states, a temporary SQLite
//! store, made-up learners, and the six-stage pipeline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use retirement_core::Pipeline;
use retirement_http::Steps;
use retirement_http::runtime::{RunOptions, Runner};

use super::Global;
use super::drive::{Progress, stop_on_signals};
use crate::error::{CliError, exit};
use crate::logging;
use crate::sandbox::{Sandbox, SandboxOptions};
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
    /// `retire status --store sqlite://DIR/store.db …`).
    #[arg(long, value_name = "DIR")]
    keep_in: Option<PathBuf>,
}

pub(crate) async fn demo(global: &Global, args: DemoArgs) -> Result<u8, CliError> {
    let mut sandbox = Sandbox::new(SandboxOptions {
        dir: args.keep_in.clone(),
        prefix: "Demo".into(),
        ..SandboxOptions::new("demo")
    })
    .await?;
    let store = sandbox.store.clone();
    let (_, pipeline) = Pipeline::six_stage_example();
    let pipeline = Arc::new(pipeline);

    let clients = sandbox.clients()?;

    println!(
        "demo: fake edX at {}, store {}, {} learners, six stages, concurrency {}",
        sandbox.fake.base_url(),
        store.redacted_url(),
        args.learners,
        args.concurrency
    );
    sandbox.seed(args.learners as usize).await?;

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
    let calls = sandbox.fake.calls().len();
    let overlaps = sandbox.fake.overlaps().len();
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
    drop(store);
    if let Some(dir) = sandbox.finish(false) {
        println!("store kept at {}", dir.join("store.db").display());
    }
    Ok(
        if summary.completed == u64::from(args.learners) && overlaps == 0 {
            exit::OK
        } else {
            exit::FAILED
        },
    )
}
