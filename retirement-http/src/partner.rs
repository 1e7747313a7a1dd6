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
