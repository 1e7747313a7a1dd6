//! The ordered state table and the plan that synchronises it with a configured list of names.
//!
//! Upstream keeps states as rows (`RetirementState`) so operators can change them without a
//! migration, and only its `populate_retirement_states` command checks the list's shape. Here
//! the check lives in [`StateTable::from_names`], which also enforces what upstream forgot
//! (unique names, at most 30 characters, every `RETIRING_X` directly followed by `X_COMPLETE`).

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;

/// The state every retirement starts in; the cool-off happens here.
pub const PENDING: &str = "PENDING";
/// The dead end for a retirement whose step failed.
pub const ERRORED: &str = "ERRORED";
/// The dead end for a retirement an operator gave up on.
pub const ABORTED: &str = "ABORTED";
/// The dead end for a finished retirement.
pub const COMPLETE: &str = "COMPLETE";
/// The four states every table must hold (upstream's `required` flag).
pub const REQUIRED_STATES: [&str; 4] = [PENDING, ERRORED, ABORTED, COMPLETE];
/// The terminal states, in table order (upstream's `is_dead_end_state` flag).
pub const END_STATES: [&str; 3] = [ERRORED, ABORTED, COMPLETE];
/// Upstream's column width for `state_name`.
pub const MAX_STATE_NAME_LEN: usize = 30;
/// The first execution order `sync` assigns, and the step between two states (1, 11, 21, …).
const ORDER_START: i32 = 1;
const ORDER_STEP: i32 = 10;

/// Upstream's default `RETIREMENT_STATES` (`openedx/envs/common.py`).
pub const DEFAULT_RETIREMENT_STATES: &[&str] = &[
    "PENDING",
    "LOCKING_ACCOUNT",
    "LOCKING_COMPLETE",
    "RETIRING_FORUMS",
    "FORUMS_COMPLETE",
    "RETIRING_EMAIL_LISTS",
    "EMAIL_LISTS_COMPLETE",
    "RETIRING_ENROLLMENTS",
    "ENROLLMENTS_COMPLETE",
    "RETIRING_NOTES",
    "NOTES_COMPLETE",
    "RETIRING_LMS",
    "LMS_COMPLETE",
    "ERRORED",
    "ABORTED",
    "COMPLETE",
];

/// One row of the state table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct State {
    /// The state's name, e.g. `RETIRING_FORUMS`.
    pub name: String,
    /// Its unique position; larger is later.
    pub execution_order: i32,
    /// Whether it is terminal (ERRORED, ABORTED, COMPLETE).
    pub dead_end: bool,
    /// Whether every table must hold it (PENDING and the terminal states). Required states are
    /// never actionable by step endpoints.
    pub required: bool,
}

impl State {
    /// A state named `name` at `execution_order`, with the flags its name implies.
    pub fn new(name: impl Into<String>, execution_order: i32) -> State {
        let name = name.into();
        State {
            dead_end: END_STATES.contains(&name.as_str()),
            required: REQUIRED_STATES.contains(&name.as_str()),
            name,
            execution_order,
        }
    }
}

/// Upstream's string form, `NAME (step N)`, which appears inside messages and logs.
impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (step {})", self.name, self.execution_order)
    }
}

/// The ordered set of states a retirement moves through.
///
/// Invariants: names unique, execution orders unique, rows sorted by execution order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateTable {
    states: Vec<State>,
}

