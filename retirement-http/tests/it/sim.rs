//! The deterministic simulation of the driver runtime (issue 13): the real `Runner` with the real
//! stores — the SQLite `DieselStore`, and the `LmsStore` over the fake LMS — on a current-thread
//! tokio runtime whose clock is paused (it jumps to the next timer), the fake edX answering
//! inside the process (no socket), SQLite running on the calling task. Nothing but the seed
//! decides what happens, so a failing seed reproduces exactly:
//!
//! `RETIREMENT_SIM_SEED=<seed> cargo test -p retirement-http --test it sim::`
//!
//! Each seed draws a scenario (store, learners, concurrency, latencies, 5xx, lost
//! acknowledgements, hangs, crashes at random instants: the runner is dropped mid-flight and a
//! new process started) and checks every promise of the chaos runs afterwards. `cargo test` runs
//! [`DEFAULT_SEEDS`] seeds; `RETIREMENT_SIM_SEEDS=N` (what `cargo xtask sim --seeds N` sets) more.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use retirement_core::{
    COMPLETE, DriverOptions, ERRORED, OriginalIdentity, Pipeline, RetiredIdConfig, SplitMix64,
    StateTable,
};
use retirement_http::Steps;
use retirement_http::catalog;
use retirement_http::clock::TokioClock;
use retirement_http::fake::{FakeConfig, FakeEdx, Fault, IN_PROCESS_URL};
use retirement_http::runtime::{NoObserver, RunOptions, RunSummary, Runner};
use retirement_http::{ClientCredentials, HttpOptions, LmsStore, ServiceClients};
use retirement_store::{DieselStore, NewRetirement, RetirementStore, StoreOptions};

/// Seeds `cargo test` runs.
pub(crate) const DEFAULT_SEEDS: u64 = 300;

const UPDATE_PATH: &str = "/api/user/v1/accounts/update_retirement_status/";
const QUEUE_PATH: &str = "/api/user/v1/accounts/retirement_queue/";

/// Which store the runner drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Backend {
    Sqlite,
    Lms,
    /// Several hosts against one LMS, fenced by a shared lease table (`lease_store:`).
    LmsHosts(usize),
}

/// What one seed simulates.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub(crate) seed: u64,
    pub(crate) backend: Backend,
    pub(crate) learners: usize,
    pub(crate) concurrency: usize,
    /// Service faults: the share of calls answered 500, broken off, or never answered.
    pub(crate) step_5xx: f64,
    pub(crate) step_reset: f64,
    pub(crate) step_hang: f64,
    /// LMS status API faults (LMS store only): 503s, lost acknowledgements, hangs.
    pub(crate) lms_503: f64,
    pub(crate) lms_lost_ack: f64,
    pub(crate) lms_hang: f64,
    /// Crashes: the runner is dropped this long after its process started.
    pub(crate) crashes: Vec<Duration>,
    /// One service down for a while, then back: (stage, from, for how long, resets or 503s).
    pub(crate) outage: Option<Outage>,
}

/// A service down for a while: every call of `stage` fails from `from` for `length`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outage {
    pub(crate) stage: usize,
    pub(crate) from: Duration,
    pub(crate) length: Duration,
    /// Connections broken off (else 503s).
    pub(crate) resets: bool,
}

impl Scenario {
    /// The scenario of `seed`.
    pub(crate) fn from_seed(seed: u64) -> Scenario {
        let mut r = SplitMix64::new(seed);
        let mut pick = |n: u64| r.next_u64() % n;
        let backend = match pick(3) {
            0 => Backend::Sqlite,
            1 => Backend::Lms,
            _ => Backend::LmsHosts(2 + pick(3) as usize),
        };
        let learners = 4 + pick(37) as usize;
        let concurrency = [1, 2, 4, 8, 16, 32][pick(6) as usize];
        // A third of the seeds have no faults at all, a third no crashes.
        let faulty = pick(3) != 0;
        let share = |p: u64, max: f64| if faulty { max * p as f64 / 100.0 } else { 0.0 };
        let step_5xx = share(pick(101), 0.2);
        let step_reset = share(pick(101), 0.05);
        let step_hang = share(pick(101), 0.02);
        let (lms_503, lms_lost_ack, lms_hang) = if backend != Backend::Sqlite {
            (
                share(pick(101), 0.05),
                share(pick(101), 0.05),
                share(pick(101), 0.01),
            )
        } else {
            (0.0, 0.0, 0.0)
        };
        // A quarter of the seeds have an outage (and no other fault that could ERROR).
        let outage = (pick(4) == 0).then(|| Outage {
            stage: pick(6) as usize,
            from: Duration::from_millis(pick(3_000)),
            length: Duration::from_secs(1 + pick(2_400)),
            resets: pick(2) == 0,
        });
        let (step_5xx, step_hang) = if outage.is_some() {
            (0.0, 0.0)
        } else {
            (step_5xx, step_hang)
        };
        let crashes = match pick(3) {
            0 => Vec::new(),
            n => (0..n + pick(2))
                .map(|_| Duration::from_millis(pick(4_000)))
                .collect(),
        };
        Scenario {
            seed,
            backend,
            learners,
            concurrency,
            step_5xx,
            step_reset,
            step_hang,
            lms_503,
            lms_lost_ack,
            lms_hang,
            crashes,
            outage,
        }
    }

