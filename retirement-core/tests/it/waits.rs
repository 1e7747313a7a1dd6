//! Stages that park the learner (issue 15): a vendor job polled until it is terminal, and a
//! manual step a person finishes. The harness keeps the wait beside the record as a store
//! does; "restarts" are new machines started from the stored record and wait.

use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use retirement_core::{
    DriverOptions, Input, OnWorkingState, Outcome, Override, Pipeline, Stage, StageKind,
    StateTable, WaitingOn,
};

use crate::harness::{RunEnd, Sim, ok, status};

const STATES: &[&str] = &[
    "PENDING",
    "RETIRING_SEGMENT",
    "SEGMENT_COMPLETE",
    "RETIRING_SALESFORCE",
    "SALESFORCE_COMPLETE",
    "RETIRING_LMS",
    "LMS_COMPLETE",
    "ERRORED",
    "ABORTED",
    "COMPLETE",
];

const POLL_EVERY: Duration = Duration::from_secs(3600);

fn sim() -> Sim {
    let table = StateTable::from_names(STATES).unwrap();
    let stages = vec![
        Stage::new(
            "RETIRING_SEGMENT",
            "SEGMENT_COMPLETE",
            "SEGMENT",
            "delete_and_suppress_learner",
        )
        .with_kind(StageKind::Job {
            poll_every: POLL_EVERY,
        }),
        Stage::new(
            "RETIRING_SALESFORCE",
            "SALESFORCE_COMPLETE",
            "SALESFORCE",
            "retire_learner",
        )
        .with_kind(StageKind::Manual),
        Stage::new(
            "RETIRING_LMS",
            "LMS_COMPLETE",
            "LMS",
            "retirement_lms_retire",
        ),
    ];
    let pipeline = Pipeline::new(stages, &table).unwrap();
    Sim::new(table, pipeline)
}

fn resume() -> DriverOptions {
    DriverOptions {
        on_working_state: OnWorkingState::Resume,
        ..DriverOptions::default()
    }
}

/// The stage calls: the job is started, the person asked, the LMS called.
fn services(stage: usize, _attempt: u32) -> Input {
    match stage {
        0 => Input::JobStarted {
            job_id: "reg-1".into(),
        },
        1 => Input::PersonAsked {
            reference: "task 00T1".into(),
        },
        _ => ok(),
    }
}

fn done_by_operator(sim: &mut Sim) {
    let why = Override {
        operator: "privacy-officer".into(),
        reason: "lead deleted in Salesforce".into(),
    };
    let table = sim.table.clone();
    sim.record
        .force(&table, "SALESFORCE_COMPLETE", &why, sim.now)
        .unwrap();
    sim.history.push("SALESFORCE_COMPLETE".into());
}

