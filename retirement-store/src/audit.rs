//! The privacy audit: which text columns still hold a given value.

use diesel::QueryDsl;
use diesel_async::RunQueryDsl;

use crate::diesel_store::{DieselStore, with_conn};
use crate::error::Result;
use crate::schema::*;

/// Loads one text column and records a hit for every needle found in it.
macro_rules! scan {
    ($store:expr, $hits:expr, $needles:expr, $($table:ident . $column:ident),+ $(,)?) => {$(
        let values: Vec<Option<String>> = with_conn!($store, c => {
            $table::table
                .select(diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Text>>(
                    stringify!($column),
                ))
                .load(c)
                .await?
        });
        if values
            .iter()
            .flatten()
            .any(|value| $needles.iter().any(|needle| value.contains(needle.as_str())))
        {
            $hits.push(concat!(stringify!($table), ".", stringify!($column)));
        }
    )+};
}

impl DieselStore {
    /// Every `table.column` of text whose values contain any of `needles` (e.g. seeded original
    /// usernames and emails): the check that scrubbed PII is gone from every table that held
    /// it, history included. Reads whole tables: meant for tests and audits, not hot paths.
    pub async fn text_columns_containing(&self, needles: &[String]) -> Result<Vec<&'static str>> {
        let mut hits: Vec<&'static str> = Vec::new();
        scan!(
            self,
            hits,
            needles,
            retirement_states.state_name,
            retirement_statuses.original_username,
            retirement_statuses.original_email,
            retirement_statuses.original_name,
            retirement_statuses.retired_username,
            retirement_statuses.retired_email,
            retirement_statuses.current_state,
            retirement_statuses.last_state,
            retirement_statuses.lease_owner,
            retirement_leases.owner,
            retirement_leases.state,
            retirement_waits.working_state,
            retirement_waits.service,
            retirement_waits.kind,
            retirement_waits.reference,
            retirement_actions.operator,
            retirement_actions.kind,
            retirement_actions.reason,
            retirement_runs.worker,
            retirement_runs.outcome,
            retirement_log.from_state,
            retirement_log.to_state,
            retirement_log.actor,
            retirement_log.text,
            retirement_requests.retired_username,
            retirement_requests.retired_email,
            assignment_configurations.uuid,
            assignment_configurations.subsidy_expiration,
            content_metadata.content_key,
            content_metadata.enrollment_deadline,
            content_metadata.metadata_json,
            assignments.uuid,
            assignments.configuration_uuid,
            assignments.content_key,
            assignments.state,
            assignments.learner_email,
            assignments.preferred_course_run_key,
            assignment_actions.action_type,
            assignment_actions.error_reason,
            assignment_pii_history.column_name,
            assignment_pii_history.value,
        );
        Ok(hits)
    }
}