    /// Whether a learner may end ERRORED: only where calls can fail past every retry (a
    /// timeout twice in a row, or 5xx through the whole budget).
    fn may_error(&self) -> bool {
        self.step_hang > 0.0 || self.step_5xx > 0.0
    }
}

/// What a seed came to.
#[derive(Debug)]
pub(crate) struct SimReport {
    /// A digest of everything observable, in order: the same seed gives the same digest.
    pub(crate) digest: u64,
    /// Promises broken.
    pub(crate) violations: Vec<String>,
    pub(crate) completed: usize,
    pub(crate) errored: usize,
    /// Runner processes started (1 + crashes taken + restarts after lease expiry).
    pub(crate) processes: usize,
    /// The simulated time the whole run took.
    pub(crate) simulated: Duration,
}

/// Runs one seed on its own paused current-thread runtime.
pub(crate) fn run_seed(seed: u64) -> SimReport {
    let scenario = Scenario::from_seed(seed);
    // The runtime's own log, for a reproduced seed (no wall time: the clock is simulated).
    let _log = std::env::var_os("RETIREMENT_SIM_LOG").map(|_| {
        tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .without_time()
                .with_max_level(tracing::Level::DEBUG)
                .with_test_writer()
                .finish(),
        )
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(simulate(scenario))
}

/// [`run_seed`] on its own thread, failing the test if the seed has not finished after a
/// minute of real time (a task spinning without yielding to the paused clock).
fn run_seed_watched(seed: u64) -> SimReport {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run_seed(seed));
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(report) => report,
        Err(e) => panic!(
            "seed {seed} did not finish within a minute of real time ({e}): {:?}",
            Scenario::from_seed(seed)
        ),
    }
}

/// A fixed start, so every seed's times (and digest) are the same on every machine and day.
fn epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-05T00:00:00Z")
        .expect("a valid time")
        .with_timezone(&Utc)
}

/// A process's clients; `worker` goes into the `User-Agent`, as `retire` sends it.
fn clients(fake: &FakeEdx, worker: &str) -> Arc<ServiceClients> {
    let base_urls: BTreeMap<String, String> = ["lms", "ecommerce"]
        .iter()
        .map(|key| (key.to_string(), IN_PROCESS_URL.to_owned()))
        .collect();
    let credentials = ClientCredentials {
        client_id: "retirement-worker".into(),
        client_secret: "s3cret".into(),
    };
    let options = HttpOptions {
        request_timeout: Duration::from_secs(30),
        user_agent: format!("sim ({worker})"),
        ..HttpOptions::default()
    };
    Arc::new(
        ServiceClients::with_transport(
            fake.transport(),
            base_urls,
            credentials,
            Vec::new(),
            &options,
        )
        .expect("clients"),
    )
}

