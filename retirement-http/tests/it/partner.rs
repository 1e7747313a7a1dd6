//! The LMS's partner-reporting queue against the fake LMS: the pipeline's stage queues a
//! learner enrolled in an org; the report answers each row once; cleanup removes exactly the
//! rows named, and its refusal never quotes a username.

use chrono::{TimeDelta, Utc};
use retirement_core::{Actor, OriginalIdentity, RetiredIdConfig};
use retirement_http::{LearnerRef, partner};
use retirement_store::{NewRetirement, RetirementStore};

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_is_answered_once_and_cleaned_up_exactly() {
    let states: Vec<String> = [
        "PENDING",
        "ADDING_TO_PARTNER_QUEUE",
        "PARTNER_QUEUE_COMPLETE",
        "ERRORED",
        "ABORTED",
        "COMPLETE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let world = crate::support::lms_world(&states).await;
    let ids = RetiredIdConfig::new(vec!["salt".into()]).unwrap();
    let mut queued = Vec::new();
    for n in 0..3 {
        let original = OriginalIdentity {
            username: format!("Partner.Learner{n}"),
            email: format!("partner.learner{n}@example.com"),
            name: format!("Partner Person {n}"),
        };
        let r = world
            .store
            .enqueue(
                NewRetirement::new(original.clone(), Some(100 + n), &ids),
                Utc::now() - TimeDelta::days(30),
            )
            .await
            .unwrap();
        world
            .store
            .advance(
                r.id(),
                None,
                "ADDING_TO_PARTNER_QUEUE",
                "",
                Actor::Driver,
                Utc::now(),
            )
            .await
            .unwrap();
        // Learner 2 is enrolled in no org: upstream queues nobody for it.
        if n < 2 {
            world
                .fake
                .set_partner_orgs(&original.username, &["MITx", "HarvardX"]);
        }
        let retired = world.store.get(r.id()).await.unwrap();
        let outcome = world
            .clients
            .call("LMS", "retirement_partner_queue", &LearnerRef::of(&retired))
            .await
            .unwrap();
        assert!(
            matches!(
                outcome,
                retirement_http::CallOutcome::Response { status: 204, .. }
            ),
            "{outcome:?}"
        );
        queued.push(original);
    }
    let rows = partner::fetch(&world.clients).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].original_username, "Partner.Learner0");
    assert_eq!(rows[0].original_email, "partner.learner0@example.com");
    assert_eq!(rows[0].orgs, ["MITx", "HarvardX"]);
    assert_eq!(rows[0].user_id, 100);
    assert!(!format!("{:?}", rows[0]).contains("Partner.Learner0"));
    // Answered once: now being processed.
    assert!(partner::fetch(&world.clients).await.unwrap().is_empty());
    assert_eq!(world.fake.partner_rows().len(), 2);

    // A cleanup naming a row that is not being processed is refused whole, without names.
    let err = partner::cleanup(
        &world.clients,
        &["Partner.Learner0".to_owned(), "Partner.Learner2".to_owned()],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("answered 400"), "{err}");
    assert!(!err.to_string().contains("Partner.Learner"), "{err}");
    assert_eq!(world.fake.partner_rows().len(), 2);
    // Exactly the delivered row.
    partner::cleanup(&world.clients, &["Partner.Learner0".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        world.fake.partner_rows(),
        vec![("Partner.Learner1".to_owned(), true)]
    );
    partner::cleanup(&world.clients, &[]).await.unwrap();
}

fn row(user_id: i64, orgs: &[&str], config: Option<(&str, &[&str])>) -> partner::PartnerRow {
    partner::PartnerRow {
        user_id,
        student_id: config.map(|_| format!("ext-{user_id}")),
        original_username: format!("learner{user_id}"),
        original_email: format!("learner{user_id}@example.com"),
        original_name: format!("Learner, \"{user_id}\""),
        orgs: orgs.iter().map(|o| o.to_string()).collect(),
        orgs_config: config
            .map(|(org, headings)| {
                vec![partner::OrgConfig {
                    org: org.to_owned(),
                    field_headings: headings.iter().map(|h| h.to_string()).collect(),
                }]
            })
            .unwrap_or_default(),
        created: format!("2026-11-0{user_id}T10:00:00Z"),
    }
}

#[test]
fn rows_group_by_partner_into_csvs_with_upstreams_headings() {
    let mapping: std::collections::BTreeMap<String, Vec<String>> = [
        ("MITx", vec!["MIT"]),
        ("HarvardX", vec!["Harvard", "edX Consortium"]),
        ("mb_coaching", vec!["Coaching"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    let rows = vec![
        row(1, &["MITx", "HarvardX"], None),
        row(2, &["HarvardX"], None),
        row(
            3,
            &[],
            Some((
                "mb_coaching",
                &[
                    "student_id",
                    "original_email",
                    "original_name",
                    "deletion_completed",
                ],
            )),
        ),
    ];
    let reports = partner::group_by_partner(&rows, &mapping).unwrap();
    let csvs: std::collections::BTreeMap<&str, String> =
        reports.iter().map(|(p, r)| (p.as_str(), r.csv())).collect();
    insta::assert_yaml_snapshot!(csvs);
    // An org the mapping does not name refuses the whole report, naming the org only.
    let unknown =
        partner::group_by_partner(&[row(4, &["UnknownX", "MITx"], None)], &mapping).unwrap_err();
    assert_eq!(unknown, ["UnknownX"]);
}
