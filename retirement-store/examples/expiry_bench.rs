//! `cargo xtask bench expiry --rows N --backend sqlite|postgres|mysql`: seeds N assignments,
//! times one set-based SQL UPDATE that expires the rows the 90-day rule expires (the baseline),
//! resets them, then times the full streamed expiry pass (`DieselStore::expire_assignments`) and
//! reports wall time, rows per second and the pass's peak RSS.
//!
//! The servers' URLs come from `RETIREMENT_TEST_POSTGRES_URL` / `RETIREMENT_TEST_MYSQL_URL`
//! (defaults: this machine's servers); the benchmark creates its own database and drops it.

use std::time::Instant;

use assignment_expiry::{Assignment, AssignmentState, Context, Enrollment, Policy, PolicyKind};
use chrono::{TimeDelta, TimeZone, Utc};
use diesel_async::{
    AsyncConnection, AsyncMysqlConnection, AsyncPgConnection, SimpleAsyncConnection,
};
use retirement_store::{DieselStore, StoreOptions};

struct Args {
    rows: usize,
    backend: String,
    batch: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rows: 100_000,
        backend: "sqlite".into(),
        batch: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rows" => args.rows = value()?.parse().map_err(|e| format!("--rows: {e}"))?,
            "--backend" => args.backend = value()?,
            "--batch" => args.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// The high-water mark of resident memory, in KiB, from /proc.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the high-water mark so the next reading covers only what follows (Linux ≥ 4.0).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("expiry bench: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let name = format!("retirement_bench_{}", std::process::id());
    let (url, admin) = match args.backend.as_str() {
        "sqlite" => {
            let path = std::env::temp_dir().join(format!("{name}.db"));
            (format!("sqlite://{}", path.display()), None)
        }
        "postgres" => {
            let admin = std::env::var("RETIREMENT_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            let mut conn = AsyncPgConnection::establish(&admin)
                .await
                .map_err(|e| e.to_string())?;
            conn.batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .map_err(|e| e.to_string())?;
            (
                admin
                    .rsplit_once('/')
                    .map(|(base, _)| format!("{base}/{name}"))
                    .unwrap_or_default(),
                Some(admin),
            )
        }
        "mysql" => {
            let admin = std::env::var("RETIREMENT_TEST_MYSQL_URL")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
            let mut conn = AsyncMysqlConnection::establish(&admin)
                .await
                .map_err(|e| e.to_string())?;
            conn.batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .map_err(|e| e.to_string())?;
            (
                admin
                    .rsplit_once('/')
                    .map(|(base, _)| format!("{base}/{name}"))
                    .unwrap_or_default(),
                Some(admin),
            )
        }
        other => {
            return Err(format!(
                "unknown backend {other:?}: sqlite, postgres or mysql"
            ));
        }
    };
    let result = bench(&args, &url).await;
    match (args.backend.as_str(), admin) {
        ("sqlite", _) => {
            let path = url.trim_start_matches("sqlite://");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
        ("postgres", Some(admin)) => {
            if let Ok(mut conn) = AsyncPgConnection::establish(&admin).await {
                let _ = conn
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            }
        }
        (_, Some(admin)) => {
            if let Ok(mut conn) = AsyncMysqlConnection::establish(&admin).await {
                let _ = conn
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
                    .await;
            }
        }
        _ => {}
    }
    result
}

async fn bench(args: &Args, url: &str) -> Result<(), String> {
    let store = DieselStore::open(url, &StoreOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let policy = Policy::named(PolicyKind::Current);

    // Seed: allocated assignments, half allocated more than 90 days ago (at noon, so no row
    // sits on the boundary), an active configuration whose subsidy ends in 2030, no deadline.
    let seed_start = Instant::now();
    let context = Context {
        enrollment: Enrollment::Deadline(None),
        subsidy_expiration: Some("2030-01-01T00:00:00Z".into()),
        configuration_active: true,
    };
    let mut chunk = Vec::with_capacity(5000);
    for i in 0..args.rows {
        let days_ago = if i % 2 == 0 { 120 } else { 30 } + (i % 17) as i64;
        let allocated = now - TimeDelta::days(days_ago) + TimeDelta::hours(12);
        chunk.push((
            Assignment {
                uuid: format!("{i:012}"),
                state: AssignmentState::Allocated,
                learner_email: format!("learner{i}@example.com"),
                lms_user_id: Some(i as i64),
                created: allocated,
                allocated_at: allocated,
                expired_at: None,
                preferred_course_run_key: None,
                content_key: format!("course-v1:edX+Bench+{}", i % 100),
                has_credit_request: false,
                actions: Vec::new(),
            },
            context.clone(),
        ));
        if chunk.len() == 5000 {
            store
                .insert_assignments(&chunk, now)
                .await
                .map_err(|e| e.to_string())?;
            chunk.clear();
        }
    }
    store
        .insert_assignments(&chunk, now)
        .await
        .map_err(|e| e.to_string())?;
    drop(chunk);
    let seed_time = seed_start.elapsed();

    // Baseline: one set-based UPDATE expiring the same rows.
    let cut = now - policy.max_age;
    let started = Instant::now();
    let baseline_rows = store
        .bench_baseline_expire(cut, now)
        .await
        .map_err(|e| e.to_string())?;
    let baseline = started.elapsed();
    store
        .bench_reset_expired()
        .await
        .map_err(|e| e.to_string())?;

    // The streamed pass.
    let rss_reset = reset_peak_rss();
    let mut nonce = || 0u64;
    let started = Instant::now();
    let summary = store
        .expire_assignments(&policy, now, args.batch, false, &mut nonce, |_| {})
        .await
        .map_err(|e| e.to_string())?;
    let pass = started.elapsed();
    let peak = peak_rss_kib();

    if summary.expired != baseline_rows {
        return Err(format!(
            "the pass expired {} rows but the baseline {}: they must match",
            summary.expired, baseline_rows
        ));
    }
    let rate = |rows: u64, secs: f64| rows as f64 / secs.max(1e-9);
    println!("backend            {}", args.backend);
    println!(
        "rows               {} ({} expire)",
        args.rows, summary.expired
    );
    println!("seed               {:.1} s", seed_time.as_secs_f64());
    println!(
        "baseline UPDATE    {:.2} s  ({:.0} expired rows/s)",
        baseline.as_secs_f64(),
        rate(baseline_rows, baseline.as_secs_f64())
    );
    println!(
        "streamed pass      {:.2} s  ({:.0} scanned rows/s, batch {}, {} batches)",
        pass.as_secs_f64(),
        rate(summary.scanned, pass.as_secs_f64()),
        args.batch,
        summary.batches
    );
    println!(
        "pass / baseline    {:.2}x",
        pass.as_secs_f64() / baseline.as_secs_f64().max(1e-9)
    );
    match (peak, rss_reset) {
        (Some(kib), true) => println!("peak RSS (pass)    {:.1} MiB", kib as f64 / 1024.0),
        (Some(kib), false) => println!("peak RSS (process) {:.1} MiB", kib as f64 / 1024.0),
        (None, _) => println!("peak RSS           unavailable"),
    }
    Ok(())
}
