//! Prometheus text-format counters written at the end of a run, for node_exporter's textfile
//! collector. The file is written beside its destination and renamed into place, so the
//! collector never reads half a file.

use std::fmt::Write as _;
use std::path::Path;

use retirement_http::runtime::RunSummary;

use crate::error::CliError;

/// The metrics text for a run summary at `unix_seconds`.
pub fn render(summary: &RunSummary, unix_seconds: i64) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, rows: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    metric(
        "retirement_learners_total",
        "counter",
        "Learners whose turn ended in this run, by result.",
        &[
            ("{result=\"completed\"}", summary.completed as f64),
            ("{result=\"errored\"}", summary.errored as f64),
            ("{result=\"refused\"}", summary.refused as f64),
            ("{result=\"lease_lost\"}", summary.lease_lost as f64),
            ("{result=\"interrupted\"}", summary.interrupted as f64),
            ("{result=\"deferred\"}", summary.deferred as f64),
            ("{result=\"waiting\"}", summary.waiting as f64),
        ],
    );
    let down: Vec<(String, f64)> = summary
        .services_down
        .iter()
        .map(|endpoint| (format!("{{endpoint=\"{}\"}}", escape(endpoint)), 1.0))
        .collect();
    let down_rows: Vec<(&str, f64)> = down.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(
        "retirement_service_down",
        "gauge",
        "Service endpoints down when the run ended (their learners wait, resumable).",
        &down_rows,
    );
    metric(
        "retirement_services_down",
        "gauge",
        "How many service endpoints were down when the run ended.",
        &[("", summary.services_down.len() as f64)],
    );
    metric(
        "retirement_claimed_total",
        "counter",
        "Learners claimed in this run.",
        &[("", summary.claimed as f64)],
    );
    metric(
        "retirement_service_calls_total",
        "counter",
        "Service calls made in this run.",
        &[("", summary.calls as f64)],
    );
    metric(
        "retirement_state_writes_total",
        "counter",
        "State writes made in this run.",
        &[("", summary.writes as f64)],
    );
    metric(
        "retirement_run_duration_seconds",
        "gauge",
        "Wall time of the run.",
        &[("", summary.seconds)],
    );
    metric(
        "retirement_last_run_timestamp_seconds",
        "gauge",
        "When the run ended (Unix time).",
        &[("", unix_seconds as f64)],
    );
    out
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes `text` to `path` atomically.
pub fn write(path: &Path, text: &str) -> Result<(), CliError> {
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text).map_err(CliError::io(format!(
        "writing metrics to {}",
        tmp.display()
    )))?;
    std::fs::rename(&tmp, path).map_err(CliError::io(format!(
        "moving metrics to {}",
        path.display()
    )))
}
