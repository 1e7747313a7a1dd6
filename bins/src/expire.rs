//! `expire-assignments`: the enterprise assignment expiry cron.
//!
//! Thin: parse flags, open the store, call `assignment_expiry` or `retirement-store`, report.
//! The rules and the line format live in the `assignment-expiry` crate; the streamed passes
//! over the tables in `retirement-store`.

use std::io::{self, BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use assignment_expiry::{Policy, PolicyKind, evaluate, format_decision, parse_line};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use retirement_core::SplitMix64;
use retirement_http::expiry::{
    self, BrazeConfig, EnterpriseServices, ExpirySummary, PassOptions, default_service_retry,
};
use retirement_store::DieselStore;
use retirement_store::enterprise_access::{EnterpriseAccessStore, OUTBOX};

use crate::config::{AssignmentsSchema, Config};
use crate::error::CliError;
use crate::logging::LogFormat;
use crate::wiring::random_u64;

/// Expire stale enterprise content assignments and scrub learners' emails.
///
/// `run`, `scrub-pii` and `import` work on the assignment tables of a store: the config's
/// `assignments_store`, else its `store` (default sqlite://retirement.db), or `--store`.
#[derive(Debug, Parser)]
#[command(
    name = "expire-assignments",
    version,
    term_width = 100,
    after_help = "Exit status: 0 done; 1 failed (store, file, or malformed input lines); 2 bad usage or config; 5 done, but a service failed and some rows were left undecided."
)]
struct Cli {
    /// The YAML config file (the `retire` config; reads store, assignments_store and
    /// expiry_policy).
    #[arg(
        long,
        global = true,
        visible_alias = "config_file",
        env = "RETIREMENT_CONFIG_FILE",
        value_name = "PATH"
    )]
    config: Option<PathBuf>,
    /// The store holding the assignments, overriding the config.
    #[arg(
        long,
        global = true,
        env = "RETIREMENT_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    store: Option<String>,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decide, for each assignment read as a JSON line on stdin, whether it expires now; write one
    /// decision per line on stdout. Reads and writes nothing else.
    ///
    /// Input line: {"uuid", "state", "learner_email", "lms_user_id", "created", "allocated_at",
    /// "actions": [{"action_type", "completed_at", "error_reason"}], "has_credit_request",
    /// "preferred_course_run_key", and either "enrollment_deadline" or "content_metadata":
    /// {"normalized_metadata": {"enroll_by_date"}, "normalized_metadata_by_run": {RUN:
    /// {"enroll_by_date"}}}, "subsidy_expiration", "configuration_active"}. States and action
    /// types in lower case; times RFC 3339; enroll-by and subsidy dates as upstream writes them
    /// (%Y-%m-%dT%H:%M:%SZ, optional .%f, or a space for T).
    ///
    /// Output line: {"uuid", "expire", "reason", "new_state", "scrub_pii", "tombstone",
    /// "earliest_possible_expiration": {"date", "reason"}, "warnings"}.
    ///
    /// A malformed line is reported on stderr with its line number (never its contents); the
    /// other lines are still evaluated, and the exit status is 1 at the end.
    Evaluate {
        /// Which expiry policy to apply.
        #[arg(long, value_enum, default_value_t = PolicyArg::Adr0016)]
        policy: PolicyArg,
        /// The time to evaluate at (RFC 3339, e.g. 2024-06-01T00:00:00Z). Default: now.
        #[arg(long)]
        now: Option<DateTime<Utc>>,
    },
    /// One expiry pass over the store's allocated assignments: each is evaluated, and those
    /// due are expired (and scrubbed where the policy says so) in batches. Prints a summary by
    /// reason.
    Run {
        /// The policy (default: the config's expiry_policy, else adr-0016).
        #[arg(long, value_enum)]
        policy: Option<PolicyArg>,
        /// Evaluate and count, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The time to evaluate at (RFC 3339). Default: now.
        #[arg(long)]
        now: Option<DateTime<Utc>>,
        /// Assignments per batch.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        batch_size: u32,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The policy's PII job: scrub the emails of expired assignments whose learners it may
    /// forget (the current policy's separate job; under adr-0016 scrubbing happens at expiry).
    ScrubPii {
        /// The policy (default: the config's expiry_policy, else adr-0016).
        #[arg(long, value_enum)]
        policy: Option<PolicyArg>,
        /// Count, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The time to evaluate at (RFC 3339). Default: now.
        #[arg(long)]
        now: Option<DateTime<Utc>>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prepare the assignments store: this project's schema gets its migrations;
    /// enterprise-access's database is checked and gets the outbox table
    /// (`notifications: outbox`), the only table this project adds there.
    Migrate,
    /// Load assignments from a JSON-lines file (the `evaluate` input format) into the store.
    /// The whole file is checked first; nothing is written if any line is bad. Lines already
    /// imported are skipped, so re-running finishes an interrupted import.
    Import {
        /// The JSON-lines file.
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PolicyArg {
    /// ADR 0016: notified-or-created anchor, first match, strict comparisons, cancel, scrub
    /// at once for the 90-day reason.
    #[value(name = "adr-0016")]
    Adr0016,
    /// Current upstream: allocated_at anchor, earliest date, inclusive comparison, expire;
    /// scrubbing is left to the PII job.
    Current,
    /// The edX fork's October 2026 amendment: current, plus COURSE_RUN_ENDED (every known run
    /// ended), whose rows the PII job clears too, by the reason recorded at expiry.
    #[value(name = "edx-2026")]
    Edx2026,
}

/// Runs the CLI and returns the process status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init(cli.log_format, "info");
    match cli.command {
        Command::Evaluate { policy, now } => {
            let kind = match policy {
                PolicyArg::Adr0016 => PolicyKind::Adr0016,
                PolicyArg::Current => PolicyKind::Current,
                PolicyArg::Edx2026 => PolicyKind::Edx2026,
            };
            let now = now.unwrap_or_else(Utc::now);
            let stdin = io::stdin().lock();
            let stdout = BufWriter::new(io::stdout().lock());
            match run_evaluate(stdin, stdout, &Policy::named(kind), now) {
                Ok(0) => ExitCode::SUCCESS,
                Ok(bad) => {
                    eprintln!(
                        "expire-assignments: {bad} malformed line(s); the rest were evaluated"
                    );
                    ExitCode::FAILURE
                }
                // A closed pipe (`| head`) is not an error worth a message.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("expire-assignments: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        command => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("expire-assignments: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let global = (cli.config, cli.store);
            match runtime.block_on(store_command(global, command)) {
                Ok(Outcome::Done) => ExitCode::SUCCESS,
                Ok(Outcome::Undecided) => {
                    eprintln!(
                        "expire-assignments: some rows were left undecided because a service failed (see the summary)"
                    );
                    ExitCode::from(crate::error::exit::SERVICE_DOWN)
                }
                Err(e) => {
                    eprintln!("expire-assignments: {e}");
                    ExitCode::from(e.exit_status())
                }
            }
        }
    }
}

fn policy_kind(arg: Option<PolicyArg>, config: &Config) -> PolicyKind {
    match arg {
        Some(PolicyArg::Adr0016) => PolicyKind::Adr0016,
        Some(PolicyArg::Current) => PolicyKind::Current,
        Some(PolicyArg::Edx2026) => PolicyKind::Edx2026,
        None => config.expiry_policy,
    }
}

fn print_json_or<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string(value).unwrap_or_default());
    } else {
        print!("{}", text());
    }
}

