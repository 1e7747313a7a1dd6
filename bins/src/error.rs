//! The binaries' one error type and its exit statuses.

use retirement_http::HttpError;
use retirement_http::runtime::RunError;
use retirement_store::StoreError;

/// Exit statuses of `retire` and `expire-assignments` (the `learner` command uses tubular's
/// instead; see `retire learner --help`).
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// A failure at run time: the store, a service, a file; or a refusal (not found, wrong
    /// state).
    pub const FAILED: u8 = 1;
    /// Bad usage or a bad config: nothing was changed.
    pub const USAGE: u8 = 2;
    /// `run`'s fail-safe: more learners queued than `user_count_error_threshold`.
    pub const TOO_MANY: u8 = 3;
    /// `run` finished, but at least one learner was set to ERRORED or refused.
    pub const LEARNERS_FAILED: u8 = 4;
    /// `run` finished with a service still down: its learners wait, resumable (the summary
    /// and the metrics name the service). Takes precedence over 4.
    pub const SERVICE_DOWN: u8 = 5;
    /// `partner-report`: a partner owed a report has no point of contact (the others were
    /// delivered; its learners wait in the spool).
    pub const COMPLIANCE: u8 = 6;
}

/// Everything a command can fail with. Texts name learners by retirement id or retired
/// username only.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The config file is missing, unreadable or wrong.
    #[error("config error in {file}{}: {message}", key.as_ref().map(|k| format!(", key {k}")).unwrap_or_default())]
    Config {
        /// The file.
        file: String,
        /// The key, when one is at fault.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// Arguments that do not fit together.
    #[error("{0}")]
    Usage(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Setting up the HTTP clients failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The run could not go on.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A command's own refusal (the message says why).
    #[error("{0}")]
    Refused(String),
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            CliError::Config { .. } | CliError::Usage(_) => exit::USAGE,
            CliError::Run(RunError::TooManyLearners { .. }) => exit::TOO_MANY,
            _ => exit::FAILED,
        }
    }

    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let what = what.into();
        move |source| CliError::Io { what, source }
    }
}
