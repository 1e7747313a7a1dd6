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
use std::time::Duration;

use bins::sandbox::{Sandbox, SandboxOptions};
use retirement_http::fake::Fault;
use retirement_store::testdb::TestDatabase;

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
        let database = match &server {
            Some(admin) => Some(
                TestDatabase::create(admin)
                    .await
                    .expect("the server is reachable"),
            ),
            None => None,
        };
        let mut sandbox = Sandbox::new(SandboxOptions {
            store_url: database.as_ref().map(|db| db.url.clone()),
            prefix: "Bench".into(),
            // As before the sandbox: no store read per step call in the fake unless the LMS
            // API is the store.
            serve_lms: lms,
            guard_steps: false,
            ..SandboxOptions::new(&format!("driver-bench-{concurrency}"))
        })
        .await
        .unwrap();
        sandbox.seed(queued).await.unwrap();
        let fake = &sandbox.fake;
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
        let store = if lms { "lms" } else { sandbox.url.as_str() };
        let config = sandbox
            .write_config(
                store,
                &format!("max_concurrent_per_service: {}\n", concurrency.max(16)),
            )
            .unwrap();
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
        sandbox.finish(false);
        if let Some(db) = database {
            db.drop_database().await;
        }
    }
}
