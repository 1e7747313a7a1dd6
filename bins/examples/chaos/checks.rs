//! The promises every chaos run checks, read from the store, the fake's call record and the
//! captured output.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use retirement_core::{Retirement, SIX_STAGE_EXAMPLE};
use retirement_store::RetirementStore;

use crate::world::World;

/// The six-stage example's step paths, in stage order (one list, from the catalog).
pub(crate) static STEP_PATHS: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(retirement_http::fake::six_stage_step_paths);

/// What a run may end in.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Ending {
    /// Every learner COMPLETE.
    AllComplete,
    /// COMPLETE or ERRORED, the ERRORED ones with the failing response in their log.
    CompleteOrErrored,
}

/// The figures of one check, printed by the run.
#[derive(Default)]
pub(crate) struct Figures {
    pub(crate) complete: usize,
    pub(crate) errored: usize,
    pub(crate) step_calls: usize,
    /// Step calls beyond one per learner and stage: the "at least once" repeats.
    pub(crate) repeated_calls: usize,
    /// The longest time one learner spent from its first working state to its end.
    pub(crate) longest_learner_seconds: f64,
    pub(crate) violations: Vec<String>,
    /// One ERRORED learner's last log text per kind of failure (status, timeout, reset).
    pub(crate) errored_samples: BTreeMap<String, String>,
}

impl Figures {
    pub(crate) fn violate(&mut self, text: String) {
        // A broken promise usually breaks for many learners alike: keep the first few.
        if self.violations.len() < 20 {
            self.violations.push(text);
        } else if self.violations.len() == 20 {
            self.violations
                .push("… (more violations not listed)".into());
        }
    }
}

/// A log entry's state name: `RETIRING_LMS (step 111)` → `RETIRING_LMS`.
fn state_name(text: &str) -> &str {
    text.split_whitespace().next().unwrap_or("")
}

/// The happy path's states, in order, from PENDING to COMPLETE.
pub(crate) fn canonical_path() -> Vec<String> {
    let mut path = vec!["PENDING".to_owned()];
    for [working, complete, ..] in SIX_STAGE_EXAMPLE {
        path.push(working.to_string());
        path.push(complete.to_string());
    }
    path.push("COMPLETE".to_owned());
    path
}

/// Whether an ERRORED entry's text holds a failing response: a status with its body, or a
/// transport error.
fn holds_failure(text: &str, failure_bodies: &[&str]) -> bool {
    let transport = ["Timeout", "Connection reset", "Connection", "Transport"]
        .iter()
        .any(|k| text.contains(k));
    let status_and_body =
        text.chars().any(|c| c.is_ascii_digit()) && failure_bodies.iter().any(|b| text.contains(b));
    transport || status_and_body
}

/// Checks every seeded learner's end state, log and calls. `failure_bodies` are the bodies the
/// fake answers failures with.
pub(crate) async fn check_learners(
    world: &World,
    ending: Ending,
    failure_bodies: &[&str],
) -> Figures {
    let mut figures = Figures::default();
    let path = canonical_path();
    let working_of_path: HashMap<&str, &str> = STEP_PATHS
        .iter()
        .zip(SIX_STAGE_EXAMPLE.iter())
        .map(|(p, [w, ..])| (p.as_str(), *w))
        .collect();
    // (original username, path) → calls, and the state each call arrived in.
    let mut calls: HashMap<(String, String), usize> = HashMap::new();
    for call in world.fake.calls() {
        let Some(working) = working_of_path.get(call.path.as_str()) else {
            continue;
        };
        let Some(user) = call.body.get("username").and_then(|u| u.as_str()) else {
            figures.violate(format!("a call to {} named no learner", call.path));
            continue;
        };
        figures.step_calls += 1;
        *calls
            .entry((user.to_owned(), call.path.clone()))
            .or_default() += 1;
        match call.learner_state.as_deref() {
            Some(state) if state == *working => {}
            other => figures.violate(format!(
                "{} was called while a learner was in {:?}, not {working}",
                call.path, other
            )),
        }
    }
    if !world.fake.overlaps().is_empty() {
        figures.violate(format!(
            "{} overlapping calls for one learner",
            world.fake.overlaps().len()
        ));
    }
    for original in &world.seeded {
        let retirement = match world.store.find_by_username(&original.username).await {
            Ok(r) => r,
            Err(e) => {
                figures.violate(format!("a seeded learner could not be read: {e}"));
                continue;
            }
        };
        let id = retirement.id();
        let reached = check_log(&retirement, &path, ending, failure_bodies, &mut figures);
        match retirement.current_state() {
            "COMPLETE" => figures.complete += 1,
            "ERRORED" if ending == Ending::CompleteOrErrored => figures.errored += 1,
            other => figures.violate(format!("retirement {id} ended in {other}")),
        }
        // Every stage the learner got to was called at least once.
        for (stage, step_path) in STEP_PATHS.iter().enumerate().take(reached) {
            let made = calls
                .get(&(original.username.clone(), step_path.to_string()))
                .copied()
                .unwrap_or(0);
            if made == 0 {
                figures.violate(format!(
                    "retirement {id}: stage {} was never called",
                    SIX_STAGE_EXAMPLE[stage][0]
                ));
            }
            figures.repeated_calls += made.saturating_sub(1);
        }
        if let (Some(first), Some(last)) = (
            retirement
                .log()
                .iter()
                .find(|e| e.to.starts_with("RETIRING_")),
            retirement.log().last(),
        ) {
            let seconds = (last.at - first.at).num_milliseconds() as f64 / 1000.0;
            figures.longest_learner_seconds = figures.longest_learner_seconds.max(seconds);
        }
    }
    figures
}

