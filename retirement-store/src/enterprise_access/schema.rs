//! What the database holds, read from `information_schema` before any write.
//!
//! - Every table and column the expiry pass, the PII job and the retirement scrub use must exist;
//!   otherwise the schema is refused, naming each missing `table.column`.
//! - A UUIDField is MariaDB's native `uuid` (Django ≥ 5.0 on MariaDB ≥ 10.7), or `char(32)` hex
//!   without hyphens (MySQL, databases created by Django 4.2, and the columns upstream's
//!   `*_mariadb_uuid_conversion` migrations left alone): types can be mixed within one
//!   database, so the storage is kept per column and each value encoded for its column.
//! - Emails and states are compared as upstream's ORM compares them, under the database's
//!   case-insensitive collation; a case-sensitive one is refused.

use std::collections::BTreeMap;

use diesel::QueryableByName;
use diesel::sql_types::{Nullable, Text};
use diesel_async::RunQueryDsl;

use crate::conn::Pools;
use crate::diesel_store::DieselStore;
use crate::error::{Result, StoreError};

/// The tables and columns the jobs use; `uuid` marks a UUIDField, `ci` a column compared
/// case-insensitively.
const REQUIRED: &[(&str, &[(&str, Kind)])] = {
    use Kind::{Ci, Plain, Uuid};
    const ASSIGNMENT: &[(&str, Kind)] = &[
        ("uuid", Uuid),
        ("created", Plain),
        ("modified", Plain),
        ("learner_email", Ci),
        ("lms_user_id", Plain),
        ("content_key", Plain),
        ("content_quantity", Plain),
        ("state", Ci),
        ("transaction_uuid", Uuid),
        ("assignment_configuration_id", Uuid),
        ("content_title", Plain),
        ("allocation_batch_id", Uuid),
        ("accepted_at", Plain),
        ("allocated_at", Plain),
        ("cancelled_at", Plain),
        ("errored_at", Plain),
        ("expired_at", Plain),
        ("preferred_course_run_key", Plain),
        ("reversed_at", Plain),
        ("is_assigned_course_run", Plain),
        ("parent_content_key", Plain),
        ("admin_lms_user_id", Plain),
    ];
    const ACTION: &[(&str, Kind)] = &[
        ("uuid", Uuid),
        ("created", Plain),
        ("modified", Plain),
        ("action_type", Plain),
        ("completed_at", Plain),
        ("error_reason", Plain),
        ("traceback", Plain),
        ("assignment_id", Uuid),
    ];
    const HISTORY: &[(&str, Kind)] = &[
        ("history_id", Plain),
        ("history_date", Plain),
        ("history_change_reason", Plain),
        ("history_type", Plain),
        ("history_user_id", Plain),
    ];
    &[
        (
            "content_assignments_assignmentconfiguration",
            &[
                ("uuid", Uuid),
                ("active", Plain),
                ("enterprise_customer_uuid", Uuid),
            ],
        ),
        ("content_assignments_learnercontentassignment", ASSIGNMENT),
        (
            "content_assignments_historicallearnercontentassignment",
            ASSIGNMENT,
        ),
        (
            "content_assignments_historicallearnercontentassignment",
            HISTORY,
        ),
        ("content_assignments_learnercontentassignmentaction", ACTION),
        (
            "content_assignments_historicallearnercontentassignmentaction",
            ACTION,
        ),
        (
            "content_assignments_historicallearnercontentassignmentaction",
            HISTORY,
        ),
        (
            "subsidy_access_policy_subsidyaccesspolicy",
            &[
                ("uuid", Uuid),
                ("assignment_configuration_id", Uuid),
                ("catalog_uuid", Uuid),
                ("subsidy_uuid", Uuid),
                ("enterprise_customer_uuid", Uuid),
            ],
        ),
        (
            "subsidy_request_learnercreditrequest",
            &[
                ("uuid", Uuid),
                ("created", Plain),
                ("modified", Plain),
                ("state", Ci),
                ("assignment_id", Uuid),
                ("course_id", Plain),
            ],
        ),
        (
            "subsidy_request_historicallearnercreditrequest",
            &[
                ("uuid", Uuid),
                ("state", Ci),
                ("assignment_id", Uuid),
                ("history_id", Plain),
                ("history_date", Plain),
                ("history_type", Plain),
            ],
        ),
    ]
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Uuid,
    Ci,
}

/// How one UUID column stores its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UuidStorage {
    /// MariaDB's `uuid` type: text with hyphens.
    Native,
    /// `char(32)`: 32 hex digits, no hyphens (Django's UUIDField on MySQL or Django < 5.0).
    Hex32,
}

/// A database recognised as enterprise-access's, with each UUID column's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnterpriseAccessSchema {
    uuids: BTreeMap<(String, String), UuidStorage>,
    /// Every table's columns in declaration order, with their types (lower case).
    columns: BTreeMap<String, Vec<(String, String)>>,
    /// Indexes on exactly one column, by (table, column). Django names them by a hash, so
    /// they are looked up rather than named.
    single_column_indexes: BTreeMap<(String, String), String>,
}

