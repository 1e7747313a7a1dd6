//! `retire serve`, `retire demo --serve`, `retire extend`, `retire console hash-password`, and
//! the alerts and run records of `retire run` (issue 16).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use retirement_http::fake::Fault;
use retirement_http::fake::sinks::{SmtpSink, WebhookSink};
use retirement_store::{Journal, RetirementStore};

use crate::retire::World;

/// Signs in at `url` and returns a client holding the session cookie.
async fn sign_in(url: &str, name: &str, password: &str) -> (reqwest::Client, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = http
        .post(format!("{url}/login"))
        .form(&[("name", name), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let cookie = answer.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (http, cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serve_opens_the_demos_store_in_the_console_with_a_printed_sign_in() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_retire"))
        .args([
            "demo",
            "--learners",
            "20",
            "--serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut sign_in_line) = (None, None);
    let mut printed = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if let Some(u) = line.strip_prefix("console:") {
            url = Some(u.trim().to_owned());
        }
        if let Some(s) = line.strip_prefix("sign in as:") {
            sign_in_line = Some(s.trim().to_owned());
            break;
        }
    }
    let url = url.unwrap_or_else(|| panic!("no console address printed:\n{printed}"));
    let sign_in_line = sign_in_line.unwrap();
    let (name, password) = sign_in_line.split_once(" / ").unwrap();
    assert!(
        printed.contains("learners completed: 20 of 20"),
        "{printed}"
    );

    let (http, cookie) = sign_in(&url, name, password).await;
    let overview: serde_json::Value = http
        .get(format!("{url}/"))
        .header("cookie", &cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The demo's 20 COMPLETE learners and 40 queued requests in every kind of state.
    let by_state: std::collections::BTreeMap<String, u64> = overview["by_state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_u64().unwrap()))
        .collect();
    assert_eq!(by_state.values().sum::<u64>(), 60, "{overview}");
    assert!(by_state["COMPLETE"] >= 20);
    assert!(overview["errored"].as_u64().unwrap() > 0);
    assert!(overview["overdue"].as_u64().unwrap() > 0);
    assert_eq!(overview["runs"][0]["completed"], 20);
    // Wrong password: refused.
    let refused = http
        .post(format!("{url}/login"))
        .form(&[("name", name), ("password", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // SIGTERM stops it cleanly.
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_needs_a_way_to_sign_in_and_hash_password_makes_one() {
    let world = World::new("serve-config").await;
    let out = world.retire(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("console"), "{}", out.stderr);
    assert!(out.stderr.contains("nothing is served without a session"));

    let mut child = world
        .command(&["console", "hash-password"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long enough password\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("a long enough password"));

    // A console with that operator serves; its sign-in works.
    let config = std::fs::read_to_string(&world.config).unwrap();
    std::fs::write(
        &world.config,
        format!(
            "{config}console:\n  operators:\n    - name: ops.erin\n      password_hash: \"{hash}\"\n"
        ),
    )
    .unwrap();
    let mut server = world
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("retire console on ")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let (http, cookie) = sign_in(&url, "ops.erin", "a long enough password").await;
    let page = http
        .get(format!("{url}/learners"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(server.wait().unwrap().code(), Some(0));

    // A hash that is not one is a config error naming the key.
    std::fs::write(
        &world.config,
        format!("{config}console:\n  operators:\n    - name: x\n      password_hash: hunter2\n"),
    )
    .unwrap();
    let out = world.retire(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("console.operators"), "{}", out.stderr);
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_is_recorded_with_a_reason_and_limited_by_the_statute() {
    let mut world = World::new("extend").await;
    let learners = world.seed(2).await;
    let first = &learners[0];
    let out = world.retire(&[
        "extend",
        &first.username,
        "--reason",
        "a complex request: many services",
        "--operator",
        "dpo.frank",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("deadline extended"), "{}", out.stdout);
    assert!(!out.stdout.contains(&first.username));
    let r = world.store.find_by_username(&first.username).await.unwrap();
    let due = retirement_core::Regime::Gdpr.due(r.created(), 1);
    assert!(
        out.stdout
            .contains(&due.format("%Y-%m-%d %H:%M UTC").to_string()),
        "{}",
        out.stdout
    );
    let status = world.retire(&["status", &first.username]);
    assert!(
        status.stdout.contains(", extended once)"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("operator actions:"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("extend  [operator:dpo.frank]  a complex request: many services"),
        "{}",
        status.stdout
    );
    // The report and the queue carry the extended date.
    let report = world.retire(&["report"]);
    assert!(
        report.stdout.contains(&format!("{},", due.to_rfc3339())),
        "{}",
        report.stdout
    );
    // GDPR allows one extension.
    let again = world.retire(&["extend", &first.username, "--reason", "more"]);
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains("allows 1 extension"),
        "{}",
        again.stderr
    );
    assert_eq!(world.store.actions_of(r.id()).await.unwrap().len(), 1);
    // A blank reason is refused.
    let blank = world.retire(&["extend", &learners[1].username, "--reason", " "]);
    assert_eq!(blank.code, Some(1), "{}", blank.stderr);
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_run_records_itself_and_alerts_once_without_personal_data() {
    let mut world = World::new("alerts").await;
    let learners = world.seed(4).await;
    let hook = WebhookSink::start().await.unwrap();
    let smtp = SmtpSink::start().await.unwrap();
    let config = std::fs::read_to_string(&world.config).unwrap();
    let state = world.dir.join("alerts.json");
    std::fs::write(
        &world.config,
        format!(
            "{config}alerts:\n  webhook_url: {}\n  site: stage\n  state_file: {}\n  smtp:\n    host: 127.0.0.1\n    port: {}\n    security: none\n    from: retire@example.org\n    to: [privacy@example.org]\n",
            hook.url,
            state.display(),
            smtp.port
        ),
    )
    .unwrap();
    world.fake.set_fault(
        &retirement_http::fake::six_stage_step_paths()[1],
        Some(Fault {
            status: Some(400),
            body: Some("refused".into()),
            ..Fault::default()
        }),
    );
    let out = world.retire(&["run"]);
    assert_eq!(out.code, Some(4), "{}\n{}", out.stdout, out.stderr);
    // One message per kind to each sink: the four ERRORED learners in one, and the
    // statutory clock (the learners were requested 30 days ago: due about now).
    let posted = hook.received();
    let texts: Vec<&str> = posted.iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].starts_with("*[stage] retirement: errored*\n4 learner(s) went to ERRORED"),
        "{texts:?}"
    );
    assert!(texts[1].starts_with("*[stage] retirement: deadlines*\nStatutory deadlines: "));
    let mails = smtp.received();
    assert_eq!(mails.len(), 2);
    assert!(
        mails[0]
            .data
            .contains("Subject: [stage] retirement: errored")
    );
    for l in &learners {
        for text in texts
            .iter()
            .copied()
            .chain(mails.iter().map(|m| m.data.as_str()))
        {
            assert!(
                !text.contains(&l.username) && !text.contains(&l.email),
                "{text}"
            );
        }
    }
    // The run is in the journal.
    let runs = world.store.recent_runs(5).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, "errored");
    assert_eq!(runs[0].errored, 4);

    // A run refused by the threshold alerts once; the same refusal again does not, and the
    // deadline counts that changed wait out the rate limit.
    world.seed(2).await;
    for _ in 0..2 {
        let out = world.retire(&["run", "--user-count-error-threshold", "1"]);
        assert_eq!(out.code, Some(3), "{}", out.stderr);
    }
    let posted = hook.received();
    assert_eq!(posted.len(), 3, "{posted:?}");
    assert!(
        posted[2]["text"]
            .as_str()
            .unwrap()
            .contains("refused to start")
    );
    let runs = world.store.recent_runs(5).await.unwrap();
    assert_eq!(runs[0].outcome, "refused");
    assert_eq!(runs.len(), 3);
    world.finish().await;
}