/// What a store command came to: done, or done with rows a service left undecided.
enum Outcome {
    Done,
    Undecided,
}

async fn store_command(
    (config_path, store): (Option<PathBuf>, Option<String>),
    command: Command,
) -> Result<Outcome, CliError> {
    let config = match &config_path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let url = store
        .or_else(|| config.assignments_store.clone())
        .unwrap_or_else(|| config.store.clone());
    if url == crate::wiring::LMS_STORE {
        return Err(CliError::Usage(
            "assignments live in a SQL store: set assignments_store or pass --store".into(),
        ));
    }
    let mut seed = SplitMix64::new(random_u64());
    let mut nonce = move || seed.next_u64();
    if let Command::Import { file } = &command {
        if config.assignments_schema != AssignmentsSchema::Own {
            return Err(config.error(
                "assignments_schema",
                "import fills this project's own tables; enterprise-access's database is read in place",
            ));
        }
        let store: Arc<DieselStore> = crate::wiring::open_sql(&url).await?;
        let open = || std::fs::File::open(file).map(io::BufReader::new);
        let summary = store.import_assignments(open, Utc::now()).await?;
        println!(
            "imported {}, already present {}, configurations {}, content keys {}",
            summary.imported, summary.already_present, summary.configurations, summary.content_keys
        );
        return Ok(Outcome::Done);
    }
    if let Command::Migrate = &command {
        match config.assignments_schema {
            AssignmentsSchema::Own => {
                let store = DieselStore::open(&url, &Default::default()).await?;
                let applied = store.migrate().await?;
                println!("applied {} migration(s)", applied.len());
            }
            AssignmentsSchema::EnterpriseAccess => {
                let sql = Arc::new(DieselStore::open(&url, &Default::default()).await?);
                let store = EnterpriseAccessStore::open(sql).await?;
                store.create_outbox().await?;
                println!("enterprise-access schema recognised; outbox table {OUTBOX} is in place");
            }
        }
        return Ok(Outcome::Done);
    }
    let store = crate::wiring::assignment_store(&config, &url).await?;
    let services = match config.assignments_schema {
        AssignmentsSchema::Own => None,
        AssignmentsSchema::EnterpriseAccess => {
            let clients =
                crate::wiring::clients(&config, "expire-assignments")?.ok_or_else(|| {
                    config.error(
                        "base_urls.lms",
                        "enterprise-access's schema needs client_id, client_secret and base_urls \
                     (lms, enterprise_catalog, enterprise_subsidy)",
                    )
                })?;
            let mut services =
                EnterpriseServices::new(&clients, default_service_retry(), random_u64())
                    .map_err(|e| config.error("base_urls", e.to_string()))?;
            if config.notifications == expiry::Notifications::Braze {
                let braze = config.braze.as_ref().ok_or_else(|| {
                    config.error(
                        "braze",
                        "notifications: braze needs api_url, api_key and campaigns {regular, bnr}",
                    )
                })?;
                services = services.with_braze(BrazeConfig {
                    api_url: braze.api_url.clone(),
                    api_key: braze.api_key.expose().to_owned(),
                    regular_campaign: braze.campaigns.regular.clone(),
                    bnr_campaign: braze.campaigns.bnr.clone(),
                    learner_portal_url: braze.learner_portal_url.clone(),
                });
            }
            Some(services)
        }
    };
    match command {
        Command::Run {
            policy,
            dry_run,
            now,
            batch_size,
            json,
        } => {
            let options = PassOptions {
                policy: Policy::named(policy_kind(policy, &config)),
                now: now.unwrap_or_else(Utc::now),
                dry_run,
                page_size: batch_size as usize,
                notifications: config.notifications,
            };
            let summary = expiry::expire(
                store.as_ref(),
                services.as_ref(),
                &options,
                &mut nonce,
                &mut |_| {},
            )
            .await?;
            print_json_or(json, &summary, || run_text(&summary));
            Ok(if summary.undecided > 0 {
                Outcome::Undecided
            } else {
                Outcome::Done
            })
        }
        Command::ScrubPii {
            policy,
            dry_run,
            now,
            json,
        } => {
            let options = PassOptions {
                policy: Policy::named(policy_kind(policy, &config)),
                now: now.unwrap_or_else(Utc::now),
                dry_run,
                page_size: expiry::DEFAULT_PAGE_SIZE,
                notifications: config.notifications,
            };
            let summary =
                expiry::scrub_pii(store.as_ref(), services.as_ref(), &options, &mut nonce).await?;
            print_json_or(json, &summary, || {
                let mut out = format!(
                    "scanned {}, scrubbed {}{}\n",
                    summary.scanned,
                    summary.scrubbed,
                    if dry_run {
                        " (dry run: nothing changed)"
                    } else {
                        ""
                    }
                );
                for (reason, count) in &summary.skipped {
                    out.push_str(&format!("  skipped, {reason}: {count}\n"));
                }
                left_for_next_run(
                    &mut out,
                    summary.undecided,
                    &summary.undecided_configurations,
                    summary.changed_meanwhile,
                );
                out
            });
            Ok(if summary.undecided > 0 {
                Outcome::Undecided
            } else {
                Outcome::Done
            })
        }
        Command::Import { .. } | Command::Migrate => Ok(Outcome::Done),
        Command::Evaluate { .. } => Err(CliError::Usage(
            "evaluate reads stdin and needs no store".into(),
        )),
    }
}

