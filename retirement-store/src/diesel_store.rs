//! [`DieselStore`]: the retirement tables over SQLite, PostgreSQL or MySQL.
//!
//! Each operation is written once, as a macro body that the `with_conn!` macro expands for each
//! backend's connection type, so the SQL is identical everywhere except where a backend needs
//! its own (the claim: `FOR UPDATE SKIP LOCKED` on the servers, `BEGIN IMMEDIATE` on SQLite).

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use diesel::{
    BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper,
};
use diesel_async::{AsyncConnection, RunQueryDsl};
use retirement_core::{
    Actor, LogEntry, Override, PENDING, Retirement, RetirementId, State, StateTable, SyncPlan,
    Wait, plan_sync,
};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

use crate::conn::{self, BackendKind, Pools, StoreOptions, StoreUrl};
use crate::error::{Result, StoreError};
use crate::retirements::{
    ClaimRequest, Claimed, Lease, MoveTarget, NewRetirement, QueueQuery, RetirementStore,
    StateWindow,
};
use crate::rows::{LogRow, NewLogRow, NewStatusRow, StateRow, StatusRow, from_micros, micros};
use crate::schema::{
    retirement_actions as act, retirement_log as log, retirement_requests as req,
    retirement_states as st, retirement_statuses as s, retirement_waits as wt,
};
use crate::waits::{WaitRow, put_wait};

/// Runs `$body` with `$c` bound to a pooled connection of whichever backend the store uses.
macro_rules! with_conn {
    ($store:expr, $c:ident => $body:expr) => {
        match &$store.pools {
            $crate::conn::Pools::Sqlite(pool) => {
                let mut pooled = pool
                    .get()
                    .await
                    .map_err($crate::error::StoreError::connection)?;
                let $c = &mut *pooled;
                $body
            }
            $crate::conn::Pools::Postgres(pool) => {
                let mut pooled = pool
                    .get()
                    .await
                    .map_err($crate::error::StoreError::connection)?;
                let $c = &mut *pooled;
                $body
            }
            $crate::conn::Pools::Mysql(pool) => {
                let mut pooled = pool
                    .get()
                    .await
                    .map_err($crate::error::StoreError::connection)?;
                let $c = &mut *pooled;
                $body
            }
        }
    };
}
pub(crate) use with_conn;

/// Runs `$body` inside one transaction on any backend.
macro_rules! in_transaction {
    ($store:expr, $tx:ident => $body:expr) => {
        with_conn!($store, c => {
            c.transaction(async |$tx| -> Result<_, StoreError> { $body }).await
        })
    };
}

/// The state table, read inside a transaction.
/// `$aw` is `.await` on the async connections and empty on SQLite's synchronous one (the
/// single-hop paths, see `advance`).
macro_rules! load_table {
    ($tx:expr) => {
        load_table!($tx, .await)
    };
    ($tx:expr, $($aw:tt)*) => {{
        let rows: Vec<StateRow> = st::table.select(StateRow::as_select()).load($tx)$($aw)*?;
        StateTable::from_rows(rows.into_iter().map(State::from).collect())?
    }};
}

/// One status row or `NotFound`.
macro_rules! load_status {
    ($tx:expr, $id:expr) => {
        load_status!($tx, $id; .await)
    };
    ($tx:expr, $id:expr; $($aw:tt)*) => {{
        let id: RetirementId = $id;
        s::table
            .find(id.0)
            .select(StatusRow::as_select())
            .first::<StatusRow>($tx)
            $($aw)*
            .optional()?
            .ok_or_else(|| StoreError::NotFound {
                what: format!("retirement {id}"),
            })?
    }};
}

/// A status row's log, oldest first.
macro_rules! load_log {
    ($tx:expr, $id:expr) => {{
        let rows: Vec<LogRow> = log::table
            .filter(log::retirement_id.eq($id))
            .order(log::id.asc())
            .select(LogRow::as_select())
            .load($tx)
            .await?;
        rows.into_iter()
            .map(LogRow::into_entry)
            .collect::<Result<Vec<LogEntry>>>()?
    }};
}

