//! The decisions: [`evaluate`] for the expiry cron, [`pii_job_decision`] for the current
//! policy's PII job, [`scrub_for_retired_learner`] for the retirement pipeline.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::{
    ActionType, Anchor, Assignment, AssignmentState, Combination, Context, Enrollment,
    EnrollmentSource, Expiration, NonceSource, Policy, Reason, RunMetadata, ScrubTiming,
    TOMBSTONE_PREFIX, Tombstone, parse_upstream_datetime, tombstone_email,
};

/// Which expiration email to queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryEmail {
    /// The regular assignment-expired email.
    Regular,
    /// The Browse & Request email, for assignments with a linked credit request.
    BrowseAndRequest,
}

/// What to do with one assignment: keep it or expire it, with why and when it could expire.
/// The flat JSON-lines form is [`crate::format_decision`]'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The assignment's id.
    pub uuid: String,
    /// Keep, or expire with everything expiring means.
    pub verdict: Verdict,
    /// The earliest date the assignment can expire and why (for keep decisions too); `None`
    /// for assignments that are never expired (not allocated, or configuration inactive).
    pub earliest_possible_expiration: Option<Expiration>,
    /// Inputs that were ignored (unparseable dates, missing runs), for the operator.
    pub warnings: Vec<String>,
}

/// Keep the assignment, or expire it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Leave it as it is.
    Keep,
    /// Expire it now.
    Expire(Expiry),
}

/// What expiring one assignment takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expiry {
    /// Why.
    pub reason: Reason,
    /// The state to move it to.
    pub new_state: AssignmentState,
    /// The `expired_at` to stamp (current policy).
    pub expired_at: Option<DateTime<Utc>>,
    /// What happens to the learner's email now.
    pub pii: PiiNow,
    /// The email to queue.
    pub email: ExpiryEmail,
    /// The action the email task records when the email is delivered.
    pub action_on_email_success: ActionType,
    /// Whether a linked credit request moves to `expired` too.
    pub expire_credit_request: bool,
}

/// What an expiry does with the learner's email at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiNow {
    /// Keep it (the current policy's PII job clears it later, after the email was sent).
    Keep,
    /// Overwrite it (row and history) with this tombstone (ADR 0016, 90-day reason).
    Tombstone(String),
    /// Overwrite it with a unique tombstone: the caller draws it with
    /// [`crate::tombstone_email`] (`evaluate` stays a pure function of its inputs, no nonce).
    UniqueTombstone,
}

impl Decision {
    fn keep(uuid: &str, earliest: Option<Expiration>, warnings: Vec<String>) -> Decision {
        Decision {
            uuid: uuid.to_owned(),
            verdict: Verdict::Keep,
            earliest_possible_expiration: earliest,
            warnings,
        }
    }

    /// The expiry, when the verdict is to expire.
    pub fn expiry(&self) -> Option<&Expiry> {
        match &self.verdict {
            Verdict::Keep => None,
            Verdict::Expire(expiry) => Some(expiry),
        }
    }

    /// Whether the assignment expires now.
    pub fn expires(&self) -> bool {
        self.expiry().is_some()
    }
}

/// The three candidate dates of one assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidates {
    ninety_days: DateTime<Utc>,
    enrollment: Option<DateTime<Utc>>,
    subsidy: Option<DateTime<Utc>>,
    course_run_ended: Option<DateTime<Utc>>,
}

impl Candidates {
    fn compute(
        assignment: &Assignment,
        context: &Context,
        policy: &Policy,
        now: DateTime<Utc>,
        warnings: &mut Vec<String>,
    ) -> Candidates {
        let anchor = match policy.anchor {
            Anchor::LatestNotifiedOrCreated => assignment
                .last_successful(ActionType::Notified)
                .and_then(|a| a.completed_at)
                .unwrap_or(assignment.created),
            Anchor::AllocatedAt => assignment.allocated_at,
        };
        let subsidy = context
            .subsidy_expiration
            .as_deref()
            .and_then(|s| parse_or_warn(s, "subsidy expiration_datetime", warnings));
        Candidates {
            ninety_days: anchor + policy.max_age,
            enrollment: enrollment_deadline(assignment, context, policy, now, warnings),
            subsidy,
            course_run_ended: if policy.course_run_end {
                course_run_ended(context, warnings)
            } else {
                None
            },
        }
    }

