//! Throwaway databases on a PostgreSQL or MySQL server, for tests in other crates (feature
//! `testkit`): each test gets its own database, dropped afterwards.

use std::sync::atomic::{AtomicU64, Ordering};

use diesel_async::{
    AsyncConnection, AsyncMysqlConnection, AsyncPgConnection, SimpleAsyncConnection,
};

// `retirement_store`, not `crate`: the store's own suite includes this file as a module.
use retirement_store::BackendKind;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A database created for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    admin_url: String,
    name: String,
    kind: BackendKind,
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    format!("{base}/{database}{query}")
}

async fn admin_exec(kind: BackendKind, url: &str, sql: &str) -> Result<(), String> {
    async fn on<C: AsyncConnection + SimpleAsyncConnection>(
        url: &str,
        sql: &str,
    ) -> Result<(), String> {
        let mut conn = C::establish(url)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        conn.batch_execute(sql)
            .await
            .map_err(|e| format!("{sql}: {e}"))
    }
    match kind {
        BackendKind::Postgres => on::<AsyncPgConnection>(url, sql).await,
        BackendKind::Mysql => on::<AsyncMysqlConnection>(url, sql).await,
        BackendKind::Sqlite => Ok(()),
    }
}

impl TestDatabase {
    /// Creates an empty database on the server of `admin_url` (`postgres://…` or `mysql://…`).
    pub async fn create(admin_url: &str) -> Result<TestDatabase, String> {
        let kind = if admin_url.starts_with("postgres") {
            BackendKind::Postgres
        } else if admin_url.starts_with("mysql") {
            BackendKind::Mysql
        } else {
            return Err("a server URL (postgres://… or mysql://…) is needed".into());
        };
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("retirement_it_{}_{n}", std::process::id());
        admin_exec(kind, admin_url, &format!("CREATE DATABASE {name}")).await?;
        Ok(TestDatabase {
            url: replace_database(admin_url, &name),
            admin_url: admin_url.to_owned(),
            name,
            kind,
        })
    }

    /// Drops the database.
    pub async fn drop_database(self) {
        let sql = match self.kind {
            BackendKind::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        let _ = admin_exec(self.kind, &self.admin_url, &sql).await;
    }
}

/// The URL of a database server for tests, from `var`. Without it: under `CI=true` the test
/// fails; elsewhere it is skipped with one line saying so.
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set, and CI=true: the server tests must run")
        }
        _ => {
            eprintln!("skipped: {var} is not set");
            None
        }
    }
}

/// enterprise-access's tables as its migrations lay them out on MariaDB 10.11 (the reference
/// dump, `tests/fixtures/enterprise-access-schema.mysql.sql`).
pub const ENTERPRISE_ACCESS_SCHEMA: &str =
    include_str!("../tests/fixtures/enterprise-access-schema.mysql.sql");

/// A fresh MySQL/MariaDB database with enterprise-access's tables, on the server of
/// `RETIREMENT_TEST_MYSQL_URL` (`None`: skipped, see [`server_url`]). With `hex_uuids`, every
/// UUID column of the assignment history tables is `char(32)` instead, as in a database
/// Django 4.2 created and upstream's MariaDB migrations half converted.
pub async fn enterprise_access_database(hex_uuids: bool) -> Option<TestDatabase> {
    let admin = server_url("RETIREMENT_TEST_MYSQL_URL")?;
    let db = TestDatabase::create(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create a database on the MySQL server: {e}"));
    let mut conn = AsyncMysqlConnection::establish(&db.url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test database: {e}"));
    conn.batch_execute(ENTERPRISE_ACCESS_SCHEMA)
        .await
        .unwrap_or_else(|e| panic!("loading enterprise-access's schema: {e}"));
    if hex_uuids {
        conn.batch_execute(
            "ALTER TABLE content_assignments_historicallearnercontentassignment \
               MODIFY uuid char(32) NOT NULL, MODIFY assignment_configuration_id char(32) NULL, \
               MODIFY transaction_uuid char(32) NULL, MODIFY allocation_batch_id char(32) NULL; \
             ALTER TABLE content_assignments_historicallearnercontentassignmentaction \
               MODIFY uuid char(32) NOT NULL, MODIFY assignment_id char(32) NULL; \
             ALTER TABLE subsidy_request_historicallearnercreditrequest \
               MODIFY uuid char(32) NOT NULL, MODIFY assignment_id char(32) NULL",
        )
        .await
        .unwrap_or_else(|e| panic!("converting UUID columns to char(32): {e}"));
    }
    Some(db)
}

/// Runs one statement on a PostgreSQL or MySQL server at `url` over its own connection
/// (creating and dropping scratch databases).
pub async fn server_exec(url: &str, sql: &str) -> Result<(), String> {
    let kind = if url.starts_with("postgres") {
        BackendKind::Postgres
    } else {
        BackendKind::Mysql
    };
    admin_exec(kind, url, sql).await
}

/// The values of the one text column `line` that `select` returns, on the MySQL database at
/// `url` (assertions over enterprise-access's tables).
pub async fn mysql_lines(url: &str, select: &str) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Line {
        #[diesel(sql_type = diesel::sql_types::Text)]
        line: String,
    }
    use diesel_async::RunQueryDsl;
    let mut conn = AsyncMysqlConnection::establish(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test database: {e}"));
    diesel::sql_query(select)
        .load::<Line>(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{select}: {e}"))
        .into_iter()
        .map(|l| l.line)
        .collect()
}

/// Every `table.column` of a text type, in any table of the MySQL database at `url`, holding
/// `needle` in any case: the check that a scrubbed email is gone everywhere.
pub async fn mysql_text_columns_containing(url: &str, needle: &str) -> Vec<String> {
    let columns = mysql_lines(
        url,
        "SELECT CONCAT(TABLE_NAME, '.', COLUMN_NAME) AS line FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() \
         AND DATA_TYPE IN ('char', 'varchar', 'text', 'mediumtext', 'longtext', 'tinytext')",
    )
    .await;
    let needle = needle.to_lowercase().replace('\'', "''");
    let mut found = Vec::new();
    for column in columns {
        let (table, name) = column.split_once('.').unwrap_or_default();
        let hits = mysql_lines(
            url,
            &format!(
                "SELECT CAST(COUNT(*) AS CHAR) AS line FROM `{table}` \
                 WHERE LOWER(`{name}`) LIKE '%{needle}%'"
            ),
        )
        .await;
        if hits.first().is_some_and(|n| n != "0") {
            found.push(column);
        }
    }
    found.sort();
    found
}
