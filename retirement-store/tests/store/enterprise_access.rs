//! enterprise-access's schema, loaded from the reference dump (upstream's migrations run into
//! MariaDB 10.11), recognised, and refused once changed. MySQL/MariaDB only.

use retirement_store::enterprise_access::{EnterpriseAccessSchema, UuidStorage};
use retirement_store::{BackendKind, StoreError};

use crate::Store;
use crate::harness::Test;

pub(crate) fn tests() -> Vec<Test> {
    vec![crate::test!(
        servers the_reference_schema_is_recognised_and_a_changed_one_refused
    )]
}

const REFERENCE: &str = include_str!("../fixtures/enterprise-access-schema.mysql.sql");
const ASSIGNMENT: &str = "content_assignments_learnercontentassignment";
const HISTORY: &str = "content_assignments_historicallearnercontentassignment";

async fn the_reference_schema_is_recognised_and_a_changed_one_refused(store: Store) {
    if store.backend() != BackendKind::Mysql {
        return;
    }
    // Before the tables exist: refused, naming them.
    let err = EnterpriseAccessSchema::detect(&store).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("missing content_assignments_assignmentconfiguration.uuid"),
        "{err}"
    );
    store.execute_mysql_script(REFERENCE).await.unwrap();
    let schema = EnterpriseAccessSchema::detect(&store).await.unwrap();
    assert_eq!(
        schema.storage(ASSIGNMENT, "uuid"),
        Some(UuidStorage::Native)
    );
    assert_eq!(schema.storage(HISTORY, "uuid"), Some(UuidStorage::Native));
    // A database made by Django 4.2, half converted by upstream's MariaDB migrations: the
    // history table's UUIDs stay char(32) while the live table's are native.
    store
        .execute_mysql_script(&format!(
            "ALTER TABLE {HISTORY} MODIFY uuid char(32) NOT NULL, \
             MODIFY assignment_configuration_id char(32) NULL"
        ))
        .await
        .unwrap();
    let mixed = EnterpriseAccessSchema::detect(&store).await.unwrap();
    assert_eq!(mixed.storage(ASSIGNMENT, "uuid"), Some(UuidStorage::Native));
    assert_eq!(mixed.storage(HISTORY, "uuid"), Some(UuidStorage::Hex32));
    assert_eq!(
        mixed
            .encode(HISTORY, "uuid", "0E1D2C3B-4A59-6877-6655-4433221100FF")
            .unwrap(),
        "0e1d2c3b4a59687766554433221100ff"
    );
    // A column gone, and a case-sensitive email column: refused before any write, named.
    store
        .execute_mysql_script(&format!(
            "ALTER TABLE {ASSIGNMENT} DROP COLUMN expired_at, \
             MODIFY learner_email varchar(254) COLLATE utf8mb4_bin NOT NULL"
        ))
        .await
        .unwrap();
    let err = EnterpriseAccessSchema::detect(&store).await.unwrap_err();
    assert!(
        matches!(err, StoreError::UnrecognisedSchema { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("missing {ASSIGNMENT}.expired_at")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{ASSIGNMENT}.learner_email has collation utf8mb4_bin"
        )),
        "{text}"
    );
}
