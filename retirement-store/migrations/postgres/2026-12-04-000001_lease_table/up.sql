-- Fenced leases for a store that has none of its own (`lease_store:` beside `store: lms`): one
-- row per learner ever leased. `attempt` is the fencing number, raised by every acquisition and
-- operator override; `state` is the state its holder last wrote or was about to write, so the
-- next holder can tell a listing older than that write.
CREATE TABLE retirement_leases (
    retirement_id BIGINT PRIMARY KEY NOT NULL,
    owner TEXT,
    attempt BIGINT NOT NULL,
    expires BIGINT,
    state TEXT
);
