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
