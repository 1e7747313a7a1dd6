//! The assignment model, the inputs the rules read, and the two policies as data.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// An assignment's lifecycle state, in upstream's lower-case spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentState {
    /// Assigned, waiting for the learner: the only expirable state.
    Allocated,
    /// Redeemed by the learner.
    Accepted,
    /// Cancelled by an admin (and, under the ADR 0016 policy, by expiry).
    Cancelled,
    /// A task or redemption failed.
    Errored,
    /// Expired by the current policy.
    Expired,
    /// The ledger transaction was reversed.
    Reversed,
}

impl AssignmentState {
    /// Upstream's stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentState::Allocated => "allocated",
            AssignmentState::Accepted => "accepted",
            AssignmentState::Cancelled => "cancelled",
            AssignmentState::Errored => "errored",
            AssignmentState::Expired => "expired",
            AssignmentState::Reversed => "reversed",
        }
    }
}

/// The type of an assignment action (ADR 0013), in upstream's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionType {
    /// The learner was linked to the enterprise.
    LearnerLinked,
    /// The assignment email was sent.
    Notified,
    /// A reminder email was sent (never moves the 90-day clock).
    Reminded,
    /// The learner redeemed.
    Redeemed,
    /// The cancellation email was sent.
    Cancelled,
    /// The learner dismissed the cancellation.
    CancelledAcknowledged,
    /// The expiration email was sent.
    Expired,
    /// The learner dismissed the expiration.
    ExpiredAcknowledged,
    /// The ledger transaction was reversed.
    Reversed,
    /// The ADR 0016 era's name of the expiration-email action.
    AutomaticCancellation,
}

/// Why an action failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorReason {
    /// An email could not be sent.
    EmailError,
    /// An internal API failed.
    InternalApiError,
    /// Enrollment failed.
    EnrollmentError,
}

/// One action row of an assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentAction {
    /// What happened.
    pub action_type: ActionType,
    /// When it completed, if it did.
    #[serde(default)]
    pub completed_at: Option<DateTime<Utc>>,
    /// Why it failed; `None` means it succeeded.
    #[serde(default)]
    pub error_reason: Option<ErrorReason>,
    /// Set on the `expired` action the expiry job itself records (the edx fork's
    /// `source='scheduled_job'` row, `metadata.expiration_reason`): why the assignment expired,
    /// which the edx-2026 PII job reads instead of recomputing. Such an action records the
    /// expiry, not a delivered email. `None` on every other action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

impl AssignmentAction {
    /// Whether the action succeeded (upstream: `error_reason IS NULL`).
    pub fn succeeded(&self) -> bool {
        self.error_reason.is_none()
    }
}

/// A learner content assignment: the fields the expiry rules read.
///
/// `learner_email` is PII: `Debug` prints `<redacted>` in its place.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The assignment's id.
    pub uuid: String,
    /// Its state.
    pub state: AssignmentState,
    /// The learner's email (PII; scrubbed to a tombstone).
    pub learner_email: String,
    /// The learner's LMS user id, when known.
    #[serde(default)]
    pub lms_user_id: Option<i64>,
    /// When the row was created (the ADR policy's fallback anchor).
    pub created: DateTime<Utc>,
    /// When it was last allocated (the current policy's anchor).
    pub allocated_at: DateTime<Utc>,
    /// When it expired (current policy), if it did.
    #[serde(default)]
    pub expired_at: Option<DateTime<Utc>>,
    /// The run the admin meant, when set.
    #[serde(default)]
    pub preferred_course_run_key: Option<String>,
    /// The course or run key.
    #[serde(default)]
    pub content_key: String,
    /// Whether a Browse & Request credit request is linked.
    #[serde(default)]
    pub has_credit_request: bool,
    /// The action rows, in any order.
    #[serde(default)]
    pub actions: Vec<AssignmentAction>,
}

impl fmt::Debug for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assignment")
            .field("uuid", &self.uuid)
            .field("state", &self.state)
            .field("learner_email", &format_args!("<redacted>"))
            .field("lms_user_id", &self.lms_user_id)
            .field("created", &self.created)
            .field("allocated_at", &self.allocated_at)
            .field("expired_at", &self.expired_at)
            .field("preferred_course_run_key", &self.preferred_course_run_key)
            .field("content_key", &self.content_key)
            .field("has_credit_request", &self.has_credit_request)
            .field("actions", &self.actions)
            .finish()
    }
}

impl Assignment {
    /// The latest successful action of `kind`, by `completed_at` (expiry records, which carry
    /// a reason, are not deliveries and are left out).
    pub fn last_successful(&self, kind: ActionType) -> Option<&AssignmentAction> {
        self.actions
            .iter()
            .filter(|a| {
                a.action_type == kind
                    && a.succeeded()
                    && a.completed_at.is_some()
                    && a.reason.is_none()
            })
            .max_by_key(|a| a.completed_at)
    }

