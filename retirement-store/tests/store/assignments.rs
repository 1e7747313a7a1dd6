//! Import, and the `AssignmentStore` contract the passes rely on (keyset pages that see each
//! row once while the pass writes between them, expiry and scrub writes that leave no trace
//! of a scrubbed email), driven by the small loops below. The passes themselves are
//! `retirement-http`'s `expiry` module, tested there.

use std::collections::HashSet;
use std::io::Cursor;

use assignment_expiry::{
    Assignment, AssignmentState, Context, Decision, Enrollment, Policy, PolicyKind, evaluate,
    parse_line,
};
use assignment_expiry::{
    PiiNow, Tombstone, pii_job_decision, scrub_for_retired_learner, tombstone_email,
};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use retirement_store::{AssignmentStore, ExpiryWrite, RowContext, Scan, ScrubWrite, StoreError};

use crate::Store;
use crate::harness::Test;

pub(crate) fn tests() -> Vec<Test> {
    vec![
        crate::test!(import_round_trips_and_refuses_bad_input),
        crate::test!(expiry_pass_matches_the_pure_engine_and_sees_each_row_once),
        crate::test!(adr_0016_scrubs_at_expiry_including_history),
        crate::test!(pii_job_scrubs_only_what_the_rule_allows),
        crate::test!(scrub_of_a_retired_learner_leaves_no_trace),
    ]
}

fn nonce() -> impl FnMut() -> u64 + Send {
    let mut n = 0u64;
    move || {
        n += 1;
        n
    }
}

#[derive(Debug, Default)]
struct Passed {
    scanned: u64,
    expired: u64,
    scrubbed: u64,
}

/// Pages through the allocated rows, decides each, writes each page's expiries.
async fn expire_all(
    store: &Store,
    policy: &Policy,
    now: DateTime<Utc>,
    page_size: usize,
    dry_run: bool,
    nonce: &mut (dyn assignment_expiry::NonceSource + Send),
    mut on_decision: impl FnMut(&Decision),
) -> Passed {
    let mut passed = Passed::default();
    let mut cursor = None;
    loop {
        let page = store
            .page(
                Scan::Expirable {
                    with_notified: true,
                },
                cursor.as_ref(),
                page_size,
            )
            .await
            .unwrap();
        let mut writes = Vec::new();
        for row in &page.rows {
            let RowContext::Known(context) = &row.context else {
                panic!("this project's rows carry their context")
            };
            passed.scanned += 1;
            let decision = evaluate(&row.assignment, context, policy, now);
            if let Some(expiry) = decision.expiry() {
                let tombstone = match &expiry.pii {
                    PiiNow::Keep => None,
                    PiiNow::Tombstone(t) => Some(t.clone()),
                    PiiNow::UniqueTombstone => Some(tombstone_email(Tombstone::Unique, nonce)),
                };
                passed.scrubbed += u64::from(tombstone.is_some());
                writes.push(ExpiryWrite {
                    key: row.key.clone(),
                    version: row.version.clone(),
                    new_state: expiry.new_state,
                    tombstone,
                    expire_credit_request: expiry.expire_credit_request,
                    reason: expiry.reason,
                    record_reason_as: None,
                });
            }
            on_decision(&decision);
        }
        passed.expired += writes.len() as u64;
        if !dry_run {
            let written = store
                .write_expiries(&writes, now, retirement_store::Notify::Nothing)
                .await
                .unwrap();
            assert_eq!(written.written.len(), writes.len());
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return passed,
        }
    }
}