impl StateTable {
    /// Builds a table from an ordered list of names, as `populate_retirement_states` does:
    /// orders 1, 11, 21, …; dead-end and required flags from the names.
    ///
    /// Refuses, in upstream's order, an empty list, a list without the four required states,
    /// PENDING not first and a wrong tail; then what upstream forgot: empty or duplicate names,
    /// names over 30 characters, and a `RETIRING_X` not directly followed by `X_COMPLETE`.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<StateTable, CoreError> {
        validate_names(names)?;
        let states = names
            .iter()
            .zip((ORDER_START..).step_by(ORDER_STEP as usize))
            .map(|(name, order)| State::new(name.as_ref(), order))
            .collect();
        Ok(StateTable { states })
    }

    /// Upstream's default table ([`DEFAULT_RETIREMENT_STATES`]).
    pub fn upstream_default() -> StateTable {
        StateTable::from_names(DEFAULT_RETIREMENT_STATES)
            .expect("the upstream default list is valid")
    }

    /// Rebuilds a table from stored rows, in any order.
    ///
    /// Stored rows may have been edited by hand (upstream's admin allows it), so only the
    /// invariants the rest of this crate relies on are checked: unique, non-empty names and
    /// unique execution orders. An empty table is allowed; creating a retirement in it fails
    /// with [`CoreError::NoDefaultState`].
    pub fn from_rows(mut rows: Vec<State>) -> Result<StateTable, CoreError> {
        rows.sort_by_key(|s| s.execution_order);
        let mut seen = HashSet::with_capacity(rows.len());
        for (position, state) in rows.iter().enumerate() {
            if state.name.trim().is_empty() {
                return Err(CoreError::EmptyStateName { position });
            }
            if !seen.insert(state.name.as_str()) {
                return Err(CoreError::DuplicateState {
                    name: state.name.clone(),
                });
            }
        }
        if let Some(pair) = rows
            .windows(2)
            .find(|w| w[0].execution_order == w[1].execution_order)
        {
            return Err(CoreError::DuplicateExecutionOrder {
                order: pair[0].execution_order,
                first: pair[0].name.clone(),
                second: pair[1].name.clone(),
            });
        }
        Ok(StateTable { states: rows })
    }

    /// The states in execution order.
    pub fn states(&self) -> &[State] {
        &self.states
    }

    /// The state names in execution order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.states.iter().map(|s| s.name.as_str())
    }

    /// Whether the table has no states.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The state named `name`.
    pub fn get(&self, name: &str) -> Option<&State> {
        self.position(name).map(|i| &self.states[i])
    }

    /// The index of the state named `name` in execution order.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.states.iter().position(|s| s.name == name)
    }

    /// The state new retirements start in: the lowest execution order.
    pub fn initial(&self) -> Result<&State, CoreError> {
        self.states.first().ok_or(CoreError::NoDefaultState)
    }

    /// The state named `name`, or [`CoreError::UnknownState`].
    pub fn require(&self, name: &str) -> Result<&State, CoreError> {
        self.get(name).ok_or_else(|| CoreError::UnknownState {
            name: name.to_owned(),
        })
    }

    /// Checks a non-forced move from `current` to `new_state`: the target must exist and come
    /// strictly later, and the current state must not be a dead end (upstream's dead-end guard
    /// never fires, defect D1; this one does). Returns both states.
    pub fn check_advance(
        &self,
        current: &str,
        new_state: &str,
    ) -> Result<(&State, &State), CoreError> {
        let from = self.require(current)?;
        if from.dead_end {
            return Err(CoreError::DeadEnd {
                current: from.to_string(),
            });
        }
        match self.get(new_state) {
            Some(to) if to.execution_order > from.execution_order => Ok((from, to)),
            _ => Err(CoreError::NotLaterState {
                new_state: new_state.to_owned(),
                current: from.to_string(),
            }),
        }
    }

    /// Whether a step endpoint may act on a learner in `name`: the state is known, not
    /// required and its name does not end in `_COMPLETE` (upstream's
    /// `get_retirement_for_retirement_action` guard).
    pub fn is_actionable(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|s| !s.required && !s.name.ends_with("_COMPLETE"))
    }

    /// The state directly before `name` in execution order.
    pub fn predecessor(&self, name: &str) -> Option<&State> {
        match self.position(name)? {
            0 => None,
            i => Some(&self.states[i - 1]),
        }
    }
}

