//! Row types and the conversions between rows and `retirement-core` values.

use chrono::{DateTime, Utc};
use diesel::prelude::{Insertable, Queryable, Selectable};
use retirement_core::{
    Actor, LogEntry, OriginalIdentity, Retirement, RetirementId, RetirementParts, State,
};

use crate::error::{Result, StoreError};
use crate::schema::{retirement_log, retirement_states, retirement_statuses};

/// Microseconds since the epoch: the one time format of every table.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(table: &'static str, us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| StoreError::Corrupt {
        table,
        what: "timestamp out of range".into(),
    })
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = retirement_states)]
pub(crate) struct StateRow {
    pub(crate) state_name: String,
    pub(crate) execution_order: i32,
    pub(crate) dead_end: bool,
    pub(crate) required: bool,
}

impl From<StateRow> for State {
    fn from(row: StateRow) -> State {
        State {
            name: row.state_name,
            execution_order: row.execution_order,
            dead_end: row.dead_end,
            required: row.required,
        }
    }
}

impl From<&State> for StateRow {
    fn from(state: &State) -> StateRow {
        StateRow {
            state_name: state.name.clone(),
            execution_order: state.execution_order,
            dead_end: state.dead_end,
            required: state.required,
        }
    }
}

/// A status row. Its `Debug` is derived, so it must never be logged: it holds the originals.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = retirement_statuses)]
pub(crate) struct StatusRow {
    pub(crate) id: i64,
    pub(crate) lms_user_id: Option<i64>,
    pub(crate) original_username: String,
    pub(crate) original_email: String,
    pub(crate) original_name: String,
    pub(crate) retired_username: String,
    pub(crate) retired_email: String,
    pub(crate) current_state: String,
    pub(crate) last_state: String,
    pub(crate) created: i64,
    pub(crate) modified: i64,
    pub(crate) lease_owner: Option<String>,
    pub(crate) lease_expires: Option<i64>,
    pub(crate) attempt: i64,
}

impl StatusRow {
    pub(crate) fn into_retirement(self, log: Vec<LogEntry>) -> Result<Retirement> {
        Ok(Retirement::from_parts(RetirementParts {
            id: RetirementId(self.id),
            lms_user_id: self.lms_user_id,
            original: OriginalIdentity {
                username: self.original_username,
                email: self.original_email,
                name: self.original_name,
            },
            retired_username: self.retired_username,
            retired_email: self.retired_email,
            current_state: self.current_state,
            last_state: self.last_state,
            created: from_micros("retirement_statuses", self.created)?,
            modified: from_micros("retirement_statuses", self.modified)?,
            log,
        }))
    }

    /// Whether a worker holds an unexpired lease at `now`.
    pub(crate) fn live_lease(&self, now: DateTime<Utc>) -> Option<i64> {
        match (&self.lease_owner, self.lease_expires) {
            (Some(_), Some(expires)) if expires > micros(now) => Some(expires),
            _ => None,
        }
    }
}

#[derive(Insertable)]
// None binds NULL: a `DEFAULT` in the SQL makes diesel re-prepare the statement each time.
#[diesel(table_name = retirement_statuses, treat_none_as_default_value = false)]
pub(crate) struct NewStatusRow<'a> {
    pub(crate) lms_user_id: Option<i64>,
    pub(crate) original_username: &'a str,
    pub(crate) original_email: &'a str,
    pub(crate) original_name: &'a str,
    pub(crate) retired_username: &'a str,
    pub(crate) retired_email: &'a str,
    pub(crate) current_state: &'a str,
    pub(crate) last_state: &'a str,
    pub(crate) created: i64,
    pub(crate) modified: i64,
    pub(crate) attempt: i64,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = retirement_log)]
pub(crate) struct LogRow {
    pub(crate) at: i64,
    pub(crate) from_state: Option<String>,
    pub(crate) to_state: String,
    pub(crate) actor: String,
    pub(crate) text: String,
}

impl LogRow {
    pub(crate) fn into_entry(self) -> Result<LogEntry> {
        Ok(LogEntry {
            at: from_micros("retirement_log", self.at)?,
            from: self.from_state,
            to: self.to_state,
            actor: self
                .actor
                .parse::<Actor>()
                .map_err(|what| StoreError::Corrupt {
                    table: "retirement_log",
                    what,
                })?,
            text: self.text,
        })
    }
}

#[derive(Insertable)]
// None binds NULL: a `DEFAULT` in the SQL makes diesel re-prepare the statement each time.
#[diesel(table_name = retirement_log, treat_none_as_default_value = false)]
pub(crate) struct NewLogRow {
    pub(crate) retirement_id: i64,
    pub(crate) at: i64,
    pub(crate) from_state: Option<String>,
    pub(crate) to_state: String,
    pub(crate) actor: String,
    pub(crate) text: String,
}

impl NewLogRow {
    pub(crate) fn new(id: RetirementId, entry: &LogEntry) -> NewLogRow {
        NewLogRow {
            retirement_id: id.0,
            at: micros(entry.at),
            from_state: entry.from.clone(),
            to_state: entry.to.clone(),
            actor: entry.actor.to_string(),
            text: entry.text.clone(),
        }
    }
}
