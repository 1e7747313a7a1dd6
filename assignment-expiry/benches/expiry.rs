//! Throughput of the rule engine, run with `cargo bench -p assignment-expiry`: decisions per
//! second for a mix of assignments (expiring and kept, both policies, metadata lookups).

use std::hint::black_box;

use assignment_expiry::{
    ActionType, Assignment, AssignmentAction, AssignmentState, ContentMetadata, Context,
    Enrollment, Policy, PolicyKind, RunMetadata, evaluate,
};
use chrono::{DateTime, TimeDelta, Utc};
use divan::Bencher;
use divan::counter::ItemsCount;

fn main() {
    divan::main();
}

/// 1,000 assignments spread over a year, with notifications, runs and subsidy dates.
fn workload() -> Vec<(Assignment, Context)> {
    let t0: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
    (0..1000i64)
        .map(|i| {
            let created = t0 + TimeDelta::hours(i * 9);
            let run = format!("course-v1:edX+C{}+1T2024", i % 7);
            let assignment = Assignment {
                uuid: format!("a{i}"),
                state: AssignmentState::Allocated,
                learner_email: "l@example.com".into(),
                lms_user_id: Some(i),
                created,
                allocated_at: created,
                expired_at: None,
                preferred_course_run_key: (i % 3 != 0).then(|| run.clone()),
                content_key: "course".into(),
                has_credit_request: i % 10 == 0,
                actions: vec![AssignmentAction {
                    action_type: ActionType::Notified,
                    completed_at: Some(created + TimeDelta::hours(1)),
                    error_reason: None,
                    reason: None,
                }],
            };
            let deadline = (created + TimeDelta::days(30 + i % 90))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            let context = Context {
                enrollment: Enrollment::Metadata(Some(ContentMetadata {
                    normalized_metadata: Some(RunMetadata {
                        enroll_by_date: Some(deadline.clone()),
                        end_date: None,
                    }),
                    normalized_metadata_by_run: [(
                        run,
                        RunMetadata {
                            enroll_by_date: Some(deadline),
                            end_date: None,
                        },
                    )]
                    .into_iter()
                    .collect(),
                })),
                subsidy_expiration: Some("2025-01-01T00:00:00Z".into()),
                configuration_active: true,
            };
            (assignment, context)
        })
        .collect()
}

#[divan::bench(args = [PolicyKind::Adr0016, PolicyKind::Current])]
fn decisions(bencher: Bencher, kind: PolicyKind) {
    let work = workload();
    let policy = Policy::named(kind);
    let now: DateTime<Utc> = "2024-06-01T00:00:00Z".parse().unwrap();
    bencher
        .counter(ItemsCount::new(work.len()))
        .bench_local(|| {
            for (assignment, context) in &work {
                black_box(evaluate(black_box(assignment), context, &policy, now));
            }
        });
}
