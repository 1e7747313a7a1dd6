//! Throughput of the pure core, run with `cargo bench -p retirement-core`.
//!
//! - `check_advance`: validated transitions per second (the ordering and dead-end checks alone).
//! - `advance_with_log`: transitions applied to a record, log entry included, per second.
//! - `full_pipeline_plan`: complete six-stage runs of the driver machine per second, every
//!   action polled and every input fed (13 state writes, 6 calls, the finish).

use std::hint::black_box;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use divan::Bencher;
use divan::counter::ItemsCount;
use retirement_core::{
    Action, Actor, DriverOptions, Input, Machine, OriginalIdentity, Pipeline, Retirement,
    RetirementId, SplitMix64, StateTable,
};

fn main() {
    divan::main();
}

/// The states a successful retirement walks through in the upstream default table: PENDING,
/// every working and completion state, then COMPLETE (ERRORED and ABORTED are dead ends).
fn success_path(table: &StateTable) -> Vec<String> {
    table
        .states()
        .iter()
        .filter(|s| !s.dead_end || s.name == "COMPLETE")
        .map(|s| s.name.clone())
        .collect()
}

/// Every forward step of the success path.
fn forward_chain(table: &StateTable) -> Vec<(String, String)> {
    success_path(table)
        .windows(2)
        .map(|w| (w[0].clone(), w[1].clone()))
        .collect()
}

/// A learner freshly queued in PENDING.
fn pending_learner(table: &StateTable, now: DateTime<Utc>) -> Retirement {
    Retirement::create(
        RetirementId(1),
        None,
        OriginalIdentity {
            username: "u".into(),
            email: "e@example.invalid".into(),
            name: String::new(),
        },
        "retired__user_x".into(),
        "retired__user_x@retired.invalid".into(),
        table,
        now,
    )
    .expect("the table has an initial state")
}

#[divan::bench]
fn check_advance(bencher: Bencher) {
    let table = StateTable::upstream_default();
    let chain = forward_chain(&table);
    bencher
        .counter(ItemsCount::new(chain.len()))
        .bench_local(|| {
            for (from, to) in &chain {
                assert!(table.check_advance(black_box(from), black_box(to)).is_ok());
            }
        });
}

#[divan::bench]
fn advance_with_log(bencher: Bencher) {
    let table = StateTable::upstream_default();
    let names = success_path(&table);
    let now = Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0).unwrap();
    let fresh = pending_learner(&table, now);
    bencher
        .counter(ItemsCount::new(names.len() - 1))
        .with_inputs(|| fresh.clone())
        .bench_local_values(|mut record| {
            for name in &names[1..] {
                record
                    .advance(&table, name, "Starting", Actor::Driver, now)
                    .unwrap();
            }
            record
        });
}

#[divan::bench]
fn full_pipeline_plan(bencher: Bencher) {
    let (table, pipeline) = Pipeline::six_stage_example();
    let pipeline = Arc::new(pipeline);
    let now = Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0).unwrap();
    let record = pending_learner(&table, now);
    let options = DriverOptions::default();
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        let mut machine = Machine::start(
            &record,
            Arc::clone(&pipeline),
            options.clone(),
            SplitMix64::new(1),
            now,
        );
        loop {
            let input = match machine.poll_action() {
                Some(Action::SetState { .. }) => Input::StateWritten,
                Some(Action::Call { .. }) => Input::Response {
                    status: 204,
                    body: String::new(),
                    retry_after: None,
                },
                Some(Action::Finish(outcome)) => break black_box(outcome),
                Some(_) => continue,
                None => unreachable!("the machine always has a next action"),
            };
            machine.handle_input(now, input).unwrap();
        }
    });
}