/// The PII job's loop: (scrubbed, skipped reasons).
async fn pii_all(store: &Store, policy: &Policy, now: DateTime<Utc>) -> (u64, Vec<&'static str>) {
    let mut n = nonce();
    let mut cursor = None;
    let mut scrubbed = 0;
    let mut skipped = Vec::new();
    loop {
        let page = store
            .page(Scan::PiiCandidates, cursor.as_ref(), 100)
            .await
            .unwrap();
        let mut writes = Vec::new();
        for row in &page.rows {
            let RowContext::Known(context) = &row.context else {
                unreachable!()
            };
            let decision = pii_job_decision(&row.assignment, context, policy, now, &mut n);
            match decision.tombstone {
                Some(tombstone) => writes.push(ScrubWrite {
                    key: row.key.clone(),
                    version: Some(row.version.clone()),
                    tombstone,
                }),
                None => skipped.push(decision.skipped_because.unwrap_or_default()),
            }
        }
        scrubbed += store
            .write_scrubs(&writes, now)
            .await
            .unwrap()
            .written
            .len() as u64;
        match page.next {
            Some(next) => cursor = Some(next),
            None => return (scrubbed, skipped),
        }
    }
}

/// The retirement scrub's loop: the uuids scrubbed.
async fn scrub_learner(
    store: &Store,
    email: &str,
    lms_user_id: Option<i64>,
    now: DateTime<Utc>,
    nonce: &mut (dyn assignment_expiry::NonceSource + Send),
) -> Vec<String> {
    let rows = store.learner_rows(email, lms_user_id).await.unwrap();
    let assignments: Vec<Assignment> = rows.iter().map(|r| r.assignment.clone()).collect();
    let scrubs = scrub_for_retired_learner(&assignments, email, lms_user_id, nonce);
    let writes: Vec<ScrubWrite> = scrubs
        .iter()
        .map(|s| ScrubWrite {
            key: rows
                .iter()
                .find(|r| r.assignment.uuid == s.uuid)
                .unwrap()
                .key
                .clone(),
            version: None,
            tombstone: s.tombstone.clone(),
        })
        .collect();
    store.write_scrubs(&writes, now).await.unwrap();
    scrubs.into_iter().map(|s| s.uuid).collect()
}

/// `n` varied assignments: ages, notifications, deadlines, subsidies and states.
fn generated(n: usize) -> Vec<(Assignment, Context)> {
    let base = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    (0..n)
        .map(|i| {
            let allocated = base + TimeDelta::days((i % 300) as i64);
            let line = serde_json::json!({
                "uuid": format!("a-{i:05}"),
                "state": if i % 7 == 0 { "accepted" } else { "allocated" },
                "learner_email": format!("person{i}@example.com"),
                "lms_user_id": i as i64,
                "created": allocated,
                "allocated_at": allocated,
                "actions": if i % 3 == 0 {
                    serde_json::json!([{"action_type": "notified", "completed_at": allocated + TimeDelta::days(20)}])
                } else { serde_json::json!([]) },
                "content_key": format!("course-{}", i % 11),
                "enrollment_deadline": if i % 11 == 0 { serde_json::json!("2026-06-01T00:00:00Z") } else { serde_json::Value::Null },
                "subsidy_expiration": if i % 5 == 0 { "2026-08-01T00:00:00Z" } else { "2027-12-31T00:00:00Z" },
                "configuration_active": i % 13 != 0,
            });
            parse_line(&line.to_string()).unwrap()
        })
        .collect()
}

