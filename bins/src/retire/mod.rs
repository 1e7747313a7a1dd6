//! `retire`: the driver and admin CLI. Parses flags, loads the config, wires the crates, runs
//! one command. The state machine, the store and the clients live in the library crates.

mod admin;
mod cleanup;
mod completed;
#[cfg(feature = "demo")]
mod demo;
mod drive;
mod partner;
pub(crate) mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::error::{CliError, exit};
use crate::logging::{self, LogFormat};

const EXIT_CODES: &str = "\
Exit status:
  0  done
  1  failed: the store, a service or a file failed, or the command was refused
     (learner not found, wrong state, …)
  2  bad usage or bad config: nothing was changed
  3  `run`: more learners queued than user_count_error_threshold (nothing was changed)
  4  `run`: finished, but at least one learner was set to ERRORED or refused
  5  `run`: finished with a service endpoint still down; its learners wait, resumable
     (the summary and the metrics name it; the next run probes it again)
  6  `partner-report`: a partner owed a report has no point of contact (compliance
     failure; the others were delivered, its learners wait in the spool)
`retire learner` exits with tubular's statuses instead: 0, 255 (-1 setup), 254 (-2 end
state), 253 (-3 working state), 252 (-4 error while retiring), 251 (-5 not found),
250 (-6 unknown state), 249 (-7 bad config).";

/// The exit statuses, then every built-in stage and connector (`--help`).
fn long_help() -> String {
    let mut text = format!("{EXIT_CODES}\n\nBuilt-in stages (SERVICE operation):\n");
    text.push_str(&retirement_http::catalog::help_text());
    text.push_str("Third-party connectors (set up under connectors:):\n");
    for (service, operation, follows) in retirement_http::connectors::vendors::BUILT_IN {
        text.push_str(&format!("  {service} {operation}  ({follows})\n"));
    }
    text.push_str("Other services: describe them under services: (see docs/connectors.md).");
    text
}

/// Retire learners (GDPR erasure) from Open edX and your own services.
///
/// Reads tubular's YAML config (`--config`) unchanged, plus this tool's keys. The store is a
/// SQLite file by default (`sqlite://retirement.db`), PostgreSQL or MySQL/MariaDB for several
/// workers, or `lms` to use a real Open edX LMS's API as the store. Logs go to stderr and name
/// learners by retirement id or retired username only.
#[derive(Debug, Parser)]
#[command(
    name = "retire",
    version,
    term_width = 100,
    after_help = EXIT_CODES,
    after_long_help = long_help()
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
struct Global {
    /// The YAML config file (tubular's format plus this tool's keys).
    #[arg(
        long,
        global = true,
        visible_alias = "config_file",
        env = "RETIREMENT_CONFIG_FILE",
        value_name = "PATH"
    )]
    config: Option<PathBuf>,
    /// The store, overriding the config's `store`: sqlite://PATH, postgres://…, mysql://… or
    /// lms.
    #[arg(
        long,
        global = true,
        env = "RETIREMENT_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    store: Option<String>,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "RETIREMENT_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace); `RUST_LOG` overrides it.
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "RETIREMENT_LOG_LEVEL"
    )]
    log_level: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Claim and retire every actionable learner: PENDING past the cool-off, any
    /// `*_COMPLETE`, and `RETIRING_*` learners whose worker died (lease expired; their step
    /// runs again). Several `run` processes may share one PostgreSQL or MySQL store.
    ///
    /// SIGINT/SIGTERM: no more claims; busy learners finish their current step within the
    /// grace period, leases are released, and the process exits.
    Run(drive::RunArgs),
    /// Retire one learner by original username, as tubular's retire_one_learner.py does,
    /// with its refusals and exit statuses (see `retire learner --help`).
    Learner(drive::LearnerArgs),
    /// List the learners a run would retire (no personal data is printed).
    Queue(admin::QueueArgs),
    /// Show one learner's state, last state and log.
    Status(admin::StatusArgs),
    /// Move one learner to any state, audited: the documented recovery from ERRORED. Reset
    /// to the state just before the step to retry; the next `run` resumes there.
    Reset(admin::ResetArgs),
    /// Move every learner in one state, requested within a date window, to another state
    /// (`--to`) or back to where the driver can resume (`--rewind`). All or nothing.
    Rerun(admin::RerunArgs),
    /// Cancel a PENDING retirement by the learner's email address (with `store: lms`,
    /// through the LMS's staff account lookup and cancel_retirement).
    Cancel(admin::CancelArgs),
    /// Export every open request (ERRORED included) with its statutory deadline: received,
    /// due, days left (`deadlines:` regime, default GDPR's one month). No personal data.
    Report(admin::ReportArgs),
    /// Extend one learner's statutory deadline by the regime's extension (GDPR: two
    /// months; CCPA: 45 days; the statutes allow one), audited with a reason.
    Extend(admin::ExtendArgs),
    /// The completion feed: learners who reached COMPLETE since a time, with retired
    /// username, LMS user id, completion time and stages run — no original username, email
    /// or name — for downstream erasure jobs.
    Completed(completed::CompletedArgs),
    /// The partner report: fetch the LMS's partner-reporting queue, publish one CSV per
    /// partner (org_partner_mapping) to a folder or object storage, announce each to the
    /// partner's contacts (email or webhook), then clean up exactly the delivered rows.
    /// `prune` warns, then deletes reports past their retention.
    PartnerReport(partner::PartnerReportArgs),
    /// The LMS's partner-reporting queue, without a report.
    PartnerQueue {
        #[command(subcommand)]
        command: partner::PartnerQueueCommand,
    },
    /// Serve the operator console: the queue per state, deadlines, one learner's timeline,
    /// audited actions, bulk retry, a JSON API and /metrics (config `console:`).
    Serve(serve::ServeArgs),
    /// Console helpers.
    Console {
        #[command(subcommand)]
        command: serve::ConsoleCommand,
    },
    /// Mark a manual stage (a person's task, e.g. Salesforce's) done for one learner,
    /// audited: the learner moves on to the stage's completion state.
    Done(admin::DoneArgs),
    /// Archive COMPLETE learners (gzip JSON lines, to a file or to object storage: s3://,
    /// gs://, az://, file://), then redact and delete their statuses, in batches.
    Cleanup(cleanup::CleanupArgs),
    /// Queue learners for retirement: one, or a CSV of username,email[,name[,lms_user_id]]
    /// (with `store: lms`, usernames through the LMS's bulk_retire_users).
    Request(admin::RequestArgs),
    /// Manage the state table.
    States {
        #[command(subcommand)]
        command: admin::StatesCommand,
    },
    /// Manage the database schema.
    Db {
        #[command(subcommand)]
        command: admin::DbCommand,
    },
    /// Retire 1,000 made-up learners through the six-stage pipeline (or, with `--services
    /// all`, every erasure stream) against a fake edX and fake vendors on 127.0.0.1 and a
    /// temporary SQLite store, with a progress bar and a summary.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
}

