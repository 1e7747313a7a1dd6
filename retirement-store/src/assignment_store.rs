//! [`AssignmentStore`]: what the expiry pass, the PII job and the retirement scrub need from the
//! tables that hold assignments, whichever schema they are laid out in.
//!
//! Two implementations: [`crate::DieselStore`] over this project's own tables (filled by
//! `import`; every input the rules read is stored), and
//! [`crate::enterprise_access::EnterpriseAccessStore`] over enterprise-access's own database
//! (the enrollment deadline and the subsidy's expiry come from its services, so rows name their
//! configuration's policy instead). The passes themselves live above the store
//! (`retirement-http`'s `expiry` module), written once over this trait: the store holds SQL only.

use std::sync::Arc;

use assignment_expiry::{Assignment, AssignmentState, Context};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;

/// Which rows a pass reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// `allocated` rows: the expiry pass. `with_notified` loads each row's `notified` actions
    /// (the ADR 0016 anchor); without it rows come with no actions.
    Expirable {
        /// Load the `notified` actions.
        with_notified: bool,
    },
    /// `expired` rows with `expired_at` set whose email is not a tombstone yet, with their
    /// `expired` actions: the PII job.
    PiiCandidates,
}

/// Where a pass resumes: opaque, from [`Page::next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub(crate) String);

/// A row's handle for writes: opaque, from [`Row::key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowKey(pub(crate) String);

impl RowKey {
    /// The key as text (what [`Written`] lists).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One assignment as a pass sees it.
#[derive(Debug, Clone)]
pub struct Row {
    /// The handle writes name it by.
    pub key: RowKey,
    /// The fields the rules read (actions as the [`Scan`] says).
    pub assignment: Assignment,
    /// The rest of the rules' inputs, or where to get them.
    pub context: RowContext,
    /// The row's version when read (its `modified`): a write refuses a row changed since.
    pub version: String,
}

/// The inputs besides the row itself.
#[derive(Debug, Clone)]
pub enum RowContext {
    /// Stored with the row (this project's schema).
    Known(Context),
    /// To be fetched from enterprise-catalog and enterprise-subsidy for this configuration
    /// (enterprise-access's schema).
    FromServices {
        /// The row's configuration and its policy.
        configuration: Arc<Configuration>,
        /// The parent course key, which catalog records also match.
        parent_content_key: Option<String>,
    },
}

/// An assignment configuration and the subsidy access policy that points at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Configuration {
    /// The configuration's uuid (hyphenated).
    pub uuid: String,
    /// Only active configurations are scanned.
    pub active: bool,
    /// Its policy; `None` when no policy points at it (upstream aborts its whole run there).
    pub policy: Option<PolicyLink>,
}

/// What the services are asked about, from a subsidy access policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyLink {
    /// The policy's uuid.
    pub uuid: String,
    /// The catalog the enrollment deadlines come from.
    pub catalog_uuid: String,
    /// The subsidy whose expiry counts.
    pub subsidy_uuid: String,
    /// The enterprise customer (for emails).
    pub enterprise_customer_uuid: String,
}

/// One page of a scan.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The rows of active configurations (and, in this project's schema, of inactive ones:
    /// their stored context says so and the rules keep them).
    pub rows: Vec<Row>,
    /// Rows left out because their configuration is inactive.
    pub inactive: u64,
    /// Where the next page starts; `None` when the scan is done.
    pub next: Option<Cursor>,
}

/// One expiry to write.
#[derive(Debug, Clone)]
pub struct ExpiryWrite {
    /// The row.
    pub key: RowKey,
    /// The version it was decided on.
    pub version: String,
    /// The state it moves to (`expired`, or `cancelled` under ADR 0016).
    pub new_state: AssignmentState,
    /// A tombstone to write at once (ADR 0016's 90-day reason), on the row and its history.
    pub tombstone: Option<String>,
    /// Whether the linked credit request moves to `expired` too.
    pub expire_credit_request: bool,
    /// Why (in the outbox and the notice; upstream's tables keep it only as below).
    pub reason: assignment_expiry::Reason,
    /// Record the reason on an `expired` action of its own with this uuid (edx-2026, where the
    /// schema has the edx fork's action `metadata`).
    pub record_reason_as: Option<String>,
}

/// One scrub to write: the row's email, on the row and everywhere its history kept it.
#[derive(Debug, Clone)]
pub struct ScrubWrite {
    /// The row.
    pub key: RowKey,
    /// The version it was decided on; `None` scrubs whatever the row holds now (retirement).
    pub version: Option<String>,
    /// The tombstone.
    pub tombstone: String,
}

