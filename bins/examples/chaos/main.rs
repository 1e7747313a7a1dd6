//! `cargo xtask chaos kill|faults|outage|workers|lms-workers|db|all [--short] [--seed N]`: the crash, fault and
//! concurrency runs of issue 7. Each starts the real `retire` binary (found next to this
//! example's directory) against the fake edX on loopback, breaks something at seeded random
//! moments, then checks the promises against the store, the fake's record of every call and
//! the captured output, prints its figures, and exits 1 when a promise broke.
//!
//! - `kill`: `retire run --concurrency 32` SIGKILLed at least 20 times, restarted until the
//!   queue is empty; on the SQLite, PostgreSQL and LMS-backed stores.
//! - `faults`: 5xx on 10% of calls, hangs on 2%, connection resets on 1%.
//! - `outage`: ECOMMERCE answers 503 to everyone for a while, then comes back: no ERRORED,
//!   everyone COMPLETE in one run.
//! - `workers`: 4 `retire run` processes on one PostgreSQL store, then one MariaDB store.
//! - `lms-workers`: 4 `retire run` processes against the fake LMS (`store: lms`) sharing a
//!   PostgreSQL `lease_store`, SIGKILLed and restarted at seeded moments: no overlapping
//!   calls, no learner driven by two workers (a learner changes worker only when its worker
//!   was killed, and never goes back).
//! - `db`: a TCP proxy between the driver and PostgreSQL cuts every connection at seeded
//!   random moments.
//!
//! After each run the privacy check scans every captured stdout/stderr file and, after
//! `retire cleanup`, every text column of the store for the seeded originals.
//! Servers: `RETIREMENT_TEST_POSTGRES_URL` / `RETIREMENT_TEST_MYSQL_URL`, else this machine's
//! defaults.

mod checks;
mod proxy;
mod world;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use retirement_core::SplitMix64;
use retirement_http::fake::Fault;
use retirement_store::RetirementStore;
use retirement_store::testdb::TestDatabase;

use checks::{Ending, Figures, STEP_PATHS, check_learners, needles, scan_files};
use world::{Backend, World, WorldOptions};

/// Counts for one run: full (issue 7's) or `--short` (CI's).
#[derive(Clone, Copy)]
struct Scale {
    short: bool,
}

impl Scale {
    fn kill_learners(self) -> usize {
        if self.short { 200 } else { 1000 }
    }
    fn kills(self) -> usize {
        if self.short { 5 } else { 20 }
    }
    fn fault_learners(self) -> usize {
        if self.short { 150 } else { 1000 }
    }
    fn worker_learners(self) -> usize {
        if self.short { 300 } else { 2000 }
    }
    fn lms_worker_learners(self) -> usize {
        if self.short { 300 } else { 2000 }
    }
    fn lms_worker_kills(self) -> usize {
        if self.short { 4 } else { 12 }
    }
    fn db_learners(self) -> usize {
        if self.short { 150 } else { 1000 }
    }
}

struct Args {
    command: String,
    scale: Scale,
    seed: u64,
    postgres: String,
    mysql: String,
    binary: PathBuf,
}

