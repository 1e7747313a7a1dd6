-- Retirement states: upstream's RetirementState, keyed by name.
CREATE TABLE retirement_states (
    state_name VARCHAR(30) PRIMARY KEY NOT NULL,
    execution_order INT NOT NULL UNIQUE,
    dead_end BOOLEAN NOT NULL,
    required BOOLEAN NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per learner being retired (upstream's UserRetirementStatus) plus the lease columns.
-- Times are microseconds since the Unix epoch, UTC, on every backend.
CREATE TABLE retirement_statuses (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    lms_user_id BIGINT,
    original_username VARCHAR(150) NOT NULL UNIQUE,
    original_email VARCHAR(254) NOT NULL,
    original_name VARCHAR(255) NOT NULL,
    retired_username VARCHAR(255) NOT NULL,
    retired_email VARCHAR(255) NOT NULL,
    current_state VARCHAR(30) NOT NULL,
    last_state VARCHAR(30) NOT NULL,
    created BIGINT NOT NULL,
    modified BIGINT NOT NULL,
    lease_owner VARCHAR(255),
    lease_expires BIGINT,
    attempt BIGINT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX retirement_statuses_state ON retirement_statuses (current_state, id);
CREATE INDEX retirement_statuses_created ON retirement_statuses (created);

-- The append-only log (upstream's `responses` text, one row per entry).
CREATE TABLE retirement_log (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    retirement_id BIGINT NOT NULL,
    at BIGINT NOT NULL,
    from_state VARCHAR(30),
    to_state VARCHAR(30) NOT NULL,
    actor VARCHAR(255) NOT NULL,
    text MEDIUMTEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX retirement_log_retirement ON retirement_log (retirement_id, id);

-- The permanent request ledger: hashed identifiers only, kept after cleanup.
CREATE TABLE retirement_requests (
    retired_username VARCHAR(255) PRIMARY KEY NOT NULL,
    retired_email VARCHAR(255) NOT NULL,
    created BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Enterprise content assignments.
CREATE TABLE assignment_configurations (
    uuid VARCHAR(36) PRIMARY KEY NOT NULL,
    active BOOLEAN NOT NULL,
    subsidy_expiration VARCHAR(255)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE content_metadata (
    content_key VARCHAR(255) PRIMARY KEY NOT NULL,
    enrollment_deadline VARCHAR(255),
    metadata_json MEDIUMTEXT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE assignments (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    uuid VARCHAR(36) NOT NULL UNIQUE,
    configuration_uuid VARCHAR(36) NOT NULL,
    content_key VARCHAR(255) NOT NULL,
    state VARCHAR(32) NOT NULL,
    learner_email VARCHAR(255) NOT NULL,
    lms_user_id BIGINT,
    created BIGINT NOT NULL,
    allocated_at BIGINT NOT NULL,
    expired_at BIGINT,
    preferred_course_run_key VARCHAR(255),
    has_credit_request BOOLEAN NOT NULL,
    modified BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX assignments_state ON assignments (state, id);
CREATE INDEX assignments_email ON assignments (learner_email);
CREATE INDEX assignments_lms_user ON assignments (lms_user_id);

CREATE TABLE assignment_actions (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    assignment_id BIGINT NOT NULL,
    action_type VARCHAR(32) NOT NULL,
    completed_at BIGINT,
    error_reason VARCHAR(64)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX assignment_actions_assignment ON assignment_actions (assignment_id, id);

-- Every value a PII column ever held (upstream's simple_history tables), scrubbed with it.
CREATE TABLE assignment_pii_history (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    assignment_id BIGINT NOT NULL,
    column_name VARCHAR(64) NOT NULL,
    value MEDIUMTEXT NOT NULL,
    recorded_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX assignment_pii_history_assignment ON assignment_pii_history (assignment_id);
