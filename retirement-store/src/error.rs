//! The store's one error type.

use retirement_core::{CoreError, RetirementId};

/// Everything the store can refuse or fail with.
///
/// Messages never contain an original username, email or name: learners are named by
/// retirement id. Where upstream has an exact message (queue validation, cleanup), ours matches
/// it byte for byte unless it would leak PII.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A rule of `retirement-core` refused the change (illegal transition, not PENDING, …).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The URL names no backend this store knows.
    #[error(
        "unsupported store URL scheme in {url:?}: use sqlite://PATH, postgres://… or mysql://…"
    )]
    UnsupportedUrl {
        /// The URL with any password removed.
        url: String,
    },
    /// The database schema is older than this build expects.
    #[error(
        "the database schema is behind this build: {} migration(s) pending ({}); run `retire db migrate`",
        pending.len(),
        pending.join(", ")
    )]
    SchemaBehind {
        /// The versions of the pending migrations.
        pending: Vec<String>,
    },
    /// Running migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// No connection could be made or taken from the pool.
    #[error("database connection failed: {0}")]
    Connection(String),
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    /// A stored value this build cannot read (e.g. a timestamp out of range).
    #[error("corrupt row in {table}: {what}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong, without the value.
        what: String,
    },
    /// No retirement matches (upstream answers 404).
    #[error("no retirement status matches {what}")]
    NotFound {
        /// What was looked for, never a username (e.g. `retirement 7`, `that username`).
        what: String,
    },
    /// A lookup matched several retirements (case variants of one email).
    #[error("several retirements match: {what}; resolve them one by one by username")]
    Ambiguous {
        /// The matches, by retirement id.
        what: String,
    },
    /// Enqueue found a status row for the same original username.
    #[error("User already has a retirement status row! (retirement {retirement_id})")]
    AlreadyHasStatus {
        /// The existing retirement.
        retirement_id: RetirementId,
    },
    /// Enqueue found a ledger row for the same hashed identifiers.
    #[error("User already has a retirement request row!")]
    AlreadyHasRequest,
    /// Queue listing: negative cool-off.
    #[error("Invalid argument for cool_off_days, must be greater than 0.")]
    NegativeCoolOff,
    /// Queue listing: no states.
    #[error("Param \"states\" required with at least one state.")]
    NoStatesRequested,
    /// Queue listing: an unknown (or repeated) state.
    #[error("Unknown state. Requested: {requested:?} Found: {found:?}")]
    UnknownStatesRequested {
        /// The names asked for.
        requested: Vec<String>,
        /// The ones the table holds.
        found: Vec<String>,
    },
    /// Queue listing: a negative limit.
    #[error("Limit could not be parsed: {limit}, please ensure this is an integer")]
    BadLimit {
        /// The limit given.
        limit: i64,
    },
    /// Date listing: an unknown state.
    #[error("Unknown retirement state.")]
    UnknownRetirementState,
    /// Date listing: a future date or an end before the start.
    #[error("Dates must be today or earlier, and start must be earlier than end.")]
    BadDateRange,
    /// Cleanup: some names are unknown, not COMPLETE, or repeated. Nothing was changed.
    #[error("Not all usernames exist in the COMPLETE state.")]
    NotAllComplete,
    /// A fenced write whose lease was taken over or released: the caller must stop working on
    /// this learner. Nothing was written.
    #[error("lease lost on retirement {retirement_id} (attempt {attempt})")]
    LeaseLost {
        /// The retirement.
        retirement_id: RetirementId,
        /// The attempt number the caller held.
        attempt: i64,
    },
    /// An unfenced write to a learner that a worker holds a live lease on.
    #[error(
        "retirement {retirement_id} is leased to a worker until {until}; wait for it, or use an operator reset"
    )]
    Leased {
        /// The retirement.
        retirement_id: RetirementId,
        /// When the lease runs out (RFC 3339).
        until: String,
    },
    /// Another writer changed the row between our read and our write; nothing was written.
    #[error("retirement {retirement_id} changed while it was being updated; try again")]
    Conflict {
        /// The retirement.
        retirement_id: RetirementId,
    },
    /// Assignment import: a line could not be read. Nothing was imported.
    #[error("import line {line}: {message}")]
    Import {
        /// The 1-based line number.
        line: usize,
        /// What is wrong (never the line's values).
        message: String,
    },
    /// The backend cannot do this (e.g. the LMS-backed store cannot enqueue: learners request
    /// retirement through the LMS itself).
    #[error("{operation} is not supported by the {backend} store")]
    Unsupported {
        /// The operation.
        operation: &'static str,
        /// The backend.
        backend: &'static str,
    },
    /// The LMS (the LMS-backed store) refused a request. `message` is the LMS's own text when
    /// it names no learner, else a summary.
    #[error("the LMS answered {status}: {message}")]
    Lms {
        /// The HTTP status.
        status: u16,
        /// What it said.
        message: String,
    },
    /// An argument outside what the store accepts.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A database that is not the schema expected (enterprise-access's); nothing was written.
    #[error("not enterprise-access's schema as this build knows it: {what}")]
    UnrecognisedSchema {
        /// Each missing `table.column`, and each column of an unexpected type or collation.
        what: String,
    },
}

impl StoreError {
    pub(crate) fn connection(error: impl std::fmt::Display) -> StoreError {
        StoreError::Connection(error.to_string())
    }

    /// Whether retrying the same call later may succeed (a dropped connection, a serialisation
    /// failure, a deadlock, a lock timeout).
    pub fn is_transient(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            StoreError::Connection(_) | StoreError::Conflict { .. } => true,
            // An LMS (or its proxy) that is overloaded or restarting.
            StoreError::Lms { status, .. } => matches!(status, 429 | 500..=599),
            StoreError::Database(Error::DatabaseError(kind, info)) => {
                matches!(
                    kind,
                    DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ClosedConnection
                ) || transient_message(info.message())
            }
            // A transaction whose connection broke mid-way: the pool replaces the connection.
            StoreError::Database(Error::BrokenTransactionManager) => true,
            StoreError::Database(e) => transient_message(&e.to_string()),
            _ => false,
        }
    }
}

/// Messages of failures that a retry on a fresh connection may get past: lock contention, and
/// a connection lost mid-statement (diesel-async reports PostgreSQL's and MySQL's as plain
/// database errors; `chaos db` cuts connections to find them).
fn transient_message(message: &str) -> bool {
    const TRANSIENT: [&str; 12] = [
        "deadlock",
        "database is locked",
        "lock wait timeout",
        "connection closed",
        "connection reset",
        "broken pipe",
        "unexpected eof",
        "server closed the connection",
        "lost connection",
        "server has gone away",
        "error communicating with the server",
        "connection refused",
    ];
    let message = message.to_ascii_lowercase();
    TRANSIENT.iter().any(|t| message.contains(t))
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
