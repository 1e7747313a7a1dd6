-- The operator journal (issue 16): what operators did that is not a state change (a deadline
-- extension, a reveal of an original email, with the operator's name and reason), and what each
-- `retire run` did. No learner data: ids, operator names, reasons and counts.
CREATE TABLE retirement_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    retirement_id BIGINT NOT NULL,
    at BIGINT NOT NULL,
    operator TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX retirement_actions_retirement ON retirement_actions (retirement_id);
CREATE TABLE retirement_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    started BIGINT NOT NULL,
    ended BIGINT NOT NULL,
    worker TEXT NOT NULL,
    outcome TEXT NOT NULL,
    claimed BIGINT NOT NULL,
    completed BIGINT NOT NULL,
    errored BIGINT NOT NULL,
    waiting BIGINT NOT NULL,
    deferred BIGINT NOT NULL
);
