//! Unit tests: one per upstream message the core can produce, and the pure helpers.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crate::machine::truncate_utf8;
use crate::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2018, 10, 18, 20, 35, 52).unwrap()
        + chrono::TimeDelta::microseconds(350_050)
}

fn identity() -> OriginalIdentity {
    OriginalIdentity {
        username: "retirement_test".into(),
        email: "orig@foo.invalid".into(),
        name: "Retirement Test".into(),
    }
}

fn retirement(table: &StateTable) -> Retirement {
    Retirement::create(
        RetirementId(46),
        Some(5_213_599),
        identity(),
        "retired__user_88ad".into(),
        "retired__user_d089@retired.invalid".into(),
        table,
        t0(),
    )
    .unwrap()
}

fn operator() -> Override {
    Override {
        operator: "alice".into(),
        reason: "ticket 42".into(),
    }
}

fn err_text<T: std::fmt::Debug>(r: Result<T, CoreError>) -> String {
    r.unwrap_err().to_string()
}

// ----- populate_retirement_states messages -----

#[test]
fn empty_state_list_is_refused_with_upstream_text() {
    let names: [&str; 0] = [];
    assert_eq!(
        err_text(StateTable::from_names(&names)),
        "settings.RETIREMENT_STATES does not exist or is empty."
    );
}

#[test]
fn missing_required_state_is_refused_with_the_list_as_python_prints_it() {
    assert_eq!(
        err_text(StateTable::from_names(&["PENDING", "ERRORED", "COMPLETE"])),
        "settings.RETIREMENT_STATES (['PENDING', 'ERRORED', 'COMPLETE']) does not contain all \
         required states (PENDING,ERRORED,ABORTED,COMPLETE)"
    );
}

#[test]
fn pending_not_first_is_refused() {
    let names = [
        "LOCKING_ACCOUNT",
        "PENDING",
        "ERRORED",
        "ABORTED",
        "COMPLETE",
    ];
    assert_eq!(
        err_text(StateTable::from_names(&names)),
        "PENDING must be the first state"
    );
}

#[test]
fn wrong_tail_is_refused_out_of_order_or_not_at_end() {
    let message =
        "The last 3 states must be these (in this order): ['ERRORED', 'ABORTED', 'COMPLETE']";
    let out_of_order = ["PENDING", "ABORTED", "ERRORED", "COMPLETE"];
    let not_at_end = [
        "PENDING",
        "ERRORED",
        "ABORTED",
        "COMPLETE",
        "LOCKING_ACCOUNT",
    ];
    assert_eq!(err_text(StateTable::from_names(&out_of_order)), message);
    assert_eq!(err_text(StateTable::from_names(&not_at_end)), message);
}

#[test]
fn learners_in_working_states_block_sync_even_for_a_dry_run() {
    let current = StateTable::upstream_default().states().to_vec();
    let r = plan_sync(
        &current,
        DEFAULT_RETIREMENT_STATES,
        &["PENDING", "RETIRING_LMS"],
    );
    assert_eq!(
        err_text(r),
        "Users are currently being processed. All users must be in one of these states to run \
         this command: PENDING,ERRORED,ABORTED,COMPLETE"
    );
}

#[test]
fn learners_in_deleted_states_message_keeps_upstream_typo_only_on_the_wire() {
    let e = CoreError::LearnersInDeletedStates {
        states: "{'LOCKING_ACCOUNT'}".into(),
    };
    assert_eq!(
        e.upstream_text(),
        "Users exist in a state that is marked for deletion! States to deleteare: {'LOCKING_ACCOUNT'}"
    );
    assert_eq!(
        e.to_string(),
        "Users exist in a state that is marked for deletion! States to delete are: {'LOCKING_ACCOUNT'}"
    );
}

// ----- what upstream forgot to validate -----

