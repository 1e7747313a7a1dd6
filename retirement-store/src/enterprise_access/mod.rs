//! enterprise-access's own MySQL/MariaDB schema (issue 14): the tables its Django migrations lay
//! out, read and written as upstream does, for `assignments_schema: enterprise-access`.
//!
//! So far: [`EnterpriseAccessSchema::detect`], which checks a database before anything is
//! written (every table and column the jobs use, each UUID column's storage, case-insensitive
//! collations) and encodes UUIDs for each column as it is stored.

mod schema;
mod store;

pub use schema::{EnterpriseAccessSchema, UuidStorage};
pub use store::{EnterpriseAccessStore, OUTBOX, OUTBOX_DDL};

impl crate::DieselStore {
    /// Runs a trusted SQL script (several statements) on a MySQL/MariaDB store: loading
    /// enterprise-access's schema or fixtures into a test database. Never given learner data.
    pub async fn execute_mysql_script(&self, script: &str) -> crate::Result<()> {
        use diesel_async::SimpleAsyncConnection;
        let crate::conn::Pools::Mysql(pool) = &self.pools else {
            return Err(crate::StoreError::Unsupported {
                operation: "MySQL scripts",
                backend: "non-MySQL",
            });
        };
        let mut conn = pool.get().await.map_err(crate::StoreError::connection)?;
        conn.batch_execute(script).await?;
        Ok(())
    }
}
