//! Snapshots of the action sequences the driver machine emits for the six-stage example pipeline
//! (FORUMS, EMAIL_LISTS, ENROLLMENTS, NOTES, LMS_MISC, LMS).

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use retirement_core::{
    Action, DriverOptions, ERRORED, Input, Machine, OnWorkingState, Outcome, SIX_STAGE_EXAMPLE,
    SplitMix64, TransportErrorKind,
};

use crate::harness::{RunEnd, Sim, describe_input, ok, status, t0};

fn run_once(sim: &mut Sim, respond: &mut dyn FnMut(usize, u32) -> Input) -> Outcome {
    match sim.run(&DriverOptions::default(), 42, respond, None) {
        RunEnd::Finished(outcome) => outcome,
        RunEnd::Crashed => unreachable!(),
    }
}

#[test]
fn full_success_from_pending() {
    let mut sim = Sim::six_stage();
    let outcome = run_once(&mut sim, &mut |stage, _| match stage {
        2 => status(200, r#"["course-v1:a+b+c"]"#),
        _ => ok(),
    });
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(sim.record.current_state(), "COMPLETE");
    // 6 stages x 2 writes + the final COMPLETE, like tubular's 9 PATCHes for 4 stages.
    assert_eq!(sim.record.log().len(), 1 + 13);
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn tolerated_404_records_the_body() {
    let mut sim = Sim::six_stage();
    let outcome = run_once(&mut sim, &mut |stage, _| match stage {
        0 => status(404, r#"{"detail": "no forum user"}"#),
        _ => ok(),
    });
    assert_eq!(outcome, Outcome::Completed);
    let forum_entry = &sim.record.log()[2];
    assert_eq!(
        forum_entry.text,
        "Ending: FORUMS_COMPLETE with response:\n404 tolerated (nothing to delete): {\"detail\": \"no forum user\"}"
    );
}

/// Runs each stage's failure in turn and snapshots all six traces in one document.
fn failure_at_each_stage(respond_failing: impl Fn(u32) -> Input) -> String {
    let mut doc = Vec::new();
    for failing in 0..SIX_STAGE_EXAMPLE.len() {
        let mut sim = Sim::six_stage();
        let outcome = run_once(&mut sim, &mut |stage, attempt| {
            if stage == failing {
                respond_failing(attempt)
            } else {
                ok()
            }
        });
        assert!(
            matches!(outcome, Outcome::Errored { recorded: true, .. }),
            "{outcome:?}"
        );
        assert_eq!(outcome.exit_status().code(), -4);
        assert_eq!(sim.record.current_state(), ERRORED);
        let last = sim.record.log().last().unwrap();
        assert!(
            last.text.contains("\"error\""),
            "the failing body is logged: {}",
            last.text
        );
        doc.push(format!(
            "=== failure at stage {failing} ===\n{}",
            sim.trace_text()
        ));
    }
    doc.join("\n\n")
}

#[test]
fn client_error_at_each_stage_fails_at_once() {
    let doc = failure_at_each_stage(|_| status(400, r#"{"error": "bad request"}"#));
    insta::assert_snapshot!(doc);
}

#[test]
fn server_error_at_each_stage_fails_after_retries() {
    let doc = failure_at_each_stage(|_| status(500, r#"{"error": "server"}"#));
    insta::assert_snapshot!(doc);
}

#[test]
fn gateway_timeout_at_each_stage_is_retried_once() {
    let doc = failure_at_each_stage(|_| status(504, r#"{"error": "gateway"}"#));
    insta::assert_snapshot!(doc);
}

#[test]
fn resume_from_each_complete_state() {
    let mut doc = Vec::new();
    for (i, stage) in SIX_STAGE_EXAMPLE.iter().enumerate() {
        let mut sim = Sim::six_stage();
        sim.put_in(stage[1]);
        let outcome = run_once(&mut sim, &mut |_, _| ok());
        assert_eq!(outcome, Outcome::Completed);
        assert!(
            sim.calls.iter().all(|c| c.stage > i),
            "finished stages are not called again"
        );
        assert_eq!(sim.calls.len(), SIX_STAGE_EXAMPLE.len() - i - 1);
        doc.push(format!(
            "=== resume from {} ===\n{}",
            stage[1],
            sim.trace_text()
        ));
    }
    insta::assert_snapshot!(doc.join("\n\n"));
}

#[test]
fn refusals_of_terminal_working_unknown_and_empty_states() {
    let mut doc = Vec::new();
    for state in [
        "ERRORED",
        "ABORTED",
        "COMPLETE",
        "RETIRING_NOTES",
        "LOCKING_ACCOUNT",
        "",
    ] {
        let mut sim = Sim::six_stage();
        sim.put_in_raw(state);
        let before = sim.record.clone();
        let outcome = run_once(&mut sim, &mut |_, _| {
            unreachable!("refused learners get no calls")
        });
        assert_eq!(sim.record, before, "a refusal writes nothing");
        doc.push(format!(
            "=== learner in {state:?} ===\n{}",
            sim.trace_text()
        ));
        let expected_code = match state {
            "ERRORED" | "ABORTED" | "COMPLETE" => -2,
            "RETIRING_NOTES" => -3,
            "LOCKING_ACCOUNT" => -6,
            _ => -5,
        };
        assert_eq!(outcome.exit_status().code(), expected_code, "{state:?}");
    }
    insta::assert_snapshot!(doc.join("\n\n"));
}

#[test]
fn expired_lease_in_a_working_state_reruns_that_step() {
    let mut sim = Sim::six_stage();
    sim.put_in("RETIRING_ENROLLMENTS");
    let options = DriverOptions {
        on_working_state: OnWorkingState::Resume,
        ..DriverOptions::default()
    };
    let outcome = match sim.run(&options, 7, &mut |_, _| ok(), None) {
        RunEnd::Finished(o) => o,
        RunEnd::Crashed => unreachable!(),
    };
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(sim.calls[0].stage, 2);
    assert_eq!(sim.calls[0].state_at_call, "RETIRING_ENROLLMENTS");
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn transport_errors_and_retry_after() {
    let mut sim = Sim::six_stage();
    let outcome = run_once(&mut sim, &mut |stage, attempt| match (stage, attempt) {
        (0, 1) => Input::TransportError {
            kind: TransportErrorKind::Connect,
            message: "connection refused".into(),
        },
        (0, 2) => Input::TransportError {
            kind: TransportErrorKind::Reset,
            message: "connection reset by peer".into(),
        },
        (1, 1) => Input::TransportError {
            kind: TransportErrorKind::Timeout,
            message: "no answer within 30 s".into(),
        },
        (2, 1) => Input::Response {
            status: 429,
            body: "slow down".into(),
            retry_after: Some(Duration::from_secs(30)),
        },
        _ => ok(),
    });
    assert_eq!(outcome, Outcome::Completed);
    insta::assert_snapshot!(sim.trace_text());
}

/// In-process stages (issue 13): a transient failure is retried like a 5xx and then succeeds;
/// a permanent one sets ERRORED after one attempt, with no made-up HTTP status.
#[test]
fn in_process_stages_report_transient_and_permanent_failures() {
    let mut sim = Sim::six_stage();
    let outcome = run_once(&mut sim, &mut |stage, attempt| match (stage, attempt) {
        (0, 1 | 2) => Input::StepFailed {
            transient: true,
            message: "database is locked".into(),
        },
        _ => ok(),
    });
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(sim.calls.iter().filter(|c| c.stage == 0).count(), 3);

    let mut sim = Sim::six_stage();
    let outcome = run_once(&mut sim, &mut |stage, _| match stage {
        1 => Input::StepFailed {
            transient: false,
            message: "no such table: assignments".into(),
        },
        _ => ok(),
    });
    let Outcome::Errored { message, .. } = outcome else {
        panic!("expected ERRORED, got {outcome:?}");
    };
    assert_eq!(sim.calls.iter().filter(|c| c.stage == 1).count(), 1);
    insta::assert_snapshot!(message);
}

/// Drives a machine by hand to check the lease fence: nothing is written after the lease is gone.
#[test]
fn lease_loss_stops_the_machine_without_further_writes() {
    let mut doc = Vec::new();
    let (_, pipeline) = retirement_core::Pipeline::six_stage_example();
    let pipeline = Arc::new(pipeline);
    let sim = Sim::six_stage();
    let scenarios: [(&str, Vec<Input>); 3] = [
        (
            "lease expires while a retry waits",
            vec![
                Input::StateWritten,
                status(503, "busy"),
                Input::LeaseExpired,
            ],
        ),
        (
            "the write of a completion state is fenced off",
            vec![
                Input::StateWritten,
                ok(),
                Input::StateWriteFailed {
                    lease_lost: true,
                    message: "lease lost: attempt 3 is no longer current".into(),
                },
            ],
        ),
        (
            "a plain write failure sets ERRORED",
            vec![
                Input::StateWriteFailed {
                    lease_lost: false,
                    message: "database is locked".into(),
                },
                Input::StateWritten,
            ],
        ),
    ];
    for (name, inputs) in scenarios {
        let mut machine = Machine::start(
            &sim.record,
            Arc::clone(&pipeline),
            DriverOptions::default(),
            SplitMix64::new(3),
            t0(),
        );
        let mut lines = vec![format!("=== {name} ===")];
        let mut now = t0();
        for input in inputs {
            while let Some(action) = machine.poll_action() {
                lines.push(format!("-> {}", serde_json::to_string(&action).unwrap()));
            }
            now += TimeDelta::seconds(1);
            lines.push(format!("<- {}", describe_input(&input)));
            machine.handle_input(now, input).unwrap();
        }
        let mut last = None;
        while let Some(action) = machine.poll_action() {
            lines.push(format!("-> {}", serde_json::to_string(&action).unwrap()));
            last = Some(action);
        }
        assert!(machine.is_done());
        assert!(matches!(last, Some(Action::Finish(_))));
        // Anything after the end is refused, not silently accepted.
        assert!(machine.handle_input(now, Input::StateWritten).is_err());
        doc.push(lines.join("\n"));
    }
    insta::assert_snapshot!(doc.join("\n\n"));
}

#[test]
fn unexpected_inputs_are_refused_without_changing_state() {
    let sim = Sim::six_stage();
    let (_, pipeline) = retirement_core::Pipeline::six_stage_example();
    let mut machine = Machine::start(
        &sim.record,
        Arc::new(pipeline),
        DriverOptions::default(),
        SplitMix64::new(3),
        t0(),
    );
    assert!(matches!(
        machine.poll_action(),
        Some(Action::SetState { .. })
    ));
    let err = machine.handle_input(t0(), ok()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "driver input response is not expected while the machine is writing a working state"
    );
    // The machine still accepts the right input afterwards.
    machine.handle_input(t0(), Input::StateWritten).unwrap();
    assert!(matches!(
        machine.poll_action(),
        Some(Action::Call { attempt: 1, .. })
    ));
}

/// A stage that establishes its own success (a vendor lookup that found nothing, issue 15)
/// completes with its text in the log; a later 5xx on another stage is still retried.
#[test]
fn a_step_that_reports_its_own_success_completes_the_stage_with_its_text() {
    let mut sim = Sim::six_stage();
    let outcome = run_once(&mut sim, &mut |stage, attempt| match (stage, attempt) {
        (1, _) => Input::StepSucceeded {
            message: "HUBSPOT: no contact with that email; nothing to delete".into(),
        },
        (2, 1) => status(503, "busy"),
        _ => ok(),
    });
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(sim.calls.iter().filter(|c| c.stage == 1).count(), 1);
    assert_eq!(sim.calls.iter().filter(|c| c.stage == 2).count(), 2);
    insta::assert_snapshot!(sim.trace_text());
}
