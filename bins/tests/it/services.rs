//! `retire` with every erasure stream (issue 15): the demo over every connector, a manual step
//! marked with `retire done`, and the LMS-mode admin commands against the fake LMS.

use std::process::{Command, Stdio};

use retirement_http::fake::{FakeUser, Fault, SALESFORCE_CLIENT};

use crate::retire::World;

/// The demo's learners' originals all start with these: one scan finds any leak.
const DEMO_ORIGINALS: &[&str] = &["Demo.Learner", "demo.learner", "Demo Person"];

#[test]
fn the_demo_retires_everyone_through_every_service_and_its_logs_hold_no_original() {
    let out = Command::new(env!("CARGO_BIN_EXE_retire"))
        .args([
            "demo",
            "--services",
            "all",
            "--learners",
            "60",
            "--concurrency",
            "16",
            "--log-level",
            "debug",
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("retire runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("learners completed: 60 of 60 (errored 0"),
        "{stdout}"
    );
    for service in [
        "AMPLITUDE",
        "BRAZE",
        "COMMERCE_COORDINATOR",
        "CREDENTIALS",
        "HUBSPOT",
        "LMS ",
        "LMS_CERTIFICATES",
        "RED_VENTURES",
        "SALESFORCE ",
        "SALESFORCE_MARKETING_CLOUD",
        "SEGMENT",
    ] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(service)),
            "no calls for {service}:\n{stdout}"
        );
    }
    assert!(stdout.contains("learners per second"), "{stdout}");
    assert!(
        stdout.contains("manual steps marked done by the demo's operator: 6"),
        "{stdout}"
    );
    // The fakes' records: originals only where an API is keyed by them.
    assert!(stdout.contains("; 0 elsewhere"), "{stdout}");
    // The run's logs (debug level) and output: no original anywhere.
    assert!(
        stderr.lines().count() > 100,
        "expected a debug log:\n{stderr}"
    );
    for original in DEMO_ORIGINALS {
        assert!(
            !stdout.contains(original),
            "{original} in the output:\n{stdout}"
        );
        assert!(!stderr.contains(original), "{original} in the log");
    }
}