#[test]
fn duplicate_long_empty_and_unpaired_names_are_refused() {
    let dup = [
        "PENDING",
        "LOCKING_ACCOUNT",
        "LOCKING_ACCOUNT",
        "ERRORED",
        "ABORTED",
        "COMPLETE",
    ];
    assert_eq!(
        StateTable::from_names(&dup).unwrap_err(),
        CoreError::DuplicateState {
            name: "LOCKING_ACCOUNT".into()
        }
    );
    let long = "RETIRING_A_VERY_LONG_SERVICE_NAME";
    let too_long = ["PENDING", long, "ERRORED", "ABORTED", "COMPLETE"];
    assert_eq!(
        err_text(StateTable::from_names(&too_long)),
        format!("state name {long} is 33 characters long; the limit is 30")
    );
    let empty = ["PENDING", " ", "ERRORED", "ABORTED", "COMPLETE"];
    assert_eq!(
        StateTable::from_names(&empty).unwrap_err(),
        CoreError::EmptyStateName { position: 1 }
    );
    let unpaired = [
        "PENDING",
        "RETIRING_FORUMS",
        "LMS_COMPLETE",
        "ERRORED",
        "ABORTED",
        "COMPLETE",
    ];
    assert_eq!(
        err_text(StateTable::from_names(&unpaired)),
        "state RETIRING_FORUMS must be directly followed by FORUMS_COMPLETE, found LMS_COMPLETE"
    );
}

#[test]
fn default_table_has_upstream_orders_and_flags() {
    let table = StateTable::upstream_default();
    let rows: Vec<String> = table
        .states()
        .iter()
        .map(|s| format!("{s} dead_end={} required={}", s.dead_end, s.required))
        .collect();
    assert_eq!(rows.len(), 16);
    assert_eq!(rows[0], "PENDING (step 1) dead_end=false required=true");
    assert_eq!(
        rows[3],
        "RETIRING_FORUMS (step 31) dead_end=false required=false"
    );
    assert_eq!(rows[13], "ERRORED (step 131) dead_end=true required=true");
    assert_eq!(rows[15], "COMPLETE (step 151) dead_end=true required=true");
}

#[test]
fn sync_inserting_two_states_mid_list_renumbers_and_reports_the_diff() {
    let before = [
        "PENDING",
        "RETIRING_LMS",
        "LMS_COMPLETE",
        "ERRORED",
        "ABORTED",
        "COMPLETE",
    ];
    let current = StateTable::from_names(&before).unwrap().states().to_vec();
    let after = [
        "PENDING",
        "RETIRING_FORUMS",
        "FORUMS_COMPLETE",
        "RETIRING_LMS",
        "LMS_COMPLETE",
        "ERRORED",
        "ABORTED",
        "COMPLETE",
    ];
    let plan = plan_sync(&current, &after, &["PENDING", "COMPLETE"]).unwrap();
    assert_eq!(plan.added, ["RETIRING_FORUMS", "FORUMS_COMPLETE"]);
    assert!(plan.removed.is_empty());
    assert_eq!(plan.kept.len(), 6);
    let orders: Vec<i32> = plan
        .table
        .states()
        .iter()
        .map(|s| s.execution_order)
        .collect();
    assert_eq!(orders, [1, 11, 21, 31, 41, 51, 61, 71]);
    assert!(plan.changes_anything(&current));
    // A second sync with the same list is a no-op.
    let again = plan_sync(plan.table.states(), &after, &["PENDING"]).unwrap();
    assert!(again.added.is_empty() && again.removed.is_empty());
    assert!(!again.changes_anything(plan.table.states()));
}

#[test]
fn sync_recomputes_flags_of_existing_states() {
    // A hand-edited row that lost its flags (upstream keeps them wrong, defect D5).
    let mut rows = StateTable::upstream_default().states().to_vec();
    rows[13].dead_end = false;
    let plan = plan_sync(&rows, DEFAULT_RETIREMENT_STATES, &[] as &[&str]).unwrap();
    assert!(plan.table.get("ERRORED").unwrap().dead_end);
    assert!(plan.changes_anything(&rows));
}

