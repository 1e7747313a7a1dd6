//! The crate's one error type.

/// What the HTTP adapters can fail with. Texts never hold a secret, a token or an original
/// username.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The pipeline names a service whose base URL is not configured.
    #[error("no base URL configured for service {service} (base_urls.{key})")]
    MissingBaseUrl {
        /// The service key, e.g. `ECOMMERCE`.
        service: String,
        /// The config key, e.g. `ecommerce`.
        key: String,
    },
    /// The pipeline names an operation this crate does not know and no generic service defines.
    #[error("unknown retirement operation {service} {operation}")]
    UnknownOperation {
        /// The service key.
        service: String,
        /// The operation.
        operation: String,
    },
    /// An operator-configured service (`services:`) or connector is not usable.
    #[error("{0}")]
    InvalidService(String),
    /// A base URL that does not parse.
    #[error("invalid base URL for {service}: {message}")]
    BadBaseUrl {
        /// The service key.
        service: String,
        /// Why.
        message: String,
    },
    /// The token endpoint refused or failed.
    #[error("fetching an access token failed: {0}")]
    Token(String),
    /// Building the HTTP client failed.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// An enterprise service (catalog, subsidy, Braze) failed for good.
    #[error("{service}: {message}")]
    Service {
        /// Which service.
        service: String,
        /// What happened (no learner data, no token).
        message: String,
    },
    /// The store failed (the assignment store, or the status store behind the console).
    #[error("store: {0}")]
    Store(#[from] retirement_store::StoreError),
    /// An operator's action was refused (wrong state, not allowed by the regime, nothing to
    /// record it in); the text says why.
    #[error("{0}")]
    Refused(String),
    /// What an operator asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A local file (the partner report's spool) could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Queued learners are enrolled in orgs the partner mapping does not name: nothing was
    /// written or sent (the rows wait in the spool).
    #[error(
        "no partner is mapped for org(s) {}: add them to org_partner_mapping",
        unknown_orgs.join(", ")
    )]
    UnmappedOrgs {
        /// The orgs, sorted.
        unknown_orgs: Vec<String>,
    },
    /// The fake edX could not start.
    #[error("the fake edX could not start: {0}")]
    Fake(String),
}
