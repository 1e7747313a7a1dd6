//! [`EnterpriseAccessStore`]: the [`AssignmentStore`] over enterprise-access's own tables.
//!
//! Reads and writes what upstream's `automatically_expire_assignments` and
//! `clear_pii_for_expired_assignments` do (`enterprise-access-integration.md`), with these
//! deliberate differences, each visible only when something goes wrong:
//!
//! - **Keyset paging on the primary key** (`state = ? AND uuid > ? ORDER BY uuid`), a range scan
//!   of the `state` index (InnoDB keeps the primary key in every secondary index). Upstream pages
//!   with OFFSET over a set its own updates shrink and skips rows; a keyset on `(created, uuid)`
//!   would need a sort of every allocated row per page, as there is no index on `created`.
//! - **One short READ COMMITTED transaction per page** for the credit requests, the
//!   assignments, their history rows and the outbox rows, where upstream autocommits each
//!   statement (a crash leaves half an expiry). Rows are locked (`FOR UPDATE`) and written only
//!   if still in the state and at the `modified` they were decided on: a redemption that lands
//!   between read and write wins, where upstream's full-row `save()` overwrites it.
//! - **Only changed columns are written**; history rows are still full copies of the row after
//!   the change (`INSERT … SELECT`), as django-simple-history writes them.
//! - **Tombstones are always unique**: ADR 0016's fixed `retired_user@retired.invalid` collides
//!   with the `(configuration, learner_email, content_key)` unique key (ENT-8574).
//! - The credit request's `full_clean()` and the discovery task its `post_save` may queue are
//!   not replayed: the job changes only `state` and `modified`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use assignment_expiry::{Assignment, AssignmentAction, ErrorReason, TOMBSTONE_PREFIX};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};

use super::schema::{EnterpriseAccessSchema, canonical_hex, hyphenate};
use crate::assignment_store::{
    AssignmentStore, Configuration, Cursor, EmailOutcome, ExpiryWrite, Notice, Notify, Page,
    PolicyLink, Row, RowContext, RowKey, Scan, ScrubWrite, Written,
};
use crate::conn::Pools;
use crate::diesel_store::DieselStore;
use crate::error::{Result, StoreError};

pub(crate) const ASSIGNMENT: &str = "content_assignments_learnercontentassignment";
pub(crate) const ASSIGNMENT_HISTORY: &str =
    "content_assignments_historicallearnercontentassignment";
const ACTION: &str = "content_assignments_learnercontentassignmentaction";
const ACTION_HISTORY: &str = "content_assignments_historicallearnercontentassignmentaction";
const CONFIGURATION: &str = "content_assignments_assignmentconfiguration";
const POLICY: &str = "subsidy_access_policy_subsidyaccesspolicy";
const CREDIT_REQUEST: &str = "subsidy_request_learnercreditrequest";
const CREDIT_REQUEST_HISTORY: &str = "subsidy_request_historicallearnercreditrequest";
const USER: &str = "core_user";
/// The outbox this project adds beside upstream's tables (`notifications: outbox`).
pub const OUTBOX: &str = "learner_retirement_expiry_outbox";

/// The outbox table: one row per expiry whose email another system sends. It holds the
/// learner's email until that system deletes the row after sending (the retirement scrub and
/// the PII job delete a learner's rows too).
pub const OUTBOX_DDL: &str = "CREATE TABLE IF NOT EXISTS learner_retirement_expiry_outbox (
  id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
  idempotency_key varchar(100) NOT NULL,
  kind varchar(16) NOT NULL,
  campaign_setting varchar(100) NOT NULL,
  assignment_uuid char(36) NOT NULL,
  credit_request_uuid char(36) DEFAULT NULL,
  learner_email varchar(254) NOT NULL,
  lms_user_id int DEFAULT NULL,
  enterprise_customer_uuid char(36) DEFAULT NULL,
  content_title varchar(255) DEFAULT NULL,
  reason varchar(32) NOT NULL,
  expired_at datetime(6) NOT NULL,
  created datetime(6) NOT NULL,
  UNIQUE KEY learner_retirement_expiry_outbox_key (idempotency_key),
  KEY learner_retirement_expiry_outbox_assignment (assignment_uuid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";

/// Upstream's datetime(6) columns hold naive UTC; read and written as text in this format.
const DATETIME: &str = "%Y-%m-%d %H:%i:%s.%f";
const HISTORY_COLUMNS: &[&str] = &[
    "history_id",
    "history_date",
    "history_change_reason",
    "history_type",
    "history_user_id",
];

fn sql_time(t: DateTime<Utc>) -> String {
    t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

fn parse_time(table: &'static str, raw: &str) -> Result<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.and_utc())
        .map_err(|_| StoreError::Corrupt {
            table,
            what: format!("unreadable datetime {raw:?}"),
        })
}

/// A UUID as read back (either storage) in the hyphenated form the rest of the project uses.
fn hyphenated(raw: &str) -> Result<String> {
    Ok(hyphenate(&canonical_hex(raw)?))
}

/// enterprise-access's database, recognised by [`EnterpriseAccessSchema::detect`].
pub struct EnterpriseAccessStore {
    store: Arc<DieselStore>,
    schema: EnterpriseAccessSchema,
    has_outbox: bool,
    /// `INSERT … SELECT` column lists copying a live row into its history table.
    assignment_copy: HistoryCopy,
    credit_request_copy: HistoryCopy,
    /// Whether action rows carry the learner's email (the edx fork's audit fields).
    actions_hold_email: bool,
    configurations: Mutex<HashMap<String, Arc<Configuration>>>,
}

impl std::fmt::Debug for EnterpriseAccessStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnterpriseAccessStore")
            .field("has_outbox", &self.has_outbox)
            .finish_non_exhaustive()
    }
}

