//! The pure expiration rule engine for enterprise content assignments.
//!
//! # Example: one assignment under each policy
//!
//! An assignment allocated on 1 January, its email sent on 2 January, enrollment open until
//! 1 May, the subsidy valid until next year. On 15 April its 90 days have run out under every
//! policy; what expiring means differs:
//!
//! ```
//! use assignment_expiry::{
//!     ActionType, Assignment, AssignmentAction, AssignmentState, Context, Enrollment, PiiNow,
//!     Policy, PolicyKind, Reason, evaluate,
//! };
//! use chrono::{DateTime, Utc};
//!
//! let at = |s: &str| -> DateTime<Utc> { s.parse().unwrap() };
//! let assignment = Assignment {
//!     uuid: "0b9b2c0e-assignment".into(),
//!     state: AssignmentState::Allocated,
//!     learner_email: "learner@example.com".into(),
//!     lms_user_id: Some(7),
//!     created: at("2024-01-01T00:00:00Z"),
//!     allocated_at: at("2024-01-01T00:00:00Z"),
//!     expired_at: None,
//!     preferred_course_run_key: None,
//!     content_key: "edX+DemoX".into(),
//!     has_credit_request: false,
//!     actions: vec![AssignmentAction {
//!         action_type: ActionType::Notified,
//!         completed_at: Some(at("2024-01-02T00:00:00Z")),
//!         error_reason: None,
//!         reason: None,
//!     }],
//! };
//! let context = Context {
//!     enrollment: Enrollment::Deadline(Some("2024-05-01T00:00:00Z".into())),
//!     subsidy_expiration: Some("2025-01-01T00:00:00Z".into()),
//!     configuration_active: true,
//! };
//! let now = at("2024-04-15T12:00:00Z");
//!
//! // ADR 0016: 90 days from the last email; cancelled, the email tombstoned at once.
//! let adr = evaluate(&assignment, &context, &Policy::named(PolicyKind::Adr0016), now);
//! let expiry = adr.expiry().expect("past its 90 days");
//! assert_eq!(expiry.reason, Reason::NinetyDaysPassed);
//! assert_eq!(expiry.new_state, AssignmentState::Cancelled);
//! assert_eq!(expiry.pii, PiiNow::Tombstone("retired_user@retired.invalid".into()));
//!
//! // Today's enterprise-access: 90 days from allocation; expired, the email kept until the
//! // expiration email went out (`pii_job_decision` clears it then).
//! for kind in [PolicyKind::Current, PolicyKind::Edx2026] {
//!     let decision = evaluate(&assignment, &context, &Policy::named(kind), now);
//!     let expiry = decision.expiry().expect("past its 90 days");
//!     assert_eq!(expiry.new_state, AssignmentState::Expired);
//!     assert_eq!(expiry.expired_at, Some(now));
//!     assert_eq!(expiry.pii, PiiNow::Keep);
//! }
//!
//! // A month earlier nothing expires, and the decision says when it will.
//! let early = evaluate(&assignment, &context, &Policy::default(), at("2024-03-15T00:00:00Z"));
//! assert!(!early.expires());
//! let next = early.earliest_possible_expiration.unwrap();
//! assert_eq!((next.date, next.reason), (at("2024-04-01T00:00:00Z"), Reason::NinetyDaysPassed));
//! ```
//!
//! `examples/evaluate_policies.rs` evaluates a small batch of JSON lines, as
//! `expire-assignments evaluate` does.
//!
//! Enterprise content assignments that nobody acts on expire, and the learner's email is not
//! kept longer than needed. Three named policies, each defined as data ([`Policy`]); under
//! every one the enrollment deadline is the inferred one (the preferred run's, the advertised
//! run's for legacy rows, the credit-request rule):
//!
//! - **ADR 0016** ([`PolicyKind::Adr0016`], the default): the 90-day window runs from the latest
//!   successful `notified` action (else `created`); the first condition that holds wins, in the
//!   order 90-day → enrollment deadline → subsidy expiry, each compared strictly (`now > date`);
//!   the assignment becomes `cancelled`, and for the 90-day reason the email is scrubbed at once
//!   to `retired_user@retired.invalid`.
//! - **Current upstream** ([`PolicyKind::Current`]): the window runs from `allocated_at`; the
//!   earliest date wins (ties: subsidy → enrollment → 90-day) and expires when `date <= now`; the
//!   assignment becomes `expired` with `expired_at`; the email is scrubbed later by the PII job
//!   ([`pii_job_decision`]) to a unique `retired_user<16 hex>@retired.invalid`.
//! - **edx-2026** ([`PolicyKind::Edx2026`]): current, plus `COURSE_RUN_ENDED` once every known
//!   run of the course has ended (ties: subsidy → enrollment → run ended → 90-day); its rows'
//!   emails are scrubbed too, judged by the reason recorded at expiry
//!   ([`AssignmentAction::reason`]).
//!
//! [`evaluate`] turns `(assignment, context, policy, now)` into a [`Decision`];
//! [`scrub_for_retired_learner`] tombstones every assignment of a retired learner, in any state.
//! Same purity rules as `retirement-core`: no I/O, no clock, no async. Unparseable dates never
//! abort anything: they mean "no date" and come back as warnings (upstream aborts the whole cron
//! run on one bad subsidy or credit-request run date).
//!
//! # The JSON-lines format ([`parse_line`], [`format_decision`])
//!
//! Input, one object per line (times RFC 3339; `enroll_by_date`, `enrollment_deadline` and
//! `subsidy_expiration` in upstream's formats `%Y-%m-%dT%H:%M:%SZ`, `%Y-%m-%dT%H:%M:%S.%fZ`, or
//! either with a space for `T`):
//!
//! ```json
//! {"uuid": "…", "state": "allocated", "learner_email": "…", "lms_user_id": 7,
//!  "created": "2024-01-01T00:00:00Z", "allocated_at": "2024-01-01T00:00:00Z",
//!  "actions": [{"action_type": "notified", "completed_at": "2024-01-02T00:00:00Z", "error_reason": null}],
//!  "has_credit_request": false, "preferred_course_run_key": "course-v1:a+b+1T2024",
//!  "content_metadata": {"normalized_metadata": {"enroll_by_date": "2024-05-01T00:00:00Z"},
//!                       "normalized_metadata_by_run": {"course-v1:a+b+1T2024": {"enroll_by_date": "…"}}},
//!  "subsidy_expiration": "2025-01-01T00:00:00Z", "configuration_active": true}
//! ```
//!
//! Give either `enrollment_deadline` (a date string) or `content_metadata`, not both. Optional
//! keys: `lms_user_id`, `expired_at`, `actions`, `has_credit_request`, `preferred_course_run_key`,
//! `content_key`, `enrollment_deadline`, `content_metadata`, `subsidy_expiration`,
//! `configuration_active` (default true). Unknown keys are errors.
//!
//! Output, one object per input line:
//! `{"uuid", "expire", "reason", "new_state", "scrub_pii", "tombstone",
//! "earliest_possible_expiration": {"date", "reason"}, "warnings"}`, with states in lower case and
//! reasons `NINETY_DAYS_PASSED`, `ENROLLMENT_DATE_PASSED`, `SUBSIDY_EXPIRED`, `COURSE_RUN_ENDED`
//! (edx-2026, from the runs' optional `end_date`).
#![warn(missing_docs)]

mod engine;
mod error;
mod jsonl;
mod model;

#[cfg(test)]
mod tests;

pub use engine::{
    Decision, Expiry, ExpiryEmail, ExpiryEmails, PiiDecision, PiiNow, Scrub, Verdict, evaluate,
    pii_job_decision, pii_job_decision_for, scrub_for_retired_learner,
};
pub use error::ExpiryError;
pub use jsonl::{format_decision, parse_line, parse_policy};
pub use model::{
    ActionType, Anchor, Assignment, AssignmentAction, AssignmentState, Boundary, Combination,
    ContentMetadata, Context, DEFAULT_MAX_AGE_DAYS, Enrollment, EnrollmentSource, ErrorReason,
    Expiration, FIXED_TOMBSTONE, NonceSource, Policy, PolicyKind, Reason, RunMetadata, ScrubTiming,
    TOMBSTONE_PREFIX, Tombstone, parse_upstream_datetime, tombstone_email,
};
