//! `cargo xtask bench driver [--learners N] [--queued N] [--latency-ms MS]
//! [--concurrency 1,8,32,128] [--server URL | --store lms]`: runs the real `retire run` binary
//! against the fake edX (MS added to every step call) over N learners (of `--queued`, default
//! N, enqueued) and the six-stage pipeline, once per concurrency, on a fresh store each time
//! (SQLite, a new database on the PostgreSQL/MySQL server of URL, or with `--store lms` the
//! fake LMS's status API, MS added to its calls too), and prints learners per second, requests
//! per learner, refused requests (LMS moves answered 400), the latency-bound limit
//! (concurrency ÷ (requests per learner × latency)) and the driver's CPU per learner.
//!
//! The fake runs in this process; the driver is a separate process, so its CPU time (read by
//! the driver from /proc at the end of the run) excludes the fake's work.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use retirement_core::{OriginalIdentity, RetiredIdConfig, SIX_STAGE_EXAMPLE, SIX_STAGE_STATES};
use retirement_http::fake::{FakeConfig, FakeEdx, Fault};
use retirement_store::testdb::TestDatabase;
use retirement_store::{DieselStore, NewRetirement, RetirementStore, StoreOptions};

/// The six-stage example's step paths, in stage order (one list, from the catalog).
static STEP_PATHS: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(retirement_http::fake::six_stage_step_paths);

/// The LMS status API paths that get the added latency with `--store lms`.
const STATUS_PATHS: [&str; 2] = [
    "/api/user/v1/accounts/update_retirement_status/",
    "/api/user/v1/accounts/retirement_queue/",
];

fn retire_binary() -> PathBuf {
    // target/release/examples/driver_bench → target/release/retire
    let exe = std::env::current_exe().expect("the bench knows where it is");
    exe.parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("retire"))
        .expect("the bench runs from target/<profile>/examples")
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut learners: usize = 2000;
    let mut latency_ms: u64 = 20;
    let mut levels: Vec<usize> = vec![1, 8, 32, 128];
    let mut server: Option<String> = None;
    let mut lms = false;
    let mut queued: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--learners" => learners = value.parse().expect("--learners N"),
            "--latency-ms" => latency_ms = value.parse().expect("--latency-ms MS"),
            "--concurrency" => {
                levels = value
                    .split(',')
                    .map(|c| c.trim().parse().expect("--concurrency 1,8,32"))
                    .collect()
            }
            "--server" => server = Some(value),
            "--queued" => queued = Some(value.parse().expect("--queued N")),
            "--store" => match value.as_str() {
                "lms" => lms = true,
                "sqlite" => lms = false,
                other => panic!("--store lms|sqlite, not {other}"),
            },
            other => panic!("unknown flag {other}"),
        }
    }
    let binary = retire_binary();
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build --release -p bins --bin retire`",
        binary.display()
    );
    let queued = queued.unwrap_or(learners).max(learners);
    println!(
        "driver bench: {learners} learners of {queued} queued, six stages, {latency_ms} ms added per call, {} store",
        match &server {
            _ if lms => "the fake LMS as the",
            Some(url) if url.starts_with("postgres") => "PostgreSQL",
            Some(_) => "MySQL",
            None => "SQLite",
        }
    );
    println!(
        "{:>11}  {:>10}  {:>12}  {:>7}  {:>13}  {:>8}  {:>14}  {:>7}",
        "concurrency",
        "learners/s",
        "requests/lnr",
        "refused",
        "latency limit",
        "of limit",
        "CPU ms/learner",
        "wall s"
    );
    for concurrency in levels {
        let dir =
            std::env::temp_dir().join(format!("driver-bench-{}-{concurrency}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let database = match &server {
            Some(admin) => Some(
                TestDatabase::create(admin)
                    .await
                    .expect("the server is reachable"),
            ),
            None => None,
        };
        let url = match &database {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", dir.join("bench.db").display()),
        };
        let store = Arc::new(
            DieselStore::open(&url, &StoreOptions::default())
                .await
                .unwrap(),
        );
        store.migrate().await.unwrap();
        let states: Vec<String> = SIX_STAGE_STATES.iter().map(|s| s.to_string()).collect();
        store.sync_states(&states, false).await.unwrap();
        let ids = RetiredIdConfig::new(vec!["bench".into()]).unwrap();
        for n in 0..queued {
            let original = OriginalIdentity {
                username: format!("bench_{n}"),
                email: format!("bench{n}@example.org"),
                name: String::new(),
            };
            store
                .enqueue(
                    NewRetirement::new(original, Some(n as i64 + 1), &ids),
                    Utc::now() - TimeDelta::days(30),
                )
                .await
                .unwrap();
        }
        let fake = FakeEdx::start(FakeConfig {
            lms_store: lms.then(|| store.clone()),
            ..FakeConfig::default()
        })
        .await
        .unwrap();
        let slow: &[&str] = if lms { &STATUS_PATHS } else { &[] };
        for path in STEP_PATHS
            .iter()
            .map(String::as_str)
            .chain(slow.iter().copied())
        {
            fake.set_fault(
                path,
                Some(Fault {
                    latency: Duration::from_millis(latency_ms),
                    ..Fault::default()
                }),
            );
        }
        let mut yaml = format!(
            "client_id: retirement-worker\nclient_secret: s3cret\nbase_urls:\n  lms: {0}/\n  ecommerce: {0}/\nstore: {1}\nmax_concurrent_per_service: {2}\nretirement_pipeline:\n",
            fake.base_url(),
            if lms { "lms" } else { url.as_str() },
            concurrency.max(16)
        );
        for [w, c, s, o] in SIX_STAGE_EXAMPLE {
            yaml.push_str(&format!("  - [{w}, {c}, {s}, {o}]\n"));
        }
        let config = dir.join("bench.yml");
        std::fs::write(&config, yaml).unwrap();
        let output = tokio::task::spawn_blocking({
            let binary = binary.clone();
            move || {
                Command::new(binary)
                    .args(["run", "--json", "--log-level", "warn", "--concurrency"])
                    .arg(concurrency.to_string())
                    .arg("--limit")
                    .arg(learners.to_string())
                    .arg("--config")
                    .arg(&config)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "retire run failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        let completed = summary["completed"].as_f64().unwrap();
        assert_eq!(completed as usize, learners, "every learner completes");
        assert!(fake.overlaps().is_empty());
        let seconds = summary["seconds"].as_f64().unwrap();
        let cpu = summary["cpu_seconds"].as_f64().unwrap_or(f64::NAN);
        let rate = completed / seconds;
        // Every request the fake answered (token requests aside): step calls, and with the
        // LMS as the store its status API too.
        let requests = fake.calls().len() as f64 / completed;
        let refused = fake
            .status_api_answers()
            .iter()
            .filter(|(path, status)| path == STATUS_PATHS[0] && *status == 400)
            .count();
        let limit = concurrency as f64 / (requests * latency_ms as f64 / 1000.0);
        println!(
            "{concurrency:>11}  {rate:>10.1}  {requests:>12.2}  {refused:>7}  {limit:>13.1}  {:>7.0}%  {:>14.3}  {seconds:>7.1}",
            100.0 * rate / limit,
            1000.0 * cpu / completed,
        );
        drop(fake);
        drop(store);
        if let Some(db) = database {
            db.drop_database().await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
