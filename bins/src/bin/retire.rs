//! `retire`: the retirement driver and admin CLI.
//!
//! The driver itself arrives with the driver issue; until then this binary says so and exits with
//! a non-zero status instead of pretending to work.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "retire: the driver is not built yet; the state machine it will run is the \
         retirement-core crate (see README.md)"
    );
    ExitCode::from(2)
}
