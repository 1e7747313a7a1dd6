//! `retirement_waits`: where a parked learner's wait is kept (a vendor job to poll, a person to
//! wait for), beside the statuses of this store, or in the lease database for the LMS store.
//! One row per learner; a wait applies only while the learner has not moved since it was
//! recorded ([`retirement_core::Wait::applies_to`]), so a stale row is harmless and is
//! replaced by the next wait.

use chrono::{DateTime, Utc};
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, Selectable, SelectableHelper};
use diesel_async::RunQueryDsl;
use retirement_core::{RetirementId, Wait, WaitingOn};

use crate::diesel_store::{DieselStore, with_conn};
use crate::error::{Result, StoreError};
use crate::rows::{from_micros, micros};
use crate::schema::retirement_waits as w;

/// A stored wait.
#[derive(Debug, Clone, diesel::Queryable, Selectable, diesel::Insertable)]
#[diesel(table_name = w)]
pub(crate) struct WaitRow {
    pub(crate) retirement_id: i64,
    pub(crate) working_state: String,
    pub(crate) service: String,
    pub(crate) kind: String,
    pub(crate) reference: String,
    pub(crate) next_poll: Option<i64>,
    pub(crate) since: i64,
}

impl WaitRow {
    pub(crate) fn new(id: RetirementId, wait: &Wait) -> WaitRow {
        let (kind, reference, next_poll) = match &wait.on {
            WaitingOn::Job { job_id, next_poll } => {
                ("job", job_id.clone(), Some(micros(*next_poll)))
            }
            WaitingOn::Person { reference } => ("person", reference.clone(), None),
        };
        WaitRow {
            retirement_id: id.0,
            working_state: wait.working_state.clone(),
            service: wait.service.clone(),
            kind: kind.to_owned(),
            reference,
            next_poll,
            since: micros(wait.since),
        }
    }

    pub(crate) fn into_wait(self) -> Result<(RetirementId, Wait)> {
        let on = match (self.kind.as_str(), self.next_poll) {
            ("job", Some(next)) => WaitingOn::Job {
                job_id: self.reference,
                next_poll: from_micros("retirement_waits", next)?,
            },
            ("person", _) => WaitingOn::Person {
                reference: self.reference,
            },
            (other, _) => {
                return Err(StoreError::InvalidArgument(format!(
                    "retirement_waits: unknown kind {other:?} for retirement {}",
                    self.retirement_id
                )));
            }
        };
        Ok((
            RetirementId(self.retirement_id),
            Wait {
                working_state: self.working_state,
                service: self.service,
                on,
                since: from_micros("retirement_waits", self.since)?,
            },
        ))
    }
}

/// Replaces a learner's wait (inside the caller's transaction or connection).
macro_rules! put_wait {
    ($c:expr, $row:expr) => {{
        let row: &$crate::waits::WaitRow = $row;
        diesel::delete(
            $crate::schema::retirement_waits::table
                .filter($crate::schema::retirement_waits::retirement_id.eq(row.retirement_id)),
        )
        .execute($c)
        .await?;
        diesel::insert_into($crate::schema::retirement_waits::table)
            .values(row.clone())
            .execute($c)
            .await?;
    }};
}
pub(crate) use put_wait;

impl DieselStore {
    /// The stored wait of `id`, if any (it may no longer apply).
    pub async fn stored_wait(&self, id: RetirementId) -> Result<Option<Wait>> {
        let row: Option<WaitRow> = with_conn!(self, c => {
            w::table
                .find(id.0)
                .select(WaitRow::as_select())
                .first(c)
                .await
                .optional()?
        });
        row.map(|r| r.into_wait().map(|(_, wait)| wait)).transpose()
    }

    /// Every stored wait, by retirement id (some may no longer apply).
    pub async fn stored_waits(&self) -> Result<Vec<(RetirementId, Wait)>> {
        let rows: Vec<WaitRow> = with_conn!(self, c => {
            w::table
                .order(w::retirement_id.asc())
                .select(WaitRow::as_select())
                .load(c)
                .await?
        });
        rows.into_iter().map(WaitRow::into_wait).collect()
    }

    /// Records `wait` for `id` outside any other write (the lease database of the LMS store).
    pub async fn put_wait(&self, id: RetirementId, wait: &Wait) -> Result<()> {
        let row = WaitRow::new(id, wait);
        with_conn!(self, c => {
            c.transaction(async |tx| -> Result<(), StoreError> {
                put_wait!(tx, &row);
                Ok(())
            })
            .await
        })
    }

    /// Moves a job wait's next poll (what `status` shows) after a poll found it running.
    pub(crate) async fn set_next_poll(&self, id: RetirementId, until: DateTime<Utc>) -> Result<()> {
        with_conn!(self, c => {
            diesel::update(w::table.filter(w::retirement_id.eq(id.0)).filter(w::kind.eq("job")))
                .set(w::next_poll.eq(micros(until)))
                .execute(c)
                .await?
        });
        Ok(())
    }
}

use diesel_async::AsyncConnection as _;