/// Writes a transition made in memory: new states and `modified`, compare-and-set on the
/// attempt number and the state read, plus its log row. `$end_lease` also raises the attempt
/// and clears the lease (operator overrides). Fails with `$lost` when the row moved on.
macro_rules! write_transition {
    ($tx:expr, $row:expr, $retirement:expr, $entry:expr, $end_lease:expr, $lost:expr) => {
        write_transition!($tx, $row, $retirement, $entry, $end_lease, $lost; .await)
    };
    ($tx:expr, $row:expr, $retirement:expr, $entry:expr, $end_lease:expr, $lost:expr; $($aw:tt)*) => {{
        let row: &StatusRow = $row;
        let parts = $retirement.parts();
        let target = s::table
            .filter(s::id.eq(row.id))
            .filter(s::attempt.eq(row.attempt))
            .filter(s::current_state.eq(&row.current_state));
        let updated = if $end_lease {
            diesel::update(target)
                .set((
                    s::current_state.eq(&parts.current_state),
                    s::last_state.eq(&parts.last_state),
                    s::modified.eq(micros(parts.modified)),
                    s::attempt.eq(row.attempt + 1),
                    s::lease_owner.eq(None::<String>),
                    s::lease_expires.eq(None::<i64>),
                ))
                .execute($tx)
                $($aw)*?
        } else if retirement_core::END_STATES.contains(&parts.current_state.as_str()) {
            // Reaching an end state ends the lease in the same write: nothing is left to do,
            // and the worker need not spend another round trip releasing it.
            diesel::update(target)
                .set((
                    s::current_state.eq(&parts.current_state),
                    s::last_state.eq(&parts.last_state),
                    s::modified.eq(micros(parts.modified)),
                    s::lease_owner.eq(None::<String>),
                    s::lease_expires.eq(None::<i64>),
                ))
                .execute($tx)
                $($aw)*?
        } else {
            diesel::update(target)
                .set((
                    s::current_state.eq(&parts.current_state),
                    s::last_state.eq(&parts.last_state),
                    s::modified.eq(micros(parts.modified)),
                ))
                .execute($tx)
                $($aw)*?
        };
        if updated != 1 {
            return Err($lost);
        }
        diesel::insert_into(log::table)
            .values(NewLogRow::new(RetirementId(row.id), $entry))
            .execute($tx)
            $($aw)*?;
    }};
}

/// Refuses a write whose lease is stale, or a lease-less write while a worker holds the learner.
fn check_lease(
    row: &StatusRow,
    lease: Option<&Lease>,
    id: RetirementId,
    now: DateTime<Utc>,
) -> Result<()> {
    match lease {
        Some(lease) => {
            if row.attempt != lease.attempt
                || row.lease_owner.as_deref() != Some(lease.owner.as_str())
            {
                return Err(StoreError::LeaseLost {
                    retirement_id: id,
                    attempt: lease.attempt,
                });
            }
        }
        None => {
            if let Some(until) = row.live_lease(now) {
                return Err(StoreError::Leased {
                    retirement_id: id,
                    until: from_micros("retirement_statuses", until)?.to_rfc3339(),
                });
            }
        }
    }
    Ok(())
}

/// The advanced record and its log entry, by `retirement-core`'s rules.
fn plan_advance(
    table: &StateTable,
    row: &StatusRow,
    new_state: &str,
    response: &str,
    actor: Actor,
    now: DateTime<Utc>,
) -> Result<(Retirement, LogEntry)> {
    let mut retirement = row.clone().into_retirement(Vec::new())?;
    let entry = retirement
        .advance(table, new_state, response, actor, now)?
        .clone();
    Ok((retirement, entry))
}

/// What a lost compare-and-set means for an advance: the lease moved on, or (without one) a
/// concurrent change.
fn advance_conflict(lease: Option<&Lease>, id: RetirementId) -> StoreError {
    match lease {
        Some(lease) => StoreError::LeaseLost {
            retirement_id: id,
            attempt: lease.attempt,
        },
        None => StoreError::Conflict { retirement_id: id },
    }
}

/// A pool of connections to one database, with the retirement and assignment tables.
pub struct DieselStore {
    pub(crate) pools: Pools,
    url: StoreUrl,
}

impl std::fmt::Debug for DieselStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DieselStore")
            .field("backend", &self.url.kind)
            .field("url", &self.url.redacted)
            .finish()
    }
}