#[derive(QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    column_type: String,
    #[diesel(sql_type = Nullable<Text>)]
    collation_name: Option<String>,
}

#[derive(QueryableByName)]
struct IndexRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    index_name: String,
}

const SINGLE_COLUMN_INDEXES: &str = "SELECT CAST(TABLE_NAME AS CHAR) AS table_name, \
     CAST(MIN(COLUMN_NAME) AS CHAR) AS column_name, CAST(INDEX_NAME AS CHAR) AS index_name \
     FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND INDEX_NAME <> 'PRIMARY' \
     GROUP BY TABLE_NAME, INDEX_NAME HAVING COUNT(*) = 1";

const COLUMNS: &str = "SELECT CAST(TABLE_NAME AS CHAR) AS table_name, \
     CAST(COLUMN_NAME AS CHAR) AS column_name, CAST(COLUMN_TYPE AS CHAR) AS column_type, \
     CAST(COLLATION_NAME AS CHAR) AS collation_name \
     FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
     ORDER BY TABLE_NAME, ORDINAL_POSITION";

impl EnterpriseAccessSchema {
    /// Reads `information_schema` of the store's database and checks it: see the module docs.
    /// Writes nothing.
    pub async fn detect(store: &DieselStore) -> Result<EnterpriseAccessSchema> {
        let Pools::Mysql(pool) = &store.pools else {
            return Err(StoreError::Unsupported {
                operation: "enterprise-access's schema (it lives on MySQL or MariaDB)",
                backend: match store.backend() {
                    crate::BackendKind::Sqlite => "SQLite",
                    _ => "PostgreSQL",
                },
            });
        };
        let mut conn = pool.get().await.map_err(StoreError::connection)?;
        let rows: Vec<ColumnRow> = diesel::sql_query(COLUMNS).load(&mut *conn).await?;
        let mut schema = Self::from_columns(
            rows.into_iter()
                .map(|r| (r.table_name, r.column_name, r.column_type, r.collation_name)),
        )?;
        let indexes: Vec<IndexRow> = diesel::sql_query(SINGLE_COLUMN_INDEXES)
            .load(&mut *conn)
            .await?;
        schema.single_column_indexes = indexes
            .into_iter()
            .map(|i| {
                (
                    (i.table_name.to_lowercase(), i.column_name.to_lowercase()),
                    i.index_name,
                )
            })
            .collect();
        Ok(schema)
    }

    /// The name of an index on exactly `table.column`, if the database has one.
    pub fn index_on(&self, table: &str, column: &str) -> Option<&str> {
        self.single_column_indexes
            .get(&(table.to_owned(), column.to_owned()))
            .map(String::as_str)
    }

    /// The check over `(table, column, column type, collation)` rows.
    fn from_columns(
        rows: impl Iterator<Item = (String, String, String, Option<String>)>,
    ) -> Result<EnterpriseAccessSchema> {
        let mut columns: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let found: BTreeMap<(String, String), (String, Option<String>)> = rows
            .map(|(t, c, ty, coll)| {
                let (t, c, ty) = (t.to_lowercase(), c.to_lowercase(), ty.to_lowercase());
                columns
                    .entry(t.clone())
                    .or_default()
                    .push((c.clone(), ty.clone()));
                ((t, c), (ty, coll))
            })
            .collect();
        let mut missing = Vec::new();
        let mut wrong = Vec::new();
        let mut uuids = BTreeMap::new();
        for (table, columns) in REQUIRED {
            for (column, kind) in *columns {
                let key = (table.to_string(), column.to_string());
                let Some((ty, collation)) = found.get(&key) else {
                    missing.push(format!("{table}.{column}"));
                    continue;
                };
                match kind {
                    Kind::Plain => {}
                    Kind::Uuid => match ty.as_str() {
                        "uuid" => {
                            uuids.insert(key, UuidStorage::Native);
                        }
                        "char(32)" => {
                            uuids.insert(key, UuidStorage::Hex32);
                        }
                        other => {
                            wrong.push(format!("{table}.{column} is {other}, not uuid or char(32)"))
                        }
                    },
                    Kind::Ci => {
                        if !collation.as_deref().is_some_and(|c| c.ends_with("_ci")) {
                            wrong.push(format!(
                                "{table}.{column} has collation {}, not a case-insensitive one (*_ci), as upstream's lookups expect",
                                collation.as_deref().unwrap_or("none")
                            ));
                        }
                    }
                }
            }
        }
        if missing.is_empty() && wrong.is_empty() {
            return Ok(EnterpriseAccessSchema {
                uuids,
                columns,
                single_column_indexes: BTreeMap::new(),
            });
        }
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!("missing {}", missing.join(", ")));
        }
        problems.extend(wrong);
        Err(StoreError::UnrecognisedSchema {
            what: problems.join("; "),
        })
    }

    /// How `table.column` stores UUIDs (`None`: not a UUID column the jobs use).
    pub fn storage(&self, table: &str, column: &str) -> Option<UuidStorage> {
        self.uuids
            .get(&(table.to_owned(), column.to_owned()))
            .copied()
    }

    /// The columns of `table` in declaration order with their types; empty for a table the
    /// database does not have.
    pub fn columns(&self, table: &str) -> &[(String, String)] {
        self.columns.get(table).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether `table.column` exists.
    pub fn has_column(&self, table: &str, column: &str) -> bool {
        self.columns(table).iter().any(|(c, _)| c == column)
    }

    /// `uuid` (either text form) as `table.column` stores it.
    pub fn encode(&self, table: &str, column: &str, uuid: &str) -> Result<String> {
        let hex = canonical_hex(uuid)?;
        match self.storage(table, column) {
            Some(UuidStorage::Hex32) => Ok(hex),
            Some(UuidStorage::Native) => Ok(hyphenate(&hex)),
            None => Err(StoreError::InvalidArgument(format!(
                "{table}.{column} is not a UUID column of enterprise-access's schema"
            ))),
        }
    }
}

