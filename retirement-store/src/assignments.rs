//! The assignment tables: import, the streamed expiry pass, the PII job and the scrub of one
//! retired learner.
//!
//! Reads stream in batches with keyset pagination (`id > last ORDER BY id LIMIT n`): upstream's
//! OFFSET paging skips rows when the rows it just expired drop out of the filtered set. Each
//! batch's decisions are written in one transaction, grouped into a few set-based `UPDATE … WHERE
//! id IN (…)` statements. No batch holds a transaction while the next one is read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;

use assignment_expiry::{
    ActionType, Assignment, AssignmentAction, AssignmentState, ContentMetadata, Context,
    Enrollment, ErrorReason, parse_line,
};
use chrono::{DateTime, Utc};
use diesel::prelude::{Insertable, Queryable, QueryableByName, Selectable};
use diesel::{
    BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper,
};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

use crate::assignment_store::{
    AssignmentStore, Cursor, EmailOutcome, ExpiryWrite, Notify, Page, Row, RowContext, RowKey,
    Scan, ScrubWrite, Written,
};
use crate::diesel_store::{DieselStore, with_conn};
use crate::error::{Result, StoreError};
use crate::rows::{from_micros, micros};
use crate::schema::{
    assignment_actions as act, assignment_configurations as cfg, assignment_pii_history as hist,
    assignments as a, content_metadata as meta,
};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// The column whose every value the history keeps.
const EMAIL_COLUMN: &str = "learner_email";

/// What an import wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Assignments inserted.
    pub imported: u64,
    /// Lines whose uuid was already in the store (a re-run of an interrupted import).
    pub already_present: u64,
    /// Configurations created.
    pub configurations: u64,
    /// Content keys whose metadata was stored.
    pub content_keys: u64,
}

#[derive(Queryable, QueryableByName, Selectable)]
#[diesel(table_name = a)]
struct AssignmentRow {
    id: i64,
    uuid: String,
    configuration_uuid: String,
    content_key: String,
    state: String,
    learner_email: String,
    lms_user_id: Option<i64>,
    created: i64,
    allocated_at: i64,
    expired_at: Option<i64>,
    preferred_course_run_key: Option<String>,
    has_credit_request: bool,
}

#[derive(Insertable)]
// None binds NULL: a `DEFAULT` in the SQL makes diesel re-prepare the statement each time.
#[diesel(table_name = a, treat_none_as_default_value = false)]
struct NewAssignmentRow<'a> {
    uuid: &'a str,
    configuration_uuid: &'a str,
    content_key: &'a str,
    state: &'static str,
    learner_email: &'a str,
    lms_user_id: Option<i64>,
    created: i64,
    allocated_at: i64,
    expired_at: Option<i64>,
    preferred_course_run_key: Option<&'a str>,
    has_credit_request: bool,
    modified: i64,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = act)]
struct ActionRow {
    assignment_id: i64,
    action_type: String,
    completed_at: Option<i64>,
    error_reason: Option<String>,
}

#[derive(Insertable)]
// None binds NULL: a `DEFAULT` in the SQL makes diesel re-prepare the statement each time.
#[diesel(table_name = act, treat_none_as_default_value = false)]
struct NewActionRow {
    assignment_id: i64,
    action_type: String,
    completed_at: Option<i64>,
    error_reason: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = hist)]
struct NewHistoryRow<'a> {
    assignment_id: i64,
    column_name: &'static str,
    value: &'a str,
    recorded_at: i64,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = cfg)]
struct ConfigurationRow {
    uuid: String,
    active: bool,
    subsidy_expiration: Option<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = meta)]
struct MetadataRow {
    content_key: String,
    enrollment_deadline: Option<String>,
    metadata_json: Option<String>,
}

/// A serde enum's wire name (`allocated`, `notified`, …).
fn enum_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn enum_from<T: serde::de::DeserializeOwned>(table: &'static str, name: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).map_err(|_| {
        StoreError::Corrupt {
            table,
            what: format!("unknown value {name:?}"),
        }
    })
}

/// The configuration an imported line belongs to. The JSON-lines format carries the
/// configuration's fields but not its id, so lines with equal fields share one configuration.
fn configuration_uuid(context: &Context) -> String {
    let key = format!(
        "{}|{}",
        context.configuration_active,
        context.subsidy_expiration.as_deref().unwrap_or("\u{0}")
    );
    let digest = sha1_smol::Sha1::from(key).digest().to_string();
    format!("import-{}", &digest[..24])
}