/// The column lists of `INSERT INTO history (targets) SELECT sources FROM live`.
#[derive(Debug, Clone)]
struct HistoryCopy {
    targets: String,
    sources: String,
}

impl HistoryCopy {
    /// Every history column but the five django-simple-history adds, each of which the live
    /// table must have; a UUID column stored natively live but as `char(32)` in the history
    /// (a half-converted database) is copied as 32 hex digits.
    fn new(schema: &EnterpriseAccessSchema, live: &str, history: &str) -> Result<HistoryCopy> {
        let live_columns: HashMap<&str, &str> = schema
            .columns(live)
            .iter()
            .map(|(c, t)| (c.as_str(), t.as_str()))
            .collect();
        let mut targets = Vec::new();
        let mut sources = Vec::new();
        for (column, ty) in schema.columns(history) {
            if HISTORY_COLUMNS.contains(&column.as_str()) {
                continue;
            }
            let Some(live_ty) = live_columns.get(column.as_str()) else {
                return Err(StoreError::UnrecognisedSchema {
                    what: format!("{history}.{column} has no column {live}.{column} to copy"),
                });
            };
            targets.push(format!("`{column}`"));
            sources.push(if *live_ty == "uuid" && ty == "char(32)" {
                format!("REPLACE(CAST(`{column}` AS CHAR), '-', '')")
            } else {
                format!("`{column}`")
            });
        }
        targets.extend(HISTORY_COLUMNS[1..].iter().map(|c| format!("`{c}`")));
        sources.extend(["?", "NULL", "'~'", "NULL"].map(str::to_owned));
        Ok(HistoryCopy {
            targets: targets.join(", "),
            sources: sources.join(", "),
        })
    }

    /// `INSERT INTO history (…) SELECT …, ? (history_date), NULL, '~', NULL FROM live WHERE …`.
    fn statement(&self, live: &str, history: &str, filter: &str) -> String {
        format!(
            "INSERT INTO {history} ({}) SELECT {} FROM {live} WHERE {filter}",
            self.targets, self.sources
        )
    }
}

#[derive(QueryableByName)]
struct AssignmentRowSql {
    #[diesel(sql_type = Text)]
    uuid: String,
    #[diesel(sql_type = Nullable<Text>)]
    configuration: Option<String>,
    #[diesel(sql_type = Text)]
    learner_email: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    lms_user_id: Option<i64>,
    #[diesel(sql_type = Text)]
    content_key: String,
    #[diesel(sql_type = Nullable<Text>)]
    parent_content_key: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    preferred_course_run_key: Option<String>,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Text)]
    created: String,
    #[diesel(sql_type = Text)]
    allocated_at: String,
    #[diesel(sql_type = Nullable<Text>)]
    expired_at: Option<String>,
    #[diesel(sql_type = Text)]
    modified: String,
}

const ROW_COLUMNS: &str = "CAST(uuid AS CHAR) AS uuid, \
     CAST(assignment_configuration_id AS CHAR) AS configuration, learner_email, \
     CAST(lms_user_id AS SIGNED) AS lms_user_id, content_key, parent_content_key, \
     preferred_course_run_key, state, DATE_FORMAT(created, '%Y-%m-%d %H:%i:%s.%f') AS created, \
     DATE_FORMAT(allocated_at, '%Y-%m-%d %H:%i:%s.%f') AS allocated_at, \
     DATE_FORMAT(expired_at, '%Y-%m-%d %H:%i:%s.%f') AS expired_at, \
     DATE_FORMAT(modified, '%Y-%m-%d %H:%i:%s.%f') AS modified";

#[derive(QueryableByName)]
struct PairSql {
    #[diesel(sql_type = Text)]
    a: String,
    #[diesel(sql_type = Nullable<Text>)]
    b: Option<String>,
}

#[derive(QueryableByName)]
struct ActionSql {
    #[diesel(sql_type = Text)]
    assignment: String,
    #[diesel(sql_type = Text)]
    action_type: String,
    #[diesel(sql_type = Nullable<Text>)]
    completed_at: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    error_reason: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    reason: Option<String>,
}

#[derive(QueryableByName)]
struct ConfigurationSql {
    #[diesel(sql_type = Text)]
    uuid: String,
    #[diesel(sql_type = Bool)]
    active: bool,
}

#[derive(QueryableByName)]
struct PolicySql {
    #[diesel(sql_type = Text)]
    configuration: String,
    #[diesel(sql_type = Text)]
    uuid: String,
    #[diesel(sql_type = Text)]
    catalog_uuid: String,
    #[diesel(sql_type = Text)]
    subsidy_uuid: String,
    #[diesel(sql_type = Text)]
    enterprise_customer_uuid: String,
}

