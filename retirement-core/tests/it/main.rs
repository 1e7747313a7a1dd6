//! Integration tests for retirement-core: one binary, one module per concern.

mod deadlines;
mod harness;
mod model;
mod retired_ids;
mod snapshots;
mod waits;
