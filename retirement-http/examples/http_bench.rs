//! `cargo xtask bench http [--calls N] [--concurrency N]`: drives step calls through
//! `ServiceClients` against the fake edX on loopback (no added latency) and prints calls per
//! second and the client's CPU seconds per 1,000 calls.
//!
//! The fake and the clients run on separate tokio runtimes whose threads are named, so the
//! client's CPU time is read per thread from /proc and excludes the fake's work.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use retirement_http::fake::{FakeConfig, FakeEdx};
use retirement_http::{CallOutcome, ClientCredentials, HttpOptions, LearnerRef, ServiceClients};

const CLIENT_THREAD: &str = "bench-client";

/// CPU seconds (user + system) of this process's threads whose name starts with `prefix`.
fn thread_cpu_seconds(prefix: &str) -> Option<f64> {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !name.trim_end().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // Fields after the parenthesised name: state is 3rd; utime and stime are 14th and 15th.
        let after = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        ticks += fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    }
    // USER_HZ is 100 on Linux.
    Some(ticks as f64 / 100.0)
}

fn main() {
    let mut calls: u64 = 100_000;
    let mut concurrency: usize = 64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--calls", Some(v)) => calls = v,
            ("--concurrency", Some(v)) => concurrency = v.max(1) as usize,
            _ => {
                eprintln!("usage: http_bench [--calls N] [--concurrency N]");
                std::process::exit(2);
            }
        }
    }
    let fake_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-fake")
        .enable_all()
        .build()
        .expect("a runtime for the fake");
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()
        .expect("a runtime for the clients");
    let fake = fake_runtime
        .block_on(FakeEdx::start(FakeConfig::default()))
        .expect("the fake edX starts");
    let base = fake.base_url();
    let outcome = client_runtime.block_on(async move {
        let base_urls = [("lms".to_string(), base)].into_iter().collect();
        let options = HttpOptions {
            max_concurrent_per_service: concurrency,
            ..HttpOptions::default()
        };
        let credentials = ClientCredentials {
            client_id: "retirement-worker".into(),
            client_secret: "s3cret".into(),
        };
        let clients = Arc::new(
            ServiceClients::new(base_urls, credentials, Vec::new(), &options).expect("clients"),
        );
        let next = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let cpu_before = thread_cpu_seconds(CLIENT_THREAD).unwrap_or(0.0);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (clients, next, failures) = (clients.clone(), next.clone(), failures.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= calls {
                        return;
                    }
                    let username = format!("learner{n}");
                    let learner = LearnerRef {
                        original_username: &username,
                        lms_user_id: Some(n as i64),
                        retired_username: "retired__user_bench",
                        original_email: "bench@example.com",
                        retired_email: "retired__user_bench@retired.invalid",
                    };
                    match clients.call("LMS", "retirement_lms_retire", &learner).await {
                        Ok(CallOutcome::Response { status: 204, .. }) => {}
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("a bench task");
        }
        let wall = started.elapsed();
        let cpu = thread_cpu_seconds(CLIENT_THREAD).unwrap_or(0.0) - cpu_before;
        (wall, cpu, failures.load(Ordering::Relaxed))
    });
    let (wall, cpu, failures) = outcome;
    println!("calls              {calls} (concurrency {concurrency}, 0 ms added latency)");
    println!("failed calls       {failures}");
    println!("wall time          {:.2} s", wall.as_secs_f64());
    println!(
        "calls per second   {:.0}",
        calls as f64 / wall.as_secs_f64()
    );
    println!(
        "client CPU         {cpu:.2} s ({:.3} s per 1,000 calls)",
        cpu / calls as f64 * 1000.0
    );
    drop(fake);
    if failures > 0 {
        std::process::exit(1);
    }
}