impl DieselStore {
    /// Connects and checks that the schema is current; a schema that is behind is
    /// [`StoreError::SchemaBehind`], telling the operator to run `retire db migrate`.
    ///
    /// ```
    /// use retirement_store::{DieselStore, StoreError, StoreOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), StoreError> {
    /// let path = std::env::temp_dir().join(format!("connect-doc-{}.db", std::process::id()));
    /// let url = format!("sqlite://{}", path.display());
    /// // A new database is behind: connect refuses it until migrated.
    /// let refused = DieselStore::connect(&url, &StoreOptions::default()).await;
    /// assert!(matches!(refused, Err(StoreError::SchemaBehind { .. })));
    /// DieselStore::open(&url, &StoreOptions::default()).await?.migrate().await?;
    /// let store = DieselStore::connect(&url, &StoreOptions::default()).await?;
    /// # drop(store);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<DieselStore> {
        let store = DieselStore::open(url, options).await?;
        let pending = store.pending_migrations().await?;
        if !pending.is_empty() {
            return Err(StoreError::SchemaBehind { pending });
        }
        Ok(store)
    }

    /// Connects without checking the schema: for `migrate`. The URL picks the backend:
    /// `sqlite://PATH` (or `sqlite::memory:`), `postgres://…`, `mysql://…`; passwords in it
    /// are never shown in errors or `Debug`.
    ///
    /// ```
    /// use retirement_store::{DieselStore, StoreError, StoreOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), StoreError> {
    /// let store = DieselStore::open("sqlite::memory:", &StoreOptions::default()).await?;
    /// assert!(!store.migrate().await?.is_empty());
    /// let unknown = DieselStore::open("oracle://scott:tiger@db", &StoreOptions::default()).await;
    /// let message = unknown.unwrap_err().to_string();
    /// assert!(!message.contains("tiger"), "{message}");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open(url: &str, options: &StoreOptions) -> Result<DieselStore> {
        let url = StoreUrl::parse(url)?;
        let pools = conn::build_pools(&url, options).await?;
        Ok(DieselStore { pools, url })
    }

    /// Applies every pending migration; returns the versions applied.
    pub async fn migrate(&self) -> Result<Vec<String>> {
        conn::migrations(&self.pools, &self.url, true).await
    }

    /// The versions of the migrations not yet applied.
    pub async fn pending_migrations(&self) -> Result<Vec<String>> {
        conn::migrations(&self.pools, &self.url, false).await
    }

    /// Which database this is.
    pub fn backend(&self) -> BackendKind {
        self.url.kind
    }

    /// The URL with any password replaced, for messages.
    pub fn redacted_url(&self) -> &str {
        &self.url.redacted
    }

    async fn list(
        &self,
        states: Vec<String>,
        created_from: Option<i64>,
        created_before: i64,
        limit: Option<i64>,
    ) -> Result<Vec<Retirement>> {
        let rows: Vec<StatusRow> = with_conn!(self, c => {
            let mut query = s::table
                .filter(s::current_state.eq_any(&states))
                .filter(s::created.lt(created_before))
                .filter(s::created.ge(created_from.unwrap_or(i64::MIN)))
                .order(s::id.asc())
                .select(StatusRow::as_select())
                .into_boxed();
            if let Some(limit) = limit {
                query = query.limit(limit);
            }
            query.load(c).await?
        });
        rows.into_iter()
            .map(|row| row.into_retirement(Vec::new()))
            .collect()
    }

    async fn window_bounds(&self, window: &StateWindow, now: DateTime<Utc>) -> Result<(i64, i64)> {
        let table = self.state_table().await?;
        if table.get(&window.state).is_none() {
            return Err(StoreError::UnknownRetirementState);
        }
        if window.start > window.end || window.end > now.date_naive() {
            return Err(StoreError::BadDateRange);
        }
        let start = window.start.and_time(chrono::NaiveTime::MIN).and_utc();
        let end = (window.end + TimeDelta::days(1))
            .and_time(chrono::NaiveTime::MIN)
            .and_utc();
        Ok((micros(start), micros(end)))
    }
}

/// The cool-off cut: requested strictly before `now − days`.
fn cool_off_cut(now: DateTime<Utc>, days: i64) -> Result<i64> {
    let cut = TimeDelta::try_days(days)
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| StoreError::InvalidArgument(format!("cool_off_days {days} is too large")))?;
    Ok(micros(cut))
}

