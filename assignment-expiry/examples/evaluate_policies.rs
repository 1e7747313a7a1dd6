//! Embedding `assignment-expiry`: decide a few assignments under each policy, as a service
//! would inside its own job, then run the current policy's PII job over one that expired.
//! The inputs are JSON lines in `expire-assignments evaluate`'s format; the engine reads no
//! clock, so `now` is given.
//!
//! Run it with `cargo run -p assignment-expiry --example evaluate_policies`.

use assignment_expiry::{
    ActionType, AssignmentAction, AssignmentState, ExpiryError, Policy, PolicyKind, evaluate,
    format_decision, parse_line, pii_job_decision,
};
use chrono::{DateTime, Utc};

/// Four assignments: one notified in January, one whose enrollment closed, one whose subsidy
/// expired, and one still fresh.
const LINES: &[&str] = &[
    r#"{"uuid": "a-notified-in-january", "state": "allocated", "learner_email": "one@example.com",
        "created": "2024-01-01T00:00:00Z", "allocated_at": "2024-01-01T00:00:00Z",
        "actions": [{"action_type": "notified", "completed_at": "2024-01-02T00:00:00Z", "error_reason": null}],
        "enrollment_deadline": "2024-09-01T00:00:00Z", "subsidy_expiration": "2025-01-01T00:00:00Z"}"#,
    r#"{"uuid": "b-enrollment-closed", "state": "allocated", "learner_email": "two@example.com",
        "created": "2024-03-20T00:00:00Z", "allocated_at": "2024-03-20T00:00:00Z",
        "enrollment_deadline": "2024-04-01 00:00:00Z", "subsidy_expiration": "2025-01-01T00:00:00Z"}"#,
    r#"{"uuid": "c-subsidy-expired", "state": "allocated", "learner_email": "three@example.com",
        "created": "2024-03-20T00:00:00Z", "allocated_at": "2024-03-20T00:00:00Z",
        "enrollment_deadline": "2024-09-01T00:00:00Z", "subsidy_expiration": "2024-04-10T00:00:00.000000Z"}"#,
    r#"{"uuid": "d-fresh", "state": "allocated", "learner_email": "four@example.com",
        "created": "2024-04-01T00:00:00Z", "allocated_at": "2024-04-01T00:00:00Z",
        "enrollment_deadline": "2024-09-01T00:00:00Z", "subsidy_expiration": "2025-01-01T00:00:00Z"}"#,
];

fn main() -> Result<(), ExpiryError> {
    let now: DateTime<Utc> = "2024-04-15T12:00:00Z".parse().expect("a valid time");
    let parsed = LINES
        .iter()
        .map(|line| parse_line(&line.replace('\n', " ")))
        .collect::<Result<Vec<_>, _>>()?;
    for kind in [
        PolicyKind::Adr0016,
        PolicyKind::Current,
        PolicyKind::Edx2026,
    ] {
        let policy = Policy::named(kind);
        println!("== {kind:?}");
        let mut expiring = 0;
        for (assignment, context) in &parsed {
            let decision = evaluate(assignment, context, &policy, now);
            expiring += usize::from(decision.expires());
            println!("{}", format_decision(&decision));
        }
        // Three of the four are due under every policy; the fresh one is kept.
        assert_eq!(expiring, 3, "{kind:?}");
    }

    // Under the current policy the email stays until the expiration email went out; the PII
    // job then replaces it with a unique tombstone.
    let policy = Policy::named(PolicyKind::Current);
    let (mut assignment, context) = parsed[0].clone();
    let decision = evaluate(&assignment, &context, &policy, now);
    let expiry = decision.expiry().expect("expires");
    assignment.state = expiry.new_state;
    assignment.expired_at = expiry.expired_at;
    let mut nonce = {
        let mut n = 0x5eed_u64;
        move || {
            n = n.wrapping_mul(6364136223846793005).wrapping_add(1);
            n
        }
    };
    let before = pii_job_decision(&assignment, &context, &policy, now, &mut nonce);
    println!("\nPII job before the expiration email: {before:?}");
    assert!(before.tombstone.is_none());
    assignment.actions.push(AssignmentAction {
        action_type: expiry.action_on_email_success,
        completed_at: Some(now),
        error_reason: None,
        reason: None,
    });
    let after = pii_job_decision(&assignment, &context, &policy, now, &mut nonce);
    println!("PII job after it: {after:?}");
    assert_eq!(assignment.state, AssignmentState::Expired);
    assert_eq!(expiry.action_on_email_success, ActionType::Expired);
    assert!(
        after
            .tombstone
            .is_some_and(|t| t.starts_with("retired_user") && t.ends_with("@retired.invalid"))
    );
    Ok(())
}