#[derive(QueryableByName)]
struct LockedSql {
    #[diesel(sql_type = Text)]
    uuid: String,
    #[diesel(sql_type = Text)]
    modified: String,
    #[diesel(sql_type = Text)]
    learner_email: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    lms_user_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    content_title: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    configuration: Option<String>,
    #[diesel(sql_type = Text)]
    state: String,
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl EnterpriseAccessStore {
    /// Recognises the database behind `store` (refusing one it does not, before any write) and
    /// whether it has the outbox table.
    pub async fn open(store: Arc<DieselStore>) -> Result<EnterpriseAccessStore> {
        let schema = EnterpriseAccessSchema::detect(&store).await?;
        let assignment_copy = HistoryCopy::new(&schema, ASSIGNMENT, ASSIGNMENT_HISTORY)?;
        let credit_request_copy =
            HistoryCopy::new(&schema, CREDIT_REQUEST, CREDIT_REQUEST_HISTORY)?;
        Ok(EnterpriseAccessStore {
            has_outbox: !schema.columns(OUTBOX).is_empty(),
            actions_hold_email: schema.has_column(ACTION, "learner_email"),
            assignment_copy,
            credit_request_copy,
            schema,
            store,
            configurations: Mutex::new(HashMap::new()),
        })
    }

    /// The recognised schema.
    pub fn schema_info(&self) -> &EnterpriseAccessSchema {
        &self.schema
    }

    /// Creates the outbox table (`expire-assignments migrate`). Needs the CREATE grant once.
    pub async fn create_outbox(&self) -> Result<()> {
        self.store.execute_mysql_script(OUTBOX_DDL).await
    }

    async fn conn(
        &self,
    ) -> Result<
        bb8::PooledConnection<
            '_,
            diesel_async::pooled_connection::AsyncDieselConnectionManager<AsyncMysqlConnection>,
        >,
    > {
        let Pools::Mysql(pool) = &self.store.pools else {
            return Err(StoreError::Unsupported {
                operation: "enterprise-access's schema",
                backend: "non-MySQL",
            });
        };
        let mut conn = pool.get().await.map_err(StoreError::connection)?;
        // The app writes these tables while the job runs: see each other's commits, lock only
        // what is written.
        conn.batch_execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .await?;
        Ok(conn)
    }

    /// `'…', '…'`: validated UUIDs (hex digits only) as `table.column` stores them, safe to
    /// inline.
    fn uuid_list<'a>(
        &self,
        table: &str,
        column: &str,
        uuids: impl IntoIterator<Item = &'a str>,
    ) -> Result<String> {
        let mut out = String::new();
        for uuid in uuids {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push('\'');
            out.push_str(&self.schema.encode(table, column, uuid)?);
            out.push('\'');
        }
        Ok(out)
    }

    /// The configurations (with their policies) among `uuids` not yet known, read once per store.
    async fn configurations(
        &self,
        conn: &mut AsyncMysqlConnection,
        uuids: &HashSet<String>,
    ) -> Result<HashMap<String, Arc<Configuration>>> {
        let unknown: Vec<&str> = {
            let known = self
                .configurations
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            uuids
                .iter()
                .filter(|u| !known.contains_key(*u))
                .map(String::as_str)
                .collect()
        };
        if !unknown.is_empty() {
            let list = self.uuid_list(CONFIGURATION, "uuid", unknown.iter().copied())?;
            let found: Vec<ConfigurationSql> = diesel::sql_query(format!(
                "SELECT CAST(uuid AS CHAR) AS uuid, active <> 0 AS active FROM {CONFIGURATION} \
                 WHERE uuid IN ({list})"
            ))
            .load(conn)
            .await?;
            let list = self.uuid_list(
                POLICY,
                "assignment_configuration_id",
                unknown.iter().copied(),
            )?;
            let policies: Vec<PolicySql> = diesel::sql_query(format!(
                "SELECT CAST(assignment_configuration_id AS CHAR) AS configuration, \
                 CAST(uuid AS CHAR) AS uuid, CAST(catalog_uuid AS CHAR) AS catalog_uuid, \
                 CAST(subsidy_uuid AS CHAR) AS subsidy_uuid, \
                 CAST(enterprise_customer_uuid AS CHAR) AS enterprise_customer_uuid \
                 FROM {POLICY} WHERE assignment_configuration_id IN ({list})"
            ))
            .load(conn)
            .await?;
            let mut policies: HashMap<String, PolicyLink> = policies
                .into_iter()
                .map(|p| {
                    Ok((
                        hyphenated(&p.configuration)?,
                        PolicyLink {
                            uuid: hyphenated(&p.uuid)?,
                            catalog_uuid: hyphenated(&p.catalog_uuid)?,
                            subsidy_uuid: hyphenated(&p.subsidy_uuid)?,
                            enterprise_customer_uuid: hyphenated(&p.enterprise_customer_uuid)?,
                        },
                    ))
                })
                .collect::<Result<_>>()?;
            let mut known = self
                .configurations
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for c in found {
                let uuid = hyphenated(&c.uuid)?;
                let policy = policies.remove(&uuid);
                known.insert(
                    uuid.clone(),
                    Arc::new(Configuration {
                        uuid,
                        active: c.active,
                        policy,
                    }),
                );
            }
        }
        let known = self
            .configurations
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Ok(uuids
            .iter()
            .filter_map(|u| known.get(u).map(|c| (u.clone(), c.clone())))
            .collect())
    }

