//! Embedding `retirement-core`: drive one learner through the six-stage pipeline with your own
//! I/O loop and your own clock. The ecommerce service fails twice with 503 before it answers;
//! the machine asks for each retry as `Action::RetryAt`, and the loop moves its clock there
//! and feeds `Input::Tick`. Nothing here sleeps: time is a value you hand in.
//!
//! Run it with `cargo run -p retirement-core --example drive_one_learner`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use retirement_core::{
    Action, Actor, CoreError, DriverOptions, Input, Machine, OriginalIdentity, Outcome, Pipeline,
    RetiredIdConfig, Retirement, RetirementId, SplitMix64,
};

fn main() -> Result<(), CoreError> {
    let mut now: DateTime<Utc> = "2026-12-04T09:00:00Z".parse().expect("a valid time");
    let (table, pipeline) = Pipeline::six_stage_example();
    let ids = RetiredIdConfig::new(vec!["example-salt".into()])?;
    let original = OriginalIdentity {
        username: "grace".into(),
        email: "grace@example.org".into(),
        name: "Grace Hopper".into(),
    };
    let mut learner = Retirement::create(
        RetirementId(7),
        Some(1906),
        original.clone(),
        ids.retired_username(&original.username),
        ids.retired_email(&original.email),
        &table,
        now,
    )?;
    let mut machine = Machine::start(
        &learner,
        Arc::new(pipeline),
        DriverOptions::default(),
        SplitMix64::new(2026),
        now,
    );
    let mut ecommerce_failures_left = 2;
    let outcome = loop {
        let Some(action) = machine.poll_action() else {
            unreachable!("a running machine always has a next action");
        };
        match action {
            Action::SetState {
                new_state,
                response,
            } => {
                learner.advance(&table, &new_state, &response, Actor::Driver, now)?;
                machine.handle_input(now, Input::StateWritten)?;
            }
            Action::Call {
                service,
                operation,
                attempt,
                ..
            } => {
                let status = if service == "ECOMMERCE" && ecommerce_failures_left > 0 {
                    ecommerce_failures_left -= 1;
                    503
                } else {
                    204
                };
                println!("{now}  call {service} {operation} (attempt {attempt}) -> {status}");
                let answer = Input::Response {
                    status,
                    body: String::new(),
                    retry_after: None,
                };
                machine.handle_input(now, answer)?;
            }
            Action::RetryAt { at } => {
                println!("{now}  retry due at {at}");
                now = at;
                machine.handle_input(now, Input::Tick)?;
            }
            Action::Finish(outcome) => break outcome,
            other => unreachable!("this pipeline has no vendor jobs or manual steps: {other:?}"),
        }
    };
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(learner.current_state(), "COMPLETE");
    println!(
        "\nretirement {} ({}) is {}; its log:",
        learner.id(),
        learner.retired_username(),
        learner.current_state()
    );
    for entry in learner.log() {
        println!("  {}  {}", entry.at, entry.text);
    }
    Ok(())
}