    /// The candidates in the policy's tie order, with their reasons. The edx fork's amendment
    /// puts the course-run-ended date (edx-2026) before the 90 days in upstream's list, whose
    /// stable sort breaks ties by list order.
    fn ordered(&self, combination: Combination) -> [(Option<DateTime<Utc>>, Reason); 4] {
        let ninety = (Some(self.ninety_days), Reason::NinetyDaysPassed);
        let enrollment = (self.enrollment, Reason::EnrollmentDatePassed);
        let subsidy = (self.subsidy, Reason::SubsidyExpired);
        let ended = (self.course_run_ended, Reason::CourseRunEnded);
        match combination {
            Combination::FirstMatch => [ninety, enrollment, subsidy, ended],
            Combination::Earliest => [subsidy, enrollment, ended, ninety],
        }
    }

    /// The earliest candidate; equal dates go to the first in the policy's order.
    fn earliest(&self, combination: Combination) -> Expiration {
        let mut best: Option<Expiration> = None;
        for (date, reason) in self.ordered(combination) {
            if let Some(date) = date
                && best.is_none_or(|b| date < b.date)
            {
                best = Some(Expiration { date, reason });
            }
        }
        // The 90-day candidate always exists.
        best.unwrap_or(Expiration {
            date: self.ninety_days,
            reason: Reason::NinetyDaysPassed,
        })
    }
}

/// Parses `raw`, or records a warning naming the field (`what` is only built on failure: this
/// runs for every candidate of every assignment).
fn parse_or_warn(
    raw: &str,
    what: impl std::fmt::Display,
    warnings: &mut Vec<String>,
) -> Option<DateTime<Utc>> {
    let parsed = parse_upstream_datetime(raw);
    if parsed.is_none() {
        warnings.push(format!(
            "{what} {raw:?} is not in a supported format (%Y-%m-%dT%H:%M:%SZ, with optional \
             .%f, or a space for T); ignored"
        ));
    }
    parsed
}

/// The `enroll_by_date` field of one run, named for warnings.
struct RunField<'a>(&'a str);

impl std::fmt::Display for RunField<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "normalized_metadata_by_run[{:?}].enroll_by_date", self.0)
    }
}

fn run_deadline(
    run: Option<&RunMetadata>,
    what: impl std::fmt::Display,
    warnings: &mut Vec<String>,
) -> Option<DateTime<Utc>> {
    run.and_then(|r| r.enroll_by_date.as_deref())
        .and_then(|s| parse_or_warn(s, what, warnings))
}

/// When every known run of the course has ended: the latest `end_date` across
/// `normalized_metadata_by_run`. No runs, or one run without a readable end date (a self-paced
/// run, say), means the course has not ended.
fn course_run_ended(context: &Context, warnings: &mut Vec<String>) -> Option<DateTime<Utc>> {
    let Enrollment::Metadata(Some(metadata)) = &context.enrollment else {
        return None;
    };
    let mut latest: Option<DateTime<Utc>> = None;
    for (run, meta) in &metadata.normalized_metadata_by_run {
        let raw = meta.end_date.as_deref()?;
        let end = parse_or_warn(
            raw,
            format_args!("normalized_metadata_by_run[{run:?}].end_date"),
            warnings,
        )?;
        latest = latest.max(Some(end));
    }
    latest
}

/// The enrollment deadline (reference §2.3).
fn enrollment_deadline(
    assignment: &Assignment,
    context: &Context,
    policy: &Policy,
    now: DateTime<Utc>,
    warnings: &mut Vec<String>,
) -> Option<DateTime<Utc>> {
    let metadata = match &context.enrollment {
        Enrollment::Deadline(raw) => {
            return raw
                .as_deref()
                .and_then(|s| parse_or_warn(s, "enrollment_deadline", warnings));
        }
        Enrollment::Metadata(None) => return None,
        Enrollment::Metadata(Some(metadata)) => metadata,
    };
    let advertised = || {
        let mut w = Vec::new();
        let d = run_deadline(
            metadata.normalized_metadata.as_ref(),
            "normalized_metadata.enroll_by_date",
            &mut w,
        );
        (d, w)
    };
    if policy.enrollment_source == EnrollmentSource::AdvertisedRun {
        let (deadline, w) = advertised();
        warnings.extend(w);
        return deadline;
    }
    if assignment.has_credit_request {
        // Credit-request strategy: the latest run's deadline while it is still ahead. Upstream
        // aborts the whole run on one unparseable date here; we skip that run and warn.
        let latest = metadata
            .normalized_metadata_by_run
            .iter()
            .filter_map(|(run, meta)| run_deadline(Some(meta), RunField(run), warnings))
            .max();
        if let Some(latest) = latest
            && latest > now
        {
            return Some(latest);
        }
    }
    match &assignment.preferred_course_run_key {
        Some(run) => {
            let meta = metadata.normalized_metadata_by_run.get(run);
            if meta.is_none() {
                warnings.push(format!(
                    "preferred run {run:?} is not in normalized_metadata_by_run: no enrollment deadline"
                ));
            }
            run_deadline(meta, RunField(run), warnings)
        }
        None => {
            let (deadline, w) = advertised();
            warnings.extend(w);
            deadline
        }
    }
}