    /// Rows read by `filter`, with their configurations, credit-request links and the actions
    /// of `action_type`.
    async fn rows(
        &self,
        conn: &mut AsyncMysqlConnection,
        sql: String,
        action_type: Option<&str>,
    ) -> Result<(Vec<Row>, u64, Option<String>)> {
        let found: Vec<AssignmentRowSql> = diesel::sql_query(sql).load(&mut *conn).await?;
        let Some(last) = found.last().map(|r| hyphenated(&r.uuid)).transpose()? else {
            return Ok((Vec::new(), 0, None));
        };
        let read = found.len();
        let mut uuids = Vec::with_capacity(found.len());
        let mut configuration_ids = HashSet::new();
        for r in &found {
            uuids.push(hyphenated(&r.uuid)?);
            if let Some(c) = &r.configuration {
                configuration_ids.insert(hyphenated(c)?);
            }
        }
        let configurations = self.configurations(conn, &configuration_ids).await?;
        let list = self.uuid_list(
            CREDIT_REQUEST,
            "assignment_id",
            uuids.iter().map(String::as_str),
        )?;
        let linked: Vec<PairSql> = diesel::sql_query(format!(
            "SELECT CAST(assignment_id AS CHAR) AS a, CAST(uuid AS CHAR) AS b \
             FROM {CREDIT_REQUEST} WHERE assignment_id IN ({list})"
        ))
        .load(&mut *conn)
        .await?;
        let linked: HashSet<String> = linked
            .iter()
            .map(|p| hyphenated(&p.a))
            .collect::<Result<_>>()?;
        let mut actions: HashMap<String, Vec<AssignmentAction>> = HashMap::new();
        if let Some(action_type) = action_type {
            let list = self.uuid_list(ACTION, "assignment_id", uuids.iter().map(String::as_str))?;
            // The edx fork records the expiry's reason in the action's metadata.
            let reason = match (
                self.schema.has_column(ACTION, "metadata"),
                self.schema.has_column(ACTION, "source"),
            ) {
                (true, true) => {
                    "CASE WHEN source = 'scheduled_job' \
                     THEN JSON_VALUE(metadata, '$.expiration_reason') END"
                }
                (true, false) => "JSON_VALUE(metadata, '$.expiration_reason')",
                _ => "NULL",
            };
            let found: Vec<ActionSql> = diesel::sql_query(format!(
                "SELECT CAST(assignment_id AS CHAR) AS assignment, action_type, \
                 DATE_FORMAT(completed_at, '{DATETIME}') AS completed_at, error_reason, \
                 {reason} AS reason \
                 FROM {ACTION} WHERE assignment_id IN ({list}) AND action_type = '{action_type}'"
            ))
            .load(&mut *conn)
            .await?;
            for a in found {
                let action = AssignmentAction {
                    action_type: enum_from(ACTION, &a.action_type)?,
                    completed_at: a
                        .completed_at
                        .as_deref()
                        .map(|t| parse_time(ACTION, t))
                        .transpose()?,
                    error_reason: match a.error_reason.as_deref() {
                        None => None,
                        Some(r) => Some(enum_from::<ErrorReason>(ACTION, r)?),
                    },
                    // An unknown recorded reason counts as none recorded.
                    reason: a.reason.as_deref().and_then(|r| enum_from(ACTION, r).ok()),
                };
                actions
                    .entry(hyphenated(&a.assignment)?)
                    .or_default()
                    .push(action);
            }
        }
        let mut rows = Vec::with_capacity(found.len());
        let mut inactive = 0;
        for (r, uuid) in found.into_iter().zip(uuids) {
            let configuration = match &r.configuration {
                Some(c) => configurations.get(&hyphenated(c)?).cloned(),
                None => None,
            };
            let Some(configuration) = configuration.filter(|c| c.active) else {
                // No configuration, or an inactive one: upstream never scans these.
                inactive += 1;
                continue;
            };
            let assignment = Assignment {
                state: enum_from(ASSIGNMENT, &r.state)?,
                learner_email: r.learner_email,
                lms_user_id: r.lms_user_id,
                created: parse_time(ASSIGNMENT, &r.created)?,
                allocated_at: parse_time(ASSIGNMENT, &r.allocated_at)?,
                expired_at: r
                    .expired_at
                    .as_deref()
                    .map(|t| parse_time(ASSIGNMENT, t))
                    .transpose()?,
                preferred_course_run_key: r.preferred_course_run_key,
                content_key: r.content_key,
                has_credit_request: linked.contains(&uuid),
                actions: actions.remove(&uuid).unwrap_or_default(),
                uuid: uuid.clone(),
            };
            rows.push(Row {
                key: RowKey(uuid),
                assignment,
                context: RowContext::FromServices {
                    configuration,
                    parent_content_key: r.parent_content_key,
                },
                version: r.modified,
            });
        }
        debug_assert_eq!(rows.len() + inactive as usize, read);
        Ok((rows, inactive, Some(last)))
    }

