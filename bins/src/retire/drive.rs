//! `retire run` and `retire learner`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use clap::Args;
use indicatif::ProgressBar;
use retirement_core::{DriverOptions, ExitStatus, Outcome};
use retirement_http::runtime::{
    LearnerReport, LearnerResult, RunError, RunObserver, RunOptions, RunSummary, Runner, retire_one,
};
use retirement_store::{RunRecord, StoreError};
use tokio::sync::watch;

use super::{Global, load_config};
use crate::config::Config;
use crate::error::{CliError, exit};
use crate::logging;
use crate::metrics;
use crate::wiring::{self, random_u64};

/// `retire run`'s flags; each overrides the config key of the same name.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Learners retired at once (config `concurrency`, default 8).
    #[arg(long, env = "RETIREMENT_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..=4096))]
    concurrency: Option<u32>,
    /// Claim at most this many learners in this run (per pass with --watch).
    #[arg(long, visible_alias = "max_user_batch_size")]
    limit: Option<usize>,
    /// Retire PENDING learners only after this many days (config `cool_off_days`, default 7).
    #[arg(
        long,
        visible_alias = "cool_off_days",
        env = "RETIREMENT_COOL_OFF_DAYS"
    )]
    cool_off_days: Option<i64>,
    /// Refuse to start (exit 3) when more learners than this are queued: tubular's fail-safe
    /// against a flooded queue (config `user_count_error_threshold`; default off).
    #[arg(long, visible_alias = "user_count_error_threshold")]
    user_count_error_threshold: Option<usize>,
    /// Keep running: after the queue is empty, wait --interval and look again.
    #[arg(long)]
    watch: bool,
    /// The pause between passes with --watch: seconds, or a number with s, m or h.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    interval: Duration,
    /// After SIGINT/SIGTERM, how long busy learners may take to finish their step.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    grace: Duration,
    /// This worker's name in leases (default host:pid).
    #[arg(long)]
    worker_id: Option<String>,
    /// Write Prometheus text-format counters here at the end (node_exporter textfile
    /// collector).
    #[arg(long, value_name = "PATH")]
    metrics_file: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// `retire learner`'s arguments.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit status (tubular's codes, as the OS reports them):
  0    the learner is COMPLETE
  255  (-1) setup failed, or fetching the learner failed
  254  (-2) the learner is already ERRORED, ABORTED or COMPLETE
  253  (-3) the learner is in a working state (RETIRING_*): another worker may own it
  252  (-4) a stage or a state update failed; the learner was set to ERRORED
  251  (-5) no such learner
  250  (-6) the learner's state is not in this config's pipeline
  249  (-7) no config, or an unreadable or invalid one")]
pub(crate) struct LearnerArgs {
    /// The learner's original username (exact case).
    #[arg(value_name = "USERNAME", required_unless_present_any = ["username", "user_id"])]
    positional: Option<String>,
    /// Find the learner by LMS user id instead of username.
    #[arg(long, conflicts_with_all = ["positional", "username"])]
    user_id: Option<i64>,
    /// The same, as tubular's flag.
    #[arg(
        long,
        env = "RETIREMENT_USERNAME",
        hide_env_values = true,
        conflicts_with = "positional"
    )]
    username: Option<String>,
}

/// Parses `90`, `90s`, `5m`, `1h`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 90, 90s, 5m, 1h)"))?;
    let seconds = match unit {
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: the unit must be s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is out of range"))
}

/// The run options the config and flags ask for.
fn run_options(config: &Config, args: &RunArgs) -> Result<RunOptions, CliError> {
    let retry = config
        .retry_policy()
        .map_err(|m| config.error("retry", m))?;
    let outage = config
        .outage_policy()
        .map_err(|m| config.error("outage", m))?;
    let cool_off_days = args.cool_off_days.unwrap_or(config.cool_off_days);
    if cool_off_days < 0 {
        return Err(CliError::Usage(
            "--cool-off-days must not be negative".into(),
        ));
    }
    Ok(RunOptions {
        worker: args
            .worker_id
            .clone()
            .unwrap_or_else(retirement_http::runtime::default_worker_id),
        concurrency: args.concurrency.map_or(config.concurrency, |c| c as usize),
        limit: args.limit,
        lease_for: TimeDelta::seconds(config.lease_seconds as i64),
        cool_off_days,
        driver: DriverOptions {
            retry,
            ..DriverOptions::default()
        },
        seed: random_u64(),
        shutdown_grace: args.grace,
        outage,
        ..RunOptions::default()
    })
}