/// Sets every path's faults; returns each step path's mix (to restore after an outage).
fn set_faults(fake: &FakeEdx, s: &Scenario, pipeline: &Pipeline) -> Vec<(String, Vec<Fault>)> {
    let mut step_mixes = Vec::new();
    let latency = |ms: u64, rate: f64| Fault {
        latency: Duration::from_millis(ms),
        rate,
        ..Fault::default()
    };
    for stage in pipeline.stages() {
        let op = catalog::find(&stage.service, &stage.operation).expect("a catalogued stage");
        let path = format!("/{}", op.path);
        let mut mix = Vec::new();
        for (rate, fault) in [
            (
                s.step_5xx,
                Fault {
                    status: Some(500),
                    body: Some("simulated outage".into()),
                    ..Fault::default()
                },
            ),
            (
                s.step_reset,
                Fault {
                    reset: true,
                    ..Fault::default()
                },
            ),
            (
                s.step_hang,
                Fault {
                    hang: true,
                    ..Fault::default()
                },
            ),
        ] {
            if rate > 0.0 {
                mix.push(Fault { rate, ..fault });
            }
        }
        // Every other call takes 5–40 ms: the bands above come first.
        mix.push(latency(5, 0.3));
        mix.push(latency(20, 0.3));
        mix.push(latency(40, 0.3));
        fake.set_fault_mix(&path, mix.clone());
        step_mixes.push((path, mix));
    }
    if s.backend != Backend::Sqlite {
        let mut update = Vec::new();
        for (rate, fault) in [
            (
                s.lms_503,
                Fault {
                    status: Some(503),
                    ..Fault::default()
                },
            ),
            (
                s.lms_lost_ack,
                Fault {
                    reset: true,
                    ..Fault::default()
                },
            ),
            (
                s.lms_hang,
                Fault {
                    hang: true,
                    ..Fault::default()
                },
            ),
        ] {
            if rate > 0.0 {
                update.push(Fault { rate, ..fault });
            }
        }
        update.push(latency(10, 0.5));
        update.push(latency(25, 0.3));
        fake.set_fault_mix(UPDATE_PATH, update);
        let mut queue = Vec::new();
        if s.lms_503 > 0.0 {
            queue.push(Fault {
                status: Some(503),
                rate: s.lms_503,
                ..Fault::default()
            });
        }
        // Listings are slow (a real LMS serialises every row): learners finish meanwhile.
        queue.push(latency(30, 0.5));
        queue.push(latency(80, 0.4));
        fake.set_fault_mix(QUEUE_PATH, queue);
    }
    step_mixes
}

