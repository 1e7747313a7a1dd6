//! The retirement record (upstream's `UserRetirementStatus` row) and its transitions.
//!
//! Every change goes through a method here that validates it against the [`StateTable`], sets
//! `last_state`, updates `modified` and appends one [`LogEntry`]; the log is append-only.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::state::{COMPLETE, PENDING, State, StateTable};

/// A retirement's id (upstream's `UserRetirementStatus.id`, the `retirement_id` of the cancel API).
/// Not PII: logs and errors name learners by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RetirementId(pub i64);

impl fmt::Display for RetirementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The learner's original username, email and name: the PII retirement exists to erase.
///
/// `Debug` prints `<redacted>` for each field and there is no `Display`, so a stray `{:?}` in a
/// log line cannot leak them. Read the fields explicitly where a request body needs them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalIdentity {
    /// The username at request time (upstream's `original_username`).
    pub username: String,
    /// The email at request time (`original_email`).
    pub email: String,
    /// The full name at request time (`original_name`; may be empty).
    pub name: String,
}

impl fmt::Debug for OriginalIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginalIdentity")
            .field("username", &format_args!("<redacted>"))
            .field("email", &format_args!("<redacted>"))
            .field("name", &format_args!("<redacted>"))
            .finish()
    }
}

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// The learner's own request (or a bulk request) that created the retirement.
    Request,
    /// The retirement driver.
    Driver,
    /// A named operator, through an audited override.
    Operator(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Request => f.write_str("request"),
            Actor::Driver => f.write_str("driver"),
            Actor::Operator(name) => write!(f, "operator:{name}"),
        }
    }
}

impl FromStr for Actor {
    type Err = String;

    fn from_str(s: &str) -> Result<Actor, String> {
        match s {
            "request" => Ok(Actor::Request),
            "driver" => Ok(Actor::Driver),
            _ => match s.strip_prefix("operator:") {
                Some(name) if !name.is_empty() => Ok(Actor::Operator(name.to_owned())),
                _ => Err(format!("unknown actor {s:?}")),
            },
        }
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Actor, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One line of a retirement's append-only log (upstream's free-text `responses` column, made
/// structured).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When the change happened.
    pub at: DateTime<Utc>,
    /// The state before, in string form (`RETIRING_LMS (step 111)`); `None` for creation.
    pub from: Option<String>,
    /// The state after, in string form.
    pub to: String,
    /// Who made the change.
    pub actor: Actor,
    /// The response text (the driver's `Starting: …`, a service's answer, an operator's reason).
    pub text: String,
}

/// An operator's override: who and why, both required, both logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The operator's name (staff, not a learner).
    pub operator: String,
    /// Why the override is needed.
    pub reason: String,
}

impl Override {
    fn check(&self) -> Result<(), CoreError> {
        if self.operator.trim().is_empty() {
            return Err(CoreError::MissingAuditField { field: "operator" });
        }
        if self.reason.trim().is_empty() {
            return Err(CoreError::MissingAuditField { field: "reason" });
        }
        Ok(())
    }
}

/// All fields of a retirement, for a store that loads or saves one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetirementParts {
    /// The retirement's id.
    pub id: RetirementId,
    /// The LMS user id, when known (some services key on it).
    pub lms_user_id: Option<i64>,
    /// The original identifiers.
    pub original: OriginalIdentity,
    /// The hashed username (see [`crate::RetiredIdConfig`]).
    pub retired_username: String,
    /// The hashed email.
    pub retired_email: String,
    /// The current state's name.
    pub current_state: String,
    /// The previous state's name (equal to `current_state` right after creation).
    pub last_state: String,
    /// When the retirement was requested; drives the cool-off.
    pub created: DateTime<Utc>,
    /// When it last changed.
    pub modified: DateTime<Utc>,
    /// The append-only log, oldest first.
    pub log: Vec<LogEntry>,
}

/// A learner's retirement status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retirement {
    parts: RetirementParts,
}

impl Retirement {
    /// Creates a retirement in the table's initial state, logging
    /// `Created in state PENDING (step 1) by create_retirement` as upstream does.
    pub fn create(
        id: RetirementId,
        lms_user_id: Option<i64>,
        original: OriginalIdentity,
        retired_username: String,
        retired_email: String,
        table: &StateTable,
        now: DateTime<Utc>,
    ) -> Result<Retirement, CoreError> {
        let initial = table.initial()?;
        let parts = RetirementParts {
            id,
            lms_user_id,
            original,
            retired_username,
            retired_email,
            current_state: initial.name.clone(),
            last_state: initial.name.clone(),
            created: now,
            modified: now,
            log: vec![LogEntry {
                at: now,
                from: None,
                to: initial.to_string(),
                actor: Actor::Request,
                text: format!("Created in state {initial} by create_retirement"),
            }],
        };
        Ok(Retirement { parts })
    }

