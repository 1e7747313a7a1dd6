//! The claim: the one operation whose SQL differs per backend.
//!
//! PostgreSQL and MySQL/MariaDB select the next claimable ids `FOR UPDATE SKIP LOCKED`, so
//! concurrent claimers pass over each other's rows instead of waiting or double-claiming, then
//! set owner, expiry and `attempt + 1` in the same transaction. SQLite has no row locks: the
//! claim runs in a `BEGIN IMMEDIATE` transaction, which takes the database's write lock before
//! reading, so two processes can never read the same free rows.

use diesel::{BoolExpressionMethods, ExpressionMethods, QueryDsl, SelectableHelper};

use crate::conn::Pools;
use crate::error::{Result, StoreError};
use crate::rows::StatusRow;
use crate::schema::retirement_statuses as s;

pub(crate) struct ClaimParams<'a> {
    pub(crate) owner: &'a str,
    pub(crate) limit: i64,
    pub(crate) now: i64,
    pub(crate) expires: i64,
    /// PENDING rows requested before this are claimable (`i64::MIN`: none).
    pub(crate) pending_cut: i64,
    /// Every other claimable state (completion and working states).
    pub(crate) others: &'a [String],
}

/// The claimable rows, lowest id first: no live lease, and either PENDING past the cool-off
/// or in one of the other claimable states.
macro_rules! claimable {
    ($p:expr) => {
        s::table
            .filter(s::lease_expires.is_null().or(s::lease_expires.le($p.now)))
            .filter(
                s::current_state
                    .eq(retirement_core::PENDING)
                    .and(s::created.lt($p.pending_cut))
                    .or(s::current_state.eq_any($p.others)),
            )
            .order(s::id.asc())
            .limit($p.limit)
            .select(s::id)
    };
}

/// Sets the lease on `ids` and reads them back.
macro_rules! take {
    ($conn:expr, $p:expr, $ids:expr, $($await:tt)*) => {{
        diesel::update(s::table.filter(s::id.eq_any($ids)))
            .set((
                s::lease_owner.eq($p.owner),
                s::lease_expires.eq($p.expires),
                s::attempt.eq(s::attempt + 1),
            ))
            .execute($conn)$($await)*?;
        s::table
            .filter(s::id.eq_any($ids))
            .order(s::id.asc())
            .select(StatusRow::as_select())
            .load::<StatusRow>($conn)$($await)*?
    }};
}

pub(crate) async fn claim_rows(pools: &Pools, p: ClaimParams<'_>) -> Result<Vec<StatusRow>> {
    use diesel_async::{AsyncConnection, RunQueryDsl};
    match pools {
        Pools::Sqlite(pool) => {
            let mut conn = pool.get().await.map_err(StoreError::connection)?;
            let owner = p.owner.to_owned();
            let others = p.others.to_vec();
            let (limit, now, expires, pending_cut) = (p.limit, p.now, p.expires, p.pending_cut);
            let rows = conn
                .spawn_blocking(move |c| {
                    let p = ClaimParams {
                        owner: &owner,
                        limit,
                        now,
                        expires,
                        pending_cut,
                        others: &others,
                    };
                    claim_sqlite(c, &p)
                })
                .await?;
            Ok(rows)
        }
        Pools::Postgres(pool) => {
            let mut conn = pool.get().await.map_err(StoreError::connection)?;
            conn.transaction(async |c| -> Result<_, StoreError> {
                let ids: Vec<i64> = claimable!(p).for_update().skip_locked().load(c).await?;
                Ok(take!(c, p, &ids, .await))
            })
            .await
        }
        Pools::Mysql(pool) => {
            let mut conn = pool.get().await.map_err(StoreError::connection)?;
            conn.transaction(async |c| -> Result<_, StoreError> {
                let ids: Vec<i64> = claimable!(p).for_update().skip_locked().load(c).await?;
                Ok(take!(c, p, &ids, .await))
            })
            .await
        }
    }
}

/// SQLite's claim, synchronous, on the connection's blocking thread.
fn claim_sqlite(
    c: &mut diesel::SqliteConnection,
    p: &ClaimParams<'_>,
) -> diesel::QueryResult<Vec<StatusRow>> {
    use diesel::RunQueryDsl;
    c.immediate_transaction(|c| {
        let ids: Vec<i64> = claimable!(p).load(c)?;
        Ok(take!(c, p, &ids,))
    })
}