async fn simulate(s: Scenario) -> SimReport {
    let started = tokio::time::Instant::now();
    let clock = Arc::new(TokioClock::starting_at(epoch()));
    let (table, pipeline) = Pipeline::six_stage_example();
    let pipeline = Arc::new(pipeline);
    let store = Arc::new(
        DieselStore::open(
            "sqlite://:memory:",
            &StoreOptions {
                sqlite_inline: true,
                ..StoreOptions::default()
            },
        )
        .await
        .expect("an in-memory store"),
    );
    store.migrate().await.expect("migrations");
    let names: Vec<String> = table.names().map(str::to_owned).collect();
    store.sync_states(&names, false).await.expect("states");
    let ids = RetiredIdConfig::new(vec!["sim-salt".into()]).expect("a salt");
    let mut usernames = Vec::new();
    for n in 0..s.learners {
        let original = OriginalIdentity {
            username: format!("sim-learner-{n}"),
            email: format!("sim-learner-{n}@example.com"),
            name: format!("Sim Learner {n}"),
        };
        usernames.push(original.username.clone());
        store
            .enqueue(
                NewRetirement::new(original, Some(n as i64 + 1), &ids),
                epoch() - TimeDelta::days(30),
            )
            .await
            .expect("enqueue");
    }
    let fake = FakeEdx::in_process(FakeConfig {
        lms_store: Some(store.clone()),
        seed: s.seed,
        ..FakeConfig::default()
    });
    fake.clock().follow(clock.clone());
    let step_mixes = set_faults(&fake, &s, &pipeline);
    let fake = Arc::new(fake);
    if let Some(outage) = s.outage {
        let (path, mix) = step_mixes[outage.stage].clone();
        let fake = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(outage.from).await;
            let down = Fault {
                status: (!outage.resets).then_some(503),
                reset: outage.resets,
                ..Fault::default()
            };
            fake.set_fault(&path, Some(down));
            tokio::time::sleep(outage.length).await;
            fake.set_fault_mix(&path, mix);
        });
    }

    let lease_for = TimeDelta::minutes(2);
    // The lease table the hosts share (`lease_store:`), a database of its own.
    let lease_table = match s.backend {
        Backend::LmsHosts(_) => {
            let table = DieselStore::open(
                "sqlite://:memory:",
                &StoreOptions {
                    sqlite_inline: true,
                    ..StoreOptions::default()
                },
            )
            .await
            .expect("an in-memory lease store");
            table.migrate().await.expect("migrations");
            Some(Arc::new(table))
        }
        _ => None,
    };
    let hosts = match s.backend {
        Backend::LmsHosts(n) => n,
        _ => 1,
    };
    let mut summaries: Vec<RunSummary> = Vec::new();
    let mut crashes = s.crashes.iter().copied();
    let mut processes = 0usize;
    let mut violations = Vec::new();
    loop {
        // A generation: `hosts` processes at once; a crash kills the first of them.
        let waiting = open_learners(&store, &usernames).await;
        let mut runs = Vec::new();
        for _ in 0..hosts {
            processes += 1;
            // A new process: new clients (no token), a new LMS store (no in-process leases).
            let worker = format!("sim-worker-{processes}");
            let clients = clients(&fake, &worker);
            let runner_store: Arc<dyn RetirementStore> = match (s.backend, &lease_table) {
                (Backend::Sqlite, _) => store.clone(),
                (_, None) => Arc::new(LmsStore::new(clients.clone()).expect("an LMS store")),
                (_, Some(table)) => Arc::new(
                    LmsStore::new(clients.clone())
                        .expect("an LMS store")
                        .with_leases(table.clone()),
                ),
            };
            let runner = Runner::new(
                runner_store,
                Arc::new(Steps::new(clients, None, s.seed)),
                pipeline.clone(),
                RunOptions {
                    worker,
                    concurrency: s.concurrency,
                    lease_for,
                    seed: s.seed ^ processes as u64,
                    driver: DriverOptions::default(),
                    clock: clock.clone(),
                    ..RunOptions::default()
                },
            );
            let (keep, stop) = tokio::sync::watch::channel(false);
            let run = tokio::spawn(async move { runner.run(stop, Arc::new(NoObserver)).await });
            runs.push((processes, run, keep));
        }
        let crash = crashes.next();
        let mut finished = true;
        let first_summary = summaries.len();
        for (n, (process, mut run, _keep)) in runs.into_iter().enumerate() {
            let ended = match crash {
                Some(after) if n == 0 => {
                    tokio::select! {
                        biased;
                        ended = &mut run => Some(ended),
                        () = tokio::time::sleep(after) => {
                            run.abort();
                            let _ = run.await;
                            None
                        }
                    }
                }
                _ => Some(run.await),
            };
            finished &= ended.is_some();
            match ended {
                Some(Ok(Ok(summary))) => summaries.push(summary),
                Some(Ok(Err(e))) => {
                    violations.push(format!("process {process}: the run failed: {e}"))
                }
                Some(Err(e)) => {
                    violations.push(format!("process {process}: the runner panicked: {e}"))
                }
                None => {}
            }
        }
        // A host whose first look found every candidate taken by the others looks again
        // instead of ending its run: with more learners than the hosts can hold (their slots
        // plus the few each claims ahead), each gets some.
        let holds = s.concurrency + s.concurrency / 8 + 1;
        if hosts > 1
            && crash.is_none()
            && waiting > hosts * holds
            && summaries[first_summary..].iter().any(|x| x.claimed == 0)
        {
            violations.push(format!(
                "a host claimed nothing while {waiting} learners waited for {hosts} × {holds} holds"
            ));
        }
        let open = open_learners(&store, &usernames).await;
        if open == 0 {
            break;
        }
        if s.crashes.is_empty() && s.outage.is_none() {
            // Nothing crashed, so nothing is leased by a dead process, and no learner waits for
            // a service past the outage patience: a run ends only when the queue is empty (a
            // host that found every candidate taken by the others must look again, not stop).
            violations.push(format!(
                "{open} learners still open after a crash-free generation of {hosts} processes"
            ));
        }
        if processes > (16 + s.crashes.len()) * hosts {
            violations.push(format!(
                "{open} learners still open after {processes} processes"
            ));
            break;
        }
        if finished {
            // The run found nothing more to claim: the rest is leased by a dead process.
            tokio::time::sleep(
                (lease_for + TimeDelta::seconds(1))
                    .to_std()
                    .unwrap_or_default(),
            )
            .await;
        }
    }

    check(
        &s,
        &store,
        &fake,
        &pipeline,
        &table,
        &usernames,
        &summaries,
        &mut violations,
    )
    .await;
    let mut completed = 0;
    let mut errored = 0;
    let mut digest = Digest::default();
    for username in &usernames {
        let r = store.find_by_username(username).await.expect("a learner");
        match r.current_state() {
            COMPLETE => completed += 1,
            ERRORED => errored += 1,
            _ => {}
        }
        digest.add(r.current_state());
        for entry in r.log() {
            digest.add(&entry.to);
            digest.add(&entry.at.timestamp_micros().to_string());
        }
    }
    for call in fake.calls() {
        digest.add(&format!(
            "{} {} {} {:?} {}",
            call.method, call.path, call.status, call.learner_state, call.body
        ));
    }
    for (path, status) in fake.status_api_answers() {
        digest.add(&format!("{path} {status}"));
    }
    SimReport {
        digest: digest.0,
        violations,
        completed,
        errored,
        processes,
        simulated: started.elapsed(),
    }
}