/// A progress bar fed by the runner.
pub(crate) struct Progress(pub(crate) ProgressBar);

impl RunObserver for Progress {
    fn claimed(&self, count: usize) {
        if self.0.length().is_none() {
            self.0.set_message(format!("{count} claimed"));
        }
    }
    fn finished(&self, report: &LearnerReport) {
        self.0.inc(1);
        if report.result == LearnerResult::Errored {
            self.0
                .set_message(format!("ERRORED: retirement {}", report.retirement_id));
        }
    }
}

/// SIGINT and SIGTERM set the returned flag.
pub(crate) fn stop_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let terminate = async {
            #[cfg(unix)]
            {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            }
            #[cfg(not(unix))]
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        tracing::info!("signal received: stopping after the current steps");
        let _ = tx.send(true);
        // Keep the sender alive so receivers keep seeing `true`.
        std::future::pending::<()>().await
    });
    rx
}

pub(crate) async fn run(config: &Config, global: &Global, args: RunArgs) -> Result<u8, CliError> {
    let started = Utc::now();
    let options = run_options(config, &args)?;
    let worker = options.worker.clone();
    let wired = wiring::wire_as(config, &options.worker).await?;
    let mut total = RunSummary::default();
    let result = run_wired(config, global, args, &wired, options, &mut total).await;
    let outcome = match &result {
        Ok(code) if *code == exit::OK => "ok",
        Ok(code) if *code == exit::SERVICE_DOWN => "service-down",
        Ok(_) if total.shutdown => "interrupted",
        Ok(_) => "errored",
        Err(CliError::Run(RunError::TooManyLearners { .. })) => "refused",
        Err(_) => "failed",
    };
    let record = RunRecord {
        started,
        ended: Utc::now(),
        worker,
        outcome: outcome.to_owned(),
        claimed: total.claimed,
        completed: total.completed,
        errored: total.errored,
        waiting: total.waiting,
        deferred: total.deferred,
    };
    if let Some(journal) = &wired.journal
        && let Err(e) = journal.record_run(&record).await
    {
        tracing::warn!(error = %e, "the run could not be recorded in the journal");
    }
    crate::alerts::after_run(config, &wired, &record, &total, result.as_ref().err()).await;
    super::completed::notify(config, &wired, started).await;
    result
}

async fn run_wired(
    config: &Config,
    global: &Global,
    args: RunArgs,
    wired: &wiring::Wired,
    options: RunOptions,
    total: &mut RunSummary,
) -> Result<u8, CliError> {
    let pipeline = wiring::pipeline(config, wired).await?;
    let steps = wiring::steps(config, wired, &pipeline).await?;
    for warning in wiring::pipeline_warnings(config, &pipeline) {
        tracing::warn!("{warning}");
    }
    let runner = Runner::new(wired.store.clone(), steps, pipeline, options);
    if let Some(threshold) = args
        .user_count_error_threshold
        .or(config.user_count_error_threshold)
    {
        runner.check_threshold(threshold).await?;
    }
    let stop = stop_on_signals();
    let bar = logging::progress(None, logging::interactive(global.log_format));
    let observer = Arc::new(Progress(bar.clone()));
    loop {
        let summary = runner.run(stop.clone(), observer.clone()).await?;
        if args.watch {
            tracing::info!(
                claimed = summary.claimed,
                completed = summary.completed,
                errored = summary.errored,
                "pass finished"
            );
        }
        total.merge(&summary);
        if !args.watch || *stop.borrow() {
            break;
        }
        let mut stop_wait = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(args.interval) => {}
            _ = stop_wait.changed() => {}
        }
        if *stop.borrow() {
            total.shutdown = true;
            break;
        }
    }
    bar.finish_and_clear();
    print_summary(total, args.json);
    if let Some(path) = &args.metrics_file {
        metrics::write(path, &metrics::render(total, Utc::now().timestamp()))?;
    }
    Ok(if !total.services_down.is_empty() {
        exit::SERVICE_DOWN
    } else if total.errored > 0 || total.refused > 0 {
        exit::LEARNERS_FAILED
    } else {
        exit::OK
    })
}