/// Checks one learner's log against its path; returns how many stages it entered.
fn check_log(
    retirement: &Retirement,
    path: &[String],
    ending: Ending,
    failure_bodies: &[&str],
    figures: &mut Figures,
) -> usize {
    let id = retirement.id();
    let log = retirement.log();
    let mut previous: Option<&str> = None;
    for (n, entry) in log.iter().enumerate() {
        let to = state_name(&entry.to);
        if entry.from.as_deref().map(state_name) != previous {
            figures.violate(format!(
                "retirement {id}: log entry {n} starts from {:?}, the previous ended in {:?}",
                entry.from, previous
            ));
        }
        let expected = path.get(n).map(String::as_str);
        if to == "ERRORED" && ending == Ending::CompleteOrErrored && n + 1 == log.len() {
            if !previous.is_some_and(|p| p.starts_with("RETIRING_")) {
                figures.violate(format!(
                    "retirement {id}: ERRORED from {previous:?}, not from a working state"
                ));
            }
            let kind = entry
                .text
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned();
            figures
                .errored_samples
                .entry(kind)
                .or_insert_with(|| entry.text.chars().take(160).collect());
            if !holds_failure(&entry.text, failure_bodies) {
                figures.violate(format!(
                    "retirement {id}: the ERRORED entry holds no failing response: {:?}",
                    entry.text
                ));
            }
        } else if Some(to) != expected {
            figures.violate(format!(
                "retirement {id}: log entry {n} moved to {to}, the path says {expected:?}"
            ));
        }
        previous = Some(to);
    }
    if previous != Some(retirement.current_state()) {
        figures.violate(format!(
            "retirement {id}: the log ends in {previous:?} but the status is {}",
            retirement.current_state()
        ));
    }
    log.iter()
        .filter(|e| state_name(&e.to).starts_with("RETIRING_"))
        .count()
}

/// Counts, per file, the seeded originals found in every file of `dir` (gzip archives
/// included, decompressed).
pub(crate) fn scan_files(
    dir: &Path,
    needles: &[String],
) -> Result<(usize, BTreeMap<String, usize>), String> {
    let mut scanned = 0;
    let mut hits = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        // The store's own files hold the originals until cleanup: the store is scanned
        // column by column instead.
        if name.starts_with("store.db") || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let text = if name.ends_with(".gz") {
            let mut out = String::new();
            let mut decoder = flate2::read::GzDecoder::new(&bytes[..]);
            std::io::Read::read_to_string(&mut decoder, &mut out)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            out
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        scanned += 1;
        let found = needles.iter().filter(|n| text.contains(n.as_str())).count();
        if found > 0 {
            hits.insert(name, found);
        }
    }
    Ok((scanned, hits))
}

/// Every seeded username, email and name.
pub(crate) fn needles(world: &World) -> Vec<String> {
    world
        .seeded
        .iter()
        .flat_map(|o| [o.username.clone(), o.email.clone(), o.name.clone()])
        .collect()
}
