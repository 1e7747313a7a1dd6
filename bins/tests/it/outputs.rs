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