#[test]
fn sync_removing_states_lists_them() {
    let current = StateTable::upstream_default().states().to_vec();
    let plan = plan_sync(
        &current,
        &[
            "PENDING",
            "RETIRING_LMS",
            "LMS_COMPLETE",
            "ERRORED",
            "ABORTED",
            "COMPLETE",
        ],
        &["ERRORED"],
    )
    .unwrap();
    assert_eq!(plan.removed.len(), 10);
    assert_eq!(plan.removed[0], "LOCKING_ACCOUNT");
}

#[test]
fn stored_rows_with_shared_orders_are_refused() {
    let rows = vec![State::new("PENDING", 1), State::new("COMPLETE", 1)];
    assert_eq!(
        err_text(StateTable::from_rows(rows)),
        "states PENDING and COMPLETE share execution order 1"
    );
}

// ----- create_retirement and update_state messages -----

#[test]
fn creating_in_an_empty_table_is_refused() {
    let empty = StateTable::from_rows(vec![]).unwrap();
    let r = Retirement::create(
        RetirementId(1),
        None,
        identity(),
        "r".into(),
        "r@retired.invalid".into(),
        &empty,
        t0(),
    );
    assert_eq!(
        err_text(r),
        "Default state does not exist! Populate retirement states to retire users."
    );
}

#[test]
fn creation_starts_in_the_initial_state_and_logs_it() {
    let table = StateTable::upstream_default();
    let r = retirement(&table);
    assert_eq!(r.current_state(), "PENDING");
    assert_eq!(r.last_state(), "PENDING");
    assert_eq!(
        r.responses_text(),
        "Created in state PENDING (step 1) by create_retirement"
    );
}

#[test]
fn update_keys_are_checked_in_upstream_order() {
    assert_eq!(
        err_text(validate_update_keys(["new_state", "response"])),
        "RetirementStatus: Required key username missing from update"
    );
    assert_eq!(
        err_text(validate_update_keys(["username", "response"])),
        "RetirementStatus: Required key new_state missing from update"
    );
    assert_eq!(
        err_text(validate_update_keys(["username", "new_state"])),
        "RetirementStatus: Required key response missing from update"
    );
    assert_eq!(
        err_text(validate_update_keys([
            "username",
            "new_state",
            "response",
            "foo"
        ])),
        "RetirementStatus: Unknown key foo in update"
    );
    assert!(validate_update_keys(["username", "new_state", "response", "force"]).is_ok());
}

#[test]
fn backward_and_same_state_moves_are_refused_with_upstream_text() {
    let table = StateTable::upstream_default();
    let mut r = retirement(&table);
    r.advance(&table, "LOCKING_ACCOUNT", "x", Actor::Driver, t0())
        .unwrap();
    let back = r
        .advance(&table, "PENDING", "x", Actor::Driver, t0())
        .unwrap_err();
    assert_eq!(
        back.upstream_text(),
        "PENDING does not exist or is an eariler state than current state LOCKING_ACCOUNT (step 11)"
    );
    assert_eq!(
        back.to_string(),
        "PENDING does not exist or is an earlier state than current state LOCKING_ACCOUNT (step 11)"
    );
    let same = r.advance(&table, "LOCKING_ACCOUNT", "x", Actor::Driver, t0());
    assert!(matches!(same, Err(CoreError::NotLaterState { .. })));
    let unknown = r.advance(&table, "NOPE", "x", Actor::Driver, t0());
    assert!(matches!(unknown, Err(CoreError::NotLaterState { .. })));
    assert_eq!(r.log().len(), 2, "refused moves are not logged");
}

#[test]
fn dead_end_states_are_never_left_without_force() {
    // Upstream lets ERRORED -> ABORTED -> COMPLETE through (defect D1).
    let table = StateTable::upstream_default();
    let mut r = retirement(&table);
    r.advance(&table, "ERRORED", "boom", Actor::Driver, t0())
        .unwrap();
    assert_eq!(
        err_text(r.advance(&table, "ABORTED", "x", Actor::Driver, t0())),
        "RetirementStatus: Unable to move user from ERRORED (step 131)"
    );
    assert!(matches!(
        r.advance(&table, "COMPLETE", "x", Actor::Driver, t0()),
        Err(CoreError::DeadEnd { .. })
    ));
}

