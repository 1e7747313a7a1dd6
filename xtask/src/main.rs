//! Repository automation, run as `cargo xtask <command>` (see the cargo-xtask pattern).
//!
//! - `cargo xtask ci`: every CI step (`.ci/run` only sets the environment and calls it) —
//!   format, lints, tests (with 300 simulation seeds), the short chaos runs.
//! - `cargo xtask bench expiry [--rows N] [--backend sqlite|postgres|mysql] [--batch N]`: the
//!   expiry pass against a set-based SQL baseline (retirement-http's `expiry_bench`
//!   example, built in release mode).
//! - `cargo xtask bench http [--calls N] [--concurrency N]`: step calls through retirement-http's
//!   clients against the fake edX on loopback (the `http_bench` example).
//! - `cargo xtask bench driver [--learners N] [--latency-ms MS] [--concurrency 1,8,32,128]
//!   [--server URL]`: the release `retire run` binary against the fake edX with added latency (bins' `driver_bench`).
//! - `cargo xtask demo`: `retire demo --services all` with 1,000 learners, its debug log
//!   scanned for originals (a CI step).
//! - `cargo xtask docs`: the API docs with rustdoc's warnings denied; `cargo xtask examples`:
//!   the library crates' embedding examples, each run (both are CI steps).
//! - `cargo xtask screenshots`: the console's browser test in headless Chromium, its
//!   screenshots kept in docs/console for docs/operations.md.
//! - `cargo xtask sim [--seeds N] [--seed N]`: the deterministic simulation of the driver
//!   runtime (retirement-http's `sim` tests) over N seeds (default 10,000), or one seed to
//!   reproduce it; prints the count.
//! - `cargo xtask chaos kill|faults|outage|workers|lms-workers|db|input|all [--short] [--seed N]`: crash, fault
//!   and concurrency runs of the real `retire` binary (bins' `chaos` example), and `input`, the
//!   bad-input property tests with 10,000 cases per target; `--short` uses small counts (256
//!   cases) and the debug build (CI), otherwise the release build.
//!
//! Repository-hygiene checks (architecture invariants) run as tests: `cargo test -p xtask`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("bench") => bench(&args[1..]),
        Some("docs") => docs(),
        Some("examples") => examples(),
        Some("chaos") => chaos(&args[1..]),
        Some("sim") => sim(&args[1..]),
        Some("demo") => demo(),
        Some("screenshots") => screenshots(),
        Some("-h" | "--help" | "help") | None => {
            println!(
                "usage: cargo xtask <command>\n\ncommands:\n  ci                   every CI step: cargo fmt --check, clippy -D warnings,\n                       cargo test --workspace, docs, examples,\n                       chaos all --short, demo\n  sim [ARGS]           the runtime's deterministic simulation over many seeds\n                       ARGS: --seeds N (10000), --seed N (reproduce one seed)\n  bench http [ARGS]    step calls through the clients against the fake edX on loopback\n                       ARGS: --calls N (100000), --concurrency N (64)\n  bench expiry [ARGS]  the store's streamed expiry pass vs one set-based SQL UPDATE\n                       ARGS: --rows N (100000), --backend sqlite|postgres|mysql (sqlite),\n                       --batch N (1000); servers from RETIREMENT_TEST_POSTGRES_URL /\n                       RETIREMENT_TEST_MYSQL_URL, else this machine's defaults\n  bench driver [ARGS]  `retire run` against the fake edX with added latency per call\n                       ARGS: --learners N (2000), --latency-ms MS (20),\n                       --concurrency LIST (1,8,32,128),\n                       --server URL (a PostgreSQL/MySQL server; default SQLite),\n                       --store lms (the fake LMS's API as the store),\n                       --queued N (a longer queue than --learners)\n  docs                 cargo doc --workspace --no-deps with warnings denied\n  examples             run the library crates' embedding examples\n  screenshots          the console's browser test, keeping its screenshots in
                       docs/console (shown by docs/operations.md)
  demo                 `retire demo --services all` with 1,000 learners and a debug log,\n                       checked: everyone retired, calls per service shown, no original\n                       username, email or name in the output or the log\n  chaos RUN [ARGS]     crash/fault/concurrency runs of `retire`, bad-input property\n                       tests; RUN: kill, faults, outage, workers, lms-workers, db,\n                       input or all;\n                       ARGS: --short (CI counts), --seed N"
            );
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("xtask: unknown command {other:?}; try `cargo xtask help`");
            ExitCode::from(2)
        }
    }
}

