//! `expire-assignments` on enterprise-access's own database (MariaDB with upstream's reference
//! schema), with the fake enterprise-catalog, enterprise-subsidy and token endpoint: the config
//! keys, `--dry-run`, `--now`, `--json`, the summary, and exit status 5 when a service fails.

use std::sync::Arc;

use retirement_http::fake::{FakeConfig, FakeEdx, Fault};
use retirement_store::testdb::enterprise_access_database;
use retirement_store::{DieselStore, StoreOptions};

use crate::expire_assignments;

const CATALOG: &str = "11111111-1111-4111-8111-111111111111";
const SUBSIDY: &str = "33333333-3333-4333-8333-333333333333";
const CONFIGURATION: &str = "00000000-0000-4000-8000-000000001001";

async fn seed(sql: &DieselStore) {
    let t = "2026-01-01 00:00:00";
    let mut script = format!(
        "INSERT INTO content_assignments_assignmentconfiguration VALUES ('{t}', '{t}', '{CONFIGURATION}', 1, '{CONFIGURATION}'); \
         INSERT INTO subsidy_access_policy_subsidyaccesspolicy (created, modified, policy_type, uuid, description, active, \
           catalog_uuid, subsidy_uuid, access_method, enterprise_customer_uuid, assignment_configuration_id, retired) \
         VALUES ('{t}', '{t}', 'AssignedLearnerCreditAccessPolicy', '{CONFIGURATION}', '', 1, '{CATALOG}', '{SUBSIDY}', \
           'assigned', '{CONFIGURATION}', '{CONFIGURATION}', 0);"
    );
    // Six learners: allocated 120 days before 2026-11-01 (even) or 30 (odd); the odd ones'
    // course closed for enrollment on 2026-10-15 except the last.
    for i in 0..6 {
        let allocated = if i % 2 == 0 {
            "2026-07-04 00:00:00"
        } else {
            "2026-10-02 00:00:00"
        };
        let key = if i == 5 { "edX+Open" } else { "edX+Course" };
        script.push_str(&format!(
            "INSERT INTO content_assignments_learnercontentassignment (created, modified, uuid, learner_email, lms_user_id, \
               content_key, content_quantity, state, assignment_configuration_id, allocated_at, is_assigned_course_run) \
             VALUES ('{allocated}', '{allocated}', '00000000-0000-4000-8000-00000000000{i}', 'learner{i}@example.com', {i}, \
               '{key}', -100, 'allocated', '{CONFIGURATION}', '{allocated}', 0);"
        ));
    }
    sql.execute_mysql_script(&script).await.unwrap();
}

fn config(dir: &std::path::Path, url: &str, fake: &FakeEdx) -> String {
    let path = dir.join("expiry.yml");
    let base = fake.base_url();
    std::fs::write(
        &path,
        format!(
            "assignments_store: {url}\nassignments_schema: enterprise-access\nexpiry_policy: current\n\
             client_id: retirement-worker\nclient_secret: s3cret\n\
             base_urls:\n  lms: {base}/\n  enterprise_catalog: {base}/\n  enterprise_subsidy: {base}/\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

async fn run(args: Vec<String>) -> crate::Run {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        expire_assignments(&args, "")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_on_enterprise_access_s_database_dry_then_for_real_then_with_the_catalog_down() {
    let Some(db) = enterprise_access_database(false).await else {
        return;
    };
    let sql = Arc::new(
        DieselStore::open(&db.url, &StoreOptions::default())
            .await
            .unwrap(),
    );
    seed(&sql).await;
    let fake = FakeEdx::start(FakeConfig::default()).await.unwrap();
    for (key, enroll_by) in [
        ("edX+Course", "2026-10-15T00:00:00Z"),
        ("edX+Open", "2027-10-15T00:00:00Z"),
    ] {
        fake.add_catalog_record(
            CATALOG,
            serde_json::json!({"key": key, "normalized_metadata": {"enroll_by_date": enroll_by}}),
        );
    }
    fake.set_subsidy(
        SUBSIDY,
        serde_json::json!({"expiration_datetime": "2030-01-01T00:00:00Z"}),
    );
    let dir = std::env::temp_dir().join(format!("ea-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = config(&dir, &db.url, &fake);
    let args = |extra: &[&str]| {
        let mut a = vec!["--config".to_owned(), config.clone()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    let dry = run(args(&[
        "run",
        "--dry-run",
        "--now",
        "2026-11-01T00:00:00Z",
        "--json",
    ]))
    .await;
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    insta::assert_snapshot!("enterprise_access_dry_run_json", dry.stdout);
    let untouched = run(args(&["run", "--dry-run", "--now", "2026-11-01T00:00:00Z"])).await;
    assert!(
        untouched
            .stdout
            .contains("expired 5 (dry run: nothing changed)"),
        "{}",
        untouched.stdout
    );

    let real = run(args(&["run", "--now", "2026-11-01T00:00:00Z"])).await;
    assert_eq!(real.code, Some(0), "{}", real.stderr);
    insta::assert_snapshot!("enterprise_access_run_text", real.stdout);
    for learner in 0..5 {
        assert!(
            !real.stdout.contains(&format!("learner{learner}@")),
            "no email in the output"
        );
    }

    // The catalog down: the policy's row is undecided, exit status 5, the configuration named.
    fake.set_fault(
        &format!("/api/v2/enterprise-catalogs/{CATALOG}/get_content_metadata/"),
        Some(Fault {
            status: Some(503),
            ..Fault::default()
        }),
    );
    let down = run(args(&["run", "--now", "2026-11-02T00:00:00Z", "--json"])).await;
    assert_eq!(down.code, Some(5), "{}\n{}", down.stdout, down.stderr);
    let summary: serde_json::Value = serde_json::from_str(&down.stdout).unwrap();
    assert_eq!(summary["undecided"], 1);
    assert!(
        summary["undecided_configurations"][CONFIGURATION]
            .as_str()
            .is_some_and(|e| e.contains("enterprise-catalog"))
    );
    assert!(down.stderr.contains("left undecided"), "{}", down.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    db.drop_database().await;
}