/// A pipeline with Salesforce's manual step then the LMS's retirement, and the Salesforce
/// connector pointed at the fake.
fn salesforce_config(world: &World) -> String {
    let base = world.fake.base_url();
    format!(
        "client_id: retirement-worker\nclient_secret: s3cret\nbase_urls:\n  lms: {base}/\n\
         store: {store}\nretired_id:\n  salts: [{salt}]\n\
         retirement_pipeline:\n  - [RETIRING_SALESFORCE, SALESFORCE_COMPLETE, SALESFORCE, retire_learner]\n  \
         - [RETIRING_LMS, LMS_COMPLETE, LMS, retirement_lms_retire]\n\
         connectors:\n  SALESFORCE:\n    instance_url: {base}/salesforce\n    client_id: {id}\n    \
         client_secret: {{env: SF_TEST_SECRET}}\n    assignee_id: {assignee}\n",
        store = world.url,
        salt = crate::retire::SALT,
        id = SALESFORCE_CLIENT.0,
        assignee = SALESFORCE_CLIENT.2,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manual_step_waits_in_status_and_queue_until_retire_done() {
    let mut world = World::new("manual").await;
    let learners = world.seed(2).await;
    // The first learner has a Salesforce Lead (a person must act); the second has none.
    world.fake.with_vendors(|v| {
        v.salesforce_leads
            .insert(learners[0].email.clone(), "00Q000000000001".into());
    });
    std::fs::write(&world.config, salesforce_config(&world)).unwrap();
    let retire = |args: &[&str]| {
        let out = world
            .command(args)
            .env("SF_TEST_SECRET", SALESFORCE_CLIENT.1)
            .output()
            .expect("retire runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = retire(&["states", "sync"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = retire(&["run"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        world.state_of(&learners[0].username).await,
        "RETIRING_SALESFORCE"
    );
    assert_eq!(world.state_of(&learners[1].username).await, "COMPLETE");

    // `status` and `queue` say what it waits on; a second run leaves it alone.
    let (_, status, _) = retire(&["status", &learners[0].username]);
    assert!(
        status.contains("waiting:          waiting for a person to finish SALESFORCE (task 00T"),
        "{status}"
    );
    let (_, queue, _) = retire(&["queue"]);
    assert!(
        queue.contains("1 learner(s) waiting on a vendor job or a person"),
        "{queue}"
    );
    let (code, out, err) = retire(&["run"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(world.fake.vendors().salesforce_tasks.len(), 1, "asked once");

    // Only a manual stage can be marked done, and only where the learner waits.
    let (code, _, err) = retire(&[
        "done",
        &learners[0].username,
        "--stage",
        "RETIRING_LMS",
        "--reason",
        "x",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not a manual stage"), "{err}");
    let (code, out, err) = retire(&[
        "done",
        &learners[0].username,
        "--stage",
        "RETIRING_SALESFORCE",
        "--reason",
        "Lead 00Q000000000001 deleted",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("SALESFORCE done by it-operator, now SALESFORCE_COMPLETE"),
        "{out}"
    );
    let (code, out, err) = retire(&["run"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(world.state_of(&learners[0].username).await, "COMPLETE");
    // The audit entry names the operator and the reason.
    let (_, status, _) = retire(&["status", &learners[0].username]);
    assert!(status.contains("operator:it-operator"), "{status}");
    assert!(status.contains("Lead 00Q000000000001 deleted"), "{status}");
    // No original in anything printed.
    for text in [&status, &queue] {
        assert!(!text.contains(&learners[0].email));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lms_mode_request_status_and_cancel_go_through_the_lms() {
    let world = World::new("lms-admin").await;
    for n in 0..2 {
        world.fake.add_user(FakeUser {
            id: 9100 + n,
            username: format!("Lms.Admin.User{n}"),
            email: format!("lms.admin.user{n}@example.org"),
            name: format!("Lms Admin {n}"),
        });
    }
    std::fs::write(&world.config, world.config_yaml("store: lms\n")).unwrap();
    let retire = |args: &[&str]| {
        let out = world.command(args).output().expect("retire runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // bulk_retire_users, one by --username, the rest from a CSV with a stranger in it.
    let (code, out, err) = retire(&["request", "--username", "Lms.Admin.User0"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out.trim(), "queued 1, not queued 0");
    // A CSV with an email for one learner (all the operator had) and strangers.
    let csv = world.dir.join("lms-request.csv");
    std::fs::write(
        &csv,
        "username\nlms.admin.user1@example.org\nNo.Such.User\nnobody@example.org\n",
    )
    .unwrap();
    let (code, out, err) = retire(&["request", "--csv", csv.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(out.trim(), "queued 1, not queued 2");
    assert!(err.contains("line 3: the LMS did not queue it"), "{err}");
    assert!(
        err.contains("line 4: no active LMS account has that email"),
        "{err}"
    );
    assert!(
        !err.contains("No.Such.User") && !err.contains("nobody@"),
        "{err}"
    );

    // status by email and by LMS user id, through the staff account lookup.
    let (code, by_email, err) = retire(&["status", "--email", "lms.admin.user0@example.org"]);
    assert_eq!(code, Some(0), "{by_email}{err}");
    assert!(by_email.contains("state:            PENDING"), "{by_email}");
    assert!(!by_email.contains("lms.admin.user0"), "{by_email}");
    let (code, by_id, err) = retire(&["status", "--user-id", "9101"]);
    assert_eq!(code, Some(0), "{by_id}{err}");
    assert!(by_id.contains("LMS user id:      9101"), "{by_id}");

    // cancel by email: the lookup, then cancel_retirement.
    let (code, out, err) = retire(&["cancel", "lms.admin.user0@example.org"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("Successfully cancelled retirement request"),
        "{out}"
    );
    assert!(
        world
            .store
            .find_by_email("lms.admin.user0@example.org")
            .await
            .is_err()
    );

    // A worker the LMS refuses: the error names the permission it lacks.
    world.fake.set_fault(
        "/api/user/v1/accounts/cancel_retirement/",
        Some(Fault {
            status: Some(403),
            ..Fault::default()
        }),
    );
    let (code, _, err) = retire(&["cancel", "lms.admin.user1@example.org"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("user_api.change_userretirementstatus"),
        "{err}"
    );
    assert!(!err.contains("lms.admin.user1"), "{err}");
}

use retirement_store::RetirementStore as _;

#[tokio::test(flavor = "multi_thread")]
async fn the_standalone_store_queues_a_learner_by_email_alone() {
    let world = World::new("by-email").await;
    let out = world.retire(&["request", "--email", "Only.Email@Example.org"]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.trim(), "queued 1, already queued 0");
    let r = world
        .store
        .find_by_email("only.email@example.org")
        .await
        .unwrap();
    // The email stands for the username, so every stage has one to send.
    assert_eq!(r.original().username, "Only.Email@Example.org");
    let status = world.retire(&["status", "--email", "only.email@example.org"]);
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    assert!(
        status.stdout.contains("state:            PENDING"),
        "{}",
        status.stdout
    );
    assert!(!status.stdout.contains("Only.Email"), "{}", status.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_lists_every_open_request_with_its_statutory_deadline() {
    let mut world = World::new("report").await;
    let learners = world.seed(3).await;
    let check = |world: &World, regime: retirement_core::Regime| {
        let out = world.retire(&["report", "--format", "csv"]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let mut lines = out.stdout.lines();
        assert_eq!(
            lines.next(),
            Some("retirement_id,retired_username,state,received,due,days_left,regime")
        );
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 3, "{}", out.stdout);
        for row in &rows {
            assert_eq!(row[2], "PENDING");
            let received = chrono::DateTime::parse_from_rfc3339(row[3])
                .unwrap()
                .to_utc();
            let due = chrono::DateTime::parse_from_rfc3339(row[4])
                .unwrap()
                .to_utc();
            assert_eq!(due, regime.due(received, 0));
            let left = (due.date_naive() - chrono::Utc::now().date_naive()).num_days();
            assert_eq!(row[5].parse::<i64>().unwrap(), left);
        }
        for l in &learners {
            assert!(!out.stdout.contains(&l.username) && !out.stdout.contains(&l.email));
        }
        out.stdout
    };
    check(&world, retirement_core::Regime::Gdpr);
    // CCPA's 45 days, by config; `status` shows the same due date.
    let config = std::fs::read_to_string(&world.config).unwrap();
    std::fs::write(
        &world.config,
        format!("{config}deadlines:\n  regime: ccpa\n"),
    )
    .unwrap();
    let report = check(&world, retirement_core::Regime::Ccpa);
    let due_day = &report.lines().nth(1).unwrap().split(',').nth(4).unwrap()[..10];
    let status = world.retire(&["status", &learners[0].username]);
    assert!(
        status
            .stdout
            .contains(&format!("due:              {due_day}")),
        "{}",
        status.stdout
    );
    // A bad regime is a config error naming the key.
    std::fs::write(
        &world.config,
        format!("{config}deadlines:\n  regime: a month\n"),
    )
    .unwrap();
    let out = world.retire(&["report"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("deadlines.regime"), "{}", out.stderr);
}