async fn open_learners(store: &DieselStore, usernames: &[String]) -> usize {
    let mut open = 0;
    for username in usernames {
        let r = store.find_by_username(username).await.expect("a learner");
        if ![COMPLETE, ERRORED].contains(&r.current_state()) {
            open += 1;
        }
    }
    open
}

/// Every promise of the chaos runs, checked on the final store and the fake's records.
#[allow(clippy::too_many_arguments)]
async fn check(
    s: &Scenario,
    store: &DieselStore,
    fake: &FakeEdx,
    pipeline: &Pipeline,
    table: &StateTable,
    usernames: &[String],
    summaries: &[RunSummary],
    violations: &mut Vec<String>,
) {
    // Which stage each step path belongs to.
    let stage_paths: Vec<(String, &retirement_core::Stage)> = pipeline
        .stages()
        .iter()
        .map(|stage| {
            let op = catalog::find(&stage.service, &stage.operation).expect("catalogued");
            (format!("/{}", op.path), stage)
        })
        .collect();
    let calls = fake.calls();
    let mut ok_calls: HashMap<(&str, &str), usize> = HashMap::new();
    for call in &calls {
        let Some((path, stage)) = stage_paths.iter().find(|(p, _)| *p == call.path) else {
            continue;
        };
        let username = call
            .body
            .get("username")
            .and_then(|u| u.as_str())
            .unwrap_or("?");
        // No step outside its working state.
        if call.learner_state.as_deref() != Some(stage.working_state.as_str()) {
            violations.push(format!(
                "{path} called for {username} in {:?}, not {}",
                call.learner_state, stage.working_state
            ));
        }
        if (200..300).contains(&call.status) {
            let name = usernames
                .iter()
                .find(|u| *u == username)
                .map(String::as_str);
            *ok_calls
                .entry((name.unwrap_or("?"), path.as_str()))
                .or_default() += 1;
        }
    }
    // No two calls for one learner at once.
    for username in fake.overlaps() {
        violations.push(format!("two calls overlapped for {username}"));
    }
    // Several hosts: a learner is driven by one worker at a time. Without crashes or outages
    // (which hand learners over on purpose), one worker does all of a learner's calls; with
    // crashes, a worker never calls for a learner again once another took it over.
    if matches!(s.backend, Backend::LmsHosts(_)) && s.outage.is_none() {
        let mut workers: HashMap<&str, Vec<&str>> = HashMap::new();
        for call in &calls {
            if !stage_paths.iter().any(|(p, _)| *p == call.path) {
                continue;
            }
            let (Some(user), Some(agent)) = (
                call.body.get("username").and_then(|u| u.as_str()),
                call.user_agent.as_deref(),
            ) else {
                continue;
            };
            let seen = workers.entry(user).or_default();
            if seen.last() != Some(&agent) {
                if seen.contains(&agent) {
                    violations.push(format!("{agent} came back to {user} after {seen:?}"));
                }
                seen.push(agent);
            }
        }
        for (user, seen) in workers {
            if s.crashes.is_empty() && seen.len() > 1 {
                violations.push(format!("{user} was driven by {seen:?} without any crash"));
            }
        }
    }
    for username in usernames {
        let r = store.find_by_username(username).await.expect("a learner");
        let state = r.current_state();
        // Every learner ends COMPLETE, or ERRORED where the faults allow it, with the failure
        // in its log.
        match state {
            COMPLETE => {
                // Every stage was called with success.
                for (path, _) in &stage_paths {
                    if !ok_calls.contains_key(&(username.as_str(), path.as_str())) {
                        violations
                            .push(format!("{username} is COMPLETE but {path} never succeeded"));
                    }
                }
            }
            ERRORED => {
                let text = r.log().last().map(|e| e.text.as_str()).unwrap_or_default();
                let explained = text.starts_with("Timeout error") || text.contains("Server Error");
                if !s.may_error() || !explained {
                    violations.push(format!("{username} ERRORED unexplained: {text}"));
                }
            }
            other => violations.push(format!("{username} left in {other}")),
        }
        // The log is a path through the pipeline: forward only, each completion right after
        // its working state.
        let mut last_order = None;
        let mut previous: Option<&str> = None;
        for entry in r.log() {
            // `STATE (step N)`, as upstream writes it.
            let to = entry.to.split(" (step").next().unwrap_or_default();
            if to == ERRORED {
                break;
            }
            let order = table.get(to).map(|st| st.execution_order);
            if order <= last_order {
                violations.push(format!("{username}'s log moves back to {to}"));
            }
            if let Some(stage) = pipeline.stages().iter().find(|st| st.complete_state == to)
                && previous != Some(stage.working_state.as_str())
            {
                violations.push(format!("{username}'s log reaches {to} from {previous:?}"));
            }
            last_order = order;
            previous = Some(to);
        }
    }
    // A run without crashes refuses no write: no lost lease, no LMS 400 on a move.
    if s.crashes.is_empty() {
        let lost: u64 = summaries.iter().map(|x| x.lease_lost).sum();
        if lost > 0 {
            violations.push(format!("{lost} lost leases in a run without crashes"));
        }
        let refused = fake
            .status_api_answers()
            .iter()
            .filter(|(path, status)| path == UPDATE_PATH && *status == 400)
            .count();
        if refused > 0 {
            violations.push(format!(
                "{refused} refused LMS writes in a run without crashes"
            ));
        }
    }
}