/// The rows a run left for the next one: undecided (a service failed), or changed by another
/// writer between read and write.
fn left_for_next_run(
    out: &mut String,
    undecided: u64,
    why: &std::collections::BTreeMap<String, String>,
    changed_meanwhile: u64,
) {
    if undecided > 0 {
        out.push_str(&format!(
            "  undecided (a service failed; left as they were): {undecided}\n"
        ));
        for (configuration, error) in why {
            out.push_str(&format!("    configuration {configuration}: {error}\n"));
        }
    }
    if changed_meanwhile > 0 {
        out.push_str(&format!(
            "  changed by another writer meanwhile (next run): {changed_meanwhile}\n"
        ));
    }
}

fn run_text(summary: &ExpirySummary) -> String {
    let mut out = format!(
        "scanned {}, expired {}{}, kept {}, scrubbed {}, emails queued {} sent {} failed {}, with warnings {}\n",
        summary.scanned,
        summary.expired,
        if summary.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        },
        summary.kept,
        summary.scrubbed,
        summary.emails_queued,
        summary.emails_sent,
        summary.emails_failed,
        summary.with_warnings
    );
    for (reason, count) in &summary.by_reason {
        let name = serde_json::to_value(reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{reason:?}"));
        out.push_str(&format!("  {name}: {count}\n"));
    }
    if summary.skipped_inactive > 0 {
        out.push_str(&format!(
            "  skipped (inactive configuration): {}\n",
            summary.skipped_inactive
        ));
    }
    left_for_next_run(
        &mut out,
        summary.undecided,
        &summary.undecided_configurations,
        summary.changed_meanwhile,
    );
    out
}

/// Evaluates every line; returns how many were malformed.
fn run_evaluate(
    input: impl BufRead,
    mut output: impl Write,
    policy: &Policy,
    now: DateTime<Utc>,
) -> io::Result<usize> {
    let mut malformed = 0;
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line) {
            Ok((assignment, context)) => {
                let decision = evaluate(&assignment, &context, policy, now);
                writeln!(output, "{}", format_decision(&decision))?;
            }
            Err(e) => {
                malformed += 1;
                eprintln!("expire-assignments: line {}: {e}", index + 1);
            }
        }
    }
    output.flush()?;
    Ok(malformed)
}
