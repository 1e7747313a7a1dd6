//! Reference-model property tests.
//!
//! - Transitions: random sequences of advance / force / rerun / rewind / cancel checks on a
//!   record, compared after every step with a model that is just "the index of the current state".
//! - The driver: random service behaviour and crashes (the machine dropped after a random number
//!   of side effects, then restarted from the stored record with the lease expired), checked
//!   against the protocol's promises.

use proptest::prelude::*;
use retirement_core::{
    Actor, CoreError, DriverOptions, Input, OnWorkingState, Outcome, Override, SIX_STAGE_EXAMPLE,
    StateTable, TransportErrorKind,
};

use crate::harness::{RunEnd, Sim, ok, status};

// ----- transitions -----

#[derive(Debug, Clone)]
enum Op {
    Advance(usize),
    Force(usize),
    Rerun,
    Rewind,
    Cancel,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..16).prop_map(Op::Advance),
        1 => (0usize..16).prop_map(Op::Force),
        1 => Just(Op::Rerun),
        1 => Just(Op::Rewind),
        1 => Just(Op::Cancel),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn transitions_match_the_reference_model(ops in prop::collection::vec(op(), 1..40)) {
        let table = StateTable::upstream_default();
        let names: Vec<String> = table.names().map(str::to_owned).collect();
        let dead_end = |i: usize| table.states()[i].dead_end;
        let mut sim = Sim::new(table.clone(), retirement_core::Pipeline::six_stage_example().1);
        let record = &mut sim.record;
        let why = Override { operator: "op".into(), reason: "model".into() };
        let mut model = 0usize;
        for op in ops {
            let log_before = record.log().len();
            let changed = match op {
                Op::Advance(target) => {
                    let result = record.advance(&table, &names[target], "r", Actor::Driver, sim.now);
                    let allowed = !dead_end(model) && target > model;
                    prop_assert_eq!(result.is_ok(), allowed, "advance {} -> {}", names[model], names[target]);
                    if allowed { model = target; }
                    allowed
                }
                Op::Force(target) => {
                    record.force(&table, &names[target], &why, sim.now).unwrap();
                    model = target;
                    true
                }
                Op::Rerun => {
                    let result = record.rerun(&table, &why, sim.now);
                    let allowed = names[model] == "COMPLETE";
                    prop_assert_eq!(result.is_ok(), allowed);
                    if allowed { model = 0; }
                    allowed
                }
                Op::Rewind => {
                    let last = table.position(record.last_state()).unwrap();
                    match record.rewind(&table, &why, sim.now) {
                        Ok(_) => {
                            let to = table.position(record.current_state()).unwrap();
                            // Lands on the last state, or just before it if that was a working state.
                            prop_assert!(to == last || to + 1 == last);
                            model = to;
                            true
                        }
                        Err(CoreError::NothingToRewind { .. }) => false,
                        Err(e) => return Err(TestCaseError::fail(e.to_string())),
                    }
                }
                Op::Cancel => {
                    prop_assert_eq!(record.check_cancellable().is_ok(), model == 0);
                    false
                }
            };
            prop_assert_eq!(record.current_state(), names[model].as_str());
            prop_assert_eq!(record.log().len(), log_before + usize::from(changed), "every change logged once, refusals not at all");
            if changed {
                let entry = record.log().last().unwrap();
                prop_assert_eq!(&entry.to, &table.states()[model].to_string());
                if let Actor::Operator(name) = &entry.actor {
                    prop_assert_eq!(name.as_str(), "op");
                    prop_assert!(entry.text.contains("model"), "overrides log the reason");
                }
            }
        }
        // The log is a chain: each entry starts where the previous ended.
        for pair in record.log().windows(2) {
            prop_assert_eq!(pair[1].from.as_ref(), Some(&pair[0].to));
        }
    }
}

// ----- the driver -----