/// The hyphenated form of 32 hex digits (from [`canonical_hex`]).
pub(crate) fn hyphenate(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// 32 lower-case hex digits from a UUID with or without hyphens (either storage reads back in
/// one of these forms).
pub(crate) fn canonical_hex(uuid: &str) -> Result<String> {
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    if hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(StoreError::InvalidArgument(
            "not a UUID (32 hex digits, with or without hyphens)".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(uuid_type: &str, collation: &str) -> Vec<(String, String, String, Option<String>)> {
        REQUIRED
            .iter()
            .flat_map(|(t, cols)| {
                cols.iter().map(move |(c, k)| {
                    let ty = match k {
                        Kind::Uuid => uuid_type.to_owned(),
                        _ => "varchar(255)".to_owned(),
                    };
                    (t.to_string(), c.to_string(), ty, Some(collation.to_owned()))
                })
            })
            .collect()
    }

    #[test]
    fn a_complete_schema_is_recognised_with_each_uuid_column_s_storage() {
        let schema =
            EnterpriseAccessSchema::from_columns(full("uuid", "utf8mb4_general_ci").into_iter())
                .unwrap();
        let t = "content_assignments_learnercontentassignment";
        assert_eq!(schema.storage(t, "uuid"), Some(UuidStorage::Native));
        let id = "0E1D2C3B4A59687766554433221100FF";
        assert_eq!(
            schema.encode(t, "uuid", id).unwrap(),
            "0e1d2c3b-4a59-6877-6655-4433221100ff"
        );
        let mut mixed = full("uuid", "utf8mb4_general_ci");
        for row in &mut mixed {
            if row.0.contains("historical") && row.2 == "uuid" {
                row.2 = "char(32)".into();
            }
        }
        let schema = EnterpriseAccessSchema::from_columns(mixed.into_iter()).unwrap();
        let h = "content_assignments_historicallearnercontentassignment";
        assert_eq!(schema.storage(h, "uuid"), Some(UuidStorage::Hex32));
        assert_eq!(
            schema
                .encode(h, "uuid", "0e1d2c3b-4a59-6877-6655-4433221100ff")
                .unwrap(),
            "0e1d2c3b4a59687766554433221100ff"
        );
        assert_eq!(schema.storage(t, "uuid"), Some(UuidStorage::Native));
        assert!(schema.encode(t, "uuid", "not-a-uuid").is_err());
    }

    #[test]
    fn an_unknown_schema_is_refused_naming_what_is_missing_or_wrong() {
        let mut rows = full("uuid", "utf8mb4_general_ci");
        rows.retain(|r| {
            !(r.0 == "content_assignments_learnercontentassignment" && r.1 == "expired_at")
        });
        for row in &mut rows {
            if row.0 == "subsidy_access_policy_subsidyaccesspolicy" && row.1 == "catalog_uuid" {
                row.2 = "binary(16)".into();
            }
            if row.0 == "content_assignments_learnercontentassignment" && row.1 == "learner_email" {
                row.3 = Some("utf8mb4_bin".into());
            }
        }
        let err = EnterpriseAccessSchema::from_columns(rows.into_iter())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing content_assignments_learnercontentassignment.expired_at"),
            "{err}"
        );
        assert!(
            err.contains("subsidy_access_policy_subsidyaccesspolicy.catalog_uuid is binary(16)"),
            "{err}"
        );
        assert!(
            err.contains("learner_email has collation utf8mb4_bin"),
            "{err}"
        );
        assert!(
            EnterpriseAccessSchema::from_columns(std::iter::empty())
                .unwrap_err()
                .to_string()
                .contains("missing content_assignments_assignmentconfiguration.uuid")
        );
    }
}