#[test]
fn forward_jumps_are_allowed_and_logged_like_upstream() {
    let table = StateTable::upstream_default();
    let mut r = retirement(&table);
    let later = t0() + chrono::TimeDelta::seconds(5);
    let entry = r
        .advance(
            &table,
            "RETIRING_LMS",
            "Starting: RETIRING_LMS",
            Actor::Driver,
            later,
        )
        .unwrap();
    assert_eq!(entry.from.as_deref(), Some("PENDING (step 1)"));
    assert_eq!(entry.to, "RETIRING_LMS (step 111)");
    assert_eq!((entry.actor.clone(), entry.at), (Actor::Driver, later));
    assert_eq!(r.current_state(), "RETIRING_LMS");
    assert_eq!(r.last_state(), "PENDING");
    assert_eq!(r.modified(), later);
    assert!(r.responses_text().ends_with(
        "\n Moved from PENDING (step 1) to RETIRING_LMS (step 111):\nStarting: RETIRING_LMS\n"
    ));
}

#[test]
fn force_goes_anywhere_known_and_logs_who_and_why() {
    let table = StateTable::upstream_default();
    let mut r = retirement(&table);
    r.advance(&table, "ERRORED", "boom", Actor::Driver, t0())
        .unwrap();
    let returned = r
        .force(&table, "ENROLLMENTS_COMPLETE", &operator(), t0())
        .unwrap()
        .clone();
    let entry = r.log().last().unwrap();
    assert_eq!(&returned, entry);
    assert_eq!(entry.actor, Actor::Operator("alice".into()));
    assert_eq!(
        entry.text,
        "Forced by operator alice from ERRORED (step 131) to ENROLLMENTS_COMPLETE (step 81): ticket 42"
    );
    assert_eq!(r.last_state(), "ERRORED");
    // An unknown target is a clear error, not upstream's 500 (defect D3).
    assert_eq!(
        err_text(r.force(&table, "NOPE", &operator(), t0())),
        "unknown retirement state NOPE"
    );
    let anonymous = Override {
        operator: " ".into(),
        reason: "x".into(),
    };
    assert_eq!(
        err_text(r.force(&table, "PENDING", &anonymous, t0())),
        "an operator override needs a non-empty operator"
    );
}

#[test]
fn rerun_moves_complete_back_to_pending_only() {
    let table = StateTable::upstream_default();
    let mut r = retirement(&table);
    assert_eq!(
        err_text(r.rerun(&table, &operator(), t0())),
        "only a COMPLETE retirement can be rerun; retirement 46 is in PENDING"
    );
    r.advance(&table, "COMPLETE", "done", Actor::Driver, t0())
        .unwrap();
    r.rerun(&table, &operator(), t0()).unwrap();
    assert_eq!(r.current_state(), "PENDING");
}

#[test]
fn rewind_from_errored_lands_before_the_failed_working_state() {
    let table = StateTable::upstream_default();
    let mut r = retirement(&table);
    r.advance(&table, "RETIRING_EMAIL_LISTS", "s", Actor::Driver, t0())
        .unwrap();
    r.advance(&table, "ERRORED", "boom", Actor::Driver, t0())
        .unwrap();
    r.rewind(&table, &operator(), t0()).unwrap();
    // Upstream lands in RETIRING_EMAIL_LISTS, which its driver refuses (defect D19).
    assert_eq!(r.current_state(), "FORUMS_COMPLETE");
}