fn validate_names<S: AsRef<str>>(names: &[S]) -> Result<(), CoreError> {
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    if names.is_empty() {
        return Err(CoreError::NoStates);
    }
    if !REQUIRED_STATES.iter().all(|r| names.contains(r)) {
        return Err(CoreError::MissingRequiredStates {
            listed: python_list(&names),
        });
    }
    if names[0] != PENDING {
        return Err(CoreError::PendingNotFirst);
    }
    if names.len() < 4 || names[names.len() - 3..] != END_STATES {
        return Err(CoreError::WrongEndStates);
    }
    let mut seen = HashSet::with_capacity(names.len());
    for (position, name) in names.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(CoreError::EmptyStateName { position });
        }
        let len = name.chars().count();
        if len > MAX_STATE_NAME_LEN {
            return Err(CoreError::StateNameTooLong {
                name: (*name).to_owned(),
                len,
            });
        }
        if !seen.insert(*name) {
            return Err(CoreError::DuplicateState {
                name: (*name).to_owned(),
            });
        }
    }
    for (i, name) in names.iter().enumerate() {
        if let Some(service) = name.strip_prefix("RETIRING_") {
            let expected = format!("{service}_COMPLETE");
            let next = names.get(i + 1).copied();
            if next != Some(expected.as_str()) {
                return Err(CoreError::UnpairedWorkingState {
                    working: (*name).to_owned(),
                    expected,
                    found: next.unwrap_or("nothing").to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// A string as Python's `repr` prints it, for messages that quote upstream's Python output.
fn python_str(s: &str) -> String {
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// A list of strings as Python prints it: `['A', 'B']`.
pub(crate) fn python_list(items: &[&str]) -> String {
    let inner: Vec<String> = items.iter().map(|s| python_str(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// A set of strings as Python prints it, sorted for a stable message: `{'A', 'B'}`.
fn python_set<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let sorted: BTreeSet<&str> = items.into_iter().collect();
    let inner: Vec<String> = sorted.iter().map(|s| python_str(s)).collect();
    format!("{{{}}}", inner.join(", "))
}

/// What synchronising the stored table with a configured list would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncPlan {
    /// Names in the list but not in the stored table, in list order.
    pub added: Vec<String>,
    /// Names in the stored table but not in the list, in stored order.
    pub removed: Vec<String>,
    /// Names in both, in list order.
    pub kept: Vec<String>,
    /// The table after the sync: list order, orders 1, 11, 21, …, and flags recomputed from the
    /// names for every state (upstream recomputes them for added states only, defect D5).
    pub table: StateTable,
}

impl SyncPlan {
    /// Whether applying the plan would change anything (names, orders or flags).
    pub fn changes_anything(&self, current: &[State]) -> bool {
        let mut current = current.to_vec();
        current.sort_by_key(|s| s.execution_order);
        current != self.table.states
    }
}

/// Plans making the stored `current` table mirror the configured `desired` list, as
/// `populate_retirement_states` does; pure, so a dry run and the real run share it.
///
/// `occupied` names every state that holds at least one retirement. The plan is refused where
/// upstream refuses: an invalid list (see [`StateTable::from_names`]), any retirement in a state
/// other than the four required ones (even for a dry run), and any retirement in a state the
/// plan would remove.
pub fn plan_sync<D: AsRef<str>, O: AsRef<str>>(
    current: &[State],
    desired: &[D],
    occupied: &[O],
) -> Result<SyncPlan, CoreError> {
    let table = StateTable::from_names(desired)?;
    if occupied
        .iter()
        .any(|s| !REQUIRED_STATES.contains(&s.as_ref()))
    {
        return Err(CoreError::LearnersBeingProcessed);
    }
    let desired_names: HashSet<&str> = table.names().collect();
    let mut current_sorted: Vec<&State> = current.iter().collect();
    current_sorted.sort_by_key(|s| s.execution_order);
    let current_names: HashSet<&str> = current.iter().map(|s| s.name.as_str()).collect();
    let removed: Vec<String> = current_sorted
        .iter()
        .filter(|s| !desired_names.contains(s.name.as_str()))
        .map(|s| s.name.clone())
        .collect();
    // Defensive, as upstream: unreachable while every occupied state is required and every
    // required state is in a valid list, but it guards the cascade delete if either rule changes.
    let doomed: Vec<&str> = occupied
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| removed.iter().any(|r| r == s))
        .collect();
    if !doomed.is_empty() {
        return Err(CoreError::LearnersInDeletedStates {
            states: python_set(doomed),
        });
    }
    let (kept, added) = table
        .names()
        .map(str::to_owned)
        .partition(|n| current_names.contains(n.as_str()));
    Ok(SyncPlan {
        added,
        removed,
        kept,
        table,
    })
}