/// What a service does on one call.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Ok,
    Json,
    ServerError,
    TooMany,
    GatewayTimeout,
    Connect,
    Timeout,
    ClientError,
    /// The step says itself that it is done (a lookup that found nothing to delete).
    Done,
}

impl Reply {
    fn input(self) -> Input {
        match self {
            Reply::Ok => ok(),
            Reply::Json => status(200, r#"["course-v1:a+b+c"]"#),
            Reply::ServerError => status(500, r#"{"error": "server"}"#),
            Reply::TooMany => status(429, "slow down"),
            Reply::GatewayTimeout => status(504, "gateway"),
            Reply::Connect => Input::TransportError {
                kind: TransportErrorKind::Connect,
                message: "refused".into(),
            },
            Reply::Timeout => Input::TransportError {
                kind: TransportErrorKind::Timeout,
                message: "timed out".into(),
            },
            Reply::ClientError => status(400, r#"{"error": "client"}"#),
            Reply::Done => Input::StepSucceeded {
                message: "nothing to delete".into(),
            },
        }
    }
}

/// Transient trouble that the retry budget always absorbs: at most three backoff failures and
/// one slow answer per call, then success.
fn recoverable_script() -> impl Strategy<Value = Vec<Vec<Reply>>> {
    let transient = prop_oneof![
        Just(Reply::ServerError),
        Just(Reply::TooMany),
        Just(Reply::Connect),
    ];
    let slow = prop_oneof![Just(Reply::GatewayTimeout), Just(Reply::Timeout)];
    let per_stage = (
        prop::collection::vec(transient, 0..=3),
        prop::option::of(slow),
        prop_oneof![Just(Reply::Ok), Just(Reply::Json), Just(Reply::Done)],
    )
        .prop_map(|(mut replies, slow, last)| {
            replies.extend(slow);
            replies.push(last);
            replies
        });
    prop::collection::vec(per_stage, SIX_STAGE_EXAMPLE.len())
}

/// Any behaviour at all, failures included.
fn any_script() -> impl Strategy<Value = Vec<Vec<Reply>>> {
    let reply = prop_oneof![
        4 => Just(Reply::Ok),
        1 => Just(Reply::Json),
        2 => Just(Reply::ServerError),
        1 => Just(Reply::TooMany),
        1 => Just(Reply::GatewayTimeout),
        1 => Just(Reply::Connect),
        1 => Just(Reply::Timeout),
        1 => Just(Reply::ClientError),
        1 => Just(Reply::Done),
    ];
    prop::collection::vec(prop::collection::vec(reply, 0..14), SIX_STAGE_EXAMPLE.len())
}

/// A responder that plays each stage's script in order, then succeeds.
fn responder(script: Vec<Vec<Reply>>) -> impl FnMut(usize, u32) -> Input {
    let mut cursor = vec![0usize; script.len()];
    move |stage, _attempt| {
        let reply = script[stage]
            .get(cursor[stage])
            .copied()
            .unwrap_or(Reply::Ok);
        cursor[stage] += 1;
        reply.input()
    }
}

/// The protocol's promises, checked on any finished simulation.
fn check_protocol(sim: &Sim) -> Result<(), TestCaseError> {
    let stages = SIX_STAGE_EXAMPLE;
    // A step is called only while the learner is in that step's working state.
    for call in &sim.calls {
        prop_assert_eq!(call.state_at_call.as_str(), stages[call.stage][0]);
    }
    // The driver never moves backwards: every state it wrote is later than the one before.
    for pair in sim.history.windows(2) {
        let a = sim.table.position(&pair[0]).unwrap();
        let b = sim.table.position(&pair[1]).unwrap();
        prop_assert!(b > a, "moved from {} back to {}", pair[0], pair[1]);
    }
    // Resume never skips a stage: stage i runs only after stage i-1's completion was recorded.
    for (i, stage) in stages.iter().enumerate().skip(1) {
        if let Some(first_call) = sim.history.iter().position(|s| s == stage[0]) {
            let prev_done = sim.history.iter().position(|s| s == stages[i - 1][1]);
            prop_assert!(
                prev_done.is_some_and(|p| p < first_call),
                "{} entered before {} was recorded",
                stage[0],
                stages[i - 1][1]
            );
        }
    }
    // The stored log agrees with the states the driver went through.
    let log_states: Vec<String> = sim
        .record
        .log()
        .iter()
        .map(|e| e.to.split(" (step").next().unwrap().to_owned())
        .collect();
    prop_assert_eq!(&log_states, &sim.history);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn crashes_anywhere_still_complete_every_stage(
        script in recoverable_script(),
        crashes in prop::collection::vec(1usize..20, 0..6),
        seed in any::<u64>(),
    ) {
        let mut sim = Sim::six_stage();
        let mut respond = responder(script);
        let outcome = sim.run_with_crashes(&DriverOptions::default(), seed, &mut respond, &crashes);
        // A crash right after COMPLETE was written leaves a learner the restart finds finished.
        let finished = Outcome::AlreadyAtEnd { state: "COMPLETE".into() };
        prop_assert!(outcome == Outcome::Completed || outcome == finished, "{:?}", outcome);
        prop_assert_eq!(sim.record.current_state(), "COMPLETE");
        for stage in 0..SIX_STAGE_EXAMPLE.len() {
            prop_assert!(sim.calls.iter().any(|c| c.stage == stage), "stage {} never called", stage);
        }
        check_protocol(&sim)?;
    }

    #[test]
    fn any_behaviour_ends_complete_or_errored_with_the_failure_logged(
        script in any_script(),
        crashes in prop::collection::vec(1usize..30, 0..3),
        seed in any::<u64>(),
    ) {
        let mut sim = Sim::six_stage();
        let mut respond = responder(script);
        let outcome = sim.run_with_crashes(&DriverOptions::default(), seed, &mut respond, &crashes);
        match &outcome {
            Outcome::Completed => prop_assert_eq!(sim.record.current_state(), "COMPLETE"),
            Outcome::Errored { message, recorded, .. } => {
                prop_assert!(*recorded);
                prop_assert_eq!(sim.record.current_state(), "ERRORED");
                let last = sim.record.log().last().unwrap();
                prop_assert_eq!(&last.text, message);
                // The failing response is in the log: its body, or the transport error.
                prop_assert!(
                    ["server", "slow down", "gateway", "client", "refused", "timed out"]
                        .iter()
                        .any(|needle| message.contains(needle)),
                    "failure text without the response: {}", message
                );
            }
            // A crash right after ERRORED or COMPLETE was written leaves a learner the restart
            // refuses as finished.
            Outcome::AlreadyAtEnd { state } => prop_assert_eq!(state.as_str(), sim.record.current_state()),
            other => return Err(TestCaseError::fail(format!("unexpected outcome {other:?}"))),
        }
        check_protocol(&sim)?;
    }

    #[test]
    fn the_same_seed_gives_the_same_run(script in any_script(), seed in any::<u64>()) {
        let run = |script: Vec<Vec<Reply>>| {
            let mut sim = Sim::six_stage();
            let mut respond = responder(script);
            let end = sim.run(&DriverOptions::default(), seed, &mut respond, None);
            (end, sim.trace_text())
        };
        prop_assert_eq!(run(script.clone()), run(script));
    }

    #[test]
    fn a_refused_working_state_writes_nothing(stage in 0..SIX_STAGE_EXAMPLE.len()) {
        let mut sim = Sim::six_stage();
        sim.put_in(SIX_STAGE_EXAMPLE[stage][0]);
        let before = sim.record.clone();
        let options = DriverOptions { on_working_state: OnWorkingState::Refuse, ..DriverOptions::default() };
        let end = sim.run(&options, 1, &mut |_, _| ok(), None);
        let refused = matches!(end, RunEnd::Finished(Outcome::InWorkingState { .. }));
        prop_assert!(refused, "{:?}", end);
        prop_assert_eq!(sim.record, before);
    }
}
