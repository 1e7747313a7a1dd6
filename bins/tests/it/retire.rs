//! End-to-end tests of `retire`: the built binary against the fake edX on 127.0.0.1 and a
//! temporary SQLite store (PostgreSQL for the two-worker test).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bins::sandbox::{Sandbox, SandboxOptions};
use chrono::{TimeDelta, Utc};
use retirement_core::{OriginalIdentity, RetiredIdConfig};
use retirement_http::fake::{FakeEdx, Fault};
use retirement_store::RetirementStore;
use retirement_store::testdb::TestDatabase;

pub(crate) const SALT: &str = bins::sandbox::SALT;

/// The six-stage example's step paths, in stage order (one list, from the catalog).
static STEP_PATHS: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(retirement_http::fake::six_stage_step_paths);

pub(crate) struct Output {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) code: Option<i32>,
}

/// The shared sandbox (fake edX, store, learners) and its config file, pointing at both.
pub(crate) struct World {
    sandbox: Sandbox,
    pub(crate) config: PathBuf,
    server_db: Option<TestDatabase>,
}

impl std::ops::Deref for World {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

/// tubular's config file, unchanged in shape, plus `extra` (the sandbox's, at `base_url`).
pub(crate) fn tubular_yaml(world: &World, extra: &str) -> String {
    world.sandbox.config_yaml(extra)
}

impl World {
    pub(crate) async fn new(name: &str) -> World {
        World::with_store(name, None).await
    }

    /// With `server`, the store is a fresh database on that PostgreSQL/MySQL server.
    pub(crate) async fn with_store(name: &str, server: Option<&str>) -> World {
        let server_db = match server {
            Some(admin) => Some(
                TestDatabase::create(admin)
                    .await
                    .expect("the test server is reachable"),
            ),
            None => None,
        };
        let sandbox = Sandbox::new(SandboxOptions {
            store_url: server_db.as_ref().map(|db| db.url.clone()),
            prefix: "Seeded".into(),
            ..SandboxOptions::new(&format!("it-{name}"))
        })
        .await
        .unwrap();
        let config = sandbox.write_config(&sandbox.url, "").unwrap();
        World {
            sandbox,
            config,
            server_db,
        }
    }