fn retire_binary() -> PathBuf {
    // target/<profile>/examples/chaos → target/<profile>/retire
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|p| p.join("retire")))
        .unwrap_or_else(|| PathBuf::from("retire"))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        command: String::new(),
        scale: Scale { short: false },
        seed: 20261124,
        postgres: std::env::var("RETIREMENT_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        mysql: std::env::var("RETIREMENT_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
        binary: retire_binary(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--short" => args.scale.short = true,
            "--seed" => {
                args.seed = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--seed takes a number")?
            }
            "kill" | "faults" | "outage" | "workers" | "lms-workers" | "db" | "all"
                if args.command.is_empty() =>
            {
                args.command = arg
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.command.is_empty() {
        return Err(
            "usage: chaos kill|faults|outage|workers|lms-workers|db|all [--short] [--seed N]"
                .into(),
        );
    }
    if !args.binary.exists() {
        return Err(format!(
            "{} is missing: build it with `cargo build -p bins --bin retire` (same profile)",
            args.binary.display()
        ));
    }
    Ok(args)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("chaos: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "chaos {} ({} counts, seed {}), driver {}",
        args.command,
        if args.scale.short { "short" } else { "full" },
        args.seed,
        args.binary.display()
    );
    let started = Instant::now();
    let mut broken = Vec::new();
    let all = args.command == "all";
    let runs: Vec<(&str, Backend)> = vec![
        ("kill", Backend::Sqlite),
        ("kill", Backend::Postgres(args.postgres.clone())),
        ("kill", Backend::Lms),
        ("faults", Backend::Sqlite),
        ("outage", Backend::Sqlite),
        ("workers", Backend::Postgres(args.postgres.clone())),
        ("workers", Backend::Mysql(args.mysql.clone())),
        ("lms-workers", Backend::Lms),
        ("db", Backend::Postgres(args.postgres.clone())),
    ];
    for (name, backend) in runs {
        if !all && args.command != name {
            continue;
        }
        let label = format!("{name} on {}", backend.label());
        println!("\n== {label}");
        let result = match name {
            "kill" => kill(&args, backend).await,
            "faults" => faults(&args, backend).await,
            "outage" => outage(&args, backend).await,
            "workers" => workers(&args, backend).await,
            "lms-workers" => lms_workers(&args).await,
            _ => db(&args, backend).await,
        };
        match result {
            Ok(()) => println!("   promises held"),
            Err(e) => {
                println!("   BROKEN: {e}");
                broken.push(label);
            }
        }
    }
    println!(
        "\nchaos {}: {} in {:.0} s",
        args.command,
        if broken.is_empty() {
            "every promise held".to_owned()
        } else {
            format!("broken in {}", broken.join(", "))
        },
        started.elapsed().as_secs_f64()
    );
    if broken.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints the figures and turns violations into an error.
fn report(figures: &Figures, learners: usize) -> Result<(), String> {
    println!(
        "   learners: {learners}, COMPLETE {}, ERRORED {}; step calls {} ({} repeats of a step \
         already called: at-least-once); longest learner {:.1} s",
        figures.complete,
        figures.errored,
        figures.step_calls,
        figures.repeated_calls,
        figures.longest_learner_seconds
    );
    for (kind, text) in &figures.errored_samples {
        println!("   an ERRORED log ({kind}): {text:?}");
    }
    if figures.violations.is_empty() {
        Ok(())
    } else {
        for v in &figures.violations {
            println!("   violation: {v}");
        }
        Err(format!("{} violations", figures.violations.len()))
    }
}

/// The privacy check: captured output, then (after `retire cleanup`) every text column.
async fn privacy(args: &Args, world: &mut World) -> Result<(), String> {
    let needles = needles(world);
    // ERRORED learners are not retired yet and rightly keep their originals: the columns are
    // searched for the COMPLETE learners' originals, which cleanup must remove.
    let mut retired = Vec::new();
    for original in &world.seeded {
        if let Ok(r) = world.store.find_by_username(&original.username).await
            && r.current_state() == "COMPLETE"
        {
            retired.extend([
                original.username.clone(),
                original.email.clone(),
                original.name.clone(),
            ]);
        }
    }
    let archive = world.dir.join("cleanup-archive.json.gz");
    let archive_arg = archive.display().to_string();
    let (code, _) = world.run(
        &args.binary,
        &["cleanup", "--archive", &archive_arg, "--batch-size", "500"],
    )?;
    if code != 0 {
        return Err(format!("retire cleanup exited {code}"));
    }
    let (files, hits) = scan_files(&world.dir, &needles)?;
    let columns = world
        .store
        .text_columns_containing(&retired)
        .await
        .map_err(|e| format!("store scan: {e}"))?;
    println!(
        "   privacy: {} originals sought in {files} captured files (logs, summaries, the \
         cleanup archive), the COMPLETE learners' {} in every text column after cleanup: {} \
         file hits, {} column hits",
        needles.len(),
        retired.len(),
        hits.values().sum::<usize>(),
        columns.len()
    );
    if !hits.is_empty() || !columns.is_empty() {
        return Err(format!(
            "seeded originals found: files {hits:?}, columns {columns:?}"
        ));
    }
    Ok(())
}

fn summary_field(stdout: &str, field: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(stdout.trim())
        .ok()
        .and_then(|v| v.get(field).and_then(|f| f.as_u64()))
        .unwrap_or(0)
}

fn latency(ms: u64) -> Fault {
    Fault {
        latency: Duration::from_millis(ms),
        ..Fault::default()
    }
}

/// Sets up the world, runs `body`, prints its figures, runs the privacy check, and always
/// finishes the world: its server database is dropped even after an early error, and its
/// captured output kept as evidence when a promise broke.
async fn in_world(
    args: &Args,
    options: WorldOptions,
    body: impl AsyncFnOnce(&mut World) -> Result<Figures, String>,
) -> Result<(), String> {
    let learners = options.learners;
    let mut world = World::new(options).await?;
    let outcome = match body(&mut world).await {
        // The privacy check runs even when another promise broke.
        Ok(figures) => report(&figures, learners).and(privacy(args, &mut world).await),
        Err(e) => Err(e),
    };
    world.finish(outcome.is_err()).await;
    outcome
}

/// Adds `ms` of latency to every step call.
fn add_latency(world: &World, ms: u64) {
    for path in STEP_PATHS.iter() {
        world.fake.set_fault(path, Some(latency(ms)));
    }
}

// ----- kill -----

async fn kill(args: &Args, backend: Backend) -> Result<(), String> {
    let learners = args.scale.kill_learners();
    in_world(
        args,
        WorldOptions {
            name: "kill",
            backend,
            learners,
            extra_yaml: String::new(),
            driver_url: None,
        },
        async |world: &mut World| {
            add_latency(world, 5);
            let mut random = SplitMix64::new(args.seed);
            let (mut kills, mut runs) = (0, 0);
            let started = Instant::now();
            let deadline = started + Duration::from_secs(if args.scale.short { 180 } else { 900 });
            loop {
                if Instant::now() > deadline {
                    return Err(format!(
                        "the queue was not empty after {} s",
                        started.elapsed().as_secs()
                    ));
                }
                let (mut child, _) =
                    world.spawn(&args.binary, &["run", "--concurrency", "32", "--json"])?;
                runs += 1;
                let killed_before = kills;
                if kills < args.scale.kills() {
                    // A seeded moment 10–160 ms into the run: start-up, claims, steps and writes alike.
                    let wait = Duration::from_millis(10 + random.next_u64() % 150);
                    tokio::time::sleep(wait).await;
                    if child.try_wait().map_err(|e| e.to_string())?.is_none() {
                        child.kill().map_err(|e| format!("SIGKILL: {e}"))?;
                        kills += 1;
                    }
                }
                let (status, killed) = (
                    child.wait().map_err(|e| e.to_string())?,
                    kills > killed_before,
                );
                if !killed && !status.success() {
                    return Err(format!(
                        "`retire run` {runs} exited {status} without being killed"
                    ));
                }
                if world.unfinished().await? == 0 {
                    break;
                }
                if kills >= args.scale.kills() {
                    // Learners a killed run held come back when their 10 s leases run out.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            println!(
                "   {kills} SIGKILLs over {runs} `retire run` processes; queue empty after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            let mut figures = check_learners(world, Ending::AllComplete, &[]).await;
            if kills < args.scale.kills() {
                figures.violate(format!(
                    "only {kills} kills landed (the queue emptied first)"
                ));
            }
            Ok(figures)
        },
    )
    .await
}

// ----- faults -----

const FAILURE_BODY: &str = "chaos: upstream failure";

async fn faults(args: &Args, backend: Backend) -> Result<(), String> {
    let learners = args.scale.fault_learners();
    let (budget, timeout) = (1.0, 1.0);
    in_world(
        args,
        WorldOptions {
        name: "faults",
        backend,
        learners,
        extra_yaml: format!(
            "timeouts:\n  request_seconds: {timeout}\n  connect_seconds: 1\nretry:\n  \
             initial_backoff_seconds: 0.05\n  max_backoff_seconds: 0.2\n  budget_seconds: {budget}\n  \
             gateway_timeout_wait_seconds: 0.1\n  gateway_timeout_retries: 1\n"
        ),
        driver_url: None,
        },
        async |world: &mut World| {
    for path in STEP_PATHS.iter() {
        world.fake.set_fault_mix(
            path,
            vec![
                Fault {
                    status: Some(500),
                    body: Some(FAILURE_BODY.into()),
                    rate: 0.10,
                    ..Fault::default()
                },
                Fault {
                    hang: true,
                    rate: 0.02,
                    ..Fault::default()
                },
                Fault {
                    reset: true,
                    rate: 0.01,
                    ..Fault::default()
                },
            ],
        );
    }
    let concurrency = 32;
    let started = Instant::now();
    let (code, stdout) = world.run(
        &args.binary,
        &["run", "--concurrency", &concurrency.to_string(), "--json"],
    )?;
    let wall = started.elapsed().as_secs_f64();
    let calls = world.fake.calls();
    let answered = |f: &dyn Fn(u16) -> bool| calls.iter().filter(|c| f(c.status)).count();
    println!(
        "   `retire run` exited {code} after {wall:.1} s; the fake saw {} calls: {} answered 500, \
         {} hung or reset (no status)",
        calls.len(),
        answered(&|s| s == 500),
        answered(&|s| s == 0)
    );
    let mut figures = check_learners(world, Ending::CompleteOrErrored, &[FAILURE_BODY]).await;
    // Each stage: its last attempt starts within the budget of its first and lasts at most
    // one timeout; store writes and scheduling get a second of slack per learner.
    let per_learner = 6.0 * (budget + timeout) + 1.0;
    if figures.longest_learner_seconds > per_learner {
        figures.violate(format!(
            "a learner took {:.1} s, over 6 × (budget {budget} s + timeout {timeout} s) + 1 s",
            figures.longest_learner_seconds
        ));
    }
    let waves = learners.div_ceil(concurrency) as f64;
    if wall > waves * per_learner + 10.0 {
        figures.violate(format!(
            "the run took {wall:.1} s, over {waves} waves × {per_learner} s"
        ));
    }
    println!(
        "   time bound: a learner ≤ {per_learner:.0} s (longest {:.1} s); the run ≤ {:.0} s \
         (took {wall:.1} s)",
        figures.longest_learner_seconds,
        waves * per_learner + 10.0
    );
    if summary_field(&stdout, "errored") != figures.errored as u64 {
        figures.violate(format!(
            "the run's summary says {} ERRORED, the store {}",
            summary_field(&stdout, "errored"),
            figures.errored
        ));
    }
    Ok(figures)
    })
    .await
}

// ----- outage -----

/// Issue 13: ECOMMERCE answers 503 to everyone for a while, then comes back. The run parks the
/// learners that reach it (no ERRORED), probes, and completes everyone once it is back.
async fn outage(args: &Args, backend: Backend) -> Result<(), String> {
    let learners = args.scale.fault_learners();
    let down_for = Duration::from_secs(if args.scale.short { 3 } else { 10 });
    in_world(
        args,
        WorldOptions {
            name: "outage",
            backend,
            learners,
            extra_yaml: "retry:\n  initial_backoff_seconds: 0.05\n  max_backoff_seconds: 0.2\n  \
                 budget_seconds: 1\noutage:\n  first_probe_after_seconds: 0.5\n  \
                 max_probe_interval_seconds: 1\n  patience_seconds: 120\n"
                .to_owned(),
            driver_url: None,
        },
        async |world: &mut World| {
            add_latency(world, 5);
            let path = &STEP_PATHS[1];
            world.fake.set_fault_mix(
                path,
                vec![
                    Fault {
                        status: Some(503),
                        body: Some("ecommerce is down".into()),
                        until: Some(tokio::time::Instant::now() + down_for),
                        ..Fault::default()
                    },
                    latency(5),
                ],
            );
            let started = Instant::now();
            let (code, stdout) = world.run(&args.binary, &["run", "--concurrency", "16", "--json"])?;
            let wall = started.elapsed().as_secs_f64();
            let refused = world
                .fake
                .calls()
                .iter()
                .filter(|c| c.path == *path && c.status == 503)
                .count();
            println!(
                "   ECOMMERCE down for {:.0} s ({refused} calls answered 503); `retire run` exited {code} after {wall:.1} s",
                down_for.as_secs_f64()
            );
            let mut figures = check_learners(world, Ending::AllComplete, &[]).await;
            if code != 0 {
                figures.violate(format!("`retire run` exited {code}, not 0"));
            }
            if summary_field(&stdout, "errored") != 0 || summary_field(&stdout, "deferred") != 0 {
                figures.violate(format!("the summary has ERRORED or deferred learners: {stdout}"));
            }
            if refused == 0 {
                figures.violate("the outage was never met".into());
            }
            Ok(figures)
        },
    )
    .await
}

// ----- workers -----

async fn workers(args: &Args, backend: Backend) -> Result<(), String> {
    let learners = args.scale.worker_learners();
    in_world(
        args,
        WorldOptions {
        name: "workers",
        backend,
        learners,
        extra_yaml: String::new(),
        driver_url: None,
        },
        async |world: &mut World| {
        add_latency(world, 5);
        let started = Instant::now();
        let mut children = Vec::new();
        for _ in 0..4 {
            children.push(world.spawn(&args.binary, &["run", "--concurrency", "32", "--json"])?);
        }
        let (mut claimed, mut lost) = (0, 0);
        for (mut child, out) in children {
            let status = child.wait().map_err(|e| e.to_string())?;
            let stdout = std::fs::read_to_string(&out).unwrap_or_default();
            if !status.success() {
                return Err(format!("a worker exited {status}: {stdout}"));
            }
            let mine = summary_field(&stdout, "claimed");
            claimed += mine;
            lost += summary_field(&stdout, "lease_lost");
            print!(
                "{}",
                if claimed == mine {
                    "   claims per worker: "
                } else {
                    ", "
                }
            );
            print!("{mine}");
        }
        println!(
            "\n   4 workers, {:.1} s: {claimed} claims for {learners} learners ({} double), {lost} \
         leases lost",
            started.elapsed().as_secs_f64(),
            claimed.saturating_sub(learners as u64)
        );
        let mut figures = check_learners(world, Ending::AllComplete, &[]).await;
        if claimed != learners as u64 {
            figures.violate(format!("{claimed} claims for {learners} learners"));
        }
        if figures.repeated_calls > 0 {
            figures.violate(format!(
                "{} steps ran twice without any crash",
                figures.repeated_calls
            ));
        }
        Ok(figures)
    })
    .await
}

// ----- lms-workers -----

async fn lms_workers(args: &Args) -> Result<(), String> {
    let learners = args.scale.lms_worker_learners();
    let leases = TestDatabase::create(&args.postgres)
        .await
        .map_err(|e| format!("lease store server: {e}"))?;
    let lease_url = leases.url.clone();
    let outcome = in_world(
        args,
        WorldOptions {
            name: "lms-workers",
            backend: Backend::Lms,
            learners,
            extra_yaml: format!("lease_store: {lease_url}\n"),
            driver_url: None,
        },
        async |world: &mut World| {
            add_latency(world, 5);
            let (code, out) = world.run(&args.binary, &["db", "migrate"])?;
            if code != 0 {
                return Err(format!("retire db migrate exited {code}: {out}"));
            }
            let mut random = SplitMix64::new(args.seed);
            let started = Instant::now();
            let deadline = started + Duration::from_secs(if args.scale.short { 180 } else { 900 });
            let spawn = |world: &mut World, n: usize| {
                let id = format!("worker-{n:02}");
                world
                    .spawn(
                        &args.binary,
                        &["run", "--concurrency", "16", "--json", "--worker-id", &id],
                    )
                    .map(|(child, _)| (id, child))
            };
            let mut started_workers = 0;
            let mut running = Vec::new();
            for _ in 0..4 {
                started_workers += 1;
                running.push(spawn(world, started_workers)?);
            }
            let mut killed: HashSet<String> = HashSet::new();
            loop {
                if Instant::now() > deadline {
                    return Err(format!(
                        "the queue was not empty after {} s",
                        started.elapsed().as_secs()
                    ));
                }
                if killed.len() < args.scale.lms_worker_kills() {
                    // A seeded moment, then one seeded running worker is SIGKILLed and a new
                    // one started in its place.
                    tokio::time::sleep(Duration::from_millis(50 + random.next_u64() % 400)).await;
                    let victim = (random.next_u64() % running.len() as u64) as usize;
                    let (id, child) = &mut running[victim];
                    if child.try_wait().map_err(|e| e.to_string())?.is_none() {
                        child.kill().map_err(|e| format!("SIGKILL: {e}"))?;
                        let _ = child.wait();
                        killed.insert(id.clone());
                        started_workers += 1;
                        running[victim] = spawn(world, started_workers)?;
                    }
                    continue;
                }
                for (id, child) in &mut running {
                    let status = child.wait().map_err(|e| e.to_string())?;
                    if !status.success() {
                        return Err(format!("{id} exited {status} without being killed"));
                    }
                }
                if world.unfinished().await? == 0 {
                    break;
                }
                // Learners the killed workers held come back when their 10 s leases run out.
                tokio::time::sleep(Duration::from_millis(500)).await;
                running.clear();
                for _ in 0..4 {
                    started_workers += 1;
                    running.push(spawn(world, started_workers)?);
                }
            }
            let mut figures = check_learners(world, Ending::AllComplete, &[]).await;
            let handovers = check_one_worker_at_a_time(world, &killed, &mut figures);
            let refused = world
                .fake
                .status_api_answers()
                .iter()
                .filter(|(_, status)| *status == 400)
                .count();
            println!(
                "   {} SIGKILLs over {started_workers} `retire run` processes (4 at a time, one \
                 lease_store); queue empty after {:.1} s; {handovers} learners handed over from \
                 a killed worker; {} overlapping calls; {refused} refused LMS writes",
                killed.len(),
                started.elapsed().as_secs_f64(),
                world.fake.overlaps().len()
            );
            if killed.len() < args.scale.lms_worker_kills() {
                figures.violate(format!("only {} kills landed", killed.len()));
            }
            Ok(figures)
        },
    )
    .await;
    leases.drop_database().await;
    outcome
}

/// Every learner's step calls come from one worker at a time: it changes worker only when its
/// worker was killed, and never goes back. Returns how many learners changed worker.
fn check_one_worker_at_a_time(
    world: &World,
    killed: &HashSet<String>,
    figures: &mut Figures,
) -> usize {
    let mut drivers: HashMap<String, Vec<String>> = HashMap::new();
    for call in world.fake.calls() {
        if !STEP_PATHS.contains(&call.path) {
            continue;
        }
        let (Some(user), Some(agent)) = (
            call.body.get("username").and_then(|u| u.as_str()),
            call.user_agent.as_deref(),
        ) else {
            figures.violate(format!(
                "a call to {} named no learner or worker",
                call.path
            ));
            continue;
        };
        // `learner-retirement/<version> (<worker id>)`
        let worker = agent
            .rsplit_once('(')
            .map(|(_, w)| w.trim_end_matches(')').to_owned())
            .unwrap_or_default();
        let seen = drivers.entry(user.to_owned()).or_default();
        if seen.last() == Some(&worker) {
            continue;
        }
        if let Some(previous) = seen.last()
            && !killed.contains(previous)
        {
            figures.violate(format!(
                "a learner went from {previous} to {worker}, and {previous} was never killed"
            ));
        }
        if seen.contains(&worker) {
            figures.violate(format!("{worker} came back to a learner after {seen:?}"));
        }
        seen.push(worker);
    }
    drivers.values().filter(|seen| seen.len() > 1).count()
}

// ----- db -----

async fn db(args: &Args, backend: Backend) -> Result<(), String> {
    let learners = args.scale.db_learners();
    let Backend::Postgres(admin) = &backend else {
        return Err("chaos db runs on PostgreSQL".into());
    };
    let upstream = server_address(admin)?;
    let proxy = proxy::CuttingProxy::start(&upstream, args.seed)
        .await
        .map_err(|e| format!("proxy: {e}"))?;
    let proxy_address = proxy.address();
    in_world(
        args,
        WorldOptions {
        name: "db",
        backend: backend.clone(),
        learners,
        extra_yaml: String::new(),
        driver_url: Some(Box::new(move |url: &str| {
            url.replacen(&upstream_host(url), &proxy_address, 1)
        })),
        },
        async |world: &mut World| {
        add_latency(world, 5);
        proxy.start_cutting(Duration::from_millis(100), Duration::from_millis(600));
        let started = Instant::now();
        let mut runs = 0;
        let deadline = started + Duration::from_secs(if args.scale.short { 180 } else { 900 });
        loop {
            runs += 1;
            let (code, _) = world.run(&args.binary, &["run", "--concurrency", "32", "--json"])?;
            if code != 0 {
                println!(
                    "   `retire run` {runs} exited {code} (the database went away for too long)"
                );
            }
            if world.unfinished().await? == 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let cuts = proxy.stop_cutting();
        println!(
            "   {cuts} cuts of every driver connection ({} connections in all) over {:.1} s and \
         {runs} `retire run` process(es)",
            proxy.connections(),
            started.elapsed().as_secs_f64()
        );
        let mut figures = check_learners(world, Ending::AllComplete, &[]).await;
        if cuts == 0 {
            figures.violate("the proxy never cut a connection".into());
        }
        Ok(figures)
    })
    .await
}

/// `postgres://user@host:port/db` → `host:port`.
fn upstream_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

fn server_address(url: &str) -> Result<String, String> {
    let host = upstream_host(url);
    if host.is_empty() {
        return Err(format!("no host in {url}"));
    }
    Ok(if host.contains(':') {
        host
    } else {
        format!("{host}:5432")
    })
}