    /// Rebuilds a retirement a store loaded. The store is trusted to hold what this crate wrote.
    pub fn from_parts(parts: RetirementParts) -> Retirement {
        Retirement { parts }
    }

    /// All fields, for a store to save.
    pub fn parts(&self) -> &RetirementParts {
        &self.parts
    }

    /// All fields, by value.
    pub fn into_parts(self) -> RetirementParts {
        self.parts
    }

    /// The retirement's id.
    pub fn id(&self) -> RetirementId {
        self.parts.id
    }

    /// The original identifiers (PII: never log them).
    pub fn original(&self) -> &OriginalIdentity {
        &self.parts.original
    }

    /// The hashed username, safe to log.
    pub fn retired_username(&self) -> &str {
        &self.parts.retired_username
    }

    /// The current state's name.
    pub fn current_state(&self) -> &str {
        &self.parts.current_state
    }

    /// The previous state's name.
    pub fn last_state(&self) -> &str {
        &self.parts.last_state
    }

    /// When it was requested.
    pub fn created(&self) -> DateTime<Utc> {
        self.parts.created
    }

    /// When it last changed.
    pub fn modified(&self) -> DateTime<Utc> {
        self.parts.modified
    }

    /// The append-only log, oldest first.
    pub fn log(&self) -> &[LogEntry] {
        &self.parts.log
    }