    /// Queues `n` learners requested 30 days ago; returns their originals.
    pub(crate) async fn seed(&mut self, n: usize) -> Vec<OriginalIdentity> {
        self.sandbox.seed(n).await.unwrap()
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_retire"));
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .current_dir(&self.dir)
            .env_remove("RETIREMENT_STORE")
            .env_remove("RETIREMENT_CONFIG_FILE")
            .env("USER", "it-operator")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs `retire ARGS --config FILE` to its end (blocking: the fake runs on other threads).
    pub(crate) fn retire(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("retire runs");
        Output {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code(),
        }
    }

    pub(crate) async fn state_of(&self, username: &str) -> String {
        self.store
            .find_by_username(username)
            .await
            .unwrap()
            .current_state()
            .to_owned()
    }

    /// Step calls per (username, path).
    pub(crate) fn step_calls(&self) -> HashMap<(String, String), usize> {
        let mut counts = HashMap::new();
        for call in self.fake.calls() {
            if let Some(user) = call.body.get("username").and_then(|u| u.as_str()) {
                *counts
                    .entry((user.to_owned(), call.path.clone()))
                    .or_default() += 1;
            }
        }
        counts
    }

    pub(crate) async fn finish(self) {
        let World {
            sandbox, server_db, ..
        } = self;
        sandbox.finish(false);
        if let Some(db) = server_db {
            db.drop_database().await;
        }
    }
}

fn slow_steps(fake: &FakeEdx, latency: Duration) {
    for path in STEP_PATHS.iter() {
        fake.set_fault(
            path,
            Some(Fault {
                latency,
                ..Fault::default()
            }),
        );
    }
}

fn wait_for(child: Child) -> Output {
    let out = child.wait_with_output().unwrap();
    Output {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_retires_everyone_through_every_stage() {
    let mut world = World::new("success").await;
    let learners = world.seed(20).await;
    let out = world.retire(&["run", "--concurrency", "4"]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("claimed 20: completed 20, errored 0"),
        "{}",
        out.stdout
    );
    for l in &learners {
        assert_eq!(world.state_of(&l.username).await, "COMPLETE");
    }
    let calls = world.step_calls();
    for l in &learners {
        for path in STEP_PATHS.iter() {
            assert_eq!(
                calls.get(&(l.username.clone(), path.to_owned())),
                Some(&1),
                "{path}"
            );
        }
    }
    assert!(world.fake.overlaps().is_empty());
    // A second run finds nothing to do.
    let again = world.retire(&["run"]);
    assert_eq!(again.code, Some(0));
    assert!(again.stdout.starts_with("claimed 0:"), "{}", again.stdout);
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_stage_errors_the_learner_and_reset_resumes_it_at_that_stage() {
    let mut world = World::new("errored").await;
    let learners = world.seed(3).await;
    world.fake.set_fault(
        &STEP_PATHS[2],
        Some(Fault {
            status: Some(400),
            body: Some("enrollment service refuses: course locked".into()),
            ..Fault::default()
        }),
    );
    let out = world.retire(&["run"]);
    assert_eq!(out.code, Some(4), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("errored 3"), "{}", out.stdout);
    let first = &learners[0];
    assert_eq!(world.state_of(&first.username).await, "ERRORED");
    // The log holds the failing response, body included.
    let status = world.retire(&["status", &first.username]);
    assert_eq!(status.code, Some(0));
    assert!(
        status
            .stdout
            .contains("400 Client Error: Bad Request for LMS retirement_unenroll (1 attempt):"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("enrollment service refuses: course locked"),
        "{}",
        status.stdout
    );

    // Fix the cause, reset to the state before the failed step, run again.
    world.fake.set_fault(&STEP_PATHS[2], None);
    let reset = world.retire(&[
        "reset",
        &first.username,
        "--to",
        "ECOM_COMPLETE",
        "--reason",
        "enrollment lock lifted",
    ]);
    assert_eq!(reset.code, Some(0), "{}", reset.stderr);
    assert!(
        reset.stdout.contains("ERRORED -> ECOM_COMPLETE"),
        "{}",
        reset.stdout
    );
    assert!(
        reset.stdout.contains("resumes it at RETIRING_ENROLLMENTS"),
        "{}",
        reset.stdout
    );
    let before = world.step_calls();
    let out = world.retire(&["run"]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("claimed 1: completed 1"),
        "{}",
        out.stdout
    );
    assert_eq!(world.state_of(&first.username).await, "COMPLETE");
    let after = world.step_calls();
    let delta = |path: &str| {
        let key = (first.username.clone(), path.to_owned());
        after.get(&key).copied().unwrap_or(0) - before.get(&key).copied().unwrap_or(0)
    };
    // Forums and ecommerce were done: not called again. Enrollments onwards ran once.
    assert_eq!(delta(&STEP_PATHS[0]), 0);
    assert_eq!(delta(&STEP_PATHS[1]), 0);
    for path in &STEP_PATHS[2..] {
        assert_eq!(delta(path), 1, "{path}");
    }
    // The reset is audited in the log.
    let log = world.store.find_by_username(&first.username).await.unwrap();
    assert!(
        log.log()
            .iter()
            .any(|e| e.actor.to_string() == "operator:it-operator"
                && e.text.contains("enrollment lock lifted"))
    );
    // The other two are still ERRORED (the run does not touch them).
    assert_eq!(world.state_of(&learners[1].username).await, "ERRORED");
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_moves_complete_learners_back_and_every_step_runs_again() {
    let mut world = World::new("rerun").await;
    let learners = world.seed(4).await;
    assert_eq!(world.retire(&["run"]).code, Some(0));
    let start = (Utc::now() - TimeDelta::days(31)).date_naive().to_string();
    let dry = world.retire(&[
        "rerun",
        "--state",
        "COMPLETE",
        "--start-date",
        &start,
        "--to",
        "PENDING",
        "--reason",
        "stage added",
        "--dry-run",
    ]);
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    assert!(
        dry.stdout.starts_with("4 learner(s) in COMPLETE"),
        "{}",
        dry.stdout
    );
    assert_eq!(world.state_of(&learners[0].username).await, "COMPLETE");
    let moved = world.retire(&[
        "rerun",
        "--initial_state",
        "COMPLETE",
        "--start_date",
        &start,
        "--new_state",
        "PENDING",
        "--reason",
        "stage added",
    ]);
    assert_eq!(moved.code, Some(0), "{}", moved.stderr);
    assert!(
        moved.stdout.contains("4 learner(s) moved"),
        "{}",
        moved.stdout
    );
    assert_eq!(world.state_of(&learners[0].username).await, "PENDING");
    assert_eq!(world.retire(&["run"]).code, Some(0));
    let calls = world.step_calls();
    for l in &learners {
        assert_eq!(world.state_of(&l.username).await, "COMPLETE");
        for path in STEP_PATHS.iter() {
            assert_eq!(calls.get(&(l.username.clone(), path.to_owned())), Some(&2));
        }
    }
    // Exactly one of --to / --rewind is required.
    let neither = world.retire(&[
        "rerun",
        "--state",
        "COMPLETE",
        "--start-date",
        &start,
        "--reason",
        "x",
    ]);
    assert_eq!(neither.code, Some(2));
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_only_from_pending_with_upstreams_messages() {
    let mut world = World::new("cancel").await;
    let learners = world.seed(2).await;
    let missing = world.retire(&["cancel", "nobody@example.org"]);
    assert_eq!(missing.code, Some(1));
    assert_eq!(
        missing.stderr.trim(),
        "retire: No retirement request with that email address exists."
    );
    // Move the second learner on, then try to cancel it.
    let reset = world.retire(&[
        "reset",
        &learners[1].username,
        "--to",
        "FORUMS_COMPLETE",
        "--reason",
        "test",
    ]);
    assert_eq!(reset.code, Some(0), "{}", reset.stderr);
    let refused = world.retire(&["cancel", &learners[1].email.to_uppercase()]);
    assert_eq!(refused.code, Some(1));
    assert!(
        refused
            .stderr
            .contains("Retirement requests can only be cancelled for users in the PENDING state."),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("FORUMS_COMPLETE"),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stderr.contains(&learners[1].email),
        "no PII in the refusal"
    );
    let ok = world.retire(&["cancel", &learners[0].email]);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(
        ok.stdout
            .starts_with("Successfully cancelled retirement request"),
        "{}",
        ok.stdout
    );
    assert!(
        world
            .store
            .find_by_username(&learners[0].username)
            .await
            .is_err()
    );
    world.finish().await;
}

fn read_gz_lines(path: &Path) -> Vec<serde_json::Value> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_archives_without_pii_then_removes_every_trace() {
    let mut world = World::new("cleanup").await;
    let learners = world.seed(5).await;
    assert_eq!(world.retire(&["run"]).code, Some(0));
    let dry = world.retire(&["cleanup", "--cool-off-days", "0", "--dry-run"]);
    assert!(
        dry.stdout.starts_with("5 COMPLETE learner(s)"),
        "{}",
        dry.stdout
    );
    let archive = world.dir.join("archive.json.gz");
    let out = world.retire(&[
        "cleanup",
        "--cool-off-days",
        "0",
        "--batch-size",
        "2",
        "--archive",
        archive.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("archived and deleted 5 learner(s) in 3 batch(es)"),
        "{}",
        out.stdout
    );
    let lines = read_gz_lines(&archive);
    assert_eq!(lines.len(), 5);
    let ids = RetiredIdConfig::new(vec![SALT.into()]).unwrap();
    let archived: HashSet<&str> = lines
        .iter()
        .map(|l| l["retired_username"].as_str().unwrap())
        .collect();
    for l in &learners {
        assert!(archived.contains(ids.retired_username(&l.username).as_str()));
    }
    let text = std::fs::read(&archive).unwrap();
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&text[..])
        .read_to_string(&mut plain)
        .unwrap();
    for l in &learners {
        for pii in [&l.username, &l.email, &l.name] {
            assert!(
                !plain.contains(pii.as_str()),
                "the archive holds no original PII"
            );
            assert!(
                world
                    .store
                    .text_columns_containing(std::slice::from_ref(pii))
                    .await
                    .unwrap()
                    .is_empty(),
                "no table holds {pii}"
            );
        }
    }
    assert!(lines[0].get("original_email").is_none());
    assert_eq!(
        lines[0]["retirement_request_date"].as_str().unwrap().len(),
        26,
        "Athena timestamps"
    );
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_with_include_pii_keeps_originals_in_the_archive_only() {
    let mut world = World::new("cleanup-pii").await;
    let learners = world.seed(1).await;
    assert_eq!(world.retire(&["run"]).code, Some(0));
    let archive = world.dir.join("pii.json.gz");
    let out = world.retire(&[
        "cleanup",
        "--cool-off-days",
        "0",
        "--include-pii",
        "--archive",
        archive.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines = read_gz_lines(&archive);
    assert_eq!(lines[0]["original_email"], learners[0].email.as_str());
    assert!(
        world
            .store
            .text_columns_containing(std::slice::from_ref(&learners[0].email))
            .await
            .unwrap()
            .is_empty()
    );
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tubular_config_file_works_unchanged_with_retire_learner() {
    let mut world = World::new("tubular").await;
    let learners = world.seed(2).await;
    // tubular's file: its keys only, other scripts' keys included; the store comes from the
    // environment, as click's RETIREMENT_ prefix allowed.
    let tubular = world.dir.join("tubular.yml");
    let mut yaml = tubular_yaml(&world, "");
    yaml.push_str("fetch_ecommerce_segment_id: false\ns3_archive:\n  bucket_name: archive\norg_partner_mapping:\n  edX: [edX]\n");
    std::fs::write(&tubular, yaml).unwrap();
    let run = |username: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_retire"))
            .args(["learner", "--config_file"])
            .arg(&tubular)
            .env("RETIREMENT_STORE", &world.url)
            .env("RETIREMENT_USERNAME", username)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&learners[0].username);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("Retirement complete for learner"));
    assert!(
        !stderr.contains("unknown config keys"),
        "tubular's keys are known: {stderr}"
    );
    assert_eq!(world.state_of(&learners[0].username).await, "COMPLETE");
    // tubular's exit statuses: already at an end state → -2 (254); not found → -5 (251).
    assert_eq!(run(&learners[0].username).0, Some(254));
    assert_eq!(run("no.such.learner").0, Some(251));
    // A learner in a working state is refused → -3 (253).
    world
        .store
        .force(
            world
                .store
                .find_by_username(&learners[1].username)
                .await
                .unwrap()
                .id(),
            "RETIRING_NOTES",
            &retirement_core::Override {
                operator: "it".into(),
                reason: "test".into(),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(run(&learners[1].username).0, Some(253));
    // No config: -7 (249).
    let none = Command::new(env!("CARGO_BIN_EXE_retire"))
        .args(["learner", "x"])
        .env_remove("RETIREMENT_CONFIG_FILE")
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(249));
    assert_eq!(
        String::from_utf8_lossy(&none.stderr).trim(),
        "No config file passed in."
    );
    world.finish().await;
}

/// `retire run --config FILE`, with no RETIREMENT_ variables from the environment.
fn run_with_config(config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_retire"))
        .args(["run", "--config"])
        .arg(config)
        .env_remove("RETIREMENT_STORE")
        .env_remove("RETIREMENT_CONFIG_FILE")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_name_the_key_and_the_file_and_change_nothing() {
    let mut world = World::new("config").await;
    let learners = world.seed(1).await;
    let bad = world.dir.join("bad.yml");
    std::fs::write(
        &bad,
        tubular_yaml(
            &world,
            &format!("store: {}\nconcurrency: lots\n", world.url),
        ),
    )
    .unwrap();
    let out = run_with_config(&bad);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config error in")
            && stderr.contains("bad.yml")
            && stderr.contains("key concurrency"),
        "{stderr}"
    );
    assert_eq!(world.state_of(&learners[0].username).await, "PENDING");
    // An unknown key is reported, and the run goes on.
    std::fs::write(
        &bad,
        tubular_yaml(&world, &format!("store: {}\nconcurency: 3\n", world.url)),
    )
    .unwrap();
    let out = run_with_config(&bad);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown config keys ignored"));
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_then_run_again_completes_everyone_with_no_step_skipped() {
    let mut world = World::new("sigterm").await;
    let learners = world.seed(60).await;
    slow_steps(&world.fake, Duration::from_millis(30));
    let child = world
        .command(&["run", "--concurrency", "8"])
        .spawn()
        .unwrap();
    // Signal once the run is well under way (a condition, polled; not a fixed sleep).
    let started = std::time::Instant::now();
    while world.fake.calls().len() < 40 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never got going"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let first = wait_for(child);
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains("(stopped by a signal)"),
        "{}",
        first.stdout
    );
    let done_first = {
        let mut n = 0;
        for l in &learners {
            if world.state_of(&l.username).await == "COMPLETE" {
                n += 1;
            }
        }
        n
    };
    assert!(
        done_first < learners.len(),
        "the signal stopped the run early"
    );
    // No learner is left holding a lease: the next run takes everyone at once.
    let second = world.retire(&["run", "--concurrency", "8"]);
    assert_eq!(second.code, Some(0), "{}\n{}", second.stdout, second.stderr);
    let calls = world.step_calls();
    for l in &learners {
        assert_eq!(world.state_of(&l.username).await, "COMPLETE");
        for path in STEP_PATHS.iter() {
            assert!(
                calls
                    .get(&(l.username.clone(), path.to_owned()))
                    .copied()
                    .unwrap_or(0)
                    >= 1,
                "{} skipped {path}",
                l.username
            );
        }
    }
    assert!(world.fake.overlaps().is_empty());
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_postgres_store_never_overlap() {
    let Some(admin) = crate::server_url("RETIREMENT_TEST_POSTGRES_URL") else {
        return;
    };
    let mut world = World::with_store("pg-workers", Some(&admin)).await;
    let learners = world.seed(500).await;
    slow_steps(&world.fake, Duration::from_millis(2));
    let a = world
        .command(&["run", "--concurrency", "16", "--worker-id", "a"])
        .spawn()
        .unwrap();
    let b = world
        .command(&["run", "--concurrency", "16", "--worker-id", "b"])
        .spawn()
        .unwrap();
    let (a, b) = (wait_for(a), wait_for(b));
    assert_eq!(a.code, Some(0), "{}\n{}", a.stdout, a.stderr);
    assert_eq!(b.code, Some(0), "{}\n{}", b.stdout, b.stderr);
    let claimed = |o: &Output| -> u64 {
        o.stdout
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.trim_end_matches(':').parse().ok())
            .unwrap()
    };
    assert_eq!(
        claimed(&a) + claimed(&b),
        500,
        "each learner claimed once:\n{}\n{}",
        a.stdout,
        b.stdout
    );
    assert!(claimed(&a) > 0 && claimed(&b) > 0, "both workers took part");
    assert!(
        world.fake.overlaps().is_empty(),
        "overlapping calls: {:?}",
        world.fake.overlaps()
    );
    let calls = world.step_calls();
    for l in &learners {
        assert_eq!(world.state_of(&l.username).await, "COMPLETE");
        for path in STEP_PATHS.iter() {
            assert_eq!(calls.get(&(l.username.clone(), path.to_owned())), Some(&1));
        }
    }
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_on_one_lms_share_a_lease_store_and_never_share_a_learner() {
    let mut world = World::new("lease-store").await;
    let learners = world.seed(120).await;
    slow_steps(&world.fake, Duration::from_millis(2));
    let leases = format!("sqlite://{}", world.dir.join("leases.db").display());
    std::fs::write(
        &world.config,
        tubular_yaml(&world, &format!("store: lms\nlease_store: {leases}\n")),
    )
    .unwrap();
    // The lease table is created by `db migrate`, and `run` refuses to start before it.
    let early = world.retire(&["run"]);
    assert_eq!(early.code, Some(1), "{}", early.stderr);
    assert!(
        early.stderr.contains("retire db migrate"),
        "{}",
        early.stderr
    );
    let migrated = world.retire(&["db", "migrate"]);
    assert_eq!(migrated.code, Some(0), "{}", migrated.stderr);
    assert!(migrated.stdout.contains("applied"), "{}", migrated.stdout);
    let a = world
        .command(&[
            "run",
            "--concurrency",
            "8",
            "--worker-id",
            "host-a",
            "--json",
        ])
        .spawn()
        .unwrap();
    let b = world
        .command(&[
            "run",
            "--concurrency",
            "8",
            "--worker-id",
            "host-b",
            "--json",
        ])
        .spawn()
        .unwrap();
    let (a, b) = (wait_for(a), wait_for(b));
    assert_eq!(a.code, Some(0), "{}\n{}", a.stdout, a.stderr);
    assert_eq!(b.code, Some(0), "{}\n{}", b.stdout, b.stderr);
    let field = |o: &Output, name: &str| -> u64 {
        serde_json::from_str::<serde_json::Value>(o.stdout.trim()).unwrap()[name]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        field(&a, "claimed") + field(&b, "claimed"),
        120,
        "{}\n{}\n{}\n{}",
        a.stdout,
        a.stderr,
        b.stdout,
        b.stderr
    );
    assert_eq!(field(&a, "lease_lost") + field(&b, "lease_lost"), 0);
    assert!(world.fake.overlaps().is_empty());
    // Every step call names its worker; each learner had one.
    let mut drivers: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    for call in world.fake.calls() {
        if let (Some(user), Some(agent)) = (
            call.body.get("username").and_then(|u| u.as_str()),
            call.user_agent.as_deref(),
        ) && STEP_PATHS.contains(&call.path)
        {
            assert!(
                agent.contains("(host-a)") || agent.contains("(host-b)"),
                "{agent}"
            );
            drivers
                .entry(user.to_owned())
                .or_default()
                .insert(agent.to_owned());
        }
    }
    for l in &learners {
        assert_eq!(world.state_of(&l.username).await, "COMPLETE");
        assert_eq!(drivers[&l.username].len(), 1, "{:?}", drivers[&l.username]);
    }
    // The LMS refused no write: no listing older than another host's write was acted on.
    assert!(
        !world
            .fake
            .status_api_answers()
            .iter()
            .any(|(_, status)| *status == 400)
    );
    // A SQL store keeps its own leases: a lease_store beside it is a config error.
    std::fs::write(
        &world.config,
        tubular_yaml(
            &world,
            &format!("store: {}\nlease_store: {leases}\n", world.url),
        ),
    )
    .unwrap();
    let refused = world.retire(&["run"]);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("lease_store") && refused.stderr.contains("store: lms"),
        "{}",
        refused.stderr
    );
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_of_a_200_learner_run_holds_personal_data() {
    let mut world = World::new("privacy").await;
    let learners = world.seed(200).await;
    // Some failures too, so error paths log as well.
    world.fake.set_fault(
        &STEP_PATHS[3],
        Some(Fault {
            status: Some(500),
            rate: 0.1,
            ..Fault::default()
        }),
    );
    let yaml = std::fs::read_to_string(&world.config).unwrap();
    std::fs::write(
        &world.config,
        format!("{yaml}retry:\n  budget_seconds: 0.5\n  initial_backoff_seconds: 0.05\n"),
    )
    .unwrap();
    let mut outputs = Vec::new();
    for format in ["text", "json"] {
        let out = world.retire(&[
            "run",
            "--concurrency",
            "16",
            "--log-format",
            format,
            "--log-level",
            "trace",
        ]);
        assert!(matches!(out.code, Some(0) | Some(4)), "{}", out.stderr);
        outputs.push(out);
    }
    let queue = world.retire(&["queue"]);
    outputs.push(queue);
    let mut lines = 0;
    for out in &outputs {
        for line in out.stdout.lines().chain(out.stderr.lines()) {
            lines += 1;
            for l in &learners {
                for pii in [&l.username, &l.email, &l.name] {
                    assert!(!line.contains(pii.as_str()), "PII in a log line: {line}");
                }
            }
        }
    }
    assert!(lines > 200, "trace logging produced {lines} lines");
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_output_and_help_texts() {
    let mut world = World::new("status").await;
    let learners = world.seed(1).await;
    world.fake.set_fault(
        &STEP_PATHS[4],
        Some(Fault {
            status: Some(422),
            body: Some("misc service refuses this learner".into()),
            ..Fault::default()
        }),
    );
    let yaml = std::fs::read_to_string(&world.config).unwrap();
    std::fs::write(
        &world.config,
        format!("{yaml}retry:\n  budget_seconds: 0.2\n  initial_backoff_seconds: 0.05\n"),
    )
    .unwrap();
    assert_eq!(world.retire(&["run"]).code, Some(4));
    let status = world.retire(&["status", &learners[0].username]);
    assert_eq!(status.code, Some(0));
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}( UTC)?", "[time]");
    settings.add_filter(r"\(\d+ attempts\)", "(N attempts)");
    // The due date and days left follow today's date.
    settings.add_filter(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "[due]");
    settings.add_filter(
        r"\((\d+ days? left|\d+ days overdue|due today|overdue today)\)",
        "([days])",
    );
    settings.bind(|| insta::assert_snapshot!("retire_status", status.stdout));

    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_retire"))
            .args(args)
            .env_remove("RETIREMENT_CONFIG_FILE")
            .env_remove("RETIREMENT_LOG_FORMAT")
            .env_remove("RETIREMENT_LOG_LEVEL")
            .env_remove("RETIREMENT_CONCURRENCY")
            .env_remove("RETIREMENT_COOL_OFF_DAYS")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).unwrap()
    };
    insta::assert_snapshot!("retire_help", help(&["--help"]));
    insta::assert_snapshot!("retire_run_help", help(&["run", "--help"]));
    insta::assert_snapshot!("retire_learner_help", help(&["learner", "--help"]));
    insta::assert_snapshot!("retire_cleanup_help", help(&["cleanup", "--help"]));
    world.finish().await;
}

/// Issue 13: an endpoint that answers nobody is an outage, not every learner's failure. The
/// run parks the learners that reach it, ends after the patience with the endpoint named and
/// exit status 5, and a run after the endpoint is back completes everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_defers_learners_instead_of_erroring_them() {
    let mut world = World::new("outage").await;
    let learners = world.seed(12).await;
    std::fs::write(
        &world.config,
        tubular_yaml(&world,
            &format!(
                "store: {}\nretry:\n  initial_backoff_seconds: 0.05\n  budget_seconds: 1\noutage:\n  first_probe_after_seconds: 0.2\n  patience_seconds: 2\n",
                world.url
            ),
        ),
    )
    .unwrap();
    world.fake.set_fault(
        &STEP_PATHS[1],
        Some(Fault {
            status: Some(503),
            ..Fault::default()
        }),
    );
    let down = world.retire(&["run", "--concurrency", "4"]);
    assert_eq!(down.code, Some(5), "{}\n{}", down.stdout, down.stderr);
    assert!(down.stdout.contains("errored 0"), "{}", down.stdout);
    assert!(
        down.stdout.contains("DOWN: ECOMMERCE retire_learner"),
        "{}",
        down.stdout
    );
    for l in &learners {
        let state = world.state_of(&l.username).await;
        assert!(
            ["PENDING", "FORUMS_COMPLETE", "RETIRING_ECOM"].contains(&state.as_str()),
            "{state}"
        );
    }
    // The endpoint is back: the next run completes everyone, each step once more at most.
    world.fake.set_fault(&STEP_PATHS[1], None);
    let back = world.retire(&["run", "--concurrency", "4"]);
    assert_eq!(back.code, Some(0), "{}\n{}", back.stdout, back.stderr);
    for l in &learners {
        assert_eq!(world.state_of(&l.username).await, "COMPLETE");
    }
    assert!(world.fake.overlaps().is_empty());
    world.finish().await;
}
