-- A learner parked in a working state (issue 15): waiting on a vendor job (`kind` 'job',
-- `reference` the job id, `next_poll` set) or on a person (`kind` 'person'). `since` is the
-- record's `modified` when the wait was recorded: the wait applies only while the learner has
-- not moved since. No learner data: ids, state names, service keys and vendor references.
CREATE TABLE retirement_waits (
    retirement_id BIGINT PRIMARY KEY NOT NULL,
    working_state VARCHAR(30) NOT NULL,
    service VARCHAR(255) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    reference TEXT NOT NULL,
    next_poll BIGINT,
    since BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