#[test]
fn cancel_is_refused_outside_pending_naming_the_retirement_not_the_learner() {
    let table = StateTable::upstream_default();
    let mut r = retirement(&table);
    assert!(r.check_cancellable().is_ok());
    r.advance(&table, "COMPLETE", "done", Actor::Driver, t0())
        .unwrap();
    let text = err_text(r.check_cancellable());
    assert_eq!(
        text,
        "Retirement requests can only be cancelled for users in the PENDING state. Current \
         request state for retirement 46: COMPLETE"
    );
    assert!(!text.contains("retirement_test"));
}

#[test]
fn step_guard_refuses_required_and_complete_states_with_upstream_text() {
    let table = StateTable::upstream_default();
    let mut r = retirement(&table);
    assert_eq!(
        err_text(r.check_actionable(&table)),
        "User: 5213599 State: PENDING (step 1) Last Updated: 2018-10-18 20:35:52.350050+00:00 is \
         in PENDING, not a valid state to perform retirement actions on."
    );
    r.advance(&table, "LOCKING_ACCOUNT", "x", Actor::Driver, t0())
        .unwrap();
    assert!(
        r.check_actionable(&table).is_ok(),
        "custom working states are actionable"
    );
    r.advance(&table, "FORUMS_COMPLETE", "x", Actor::Driver, t0())
        .unwrap();
    assert!(r.check_actionable(&table).is_err());
}

// ----- retired identifiers -----

#[test]
fn no_salt_is_refused_with_upstream_text() {
    assert_eq!(
        err_text(RetiredIdConfig::new(vec![])),
        "Salt must be a list -or- tuple of all historical salts."
    );
}

#[test]
fn salts_never_appear_in_debug() {
    let config = RetiredIdConfig::new(vec!["s3cret-old".into(), "s3cret-new".into()]).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(debug.contains("<2 redacted>"));
}

// ----- privacy -----

#[test]
fn retirement_debug_never_prints_original_pii() {
    let table = StateTable::upstream_default();
    let r = retirement(&table);
    let debug = format!("{r:?} {:?} {:#?}", r.original(), r.parts());
    for pii in ["retirement_test", "orig@foo.invalid", "Retirement Test"] {
        assert!(!debug.contains(pii), "{pii} leaked into {debug}");
    }
    assert!(debug.contains("retired__user_88ad"));
}

// ----- pipeline validation -----

#[test]
fn pipeline_refuses_unknown_non_adjacent_reused_and_out_of_order_stages() {
    let (table, _) = Pipeline::six_stage_example();
    let stage = |w: &str, c: &str| Stage::new(w, c, "LMS", "op");
    let cases = [
        (vec![], "retirement_pipeline has no stages"),
        (
            vec![stage("RETIRING_X", "X_COMPLETE")],
            "retirement_pipeline stage 0: state RETIRING_X is not in the state table",
        ),
        (
            vec![stage("RETIRING_FORUMS", "ECOM_COMPLETE")],
            "retirement_pipeline stage 0: ECOM_COMPLETE must directly follow RETIRING_FORUMS in the state table",
        ),
        (
            vec![
                stage("RETIRING_FORUMS", "FORUMS_COMPLETE"),
                stage("RETIRING_FORUMS", "FORUMS_COMPLETE"),
            ],
            "retirement_pipeline stage 1: state RETIRING_FORUMS is used more than once",
        ),
        (
            vec![
                stage("RETIRING_LMS", "LMS_COMPLETE"),
                stage("RETIRING_FORUMS", "FORUMS_COMPLETE"),
            ],
            "retirement_pipeline stage 1: RETIRING_FORUMS comes before the previous stage's states in the state table",
        ),
        (
            vec![stage("PENDING", "FORUMS_COMPLETE")],
            "retirement_pipeline stage 0: PENDING is a required state and cannot belong to a stage",
        ),
        (
            vec![stage("FORUMS_COMPLETE", "RETIRING_ECOM")],
            "retirement_pipeline stage 0: working state FORUMS_COMPLETE ends in _COMPLETE, where the LMS refuses retirement actions",
        ),
        (
            vec![Stage::new("RETIRING_FORUMS", "FORUMS_COMPLETE", "LMS", "")],
            "retirement_pipeline stage 0: service and operation must not be empty",
        ),
    ];
    for (stages, message) in cases {
        assert_eq!(err_text(Pipeline::new(stages, &table)), message);
    }
}

