//! `cargo xtask bench expiry --rows N --backend sqlite|postgres|mysql`: seeds two identical
//! databases with N assignments; in one, times a single set-based SQL UPDATE that expires the
//! rows the 90-day rule expires (the baseline); in the other, times the full streamed expiry
//! pass (`retirement_http::expiry::expire`), checks both expired the same number of rows, and
//! reports wall time, rows per second and the pass's peak RSS.
//!
//! Two fresh databases, not one reset between runs: a reset leaves a server's MVCC garbage
//! (InnoDB's unpurged index entries) for whichever run comes second.
//!
//! The servers' URLs come from `RETIREMENT_TEST_POSTGRES_URL` / `RETIREMENT_TEST_MYSQL_URL`
//! (defaults: this machine's servers); the benchmark creates its own databases and drops them.

use std::time::{Duration, Instant};

use assignment_expiry::{Assignment, AssignmentState, Context, Enrollment, Policy, PolicyKind};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use retirement_http::expiry::{self, Notifications, PassOptions};
use retirement_store::{DieselStore, StoreOptions};

struct Args {
    rows: usize,
    backend: String,
    batch: usize,
    /// `own` (this project's tables) or `enterprise-access` (upstream's, MySQL only).
    schema: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rows: 100_000,
        backend: "sqlite".into(),
        batch: 1000,
        schema: "own".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rows" => args.rows = value()?.parse().map_err(|e| format!("--rows: {e}"))?,
            "--backend" => args.backend = value()?,
            "--batch" => args.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--schema" => args.schema = value()?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.schema == "enterprise-access" {
        args.backend = "mysql".into();
    } else if args.schema != "own" {
        return Err(format!(
            "unknown schema {:?}: own or enterprise-access",
            args.schema
        ));
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

/// One scratch database of the chosen backend.
struct Scratch {
    url: String,
    admin: Option<String>,
    name: String,
    backend: String,
}

impl Scratch {
    async fn create(backend: &str, name: String) -> Result<Scratch, String> {
        let admin = match backend {
            "sqlite" => None,
            "postgres" => Some(
                std::env::var("RETIREMENT_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            ),
            "mysql" => Some(
                std::env::var("RETIREMENT_TEST_MYSQL_URL")
                    .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
            ),
            other => {
                return Err(format!(
                    "unknown backend {other:?}: sqlite, postgres or mysql"
                ));
            }
        };
        let url = match &admin {
            Some(admin) => {
                admin_exec(backend, admin, &format!("CREATE DATABASE {name}")).await?;
                format!(
                    "{}/{name}",
                    admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin)
                )
            }
            None => format!(
                "sqlite://{}",
                std::env::temp_dir().join(format!("{name}.db")).display()
            ),
        };
        Ok(Scratch {
            url,
            admin,
            name,
            backend: backend.to_owned(),
        })
    }

    async fn drop_it(self) {
        match (self.backend.as_str(), &self.admin) {
            ("postgres", Some(admin)) => {
                let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
                let _ = admin_exec(&self.backend, admin, &sql).await;
            }
            ("mysql", Some(admin)) => {
                let sql = format!("DROP DATABASE IF EXISTS {}", self.name);
                let _ = admin_exec(&self.backend, admin, &sql).await;
            }
            _ => {
                let path = self.url.trim_start_matches("sqlite://");
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{path}{suffix}"));
                }
            }
        }
    }
}

/// Runs one statement on a server over its own connection.
async fn admin_exec(_backend: &str, url: &str, sql: &str) -> Result<(), String> {
    retirement_store::testdb::server_exec(url, sql).await
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
    let pid = std::process::id();
    let baseline_db =
        Scratch::create(&args.backend, format!("retirement_bench_{pid}_baseline")).await?;
    let pass_db = match Scratch::create(&args.backend, format!("retirement_bench_{pid}_pass")).await
    {
        Ok(db) => db,
        Err(e) => {
            baseline_db.drop_it().await;
            return Err(e);
        }
    };
    let result = if args.schema == "enterprise-access" {
        enterprise_access::bench(&args, &baseline_db.url, &pass_db.url).await
    } else {
        bench(&args, &baseline_db.url, &pass_db.url).await
    };
    baseline_db.drop_it().await;
    pass_db.drop_it().await;
    result
}

/// Seeds `rows` allocated assignments: half allocated more than 90 days before `now` (at noon,
/// so no row sits on the boundary), an active configuration whose subsidy ends in 2030, no
/// enrollment deadline, no actions. Inserts stream in chunks, so seeding stays small too.
async fn seed(store: &DieselStore, rows: usize, now: DateTime<Utc>) -> Result<Duration, String> {
    let started = Instant::now();
    let context = Context {
        enrollment: Enrollment::Deadline(None),
        subsidy_expiration: Some("2030-01-01T00:00:00Z".into()),
        configuration_active: true,
    };
    let mut chunk = Vec::with_capacity(5000);
    for i in 0..rows {
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
        if chunk.len() == 5000 || i + 1 == rows {
            store
                .insert_assignments(&chunk, now)
                .await
                .map_err(|e| e.to_string())?;
            chunk.clear();
        }
    }
    Ok(started.elapsed())
}

async fn bench(args: &Args, baseline_url: &str, pass_url: &str) -> Result<(), String> {
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let policy = Policy::named(PolicyKind::Current);
    let open = |url: String| async move {
        let store = DieselStore::open(&url, &StoreOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        store.migrate().await.map_err(|e| e.to_string())?;
        Ok::<DieselStore, String>(store)
    };
    let baseline_store = open(baseline_url.to_owned()).await?;
    let pass_store = open(pass_url.to_owned()).await?;
    let seed_time = seed(&baseline_store, args.rows, now).await?;
    seed(&pass_store, args.rows, now).await?;

    // Baseline: one set-based UPDATE expiring the same rows.
    let started = Instant::now();
    let baseline_rows = baseline_store
        .bench_baseline_expire(now - policy.max_age, now)
        .await
        .map_err(|e| e.to_string())?;
    let baseline = started.elapsed();
    drop(baseline_store);

    // The streamed pass, on the other, identical database.
    let rss_reset = reset_peak_rss();
    let mut nonce = || 0u64;
    let started = Instant::now();
    let options = PassOptions {
        policy: policy.clone(),
        now,
        dry_run: false,
        page_size: args.batch,
        notifications: Notifications::None,
    };
    let summary = expiry::expire(&pass_store, None, &options, &mut nonce, &mut |_| {})
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
    let rate = |rows: u64, time: Duration| rows as f64 / time.as_secs_f64().max(1e-9);
    println!("backend            {}", args.backend);
    println!(
        "rows               {} ({} expire)",
        args.rows, summary.expired
    );
    println!("seed (each copy)   {:.1} s", seed_time.as_secs_f64());
    println!(
        "baseline UPDATE    {:.2} s  ({:.0} expired rows/s)",
        baseline.as_secs_f64(),
        rate(baseline_rows, baseline)
    );
    println!(
        "streamed pass      {:.2} s  ({:.0} scanned rows/s, batch {}, {} batches)",
        pass.as_secs_f64(),
        rate(summary.scanned, pass),
        args.batch,
        summary.pages
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

/// `--schema enterprise-access`: upstream's tables on MariaDB, each assignment with the `'+'`
/// history row its creation left, half of them past 90 days; the catalog and subsidy services
/// faked on loopback. The baseline is what a set-based job would do: one `UPDATE` of every
/// eligible row plus one `INSERT … SELECT` of their history rows.
mod enterprise_access {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use assignment_expiry::{Policy, PolicyKind};
    use chrono::{TimeZone, Utc};
    use retirement_http::expiry::{self, EnterpriseServices, Notifications, PassOptions};
    use retirement_http::fake::{FakeConfig, FakeEdx};
    use retirement_http::{ClientCredentials, HttpOptions, ServiceClients};
    use retirement_store::enterprise_access::EnterpriseAccessStore;
    use retirement_store::testdb::ENTERPRISE_ACCESS_SCHEMA;
    use retirement_store::{DieselStore, StoreOptions};

    use super::{Args, peak_rss_kib, reset_peak_rss};

    const LIVE: &str = "content_assignments_learnercontentassignment";
    const HISTORY: &str = "content_assignments_historicallearnercontentassignment";
    const COLUMNS: &str = "created, modified, uuid, learner_email, lms_user_id, content_key, \
        content_quantity, state, transaction_uuid, assignment_configuration_id, content_title, \
        allocation_batch_id, accepted_at, allocated_at, cancelled_at, errored_at, expired_at, \
        preferred_course_run_key, reversed_at, is_assigned_course_run, parent_content_key, \
        admin_lms_user_id";
    const CONFIGURATION: &str = "11111111-1111-4111-8111-111111111111";
    const CATALOG: &str = "22222222-2222-4222-8222-222222222222";
    const SUBSIDY: &str = "33333333-3333-4333-8333-333333333333";
    const NOW: &str = "2026-11-01 00:00:00.000000";
    /// A version-4 UUID from the row number (MariaDB checks the version and variant digits).
    const ID: &str = "CONCAT(SUBSTR(MD5(seq), 1, 12), '4', SUBSTR(MD5(seq), 14, 3), '8', SUBSTR(MD5(seq), 18, 15))";

    async fn seed(store: &DieselStore, rows: usize) -> Result<(), String> {
        let run = |sql: String| async move {
            store
                .execute_mysql_script(&sql)
                .await
                .map_err(|e| e.to_string())
        };
        run(ENTERPRISE_ACCESS_SCHEMA.to_owned()).await?;
        run(format!(
            "INSERT INTO content_assignments_assignmentconfiguration VALUES ('{NOW}', '{NOW}', '{CONFIGURATION}', 1, '{CONFIGURATION}'); \
             INSERT INTO subsidy_access_policy_subsidyaccesspolicy (created, modified, policy_type, uuid, description, active, \
               catalog_uuid, subsidy_uuid, access_method, enterprise_customer_uuid, assignment_configuration_id, retired) \
             VALUES ('{NOW}', '{NOW}', 'AssignedLearnerCreditAccessPolicy', '{CONFIGURATION}', '', 1, '{CATALOG}', '{SUBSIDY}', \
               'assigned', '{CONFIGURATION}', '{CONFIGURATION}', 0)"
        ))
        .await?;
        // In slices, so no single statement holds a huge undo log.
        let slice = 100_000;
        let mut from = 1;
        while from <= rows {
            let to = (from + slice - 1).min(rows);
            let values = format!(
                "TIMESTAMP '{NOW}' - INTERVAL 200 DAY, TIMESTAMP '{NOW}' - INTERVAL 200 DAY, {ID}, \
                 CONCAT('learner', seq, '@example.com'), seq, CONCAT('edX+Bench', seq % 100), -1000, \
                 'allocated', NULL, '{CONFIGURATION}', 'A course', NULL, NULL, \
                 TIMESTAMP '{NOW}' - INTERVAL (IF(seq % 2 = 0, 120, 30) + seq % 17) DAY + INTERVAL 12 HOUR, \
                 NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL"
            );
            run(format!(
                "INSERT INTO {LIVE} ({COLUMNS}) SELECT {values} FROM seq_{from}_to_{to}; \
                 INSERT INTO {HISTORY} ({COLUMNS}, history_date, history_type) \
                 SELECT {values}, TIMESTAMP '{NOW}' - INTERVAL 200 DAY, '+' FROM seq_{from}_to_{to}"
            ))
            .await?;
            from = to + 1;
        }
        Ok(())
    }

    async fn count(store: &EnterpriseAccessStore, filter: &str) -> Result<i64, String> {
        store.count(LIVE, filter).await.map_err(|e| e.to_string())
    }

    /// Waits (at most 15 minutes) until InnoDB has purged the undo history of earlier writes:
    /// the server's purge thread is shared, so otherwise the second run pays for the first's
    /// (and the pass for the baseline's 500,000-row UPDATE).
    async fn wait_for_purge(store: &EnterpriseAccessStore) -> Result<Duration, String> {
        let started = Instant::now();
        while store
            .count(
                "information_schema.INNODB_METRICS",
                "NAME = 'trx_rseg_history_len' AND COUNT > 1000",
            )
            .await
            .map_err(|e| e.to_string())?
            > 0
        {
            if started.elapsed() > Duration::from_secs(900) {
                return Err("InnoDB did not purge its history within 15 minutes".into());
            }
            // Polling a server metric, not synchronising with our own code.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(started.elapsed())
    }

    pub(super) async fn bench(
        args: &Args,
        baseline_url: &str,
        pass_url: &str,
    ) -> Result<(), String> {
        let open = |url: String| async move {
            DieselStore::open(&url, &StoreOptions::default())
                .await
                .map_err(|e| e.to_string())
        };
        let baseline_store = Arc::new(open(baseline_url.to_owned()).await?);
        let pass_store = Arc::new(open(pass_url.to_owned()).await?);
        let started = Instant::now();
        seed(&baseline_store, args.rows).await?;
        let seed_time = started.elapsed();
        seed(&pass_store, args.rows).await?;
        let baseline_ea = EnterpriseAccessStore::open(baseline_store.clone())
            .await
            .map_err(|e| e.to_string())?;
        let store = EnterpriseAccessStore::open(pass_store.clone())
            .await
            .map_err(|e| e.to_string())?;
        let eligible = "state = 'allocated' AND allocated_at <= TIMESTAMP '2026-11-01 00:00:00' - INTERVAL 90 DAY";
        let eligible_before = count(&store, eligible).await?;

        let purge_before = wait_for_purge(&store).await?;
        // Baseline: the set-based job.
        let started = Instant::now();
        baseline_store
            .execute_mysql_script(&format!(
                "START TRANSACTION; \
                 UPDATE {LIVE} SET state = 'expired', expired_at = '{NOW}', modified = '{NOW}' WHERE {eligible}; \
                 INSERT INTO {HISTORY} ({COLUMNS}, history_date, history_type) \
                   SELECT {COLUMNS}, '{NOW}', '~' FROM {LIVE} WHERE state = 'expired' AND expired_at = '{NOW}'; \
                 COMMIT"
            ))
            .await
            .map_err(|e| e.to_string())?;
        let baseline = started.elapsed();
        let baseline_rows = count(
            &baseline_ea,
            &format!("state = 'expired' AND expired_at = '{NOW}'"),
        )
        .await?;
        drop(baseline_ea);
        drop(baseline_store);
        let purge_between = wait_for_purge(&store).await?;

        // The pass, with the fake catalog and subsidy on loopback.
        let fake = FakeEdx::start(FakeConfig::default())
            .await
            .map_err(|e| e.to_string())?;
        for i in 0..100 {
            fake.add_catalog_record(
                CATALOG,
                serde_json::json!({"key": format!("edX+Bench{i}"), "normalized_metadata": {"enroll_by_date": "2030-01-01T00:00:00Z"}}),
            );
        }
        fake.set_subsidy(
            SUBSIDY,
            serde_json::json!({"expiration_datetime": "2030-01-01T00:00:00Z"}),
        );
        let base_urls = ["lms", "enterprise_catalog", "enterprise_subsidy"]
            .iter()
            .map(|k| (k.to_string(), fake.base_url()))
            .collect();
        let clients = ServiceClients::new(
            base_urls,
            ClientCredentials {
                client_id: "retirement-worker".into(),
                client_secret: "s3cret".into(),
            },
            Vec::new(),
            &HttpOptions::default(),
        )
        .map_err(|e| e.to_string())?;
        let services = EnterpriseServices::new(&clients, expiry::default_service_retry(), 7)
            .map_err(|e| e.to_string())?;
        let rss_reset = reset_peak_rss();
        let started = Instant::now();
        let options = PassOptions {
            policy: Policy::named(PolicyKind::Current),
            now: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
            dry_run: false,
            page_size: args.batch,
            notifications: Notifications::None,
        };
        let mut nonce = || 0u64;
        let summary = expiry::expire(&store, Some(&services), &options, &mut nonce, &mut |_| {})
            .await
            .map_err(|e| e.to_string())?;
        let pass = started.elapsed();
        let peak = peak_rss_kib();
        let left = count(&store, eligible).await?;
        let history = store
            .count(
                HISTORY,
                &format!("history_type = '~' AND history_date = '{NOW}'"),
            )
            .await
            .map_err(|e| e.to_string())?;
        if summary.expired as i64 != baseline_rows || history != baseline_rows {
            return Err(format!(
                "the pass expired {} rows with {history} history rows; the baseline {baseline_rows}: they must match ({summary:?})",
                summary.expired
            ));
        }
        let rate = |rows: i64, secs: f64| rows as f64 / secs.max(1e-9);
        println!("schema             enterprise-access (MariaDB, upstream's reference schema)");
        println!(
            "rows               {} ({eligible_before} eligible, {} history rows before)",
            args.rows, args.rows
        );
        println!("seed (each copy)   {:.1} s", seed_time.as_secs_f64());
        println!(
            "purge waits        {:.1} s before the baseline, {:.1} s before the pass",
            purge_before.as_secs_f64(),
            purge_between.as_secs_f64()
        );
        println!(
            "baseline           {:.2} s  ({:.0} rows expired/s: one UPDATE + one INSERT … SELECT)",
            baseline.as_secs_f64(),
            rate(baseline_rows, baseline.as_secs_f64())
        );
        println!(
            "pass               {:.2} s  ({:.0} rows expired/s, {} scanned, page {}, {} pages, {} catalog calls)",
            pass.as_secs_f64(),
            rate(summary.expired as i64, pass.as_secs_f64()),
            summary.scanned,
            args.batch,
            summary.pages,
            fake.calls()
                .iter()
                .filter(|c| c.path.contains("get_content_metadata"))
                .count()
        );
        println!(
            "pass / baseline    {:.2}x",
            pass.as_secs_f64() / baseline.as_secs_f64().max(1e-9)
        );
        println!("eligible left      {left}");
        match (peak, rss_reset) {
            (Some(kib), true) => println!("peak RSS (pass)    {:.1} MiB", kib as f64 / 1024.0),
            (Some(kib), false) => println!("peak RSS (process) {:.1} MiB", kib as f64 / 1024.0),
            (None, _) => println!("peak RSS           unavailable"),
        }
        if left != 0 {
            return Err(format!("{left} eligible rows were left allocated"));
        }
        Ok(())
    }
}