    /// Overwrites the email of one assignment everywhere it is kept: the history rows, the
    /// action rows (and their history) where the schema has the column, the outbox, then the
    /// row itself. No history row records the old value.
    async fn scrub_one(
        &self,
        tx: &mut AsyncMysqlConnection,
        uuid: &str,
        tombstone: &str,
        now: &str,
    ) -> Result<()> {
        let history = self.schema.encode(ASSIGNMENT_HISTORY, "uuid", uuid)?;
        diesel::sql_query(format!(
            "UPDATE {ASSIGNMENT_HISTORY} SET learner_email = ? WHERE uuid = '{history}'"
        ))
        .bind::<Text, _>(tombstone)
        .execute(&mut *tx)
        .await?;
        if self.actions_hold_email {
            for table in [ACTION, ACTION_HISTORY] {
                if self.schema.has_column(table, "learner_email") {
                    let id = self.schema.encode(table, "assignment_id", uuid)?;
                    diesel::sql_query(format!(
                        "UPDATE {table} SET learner_email = ? WHERE assignment_id = '{id}'"
                    ))
                    .bind::<Text, _>(tombstone)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        if self.has_outbox {
            diesel::sql_query(format!("DELETE FROM {OUTBOX} WHERE assignment_uuid = ?"))
                .bind::<Text, _>(uuid)
                .execute(&mut *tx)
                .await?;
        }
        let live = self.schema.encode(ASSIGNMENT, "uuid", uuid)?;
        diesel::sql_query(format!(
            "UPDATE {ASSIGNMENT} SET learner_email = ?, modified = ? WHERE uuid = '{live}'"
        ))
        .bind::<Text, _>(tombstone)
        .bind::<Text, _>(now)
        .execute(&mut *tx)
        .await?;
        Ok(())
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

/// The locked rows of `keys` still in `state`, by hyphenated uuid.
async fn lock_rows(
    store: &EnterpriseAccessStore,
    tx: &mut AsyncMysqlConnection,
    keys: &[&str],
    state: Option<&str>,
) -> Result<HashMap<String, LockedSql>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let list = store.uuid_list(ASSIGNMENT, "uuid", keys.iter().copied())?;
    // Only the primary key in the WHERE clause, the state checked here: with `AND state = ?`
    // MariaDB may plan the lock as a scan of the state's whole index range, once per page
    // (a 1M-row pass took 6.7x the set-based baseline).
    let locked: Vec<LockedSql> = diesel::sql_query(format!(
        "SELECT CAST(uuid AS CHAR) AS uuid, DATE_FORMAT(modified, '{DATETIME}') AS modified, \
         learner_email, CAST(lms_user_id AS SIGNED) AS lms_user_id, content_title, \
         CAST(assignment_configuration_id AS CHAR) AS configuration, state \
         FROM {ASSIGNMENT} FORCE INDEX (PRIMARY) WHERE uuid IN ({list}) FOR UPDATE"
    ))
    .load(&mut *tx)
    .await?;
    locked
        .into_iter()
        .filter(|l| state.is_none_or(|s| l.state == s))
        .map(|l| Ok((hyphenated(&l.uuid)?, l)))
        .collect()
}

#[async_trait]
impl AssignmentStore for EnterpriseAccessStore {
    fn schema(&self) -> &'static str {
        "enterprise-access"
    }

    fn needs_unique_tombstones(&self) -> bool {
        true
    }

    fn has_outbox(&self) -> bool {
        self.has_outbox
    }

    async fn page(&self, scan: Scan, after: Option<&Cursor>, limit: usize) -> Result<Page> {
        let mut conn = self.conn().await?;
        let (filter, action_type) = match scan {
            Scan::Expirable { with_notified } => (
                "state = 'allocated'".to_owned(),
                with_notified.then_some("notified"),
            ),
            Scan::PiiCandidates => (
                format!(
                    "state = 'expired' AND expired_at IS NOT NULL \
                     AND learner_email NOT LIKE '{TOMBSTONE_PREFIX}%'"
                ),
                Some("expired"),
            ),
        };
        let after_clause = match after {
            None => String::new(),
            // A native uuid column orders by the UUID type's own order (not its text's):
            // compare with a UUID value, not a string, or pages skip rows.
            Some(Cursor(c)) => match self.schema.storage(ASSIGNMENT, "uuid") {
                Some(super::UuidStorage::Native) => format!(
                    " AND uuid > CAST('{}' AS UUID)",
                    self.schema.encode(ASSIGNMENT, "uuid", c)?
                ),
                _ => format!(
                    " AND uuid > '{}'",
                    self.schema.encode(ASSIGNMENT, "uuid", c)?
                ),
            },
        };
        let limit = limit.max(1);
        // MariaDB plans `state = ? AND uuid > ?` as a lookup on `state` alone and filters `uuid`
        // row by row from the start of the state's range, so each page would cost more than
        // the last (a 1M-row pass took 7x the set-based baseline). Forcing the `state` index
        // makes it a range scan on (state, uuid): InnoDB keeps the primary key in it.
        let hint = self
            .schema
            .index_on(ASSIGNMENT, "state")
            .map(|index| format!(" FORCE INDEX (`{}`)", index.replace('`', "")))
            .unwrap_or_default();
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM {ASSIGNMENT}{hint} WHERE {filter}{after_clause} \
             ORDER BY {ASSIGNMENT}.uuid LIMIT {limit}"
        );
        // The cursor is the last row read, whether or not it was kept; a short page ends the
        // scan.
        let (rows, inactive, last) = self.rows(&mut conn, sql, action_type).await?;
        let full = rows.len() as u64 + inactive >= limit as u64;
        Ok(Page {
            rows,
            inactive,
            next: last.filter(|_| full).map(Cursor),
        })
    }

    async fn write_expiries(
        &self,
        writes: &[ExpiryWrite],
        now: DateTime<Utc>,
        notify: Notify,
    ) -> Result<Written> {
        if writes.is_empty() {
            return Ok(Written::default());
        }
        if notify == Notify::Outbox && !self.has_outbox {
            return Err(StoreError::InvalidArgument(format!(
                "notifications: outbox needs the {OUTBOX} table: run `expire-assignments migrate`"
            )));
        }
        let now_sql = sql_time(now);
        let mut conn = self.conn().await?;
        let written = conn
            .transaction(async |tx| -> Result<Written> {
                let keys: Vec<&str> = writes.iter().map(|w| w.key.0.as_str()).collect();
                let locked = lock_rows(self, tx, &keys, Some("allocated")).await?;
                let mut done = Written::default();
                let mut kept: Vec<&ExpiryWrite> = Vec::new();
                for w in writes {
                    match locked.get(&w.key.0) {
                        Some(l) if l.modified == w.version => kept.push(w),
                        _ => done.changed_meanwhile.push(w.key.0.clone()),
                    }
                }
                if kept.is_empty() {
                    return Ok(done);
                }
                // Credit requests first, as upstream orders it.
                let bnr: Vec<&str> = kept
                    .iter()
                    .filter(|w| w.expire_credit_request)
                    .map(|w| w.key.0.as_str())
                    .collect();
                let mut credit_requests: HashMap<String, String> = HashMap::new();
                if !bnr.is_empty() {
                    let list =
                        self.uuid_list(CREDIT_REQUEST, "assignment_id", bnr.iter().copied())?;
                    let found: Vec<PairSql> = diesel::sql_query(format!(
                        "SELECT CAST(assignment_id AS CHAR) AS a, CAST(uuid AS CHAR) AS b \
                         FROM {CREDIT_REQUEST} WHERE assignment_id IN ({list}) FOR UPDATE"
                    ))
                    .load(&mut *tx)
                    .await?;
                    for p in found {
                        if let Some(b) = &p.b {
                            credit_requests.insert(hyphenated(&p.a)?, hyphenated(b)?);
                        }
                    }
                    if !credit_requests.is_empty() {
                        let list = self.uuid_list(
                            CREDIT_REQUEST,
                            "uuid",
                            credit_requests.values().map(String::as_str),
                        )?;
                        diesel::sql_query(format!(
                            "UPDATE {CREDIT_REQUEST} SET state = 'expired', modified = ? \
                             WHERE uuid IN ({list})"
                        ))
                        .bind::<Text, _>(&now_sql)
                        .execute(&mut *tx)
                        .await?;
                        diesel::sql_query(self.credit_request_copy.statement(
                            CREDIT_REQUEST,
                            CREDIT_REQUEST_HISTORY,
                            &format!("uuid IN ({list})"),
                        ))
                        .bind::<Text, _>(&now_sql)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                // The assignments, grouped by what is written.
                let mut groups: BTreeMap<AssignmentStateKey, Vec<&str>> = BTreeMap::new();
                for w in &kept {
                    groups
                        .entry(AssignmentStateKey(w.new_state.as_str()))
                        .or_default()
                        .push(w.key.0.as_str());
                }
                for (AssignmentStateKey(state), uuids) in &groups {
                    let stamp = match *state {
                        "expired" => ", expired_at = ?",
                        "cancelled" => ", cancelled_at = ?",
                        _ => "",
                    };
                    let list = self.uuid_list(ASSIGNMENT, "uuid", uuids.iter().copied())?;
                    let mut q = diesel::sql_query(format!(
                        "UPDATE {ASSIGNMENT} SET state = '{state}', modified = ?{stamp} \
                         WHERE uuid IN ({list})"
                    ))
                    .into_boxed::<diesel::mysql::Mysql>()
                    .bind::<Text, _>(now_sql.clone());
                    if !stamp.is_empty() {
                        q = q.bind::<Text, _>(now_sql.clone());
                    }
                    q.execute(&mut *tx).await?;
                }
                for w in &kept {
                    if let Some(t) = &w.tombstone {
                        self.scrub_one(tx, &w.key.0, t, &now_sql).await?;
                    }
                }
                let list =
                    self.uuid_list(ASSIGNMENT, "uuid", kept.iter().map(|w| w.key.0.as_str()))?;
                diesel::sql_query(self.assignment_copy.statement(
                    ASSIGNMENT,
                    ASSIGNMENT_HISTORY,
                    &format!("uuid IN ({list})"),
                ))
                .bind::<Text, _>(&now_sql)
                .execute(&mut *tx)
                .await?;
                // The edx fork records each expiry's reason on an `expired` action of its own
                // (`source='scheduled_job'`, `metadata.expiration_reason`); its PII job reads it.
                if self.schema.has_column(ACTION, "metadata") {
                    for w in &kept {
                        if let Some(action_uuid) = &w.record_reason_as {
                            let reason = serde_json::to_value(w.reason)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default();
                            let record = NewAction {
                                completed: Some(now_sql.clone()),
                                error: None,
                                traceback: None,
                                source: "scheduled_job",
                                metadata: serde_json::json!({ "expiration_reason": reason })
                                    .to_string(),
                            };
                            self.insert_action(tx, &w.key.0, action_uuid, &record, &now_sql)
                                .await?;
                        }
                    }
                }
                let notices = self.notices(&kept, &locked, &credit_requests)?;
                match notify {
                    Notify::Nothing => {}
                    Notify::Outbox => done.queued = self.queue(tx, &notices, &now_sql).await?,
                    Notify::Return => done.notices = notices,
                }
                done.written = kept.iter().map(|w| w.key.0.clone()).collect();
                Ok(done)
            })
            .await?;
        Ok(written)
    }

    async fn record_email(
        &self,
        notice: &Notice,
        action_uuid: &str,
        outcome: &EmailOutcome,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let now_sql = sql_time(now);
        let action = match outcome {
            EmailOutcome::Delivered => NewAction {
                completed: Some(now_sql.clone()),
                error: None,
                traceback: None,
                source: "celery_task",
                metadata: "{}".into(),
            },
            EmailOutcome::Failed(why) => NewAction {
                completed: None,
                error: Some("email_error"),
                traceback: Some(why.clone()),
                source: "celery_task",
                metadata: "{}".into(),
            },
        };
        let mut conn = self.conn().await?;
        conn.transaction(async |tx| -> Result<()> {
            self.insert_action(tx, &notice.assignment_uuid, action_uuid, &action, &now_sql)
                .await
        })
        .await
    }

    async fn write_scrubs(&self, writes: &[ScrubWrite], now: DateTime<Utc>) -> Result<Written> {
        if writes.is_empty() {
            return Ok(Written::default());
        }
        let now_sql = sql_time(now);
        let mut conn = self.conn().await?;
        let written = conn
            .transaction(async |tx| -> Result<Written> {
                let keys: Vec<&str> = writes.iter().map(|w| w.key.0.as_str()).collect();
                let locked = lock_rows(self, tx, &keys, None).await?;
                let mut done = Written::default();
                for w in writes {
                    match (locked.get(&w.key.0), &w.version) {
                        (Some(l), Some(v)) if &l.modified != v => {
                            done.changed_meanwhile.push(w.key.0.clone())
                        }
                        (None, _) => done.changed_meanwhile.push(w.key.0.clone()),
                        (Some(_), _) => {
                            self.scrub_one(tx, &w.key.0, &w.tombstone, &now_sql).await?;
                            done.written.push(w.key.0.clone());
                        }
                    }
                }
                if !done.written.is_empty() {
                    let list = self.uuid_list(
                        ASSIGNMENT,
                        "uuid",
                        done.written.iter().map(String::as_str),
                    )?;
                    diesel::sql_query(self.assignment_copy.statement(
                        ASSIGNMENT,
                        ASSIGNMENT_HISTORY,
                        &format!("uuid IN ({list})"),
                    ))
                    .bind::<Text, _>(&now_sql)
                    .execute(&mut *tx)
                    .await?;
                }
                Ok(done)
            })
            .await?;
        Ok(written)
    }

    async fn scrub_learner_elsewhere(
        &self,
        email: &str,
        lms_user_id: Option<i64>,
        tombstone: &str,
    ) -> Result<u64> {
        self.scrub_user(email, lms_user_id, tombstone).await
    }

    async fn learner_rows(&self, email: &str, lms_user_id: Option<i64>) -> Result<Vec<Row>> {
        let mut conn = self.conn().await?;
        // Case-insensitive collations (checked at detect) make `=` match any case.
        let mut q = diesel::sql_query(format!(
            "SELECT {ROW_COLUMNS} FROM {ASSIGNMENT} WHERE learner_email = ?{} ORDER BY {ASSIGNMENT}.uuid",
            if lms_user_id.is_some() {
                " OR lms_user_id = ?"
            } else {
                ""
            }
        ))
        .into_boxed::<diesel::mysql::Mysql>()
        .bind::<Text, _>(email.to_owned());
        if let Some(user) = lms_user_id {
            q = q.bind::<BigInt, _>(user);
        }
        let found: Vec<AssignmentRowSql> = q.load(&mut *conn).await?;
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        found
            .into_iter()
            .map(|r| {
                let uuid = hyphenated(&r.uuid)?;
                Ok(Row {
                    key: RowKey(uuid.clone()),
                    assignment: Assignment {
                        uuid,
                        state: enum_from(ASSIGNMENT, &r.state)?,
                        learner_email: r.learner_email,
                        lms_user_id: r.lms_user_id,
                        created: epoch,
                        allocated_at: epoch,
                        expired_at: None,
                        preferred_course_run_key: None,
                        content_key: r.content_key,
                        has_credit_request: false,
                        actions: Vec::new(),
                    },
                    context: RowContext::Known(assignment_expiry::Context {
                        enrollment: assignment_expiry::Enrollment::Deadline(None),
                        subsidy_expiration: None,
                        configuration_active: true,
                    }),
                    version: r.modified,
                })
            })
            .collect()
    }
}

/// An `expired` action row to insert.
struct NewAction {
    completed: Option<String>,
    error: Option<&'static str>,
    traceback: Option<String>,
    /// The edx fork's `source` (`celery_task` for an email, `scheduled_job` for the expiry).
    source: &'static str,
    /// The edx fork's `metadata` JSON.
    metadata: String,
}

impl EnterpriseAccessStore {
    /// Inserts an `expired` action of `assignment` and its `'+'` history row; the edx fork's
    /// audit columns (`source`, `actor_type`, `metadata`) where the schema has them.
    async fn insert_action(
        &self,
        tx: &mut AsyncMysqlConnection,
        assignment: &str,
        action_uuid: &str,
        action: &NewAction,
        now: &str,
    ) -> Result<()> {
        for (table, history) in [(ACTION, false), (ACTION_HISTORY, true)] {
            let id = self.schema.encode(table, "uuid", action_uuid)?;
            let parent = self.schema.encode(table, "assignment_id", assignment)?;
            let mut columns = String::new();
            let mut values = String::new();
            let mut texts: Vec<String> = Vec::new();
            for (column, value) in [
                ("source", action.source.to_owned()),
                ("actor_type", "system".to_owned()),
                ("metadata", action.metadata.clone()),
            ] {
                if self.schema.has_column(table, column) {
                    columns.push_str(&format!(", {column}"));
                    values.push_str(", ?");
                    texts.push(value);
                }
            }
            if history {
                columns.push_str(", history_date, history_type");
                values.push_str(", ?, '+'");
                texts.push(now.to_owned());
            }
            let mut q = diesel::sql_query(format!(
                "INSERT INTO {table} (created, modified, uuid, action_type, completed_at, \
                 error_reason, traceback, assignment_id{columns}) \
                 VALUES (?, ?, '{id}', 'expired', ?, ?, ?, '{parent}'{values})"
            ))
            .into_boxed::<diesel::mysql::Mysql>()
            .bind::<Text, _>(now.to_owned())
            .bind::<Text, _>(now.to_owned())
            .bind::<Nullable<Text>, _>(action.completed.clone())
            .bind::<Nullable<Text>, _>(action.error)
            .bind::<Nullable<Text>, _>(action.traceback.clone());
            for text in texts {
                q = q.bind::<Text, _>(text);
            }
            q.execute(&mut *tx).await?;
        }
        Ok(())
    }
}

/// A state's stored spelling, ordered for grouping.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct AssignmentStateKey(&'static str);

impl EnterpriseAccessStore {
    /// The email of each kept expiry, with the email and user id as of expiry.
    fn notices(
        &self,
        kept: &[&ExpiryWrite],
        locked: &HashMap<String, LockedSql>,
        credit_requests: &HashMap<String, String>,
    ) -> Result<Vec<Notice>> {
        let configurations = self
            .configurations
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut notices = Vec::with_capacity(kept.len());
        for w in kept {
            let Some(l) = locked.get(&w.key.0) else {
                continue;
            };
            let customer = match &l.configuration {
                Some(c) => configurations
                    .get(&hyphenated(c)?)
                    .and_then(|c| c.policy.as_ref())
                    .map(|p| p.enterprise_customer_uuid.clone()),
                None => None,
            };
            notices.push(Notice {
                assignment_uuid: w.key.0.clone(),
                credit_request_uuid: credit_requests.get(&w.key.0).cloned(),
                learner_email: l.learner_email.clone(),
                lms_user_id: l.lms_user_id,
                enterprise_customer_uuid: customer,
                content_title: l.content_title.clone(),
                reason: w.reason,
            });
        }
        Ok(notices)
    }

    /// One outbox row per notice.
    async fn queue(
        &self,
        tx: &mut AsyncMysqlConnection,
        notices: &[Notice],
        now: &str,
    ) -> Result<u64> {
        let mut queued = 0;
        for n in notices {
            let (kind, campaign) = match &n.credit_request_uuid {
                Some(_) => (
                    "bnr",
                    "BRAZE_LEARNER_CREDIT_BNR_AUTOMATIC_EXPIRATION_NOTIFICATION_CAMPAIGN",
                ),
                None => (
                    "regular",
                    "BRAZE_ASSIGNMENT_AUTOMATIC_CANCELLATION_NOTIFICATION_CAMPAIGN",
                ),
            };
            let reason = serde_json::to_value(n.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            queued += diesel::sql_query(format!(
                "INSERT INTO {OUTBOX} (idempotency_key, kind, campaign_setting, assignment_uuid, \
                 credit_request_uuid, learner_email, lms_user_id, enterprise_customer_uuid, \
                 content_title, reason, expired_at, created) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .bind::<Text, _>(format!("{}@{now}", n.assignment_uuid))
            .bind::<Text, _>(kind)
            .bind::<Text, _>(campaign)
            .bind::<Text, _>(&n.assignment_uuid)
            .bind::<Nullable<Text>, _>(&n.credit_request_uuid)
            .bind::<Text, _>(&n.learner_email)
            .bind::<Nullable<BigInt>, _>(n.lms_user_id)
            .bind::<Nullable<Text>, _>(&n.enterprise_customer_uuid)
            .bind::<Nullable<Text>, _>(&n.content_title)
            .bind::<Text, _>(reason)
            .bind::<Text, _>(now)
            .bind::<Text, _>(now)
            .execute(&mut *tx)
            .await? as u64;
        }
        Ok(queued)
    }

    /// Scrubs the learner's own user row (`core_user`, filled from their JWT): email and names
    /// replaced, the username set to the tombstone's unique local part. Returns rows changed.
    pub async fn scrub_user(
        &self,
        email: &str,
        lms_user_id: Option<i64>,
        tombstone: &str,
    ) -> Result<u64> {
        if !self.schema.has_column(USER, "email") || !self.schema.has_column(USER, "lms_user_id") {
            return Ok(0);
        }
        let mut conn = self.conn().await?;
        let username: String = tombstone.split('@').next().unwrap_or(tombstone).to_owned();
        let mut q = diesel::sql_query(format!(
            "UPDATE {USER} SET email = ?, username = CONCAT(?, '-', id), first_name = '', \
             last_name = ''{} \
             WHERE email = ?{}",
            if self.schema.has_column(USER, "full_name") {
                ", full_name = NULL"
            } else {
                ""
            },
            if lms_user_id.is_some() {
                " OR lms_user_id = ?"
            } else {
                ""
            }
        ))
        .into_boxed::<diesel::mysql::Mysql>()
        .bind::<Text, _>(tombstone.to_owned())
        .bind::<Text, _>(username)
        .bind::<Text, _>(email.to_owned());
        if let Some(user) = lms_user_id {
            q = q.bind::<BigInt, _>(user);
        }
        Ok(q.execute(&mut *conn).await? as u64)
    }

    /// Whether any row of `table` exists (tests and checks).
    #[doc(hidden)]
    pub async fn count(&self, table: &str, filter: &str) -> Result<i64> {
        let mut conn = self.conn().await?;
        let found: Vec<Exists> =
            diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table} WHERE {filter}"))
                .load(&mut *conn)
                .await?;
        Ok(found.into_iter().next().map(|e| e.n).unwrap_or(0))
    }
}