    /// The reason recorded at expiry (the latest expiry record's), if any.
    pub fn recorded_expiry_reason(&self) -> Option<Reason> {
        self.actions
            .iter()
            .filter(|a| a.action_type == ActionType::Expired && a.reason.is_some())
            .max_by_key(|a| a.completed_at)
            .and_then(|a| a.reason)
    }
}

/// The dates of one run (`normalized_metadata` or `normalized_metadata_by_run[run]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMetadata {
    /// The raw `enroll_by_date` string, in one of upstream's four formats.
    #[serde(default)]
    pub enroll_by_date: Option<String>,
    /// The raw `end_date` string (the edx-2026 policy's course-run-ended reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
}

/// The catalog metadata the enrollment deadline is inferred from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentMetadata {
    /// The advertised run's metadata.
    #[serde(default)]
    pub normalized_metadata: Option<RunMetadata>,
    /// Each run's metadata, by run key.
    #[serde(default)]
    pub normalized_metadata_by_run: BTreeMap<String, RunMetadata>,
}

/// Where the enrollment deadline comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrollment {
    /// The deadline is already known: a raw date string in one of the four formats, or none.
    Deadline(Option<String>),
    /// Infer it from catalog metadata (`None`: the catalog returned nothing for the content).
    Metadata(Option<ContentMetadata>),
}

/// Everything besides the assignment that the rules read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The enrollment deadline or the metadata to infer it from.
    pub enrollment: Enrollment,
    /// The subsidy's raw `expiration_datetime`; `None` when the record could not be fetched.
    pub subsidy_expiration: Option<String>,
    /// Whether the assignment's configuration is active (inactive ones are never scanned).
    pub configuration_active: bool,
}

/// Why an assignment expires, in upstream's spelling (the ADR era's `NIENTY` typo corrected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The 90-day (policy `max_age`) window since the anchor passed.
    NinetyDaysPassed,
    /// The enrollment deadline passed.
    EnrollmentDatePassed,
    /// The subsidy expired.
    SubsidyExpired,
    /// Every known run of the course has ended (the edx-2026 policy).
    CourseRunEnded,
}

/// The date an assignment can expire at the earliest, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiration {
    /// The candidate date. Strict policies expire at the first instant after it.
    pub date: DateTime<Utc>,
    /// The reason that date belongs to.
    pub reason: Reason,
}

/// Which policy, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum PolicyKind {
    /// ADR 0016 (January 2024): the decision this project implements by default.
    #[default]
    #[serde(rename = "adr-0016")]
    Adr0016,
    /// What enterprise-access does today.
    #[serde(rename = "current")]
    Current,
    /// The edX fork's October 2026 amendment of ADR 0016: the current policy plus a fourth
    /// reason, `COURSE_RUN_ENDED`, whose rows have their PII cleared too, the PII decision
    /// read from the reason recorded at expiry.
    #[serde(rename = "edx-2026")]
    Edx2026,
}

/// What the 90-day window is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Anchor {
    /// The latest successful `notified` action's `completed_at`, else `created` (ADR 0016).
    LatestNotifiedOrCreated,
    /// `allocated_at` (current).
    AllocatedAt,
}

/// How several passed conditions combine into one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Combination {
    /// The first that holds in the order 90-day → enrollment → subsidy (ADR 0016).
    FirstMatch,
    /// The earliest date; ties go subsidy → enrollment → 90-day (current).
    Earliest,
}

/// When a candidate date counts as passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Boundary {
    /// `now > date` (ADR 0016): the boundary instant does not expire.
    Strict,
    /// `date <= now` (current): the boundary instant expires.
    Inclusive,
}

/// When the learner's email is scrubbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScrubTiming {
    /// At expiry, for the 90-day reason only (ADR 0016).
    ImmediatelyForNinetyDays,
    /// Later, by the PII job, after a successful expiry email, when the recomputed reason is
    /// the 90-day one (current).
    ByPiiJob,
    /// Later, by the PII job, after a successful expiry email, when the reason recorded at
    /// expiry is the 90-day or the course-run-ended one; a row without a recorded reason is
    /// recomputed without the course-run end date (edx-2026).
    ByPiiJobRecordedReason,
}

/// The tombstone an email is replaced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tombstone {
    /// `retired_user@retired.invalid` (ADR 0016; collides with the uniqueness constraint).
    Fixed,
    /// `retired_user<16 hex>@retired.invalid`, the hex from an injected source (current).
    Unique,
}

/// Where the enrollment deadline is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollmentSource {
    /// `normalized_metadata.enroll_by_date` only: what the ADR 0016 era's code read, before
    /// assignments had a preferred run. No named policy uses it: the ADR's "inferred enrollment
    /// deadline for the assigned course" is the preferred run's.
    AdvertisedRun,
    /// The inferred deadline: the preferred run's, the advertised run's for legacy rows, and
    /// the credit-request strategy (reference §2.3). Every named policy.
    Strategies,
}

