DROP TABLE retirement_runs;
DROP TABLE retirement_actions;
