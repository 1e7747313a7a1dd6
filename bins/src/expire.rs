//! `expire-assignments`: the enterprise assignment expiry cron.
//!
//! Thin: parse flags, stream JSON lines through `assignment_expiry`, report. The rules and the
//! line format live in the `assignment-expiry` crate.

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use assignment_expiry::{Policy, PolicyKind, evaluate, format_decision, parse_line};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

/// Expire stale enterprise content assignments and scrub learners' emails.
#[derive(Debug, Parser)]
#[command(name = "expire-assignments", version, term_width = 100)]
struct Cli {
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
}

/// Runs the CLI and returns the process status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Evaluate { policy, now } => {
            let kind = match policy {
                PolicyArg::Adr0016 => PolicyKind::Adr0016,
                PolicyArg::Current => PolicyKind::Current,
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
    }
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
