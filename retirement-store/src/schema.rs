//! diesel's view of the tables. One schema serves every backend: the migrations differ per
//! backend only in column types (identity columns, `VARCHAR` lengths for MySQL indexes), never
//! in names or nullability. Times are `BIGINT` microseconds since the Unix epoch, UTC, so no
//! query depends on a backend's date functions or time zone.

diesel::table! {
    retirement_states (state_name) {
        state_name -> Text,
        execution_order -> Integer,
        dead_end -> Bool,
        required -> Bool,
    }
}

diesel::table! {
    retirement_statuses (id) {
        id -> BigInt,
        lms_user_id -> Nullable<BigInt>,
        original_username -> Text,
        original_email -> Text,
        original_name -> Text,
        retired_username -> Text,
        retired_email -> Text,
        current_state -> Text,
        last_state -> Text,
        created -> BigInt,
        modified -> BigInt,
        lease_owner -> Nullable<Text>,
        lease_expires -> Nullable<BigInt>,
        attempt -> BigInt,
    }
}

diesel::table! {
    retirement_log (id) {
        id -> BigInt,
        retirement_id -> BigInt,
        at -> BigInt,
        from_state -> Nullable<Text>,
        to_state -> Text,
        actor -> Text,
        text -> Text,
    }
}

diesel::table! {
    retirement_requests (retired_username) {
        retired_username -> Text,
        retired_email -> Text,
        created -> BigInt,
    }
}

diesel::table! {
    assignment_configurations (uuid) {
        uuid -> Text,
        active -> Bool,
        subsidy_expiration -> Nullable<Text>,
    }
}

diesel::table! {
    content_metadata (content_key) {
        content_key -> Text,
        enrollment_deadline -> Nullable<Text>,
        metadata_json -> Nullable<Text>,
    }
}

diesel::table! {
    assignments (id) {
        id -> BigInt,
        uuid -> Text,
        configuration_uuid -> Text,
        content_key -> Text,
        state -> Text,
        learner_email -> Text,
        lms_user_id -> Nullable<BigInt>,
        created -> BigInt,
        allocated_at -> BigInt,
        expired_at -> Nullable<BigInt>,
        preferred_course_run_key -> Nullable<Text>,
        has_credit_request -> Bool,
        modified -> BigInt,
    }
}

diesel::table! {
    assignment_actions (id) {
        id -> BigInt,
        assignment_id -> BigInt,
        action_type -> Text,
        completed_at -> Nullable<BigInt>,
        error_reason -> Nullable<Text>,
    }
}

diesel::table! {
    assignment_pii_history (id) {
        id -> BigInt,
        assignment_id -> BigInt,
        column_name -> Text,
        value -> Text,
        recorded_at -> BigInt,
    }
}

diesel::table! {
    retirement_leases (retirement_id) {
        retirement_id -> BigInt,
        owner -> Nullable<Text>,
        attempt -> BigInt,
        expires -> Nullable<BigInt>,
        state -> Nullable<Text>,
    }
}

diesel::table! {
    retirement_waits (retirement_id) {
        retirement_id -> BigInt,
        working_state -> Text,
        service -> Text,
        kind -> Text,
        reference -> Text,
        next_poll -> Nullable<BigInt>,
        since -> BigInt,
    }
}

diesel::table! {
    retirement_actions (id) {
        id -> BigInt,
        retirement_id -> BigInt,
        at -> BigInt,
        operator -> Text,
        kind -> Text,
        reason -> Text,
    }
}

diesel::table! {
    retirement_runs (id) {
        id -> BigInt,
        started -> BigInt,
        ended -> BigInt,
        worker -> Text,
        outcome -> Text,
        claimed -> BigInt,
        completed -> BigInt,
        errored -> BigInt,
        waiting -> BigInt,
        deferred -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    retirement_actions,
    retirement_runs,
    retirement_waits,
    retirement_leases,
    retirement_states,
    retirement_statuses,
    retirement_log,
    retirement_requests,
    assignment_configurations,
    content_metadata,
    assignments,
    assignment_actions,
    assignment_pii_history,
);