/// FNV-1a over the strings added, with a separator.
#[derive(Default)]
struct Digest(u64);

impl Digest {
    fn add(&mut self, text: &str) {
        if self.0 == 0 {
            self.0 = 0xcbf2_9ce4_8422_2325;
        }
        for byte in text.bytes().chain([0xff]) {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("RETIREMENT_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return vec![seed];
    }
    let count = std::env::var("RETIREMENT_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    (1..=count).collect()
}

#[test]
fn every_seed_keeps_every_promise() {
    let mut failures = String::new();
    let (mut completed, mut errored, mut processes, mut simulated) = (0, 0, 0, Duration::ZERO);
    let seeds = seeds();
    for &seed in &seeds {
        let report = run_seed_watched(seed);
        completed += report.completed;
        errored += report.errored;
        processes += report.processes;
        simulated += report.simulated;
        if !report.violations.is_empty() {
            let _ = writeln!(
                failures,
                "seed {seed} ({:?}):\n  {}",
                Scenario::from_seed(seed),
                report.violations.join("\n  ")
            );
        }
    }
    println!(
        "simulation: {} seeds, {completed} learners COMPLETE, {errored} ERRORED, {processes} runner processes, {:.0} s simulated",
        seeds.len(),
        simulated.as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "broken promises (reproduce one with RETIREMENT_SIM_SEED=<seed>):\n{failures}"
    );
}

#[test]
fn a_seed_reproduces_exactly() {
    // One seed of each kind: SQLite, LMS and several hosts on one LMS, with faults and crashes.
    let mut kinds = HashMap::new();
    for seed in 1..200u64 {
        let s = Scenario::from_seed(seed);
        let backend = match s.backend {
            Backend::LmsHosts(_) => Backend::LmsHosts(0),
            other => other,
        };
        let key = (backend, !s.crashes.is_empty(), s.step_5xx > 0.0);
        kinds.entry(key).or_insert(seed);
    }
    assert_eq!(kinds.len(), 12, "the seeds cover every kind of scenario");
    for seed in kinds.into_values() {
        let (a, b) = (run_seed(seed), run_seed(seed));
        assert_eq!(a.digest, b.digest, "seed {seed} ran differently twice");
        assert_eq!(a.violations, b.violations);
    }
}