/// Decides whether `assignment` expires at `now` under `policy`.
///
/// Only `allocated` assignments of active configurations can expire. Unparseable dates never
/// abort: they count as "no date" and are reported in [`Decision::warnings`].
///
/// ```
/// use assignment_expiry::{Policy, Reason, evaluate, parse_line};
///
/// let line = r#"{"uuid": "a1", "state": "allocated", "learner_email": "l@example.com",
///     "created": "2024-03-01T00:00:00Z", "allocated_at": "2024-03-01T00:00:00Z",
///     "enrollment_deadline": "not a date", "subsidy_expiration": "2024-04-01T00:00:00Z"}"#;
/// let (assignment, context) = parse_line(line)?;
/// let decision = evaluate(&assignment, &context, &Policy::default(), "2024-04-02T00:00:00Z".parse().unwrap());
/// // The subsidy expired; the bad enrollment date is a warning, not an abort.
/// assert_eq!(decision.expiry().map(|e| e.reason), Some(Reason::SubsidyExpired));
/// assert_eq!(decision.warnings.len(), 1);
///
/// // An inactive configuration is never scanned.
/// let inactive = assignment_expiry::Context { configuration_active: false, ..context };
/// assert!(!evaluate(&assignment, &inactive, &Policy::default(), "2030-01-01T00:00:00Z".parse().unwrap()).expires());
/// # Ok::<(), assignment_expiry::ExpiryError>(())
/// ```
pub fn evaluate(
    assignment: &Assignment,
    context: &Context,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Decision {
    if assignment.state != AssignmentState::Allocated {
        return Decision::keep(&assignment.uuid, None, Vec::new());
    }
    if !context.configuration_active {
        let warning = "assignment configuration is inactive: never scanned for expiry".to_owned();
        return Decision::keep(&assignment.uuid, None, vec![warning]);
    }
    let mut warnings = Vec::new();
    let candidates = Candidates::compute(assignment, context, policy, now, &mut warnings);
    let earliest = candidates.earliest(policy.combination);
    let reason = match policy.combination {
        Combination::FirstMatch => candidates
            .ordered(Combination::FirstMatch)
            .into_iter()
            .find(|(date, _)| date.is_some_and(|d| policy.has_passed(d, now)))
            .map(|(_, reason)| reason),
        Combination::Earliest => policy
            .has_passed(earliest.date, now)
            .then_some(earliest.reason),
    };
    let Some(reason) = reason else {
        return Decision::keep(&assignment.uuid, Some(earliest), warnings);
    };
    let scrub_pii =
        policy.scrub == ScrubTiming::ImmediatelyForNinetyDays && reason == Reason::NinetyDaysPassed;
    let browse_and_request = assignment.has_credit_request && policy.kind_links_credit_requests();
    let pii = match (scrub_pii, policy.tombstone) {
        (false, _) => PiiNow::Keep,
        (true, Tombstone::Fixed) => PiiNow::Tombstone(crate::model::FIXED_TOMBSTONE.to_owned()),
        (true, _) => PiiNow::UniqueTombstone,
    };
    Decision {
        uuid: assignment.uuid.clone(),
        verdict: Verdict::Expire(Expiry {
            reason,
            new_state: policy.expired_state,
            expired_at: policy.stamps_expired_at.then_some(now),
            pii,
            email: if browse_and_request {
                ExpiryEmail::BrowseAndRequest
            } else {
                ExpiryEmail::Regular
            },
            action_on_email_success: policy.success_action,
            expire_credit_request: browse_and_request,
        }),
        earliest_possible_expiration: Some(earliest),
        warnings,
    }
}

impl Policy {
    /// Whether this policy knows Browse & Request credit requests (the ADR era, whose expiry
    /// cancels, predates them: its rows get the regular email and their requests stay).
    fn kind_links_credit_requests(&self) -> bool {
        self.expired_state == AssignmentState::Expired
    }
}

/// What the PII job does with one assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PiiDecision {
    /// The assignment's id.
    pub uuid: String,
    /// The tombstone to write on the row and its history, or `None` to leave it.
    pub tombstone: Option<String>,
    /// Why it was left, when it was.
    pub skipped_because: Option<&'static str>,
}

