//! The deterministic simulation of parked learners (issue 15): the real runner, store and
//! connectors over the in-process fake vendors on a paused clock, through seeded scenarios of
//! batch sizes, vendor 5xx and 429s on the job's start and its polls, jobs that take several
//! polls, crashed processes, and a person who answers between runs. A seed runs twice and
//! must run the same way; `RETIREMENT_JOB_SIM_SEED=N` reproduces one.

use std::time::Duration;

use retirement_core::{COMPLETE, ERRORED, Override, SplitMix64, WaitingOn};
use retirement_http::clock::Clock;
use retirement_http::fake::Fault;
use retirement_store::RetirementStore;

use crate::connectors::{Learner, World, paused};

const DEFAULT_SEEDS: u64 = 64;

#[derive(Debug, Clone)]
struct Scenario {
    learners: i64,
    concurrency: usize,
    polls_to_finish: u32,
    start_faults: f64,
    poll_faults: f64,
    crashes: Vec<Duration>,
    /// Every `leads_every`-th learner has a Salesforce Lead (a person must act).
    leads_every: i64,
}

impl Scenario {
    fn from_seed(seed: u64) -> Scenario {
        let mut r = SplitMix64::new(seed);
        let mut pick = |n: u64| r.next_u64() % n;
        Scenario {
            learners: 1 + pick(12) as i64,
            concurrency: 1 + pick(8) as usize,
            polls_to_finish: 1 + pick(3) as u32,
            start_faults: pick(4) as f64 * 0.1,
            poll_faults: pick(4) as f64 * 0.1,
            crashes: (0..pick(3))
                .map(|_| Duration::from_millis(50 + pick(3000)))
                .collect(),
            leads_every: 1 + pick(3) as i64,
        }
    }
}

/// What a seed left behind, for the promises and the digest.
struct Outcome {
    violations: Vec<String>,
    digest: u64,
    /// Learners COMPLETE, processes killed, job polls and Tasks: the seeds must exercise them.
    completed: usize,
    crashed: usize,
    polls: usize,
    tasks: usize,
}

fn digest(text: &str, into: &mut u64) {
    for byte in text.bytes().chain([0xff]) {
        *into ^= u64::from(byte);
        *into = into.wrapping_mul(0x0100_0000_01b3);
    }
}

fn fault_mix(rate: f64) -> Vec<Fault> {
    if rate <= 0.0 {
        return Vec::new();
    }
    vec![
        Fault {
            status: Some(503),
            rate: rate / 2.0,
            ..Fault::default()
        },
        Fault {
            status: Some(429),
            retry_after: Some(Duration::from_secs(2)),
            rate: rate / 2.0,
            ..Fault::default()
        },
    ]
}