fn jsonl(items: &[(Assignment, Context)]) -> String {
    items
        .iter()
        .map(|(a, c)| {
            let mut v = serde_json::to_value(a).unwrap();
            let (deadline, metadata) = match &c.enrollment {
                Enrollment::Deadline(d) => (d.clone(), None),
                Enrollment::Metadata(m) => (None, m.clone()),
            };
            v["enrollment_deadline"] = serde_json::json!(deadline);
            if let Some(m) = metadata {
                v["content_metadata"] = serde_json::to_value(m).unwrap();
            }
            v["subsidy_expiration"] = serde_json::json!(c.subsidy_expiration);
            v["configuration_active"] = serde_json::json!(c.configuration_active);
            v.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn import_round_trips_and_refuses_bad_input(store: Store) {
    let items = generated(30);
    let text = jsonl(&items);
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    // A bad line anywhere: named, and nothing written.
    let bad = format!("{text}\n{{\"uuid\": 5}}\n");
    let err = store
        .import_assignments(|| Ok(Cursor::new(bad.clone())), now)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Import { line: 31, .. }), "{err}");
    assert!(store.get_assignment("a-00000").await.unwrap().is_none());
    // One content key with two different deadlines is refused too.
    let mut clash = items[0].clone();
    clash.0.uuid = "clash".into();
    clash.1.enrollment = Enrollment::Deadline(Some("2030-01-01T00:00:00Z".into()));
    let clashing = format!("{text}\n{}", jsonl(&[clash]));
    let err = store
        .import_assignments(|| Ok(Cursor::new(clashing.clone())), now)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("other enrollment data"), "{err}");
    assert!(!err.to_string().contains("example.com"), "{err}");

    let summary = store
        .import_assignments(|| Ok(Cursor::new(text.clone())), now)
        .await
        .unwrap();
    assert_eq!(summary.imported, 30);
    assert_eq!(summary.content_keys, 11);
    for (assignment, context) in &items {
        let (loaded, loaded_context) = store
            .get_assignment(&assignment.uuid)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&loaded, assignment);
        assert_eq!(&loaded_context, context);
    }
    // Re-running finishes an interrupted import: everything is already there.
    let again = store
        .import_assignments(|| Ok(Cursor::new(text.clone())), now)
        .await
        .unwrap();
    assert_eq!((again.imported, again.already_present), (0, 30));
}

async fn expiry_pass_matches_the_pure_engine_and_sees_each_row_once(store: Store) {
    let items = generated(1200);
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    for chunk in items.chunks(400) {
        store.insert_assignments(chunk, now).await.unwrap();
    }
    let policy = Policy::named(PolicyKind::Current);
    let mut seen: Vec<Decision> = Vec::new();
    let mut n = nonce();
    // Small batches, so the pass writes between reads many times.
    let summary = expire_all(&store, &policy, now, 97, false, &mut n, |d| {
        seen.push(d.clone())
    })
    .await;
    let allocated: Vec<&(Assignment, Context)> = items
        .iter()
        .filter(|(a, _)| a.state == AssignmentState::Allocated)
        .collect();
    assert_eq!(summary.scanned as usize, allocated.len());
    let uuids: HashSet<&str> = seen.iter().map(|d| d.uuid.as_str()).collect();
    assert_eq!(
        uuids.len(),
        allocated.len(),
        "every allocated row exactly once"
    );
    let mut expired = 0;
    for ((assignment, context), decision) in allocated.iter().zip(&seen) {
        assert_eq!(&evaluate(assignment, context, &policy, now), decision);
        let (stored, _) = store
            .get_assignment(&assignment.uuid)
            .await
            .unwrap()
            .unwrap();
        if decision.expires() {
            expired += 1;
            assert_eq!(stored.state, AssignmentState::Expired);
            assert_eq!(stored.expired_at, Some(now));
        } else {
            assert_eq!(stored.state, AssignmentState::Allocated);
        }
    }
    assert!(
        expired > 100 && expired < allocated.len(),
        "a mix: {expired}"
    );
    assert_eq!(summary.expired, expired as u64);
    // A second pass finds nothing more to expire.
    let again = expire_all(&store, &policy, now, 97, false, &mut n, |_| {}).await;
    assert_eq!(again.expired, 0);
}

async fn adr_0016_scrubs_at_expiry_including_history(store: Store) {
    let items = generated(60);
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    store.insert_assignments(&items, now).await.unwrap();
    let policy = Policy::named(PolicyKind::Adr0016);
    let mut decisions = Vec::new();
    let summary = expire_all(&store, &policy, now, 10, false, &mut nonce(), |d| {
        decisions.push(d.clone())
    })
    .await;
    assert!(summary.scrubbed > 0);
    let scrubbed: Vec<&Decision> = decisions
        .iter()
        .filter(|d| d.expiry().is_some_and(|e| e.pii != PiiNow::Keep))
        .collect();
    let emails: Vec<String> = scrubbed
        .iter()
        .map(|d| {
            items
                .iter()
                .find(|(a, _)| a.uuid == d.uuid)
                .unwrap()
                .0
                .learner_email
                .clone()
        })
        .collect();
    assert_eq!(
        store.text_columns_containing(&emails).await.unwrap(),
        Vec::<&str>::new()
    );
    // A dry run writes nothing.
    let untouched = generated(60);
    let fresh: Vec<(Assignment, Context)> = untouched
        .into_iter()
        .map(|(mut a, c)| {
            a.uuid = format!("dry-{}", a.uuid);
            a.learner_email = format!("dry-{}", a.learner_email);
            (a, c)
        })
        .collect();
    store.insert_assignments(&fresh, now).await.unwrap();
    let dry = expire_all(&store, &policy, now, 10, true, &mut nonce(), |_| {}).await;
    assert!(dry.expired > 0);
    let (still, _) = store
        .get_assignment(&fresh[1].0.uuid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.state, fresh[1].0.state);
}

