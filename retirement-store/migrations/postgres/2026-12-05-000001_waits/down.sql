DROP TABLE retirement_waits;
