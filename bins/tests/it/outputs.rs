//! What leaves the pipeline (issue 17): the completion feed and its per-run webhook.

use retirement_http::fake::sinks::WebhookSink;
use retirement_store::RetirementStore;

use crate::retire::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_completion_feed_names_completed_learners_without_personal_data() {
    let mut world = World::new("completed").await;
    let learners = world.seed(3).await;
    let hook = WebhookSink::start().await.unwrap();
    let config = std::fs::read_to_string(&world.config).unwrap();
    std::fs::write(
        &world.config,
        format!("{config}completion_webhook: {}\n", hook.url),
    )
    .unwrap();
    let before = (chrono::Utc::now() - chrono::TimeDelta::seconds(1)).to_rfc3339();
    let run = world.retire(&["run"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    // The run posted its completions once.
    let posted = hook.received();
    assert_eq!(posted.len(), 1, "{posted:?}");
    let completed = posted[0]["completed"].as_array().unwrap();
    assert_eq!(completed.len(), 3);
    let first = world
        .store
        .find_by_username(&learners[0].username)
        .await
        .unwrap();
    let entry = completed
        .iter()
        .find(|c| c["retirement_id"] == first.id().0)
        .unwrap();
    assert_eq!(entry["retired_username"], first.retired_username());
    assert_eq!(entry["lms_user_id"], first.parts().lms_user_id.unwrap());
    assert_eq!(
        entry["stages"],
        serde_json::json!([
            "LMS retirement_retire_forum",
            "ECOMMERCE retire_learner",
            "LMS retirement_unenroll",
            "LMS retirement_retire_notes",
            "LMS retirement_lms_retire_misc",
            "LMS retirement_lms_retire"
        ])
    );
    let body = posted[0].to_string();
    for l in &learners {
        assert!(!body.contains(&l.username) && !body.contains(&l.email) && !body.contains(&l.name));
    }

    // The feed: text, JSON lines, and nothing after the run.
    let text = world.retire(&["completed", "--since", &before]);
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    assert_eq!(text.stdout.lines().count(), 3, "{}", text.stdout);
    assert!(text.stderr.contains("3 learner(s) completed since"));
    assert!(text.stdout.contains(first.retired_username()));
    let json = world.retire(&["completed", "--since", &before, "--json"]);
    let rows: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(
        rows.windows(2)
            .all(|w| w[0]["completed"].as_str() <= w[1]["completed"].as_str())
    );
    for l in &learners {
        assert!(!json.stdout.contains(&l.username) && !json.stdout.contains(&l.email));
    }
    let tomorrow = (chrono::Utc::now() + chrono::TimeDelta::days(1))
        .date_naive()
        .to_string();
    let none = world.retire(&["completed", "--since", &tomorrow]);
    assert_eq!(none.stdout, "");
    let bad = world.retire(&["completed", "--since", "last tuesday"]);
    assert_eq!(bad.code, Some(2));
    assert!(
        bad.stderr.contains("neither RFC 3339 nor YYYY-MM-DD"),
        "{}",
        bad.stderr
    );

    // A second run completes nobody: no second post.
    world.retire(&["run"]);
    assert_eq!(hook.received().len(), 1);
    world.finish().await;
}

/// The S3-compatible server's URL (`.ci/run` starts moto's), or a skip line (a failure
/// under CI=true).
fn s3_url() -> Option<String> {
    crate::server_url("RETIREMENT_TEST_S3_URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_archives_to_s3_verified_and_deletes_only_what_landed() {
    let Some(s3) = s3_url() else { return };
    let mut world = World::new("s3-archive").await;
    let learners = world.seed(5).await;
    let run = world.retire(&["run"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let bucket = format!("retire-{}-{}", std::process::id(), rand_suffix());
    let env = [
        ("AWS_ENDPOINT_URL", s3.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ];
    let cleanup = |world: &World, extra: &[&str]| {
        let mut args = vec!["cleanup", "--cool-off-days", "0", "--batch-size", "2"];
        args.extend_from_slice(extra);
        let mut command = world.command(&args);
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    let archive = format!("s3://{bucket}/retirement");
    // No bucket yet: the upload fails, nothing is deleted.
    let failed = cleanup(&world, &["--archive", &archive]);
    assert_eq!(
        failed.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    for l in &learners {
        assert_eq!(world.state_of(&l.username).await, "COMPLETE");
    }
    // With the bucket: three objects of at most two learners, read back, then deleted.
    let created = reqwest::Client::new()
        .put(format!("{s3}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let done = cleanup(&world, &["--archive", &archive]);
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert_eq!(
        done.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        stdout.contains("archived and deleted 5 learner(s) in 3 object(s)"),
        "{stdout}"
    );
    let target = retirement_http::archive::ArchiveTarget::open_with(
        &archive,
        false,
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .unwrap();
    let objects = target.objects().await.unwrap();
    assert_eq!(objects.len(), 3);
    let year_month = chrono::Utc::now().format("%Y/%m").to_string();
    let mut names = Vec::new();
    for (key, bytes) in &objects {
        assert!(
            key.starts_with(&format!("retirement/raw/{year_month}/retirement_archive_")),
            "{key}"
        );
        names.extend(retirement_http::archive::retired_usernames_in(bytes));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
            .unwrap();
        for l in &learners {
            assert!(!text.contains(&l.username) && !text.contains(&l.email));
        }
    }
    assert_eq!(names.len(), 5);
    for l in &learners {
        assert!(world.store.find_by_username(&l.username).await.is_err());
    }
    world.finish().await;
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % 1_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_queue_drain_empties_the_queue_unless_partners_are_owed_a_report() {
    let mut world = World::new("partner-drain").await;
    let learners = world.seed(2).await;
    let clients = world.clients().unwrap();
    for l in &learners {
        let r = world.store.find_by_username(&l.username).await.unwrap();
        world
            .store
            .advance(
                r.id(),
                None,
                "RETIRING_FORUMS",
                "",
                retirement_core::Actor::Driver,
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        world.fake.set_partner_orgs(&l.username, &["MITx"]);
        let r = world.store.get(r.id()).await.unwrap();
        clients
            .call(
                "LMS",
                "retirement_partner_queue",
                &retirement_http::LearnerRef::of(&r),
            )
            .await
            .unwrap();
    }
    assert_eq!(world.fake.partner_rows().len(), 2);
    // A site with partners configured must report, not drain.
    let config = std::fs::read_to_string(&world.config).unwrap();
    std::fs::write(
        &world.config,
        format!("{config}org_partner_mapping:\n  MITx: [MIT]\n"),
    )
    .unwrap();
    let refused = world.retire(&["partner-queue", "drain"]);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("owed a report"),
        "{}",
        refused.stderr
    );
    assert_eq!(world.fake.partner_rows().len(), 2);
    std::fs::write(&world.config, &config).unwrap();
    let drained = world.retire(&["partner-queue", "drain"]);
    assert_eq!(drained.code, Some(0), "{}", drained.stderr);
    assert!(
        drained.stdout.contains("drained 2 row(s)"),
        "{}",
        drained.stdout
    );
    assert!(world.fake.partner_rows().is_empty());
    for l in &learners {
        assert!(!drained.stdout.contains(&l.username) && !drained.stderr.contains(&l.username));
    }
    world.finish().await;
}