async fn pii_job_scrubs_only_what_the_rule_allows(store: Store) {
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let line = |uuid: &str, email: &str, delivered: bool| {
        let mut actions = vec![
            serde_json::json!({"action_type": "notified", "completed_at": "2026-01-02T00:00:00Z"}),
        ];
        if delivered {
            actions.push(serde_json::json!({"action_type": "expired", "completed_at": "2026-04-05T00:00:00Z"}));
        }
        parse_line(
            &serde_json::json!({
                "uuid": uuid, "state": "expired", "learner_email": email,
                "created": "2026-01-01T00:00:00Z", "allocated_at": "2026-01-01T00:00:00Z",
                "expired_at": "2026-04-04T00:00:00Z", "actions": actions,
                "content_key": "k", "subsidy_expiration": "2027-12-31T00:00:00Z",
            })
            .to_string(),
        )
        .unwrap()
    };
    store
        .insert_assignments(
            &[
                line("done", "done@example.com", true),
                line("waiting", "waiting@example.com", false),
            ],
            now,
        )
        .await
        .unwrap();
    let (scrubbed, skipped) = pii_all(&store, &Policy::named(PolicyKind::Current), now).await;
    assert_eq!(scrubbed, 1);
    assert_eq!(skipped, vec!["expiration email not delivered"]);
    assert_eq!(
        store
            .text_columns_containing(&["done@example.com".into()])
            .await
            .unwrap(),
        Vec::<&str>::new()
    );
    assert_eq!(
        store
            .text_columns_containing(&["waiting@example.com".into()])
            .await
            .unwrap(),
        vec!["assignments.learner_email", "assignment_pii_history.value"]
    );
}

async fn scrub_of_a_retired_learner_leaves_no_trace(store: Store) {
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let mut items = generated(40);
    // The learner has three assignments: two by email (one in other case), one by user id.
    items[3].0.learner_email = "Retiring.Person@Example.com".into();
    items[4].0.learner_email = "retiring.person@example.com".into();
    items[4].0.state = AssignmentState::Accepted;
    items[5].0.lms_user_id = Some(424242);
    store.insert_assignments(&items, now).await.unwrap();
    let mut n = nonce();
    let mut scrubbed = scrub_learner(
        &store,
        "retiring.person@example.com",
        Some(424242),
        now,
        &mut n,
    )
    .await;
    scrubbed.sort();
    assert_eq!(
        scrubbed,
        vec![
            items[3].0.uuid.clone(),
            items[4].0.uuid.clone(),
            items[5].0.uuid.clone()
        ]
    );
    let needles = vec![
        "retiring.person@example.com".to_string(),
        "Retiring.Person@Example.com".to_string(),
        items[5].0.learner_email.clone(),
    ];
    assert_eq!(
        store.text_columns_containing(&needles).await.unwrap(),
        Vec::<&str>::new()
    );
    // Every other learner is untouched.
    assert_eq!(
        store
            .text_columns_containing(&[items[6].0.learner_email.clone()])
            .await
            .unwrap(),
        vec!["assignments.learner_email", "assignment_pii_history.value"]
    );
    // Safe to repeat.
    let again = scrub_learner(
        &store,
        "retiring.person@example.com",
        Some(424242),
        now,
        &mut n,
    )
    .await;
    assert!(again.is_empty());
}