fn print_summary(summary: &RunSummary, json: bool) {
    if json {
        let mut value = serde_json::to_value(summary).unwrap_or_default();
        if let (Some(map), Some(cpu)) = (value.as_object_mut(), process_cpu_seconds()) {
            map.insert("cpu_seconds".into(), cpu.into());
        }
        println!("{value}");
        return;
    }
    println!(
        "claimed {}: completed {}, errored {}, refused {}, lease lost {}, interrupted {}; {} calls, {} state writes in {:.1} s{}",
        summary.claimed,
        summary.completed,
        summary.errored,
        summary.refused,
        summary.lease_lost,
        summary.interrupted,
        summary.calls,
        summary.writes,
        summary.seconds,
        if summary.shutdown {
            " (stopped by a signal)"
        } else {
            ""
        }
    );
    if summary.waiting > 0 {
        println!(
            "WAITING: {} learner(s) parked on a vendor job or a person (`retire queue` lists them)",
            summary.waiting
        );
    }
    if !summary.services_down.is_empty() {
        println!(
            "DOWN: {} ({} learners left resumable; the next run probes again)",
            summary.services_down.join(", "),
            summary.deferred
        );
    }
    if !summary.errored_ids.is_empty() {
        let ids: Vec<String> = summary
            .errored_ids
            .iter()
            .map(|id| id.to_string())
            .collect();
        println!(
            "ERRORED: retirement {} (see `retire status`)",
            ids.join(", ")
        );
    }
}

/// This process's CPU time (user + system) so far, from /proc (Linux only).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the parenthesised name: utime and stime are the 12th and 13th fields.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(ticks as f64 / 100.0)
}

/// tubular's `retire_one_learner` on one learner; returns tubular's OS status.
pub(crate) async fn learner(global: &Global, args: LearnerArgs) -> Result<u8, CliError> {
    let status = |s: ExitStatus| s.os_status();
    let username = args.positional.or(args.username);
    if username.is_none() && args.user_id.is_none() {
        eprintln!("retire: a username (or --user-id) is required");
        return Ok(status(ExitStatus::BadConfig));
    }
    if global.config.is_none() {
        eprintln!("No config file passed in.");
        return Ok(status(ExitStatus::BadConfig));
    }
    let config = match load_config(global) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("Failed to read config file\n{e}");
            return Ok(status(ExitStatus::BadConfig));
        }
    };
    let setup = async {
        let wired = wiring::wire(&config).await?;
        let pipeline = wiring::pipeline(&config, &wired).await?;
        let steps = wiring::steps(&config, &wired, &pipeline).await?;
        Ok::<_, CliError>((wired, pipeline, steps))
    };
    let (wired, pipeline, steps) = match setup.await {
        Ok(parts) => parts,
        Err(e @ CliError::Config { .. }) => {
            eprintln!("{e}");
            return Ok(status(ExitStatus::BadConfig));
        }
        Err(e) => {
            eprintln!("Unexpected error occurred!\n{e}");
            return Ok(status(ExitStatus::SetupFailed));
        }
    };
    for warning in wiring::pipeline_warnings(&config, &pipeline) {
        tracing::warn!("{warning}");
    }
    let found = match (&username, args.user_id) {
        (Some(username), _) => wired.store.find_by_username(username).await,
        (None, Some(id)) => wired.store.find_by_user_id(id).await,
        (None, None) => unreachable!("checked above"),
    };
    let retirement = match found {
        Ok(r) => r,
        Err(StoreError::NotFound { .. }) => {
            eprintln!(
                "Learner not found. Please check that the learner is present in \
                 UserRetirementStatus, is not already retired, and is in an appropriate state \
                 to be acted upon."
            );
            return Ok(status(ExitStatus::BadLearner));
        }
        Err(e) => {
            eprintln!("Unexpected error fetching user state!\n{e}");
            return Ok(status(ExitStatus::SetupFailed));
        }
    };
    tracing::info!(
        retirement_id = retirement.id().0,
        retired_username = retirement.retired_username(),
        config = %config.file_name(),
        "Starting learner retirement"
    );
    let options = RunOptions {
        driver: DriverOptions {
            retry: config
                .retry_policy()
                .map_err(|m| config.error("retry", m))?,
            ..DriverOptions::default()
        },
        seed: random_u64(),
        ..RunOptions::default()
    };
    let report = retire_one(wired.store.clone(), steps, pipeline, &retirement, options).await;
    match &report.outcome {
        // The body of a failing response stays in the store's log: services may echo
        // personal data in it.
        Some(Outcome::Errored { state, message, .. }) => println!(
            "Error encountered in state \"{state}\"\n{}\n(the full response is in the log: `retire status`)",
            message.lines().next().unwrap_or_default()
        ),
        Some(outcome) => println!("{outcome}"),
        None => println!("stopped before finishing"),
    }
    Ok(status(report.exit_status()))
}
