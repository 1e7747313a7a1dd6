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
    let env = s3_env(&s3);
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
    create_bucket(&s3, &bucket).await;
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
    // Each object is named by its full URL.
    let year_month_path = chrono::Utc::now().format("%Y/%m").to_string();
    assert_eq!(
        stdout
            .matches(&format!(
                "archived to s3://{bucket}/retirement/raw/{year_month_path}/retirement_archive_"
            ))
            .count(),
        3,
        "{stdout}"
    );
    let target = s3_target(&archive, &env);
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

/// The AWS settings that point object_store at the test server.
fn s3_env(s3: &str) -> [(&'static str, &str); 4] {
    [
        ("AWS_ENDPOINT_URL", s3),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ]
}

/// Creates `bucket` on the test server.
async fn create_bucket(s3: &str, bucket: &str) {
    let created = reqwest::Client::new()
        .put(format!("{s3}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
}

/// The archive target at `url` with the test server's settings.
fn s3_target(url: &str, env: &[(&str, &str)]) -> retirement_http::archive::ArchiveTarget {
    retirement_http::archive::ArchiveTarget::open_with(
        url,
        false,
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .unwrap()
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

/// Appends the partner-report config to the world's: partners from a CSV file, MIT by
/// email (one address in a denied domain), Harvard and edX Consortium by webhook, Coaching
/// by email only when `coaching`, Open Partner exempt.
fn partner_config(world: &World, base: &str, smtp_port: u16, hook: &str, coaching: bool) {
    std::fs::write(
        world.dir.join("partners.csv"),
        "org,partner\nMITx,MIT\nHarvardX,Harvard\nHarvardX,edX Consortium\nCoachX,Coaching\n\
         OpenX,Open Partner\n",
    )
    .unwrap();
    let coaching = if coaching {
        "    Coaching: {email: [privacy@coaching.example]}\n"
    } else {
        ""
    };
    std::fs::write(
        &world.config,
        format!(
            "{base}org_partner_mapping: partners.csv\n\
             partner_report_platform_name: Example\n\
             denied_notification_domains: ['@example.org']\n\
             partner_report:\n  \
               exempted_partners: [Open Partner]\n  \
               smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none, from: privacy@example.org}}\n  \
               contacts:\n    \
                 MIT: {{email: [gdpr@mit.example, staff@example.org]}}\n    \
                 Harvard: {{webhook_url: '{hook}'}}\n    \
                 edX Consortium: {{webhook_url: '{hook}'}}\n{coaching}"
        ),
    )
    .unwrap();
}

/// A world with the partner config (see `partner_config`), its original config text, and
/// the contacts' SMTP relay and webhook.
async fn partner_world(
    name: &str,
    coaching: bool,
) -> (
    World,
    String,
    retirement_http::fake::sinks::SmtpSink,
    WebhookSink,
) {
    let world = World::new(name).await;
    let base = std::fs::read_to_string(&world.config).unwrap();
    let smtp = retirement_http::fake::sinks::SmtpSink::start()
        .await
        .unwrap();
    let hook = WebhookSink::start().await.unwrap();
    partner_config(&world, &base, smtp.port, &hook.url, coaching);
    (world, base, smtp, hook)
}

fn queue_partner_rows(
    world: &World,
    rows: &[(i64, &[&str])],
) -> Vec<retirement_core::OriginalIdentity> {
    rows.iter()
        .map(|(n, orgs)| {
            let original = retirement_core::OriginalIdentity {
                username: format!("Partnered.Learner{n}"),
                email: format!("partnered.learner{n}@example.net"),
                name: format!("Partnered Person {n}"),
            };
            world.fake.queue_partner_row(*n, &original, orgs, &[]);
            original
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_report_delivers_the_others_then_fails_compliance_for_a_partner_without_contact() {
    let (world, base, smtp, hook) = partner_world("partner-report", false).await;
    let learners = queue_partner_rows(
        &world,
        &[
            (1, &["MITx", "HarvardX"]),
            (2, &["CoachX"]),
            (3, &["OpenX"]),
        ],
    );
    let reports = world.dir.join("reports");
    let first = world.retire(&["partner-report", "--output", reports.to_str().unwrap()]);
    assert_eq!(first.code, Some(6), "{}\n{}", first.stdout, first.stderr);
    assert!(
        first.stderr.contains("compliance failure")
            && first.stderr.contains("no point of contact: Coaching"),
        "{}",
        first.stderr
    );
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(&world.dir.display().to_string()), "[dir]");
    settings.add_filter(r"\d{4}-\d{2}-\d{2}", "[day]");
    settings.bind(|| insta::assert_snapshot!("partner_report_no_contact", first.stdout));
    // MIT's mail went to its address outside the denied domain only; two webhook posts.
    let mails = smtp.received();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["<gdpr@mit.example>"]);
    assert_eq!(hook.received().len(), 2);
    // Learners 1 and 3 are cleaned up; the coaching learner waits in the LMS and the spool.
    assert_eq!(
        world.fake.partner_rows(),
        [("Partnered.Learner2".to_owned(), true)]
    );
    let spool = std::fs::read_to_string(world.dir.join("partner-report-spool.json")).unwrap();
    assert!(spool.contains("Partnered.Learner2") && !spool.contains("Partnered.Learner1"));
    let csv = std::fs::read_to_string(
        std::fs::read_dir(&reports)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains("_MIT_"))
            .unwrap(),
    )
    .unwrap();
    assert!(csv.contains("Partnered.Learner1,partnered.learner1@example.net,Partnered Person 1"));
    // With a contact for Coaching, the next run delivers it alone.
    partner_config(&world, &base, smtp.port, &hook.url, true);
    let second = world.retire(&[
        "partner-report",
        "--output",
        reports.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(second.code, Some(0), "{}\n{}", second.stdout, second.stderr);
    let outcome: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(outcome["carried"], 1);
    assert_eq!(outcome["delivered"][0]["partner"], "Coaching");
    assert_eq!(outcome["cleaned"], 1);
    assert_eq!(outcome["waiting"], 0);
    assert!(world.fake.partner_rows().is_empty());
    assert_eq!(smtp.received().len(), 2);
    // No learner is named on the terminal.
    for l in &learners {
        for out in [&first.stdout, &first.stderr, &second.stdout, &second.stderr] {
            assert!(
                !out.contains(&l.username) && !out.contains(&l.email),
                "{out}"
            );
        }
    }
    // A bad mapping is a config error naming the key.
    std::fs::write(
        world.dir.join("partners.csv"),
        "organisation,who\nMITx,MIT\n",
    )
    .unwrap();
    let bad = world.retire(&["partner-report", "--output", reports.to_str().unwrap()]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("org_partner_mapping") && bad.stderr.contains("org,partner"),
        "{}",
        bad.stderr
    );
    world.finish().await;
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_reports_go_to_s3_and_prune_warns_then_deletes_there() {
    let Some(s3) = s3_url() else { return };
    let (world, _, smtp, hook) = partner_world("partner-s3", true).await;
    queue_partner_rows(&world, &[(1, &["HarvardX"])]);
    let bucket = format!("partners-{}-{}", std::process::id(), rand_suffix());
    create_bucket(&s3, &bucket).await;
    let env = s3_env(&s3);
    let output = format!("s3://{bucket}/partner-reports");
    let run = |args: &[&str]| {
        let mut command = world.command(args);
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&["partner-report", "--output", &output]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let today = chrono::Utc::now().date_naive();
    assert!(
        stdout.contains(&format!(
            "{output}/user_retirement_Example_Harvard_{today}.csv"
        )),
        "{stdout}"
    );
    let target = s3_target(&output, &env);
    // Beside today's two, two older reports: one past 60 days, one inside the last 7
    // before its deletion.
    for (partner, age) in [("MIT", 61), ("Harvard", 55)] {
        let name = retirement_http::partner::report_name(
            "Example",
            partner,
            today - chrono::TimeDelta::days(age),
        );
        target
            .put_key_verified(&target.named_key(&name), bytes::Bytes::from_static(b"h\n"))
            .await
            .unwrap();
    }
    let (code, stdout, stderr) = run(&["partner-report", "prune", "--output", &output]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("pruned: 2 warned, 1 deleted, 2 kept"),
        "{stdout}"
    );
    let left: Vec<String> = target
        .objects()
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.iter().all(|k| !k.contains("_MIT_")), "{left:?}");
    // Warned once: a second prune sends nothing.
    let sent = smtp.received().len() + hook.received().len();
    let (code, stdout, _) = run(&["partner-report", "prune", "--output", &output]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("pruned: 0 warned, 0 deleted, 3 kept"),
        "{stdout}"
    );
    assert_eq!(smtp.received().len() + hook.received().len(), sent);
    world.finish().await;
}
