//! The LMS's partner-reporting queue (issue 17): the rows `LMS retirement_partner_queue`
//! stages — each learner's original username, email and name with the orgs they were
//! enrolled in — fetched for a partner report and removed once delivered.
//!
//! The LMS answers the queue once: `POST retirement_partner_report/` marks what it returns as
//! being processed and never returns it again, so a caller must keep the rows until it has
//! delivered them and called [`cleanup`]. The LMS's refusal of a cleanup quotes the
//! usernames; it is never passed on.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::client::ServiceClients;
use crate::error::HttpError;

mod prune;
mod report;
mod spool;

pub use prune::{PruneOutcome, parse_report_name};
pub use report::{
    Contacts, DEFAULT_RETENTION_DAYS, DEFAULT_WARN_DAYS, Delivered, PartnerReporter,
    PartnerSettings, ReportOutcome, announcement, report_name,
};
pub use spool::{Spool, SpoolState, SpooledRow};

const REPORT: &str = "api/user/v1/accounts/retirement_partner_report/";
const CLEANUP: &str = "api/user/v1/accounts/retirement_partner_report_cleanup/";

/// An org's own CSV headings (upstream's `orgs_config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgConfig {
    /// The org.
    pub org: String,
    /// Its headings, e.g. `["student_id", "original_email", "original_name",
    /// "deletion_completed"]`.
    pub field_headings: Vec<String>,
}

/// One queued learner. `Debug` masks the originals.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerRow {
    /// The LMS user id.
    pub user_id: i64,
    /// An external id some orgs report by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub student_id: Option<String>,
    /// The original username.
    pub original_username: String,
    /// The original email.
    pub original_email: String,
    /// The original full name.
    pub original_name: String,
    /// The orgs the learner was enrolled in.
    pub orgs: Vec<String>,
    /// Orgs with their own headings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orgs_config: Vec<OrgConfig>,
    /// When the row was queued (the CSV's `deletion_completed`).
    pub created: String,
}

impl fmt::Debug for PartnerRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartnerRow")
            .field("user_id", &self.user_id)
            .field("orgs", &self.orgs)
            .finish_non_exhaustive()
    }
}

fn refused(what: &str, status: u16) -> HttpError {
    HttpError::Service {
        service: "LMS".into(),
        message: format!("{what} answered {status}"),
    }
}

/// `POST retirement_partner_report/`: the rows not yet being processed (now marked).
pub async fn fetch(clients: &ServiceClients) -> Result<Vec<PartnerRow>, HttpError> {
    let (status, body) = clients
        .lms_call(reqwest::Method::POST, REPORT, &[], None)
        .await?;
    if !(200..300).contains(&status) {
        return Err(refused("retirement_partner_report", status));
    }
    serde_json::from_str(&body).map_err(|e| HttpError::Service {
        service: "LMS".into(),
        message: format!(
            "retirement_partner_report answered rows that do not parse (line {}, column {})",
            e.line(),
            e.column()
        ),
    })
}

/// `POST retirement_partner_report_cleanup/` for exactly these original usernames (a no-op
/// for none).
pub async fn cleanup(clients: &ServiceClients, usernames: &[String]) -> Result<(), HttpError> {
    if usernames.is_empty() {
        return Ok(());
    }
    let status = cleanup_status(clients, usernames).await?;
    if !(200..300).contains(&status) {
        return Err(refused(
            &format!(
                "retirement_partner_report_cleanup of {} row(s)",
                usernames.len()
            ),
            status,
        ));
    }
    Ok(())
}

/// The cleanup call's status (its body, which quotes usernames, is dropped).
async fn cleanup_status(clients: &ServiceClients, usernames: &[String]) -> Result<u16, HttpError> {
    let body: Vec<serde_json::Value> = usernames
        .iter()
        .map(|u| serde_json::json!({ "original_username": u }))
        .collect();
    let (status, _) = clients
        .lms_call(
            reqwest::Method::POST,
            CLEANUP,
            &[],
            Some(serde_json::Value::Array(body)),
        )
        .await?;
    Ok(status)
}

/// Upstream's default CSV headings.
pub const DEFAULT_HEADINGS: [&str; 5] = [
    "user_id",
    "original_username",
    "original_email",
    "original_name",
    "deletion_completed",
];

/// One partner's report: its headings and rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerReport {
    /// The headings: the first org (by the rows' order) with `orgs_config` headings fixes
    /// them, as upstream; otherwise [`DEFAULT_HEADINGS`].
    pub headings: Vec<String>,
    /// The learners, once each.
    pub rows: Vec<PartnerRow>,
}

/// Groups rows by partner through the org → partners mapping. Orgs the mapping does not
/// name are an error listing them (org keys, no learner data), before anything is written.
pub fn group_by_partner(
    rows: &[PartnerRow],
    mapping: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<std::collections::BTreeMap<String, PartnerReport>, Vec<String>> {
    let mut unknown: Vec<String> = Vec::new();
    let mut reports: std::collections::BTreeMap<String, PartnerReport> = Default::default();
    for row in rows {
        let orgs = row
            .orgs
            .iter()
            .chain(row.orgs_config.iter().map(|c| &c.org));
        for org in orgs {
            let Some(partners) = mapping.get(org) else {
                if !unknown.contains(org) {
                    unknown.push(org.clone());
                }
                continue;
            };
            let headings = row
                .orgs_config
                .iter()
                .find(|c| &c.org == org)
                .map(|c| c.field_headings.clone());
            for partner in partners {
                let report = reports
                    .entry(partner.clone())
                    .or_insert_with(|| PartnerReport {
                        headings: headings
                            .clone()
                            .unwrap_or_else(|| DEFAULT_HEADINGS.map(str::to_owned).to_vec()),
                        rows: Vec::new(),
                    });
                if !report.rows.iter().any(|r| r.user_id == row.user_id) {
                    report.rows.push(row.clone());
                }
            }
        }
    }
    if unknown.is_empty() {
        Ok(reports)
    } else {
        unknown.sort();
        Err(unknown)
    }
}

impl PartnerReport {
    /// The CSV: a header row, then one row per learner (`deletion_completed` is the row's
    /// `created`; a heading the row has no value for is empty).
    pub fn csv(&self) -> String {
        let mut out = csv::Writer::from_writer(Vec::new());
        let _ = out.write_record(&self.headings);
        for row in &self.rows {
            let cells: Vec<String> = self
                .headings
                .iter()
                .map(|h| match h.as_str() {
                    "user_id" => row.user_id.to_string(),
                    "student_id" => row.student_id.clone().unwrap_or_default(),
                    "original_username" => row.original_username.clone(),
                    "original_email" => row.original_email.clone(),
                    "original_name" => row.original_name.clone(),
                    "deletion_completed" => row.created.clone(),
                    _ => String::new(),
                })
                .collect();
            let _ = out.write_record(&cells);
        }
        String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}