/// A policy, fully defined as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Which named policy this is.
    pub kind: PolicyKind,
    /// The window after the anchor (upstream: 90 days).
    pub max_age: TimeDelta,
    /// What the window is measured from.
    pub anchor: Anchor,
    /// How reasons combine.
    pub combination: Combination,
    /// When a date counts as passed.
    pub boundary: Boundary,
    /// The state an expired assignment moves to.
    pub expired_state: AssignmentState,
    /// Whether expiry stamps `expired_at`.
    pub stamps_expired_at: bool,
    /// When the email is scrubbed.
    pub scrub: ScrubTiming,
    /// Which tombstone replaces it.
    pub tombstone: Tombstone,
    /// Where the enrollment deadline comes from.
    pub enrollment_source: EnrollmentSource,
    /// The action the email task records on success.
    pub success_action: ActionType,
    /// Whether the course-run-ended reason counts (edx-2026).
    pub course_run_end: bool,
}

/// Upstream's global `NUM_DAYS_BEFORE_AUTO_EXPIRATION`.
pub const DEFAULT_MAX_AGE_DAYS: i64 = 90;

impl Policy {
    /// The named policy with upstream's parameters.
    pub fn named(kind: PolicyKind) -> Policy {
        match kind {
            PolicyKind::Adr0016 => Policy {
                kind,
                max_age: TimeDelta::days(DEFAULT_MAX_AGE_DAYS),
                anchor: Anchor::LatestNotifiedOrCreated,
                combination: Combination::FirstMatch,
                boundary: Boundary::Strict,
                expired_state: AssignmentState::Cancelled,
                stamps_expired_at: false,
                scrub: ScrubTiming::ImmediatelyForNinetyDays,
                tombstone: Tombstone::Fixed,
                enrollment_source: EnrollmentSource::Strategies,
                success_action: ActionType::AutomaticCancellation,
                course_run_end: false,
            },
            PolicyKind::Current => Policy {
                kind,
                max_age: TimeDelta::days(DEFAULT_MAX_AGE_DAYS),
                anchor: Anchor::AllocatedAt,
                combination: Combination::Earliest,
                boundary: Boundary::Inclusive,
                expired_state: AssignmentState::Expired,
                stamps_expired_at: true,
                scrub: ScrubTiming::ByPiiJob,
                tombstone: Tombstone::Unique,
                enrollment_source: EnrollmentSource::Strategies,
                success_action: ActionType::Expired,
                course_run_end: false,
            },
            PolicyKind::Edx2026 => Policy {
                kind,
                scrub: ScrubTiming::ByPiiJobRecordedReason,
                course_run_end: true,
                ..Policy::named(PolicyKind::Current)
            },
        }
    }

    /// Whether `date` has passed at `now` under this policy's boundary rule.
    pub fn has_passed(&self, date: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        match self.boundary {
            Boundary::Strict => now > date,
            Boundary::Inclusive => date <= now,
        }
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::named(PolicyKind::Adr0016)
    }
}

/// Parses a date string in exactly upstream's four formats (`%Y-%m-%dT%H:%M:%SZ`,
/// `%Y-%m-%dT%H:%M:%S.%fZ`, and the same with a space for `T`), read as UTC. Fields are
/// zero-padded and `%f` takes one to six digits, as Python writes them.
///
/// Hand-written rather than `strptime`-style because it runs for every candidate date of every
/// assignment: this is the engine's hot path.
pub fn parse_upstream_datetime(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let nanos = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', digits @ ..] if (1..=6).contains(&digits.len()) => {
            let value = num(20..b.len() - 1)?;
            value * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let time =
        chrono::NaiveTime::from_hms_nano_opt(num(11..13)?, num(14..16)?, num(17..19)?, nanos)?;
    Some(NaiveDateTime::new(date, time).and_utc())
}

/// The tombstone that replaces a scrubbed email.
pub fn tombstone_email(kind: Tombstone, nonce: &mut dyn NonceSource) -> String {
    match kind {
        Tombstone::Fixed => FIXED_TOMBSTONE.to_owned(),
        Tombstone::Unique => format!("retired_user{:016x}@retired.invalid", nonce.next_nonce()),
    }
}

/// The ADR 0016 policy's fixed tombstone.
pub const FIXED_TOMBSTONE: &str = "retired_user@retired.invalid";
/// The prefix every tombstone starts with.
pub const TOMBSTONE_PREFIX: &str = "retired_user";

/// A source of the random 8 bytes in a unique tombstone, injected so tests are reproducible.
pub trait NonceSource {
    /// The next 64 random bits.
    fn next_nonce(&mut self) -> u64;
}

impl<F: FnMut() -> u64> NonceSource for F {
    fn next_nonce(&mut self) -> u64 {
        self()
    }
}
