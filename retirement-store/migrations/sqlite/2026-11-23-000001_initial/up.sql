-- Retirement states: upstream's RetirementState, keyed by name.
CREATE TABLE retirement_states (
    state_name TEXT PRIMARY KEY NOT NULL,
    execution_order INTEGER NOT NULL UNIQUE,
    dead_end BOOLEAN NOT NULL,
    required BOOLEAN NOT NULL
);

-- One row per learner being retired (upstream's UserRetirementStatus) plus the lease columns.
-- Times are microseconds since the Unix epoch, UTC, on every backend.
CREATE TABLE retirement_statuses (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    lms_user_id BIGINT,
    original_username TEXT NOT NULL UNIQUE,
    original_email TEXT NOT NULL,
    original_name TEXT NOT NULL,
    retired_username TEXT NOT NULL,
    retired_email TEXT NOT NULL,
    current_state TEXT NOT NULL,
    last_state TEXT NOT NULL,
    created BIGINT NOT NULL,
    modified BIGINT NOT NULL,
    lease_owner TEXT,
    lease_expires BIGINT,
    attempt BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX retirement_statuses_state ON retirement_statuses (current_state, id);
CREATE INDEX retirement_statuses_created ON retirement_statuses (created);

-- The append-only log (upstream's `responses` text, one row per entry).
CREATE TABLE retirement_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    retirement_id BIGINT NOT NULL,
    at BIGINT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    actor TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX retirement_log_retirement ON retirement_log (retirement_id, id);

-- The permanent request ledger: hashed identifiers only, kept after cleanup.
CREATE TABLE retirement_requests (
    retired_username TEXT PRIMARY KEY NOT NULL,
    retired_email TEXT NOT NULL,
    created BIGINT NOT NULL
);

-- Enterprise content assignments.
CREATE TABLE assignment_configurations (
    uuid TEXT PRIMARY KEY NOT NULL,
    active BOOLEAN NOT NULL,
    subsidy_expiration TEXT
);

CREATE TABLE content_metadata (
    content_key TEXT PRIMARY KEY NOT NULL,
    enrollment_deadline TEXT,
    metadata_json TEXT
);

CREATE TABLE assignments (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    uuid TEXT NOT NULL UNIQUE,
    configuration_uuid TEXT NOT NULL,
    content_key TEXT NOT NULL,
    state TEXT NOT NULL,
    learner_email TEXT NOT NULL,
    lms_user_id BIGINT,
    created BIGINT NOT NULL,
    allocated_at BIGINT NOT NULL,
    expired_at BIGINT,
    preferred_course_run_key TEXT,
    has_credit_request BOOLEAN NOT NULL,
    modified BIGINT NOT NULL
);
CREATE INDEX assignments_state ON assignments (state, id);
CREATE INDEX assignments_email ON assignments (learner_email);
CREATE INDEX assignments_lms_user ON assignments (lms_user_id);

CREATE TABLE assignment_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    assignment_id BIGINT NOT NULL,
    action_type TEXT NOT NULL,
    completed_at BIGINT,
    error_reason TEXT
);
CREATE INDEX assignment_actions_assignment ON assignment_actions (assignment_id, id);

-- Every value a PII column ever held (upstream's simple_history tables), scrubbed with it.
CREATE TABLE assignment_pii_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    assignment_id BIGINT NOT NULL,
    column_name TEXT NOT NULL,
    value TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX assignment_pii_history_assignment ON assignment_pii_history (assignment_id);