fn ci() -> ExitCode {
    let steps: &[&[&str]] = &[
        &["fmt", "--all", "--", "--check"],
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        // A production build without the fake edX (test support behind `retirement-http`'s
        // `fake` feature, which `retire demo` enables) still compiles, lint-clean.
        &[
            "clippy",
            "-p",
            "bins",
            "--no-default-features",
            "--",
            "-D",
            "warnings",
        ],
        // The README's test command (unit, integration and doc tests).
        &["test", "--workspace"],
        // The API docs, warnings denied (broken intra-doc links fail), and the library
        // crates' embedding examples, each run to its end (issue 18).
        &["xtask", "docs"],
        &["xtask", "examples"],
        // The chaos runs at CI's counts (issue 7): kills, faults, workers, cut database
        // connections, bad input.
        &["xtask", "chaos", "all", "--short"],
        // 1,000 learners through every erasure stream, its debug log scanned (issue 15).
        &["xtask", "demo"],
    ];
    for step in steps {
        eprintln!("xtask ci: cargo {}", step.join(" "));
        let status = Command::new(cargo())
            .args(*step)
            .current_dir(project_root())
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("xtask ci: `cargo {}` failed ({s})", step.join(" "));
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("xtask ci: could not run cargo: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// The library crates' embedding examples (not the benchmarks): `(package, example)`.
/// CI runs each; a tidy test checks every library crate has one and every one is listed.
pub(crate) const EMBEDDING_EXAMPLES: &[(&str, &str)] = &[
    ("retirement-core", "drive_one_learner"),
    ("assignment-expiry", "evaluate_policies"),
    ("retirement-store", "embedded_queue"),
    ("retirement-http", "embed_runtime"),
];

/// `cargo xtask docs`: `cargo doc --workspace --no-deps` with rustdoc's warnings denied.
fn docs() -> ExitCode {
    let status = Command::new(cargo())
        .args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings")
        .current_dir(project_root())
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("xtask docs: cargo doc reported warnings or failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("xtask docs: could not run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask examples`: runs every embedding example to its end.
fn examples() -> ExitCode {
    for (package, example) in EMBEDDING_EXAMPLES {
        println!("== {package} example {example}");
        let status = Command::new(cargo())
            .args(["run", "--quiet", "-p", package, "--example", example])
            .current_dir(project_root())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("xtask examples: {package}'s example {example} failed");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// `cargo xtask screenshots`: the browser test, keeping its screenshots in docs/console.
fn screenshots() -> ExitCode {
    let dir = project_root().join("docs").join("console");
    let status = Command::new(cargo())
        .args(["test", "-p", "retirement-http", "--test", "it", "browser::"])
        .env("RETIREMENT_SCREENSHOTS", &dir)
        .current_dir(project_root())
        .status();
    match status {
        Ok(s) if s.success() => {
            println!("screenshots in {}", dir.display());
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask screenshots: could not run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask sim`: retirement-http's simulation tests in release mode over more seeds.
fn sim(args: &[String]) -> ExitCode {
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let mut command = Command::new(cargo());
    command
        .args([
            "test",
            "--quiet",
            "--release",
            "-p",
            "retirement-http",
            "--test",
            "it",
            "sim::every_seed_keeps_every_promise",
            "--",
            "--nocapture",
        ])
        .current_dir(project_root());
    match (value("--seed"), value("--seeds")) {
        (Some(seed), _) => {
            command.env("RETIREMENT_SIM_SEED", seed);
        }
        (None, seeds) => {
            command.env("RETIREMENT_SIM_SEEDS", seeds.as_deref().unwrap_or("10000"));
        }
    }
    match command.status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask sim: could not run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("expiry") => run_example("retirement-http", "expiry_bench", &args[1..]),
        Some("http") => run_example("retirement-http", "http_bench", &args[1..]),
        Some("driver") => {
            // The bench spawns the release `retire` binary: build it first.
            let built = Command::new(cargo())
                .args([
                    "build",
                    "--quiet",
                    "--release",
                    "-p",
                    "bins",
                    "--bin",
                    "retire",
                ])
                .current_dir(project_root())
                .status();
            match built {
                Ok(s) if s.success() => run_example("bins", "driver_bench", &args[1..]),
                _ => {
                    eprintln!("xtask bench driver: building retire failed");
                    ExitCode::FAILURE
                }
            }
        }
        other => {
            eprintln!("xtask bench: unknown benchmark {other:?}; available: expiry, http");
            ExitCode::from(2)
        }
    }
}

/// `cargo xtask demo`: `retire demo --services all` with 1,000 learners at log level debug:
/// every learner retired, the summary showing calls per service and learners per second, the
/// fakes' records holding originals only where an API is keyed by them, and no original
/// username, email or name (the demo's share the prefixes below) in its output or its log.
fn demo() -> ExitCode {
    let output = Command::new(cargo())
        .args(["run", "--quiet", "-p", "bins", "--bin", "retire", "--"])
        .args([
            "demo",
            "--services",
            "all",
            "--learners",
            "1000",
            "--log-level",
            "debug",
        ])
        .env_remove("RUST_LOG")
        .current_dir(project_root())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            eprintln!("xtask demo: could not run cargo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    print!("{stdout}");
    let mut failures = Vec::new();
    if !output.status.success() {
        failures.push(format!("retire demo exited with {}", output.status));
    }
    for expected in [
        "learners completed: 1000 of 1000 (errored 0",
        "calls per service:",
        "; 0 elsewhere",
        "learners per second",
    ] {
        if !stdout.contains(expected) {
            failures.push(format!("the summary lacks {expected:?}"));
        }
    }
    let log_lines = stderr.lines().count();
    for original in ["Demo.Learner", "demo.learner", "Demo Person"] {
        if stdout.contains(original) || stderr.contains(original) {
            failures.push(format!(
                "an original ({original}…) is in the output or the log"
            ));
        }
    }
    if failures.is_empty() {
        println!("xtask demo: {log_lines} log lines scanned, no original username, email or name");
        ExitCode::SUCCESS
    } else {
        for failure in failures {
            eprintln!("xtask demo: {failure}");
        }
        ExitCode::FAILURE
    }
}

/// `cargo xtask chaos ...`: the bad-input property tests (`input`, with a case count), and
/// `retire` with the chaos example built in one profile (the other runs).
fn chaos(args: &[String]) -> ExitCode {
    let short = args.iter().any(|a| a == "--short");
    let run = args.first().map(String::as_str).unwrap_or("");
    if run == "input" || run == "all" {
        let cases = if short { "256" } else { "10000" };
        for package in ["retirement-http", "bins"] {
            println!("== bad input ({package}, {cases} cases per target)");
            let status = Command::new(cargo())
                .args([
                    "test",
                    "--quiet",
                    "-p",
                    package,
                    "--test",
                    "it",
                    "bad_input",
                ])
                .args(["--", "--nocapture", "--test-threads", "1"])
                .env("BAD_INPUT_CASES", cases)
                .current_dir(project_root())
                .status();
            if !matches!(status, Ok(s) if s.success()) {
                eprintln!("xtask chaos input: the bad-input tests of {package} failed");
                return ExitCode::FAILURE;
            }
        }
        if run == "input" {
            return ExitCode::SUCCESS;
        }
    }
    let mut build = Command::new(cargo());
    build.args([
        "build",
        "--quiet",
        "-p",
        "bins",
        "--bin",
        "retire",
        "--example",
        "chaos",
    ]);
    if !short {
        build.arg("--release");
    }
    match build.current_dir(project_root()).status() {
        Ok(s) if s.success() => {}
        _ => {
            eprintln!("xtask chaos: building retire and the chaos example failed");
            return ExitCode::FAILURE;
        }
    }
    let profile = if short { "debug" } else { "release" };
    let example = target_dir().join(profile).join("examples").join("chaos");
    match Command::new(&example).args(args).status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask chaos: could not run {}: {e}", example.display());
            ExitCode::FAILURE
        }
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"))
}

/// `cargo run --release -p <package> --example <example> -- <args>`.
fn run_example(package: &str, example: &str, args: &[String]) -> ExitCode {
    let status = Command::new(cargo())
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            package,
            "--example",
            example,
            "--",
        ])
        .args(args)
        .current_dir(project_root())
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask bench: could not run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

#[cfg(test)]
mod tidy;