async fn simulate(seed: u64) -> Outcome {
    let s = Scenario::from_seed(seed);
    let world = World::new(s.learners).await;
    world.fake.with_vendors(|v| {
        v.polls_to_finish = s.polls_to_finish;
        for n in 0..s.learners {
            if n % s.leads_every != 0 {
                v.salesforce_leads.remove(&Learner::new(n).email);
            }
        }
    });
    world
        .fake
        .set_fault_mix("/segment/regulations", fault_mix(s.start_faults));
    for n in 1..=40 {
        world.fake.set_fault_mix(
            &format!("/segment/regulations/reg-{n}"),
            fault_mix(s.poll_faults),
        );
    }
    let mut violations = Vec::new();
    let mut crashes = s.crashes.iter().copied();
    let mut crashed = 0;
    let operator = Override {
        operator: "sim-person".into(),
        reason: "the Lead was erased".into(),
    };
    let mut finished = false;
    for process in 1..=60u64 {
        let crash = crashes.next();
        if world
            .run_crashing(process, s.concurrency, crash)
            .await
            .is_none()
        {
            crashed += 1;
        }
        // The person answers: every learner waiting on a person is marked done.
        for (id, wait) in world.store.waits().await.expect("waits") {
            let record = world.store.get(id).await.expect("a learner");
            if matches!(wait.on, WaitingOn::Person { .. }) && wait.applies_to(&record) {
                world
                    .store
                    .force(id, "SALESFORCE_COMPLETE", &operator, world.clock.now())
                    .await
                    .expect("done");
            }
        }
        let states = world.states().await;
        if states.iter().all(|s| s == COMPLETE || s == ERRORED) {
            finished = true;
            break;
        }
        // Past the next poll, and past any lease a crashed process left.
        tokio::time::advance(Duration::from_secs(150)).await;
    }
    if !finished {
        violations.push(format!("not finished: {:?}", world.states().await));
    }
    let vendors = world.fake.vendors();
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for n in 0..s.learners {
        let learner = world
            .store
            .find_by_username(&Learner::new(n).username)
            .await
            .expect("a learner");
        let name = format!("learner {n}");
        digest(learner.current_state(), &mut hash);
        for entry in learner.log() {
            digest(&entry.text, &mut hash);
            digest(&entry.at.to_rfc3339(), &mut hash);
        }
        match learner.current_state() {
            COMPLETE => {
                // SEGMENT completed only on a poll that said FINISHED, for the job this
                // learner recorded since it last entered RETIRING_SEGMENT.
                let log = learner.log();
                let entered = log
                    .iter()
                    .rposition(|e| e.text == "Starting: RETIRING_SEGMENT")
                    .unwrap_or(0);
                let started: Vec<&str> = log[entered..]
                    .iter()
                    .filter_map(|e| e.text.strip_prefix("Job started: SEGMENT "))
                    .filter_map(|rest| rest.split(';').next())
                    .collect();
                let completed = log[entered..]
                    .iter()
                    .find(|e| e.to.starts_with("SEGMENT_COMPLETE"))
                    .map(|e| e.text.as_str())
                    .unwrap_or_default();
                match started.last() {
                    Some(job) if completed.contains(&format!("job {job} FINISHED")) => {
                        match vendors.segment_regulations.get(*job) {
                            Some((_, status)) if status == "FINISHED" => {}
                            other => violations.push(format!("{name}: {job} is {other:?}")),
                        }
                    }
                    _ => violations.push(format!(
                        "{name}: SEGMENT completed without its job finishing: {started:?} / {completed:?}"
                    )),
                }
            }
            ERRORED => {
                let text = learner.log().last().map(|e| e.text.as_str()).unwrap_or("");
                let explained = text.contains("Server Error") || text.contains("Client Error");
                if !explained {
                    violations.push(format!("{name} ERRORED unexplained: {text}"));
                }
            }
            other => violations.push(format!("{name} left in {other}")),
        }
    }
    // A person is asked once per learner with a Lead, again only after a crash lost the
    // record of asking.
    let with_leads = (0..s.learners).filter(|n| n % s.leads_every == 0).count();
    if vendors.salesforce_tasks.len() > with_leads + crashed {
        violations.push(format!(
            "{} Tasks for {with_leads} Leads and {crashed} crashes",
            vendors.salesforce_tasks.len()
        ));
    }
    for username in world.fake.overlaps() {
        violations.push(format!("two calls overlapped for {username}"));
    }
    let calls = world.fake.calls();
    for call in &calls {
        digest(
            &format!("{} {} {}", call.method, call.path, call.status),
            &mut hash,
        );
    }
    let completed = world
        .states()
        .await
        .iter()
        .filter(|s| s.as_str() == COMPLETE)
        .count();
    Outcome {
        violations,
        digest: hash,
        completed,
        crashed,
        polls: calls
            .iter()
            .filter(|c| c.method == "GET" && c.path.starts_with("/segment/regulations/"))
            .count(),
        tasks: vendors.salesforce_tasks.len(),
    }
}

fn run_seed(seed: u64) -> Outcome {
    paused().block_on(simulate(seed))
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("RETIREMENT_JOB_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return vec![seed];
    }
    let count = std::env::var("RETIREMENT_JOB_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    (1..=count).collect()
}

#[test]
fn parked_learners_keep_every_promise_under_faults_and_crashes() {
    let mut failures = String::new();
    let (mut completed, mut crashed, mut polls, mut tasks) = (0, 0, 0, 0);
    let seeds = seeds();
    for &seed in &seeds {
        let outcome = run_seed(seed);
        completed += outcome.completed;
        crashed += outcome.crashed;
        polls += outcome.polls;
        tasks += outcome.tasks;
        if !outcome.violations.is_empty() {
            failures.push_str(&format!(
                "seed {seed} ({:?}): {:?}\n  reproduce: RETIREMENT_JOB_SIM_SEED={seed} cargo test -p retirement-http --test it sim_jobs\n",
                Scenario::from_seed(seed),
                outcome.violations
            ));
        }
    }
    assert!(failures.is_empty(), "{failures}");
    eprintln!(
        "{} seeds: {completed} learners completed, {crashed} processes killed, {polls} job polls, {tasks} Tasks",
        seeds.len()
    );
    if seeds.len() >= DEFAULT_SEEDS as usize {
        assert!(completed > 0 && crashed > 0 && polls > 0 && tasks > 0);
    }
}

#[test]
fn a_parked_learner_seed_runs_the_same_way_twice() {
    for seed in [3, 17, 41] {
        assert_eq!(run_seed(seed).digest, run_seed(seed).digest, "seed {seed}");
    }
}
