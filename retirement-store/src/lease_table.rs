//! [`LeaseTable`]: fenced leases kept apart from the states, for a status store that has no
//! leases of its own (the LMS API). Several driver processes on different hosts share one table
//! on PostgreSQL or MySQL/MariaDB (SQLite serves processes on one host) while the LMS stays the
//! store of states.
//!
//! Each learner has at most one row. Acquiring raises its `attempt` (the fencing number) and
//! succeeds only when no live lease exists; renewing, fencing and releasing are
//! compare-and-set on owner and attempt, so a worker whose lease was taken over learns it on
//! its next write. Before each state write the holder records the state it is about to write
//! ([`LeaseTable::fence`]): the next holder compares it with the state its listing showed and
//! knows the listing may be older than the last write ([`Acquired::last_state`]).
//!
//! No statement here needs a transaction: each is one conditional `UPDATE` or one `INSERT`
//! whose primary key decides a race.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::{BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::RunQueryDsl;
use retirement_core::{RetirementId, Wait};

use crate::diesel_store::{DieselStore, with_conn};
use crate::error::{Result, StoreError};
use crate::retirements::Lease;
use crate::rows::{from_micros, micros};
use crate::schema::retirement_leases as l;

/// A lease just acquired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    /// The lease to carry on every fenced write.
    pub lease: Lease,
    /// The state the previous holder last wrote or was about to write (`None`: never leased,
    /// or an operator override since). When it differs from what a listing showed, the listing
    /// is older than that write: read the learner again before driving it.
    pub last_state: Option<String>,
}

/// Fenced leases by retirement id. See the module docs.
#[async_trait]
pub trait LeaseTable: Send + Sync {
    /// The live leases at `now`.
    async fn live(&self, now: DateTime<Utc>) -> Result<Vec<Lease>>;

    /// The live lease on `id` at `now`, if any.
    async fn live_on(&self, id: RetirementId, now: DateTime<Utc>) -> Result<Option<Lease>>;