/// The enrollment columns of a content key: (deadline, metadata JSON).
fn enrollment_columns(enrollment: &Enrollment) -> (Option<String>, Option<String>) {
    match enrollment {
        Enrollment::Deadline(deadline) => (deadline.clone(), None),
        Enrollment::Metadata(Some(metadata)) => (
            None,
            Some(serde_json::to_string(metadata).unwrap_or_default()),
        ),
        Enrollment::Metadata(None) => (None, None),
    }
}

/// One parsed line, ready to write.
struct Parsed {
    assignment: Assignment,
    configuration_uuid: String,
    context: Context,
}

/// Per-backend bulk inserts: SQLite (behind the sync wrapper) cannot take a multi-row
/// `INSERT … VALUES (…), (…)` through diesel-async, so it inserts row by row inside the
/// batch's transaction; the servers take one statement per batch.
trait BulkInsert {
    async fn insert_assignments(
        &mut self,
        rows: &[NewAssignmentRow<'_>],
    ) -> diesel::QueryResult<()>;
    async fn insert_actions(&mut self, rows: &[NewActionRow]) -> diesel::QueryResult<()>;
    async fn insert_history(&mut self, rows: &[NewHistoryRow<'_>]) -> diesel::QueryResult<()>;
}

/// One `BulkInsert` method: `one_by_one` (SQLite) or `multi_row` (the servers).
macro_rules! bulk_method {
    (one_by_one, $name:ident, $row:ty, $table:expr) => {
        async fn $name(&mut self, rows: &[$row]) -> diesel::QueryResult<()> {
            for row in rows {
                diesel::insert_into($table)
                    .values(row)
                    .execute(self)
                    .await?;
            }
            Ok(())
        }
    };
    (multi_row, $name:ident, $row:ty, $table:expr) => {
        async fn $name(&mut self, rows: &[$row]) -> diesel::QueryResult<()> {
            if !rows.is_empty() {
                diesel::insert_into($table)
                    .values(rows)
                    .execute(self)
                    .await?;
            }
            Ok(())
        }
    };
}

macro_rules! bulk_insert {
    ($conn:ty, $mode:ident) => {
        impl BulkInsert for $conn {
            bulk_method!($mode, insert_assignments, NewAssignmentRow<'_>, a::table);
            bulk_method!($mode, insert_actions, NewActionRow, act::table);
            bulk_method!($mode, insert_history, NewHistoryRow<'_>, hist::table);
        }
    };
}

bulk_insert!(crate::conn::SqliteConn, one_by_one);
bulk_insert!(diesel_async::AsyncPgConnection, multi_row);
bulk_insert!(diesel_async::AsyncMysqlConnection, multi_row);

/// A batch's expirations grouped by what is written: (new state, `expired_at`, tombstone) →
/// assignment ids. Usually one group, so one `UPDATE … WHERE id IN (…)` per batch.
type ExpiryGroups = BTreeMap<(String, Option<i64>, Option<String>), Vec<i64>>;

/// The keyset query: rows of one state after a position, lowest id first.
macro_rules! batch_rows {
    ($state:expr, $after:expr, $limit:expr) => {
        a::table
            .filter(a::state.eq($state.as_str()))
            .filter(a::id.gt($after))
            .order(a::id.asc())
            .limit($limit)
            .select(AssignmentRow::as_select())
    };
}

/// MariaDB plans the keyset query as a `ref` lookup on `state` alone and filters `id` row by
/// row from the start of the state's index range, so each batch costs more than the last
/// (quadratic over a pass). The hint makes it a range scan on `(state, id)`.
const MYSQL_BATCH_ROWS: &str = "SELECT id, uuid, configuration_uuid, content_key, state, \
     learner_email, lms_user_id, created, allocated_at, expired_at, preferred_course_run_key, \
     has_credit_request FROM assignments FORCE INDEX (assignments_state) \
     WHERE state = ? AND id > ? ORDER BY id LIMIT ?";

/// Reads the rest of one batch: the rows' actions, and the configurations and content
/// metadata they name. Written once for the async connections
/// (`$await` = `.await`) and SQLite's synchronous connection (nothing).
macro_rules! read_batch {
    ($c:expr, $rows:expr, $($await:tt)*) => {{
            let rows: Vec<AssignmentRow> = $rows;
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let batch_ids: HashSet<i64> = ids.iter().copied().collect();
            // One index range scan over the batch's id span rather than an IN list of every
            // id; actions of rows outside the batch (other states) are dropped below.
            let actions: Vec<ActionRow> = match (ids.iter().next(), ids.iter().next_back()) {
                (Some(first), Some(last)) => act::table
                    .filter(act::assignment_id.between(*first, *last))
                    .order(act::id.asc())
                    .select(ActionRow::as_select())
                    .load($c)
                    $($await)*?,
                _ => Vec::new(),
            };
            let cfg_ids: Vec<&str> = rows
                .iter()
                .map(|r| r.configuration_uuid.as_str())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let configurations: Vec<ConfigurationRow> = cfg::table
                .filter(cfg::uuid.eq_any(&cfg_ids))
                .select(ConfigurationRow::as_select())
                .load($c)
                $($await)*?;
            let keys: Vec<&str> = rows
                .iter()
                .map(|r| r.content_key.as_str())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let metadata: Vec<MetadataRow> = meta::table
                .filter(meta::content_key.eq_any(&keys))
                .select(MetadataRow::as_select())
                .load($c)
                $($await)*?;
            let actions: Vec<ActionRow> = actions
                .into_iter()
                .filter(|action| batch_ids.contains(&action.assignment_id))
                .collect();
            (rows, actions, configurations, metadata)
            }};
}

/// Writes one batch's expirations, grouped (see [`ExpiryGroups`]). Written once for the async
/// connections (`$await` = `.await`) and SQLite's synchronous connection (nothing).
macro_rules! write_groups {
    ($c:expr, $groups:expr, $now_us:expr, $($await:tt)*) => {{
                for ((state, expired_at, tombstone), ids) in $groups {
                    // Only rows still allocated: a concurrent writer's change wins. The id span
                    // keeps the plan narrow whichever index the optimiser picks: MariaDB otherwise
                    // walks the whole (state, id) range of allocated rows for every batch.
                    let low = ids.iter().copied().min().unwrap_or_default();
                    let high = ids.iter().copied().max().unwrap_or_default();
                    let target = a::table
                        .filter(a::id.eq_any(ids))
                        .filter(a::id.between(low, high))
                        .filter(a::state.eq(AssignmentState::Allocated.as_str()));
                    match (expired_at, tombstone) {
                        (Some(at), Some(t)) => {
                            diesel::update(target)
                                .set((a::state.eq(state), a::expired_at.eq(at), a::learner_email.eq(t), a::modified.eq($now_us)))
                                .execute($c)
                                $($await)*?
                        }
                        (Some(at), None) => {
                            diesel::update(target)
                                .set((a::state.eq(state), a::expired_at.eq(at), a::modified.eq($now_us)))
                                .execute($c)
                                $($await)*?
                        }
                        (None, Some(t)) => {
                            diesel::update(target)
                                .set((a::state.eq(state), a::learner_email.eq(t), a::modified.eq($now_us)))
                                .execute($c)
                                $($await)*?
                        }
                        (None, None) => {
                            diesel::update(target)
                                .set((a::state.eq(state), a::modified.eq($now_us)))
                                .execute($c)
                                $($await)*?
                        }
                    };
                    if let Some(t) = tombstone {
                        // The history held the original email: it is scrubbed with the row.
                        diesel::update(
                            hist::table
                                .filter(hist::assignment_id.eq_any(ids))
                                .filter(hist::column_name.eq(EMAIL_COLUMN)),
                        )
                        .set(hist::value.eq(t))
                        .execute($c)
                        $($await)*?;
                    }
                }
    }};
}

/// SQLite's synchronous reads and writes, outside the scope of diesel-async's `RunQueryDsl`.
mod sqlite_sync {
    use std::collections::HashSet;

    use assignment_expiry::AssignmentState;
    use diesel::{Connection, ExpressionMethods, QueryDsl, RunQueryDsl, SelectableHelper};

    use super::{ActionRow, AssignmentRow, ConfigurationRow, EMAIL_COLUMN, MetadataRow};
    use crate::schema::{
        assignment_actions as act, assignment_configurations as cfg,
        assignment_pii_history as hist, assignments as a, content_metadata as meta,
    };

    type Batch = (
        Vec<AssignmentRow>,
        Vec<ActionRow>,
        Vec<ConfigurationRow>,
        Vec<MetadataRow>,
    );

    pub(super) fn read(
        c: &mut diesel::SqliteConnection,
        state: AssignmentState,
        after: i64,
        limit: i64,
    ) -> diesel::QueryResult<Batch> {
        Ok(read_batch!(c, batch_rows!(state, after, limit).load(c)?,))
    }

    pub(super) fn write(
        c: &mut diesel::SqliteConnection,
        groups: &super::ExpiryGroups,
        now_us: i64,
    ) -> diesel::QueryResult<()> {
        c.transaction(|c| {
            write_groups!(c, groups, now_us,);
            Ok(())
        })
    }
}

/// Lines per import batch and rows per expiry batch, unless the caller says otherwise.
pub const DEFAULT_BATCH: usize = 1000;

impl DieselStore {
    /// Imports assignments from the JSON-lines format of `expire-assignments evaluate`.
    ///
    /// The whole input is validated first (every line parses; a content key's enrollment data
    /// is the same on every line that names it); any error names the line and writes nothing.
    /// Then it is written in batches, each one transaction. Uuids already in the store are
    /// skipped, so an interrupted import is finished by running it again.
    pub async fn import_assignments<R: BufRead>(
        &self,
        mut open: impl FnMut() -> std::io::Result<R>,
        now: DateTime<Utc>,
    ) -> Result<ImportSummary> {
        let io_error = |e: std::io::Error| StoreError::Import {
            line: 0,
            message: format!("cannot read the input: {e}"),
        };
        // Pass 1: validate.
        let mut content: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
        let mut uuids: HashSet<String> = HashSet::new();
        for (index, line) in open().map_err(io_error)?.lines().enumerate() {
            let line = line.map_err(io_error)?;
            if line.trim().is_empty() {
                continue;
            }
            let (assignment, context) = parse_line(&line).map_err(|e| StoreError::Import {
                line: index + 1,
                message: e.to_string(),
            })?;
            if !uuids.insert(assignment.uuid.clone()) {
                return Err(StoreError::Import {
                    line: index + 1,
                    message: format!("uuid {} appears twice", assignment.uuid),
                });
            }
            let columns = enrollment_columns(&context.enrollment);
            match content.get(&assignment.content_key) {
                Some(seen) if seen != &columns => {
                    return Err(StoreError::Import {
                        line: index + 1,
                        message: format!(
                            "content key {:?} has other enrollment data than on an earlier line; \
                             enrollment data is stored once per content key",
                            assignment.content_key
                        ),
                    });
                }
                Some(_) => {}
                None => {
                    content.insert(assignment.content_key.clone(), columns);
                }
            }
        }
        drop(uuids);
        // Pass 2: write.
        let mut summary = ImportSummary::default();
        let mut batch: Vec<Parsed> = Vec::with_capacity(DEFAULT_BATCH);
        for line in open().map_err(io_error)?.lines() {
            let line = line.map_err(io_error)?;
            if line.trim().is_empty() {
                continue;
            }
            let (assignment, context) = parse_line(&line).map_err(|e| StoreError::Import {
                line: 0,
                message: e.to_string(),
            })?;
            batch.push(Parsed {
                configuration_uuid: configuration_uuid(&context),
                assignment,
                context,
            });
            if batch.len() == DEFAULT_BATCH {
                self.insert_batch(&batch, now, &mut summary).await?;
                batch.clear();
            }
        }
        self.insert_batch(&batch, now, &mut summary).await?;
        Ok(summary)
    }

    /// Inserts assignments with their context (configuration and content metadata, created
    /// when missing), actions and first history row, in one transaction. Uuids already present
    /// are skipped.
    pub async fn insert_assignments(
        &self,
        items: &[(Assignment, Context)],
        now: DateTime<Utc>,
    ) -> Result<ImportSummary> {
        let batch: Vec<Parsed> = items
            .iter()
            .map(|(assignment, context)| Parsed {
                configuration_uuid: configuration_uuid(context),
                assignment: assignment.clone(),
                context: context.clone(),
            })
            .collect();
        let mut summary = ImportSummary::default();
        self.insert_batch(&batch, now, &mut summary).await?;
        Ok(summary)
    }

    async fn insert_batch(
        &self,
        batch: &[Parsed],
        now: DateTime<Utc>,
        summary: &mut ImportSummary,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let now_us = micros(now);
        let added = with_conn!(self, c => {
            c.transaction(async |tx| -> Result<_, StoreError> {
                let mut added = ImportSummary::default();
                let uuids: Vec<&str> = batch.iter().map(|p| p.assignment.uuid.as_str()).collect();
                let present: HashSet<String> = a::table
                    .filter(a::uuid.eq_any(&uuids))
                    .select(a::uuid)
                    .load::<String>(tx)
                    .await?
                    .into_iter()
                    .collect();
                let fresh: Vec<&Parsed> = batch
                    .iter()
                    .filter(|p| !present.contains(&p.assignment.uuid))
                    .collect();
                added.already_present = (batch.len() - fresh.len()) as u64;
                // Configurations and content keys first, once each.
                let mut seen_cfg = HashSet::new();
                let mut seen_key = HashSet::new();
                for p in &fresh {
                    if seen_cfg.insert(p.configuration_uuid.as_str()) {
                        let exists = cfg::table
                            .find(&p.configuration_uuid)
                            .select(cfg::uuid)
                            .first::<String>(tx)
                            .await
                            .optional()?
                            .is_some();
                        if !exists {
                            diesel::insert_into(cfg::table)
                                .values((
                                    cfg::uuid.eq(&p.configuration_uuid),
                                    cfg::active.eq(p.context.configuration_active),
                                    cfg::subsidy_expiration.eq(&p.context.subsidy_expiration),
                                ))
                                .execute(tx)
                                .await?;
                            added.configurations += 1;
                        }
                    }
                    if seen_key.insert(p.assignment.content_key.as_str()) {
                        let exists = meta::table
                            .find(&p.assignment.content_key)
                            .select(meta::content_key)
                            .first::<String>(tx)
                            .await
                            .optional()?
                            .is_some();
                        if !exists {
                            let (deadline, json) = enrollment_columns(&p.context.enrollment);
                            diesel::insert_into(meta::table)
                                .values((
                                    meta::content_key.eq(&p.assignment.content_key),
                                    meta::enrollment_deadline.eq(deadline),
                                    meta::metadata_json.eq(json),
                                ))
                                .execute(tx)
                                .await?;
                            added.content_keys += 1;
                        }
                    }
                }
                let rows: Vec<NewAssignmentRow> = fresh
                    .iter()
                    .map(|p| NewAssignmentRow {
                        uuid: &p.assignment.uuid,
                        configuration_uuid: &p.configuration_uuid,
                        content_key: &p.assignment.content_key,
                        state: p.assignment.state.as_str(),
                        learner_email: &p.assignment.learner_email,
                        lms_user_id: p.assignment.lms_user_id,
                        created: micros(p.assignment.created),
                        allocated_at: micros(p.assignment.allocated_at),
                        expired_at: p.assignment.expired_at.map(micros),
                        preferred_course_run_key: p.assignment.preferred_course_run_key.as_deref(),
                        has_credit_request: p.assignment.has_credit_request,
                        modified: now_us,
                    })
                    .collect();
                tx.insert_assignments(&rows).await?;
                // Read the ids back by uuid (MySQL has no RETURNING).
                let fresh_uuids: Vec<&str> = fresh.iter().map(|p| p.assignment.uuid.as_str()).collect();
                let ids: HashMap<String, i64> = a::table
                    .filter(a::uuid.eq_any(&fresh_uuids))
                    .select((a::uuid, a::id))
                    .load::<(String, i64)>(tx)
                    .await?
                    .into_iter()
                    .collect();
                let mut actions = Vec::new();
                let mut history = Vec::new();
                for p in &fresh {
                    let id = ids[&p.assignment.uuid];
                    history.push(NewHistoryRow {
                        assignment_id: id,
                        column_name: EMAIL_COLUMN,
                        value: &p.assignment.learner_email,
                        recorded_at: now_us,
                    });
                    for action in &p.assignment.actions {
                        actions.push(NewActionRow {
                            assignment_id: id,
                            action_type: enum_name(&action.action_type),
                            completed_at: action.completed_at.map(micros),
                            error_reason: action.error_reason.as_ref().map(enum_name),
                        });
                    }
                }
                tx.insert_actions(&actions).await?;
                tx.insert_history(&history).await?;
                added.imported = fresh.len() as u64;
                Ok(added)
            })
            .await?
        });
        summary.imported += added.imported;
        summary.already_present += added.already_present;
        summary.configurations += added.configurations;
        summary.content_keys += added.content_keys;
        Ok(())
    }

    /// Loads assignments of one state with `id > after`, lowest id first, with their actions
    /// and context (configuration and content metadata, read once per batch).
    async fn load_batch(
        &self,
        state: AssignmentState,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Assignment, Context)>> {
        let (rows, actions, configurations, metadata) = match &self.pools {
            // SQLite: the whole read in one trip to the blocking pool, decoded in place.
            crate::conn::Pools::Sqlite(pool) => {
                let mut conn = pool.get().await.map_err(StoreError::connection)?;
                conn.spawn_blocking(move |c| sqlite_sync::read(c, state, after, limit))
                    .await?
            }
            crate::conn::Pools::Postgres(pool) => {
                let mut conn = pool.get().await.map_err(StoreError::connection)?;
                let c = &mut *conn;
                read_batch!(c, batch_rows!(state, after, limit).load(c).await?, .await)
            }
            crate::conn::Pools::Mysql(pool) => {
                let mut conn = pool.get().await.map_err(StoreError::connection)?;
                let c = &mut *conn;
                let rows = diesel::sql_query(MYSQL_BATCH_ROWS)
                    .bind::<diesel::sql_types::Text, _>(state.as_str())
                    .bind::<diesel::sql_types::BigInt, _>(after)
                    .bind::<diesel::sql_types::BigInt, _>(limit)
                    .load::<AssignmentRow>(c)
                    .await?;
                read_batch!(c, rows, .await)
            }
        };
        let mut actions_by_id: HashMap<i64, Vec<AssignmentAction>> = HashMap::new();
        for action in actions {
            actions_by_id
                .entry(action.assignment_id)
                .or_default()
                .push(AssignmentAction {
                    action_type: enum_from::<ActionType>(
                        "assignment_actions",
                        &action.action_type,
                    )?,
                    completed_at: action
                        .completed_at
                        .map(|t| from_micros("assignment_actions", t))
                        .transpose()?,
                    error_reason: action
                        .error_reason
                        .map(|r| enum_from::<ErrorReason>("assignment_actions", &r))
                        .transpose()?,
                    reason: None,
                });
        }
        let configurations: HashMap<String, ConfigurationRow> = configurations
            .into_iter()
            .map(|c| (c.uuid.clone(), c))
            .collect();
        let mut enrollments: HashMap<String, Enrollment> = HashMap::new();
        for m in metadata {
            let enrollment = match m.metadata_json {
                Some(json) => Enrollment::Metadata(Some(
                    serde_json::from_str::<ContentMetadata>(&json).map_err(|_| {
                        StoreError::Corrupt {
                            table: "content_metadata",
                            what: format!("metadata of {:?} is not valid JSON", m.content_key),
                        }
                    })?,
                )),
                None => Enrollment::Deadline(m.enrollment_deadline),
            };
            enrollments.insert(m.content_key, enrollment);
        }
        rows.into_iter()
            .map(|row| {
                let configuration = configurations.get(&row.configuration_uuid);
                let context = Context {
                    enrollment: enrollments
                        .get(&row.content_key)
                        .cloned()
                        .unwrap_or(Enrollment::Deadline(None)),
                    subsidy_expiration: configuration.and_then(|c| c.subsidy_expiration.clone()),
                    // A missing configuration cannot be active.
                    configuration_active: configuration.is_some_and(|c| c.active),
                };
                let assignment = Assignment {
                    uuid: row.uuid,
                    state: enum_from("assignments", &row.state)?,
                    learner_email: row.learner_email,
                    lms_user_id: row.lms_user_id,
                    created: from_micros("assignments", row.created)?,
                    allocated_at: from_micros("assignments", row.allocated_at)?,
                    expired_at: row
                        .expired_at
                        .map(|t| from_micros("assignments", t))
                        .transpose()?,
                    preferred_course_run_key: row.preferred_course_run_key,
                    content_key: row.content_key,
                    has_credit_request: row.has_credit_request,
                    actions: actions_by_id.remove(&row.id).unwrap_or_default(),
                };
                Ok((row.id, assignment, context))
            })
            .collect()
    }

    async fn write_expirations(&self, groups: &ExpiryGroups, now_us: i64) -> Result<()> {
        match &self.pools {
            // SQLite: the whole transaction in one trip to the blocking pool.
            crate::conn::Pools::Sqlite(pool) => {
                let mut conn = pool.get().await.map_err(StoreError::connection)?;
                let groups = groups.clone();
                conn.spawn_blocking(move |c| sqlite_sync::write(c, &groups, now_us))
                    .await?;
            }
            crate::conn::Pools::Postgres(pool) => {
                let mut conn = pool.get().await.map_err(StoreError::connection)?;
                conn.transaction(async |c| -> Result<_, StoreError> {
                    write_groups!(c, groups, now_us, .await);
                    Ok(())
                })
                .await?;
            }
            crate::conn::Pools::Mysql(pool) => {
                let mut conn = pool.get().await.map_err(StoreError::connection)?;
                conn.transaction(async |c| -> Result<_, StoreError> {
                    write_groups!(c, groups, now_us, .await);
                    Ok(())
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Writes one tombstone per assignment id on the row and on every history row of its
    /// email, in one transaction.
    async fn write_tombstones(&self, tombstones: &[(i64, String)], now_us: i64) -> Result<()> {
        if tombstones.is_empty() {
            return Ok(());
        }
        with_conn!(self, c => {
            c.transaction(async |tx| -> Result<_, StoreError> {
                for (id, tombstone) in tombstones {
                    diesel::update(a::table.find(id))
                        .set((a::learner_email.eq(tombstone), a::modified.eq(now_us)))
                        .execute(tx)
                        .await?;
                    diesel::update(
                        hist::table
                            .filter(hist::assignment_id.eq(id))
                            .filter(hist::column_name.eq(EMAIL_COLUMN)),
                    )
                    .set(hist::value.eq(tombstone))
                    .execute(tx)
                    .await?;
                }
                Ok(())
            })
            .await?
        });
        Ok(())
    }

    /// One assignment by uuid, with its actions and context (for tests and the CLI).
    pub async fn get_assignment(&self, uuid: &str) -> Result<Option<(Assignment, Context)>> {
        let id: Option<i64> = with_conn!(self, c => {
            a::table.filter(a::uuid.eq(uuid)).select(a::id).first(c).await.optional()?
        });
        let Some(id) = id else { return Ok(None) };
        for state in [
            AssignmentState::Allocated,
            AssignmentState::Accepted,
            AssignmentState::Cancelled,
            AssignmentState::Errored,
            AssignmentState::Expired,
            AssignmentState::Reversed,
        ] {
            if let Some((_, assignment, context)) = self
                .load_batch(state, id - 1, 1)
                .await?
                .into_iter()
                .find(|(found, _, _)| *found == id)
            {
                return Ok(Some((assignment, context)));
            }
        }
        Ok(None)
    }
}

/// Set-based statements for `cargo xtask bench expiry`: the baseline the streamed pass is
/// measured against. Not part of the supported API.
#[doc(hidden)]
impl DieselStore {
    /// One `UPDATE` expiring every allocated assignment allocated before `cut`.
    pub async fn bench_baseline_expire(
        &self,
        cut: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let updated = with_conn!(self, c => {
            diesel::update(
                a::table
                    .filter(a::state.eq(AssignmentState::Allocated.as_str()))
                    .filter(a::allocated_at.lt(micros(cut))),
            )
            .set((
                a::state.eq(AssignmentState::Expired.as_str()),
                a::expired_at.eq(micros(now)),
                a::modified.eq(micros(now)),
            ))
            .execute(c)
            .await?
        });
        Ok(updated as u64)
    }
}

/// This project's own tables: every input the rules read is stored with the rows, rows are
/// keyed by their integer id, and the email's history lives in `assignment_pii_history`.
#[async_trait::async_trait]
impl AssignmentStore for DieselStore {
    fn schema(&self) -> &'static str {
        "own"
    }

    fn needs_unique_tombstones(&self) -> bool {
        // No uniqueness constraint covers the email here: ADR 0016's fixed tombstone is
        // written as the policy says.
        false
    }

    fn has_outbox(&self) -> bool {
        false
    }

    async fn page(&self, scan: Scan, after: Option<&Cursor>, limit: usize) -> Result<Page> {
        let after = match after {
            None => i64::MIN,
            Some(Cursor(c)) => c.parse().map_err(|_| {
                StoreError::InvalidArgument(format!("not a cursor of this store: {c:?}"))
            })?,
        };
        let state = match scan {
            Scan::Expirable { .. } => AssignmentState::Allocated,
            Scan::PiiCandidates => AssignmentState::Expired,
        };
        let batch = self.load_batch(state, after, limit.max(1) as i64).await?;
        let next = batch.last().map(|(id, _, _)| Cursor(id.to_string()));
        let rows = batch
            .into_iter()
            .map(|(id, assignment, context)| Row {
                key: RowKey(id.to_string()),
                assignment,
                context: RowContext::Known(context),
                version: String::new(),
            })
            .collect();
        Ok(Page {
            rows,
            inactive: 0,
            next,
        })
    }

    async fn write_expiries(
        &self,
        writes: &[ExpiryWrite],
        now: DateTime<Utc>,
        notify: Notify,
    ) -> Result<Written> {
        if notify != Notify::Nothing {
            return Err(StoreError::Unsupported {
                operation: "expiration emails (an outbox or Braze)",
                backend: "this project's assignment tables",
            });
        }
        let mut groups = ExpiryGroups::new();
        let mut written = Vec::with_capacity(writes.len());
        let expired_at = micros(now);
        for w in writes {
            let id = own_id(&w.key)?;
            let stamp = (w.new_state == AssignmentState::Expired).then_some(expired_at);
            groups
                .entry((w.new_state.as_str().to_owned(), stamp, w.tombstone.clone()))
                .or_default()
                .push(id);
            written.push(w.key.0.clone());
        }
        if !groups.is_empty() {
            self.write_expirations(&groups, micros(now)).await?;
        }
        Ok(Written {
            written,
            ..Written::default()
        })
    }

    async fn record_email(
        &self,
        _notice: &crate::assignment_store::Notice,
        _action_uuid: &str,
        _outcome: &EmailOutcome,
        _now: DateTime<Utc>,
    ) -> Result<()> {
        Err(StoreError::Unsupported {
            operation: "expiration emails",
            backend: "this project's assignment tables",
        })
    }

    async fn write_scrubs(&self, writes: &[ScrubWrite], now: DateTime<Utc>) -> Result<Written> {
        let tombstones = writes
            .iter()
            .map(|w| Ok((own_id(&w.key)?, w.tombstone.clone())))
            .collect::<Result<Vec<_>>>()?;
        self.write_tombstones(&tombstones, micros(now)).await?;
        Ok(Written {
            written: writes.iter().map(|w| w.key.0.clone()).collect(),
            ..Written::default()
        })
    }

    async fn learner_rows(&self, email: &str, lms_user_id: Option<i64>) -> Result<Vec<Row>> {
        let lowered = email.to_lowercase();
        let candidates: Vec<(i64, String, String, Option<i64>)> = with_conn!(self, c => {
            let mut query = a::table
                .select((a::id, a::uuid, a::learner_email, a::lms_user_id))
                .into_boxed();
            query = match lms_user_id {
                Some(user) => query.filter(lower(a::learner_email).eq(lowered.clone()).or(a::lms_user_id.eq(user))),
                None => query.filter(lower(a::learner_email).eq(lowered.clone())),
            };
            query.load(c).await?
        });
        // Only uuid, email and user id matter to the scrub rule.
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        Ok(candidates
            .into_iter()
            .map(|(id, uuid, learner_email, user)| Row {
                key: RowKey(id.to_string()),
                assignment: Assignment {
                    uuid,
                    state: AssignmentState::Allocated,
                    learner_email,
                    lms_user_id: user,
                    created: epoch,
                    allocated_at: epoch,
                    expired_at: None,
                    preferred_course_run_key: None,
                    content_key: String::new(),
                    has_credit_request: false,
                    actions: Vec::new(),
                },
                context: RowContext::Known(Context {
                    enrollment: Enrollment::Deadline(None),
                    subsidy_expiration: None,
                    configuration_active: true,
                }),
                version: String::new(),
            })
            .collect())
    }
}

fn own_id(key: &RowKey) -> Result<i64> {
    key.0
        .parse()
        .map_err(|_| StoreError::InvalidArgument(format!("not a row of this store: {:?}", key.0)))
}