#[async_trait]
impl RetirementStore for DieselStore {
    async fn state_table(&self) -> Result<StateTable> {
        let rows: Vec<StateRow> =
            with_conn!(self, c => st::table.select(StateRow::as_select()).load(c).await?);
        Ok(StateTable::from_rows(
            rows.into_iter().map(State::from).collect(),
        )?)
    }

    async fn sync_states(&self, desired: &[String], dry_run: bool) -> Result<SyncPlan> {
        in_transaction!(self, tx => {
            let current: Vec<State> = st::table
                .select(StateRow::as_select())
                .load::<StateRow>(tx)
                .await?
                .into_iter()
                .map(State::from)
                .collect();
            let occupied: Vec<String> = s::table
                .select(s::current_state)
                .distinct()
                .load(tx)
                .await?;
            let plan = plan_sync(&current, desired, &occupied)?;
            if !dry_run && plan.changes_anything(&current) {
                // Replace the whole table: reordering in place would trip the unique
                // execution-order index halfway through.
                diesel::delete(st::table).execute(tx).await?;
                for state in plan.table.states() {
                    diesel::insert_into(st::table).values(StateRow::from(state)).execute(tx).await?;
                }
            }
            Ok(plan)
        })
    }

    async fn enqueue(&self, request: NewRetirement, now: DateTime<Utc>) -> Result<Retirement> {
        let request = &request;
        let result = in_transaction!(self, tx => {
            let table = load_table!(tx);
            let initial = table.initial()?.name.clone();
            let existing: Option<i64> = s::table
                .filter(s::original_username.eq(&request.original.username))
                .select(s::id)
                .first(tx)
                .await
                .optional()?;
            if let Some(id) = existing {
                return Err(StoreError::AlreadyHasStatus { retirement_id: RetirementId(id) });
            }
            let requested: Option<String> = req::table
                .filter(req::retired_username.eq(&request.retired_username))
                .select(req::retired_username)
                .first(tx)
                .await
                .optional()?;
            if requested.is_some() {
                return Err(StoreError::AlreadyHasRequest);
            }
            diesel::insert_into(req::table)
                .values((
                    req::retired_username.eq(&request.retired_username),
                    req::retired_email.eq(&request.retired_email),
                    req::created.eq(micros(now)),
                ))
                .execute(tx)
                .await?;
            diesel::insert_into(s::table)
                .values(NewStatusRow {
                    lms_user_id: request.lms_user_id,
                    original_username: &request.original.username,
                    original_email: &request.original.email,
                    original_name: &request.original.name,
                    retired_username: &request.retired_username,
                    retired_email: &request.retired_email,
                    current_state: &initial,
                    last_state: &initial,
                    created: micros(now),
                    modified: micros(now),
                    attempt: 0,
                })
                .execute(tx)
                .await?;
            // MySQL has no RETURNING: read the id back by the unique original username.
            let id: i64 = s::table
                .filter(s::original_username.eq(&request.original.username))
                .select(s::id)
                .first(tx)
                .await?;
            let retirement = Retirement::create(
                RetirementId(id),
                request.lms_user_id,
                request.original.clone(),
                request.retired_username.clone(),
                request.retired_email.clone(),
                &table,
                now,
            )?;
            diesel::insert_into(log::table)
                .values(NewLogRow::new(RetirementId(id), &retirement.log()[0]))
                .execute(tx)
                .await?;
            Ok(retirement)
        });
        // Two concurrent requests for one learner: the loser hits a unique index.
        match result {
            Err(StoreError::Database(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ))) => match self.find_by_username(&request.original.username).await {
                Ok(existing) => Err(StoreError::AlreadyHasStatus {
                    retirement_id: existing.id(),
                }),
                Err(_) => Err(StoreError::AlreadyHasRequest),
            },
            other => other,
        }
    }

    async fn was_requested(&self, retired_usernames: &[String]) -> Result<bool> {
        let found: i64 = with_conn!(self, c => {
            req::table
                .filter(req::retired_username.eq_any(retired_usernames))
                .count()
                .get_result(c)
                .await?
        });
        Ok(found > 0)
    }

    async fn get(&self, id: RetirementId) -> Result<Retirement> {
        in_transaction!(self, tx => {
            let row = load_status!(tx, id);
            let entries = load_log!(tx, row.id);
            row.into_retirement(entries)
        })
    }

    async fn find_by_username(&self, original_username: &str) -> Result<Retirement> {
        in_transaction!(self, tx => {
            // MySQL's PAD SPACE collations ignore trailing spaces: keep only the exact match,
            // as upstream does after its case-insensitive lookup.
            let row: StatusRow = s::table
                .filter(s::original_username.eq(original_username))
                .select(StatusRow::as_select())
                .load::<StatusRow>(tx)
                .await?
                .into_iter()
                .find(|row| row.original_username == original_username)
                .ok_or_else(|| StoreError::NotFound { what: "that original username".into() })?;
            let entries = load_log!(tx, row.id);
            row.into_retirement(entries)
        })
    }

    async fn find_by_email(&self, original_email: &str) -> Result<Retirement> {
        let lowered = original_email.to_lowercase();
        in_transaction!(self, tx => {
            let rows: Vec<StatusRow> = s::table
                .filter(lower(s::original_email).eq(&lowered))
                .select(StatusRow::as_select())
                .load::<StatusRow>(tx)
                .await?
                .into_iter()
                .filter(|row| row.original_email.to_lowercase() == lowered)
                .collect();
            let row = match <[StatusRow; 1]>::try_from(rows) {
                Ok([row]) => row,
                Err(rows) if rows.is_empty() => {
                    return Err(StoreError::NotFound { what: "that email address".into() })
                }
                Err(rows) => {
                    let ids: Vec<String> = rows.iter().map(|r| r.id.to_string()).collect();
                    return Err(StoreError::Ambiguous { what: format!("retirements {}", ids.join(", ")) })
                }
            };
            let entries = load_log!(tx, row.id);
            row.into_retirement(entries)
        })
    }

    async fn find_by_user_id(&self, lms_user_id: i64) -> Result<Retirement> {
        in_transaction!(self, tx => {
            let rows: Vec<StatusRow> = s::table
                .filter(s::lms_user_id.eq(lms_user_id))
                .select(StatusRow::as_select())
                .load::<StatusRow>(tx)
                .await?;
            let row = match <[StatusRow; 1]>::try_from(rows) {
                Ok([row]) => row,
                Err(rows) if rows.is_empty() => {
                    return Err(StoreError::NotFound { what: format!("LMS user {lms_user_id}") })
                }
                Err(rows) => {
                    let ids: Vec<String> = rows.iter().map(|r| r.id.to_string()).collect();
                    return Err(StoreError::Ambiguous { what: format!("retirements {}", ids.join(", ")) })
                }
            };
            let entries = load_log!(tx, row.id);
            row.into_retirement(entries)
        })
    }

    async fn queue(&self, query: &QueueQuery, now: DateTime<Utc>) -> Result<Vec<Retirement>> {
        if query.cool_off_days < 0 {
            return Err(StoreError::NegativeCoolOff);
        }
        if query.states.is_empty() {
            return Err(StoreError::NoStatesRequested);
        }
        if let Some(limit) = query.limit
            && limit < 0
        {
            return Err(StoreError::BadLimit { limit });
        }
        let table = self.state_table().await?;
        let found: Vec<String> = query
            .states
            .iter()
            .filter(|name| table.get(name).is_some())
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        // Upstream compares counts, so a repeated name is "unknown" too.
        if found.len() != query.states.len() {
            let mut found = found;
            found.sort_by_key(|n| table.position(n));
            return Err(StoreError::UnknownStatesRequested {
                requested: query.states.clone(),
                found,
            });
        }
        let cut = cool_off_cut(now, query.cool_off_days)?;
        self.list(query.states.clone(), None, cut, query.limit)
            .await
    }

    async fn by_state_and_date(
        &self,
        window: &StateWindow,
        now: DateTime<Utc>,
    ) -> Result<Vec<Retirement>> {
        let (start, end) = self.window_bounds(window, now).await?;
        self.list(vec![window.state.clone()], Some(start), end, None)
            .await
    }

    async fn advance(
        &self,
        id: RetirementId,
        lease: Option<&Lease>,
        new_state: &str,
        response: &str,
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<LogEntry> {
        // SQLite: the whole transaction in one hop to the connection's blocking thread, and
        // BEGIN IMMEDIATE so two processes never deadlock upgrading a read lock. Per-statement
        // hops dominated the driver's CPU (BENCHMARKS.md, the driver bench).
        if let Pools::Sqlite(pool) = &self.pools {
            let mut conn = pool.get().await.map_err(StoreError::connection)?;
            let (lease, new_state, response) =
                (lease.cloned(), new_state.to_owned(), response.to_owned());
            return conn
                .spawn_blocking(move |c| {
                    Ok(sqlite_hop::advance(
                        c,
                        id,
                        lease.as_ref(),
                        &new_state,
                        &response,
                        actor,
                        now,
                    ))
                })
                .await?;
        }
        in_transaction!(self, tx => {
            let table = load_table!(tx);
            let row = load_status!(tx, id);
            check_lease(&row, lease, id, now)?;
            let (retirement, entry) = plan_advance(&table, &row, new_state, response, actor, now)?;
            let on_conflict = advance_conflict(lease, id);
            write_transition!(tx, &row, retirement, &entry, false, on_conflict);
            Ok(entry)
        })
    }

    async fn force(
        &self,
        id: RetirementId,
        to: &str,
        why: &Override,
        now: DateTime<Utc>,
    ) -> Result<Retirement> {
        in_transaction!(self, tx => {
            let table = load_table!(tx);
            let row = load_status!(tx, id);
            let mut retirement = row.clone().into_retirement(load_log!(tx, row.id))?;
            let entry = retirement.force(&table, to, why, now)?.clone();
            write_transition!(tx, &row, retirement, &entry, true, StoreError::Conflict { retirement_id: id });
            Ok(retirement)
        })
    }

    async fn bulk_move(
        &self,
        window: &StateWindow,
        target: &MoveTarget,
        why: &Override,
        now: DateTime<Utc>,
    ) -> Result<Vec<(RetirementId, LogEntry)>> {
        let (start, end) = self.window_bounds(window, now).await?;
        in_transaction!(self, tx => {
            let table = load_table!(tx);
            let rows: Vec<StatusRow> = s::table
                .filter(s::current_state.eq(&window.state))
                .filter(s::created.ge(start))
                .filter(s::created.lt(end))
                .order(s::id.asc())
                .select(StatusRow::as_select())
                .load(tx)
                .await?;
            let mut moved = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut retirement = row.clone().into_retirement(Vec::new())?;
                let entry = match target {
                    MoveTarget::To(state) => retirement.force(&table, state, why, now)?,
                    MoveTarget::Rewind => retirement.rewind(&table, why, now)?,
                }
                .clone();
                let id = RetirementId(row.id);
                write_transition!(tx, row, retirement, &entry, true, StoreError::Conflict { retirement_id: id });
                moved.push((id, entry));
            }
            Ok(moved)
        })
    }

    async fn cancel(&self, id: RetirementId) -> Result<()> {
        in_transaction!(self, tx => {
            let row = load_status!(tx, id);
            row.clone().into_retirement(Vec::new())?.check_cancellable()?;
            let deleted = diesel::delete(
                s::table
                    .filter(s::id.eq(row.id))
                    .filter(s::current_state.eq(PENDING))
                    .filter(s::attempt.eq(row.attempt)),
            )
            .execute(tx)
            .await?;
            if deleted != 1 {
                return Err(StoreError::Conflict { retirement_id: id });
            }
            diesel::delete(log::table.filter(log::retirement_id.eq(row.id)))
                .execute(tx)
                .await?;
            diesel::delete(wt::table.filter(wt::retirement_id.eq(row.id)))
                .execute(tx)
                .await?;
            diesel::delete(act::table.filter(act::retirement_id.eq(row.id)))
                .execute(tx)
                .await?;
            // Cancelled while PENDING: the learner may request again (upstream's signal).
            diesel::delete(req::table.filter(req::retired_username.eq(&row.retired_username)))
                .execute(tx)
                .await?;
            Ok(())
        })
    }

    async fn cleanup(&self, original_usernames: &[String]) -> Result<Vec<Retirement>> {
        if original_usernames.is_empty() {
            return Ok(Vec::new());
        }
        in_transaction!(self, tx => {
            let rows: Vec<StatusRow> = s::table
                .filter(s::original_username.eq_any(original_usernames))
                .filter(s::current_state.eq(retirement_core::COMPLETE))
                .order(s::id.asc())
                .select(StatusRow::as_select())
                .load::<StatusRow>(tx)
                .await?
                .into_iter()
                .filter(|row| original_usernames.contains(&row.original_username))
                .collect();
            let distinct: HashSet<&String> = original_usernames.iter().collect();
            if rows.len() != original_usernames.len() || distinct.len() != rows.len() {
                return Err(StoreError::NotAllComplete);
            }
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let mut removed = Vec::with_capacity(rows.len());
            for row in rows {
                let entries = load_log!(tx, row.id);
                removed.push(row.into_retirement(entries)?);
            }
            // Redact first, so a soft-delete or replication consumer never sees the originals
            // outlive the row (upstream DEPR #37921). Upstream writes "redacted" everywhere; our
            // original_username is unique, so it takes the (already public) retired username.
            diesel::update(s::table.filter(s::id.eq_any(&ids)))
                .set((
                    s::original_username.eq(s::retired_username),
                    s::original_email.eq("redacted"),
                    s::original_name.eq("redacted"),
                ))
                .execute(tx)
                .await?;
            diesel::delete(log::table.filter(log::retirement_id.eq_any(&ids)))
                .execute(tx)
                .await?;
            diesel::delete(wt::table.filter(wt::retirement_id.eq_any(&ids)))
                .execute(tx)
                .await?;
            diesel::delete(act::table.filter(act::retirement_id.eq_any(&ids)))
                .execute(tx)
                .await?;
            diesel::delete(
                s::table
                    .filter(s::id.eq_any(&ids))
                    .filter(s::current_state.eq(retirement_core::COMPLETE)),
            )
            .execute(tx)
            .await?;
            Ok(removed)
        })
    }

    async fn claim(&self, request: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Claimed>> {
        if request.limit <= 0 {
            return Ok(Vec::new());
        }
        if request.owner.is_empty() {
            return Err(StoreError::InvalidArgument("a claim needs an owner".into()));
        }
        if request.cool_off_days < 0 {
            return Err(StoreError::NegativeCoolOff);
        }
        let cut = cool_off_cut(now, request.cool_off_days)?;
        let expires = now
            .checked_add_signed(request.lease_for)
            .ok_or_else(|| StoreError::InvalidArgument("lease length too large".into()))?;
        let others = request.other_states();
        let pending_claimable = request.resume_states.iter().any(|s| s == PENDING);
        let rows = crate::claim::claim_rows(
            &self.pools,
            crate::claim::ClaimParams {
                owner: &request.owner,
                limit: request.limit,
                now: micros(now),
                expires: micros(expires),
                pending_cut: if pending_claimable { cut } else { i64::MIN },
                others: &others,
            },
        )
        .await?;
        rows.into_iter()
            .map(|row| {
                let lease = Lease {
                    retirement_id: RetirementId(row.id),
                    owner: request.owner.clone(),
                    attempt: row.attempt,
                    expires,
                };
                let resumes = request.working_states.contains(&row.current_state);
                Ok(Claimed {
                    retirement: row.into_retirement(Vec::new())?,
                    lease,
                    resumes_working_state: resumes,
                })
            })
            .collect()
    }

    async fn park(
        &self,
        id: RetirementId,
        lease: Option<&Lease>,
        wait: &Wait,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Wait> {
        let attempt = lease.map(|l| l.attempt).unwrap_or_default();
        in_transaction!(self, tx => {
            let row = load_status!(tx, id);
            check_lease(&row, lease, id, now)?;
            if row.current_state != wait.working_state {
                return Err(StoreError::LeaseLost { retirement_id: id, attempt });
            }
            let mut retirement = row.clone().into_retirement(Vec::new())?;
            let entry = retirement.note(note, Actor::Driver, now).clone();
            let modified = retirement.modified();
            let updated = diesel::update(
                s::table
                    .filter(s::id.eq(row.id))
                    .filter(s::attempt.eq(row.attempt))
                    .filter(s::current_state.eq(&row.current_state)),
            )
            .set(s::modified.eq(micros(modified)))
            .execute(tx)
            .await?;
            if updated != 1 {
                return Err(StoreError::LeaseLost { retirement_id: id, attempt });
            }
            diesel::insert_into(log::table)
                .values(NewLogRow::new(id, &entry))
                .execute(tx)
                .await?;
            let stored = Wait { since: modified, ..wait.clone() };
            put_wait!(tx, &WaitRow::new(id, &stored));
            Ok(stored)
        })
    }

    async fn release_until(
        &self,
        id: RetirementId,
        lease: Option<&Lease>,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        // `None`: parked until an operator's override clears the lease.
        let expires = until.map(micros).unwrap_or(i64::MAX);
        let updated = match lease {
            Some(lease) => with_conn!(self, c => {
                diesel::update(
                    s::table
                        .filter(s::id.eq(id.0))
                        .filter(s::attempt.eq(lease.attempt))
                        .filter(s::lease_owner.eq(&lease.owner)),
                )
                .set((s::lease_owner.eq(None::<String>), s::lease_expires.eq(expires)))
                .execute(c)
                .await?
            }),
            None => with_conn!(self, c => {
                diesel::update(
                    s::table.filter(s::id.eq(id.0)).filter(
                        s::lease_owner
                            .is_null()
                            .or(s::lease_expires.is_null())
                            .or(s::lease_expires.le(micros(now))),
                    ),
                )
                .set((s::lease_owner.eq(None::<String>), s::lease_expires.eq(expires)))
                .execute(c)
                .await?
            }),
        };
        if updated != 1 {
            return Err(StoreError::LeaseLost {
                retirement_id: id,
                attempt: lease.map(|l| l.attempt).unwrap_or_default(),
            });
        }
        if let Some(until) = until {
            self.set_next_poll(id, until).await?;
        }
        Ok(())
    }

    async fn wait_of(&self, id: RetirementId) -> Result<Option<Wait>> {
        self.stored_wait(id).await
    }

    async fn waits(&self) -> Result<Vec<(RetirementId, Wait)>> {
        self.stored_waits().await
    }

    async fn heartbeat(&self, lease: &Lease, until: DateTime<Utc>) -> Result<Lease> {
        let updated = with_conn!(self, c => {
            diesel::update(
                s::table
                    .filter(s::id.eq(lease.retirement_id.0))
                    .filter(s::attempt.eq(lease.attempt))
                    .filter(s::lease_owner.eq(&lease.owner)),
            )
            .set(s::lease_expires.eq(micros(until)))
            .execute(c)
            .await?
        });
        if updated != 1 {
            return Err(StoreError::LeaseLost {
                retirement_id: lease.retirement_id,
                attempt: lease.attempt,
            });
        }
        Ok(Lease {
            expires: until,
            ..lease.clone()
        })
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        let updated = with_conn!(self, c => {
            diesel::update(
                s::table
                    .filter(s::id.eq(lease.retirement_id.0))
                    .filter(s::attempt.eq(lease.attempt))
                    .filter(s::lease_owner.eq(&lease.owner)),
            )
            .set((s::lease_owner.eq(None::<String>), s::lease_expires.eq(None::<i64>)))
            .execute(c)
            .await?
        });
        if updated != 1 {
            return Err(StoreError::LeaseLost {
                retirement_id: lease.retirement_id,
                attempt: lease.attempt,
            });
        }
        Ok(())
    }
}

/// SQLite transactions run whole on the connection's blocking thread, with diesel's
/// synchronous API (a module of its own: the async `RunQueryDsl` must not be in scope).
mod sqlite_hop {
    use chrono::{DateTime, Utc};
    use diesel::{
        ExpressionMethods, OptionalExtension, QueryDsl, RunQueryDsl, SelectableHelper,
        SqliteConnection,
    };
    use retirement_core::{Actor, LogEntry, RetirementId, State, StateTable};

    use super::{advance_conflict, check_lease, plan_advance};
    use crate::error::{Result, StoreError};
    use crate::retirements::Lease;
    use crate::rows::{NewLogRow, StateRow, StatusRow, micros};
    use crate::schema::{retirement_log as log, retirement_states as st, retirement_statuses as s};

    /// `RetirementStore::advance` in one `BEGIN IMMEDIATE` transaction.
    pub(super) fn advance(
        c: &mut SqliteConnection,
        id: RetirementId,
        lease: Option<&Lease>,
        new_state: &str,
        response: &str,
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<LogEntry> {
        c.immediate_transaction(|c| {
            let table = load_table!(c,);
            let row = load_status!(c, id;);
            check_lease(&row, lease, id, now)?;
            let (retirement, entry) = plan_advance(&table, &row, new_state, response, actor, now)?;
            let on_conflict = advance_conflict(lease, id);
            write_transition!(c, &row, retirement, &entry, false, on_conflict;);
            Ok::<_, StoreError>(entry)
        })
    }
}
