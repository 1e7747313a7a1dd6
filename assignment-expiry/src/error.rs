//! The crate's one error type.

/// What can go wrong reading assignments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpiryError {
    /// A JSON line is not a valid assignment; the text never quotes the line's values.
    #[error("invalid assignment line: {0}")]
    InvalidLine(String),
    /// A line gives both an enrollment deadline and content metadata.
    #[error("give either enrollment_deadline or content_metadata, not both")]
    BothEnrollmentSources,
    /// An unknown policy name.
    #[error("unknown policy {0:?}: use adr-0016, current or edx-2026")]
    UnknownPolicy(String),
}
