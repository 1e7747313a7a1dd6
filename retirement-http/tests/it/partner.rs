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
