//! End-to-end tests of the binaries: the real executables, fed fixture files, run against the
//! fake edX and real stores.

use std::io::Write;
use std::process::{Command, Stdio};

mod bad_input;
mod console;
mod enterprise;
mod outputs;
mod retire;
mod services;

/// The URL of a database server for tests, from `var`. Without it: under CI=true the test
/// fails; elsewhere it is skipped with one line saying so.
pub(crate) fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set, and CI=true: the server tests must run")
        }
        _ => {
            eprintln!("skipped: {var} is not set");
            None
        }
    }
}

struct Run {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

fn expire_assignments(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_expire-assignments"))
        .args(args)
        .env_remove("RETIREMENT_CONFIG_FILE")
        .env_remove("RETIREMENT_STORE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // Fed from another thread: a large input's output would fill the stdout pipe while this
    // thread still writes, and both processes would wait for ever.
    let mut input = child.stdin.take().unwrap();
    let text = stdin.to_owned();
    let feeder = std::thread::spawn(move || input.write_all(text.as_bytes()));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    Run {
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
        code: out.status.code(),
    }
}

const FIXTURE: &str = include_str!("fixtures/assignments.jsonl");

/// `evaluate` of the fixture file at 2024-06-01 under `policy`.
fn evaluate_fixture(policy: &str) -> Run {
    expire_assignments(
        &[
            "evaluate",
            "--policy",
            policy,
            "--now",
            "2024-06-01T00:00:00Z",
        ],
        FIXTURE,
    )
}

#[test]
fn evaluate_adr_0016_fixture() {
    let run = evaluate_fixture("adr-0016");
    assert_eq!(
        run.code,
        Some(1),
        "one malformed line makes the exit status non-zero"
    );
    assert_eq!(
        run.stdout.lines().count(),
        6,
        "every well-formed line gets a decision"
    );
    insta::assert_snapshot!(run.stdout);
    insta::assert_snapshot!("evaluate_stderr", run.stderr);
}

#[test]
fn evaluate_current_fixture() {
    let run = evaluate_fixture("current");
    assert_eq!(run.code, Some(1));
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn errors_and_output_never_carry_learner_emails() {
    let run = evaluate_fixture("current");
    for email in [
        "ninety@",
        "enroll@",
        "subsidy@",
        "keep@",
        "broken@",
        "leaky@",
        "inactive@",
    ] {
        assert!(!run.stdout.contains(email), "{email} in stdout");
        assert!(!run.stderr.contains(email), "{email} in stderr");
    }
}

#[test]
fn one_line_in_one_decision_out() {
    let line = r#"{"uuid":"x","state":"allocated","learner_email":"x@example.com","created":"2024-01-01T00:00:00Z","allocated_at":"2024-01-01T00:00:00Z"}"#;
    let run = expire_assignments(
        &[
            "evaluate",
            "--policy",
            "adr-0016",
            "--now",
            "2024-06-01T00:00:00Z",
        ],
        line,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1);
    assert!(run.stdout.contains(r#""expire":true"#));
}

#[test]
fn bad_flags_are_refused_with_a_clear_message() {
    let run = expire_assignments(&["evaluate", "--policy", "lenient"], "");
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("invalid value 'lenient'"),
        "{}",
        run.stderr
    );
    let run = expire_assignments(&["evaluate", "--now", "yesterday"], "");
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("--now"), "{}", run.stderr);
}

#[test]
fn evaluate_help_documents_the_format() {
    let run = expire_assignments(&["evaluate", "--help"], "");
    assert_eq!(run.code, Some(0));
    insta::assert_snapshot!(run.stdout);
}