/// What an expiry does about its email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// Nothing.
    Nothing,
    /// An outbox row per expiry, in the expiry's transaction.
    Outbox,
    /// Return a [`Notice`] per expiry, for the caller to send after the commit.
    Return,
}

/// One expiration email to send: what upstream's email task reads, as of the expiry (before
/// any scrub). `Debug` leaves the email out.
#[derive(Clone, PartialEq, Eq)]
pub struct Notice {
    /// The assignment.
    pub assignment_uuid: String,
    /// The linked credit request: the Browse & Request email instead of the regular one.
    pub credit_request_uuid: Option<String>,
    /// The learner's email.
    pub learner_email: String,
    /// The learner's LMS user id.
    pub lms_user_id: Option<i64>,
    /// The enterprise customer.
    pub enterprise_customer_uuid: Option<String>,
    /// The assignment's content title.
    pub content_title: Option<String>,
    /// Why it expired.
    pub reason: assignment_expiry::Reason,
}

impl std::fmt::Debug for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notice")
            .field("assignment_uuid", &self.assignment_uuid)
            .field("credit_request_uuid", &self.credit_request_uuid)
            .field("learner_email", &format_args!("<redacted>"))
            .field("lms_user_id", &self.lms_user_id)
            .field("enterprise_customer_uuid", &self.enterprise_customer_uuid)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

/// How an expiration email went, recorded as upstream's email task records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailOutcome {
    /// Delivered: a successful `expired` action.
    Delivered,
    /// Failed for good: an errored `expired` action (`email_error`) with this description.
    Failed(String),
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Written {
    /// Rows written, by [`RowKey`] (text).
    pub written: Vec<String>,
    /// Rows left alone because another writer changed them since they were read (the next
    /// run decides them again).
    pub changed_meanwhile: Vec<String>,
    /// Outbox rows added.
    pub queued: u64,
    /// Emails to send ([`Notify::Return`]).
    #[serde(skip)]
    pub notices: Vec<Notice>,
}

/// The tables of assignments, in some schema.
#[async_trait]
pub trait AssignmentStore: Send + Sync {
    /// The schema's name, for messages (`own`, `enterprise-access`).
    fn schema(&self) -> &'static str;

    /// Whether every tombstone must be unique (a uniqueness constraint covers the email).
    fn needs_unique_tombstones(&self) -> bool;

    /// Whether expiries can queue their emails in an outbox table in the same transaction.
    fn has_outbox(&self) -> bool;

    /// One page of `scan` after `after`, at most `limit` rows. Rows never repeat within a scan
    /// and none that stays eligible is skipped (keyset paging).
    async fn page(&self, scan: Scan, after: Option<&Cursor>, limit: usize) -> Result<Page>;

    /// Writes one page's expiries in one short transaction: each row only if it is still
    /// allocated at the version read, with history rows where the schema keeps them, and its
    /// email as `notify` says.
    async fn write_expiries(
        &self,
        writes: &[ExpiryWrite],
        now: DateTime<Utc>,
        notify: Notify,
    ) -> Result<Written>;

    /// Records how the expiration email of `notice` went, as an `expired` action row (and its
    /// history row) with `action_uuid`, and the expiry's reason where the schema has room for
    /// it (the edx fork's action `metadata`).
    async fn record_email(
        &self,
        notice: &Notice,
        action_uuid: &str,
        outcome: &EmailOutcome,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Writes scrubs in one transaction: the email on the row, its history and wherever else
    /// the schema keeps it, without adding history rows for the old values.
    async fn write_scrubs(&self, writes: &[ScrubWrite], now: DateTime<Utc>) -> Result<Written>;

    /// Every assignment of one learner, in any state, matched by `lms_user_id` or by email
    /// (case-insensitively): the retirement scrub's candidates.
    async fn learner_rows(&self, email: &str, lms_user_id: Option<i64>) -> Result<Vec<Row>>;

    /// Scrubs a retiring learner from the schema's other tables (enterprise-access's user row)
    /// with `tombstone`; returns the rows changed. None by default.
    async fn scrub_learner_elsewhere(
        &self,
        _email: &str,
        _lms_user_id: Option<i64>,
        _tombstone: &str,
    ) -> Result<u64> {
        Ok(0)
    }
}
