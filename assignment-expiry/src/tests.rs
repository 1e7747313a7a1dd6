//! Acceptance tables for both policies, written from the reference's rules, and unit tests of the
//! PII job, the retirement scrub and the line format.

use chrono::{DateTime, TimeDelta, Utc};

use crate::*;

fn t0() -> DateTime<Utc> {
    "2024-01-01T00:00:00Z".parse().unwrap()
}
fn day(n: i64) -> DateTime<Utc> {
    t0() + TimeDelta::days(n)
}
fn sec(t: DateTime<Utc>, s: i64) -> DateTime<Utc> {
    t + TimeDelta::seconds(s)
}
fn fmt(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn base() -> Assignment {
    Assignment {
        uuid: "a".into(),
        state: AssignmentState::Allocated,
        learner_email: "learner@example.com".into(),
        lms_user_id: Some(7),
        created: t0(),
        allocated_at: t0(),
        expired_at: None,
        preferred_course_run_key: None,
        content_key: "course-v1:edX+DemoX".into(),
        has_credit_request: false,
        actions: vec![],
    }
}

fn ctx() -> Context {
    Context {
        enrollment: Enrollment::Deadline(None),
        subsidy_expiration: None,
        configuration_active: true,
    }
}

fn action(kind: ActionType, at: DateTime<Utc>, error: Option<ErrorReason>) -> AssignmentAction {
    AssignmentAction {
        action_type: kind,
        completed_at: Some(at),
        error_reason: error,
        reason: None,
    }
}

fn deadline(raw: &str) -> Enrollment {
    Enrollment::Deadline(Some(raw.into()))
}

fn metadata(advertised: Option<&str>, runs: &[(&str, &str)]) -> Enrollment {
    Enrollment::Metadata(Some(ContentMetadata {
        normalized_metadata: advertised.map(|d| RunMetadata {
            enroll_by_date: Some(d.into()),
            end_date: None,
        }),
        normalized_metadata_by_run: runs
            .iter()
            .map(|(run, d)| {
                (
                    (*run).to_owned(),
                    RunMetadata {
                        enroll_by_date: Some((*d).to_owned()),
                        end_date: None,
                    },
                )
            })
            .collect(),
    }))
}

/// One acceptance row: inputs and the expected outcome.
struct Row {
    name: &'static str,
    assignment: Assignment,
    context: Context,
    now: DateTime<Utc>,
    /// `None`: keep.
    reason: Option<Reason>,
    /// For keep rows: the expected earliest possible expiration, when it matters.
    earliest: Option<(DateTime<Utc>, Reason)>,
    warns: bool,
}

fn row(name: &'static str, now: DateTime<Utc>, reason: Option<Reason>) -> Row {
    Row {
        name,
        assignment: base(),
        context: ctx(),
        now,
        reason,
        earliest: None,
        warns: false,
    }
}

impl Row {
    fn a(mut self, f: impl FnOnce(&mut Assignment)) -> Row {
        f(&mut self.assignment);
        self
    }
    fn c(mut self, f: impl FnOnce(&mut Context)) -> Row {
        f(&mut self.context);
        self
    }
    fn earliest(mut self, date: DateTime<Utc>, reason: Reason) -> Row {
        self.earliest = Some((date, reason));
        self
    }
    fn warns(mut self) -> Row {
        self.warns = true;
        self
    }
}

fn run_table(kind: PolicyKind, rows: Vec<Row>) {
    let policy = Policy::named(kind);
    assert!(rows.len() >= 25, "at least 25 rows per policy");
    for r in rows {
        let d = evaluate(&r.assignment, &r.context, &policy, r.now);
        assert_eq!(d.expires(), r.reason.is_some(), "{}: expire", r.name);
        assert_eq!(d.expiry().map(|e| e.reason), r.reason, "{}: reason", r.name);
        assert_eq!(
            !d.warnings.is_empty(),
            r.warns,
            "{}: warnings {:?}",
            r.name,
            d.warnings
        );
        if let Some((date, reason)) = r.earliest {
            let e = d.earliest_possible_expiration.expect(r.name);
            assert_eq!((e.date, e.reason), (date, reason), "{}: earliest", r.name);
        }
        if let Some(expiry) = d.expiry() {
            assert_eq!(expiry.new_state, policy.expired_state, "{}", r.name);
        } else {
            assert_eq!(d.verdict, Verdict::Keep, "{}", r.name);
        }
    }
}

const NINETY: Reason = Reason::NinetyDaysPassed;
const ENROLL: Reason = Reason::EnrollmentDatePassed;
const SUBSIDY: Reason = Reason::SubsidyExpired;

fn non_expirable_rows() -> Vec<Row> {
    [
        AssignmentState::Accepted,
        AssignmentState::Cancelled,
        AssignmentState::Errored,
        AssignmentState::Expired,
        AssignmentState::Reversed,
    ]
    .into_iter()
    .map(|state| {
        row("non-expirable state, long past every date", day(400), None).a(move |a| a.state = state)
    })
    .collect()
}

#[test]
fn adr_0016_acceptance_table() {
    let mut rows = vec![
        row(
            "no notification: exactly 90 days after created does not expire",
            day(90),
            None,
        )
        .earliest(day(90), NINETY),
        row(
            "no notification: one second past 90 days expires",
            sec(day(90), 1),
            Some(NINETY),
        ),
        row(
            "no notification: one second before 90 days keeps",
            sec(day(90), -1),
            None,
        )
        .earliest(day(90), NINETY),
        row("notified on day 10: day 95 keeps", day(95), None)
            .a(|a| a.actions = vec![action(ActionType::Notified, day(10), None)])
            .earliest(day(100), NINETY),
        row(
            "notified on day 10: one second past day 100 expires",
            sec(day(100), 1),
            Some(NINETY),
        )
        .a(|a| a.actions = vec![action(ActionType::Notified, day(10), None)]),
        row("notified on day 10: exactly day 100 keeps", day(100), None)
            .a(|a| a.actions = vec![action(ActionType::Notified, day(10), None)]),
        row(
            "a reminder never resets the clock",
            sec(day(100), 1),
            Some(NINETY),
        )
        .a(|a| {
            a.actions = vec![
                action(ActionType::Notified, day(10), None),
                action(ActionType::Reminded, day(50), None),
            ]
        }),
        row("re-notification restarts the clock", sec(day(100), 1), None)
            .a(|a| {
                a.actions = vec![
                    action(ActionType::Notified, day(10), None),
                    action(ActionType::Notified, day(60), None),
                ]
            })
            .earliest(day(150), NINETY),
        row(
            "an errored notification does not count",
            sec(day(100), 1),
            Some(NINETY),
        )
        .a(|a| {
            a.actions = vec![
                action(ActionType::Notified, day(10), None),
                action(ActionType::Notified, day(60), Some(ErrorReason::EmailError)),
            ]
        }),
        row(
            "only an errored notification: falls back to created",
            sec(day(90), 1),
            Some(NINETY),
        )
        .a(|a| {
            a.actions = vec![action(
                ActionType::Notified,
                day(60),
                Some(ErrorReason::EmailError),
            )]
        }),
        row("enrollment deadline passed", sec(day(30), 1), Some(ENROLL))
            .c(|c| c.enrollment = deadline(&fmt(day(30)))),
        row("enrollment deadline exactly now keeps", day(30), None)
            .c(|c| c.enrollment = deadline(&fmt(day(30))))
            .earliest(day(30), ENROLL),
        row("subsidy expired", sec(day(20), 1), Some(SUBSIDY))
            .c(|c| c.subsidy_expiration = Some(fmt(day(20)))),
        row("subsidy expiring exactly now keeps", day(20), None)
            .c(|c| c.subsidy_expiration = Some(fmt(day(20))))
            .earliest(day(20), SUBSIDY),
        row(
            "first match: 90 days wins over an earlier subsidy date",
            day(91),
            Some(NINETY),
        )
        .c(|c| c.subsidy_expiration = Some(fmt(day(20)))),
        row(
            "first match: enrollment wins over an earlier subsidy date",
            day(50),
            Some(ENROLL),
        )
        .c(|c| {
            c.enrollment = deadline(&fmt(day(40)));
            c.subsidy_expiration = Some(fmt(day(20)));
        }),
        row(
            "tie of 90 days and enrollment: 90 days",
            sec(day(90), 1),
            Some(NINETY),
        )
        .c(|c| c.enrollment = deadline(&fmt(day(90)))),
        row(
            "tie before it passes: earliest reason is 90 days",
            day(10),
            None,
        )
        .c(|c| c.enrollment = deadline(&fmt(day(90))))
        .earliest(day(90), NINETY),
        row("tie of enrollment and subsidy: enrollment", day(10), None)
            .c(|c| {
                c.enrollment = deadline(&fmt(day(40)));
                c.subsidy_expiration = Some(fmt(day(40)));
            })
            .earliest(day(40), ENROLL),
        row(
            "unparseable deadline is no deadline, with a warning",
            day(60),
            None,
        )
        .c(|c| c.enrollment = deadline("01/31/2024"))
        .warns(),
        row(
            "unparseable subsidy never aborts; 90 days still expires",
            day(91),
            Some(NINETY),
        )
        .c(|c| c.subsidy_expiration = Some("soon".into()))
        .warns(),
        row(
            "the inferred deadline is the preferred run's, not the advertised run's",
            sec(day(30), 1),
            None,
        )
        .a(|a| a.preferred_course_run_key = Some("run2".into()))
        .c(|c| c.enrollment = metadata(Some(&fmt(day(30))), &[("run2", &fmt(day(200)))])),
        row(
            "the preferred run's passed deadline expires",
            sec(day(30), 1),
            Some(ENROLL),
        )
        .a(|a| a.preferred_course_run_key = Some("run2".into()))
        .c(|c| c.enrollment = metadata(Some(&fmt(day(200))), &[("run2", &fmt(day(30)))])),
        row(
            "space-separated format is accepted",
            sec(day(30), 1),
            Some(ENROLL),
        )
        .c(|c| c.enrollment = deadline("2024-01-31 00:00:00Z")),
        row(
            "fractional seconds are accepted",
            sec(day(30), 1),
            Some(ENROLL),
        )
        .c(|c| c.enrollment = deadline("2024-01-31T00:00:00.123456Z")),
        row(
            "seven fraction digits are not an upstream format",
            sec(day(30), 1),
            None,
        )
        .c(|c| c.enrollment = deadline("2024-01-31T00:00:00.1234567Z"))
        .warns(),
        row(
            "no metadata for the content: no enrollment candidate",
            sec(day(30), 1),
            None,
        )
        .c(|c| c.enrollment = Enrollment::Metadata(None)),
        row("inactive configuration is never expired", day(400), None)
            .c(|c| c.configuration_active = false)
            .warns(),
    ];
    rows.extend(non_expirable_rows());
    run_table(PolicyKind::Adr0016, rows);
}

#[test]
fn current_policy_acceptance_table() {
    let notified_late = |a: &mut Assignment| {
        a.actions = vec![action(ActionType::Notified, day(100), None)];
    };
    let mut rows = vec![
        row(
            "anchor is allocated_at: exactly 90 days expires",
            day(120),
            Some(NINETY),
        )
        .a(|a| a.allocated_at = day(30)),
        row(
            "one second before 90 days after allocated_at keeps",
            sec(day(120), -1),
            None,
        )
        .a(|a| a.allocated_at = day(30))
        .earliest(day(120), NINETY),
        row(
            "a later notification does not move the clock",
            day(90),
            Some(NINETY),
        )
        .a(notified_late),
        row("a reminder does not move the clock", day(90), Some(NINETY))
            .a(|a| a.actions = vec![action(ActionType::Reminded, day(80), None)]),
        row(
            "earliest wins: subsidy before 90 days",
            day(95),
            Some(SUBSIDY),
        )
        .c(|c| c.subsidy_expiration = Some(fmt(day(20)))),
        row(
            "earliest wins: enrollment before subsidy",
            day(61),
            Some(ENROLL),
        )
        .c(|c| {
            c.enrollment = deadline(&fmt(day(30)));
            c.subsidy_expiration = Some(fmt(day(60)));
        }),
        row(
            "tie of subsidy and enrollment: subsidy",
            day(30),
            Some(SUBSIDY),
        )
        .c(|c| {
            c.enrollment = deadline(&fmt(day(30)));
            c.subsidy_expiration = Some(fmt(day(30)));
        }),
        row(
            "tie of enrollment and 90 days: enrollment",
            day(90),
            Some(ENROLL),
        )
        .c(|c| c.enrollment = deadline(&fmt(day(90)))),
        row(
            "tie of subsidy and 90 days: subsidy",
            day(90),
            Some(SUBSIDY),
        )
        .c(|c| c.subsidy_expiration = Some(fmt(day(90)))),
        row("the boundary instant expires", day(30), Some(ENROLL))
            .c(|c| c.enrollment = deadline(&fmt(day(30)))),
        row(
            "one second before the deadline keeps",
            sec(day(30), -1),
            None,
        )
        .c(|c| c.enrollment = deadline(&fmt(day(30))))
        .earliest(day(30), ENROLL),
        row(
            "preferred run's deadline is used",
            sec(day(30), 1),
            Some(ENROLL),
        )
        .a(|a| a.preferred_course_run_key = Some("run1".into()))
        .c(|c| c.enrollment = metadata(Some(&fmt(day(200))), &[("run1", &fmt(day(30)))])),
        row(
            "preferred run missing: no deadline, no fallback to the advertised run",
            day(31),
            None,
        )
        .a(|a| a.preferred_course_run_key = Some("gone".into()))
        .c(|c| c.enrollment = metadata(Some(&fmt(day(10))), &[("run1", &fmt(day(30)))]))
        .warns()
        .earliest(day(90), NINETY),
        row(
            "no preferred run: the advertised run's deadline",
            day(11),
            Some(ENROLL),
        )
        .c(|c| c.enrollment = metadata(Some(&fmt(day(10))), &[])),
        row("credit request: the latest future run wins", day(20), None)
            .a(|a| {
                a.has_credit_request = true;
                a.preferred_course_run_key = Some("run1".into());
            })
            .c(|c| {
                c.enrollment = metadata(None, &[("run1", &fmt(day(10))), ("run2", &fmt(day(200)))])
            })
            .earliest(day(90), NINETY),
        row(
            "credit request, every run past: falls back to the preferred run",
            day(20),
            Some(ENROLL),
        )
        .a(|a| {
            a.has_credit_request = true;
            a.preferred_course_run_key = Some("run1".into());
        })
        .c(|c| c.enrollment = metadata(None, &[("run1", &fmt(day(10))), ("run2", &fmt(day(15)))])),
        row(
            "credit request: an unparseable run date is skipped, not fatal",
            day(20),
            None,
        )
        .a(|a| a.has_credit_request = true)
        .c(|c| c.enrollment = metadata(None, &[("bad", "next week"), ("run2", &fmt(day(200)))]))
        .warns()
        .earliest(day(90), NINETY),
        row(
            "unparseable preferred-run deadline: no deadline",
            day(31),
            None,
        )
        .a(|a| a.preferred_course_run_key = Some("run1".into()))
        .c(|c| c.enrollment = metadata(None, &[("run1", "2024-13-45T00:00:00Z")]))
        .warns(),
        row("unparseable subsidy never aborts", day(90), Some(NINETY))
            .c(|c| c.subsidy_expiration = Some("2024/02/01".into()))
            .warns(),
        row("no subsidy record: only 90 days", sec(day(90), -1), None).earliest(day(90), NINETY),
        row("space format with fraction", day(31), Some(ENROLL))
            .c(|c| c.enrollment = deadline("2024-01-31 00:00:00.5Z")),
        row("a re-allocation resets the clock", day(100), None)
            .a(|a| a.allocated_at = day(60))
            .earliest(day(150), NINETY),
        row("inactive configuration is never expired", day(400), None)
            .c(|c| c.configuration_active = false)
            .warns(),
    ];
    rows.extend(non_expirable_rows());
    run_table(PolicyKind::Current, rows);
}

#[test]
fn adr_expiry_cancels_and_scrubs_at_once_for_ninety_days_only() {
    let policy = Policy::named(PolicyKind::Adr0016);
    let d = evaluate(&base(), &ctx(), &policy, day(91));
    let e = d.expiry().expect("expires");
    assert_eq!(e.new_state, AssignmentState::Cancelled);
    assert_eq!(
        e.pii,
        PiiNow::Tombstone("retired_user@retired.invalid".into())
    );
    assert_eq!(e.action_on_email_success, ActionType::AutomaticCancellation);
    assert_eq!(e.expired_at, None);
    let mut c = ctx();
    c.subsidy_expiration = Some(fmt(day(5)));
    let d = evaluate(&base(), &c, &policy, day(6));
    let e = d.expiry().expect("expires");
    assert_eq!(e.reason, SUBSIDY);
    assert_eq!(e.pii, PiiNow::Keep);
}

#[test]
fn current_expiry_stamps_expired_at_and_leaves_scrubbing_to_the_pii_job() {
    let policy = Policy::named(PolicyKind::Current);
    let mut a = base();
    a.has_credit_request = true;
    let d = evaluate(&a, &ctx(), &policy, day(90));
    let e = d.expiry().expect("expires");
    assert_eq!(e.new_state, AssignmentState::Expired);
    assert_eq!(e.expired_at, Some(day(90)));
    assert_eq!(e.pii, PiiNow::Keep);
    assert_eq!(e.email, ExpiryEmail::BrowseAndRequest);
    assert!(e.expire_credit_request);
    assert_eq!(e.action_on_email_success, ActionType::Expired);
    a.has_credit_request = false;
    assert_eq!(
        evaluate(&a, &ctx(), &policy, day(90))
            .expiry()
            .map(|e| e.email),
        Some(ExpiryEmail::Regular)
    );
}

#[test]
fn max_age_is_a_policy_parameter() {
    let mut policy = Policy::named(PolicyKind::Current);
    policy.max_age = TimeDelta::days(30);
    assert_eq!(
        evaluate(&base(), &ctx(), &policy, day(30))
            .expiry()
            .map(|e| e.reason),
        Some(NINETY)
    );
    assert!(!evaluate(&base(), &ctx(), &policy, sec(day(30), -1)).expires());
}

fn expired(email: &str) -> Assignment {
    let mut a = base();
    a.state = AssignmentState::Expired;
    a.expired_at = Some(day(90));
    a.learner_email = email.into();
    a.actions = vec![action(ActionType::Expired, day(90), None)];
    a
}

#[test]
fn pii_job_scrubs_only_delivered_ninety_day_expiries() {
    let policy = Policy::named(PolicyKind::Current);
    let mut nonce = || 0xdead_beef_u64;
    let d = pii_job_decision(
        &expired("l@example.com"),
        &ctx(),
        &policy,
        day(91),
        &mut nonce,
    );
    assert_eq!(
        d.tombstone.as_deref(),
        Some("retired_user00000000deadbeef@retired.invalid")
    );
    let cases: Vec<(Assignment, Context, &str)> = vec![
        (
            expired("retired_user0123456789abcdef@retired.invalid"),
            ctx(),
            "already scrubbed",
        ),
        (
            {
                let mut a = expired("l@example.com");
                a.actions[0].error_reason = Some(ErrorReason::EmailError);
                a
            },
            ctx(),
            "expiration email not delivered",
        ),
        (
            expired("l@example.com"),
            Context {
                subsidy_expiration: Some(fmt(day(20))),
                ..ctx()
            },
            "earliest expiration reason is not NINETY_DAYS_PASSED",
        ),
        (base(), ctx(), "not expired"),
        (
            expired("l@example.com"),
            Context {
                configuration_active: false,
                ..ctx()
            },
            "configuration inactive",
        ),
    ];
    for (a, c, why) in cases {
        let d = pii_job_decision(&a, &c, &policy, day(91), &mut nonce);
        assert_eq!((d.tombstone, d.skipped_because), (None, Some(why)));
    }
}

#[test]
fn retired_learner_scrub_covers_every_state_and_is_repeatable() {
    let mut rows = Vec::new();
    for (i, state) in [
        AssignmentState::Allocated,
        AssignmentState::Accepted,
        AssignmentState::Errored,
        AssignmentState::Cancelled,
    ]
    .into_iter()
    .enumerate()
    {
        let mut a = base();
        a.uuid = format!("mine-{i}");
        a.state = state;
        a.learner_email = "Learner@Example.com".into();
        a.lms_user_id = None;
        rows.push(a);
    }
    let mut by_id = base();
    by_id.uuid = "by-id".into();
    by_id.learner_email = "other@example.com".into();
    rows.push(by_id);
    let mut someone_else = base();
    someone_else.uuid = "theirs".into();
    someone_else.learner_email = "else@example.com".into();
    someone_else.lms_user_id = Some(8);
    rows.push(someone_else);
    let mut n = 0u64;
    let mut nonce = || {
        n += 1;
        n
    };
    let scrubs = scrub_for_retired_learner(&rows, "learner@example.com", Some(7), &mut nonce);
    let uuids: Vec<&str> = scrubs.iter().map(|s| s.uuid.as_str()).collect();
    assert_eq!(uuids, ["mine-0", "mine-1", "mine-2", "mine-3", "by-id"]);
    let mut tombstones: Vec<&str> = scrubs.iter().map(|s| s.tombstone.as_str()).collect();
    tombstones.dedup();
    assert_eq!(tombstones.len(), 5, "unique tombstones never collide");
    for (row, scrub) in rows.iter_mut().zip(&scrubs) {
        row.learner_email = scrub.tombstone.clone();
    }
    let again = scrub_for_retired_learner(&rows[..4], "learner@example.com", None, &mut nonce);
    assert!(again.is_empty(), "a second run changes nothing");
}

#[test]
fn parsing_accepts_exactly_the_four_upstream_formats() {
    for ok in [
        "2024-01-31T10:20:30Z",
        "2024-01-31T10:20:30.1Z",
        "2024-01-31T10:20:30.123456Z",
        "2024-01-31 10:20:30Z",
        "2024-01-31 10:20:30.5Z",
    ] {
        assert!(parse_upstream_datetime(ok).is_some(), "{ok}");
    }
    for bad in [
        "2024-01-31",
        "2024-01-31T10:20:30",
        "2024-01-31T10:20:30+00:00",
        "2024-01-31T10:20:30.Z",
        "2024-01-31T10:20:30.1234567Z",
        "31/01/2024 10:20:30Z",
        "",
    ] {
        assert!(parse_upstream_datetime(bad).is_none(), "{bad}");
    }
}

#[test]
fn line_errors_never_quote_values() {
    let line = r#"{"uuid": "u", "state": "allocated", "learner_email": "x@y.z", "lms_user_id": "secret@example.com", "created": "2024-01-01T00:00:00Z", "allocated_at": "2024-01-01T00:00:00Z"}"#;
    let e = parse_line(line).unwrap_err().to_string();
    assert!(!e.contains("secret@example.com"), "{e}");
    assert!(e.contains("invalid assignment line"), "{e}");
    let both = r#"{"uuid": "u", "state": "allocated", "learner_email": "x@y.z", "created": "2024-01-01T00:00:00Z", "allocated_at": "2024-01-01T00:00:00Z", "enrollment_deadline": "2024-01-01T00:00:00Z", "content_metadata": {}}"#;
    assert_eq!(
        parse_line(both).unwrap_err(),
        ExpiryError::BothEnrollmentSources
    );
    let unknown = r#"{"uuid": "u", "state": "allocated", "learner_email": "x@y.z", "created": "2024-01-01T00:00:00Z", "allocated_at": "2024-01-01T00:00:00Z", "colour": 1}"#;
    assert!(
        parse_line(unknown)
            .unwrap_err()
            .to_string()
            .contains("colour")
    );
    assert!(parse_policy("adr-0016").is_ok() && parse_policy("nope").is_err());
}

#[test]
fn assignment_debug_redacts_the_email() {
    assert!(!format!("{:?}", base()).contains("learner@example.com"));
}

/// Runs that each end at the given date (`None`: no end date, e.g. self-paced).
fn ended(runs: &[(&str, Option<DateTime<Utc>>)]) -> Enrollment {
    Enrollment::Metadata(Some(ContentMetadata {
        normalized_metadata: None,
        normalized_metadata_by_run: runs
            .iter()
            .map(|(run, end)| {
                (
                    (*run).to_owned(),
                    RunMetadata {
                        enroll_by_date: None,
                        end_date: end.map(fmt),
                    },
                )
            })
            .collect(),
    }))
}

#[test]
fn edx_2026_expires_when_every_run_has_ended() {
    let policy = Policy::named(PolicyKind::Edx2026);
    let context = |enrollment| Context {
        enrollment,
        ..ctx()
    };
    // Both runs ended by day 40: expires then, well before the 90 days.
    let both = context(ended(&[("r1", Some(day(20))), ("r2", Some(day(40)))]));
    let d = evaluate(&base(), &both, &policy, day(40));
    assert_eq!(d.expiry().map(|e| e.reason), Some(Reason::CourseRunEnded));
    assert_eq!(
        d.expiry().map(|e| e.new_state),
        Some(AssignmentState::Expired)
    );
    assert_eq!(d.expiry().map(|e| e.pii.clone()), Some(PiiNow::Keep));
    assert!(!evaluate(&base(), &both, &policy, sec(day(40), -1)).expires());
    // One run without an end date: the course has not ended.
    let open = context(ended(&[("r1", Some(day(20))), ("r2", None)]));
    assert!(!evaluate(&base(), &open, &policy, day(80)).expires());
    // An unreadable end date: no candidate, and a warning.
    let bad = context(Enrollment::Metadata(Some(ContentMetadata {
        normalized_metadata: None,
        normalized_metadata_by_run: [(
            "r1".to_owned(),
            RunMetadata {
                enroll_by_date: None,
                end_date: Some("soon".into()),
            },
        )]
        .into(),
    })));
    let d = evaluate(&base(), &bad, &policy, day(80));
    assert!(!d.expires());
    assert!(
        d.warnings.iter().any(|w| w.contains("end_date")),
        "{:?}",
        d.warnings
    );
    // A tie with the 90-day date goes to the course run (it comes first in the amendment's
    // list); a tie with the enrollment deadline goes to the deadline.
    let tie = context(ended(&[("r1", Some(day(90)))]));
    let d = evaluate(&base(), &tie, &policy, day(90));
    assert_eq!(d.expiry().map(|e| e.reason), Some(Reason::CourseRunEnded));
    // The current policy ignores run end dates.
    assert!(!evaluate(&base(), &both, &Policy::named(PolicyKind::Current), day(40)).expires());
}

#[test]
fn edx_2026_pii_job_reads_the_recorded_reason() {
    let policy = Policy::named(PolicyKind::Edx2026);
    // The expiry record (carrying the reason) and the delivered email, two actions.
    let delivered = |reason: Option<Reason>| {
        let mut a = expired("learner@example.com");
        if reason.is_some() {
            a.actions.push(AssignmentAction {
                reason,
                ..action(ActionType::Expired, day(89), None)
            });
        }
        a
    };
    // An expiry record alone is not a delivered email.
    let mut undelivered = expired("learner@example.com");
    undelivered.actions = vec![AssignmentAction {
        reason: Some(Reason::CourseRunEnded),
        ..action(ActionType::Expired, day(89), None)
    }];
    let mut nonce = || 9u64;
    let runs_ended = Context {
        enrollment: ended(&[("r1", Some(day(40)))]),
        ..ctx()
    };
    for (recorded, scrub) in [
        (Some(Reason::CourseRunEnded), true),
        (Some(Reason::NinetyDaysPassed), true),
        (Some(Reason::EnrollmentDatePassed), false),
        (Some(Reason::SubsidyExpired), false),
    ] {
        let d = pii_job_decision(
            &delivered(recorded),
            &runs_ended,
            &policy,
            day(200),
            &mut nonce,
        );
        assert_eq!(d.tombstone.is_some(), scrub, "{recorded:?}");
    }
    // No recorded reason: recomputed as before the amendment, without the run end date.
    let d = pii_job_decision(&undelivered, &runs_ended, &policy, day(200), &mut nonce);
    assert_eq!(d.skipped_because, Some("expiration email not delivered"));
    let d = pii_job_decision(&delivered(None), &runs_ended, &policy, day(200), &mut nonce);
    assert!(d.tombstone.is_some(), "the 90-day reason, recomputed");
    let subsidy_first = Context {
        subsidy_expiration: Some(fmt(day(30))),
        ..runs_ended.clone()
    };
    let d = pii_job_decision(
        &delivered(None),
        &subsidy_first,
        &policy,
        day(200),
        &mut nonce,
    );
    assert!(d.tombstone.is_none(), "recomputed as SUBSIDY_EXPIRED: kept");
}