#[test]
fn a_job_is_started_once_polled_until_done_and_a_person_finishes_the_manual_step() {
    let mut sim = sim();
    sim.poll_replies.extend([
        Input::JobRunning,
        status(503, "busy"),
        Input::StepSucceeded {
            message: "SEGMENT regulation reg-1 FINISHED".into(),
        },
    ]);
    // First turn: the job starts, the learner is parked until the next poll.
    let end = sim.run(&DriverOptions::default(), 1, &mut services, None);
    let RunEnd::Finished(Outcome::Waiting {
        until: Some(until), ..
    }) = end
    else {
        panic!("expected a wait, got {end:?}");
    };
    let wait = sim.wait.clone().expect("the wait is stored");
    assert!(matches!(&wait.on, WaitingOn::Job { job_id, .. } if job_id == "reg-1"));
    // Claimed too early (another host's clock): parked again, nothing called.
    let end = sim.run(&resume(), 2, &mut services, None);
    assert!(matches!(end, RunEnd::Finished(Outcome::Waiting { .. })));
    assert!(sim.polls.is_empty());
    // Polls: running, then a 503 retried, then finished; the person is asked next.
    let mut turns = 0;
    loop {
        turns += 1;
        assert!(turns < 10, "the job never finished");
        match sim.run(&resume(), 3 + turns, &mut services, None) {
            RunEnd::Finished(Outcome::Waiting {
                until: Some(next), ..
            }) => sim.now = next,
            RunEnd::Finished(Outcome::Waiting {
                until: None, on, ..
            }) => {
                assert_eq!(on, "SALESFORCE");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
        if turns == 1 {
            sim.now = until;
        }
    }
    assert_eq!(
        sim.calls.iter().filter(|c| c.stage == 0).count(),
        1,
        "one job"
    );
    assert!(
        sim.polls.iter().all(|(_, _, at)| *at >= until),
        "never polled early"
    );
    // A restart while the person works: still parked, the person is not asked twice.
    let end = sim.run(&resume(), 50, &mut services, None);
    assert!(matches!(
        end,
        RunEnd::Finished(Outcome::Waiting { until: None, .. })
    ));
    assert_eq!(sim.calls.iter().filter(|c| c.stage == 1).count(), 1);
    // The operator marks it done (audited); the next run finishes the pipeline.
    done_by_operator(&mut sim);
    let end = sim.run(&resume(), 51, &mut services, None);
    assert_eq!(end, RunEnd::Finished(Outcome::Completed));
    insta::assert_snapshot!(sim.trace_text());
}

#[test]
fn a_reset_learner_starts_a_new_job_instead_of_polling_the_old_one() {
    let mut sim = sim();
    let end = sim.run(&DriverOptions::default(), 1, &mut services, None);
    assert!(matches!(end, RunEnd::Finished(Outcome::Waiting { .. })));
    // The operator resets the learner to PENDING: the stored wait no longer applies.
    sim.now += chrono::TimeDelta::seconds(10);
    sim.put_in("PENDING");
    sim.now += chrono::TimeDelta::hours(2);
    let end = sim.run(&resume(), 2, &mut services, None);
    assert!(matches!(end, RunEnd::Finished(Outcome::Waiting { .. })));
    assert_eq!(sim.calls.iter().filter(|c| c.stage == 0).count(), 2);
    assert!(sim.polls.is_empty());
}

#[test]
fn a_failed_job_sets_errored_and_a_poll_out_of_retries_waits_instead() {
    let mut sim = sim();
    sim.run(&DriverOptions::default(), 1, &mut services, None);
    sim.now += chrono::TimeDelta::hours(2);
    // The vendor is down for longer than the retry budget: the learner waits, not ERRORED.
    let options = DriverOptions {
        retry: retirement_core::RetryPolicy {
            budget: Duration::from_secs(30),
            ..Default::default()
        },
        ..resume()
    };
    sim.poll_replies
        .extend((0..50).map(|_| status(502, "bad gateway")));
    let end = sim.run(&options, 2, &mut services, None);
    assert!(matches!(
        end,
        RunEnd::Finished(Outcome::Waiting { until: Some(_), .. })
    ));
    assert_eq!(sim.record.current_state(), "RETIRING_SEGMENT");
    // The job itself failed: ERRORED with the vendor's word.
    sim.poll_replies.clear();
    sim.poll_replies.push_back(Input::StepFailed {
        transient: false,
        message: "SEGMENT regulation reg-1 FAILED".into(),
    });
    sim.now += chrono::TimeDelta::hours(2);
    let end = sim.run(&options, 3, &mut services, None);
    let RunEnd::Finished(Outcome::Errored { message, .. }) = end else {
        panic!("expected ERRORED, got {end:?}");
    };
    assert!(message.contains("FAILED"), "{message}");
}

/// What a poll may answer.
fn poll_reply() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => Just(Input::JobRunning),
        1 => Just(status(500, "oops")),
        1 => Just(status(429, "slow down")),
        1 => Just(Input::TransportError {
            kind: retirement_core::TransportErrorKind::Reset,
            message: "reset".into(),
        }),
        1 => Just(Input::StepSucceeded { message: "FINISHED".into() }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the polls answer and wherever the worker crashes, the job is started again
    /// only when its start was never recorded, never polled before its time, and the learner
    /// leaves the job's working state only after the vendor said it finished.
    #[test]
    fn jobs_survive_crashes_and_are_never_polled_early(
        replies in prop::collection::vec(poll_reply(), 0..12),
        crashes in prop::collection::vec(1usize..6, 0..4),
        seed in any::<u64>(),
    ) {
        let mut sim = sim();
        sim.poll_replies.extend(replies.iter().cloned());
        sim.poll_default = Input::StepSucceeded { message: "FINISHED".into() };
        let mut crashes = crashes.into_iter();
        let mut first = true;
        let mut turns = 0;
        let mut starts_unrecorded = 0;
        let finished_at: Option<DateTime<Utc>> = loop {
            turns += 1;
            prop_assert!(turns < 200, "no progress");
            let options = if first { DriverOptions::default() } else { resume() };
            first = false;
            let calls_before = sim.calls.iter().filter(|c| c.stage == 0).count();
            let had_wait = sim.wait.clone();
            let polls_before = sim.polls.len();
            let due = match &had_wait {
                Some(w) if w.applies_to(&sim.record) => match &w.on {
                    WaitingOn::Job { next_poll, .. } => Some(*next_poll),
                    WaitingOn::Person { .. } => None,
                },
                _ => None,
            };
            let end = sim.run(&options, seed.wrapping_add(turns), &mut services, crashes.next());
            // Never polled before the stored next poll.
            for (_, _, at) in &sim.polls[polls_before..] {
                prop_assert!(due.is_some_and(|due| *at >= due), "polled at {} before {:?}", at, due);
            }
            match end {
                RunEnd::Crashed => {
                    // A crash between the job's start and its record: the next turn starts
                    // a new one (safe: a second regulation for the same ids).
                    let started = sim.calls.iter().filter(|c| c.stage == 0).count() > calls_before;
                    if started && sim.wait == had_wait {
                        starts_unrecorded += 1;
                    }
                    sim.now += chrono::TimeDelta::minutes(10);
                }
                RunEnd::Finished(Outcome::Waiting { until: Some(next), .. }) => {
                    prop_assert!(next > sim.now - chrono::TimeDelta::seconds(1));
                    sim.now = next;
                }
                RunEnd::Finished(Outcome::Waiting { until: None, .. }) => break Some(sim.now),
                RunEnd::Finished(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        };
        prop_assert!(finished_at.is_some());
        // One job per recorded start, plus one per start a crash lost.
        let starts = sim.calls.iter().filter(|c| c.stage == 0).count();
        prop_assert_eq!(starts, 1 + starts_unrecorded);
        // The job stage completed only after a finished poll.
        let done = sim.history.iter().position(|s| s == "SEGMENT_COMPLETE");
        prop_assert!(done.is_some());
        prop_assert_eq!(sim.record.current_state(), "RETIRING_SALESFORCE");
    }
}