/// The current policy's daily PII job for one assignment (reference §4.6): scrub an expired
/// assignment's email once its expiration email was delivered, when the recomputed earliest
/// reason is the 90-day one.
pub fn pii_job_decision(
    assignment: &Assignment,
    context: &Context,
    policy: &Policy,
    now: DateTime<Utc>,
    nonce: &mut dyn NonceSource,
) -> PiiDecision {
    pii_job_decision_for(
        assignment,
        context,
        policy,
        now,
        ExpiryEmails::Recorded,
        nonce,
    )
}

/// Whether expiration emails are sent, so the PII job waits for a recorded delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryEmails {
    /// Emails are sent and a successful one is recorded as an `expired` action: scrub only
    /// after it (upstream; an email sent after the scrub would go to the tombstone).
    Recorded,
    /// No expiration email is ever sent: waiting for one would keep the email forever.
    NotSent,
}

/// [`pii_job_decision`] for a deployment whose emails are `emails`.
pub fn pii_job_decision_for(
    assignment: &Assignment,
    context: &Context,
    policy: &Policy,
    now: DateTime<Utc>,
    emails: ExpiryEmails,
    nonce: &mut dyn NonceSource,
) -> PiiDecision {
    let skip = |why: &'static str| PiiDecision {
        uuid: assignment.uuid.clone(),
        tombstone: None,
        skipped_because: Some(why),
    };
    if !context.configuration_active {
        return skip("configuration inactive");
    }
    if assignment.state != AssignmentState::Expired || assignment.expired_at.is_none() {
        return skip("not expired");
    }
    if assignment.learner_email.starts_with(TOMBSTONE_PREFIX) {
        return skip("already scrubbed");
    }
    if emails == ExpiryEmails::Recorded && assignment.last_successful(ActionType::Expired).is_none()
    {
        return skip("expiration email not delivered");
    }
    let mut warnings = Vec::new();
    if policy.scrub == ScrubTiming::ByPiiJobRecordedReason {
        let recorded = assignment.recorded_expiry_reason();
        let reason = match recorded {
            Some(reason) => reason,
            // Rows expired before reasons were recorded: recomputed as they were evaluated
            // then, without the course-run end date.
            None => {
                let legacy = Policy {
                    course_run_end: false,
                    ..policy.clone()
                };
                Candidates::compute(assignment, context, &legacy, now, &mut warnings)
                    .earliest(Combination::Earliest)
                    .reason
            }
        };
        if !matches!(reason, Reason::NinetyDaysPassed | Reason::CourseRunEnded) {
            return skip("expiry reason is neither NINETY_DAYS_PASSED nor COURSE_RUN_ENDED");
        }
    } else {
        let candidates = Candidates::compute(assignment, context, policy, now, &mut warnings);
        if candidates.earliest(Combination::Earliest).reason != Reason::NinetyDaysPassed {
            return skip("earliest expiration reason is not NINETY_DAYS_PASSED");
        }
    }
    PiiDecision {
        uuid: assignment.uuid.clone(),
        tombstone: Some(tombstone_email(Tombstone::Unique, nonce)),
        skipped_because: None,
    }
}

/// One email to tombstone for a retired learner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scrub {
    /// The assignment's id.
    pub uuid: String,
    /// The unique tombstone to write on the row, its history and its actions.
    pub tombstone: String,
}

/// Every assignment of a retired learner, in any state (upstream never scrubs accepted,
/// cancelled or errored rows), matched by `lms_user_id` or case-insensitively by email, gets a
/// unique tombstone. Already scrubbed rows are left alone, so the call is safe to repeat.
pub fn scrub_for_retired_learner(
    assignments: &[Assignment],
    email: &str,
    lms_user_id: Option<i64>,
    nonce: &mut dyn NonceSource,
) -> Vec<Scrub> {
    let email = email.to_lowercase();
    assignments
        .iter()
        .filter(|a| !a.learner_email.starts_with(TOMBSTONE_PREFIX))
        .filter(|a| {
            (lms_user_id.is_some() && a.lms_user_id == lms_user_id)
                || (!email.is_empty() && a.learner_email.to_lowercase() == email)
        })
        .map(|a| Scrub {
            uuid: a.uuid.clone(),
            tombstone: tombstone_email(Tombstone::Unique, nonce),
        })
        .collect()
}