    /// Takes the lease on `id` for `owner` until `expires`, unless someone holds a live one
    /// (`None`).
    async fn acquire(
        &self,
        id: RetirementId,
        owner: &str,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Acquired>>;

    /// Extends a lease to `until`; [`StoreError::LeaseLost`] once it was taken over, released
    /// or revoked.
    async fn renew(&self, lease: &Lease, until: DateTime<Utc>) -> Result<Lease>;

    /// Checks that `lease` is still held and live at `now`, and records `state` as the state
    /// about to be written. Call it before every state write; [`StoreError::LeaseLost`] means
    /// write nothing.
    async fn fence(&self, lease: &Lease, state: &str, now: DateTime<Utc>) -> Result<()>;

    /// Gives the lease up, keeping the recorded state for the next holder.
    async fn release(&self, lease: &Lease) -> Result<()>;

    /// An operator override: ends any lease on `id` (its holder's next write is refused) and
    /// forgets the recorded state.
    async fn revoke(&self, id: RetirementId) -> Result<()>;

    /// Gives the lease up until `until` (`None`: until an operator's override revokes it):
    /// nobody acquires it before then. A parked learner (issue 15).
    async fn release_until(&self, lease: &Lease, until: Option<DateTime<Utc>>) -> Result<()>;

    /// Records a parked learner's wait (the LMS has nowhere to keep it).
    async fn record_wait(&self, id: RetirementId, wait: &Wait) -> Result<()>;

    /// The recorded wait of `id`, if any.
    async fn wait_of(&self, id: RetirementId) -> Result<Option<Wait>>;

    /// Every recorded wait.
    async fn waits(&self) -> Result<Vec<(RetirementId, Wait)>>;
}

fn lost(lease: &Lease) -> StoreError {
    StoreError::LeaseLost {
        retirement_id: lease.retirement_id,
        attempt: lease.attempt,
    }
}

/// Whether a failed statement was a primary-key race lost to another acquirer.
fn is_duplicate(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

/// The row of `lease`, still held by its owner at its attempt.
macro_rules! held {
    ($lease:expr) => {
        l::table
            .filter(l::retirement_id.eq($lease.retirement_id.0))
            .filter(l::owner.eq(&$lease.owner))
            .filter(l::attempt.eq($lease.attempt))
    };
}

#[async_trait]
impl LeaseTable for DieselStore {
    async fn live(&self, now: DateTime<Utc>) -> Result<Vec<Lease>> {
        let rows: Vec<(i64, Option<String>, i64, Option<i64>)> = with_conn!(self, c => {
            l::table
                .filter(l::expires.gt(micros(now)))
                .order(l::retirement_id.asc())
                .select((l::retirement_id, l::owner, l::attempt, l::expires))
                .load(c)
                .await?
        });
        rows.into_iter()
            .map(|(id, owner, attempt, expires)| {
                Ok(Lease {
                    retirement_id: RetirementId(id),
                    owner: owner.unwrap_or_default(),
                    attempt,
                    expires: from_micros("retirement_leases", expires.unwrap_or_default())?,
                })
            })
            .collect()
    }

    async fn live_on(&self, id: RetirementId, now: DateTime<Utc>) -> Result<Option<Lease>> {
        let row: Option<(Option<String>, i64, Option<i64>)> = with_conn!(self, c => {
            l::table
                .filter(l::retirement_id.eq(id.0))
                .filter(l::expires.gt(micros(now)))
                .select((l::owner, l::attempt, l::expires))
                .first(c)
                .await
                .optional()?
        });
        row.map(|(owner, attempt, expires)| {
            Ok(Lease {
                retirement_id: id,
                owner: owner.unwrap_or_default(),
                attempt,
                expires: from_micros("retirement_leases", expires.unwrap_or_default())?,
            })
        })
        .transpose()
    }

    async fn acquire(
        &self,
        id: RetirementId,
        owner: &str,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Acquired>> {
        let (now_us, expires_us) = (micros(now), micros(expires));
        // Take a row whose lease ran out (or was released); the condition decides a race.
        let taken = with_conn!(self, c => {
            diesel::update(
                l::table
                    .filter(l::retirement_id.eq(id.0))
                    .filter(l::expires.is_null().or(l::expires.le(now_us))),
            )
            .set((
                l::owner.eq(owner),
                l::attempt.eq(l::attempt + 1),
                l::expires.eq(expires_us),
            ))
            .execute(c)
            .await?
        });
        if taken == 1 {
            // Ours until `expires`: nobody else can change the row before we read it back.
            let row: Option<(i64, Option<String>)> = with_conn!(self, c => {
                l::table
                    .filter(l::retirement_id.eq(id.0))
                    .filter(l::owner.eq(owner))
                    .select((l::attempt, l::state))
                    .first(c)
                    .await
                    .optional()?
            });
            // Revoked between the two statements: not ours after all.
            return Ok(row.map(|(attempt, last_state)| Acquired {
                lease: Lease {
                    retirement_id: id,
                    owner: owner.to_owned(),
                    attempt,
                    expires,
                },
                last_state,
            }));
        }
        // No row yet (never leased), or a live lease: the insert's primary key tells which.
        let inserted = with_conn!(self, c => {
            diesel::insert_into(l::table)
                .values((
                    l::retirement_id.eq(id.0),
                    l::owner.eq(owner),
                    l::attempt.eq(1_i64),
                    l::expires.eq(expires_us),
                    l::state.eq(None::<String>),
                ))
                .execute(c)
                .await
        });
        match inserted {
            Ok(_) => Ok(Some(Acquired {
                lease: Lease {
                    retirement_id: id,
                    owner: owner.to_owned(),
                    attempt: 1,
                    expires,
                },
                last_state: None,
            })),
            Err(e) if is_duplicate(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn renew(&self, lease: &Lease, until: DateTime<Utc>) -> Result<Lease> {
        let updated = with_conn!(self, c => {
            diesel::update(held!(lease))
                .set(l::expires.eq(micros(until)))
                .execute(c)
                .await?
        });
        if updated != 1 {
            return Err(lost(lease));
        }
        Ok(Lease {
            expires: until,
            ..lease.clone()
        })
    }

    async fn fence(&self, lease: &Lease, state: &str, now: DateTime<Utc>) -> Result<()> {
        let updated = with_conn!(self, c => {
            diesel::update(held!(lease).filter(l::expires.gt(micros(now))))
                .set(l::state.eq(state))
                .execute(c)
                .await?
        });
        match updated {
            1 => Ok(()),
            _ => Err(lost(lease)),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        let updated = with_conn!(self, c => {
            diesel::update(held!(lease))
                .set((l::owner.eq(None::<String>), l::expires.eq(None::<i64>)))
                .execute(c)
                .await?
        });
        match updated {
            1 => Ok(()),
            _ => Err(lost(lease)),
        }
    }

    async fn release_until(&self, lease: &Lease, until: Option<DateTime<Utc>>) -> Result<()> {
        let expires = until.map(micros).unwrap_or(i64::MAX);
        let updated = with_conn!(self, c => {
            diesel::update(held!(lease))
                .set((l::owner.eq(None::<String>), l::expires.eq(expires)))
                .execute(c)
                .await?
        });
        if updated != 1 {
            return Err(lost(lease));
        }
        if let Some(until) = until {
            self.set_next_poll(lease.retirement_id, until).await?;
        }
        Ok(())
    }

    async fn record_wait(&self, id: RetirementId, wait: &Wait) -> Result<()> {
        self.put_wait(id, wait).await
    }

    async fn wait_of(&self, id: RetirementId) -> Result<Option<Wait>> {
        self.stored_wait(id).await
    }

    async fn waits(&self) -> Result<Vec<(RetirementId, Wait)>> {
        self.stored_waits().await
    }

    async fn revoke(&self, id: RetirementId) -> Result<()> {
        with_conn!(self, c => {
            diesel::update(l::table.filter(l::retirement_id.eq(id.0)))
                .set((
                    l::owner.eq(None::<String>),
                    l::expires.eq(None::<i64>),
                    l::attempt.eq(l::attempt + 1),
                    l::state.eq(None::<String>),
                ))
                .execute(c)
                .await?
        });
        Ok(())
    }
}