#[test]
fn upstream_404_tolerance_is_the_default_and_can_be_changed() {
    assert!(Stage::new("A", "B", "LMS", "retirement_retire_forum").tolerate_404);
    assert!(Stage::new("A", "B", "LICENSE_MANAGER", "retire_learner").tolerate_404);
    assert!(Stage::new("A", "B", "DEMOGRAPHICS", "retire_learner").tolerate_404);
    assert!(!Stage::new("A", "B", "LMS", "retirement_lms_retire").tolerate_404);
    assert!(
        !Stage::new("A", "B", "LMS", "retirement_retire_forum")
            .with_tolerate_404(false)
            .tolerate_404
    );
}

#[test]
fn queue_states_are_pending_and_completion_states() {
    let (_, pipeline) = Pipeline::six_stage_example();
    assert_eq!(
        pipeline.queue_states(),
        [
            "PENDING",
            "FORUMS_COMPLETE",
            "ECOM_COMPLETE",
            "ENROLLMENTS_COMPLETE",
            "NOTES_COMPLETE",
            "LMS_MISC_COMPLETE",
            "LMS_COMPLETE"
        ]
    );
    assert_eq!(pipeline.all_states().len(), 16);
}

// ----- driver outcomes and exit codes -----

#[test]
fn outcomes_carry_tubular_messages_and_exit_codes() {
    let cases = [
        (Outcome::Completed, 0, 0, "Retirement complete for learner"),
        (
            Outcome::AlreadyAtEnd {
                state: "COMPLETE".into(),
            },
            -2,
            254,
            "User already in end state: COMPLETE",
        ),
        (
            Outcome::InWorkingState {
                state: "RETIRING_LMS".into(),
            },
            -3,
            253,
            "User is already in a working state! RETIRING_LMS",
        ),
        (
            Outcome::Errored {
                state: "RETIRING_LMS".into(),
                message: "500 Server Error".into(),
                recorded: true,
            },
            -4,
            252,
            "Error encountered in state \"RETIRING_LMS\"\n500 Server Error",
        ),
        (
            Outcome::BadLearner {
                retirement_id: RetirementId(7),
            },
            -5,
            251,
            "Bad learner response missing current_state or state_name: retirement 7",
        ),
        (
            Outcome::UnknownState {
                retirement_id: RetirementId(7),
                state: "LOCKING_ACCOUNT".into(),
            },
            -6,
            250,
            "Unknown learner retirement state for learner: retirement 7 in state LOCKING_ACCOUNT",
        ),
    ];
    for (outcome, code, os, message) in cases {
        assert_eq!(outcome.exit_status().code(), code, "{outcome:?}");
        assert_eq!(outcome.exit_status().os_status(), os, "{outcome:?}");
        assert_eq!(outcome.to_string(), message);
    }
    assert_eq!(ExitStatus::SetupFailed.os_status(), 255);
    assert_eq!(ExitStatus::BadConfig.code(), -7);
    assert_eq!(ExitStatus::BadConfig.os_status(), 249);
}

// ----- retry rules -----

#[test]
fn statuses_are_classified_like_tubular() {
    let cases = [
        (200, false, Verdict::Success),
        (204, false, Verdict::Success),
        (404, true, Verdict::Tolerated404),
        (404, false, Verdict::Fail),
        (400, false, Verdict::Fail),
        (401, false, Verdict::Fail),
        (429, false, Verdict::Backoff),
        (500, false, Verdict::Backoff),
        (503, false, Verdict::Backoff),
        (104, false, Verdict::Backoff),
        (504, false, Verdict::GatewayTimeout),
        (302, false, Verdict::Fail),
    ];
    for (status, tolerate, verdict) in cases {
        assert_eq!(
            classify_status(status, tolerate),
            verdict,
            "status {status}"
        );
    }
    assert_eq!(
        classify_transport(TransportErrorKind::Connect),
        Verdict::Backoff
    );
    assert_eq!(
        classify_transport(TransportErrorKind::Reset),
        Verdict::Backoff
    );
    assert_eq!(
        classify_transport(TransportErrorKind::Timeout),
        Verdict::GatewayTimeout
    );
}