/// Runs the CLI and returns the process status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.global.log_format, &cli.global.log_level);
    // One thread drives every learner: the work is waiting on I/O, and a single scheduler
    // thread avoids cross-thread wake-ups on every store round trip (measured in BENCHMARKS.md).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("retire: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let result = runtime.block_on(dispatch(cli));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("retire: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}

async fn dispatch(cli: Cli) -> Result<u8, CliError> {
    let Cli { global, command } = cli;
    let config = || load_config(&global);
    match command {
        Command::Learner(args) => drive::learner(&global, args).await,
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::demo(&global, args).await,
        Command::Run(args) => drive::run(&config()?, &global, args).await,
        Command::Queue(args) => admin::queue(&config()?, args).await,
        Command::Status(args) => admin::status(&config()?, args).await,
        Command::Reset(args) => admin::reset(&config()?, args).await,
        Command::Rerun(args) => admin::rerun(&config()?, args).await,
        Command::Cancel(args) => admin::cancel(&config()?, args).await,
        Command::Done(args) => admin::done(&config()?, args).await,
        Command::Extend(args) => admin::extend(&config()?, args).await,
        Command::Completed(args) => completed::completed(&config()?, args).await,
        Command::PartnerReport(args) => partner::partner_report(&config()?, args).await,
        Command::PartnerQueue { command } => partner::partner_queue(&config()?, command).await,
        Command::Serve(args) => serve::serve(&config()?, args).await,
        Command::Console { command } => serve::console_command(command),
        Command::Report(args) => admin::report(&config()?, args).await,
        Command::Cleanup(args) => cleanup::cleanup(&config()?, args).await,
        Command::Request(args) => admin::request(&config()?, args).await,
        Command::States { command } => admin::states(&config()?, command).await,
        Command::Db { command } => admin::db(&config()?, command).await,
    }
}

/// The config file (or defaults without one), with `--store` applied and unknown keys
/// reported.
fn load_config(global: &Global) -> Result<Config, CliError> {
    let mut config = match &global.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(store) = &global.store {
        config.store = store.clone();
    }
    if !config.unknown_keys.is_empty() {
        tracing::warn!(
            file = %config.file_name(),
            keys = %config.unknown_keys.join(", "),
            "unknown config keys ignored"
        );
    }
    Ok(config)
}

/// The operator named in audit entries: `--operator`, else `$USER`.
fn operator(given: Option<String>) -> Result<String, CliError> {
    given
        .or_else(|| std::env::var("USER").ok())
        .filter(|o| !o.trim().is_empty())
        .ok_or_else(|| CliError::Usage("name the operator with --operator (or set USER)".into()))
}

fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}