    /// Moves forward to `new_state` (upstream's non-forced `update_state`): the target must be
    /// known and strictly later, and a dead-end state is never left.
    pub fn advance(
        &mut self,
        table: &StateTable,
        new_state: &str,
        response: &str,
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<&LogEntry, CoreError> {
        let (from, to) = table.check_advance(&self.parts.current_state, new_state)?;
        Ok(self.record(from.to_string(), to, actor, response.to_owned(), now))
    }

    /// An operator's override to any known state, backwards or out of a dead end. Unlike
    /// upstream's admin edit (defect D7) it needs the operator's name and a reason, sets
    /// `last_state` and logs who, why, from and to. An unknown target is an error (upstream
    /// answers 500, defect D3).
    pub fn force(
        &mut self,
        table: &StateTable,
        to: &str,
        why: &Override,
        now: DateTime<Utc>,
    ) -> Result<&LogEntry, CoreError> {
        why.check()?;
        let to = table.require(to)?;
        let from = table
            .get(&self.parts.current_state)
            .map(State::to_string)
            .unwrap_or_else(|| self.parts.current_state.clone());
        let text = format!(
            "Forced by operator {} from {} to {}: {}",
            why.operator, from, to, why.reason
        );
        Ok(self.record(from, to, Actor::Operator(why.operator.clone()), text, now))
    }

    /// Sends a COMPLETE retirement back to PENDING so every stage runs again (the documented
    /// "rerun" procedure, e.g. after a stage was added). Steps are idempotent, so finished work
    /// is a no-op.
    pub fn rerun(
        &mut self,
        table: &StateTable,
        why: &Override,
        now: DateTime<Utc>,
    ) -> Result<&LogEntry, CoreError> {
        if self.parts.current_state != COMPLETE {
            return Err(CoreError::NotComplete {
                retirement_id: self.parts.id,
                state: self.parts.current_state.clone(),
            });
        }
        self.force(table, PENDING, why, now)
    }

    /// Moves back to where the driver can resume: the last state, or, when that is a working
    /// state, the state just before it. Upstream's rewind lands in the working state, which its
    /// driver refuses, so a second manual move was needed (defect D19).
    pub fn rewind(
        &mut self,
        table: &StateTable,
        why: &Override,
        now: DateTime<Utc>,
    ) -> Result<&LogEntry, CoreError> {
        let last = self.parts.last_state.as_str();
        let target = if table.is_actionable(last) {
            table.predecessor(last).map(|s| s.name.clone())
        } else if last != self.parts.current_state {
            Some(last.to_owned())
        } else {
            None
        };
        match target {
            Some(target) => self.force(table, &target, why, now),
            None => Err(CoreError::NothingToRewind {
                retirement_id: self.parts.id,
                state: self.parts.current_state.clone(),
            }),
        }
    }

    /// Appends a note in the current state without moving (a vendor job started, a person
    /// asked): `from` and `to` are both the current state, `last_state` stays, `modified` moves
    /// forward.
    pub fn note(&mut self, text: &str, actor: Actor, now: DateTime<Utc>) -> &LogEntry {
        self.parts.modified = self.parts.modified.max(now);
        let state = self.parts.current_state.clone();
        self.parts.log.push(LogEntry {
            at: now,
            from: Some(state.clone()),
            to: state,
            actor,
            text: text.to_owned(),
        });
        self.parts.log.last().expect("an entry was just pushed")
    }

    /// Checks that the retirement may be cancelled: only from PENDING. Cancelling deletes the
    /// record (and its ledger row), so there is nothing here to mutate.
    pub fn check_cancellable(&self) -> Result<(), CoreError> {
        if self.parts.current_state == PENDING {
            Ok(())
        } else {
            Err(CoreError::NotPending {
                retirement_id: self.parts.id,
                state: self.parts.current_state.clone(),
            })
        }
    }

    /// The step endpoints' guard: a retirement action may run only in a working state (not
    /// required, not `*_COMPLETE`), which is what keeps two drivers off one learner upstream.
    pub fn check_actionable(&self, table: &StateTable) -> Result<(), CoreError> {
        if table.is_actionable(&self.parts.current_state) {
            return Ok(());
        }
        let state = table
            .get(&self.parts.current_state)
            .map(State::to_string)
            .unwrap_or_else(|| self.parts.current_state.clone());
        Err(CoreError::NotActionable {
            status: self.status_string(&state),
            state: self.parts.current_state.clone(),
        })
    }

    /// Upstream's string form of a status: `User: <id> State: <STATE (step N)> Last Updated: <t>`.
    /// The id is the LMS user id when known, else the retirement id (never a username).
    fn status_string(&self, state: &str) -> String {
        let who = match self.parts.lms_user_id {
            Some(user_id) => user_id.to_string(),
            None => format!("retirement {}", self.parts.id),
        };
        format!(
            "User: {who} State: {state} Last Updated: {}",
            self.parts.modified.format("%Y-%m-%d %H:%M:%S%.6f+00:00")
        )
    }

    /// The log rendered as upstream's `responses` text, for LMS-compatible output.
    pub fn responses_text(&self) -> String {
        let mut out = String::new();
        for entry in &self.parts.log {
            match &entry.from {
                None => out.push_str(&entry.text),
                Some(from) => {
                    out.push_str(&format!(
                        "\n Moved from {from} to {}:\n{}\n",
                        entry.to, entry.text
                    ));
                }
            }
        }
        out
    }

    /// Applies a validated move: the old state becomes `last_state`, `modified` moves forward,
    /// and one log entry is appended and returned (for a store to persist).
    fn record(
        &mut self,
        from_label: String,
        to: &State,
        actor: Actor,
        text: String,
        now: DateTime<Utc>,
    ) -> &LogEntry {
        // Reuse the old `last_state` buffer for the new current state: this is the hot path of
        // every transition.
        std::mem::swap(&mut self.parts.last_state, &mut self.parts.current_state);
        self.parts.current_state.clear();
        self.parts.current_state.push_str(&to.name);
        // `modified` never goes backwards, even if a caller's clock does.
        self.parts.modified = self.parts.modified.max(now);
        self.parts.log.push(LogEntry {
            at: now,
            from: Some(from_label),
            to: to.to_string(),
            actor,
            text,
        });
        self.parts.log.last().expect("an entry was just pushed")
    }
}

/// Checks the keys of an `update_retirement_status` body as upstream does, even for forced
/// moves: `username`, `new_state`, `response` required (in that order), `force` optional,
/// nothing else.
pub fn validate_update_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<(), CoreError> {
    let keys: Vec<&str> = keys.into_iter().collect();
    for required in ["username", "new_state", "response"] {
        if !keys.contains(&required) {
            return Err(CoreError::MissingUpdateKey { key: required });
        }
    }
    if let Some(unknown) = keys
        .iter()
        .find(|k| !matches!(**k, "username" | "new_state" | "response" | "force"))
    {
        return Err(CoreError::UnknownUpdateKey {
            key: (*unknown).to_owned(),
        });
    }
    Ok(())
}