#[test]
fn backoff_waits_stay_within_the_doubling_nominal_and_the_budget() {
    let policy = RetryPolicy::default();
    let mut random = SplitMix64::new(7);
    let mut attempts = Attempts::new(t0());
    let mut now = t0();
    let mut waits = Vec::new();
    while let Some(at) =
        policy.next_attempt_at(Verdict::Backoff, &mut attempts, None, now, &mut random)
    {
        let wait = (at - now).to_std().unwrap();
        let nominal =
            Duration::from_secs(1 << (attempts.backoff_retries - 1)).min(policy.max_backoff);
        assert!(wait <= nominal, "wait {wait:?} over nominal {nominal:?}");
        assert!((at - t0()).to_std().unwrap() <= policy.budget);
        waits.push(wait);
        now = at;
    }
    assert!(
        waits.len() >= 8,
        "a 600 s budget allows at least 8 retries, got {}",
        waits.len()
    );
}

#[test]
fn gateway_timeouts_retry_once_after_the_full_wait() {
    let policy = RetryPolicy::default();
    let mut random = SplitMix64::new(1);
    let mut attempts = Attempts::new(t0());
    let at = policy
        .next_attempt_at(
            Verdict::GatewayTimeout,
            &mut attempts,
            None,
            t0(),
            &mut random,
        )
        .unwrap();
    assert_eq!(at - t0(), chrono::TimeDelta::seconds(60));
    assert_eq!(
        policy.next_attempt_at(
            Verdict::GatewayTimeout,
            &mut attempts,
            None,
            at,
            &mut random
        ),
        None
    );
    assert_eq!(attempts.made(), 2);
}

#[test]
fn retry_after_is_honoured_and_cannot_break_the_budget() {
    let policy = RetryPolicy::default();
    let mut random = SplitMix64::new(1);
    let mut attempts = Attempts::new(t0());
    let at = policy
        .next_attempt_at(
            Verdict::Backoff,
            &mut attempts,
            Some(Duration::from_secs(30)),
            t0(),
            &mut random,
        )
        .unwrap();
    assert_eq!(at - t0(), chrono::TimeDelta::seconds(30));
    let beyond = policy.next_attempt_at(
        Verdict::Backoff,
        &mut attempts,
        Some(Duration::from_secs(3600)),
        at,
        &mut random,
    );
    assert_eq!(beyond, None);
    assert_eq!(
        policy.next_attempt_at(Verdict::Fail, &mut attempts, None, at, &mut random),
        None
    );
}

#[test]
fn splitmix_units_are_in_range_and_reproducible() {
    let mut a = SplitMix64::new(99);
    let mut b = SplitMix64::new(99);
    for _ in 0..10_000 {
        let x = a.next_unit();
        assert!((0.0..1.0).contains(&x));
        assert_eq!(x, b.next_unit());
    }
}

#[test]
fn long_bodies_are_cut_at_a_character_boundary() {
    assert_eq!(truncate_utf8("short", 10), "short");
    let cut = truncate_utf8("ééééé", 3);
    assert_eq!(cut, "é… [8 more bytes not logged]");
}

#[test]
fn actors_round_trip_through_text() {
    for actor in [
        Actor::Request,
        Actor::Driver,
        Actor::Operator("bob ops".into()),
    ] {
        assert_eq!(actor.to_string().parse::<Actor>().unwrap(), actor);
    }
    assert!("operator:".parse::<Actor>().is_err());
    assert!("someone".parse::<Actor>().is_err());
}
