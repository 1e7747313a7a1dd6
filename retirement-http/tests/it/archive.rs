//! `retire cleanup`'s archive in object storage (`file://` here; S3 against a real
//! S3-compatible server in bins' tests): verified before anything is deleted, and a run
//! stopped at any point and run again neither loses nor duplicates a learner.

use chrono::Utc;
use retirement_http::archive::{ArchiveTarget, Archiver, retired_usernames_in};
use retirement_http::fake::console::ConsoleWorld;
use retirement_store::{ActionKind, Journal, OperatorAction, RetirementStore};

use crate::console::now;

/// The COMPLETE learners of a seeded world, with their originals.
async fn complete(world: &ConsoleWorld) -> Vec<retirement_core::Retirement> {
    let mut out = Vec::new();
    for l in world.in_state("COMPLETE") {
        out.push(world.store.get(l.id).await.unwrap());
    }
    out
}

fn dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("retire-archive-{}-{name}", std::process::id()))
}

/// Every retired username in every object, with how often it appears.
async fn archived(target: &ArchiveTarget) -> (Vec<String>, Vec<String>) {
    let objects = target.objects().await.unwrap();
    let keys = objects.iter().map(|(k, _)| k.clone()).collect();
    let mut names: Vec<String> = objects
        .iter()
        .flat_map(|(_, bytes)| retired_usernames_in(bytes))
        .collect();
    names.sort();
    (keys, names)
}

#[tokio::test]
async fn batches_land_under_raw_year_month_before_their_learners_are_deleted() {
    let world = ConsoleWorld::seeded(now()).await.unwrap();
    let learners = complete(&world).await;
    assert_eq!(learners.len(), 5);
    let path = dir("layout");
    let target = ArchiveTarget::open(&format!("file://{}", path.display()), false).unwrap();
    let archiver = Archiver {
        store: world.store.as_ref(),
        journal: Some(world.store.as_ref()),
        target: &target,
        include_pii: false,
    };
    let at = Utc::now();
    let summary = archiver.archive_and_delete(&learners, 2, at).await.unwrap();
    assert_eq!(summary.deleted, 5);
    assert_eq!(summary.objects.len(), 3);
    let (keys, mut names) = archived(&target).await;
    for key in &keys {
        assert!(
            key.starts_with(&format!("raw/{}/", at.format("%Y/%m"))),
            "{key}"
        );
        assert!(key.ends_with(".json.gz"));
    }
    let mut expected: Vec<String> = learners
        .iter()
        .map(|r| r.retired_username().to_owned())
        .collect();
    expected.sort();
    names.dedup();
    assert_eq!(names, expected);
    // No originals without --include-pii; the statuses are gone.
    for (_, bytes) in target.objects().await.unwrap() {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
            .unwrap();
        assert_eq!(text.lines().count(), retired_usernames_in(&bytes).len());
        for l in &world.learners {
            assert!(
                !text.contains(&l.email) && !text.contains(&l.username),
                "{text}"
            );
        }
    }
    for r in &learners {
        assert!(world.store.get(r.id()).await.is_err());
    }
    let _ = std::fs::remove_dir_all(&path);
}

#[tokio::test]
async fn a_run_stopped_between_upload_and_delete_is_finished_without_duplicates() {
    let world = ConsoleWorld::seeded(now()).await.unwrap();
    let learners = complete(&world).await;
    let path = dir("crash");
    let target = ArchiveTarget::open(&format!("file://{}", path.display()), false).unwrap();
    let archiver = Archiver {
        store: world.store.as_ref(),
        journal: Some(world.store.as_ref()),
        target: &target,
        include_pii: true,
    };
    let at = Utc::now();
    // The first run uploaded its first batch and was killed before deleting it.
    let first = &learners[..2];
    archiver
        .upload(first, &archiver.batch_key(first, at))
        .await
        .unwrap();
    // Another intent was recorded, but the process died before its upload.
    let lost = &learners[2];
    world
        .store
        .record_action(&OperatorAction {
            retirement_id: lost.id(),
            at,
            operator: "retire cleanup".into(),
            kind: ActionKind::Archived,
            reason: archiver
                .batch_key(std::slice::from_ref(lost), at)
                .to_string(),
        })
        .await
        .unwrap();
    for r in &learners {
        world.store.get(r.id()).await.unwrap();
    }
    // The re-run, later: every learner archived exactly once, and deleted.
    let later = at + chrono::TimeDelta::minutes(5);
    let summary = archiver
        .archive_and_delete(&learners, 2, later)
        .await
        .unwrap();
    assert_eq!(summary.deleted, 5);
    let (_, names) = archived(&target).await;
    let mut expected: Vec<String> = learners
        .iter()
        .map(|r| r.retired_username().to_owned())
        .collect();
    expected.sort();
    assert_eq!(names, expected, "each learner exactly once");
    for r in &learners {
        assert!(world.store.get(r.id()).await.is_err());
    }
    let _ = std::fs::remove_dir_all(&path);
}

#[tokio::test]
async fn a_failed_upload_deletes_nothing() {
    let world = ConsoleWorld::seeded(now()).await.unwrap();
    let learners = complete(&world).await;
    // An S3 endpoint nobody listens on.
    let target = crate::support::unreachable_s3("s3://archive/retirement");
    let archiver = Archiver {
        store: world.store.as_ref(),
        journal: Some(world.store.as_ref()),
        target: &target,
        include_pii: false,
    };
    let err = archiver
        .archive_and_delete(&learners, 10, Utc::now())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("uploading"), "{err}");
    for r in &learners {
        assert_eq!(
            world.store.get(r.id()).await.unwrap().current_state(),
            "COMPLETE"
        );
    }
    // Plain HTTP to a host that is not loopback is refused unless allowed.
    let refused = ArchiveTarget::open_with(
        "s3://archive",
        false,
        [(
            "AWS_ENDPOINT_URL".to_owned(),
            "http://minio.internal:9000".to_owned(),
        )],
    )
    .unwrap_err();
    assert!(refused.to_string().contains("--allow-http"), "{refused}");
    ArchiveTarget::open_with(
        "s3://archive",
        true,
        [(
            "AWS_ENDPOINT_URL".to_owned(),
            "http://minio.internal:9000".to_owned(),
        )],
    )
    .unwrap();
}
