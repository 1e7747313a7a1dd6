//! Connecting: URL parsing, pools, migrations and the schema check.

use std::fmt;
use std::time::Duration;

use diesel::SqliteConnection;
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncMysqlConnection, AsyncPgConnection,
    SimpleAsyncConnection,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{Result, StoreError};

/// SQLite behind diesel-async: each call runs on tokio's blocking pool, or inline.
pub(crate) type SqliteConn = SyncConnectionWrapper<SqliteConnection, Blocking>;

/// Where SQLite's synchronous calls run: tokio's blocking pool (default), or on the calling
/// task itself ([`StoreOptions::sqlite_inline`]), so a simulation on a current-thread runtime
/// with a paused clock sees every statement finish before anything else runs: no thread
/// decides the order of events.
pub(crate) enum Blocking {
    Pool(tokio::runtime::Handle),
    Inline,
}

/// A blocking-pool task that is never left running when its future is dropped (a request
/// cancelled mid-statement): the drop waits for it, because the connection it holds must be
/// free for the next statement (diesel-async's own wrapper does the same).
struct Finishing<R> {
    joined: tokio::task::JoinHandle<R>,
    finished: Option<std::sync::mpsc::Receiver<()>>,
}

impl<R> Future for Finishing<R> {
    type Output = std::result::Result<R, Box<dyn std::error::Error + Send + Sync + 'static>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let polled = std::pin::Pin::new(&mut self.joined).poll(cx);
        if polled.is_ready() {
            self.finished = None;
        }
        polled.map(|joined| joined.map_err(|e| Box::new(e) as _))
    }
}

impl<R> Drop for Finishing<R> {
    fn drop(&mut self) {
        if let Some(finished) = self.finished.take()
            && !self.joined.is_finished()
        {
            // Returns once the task dropped its sender, i.e. finished.
            let _ = finished.recv();
        }
    }
}

impl diesel_async::sync_connection_wrapper::SpawnBlocking for Blocking {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> std::pin::Pin<
        Box<
            dyn Future<
                    Output = std::result::Result<
                        R,
                        Box<dyn std::error::Error + Send + Sync + 'static>,
                    >,
                > + Send
                + 'a,
        >,
    >
    where
        R: Send + 'static,
    {
        match self {
            Blocking::Pool(handle) => {
                // The task holds the sender: it is dropped, and `Finishing`'s drop wakes, when
                // the task is done.
                let (running, finished) = std::sync::mpsc::channel::<()>();
                let joined = handle.spawn_blocking(move || {
                    let _running = running;
                    task()
                });
                Box::pin(Finishing {
                    joined,
                    finished: Some(finished),
                })
            }
            Blocking::Inline => {
                let done = task();
                Box::pin(std::future::ready(Ok(done)))
            }
        }
    }

    fn get_runtime() -> Blocking {
        Blocking::Pool(tokio::runtime::Handle::current())
    }
}

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const MYSQL_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/mysql");

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// An embedded SQLite file (bundled SQLite; one process at a time).
    Sqlite,
    /// PostgreSQL, for several workers sharing one queue.
    Postgres,
    /// MySQL 8 or MariaDB 10.6+, for several workers sharing one queue.
    Mysql,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Sqlite => "sqlite",
            BackendKind::Postgres => "postgres",
            BackendKind::Mysql => "mysql",
        })
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The most connections the pool opens (PostgreSQL and MySQL). SQLite always uses one: it
    /// serialises writers anyway, and one connection means our own transactions never meet
    /// "database is locked".
    pub max_connections: u32,
    /// How long to wait for a connection before failing.
    pub connect_timeout: Duration,
    /// SQLite's `busy_timeout`: how long a write waits for another process's lock.
    pub sqlite_busy_timeout: Duration,
    /// Run SQLite's statements on the calling task instead of tokio's blocking pool (default
    /// `false`). For deterministic simulations on a current-thread runtime; it blocks that
    /// runtime for each statement, so production leaves it off.
    pub sqlite_inline: bool,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            max_connections: 16,
            connect_timeout: Duration::from_secs(10),
            sqlite_busy_timeout: Duration::from_secs(5),
            sqlite_inline: false,
        }
    }
}

pub(crate) enum Pools {
    Sqlite(Pool<SqliteConn>),
    Postgres(Pool<AsyncPgConnection>),
    Mysql(Pool<AsyncMysqlConnection>),
}

/// A store URL, parsed.
#[derive(Clone)]
pub(crate) struct StoreUrl {
    pub(crate) kind: BackendKind,
    /// What the driver gets: a file path for SQLite, the URL otherwise.
    pub(crate) target: String,
    /// The URL with any password replaced, for messages.
    pub(crate) redacted: String,
}

impl StoreUrl {
    pub(crate) fn parse(url: &str) -> Result<StoreUrl> {
        let redacted = redact_password(url);
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(StoreError::InvalidArgument(
                    "sqlite:// needs a file path, e.g. sqlite://retirement.db".into(),
                ));
            }
            return Ok(StoreUrl {
                kind: BackendKind::Sqlite,
                target: path.to_owned(),
                redacted,
            });
        }
        let kind = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            BackendKind::Postgres
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            BackendKind::Mysql
        } else {
            return Err(StoreError::UnsupportedUrl { url: redacted });
        };
        let target = match url.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => url.to_owned(),
        };
        Ok(StoreUrl {
            kind,
            target,
            redacted,
        })
    }
}

