//! The JSON-lines format of `expire-assignments evaluate`: one assignment with its context per
//! input line, one decision per output line.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::Decision;
use crate::error::ExpiryError;
use crate::model::{
    Assignment, AssignmentAction, AssignmentState, ContentMetadata, Context, Enrollment,
    Expiration, PolicyKind, Reason,
};

/// One input line, as documented in the crate docs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLine {
    uuid: String,
    state: AssignmentState,
    learner_email: String,
    #[serde(default)]
    lms_user_id: Option<i64>,
    created: DateTime<Utc>,
    allocated_at: DateTime<Utc>,
    #[serde(default)]
    expired_at: Option<DateTime<Utc>>,
    #[serde(default)]
    actions: Vec<AssignmentAction>,
    #[serde(default)]
    has_credit_request: bool,
    #[serde(default)]
    preferred_course_run_key: Option<String>,
    #[serde(default)]
    content_key: String,
    #[serde(default)]
    enrollment_deadline: Option<String>,
    #[serde(default)]
    content_metadata: Option<ContentMetadata>,
    #[serde(default)]
    subsidy_expiration: Option<String>,
    #[serde(default = "active_by_default")]
    configuration_active: bool,
}

fn active_by_default() -> bool {
    true
}

/// Parses one input line into an assignment and its context.
///
/// Error texts name fields and positions but never quote the line's values, so a learner's
/// email cannot leak into an error log.
pub fn parse_line(line: &str) -> Result<(Assignment, Context), ExpiryError> {
    let input: InputLine =
        serde_json::from_str(line).map_err(|e| ExpiryError::InvalidLine(redact_values(&e)))?;
    if input.enrollment_deadline.is_some() && input.content_metadata.is_some() {
        return Err(ExpiryError::BothEnrollmentSources);
    }
    let enrollment = match input.content_metadata {
        Some(metadata) => Enrollment::Metadata(Some(metadata)),
        None => Enrollment::Deadline(input.enrollment_deadline),
    };
    let assignment = Assignment {
        uuid: input.uuid,
        state: input.state,
        learner_email: input.learner_email,
        lms_user_id: input.lms_user_id,
        created: input.created,
        allocated_at: input.allocated_at,
        expired_at: input.expired_at,
        preferred_course_run_key: input.preferred_course_run_key,
        content_key: input.content_key,
        has_credit_request: input.has_credit_request,
        actions: input.actions,
    };
    let context = Context {
        enrollment,
        subsidy_expiration: input.subsidy_expiration,
        configuration_active: input.configuration_active,
    };
    Ok((assignment, context))
}

/// serde_json's message with every double-quoted value replaced by `"…"`; field names (in
/// backticks) and the line/column stay.
fn redact_values(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let mut out = String::with_capacity(message.len());
    let mut in_quotes = false;
    for c in message.chars() {
        match (c, in_quotes) {
            ('"', false) => {
                out.push_str("\"…");
                in_quotes = true;
            }
            ('"', true) => {
                out.push('"');
                in_quotes = false;
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

/// One output line: exactly the documented keys (the flat wire form of a [`Decision`]).
#[derive(Debug, Serialize)]
struct OutputLine<'a> {
    uuid: &'a str,
    expire: bool,
    reason: Option<Reason>,
    new_state: Option<AssignmentState>,
    scrub_pii: bool,
    tombstone: Option<&'a str>,
    earliest_possible_expiration: Option<Expiration>,
    warnings: &'a [String],
}

/// Formats a decision as one output line (no trailing newline).
pub fn format_decision(decision: &Decision) -> String {
    let expiry = decision.expiry();
    let line = OutputLine {
        uuid: &decision.uuid,
        expire: expiry.is_some(),
        reason: expiry.map(|e| e.reason),
        new_state: expiry.map(|e| e.new_state),
        scrub_pii: expiry.is_some_and(|e| e.pii != crate::engine::PiiNow::Keep),
        tombstone: match expiry.map(|e| &e.pii) {
            Some(crate::engine::PiiNow::Tombstone(t)) => Some(t.as_str()),
            _ => None,
        },
        earliest_possible_expiration: decision.earliest_possible_expiration,
        warnings: &decision.warnings,
    };
    serde_json::to_string(&line).expect("a decision always serialises")
}

/// Parses a policy name: `adr-0016` or `current`.
pub fn parse_policy(name: &str) -> Result<PolicyKind, ExpiryError> {
    match name {
        "adr-0016" => Ok(PolicyKind::Adr0016),
        "current" => Ok(PolicyKind::Current),
        "edx-2026" => Ok(PolicyKind::Edx2026),
        other => Err(ExpiryError::UnknownPolicy(other.to_owned())),
    }
}