/// `scheme://user:secret@host/db` → `scheme://user:***@host/db`.
pub(crate) fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

pub(crate) async fn build_pools(url: &StoreUrl, options: &StoreOptions) -> Result<Pools> {
    Ok(match url.kind {
        BackendKind::Sqlite => {
            let busy_ms = options.sqlite_busy_timeout.as_millis();
            let inline = options.sqlite_inline;
            let mut config = ManagerConfig::<SqliteConn>::default();
            // A local file cannot drop the connection: skip the `SELECT 1` that `Verified`
            // runs (one more blocking hop) on every checkout, the SQLite hot path's cost.
            config.recycling_method = RecyclingMethod::Fast;
            config.custom_setup = Box::new(move |path| {
                let path = path.to_owned();
                Box::pin(async move {
                    let mut conn = if inline {
                        SqliteConn::with_runtime(
                            <SqliteConnection as diesel::Connection>::establish(&path)?,
                            Blocking::Inline,
                        )
                    } else {
                        SqliteConn::establish(&path).await?
                    };
                    // busy_timeout first, so switching to WAL already waits for other
                    // processes; then WAL so readers never block the writer.
                    conn.batch_execute(&format!(
                        "PRAGMA busy_timeout = {busy_ms}; PRAGMA journal_mode = WAL; \
                         PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
                    ))
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                    Ok(conn)
                })
            });
            let manager = AsyncDieselConnectionManager::new_with_config(&url.target, config);
            let pool = Pool::builder()
                .max_size(1)
                // An in-memory database lives as long as its one connection: never recycle it.
                .idle_timeout(None)
                .max_lifetime(None)
                .connection_timeout(options.connect_timeout)
                .build(manager)
                .await
                .map_err(StoreError::connection)?;
            Pools::Sqlite(pool)
        }
        BackendKind::Postgres => {
            let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(&url.target);
            Pools::Postgres(
                Pool::builder()
                    .max_size(options.max_connections.max(1))
                    .connection_timeout(options.connect_timeout)
                    .build(manager)
                    .await
                    .map_err(StoreError::connection)?,
            )
        }
        BackendKind::Mysql => {
            let manager = AsyncDieselConnectionManager::<AsyncMysqlConnection>::new(&url.target);
            Pools::Mysql(
                Pool::builder()
                    .max_size(options.max_connections.max(1))
                    .connection_timeout(options.connect_timeout)
                    .build(manager)
                    .await
                    .map_err(StoreError::connection)?,
            )
        }
    })
}

/// Runs (`apply`) or lists the pending migrations; returns their versions.
pub(crate) async fn migrations(pools: &Pools, url: &StoreUrl, apply: bool) -> Result<Vec<String>> {
    let migration_error =
        |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Migration(e.to_string());
    match pools {
        Pools::Sqlite(pool) => {
            let mut conn = pool.get().await.map_err(StoreError::connection)?;
            conn.spawn_blocking(move |c| Ok(run_or_list(c, SQLITE_MIGRATIONS, apply)))
                .await?
                .map_err(migration_error)
        }
        // The migration harness is synchronous: run it on a blocking thread over its own
        // connection, so callers on any runtime flavour can migrate.
        Pools::Postgres(_) => {
            server_migrations::<AsyncPgConnection>(&url.target, POSTGRES_MIGRATIONS, apply).await
        }
        Pools::Mysql(_) => {
            server_migrations::<AsyncMysqlConnection>(&url.target, MYSQL_MIGRATIONS, apply).await
        }
    }
}

/// Runs (`apply`) or lists a server backend's migrations over a dedicated connection.
async fn server_migrations<C>(
    url: &str,
    migrations: EmbeddedMigrations,
    apply: bool,
) -> Result<Vec<String>>
where
    C: AsyncConnection + Send + 'static,
    AsyncMigrationHarness<C>: MigrationHarness<C::Backend>,
{
    let conn = C::establish(url).await.map_err(StoreError::connection)?;
    tokio::task::spawn_blocking(move || {
        run_or_list(&mut AsyncMigrationHarness::new(conn), migrations, apply)
    })
    .await
    .map_err(|e| StoreError::Migration(e.to_string()))?
    .map_err(|e| StoreError::Migration(e.to_string()))
}

/// Applies the pending migrations, or only lists them; returns their versions either way.
fn run_or_list<DB: diesel::backend::Backend>(
    harness: &mut impl MigrationHarness<DB>,
    migrations: EmbeddedMigrations,
    apply: bool,
) -> diesel::migration::Result<Vec<String>> {
    if apply {
        let done = harness.run_pending_migrations(migrations)?;
        Ok(done.iter().map(ToString::to_string).collect())
    } else {
        let pending = harness.pending_migrations(migrations)?;
        Ok(pending
            .iter()
            .map(|m| m.name().version().to_string())
            .collect())
    }
}
