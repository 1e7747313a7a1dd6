//! The expiration emails through Braze, as upstream's `send_assignment_automatically_expired_email`
//! and `send_bnr_automatically_expired_email` tasks send them (`enterprise-access-integration.md`
//! §3, §5.4, §5.5): the LMS's enterprise-customer record for the trigger properties, then Braze's
//! REST API with the API key as a bearer token.

use std::collections::HashMap;
use std::fmt;

use retirement_store::Notice;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::services::EnterpriseServices;
use crate::error::HttpError;

/// Where and how to reach Braze. `Debug` hides the key.
#[derive(Clone)]
pub struct BrazeConfig {
    /// The REST endpoint, e.g. `https://rest.iad-01.braze.com`.
    pub api_url: String,
    /// The REST API key.
    pub api_key: String,
    /// The regular expiration campaign (upstream's
    /// `BRAZE_ASSIGNMENT_AUTOMATIC_CANCELLATION_NOTIFICATION_CAMPAIGN`).
    pub regular_campaign: String,
    /// The Browse & Request campaign (upstream's
    /// `BRAZE_LEARNER_CREDIT_BNR_AUTOMATIC_EXPIRATION_NOTIFICATION_CAMPAIGN`).
    pub bnr_campaign: String,
    /// The learner portal's base URL, for the B&R email's `learner_portal_link`.
    pub learner_portal_url: String,
}

impl fmt::Debug for BrazeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrazeConfig")
            .field("api_url", &self.api_url)
            .field("api_key", &format_args!("<redacted>"))
            .field("regular_campaign", &self.regular_campaign)
            .field("bnr_campaign", &self.bnr_campaign)
            .finish_non_exhaustive()
    }
}

/// Sends expiration emails; the enterprise customers' records are read once per pass.
pub(super) struct Braze {
    config: BrazeConfig,
    customers: Mutex<HashMap<String, Value>>,
}

impl fmt::Debug for Braze {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Braze")
            .field("config", &self.config)
            .finish()
    }
}

const ALIAS_LABEL: &str = "Enterprise";

impl Braze {
    /// A sender with `config`.
    pub(super) fn new(config: BrazeConfig) -> Braze {
        Braze {
            config,
            customers: Mutex::new(HashMap::new()),
        }
    }

    /// Sends the email of `notice`: the B&R campaign when a credit request is linked, else the
    /// regular one. Errors name no learner.
    pub(super) async fn send(
        &self,
        services: &EnterpriseServices,
        notice: &Notice,
    ) -> Result<(), HttpError> {
        let customer = match &notice.enterprise_customer_uuid {
            Some(uuid) => self.customer(services, uuid).await?,
            None => Value::Null,
        };
        let admins: Vec<&str> = customer["admin_users"]
            .as_array()
            .map(|a| a.iter().filter_map(|u| u["email"].as_str()).collect())
            .unwrap_or_default();
        let mut properties = json!({
            "contact_admin_link": format!("mailto:{}", admins.join(",")),
            "organization": customer["name"].as_str().unwrap_or_default(),
            "course_title": notice.content_title.as_deref().unwrap_or_default(),
        });
        let campaign = match &notice.credit_request_uuid {
            Some(_) => {
                properties["learner_portal_link"] = json!(format!(
                    "{}/{}",
                    self.config.learner_portal_url.trim_end_matches('/'),
                    customer["slug"].as_str().unwrap_or_default()
                ));
                &self.config.bnr_campaign
            }
            None => &self.config.regular_campaign,
        };
        let alias = json!({"alias_label": ALIAS_LABEL, "alias_name": notice.learner_email});
        let recipient = match notice.lms_user_id {
            Some(user) => {
                self.post(
                    services,
                    "users/identify",
                    json!({"aliases_to_identify": [{"external_id": user.to_string(), "user_alias": alias}]}),
                )
                .await?;
                json!({
                    "external_user_id": user.to_string(),
                    "attributes": {
                        "user_alias": alias,
                        "email": notice.learner_email,
                        "is_enterprise_learner": true,
                        "_update_existing_only": false,
                    },
                    "send_to_existing_only": false,
                    "trigger_properties": {},
                })
            }
            None => {
                let found = self
                    .post(
                        services,
                        "users/export/ids",
                        json!({"user_aliases": [alias], "fields_to_export": ["external_id"]}),
                    )
                    .await?;
                let known = found["users"].as_array().is_some_and(|u| !u.is_empty());
                if !known {
                    self.post(
                        services,
                        "users/alias/new",
                        json!({"user_aliases": [alias]}),
                    )
                    .await?;
                    self.post(
                        services,
                        "users/track",
                        json!({"attributes": [{"user_alias": alias, "email": notice.learner_email, "is_enterprise_learner": true}]}),
                    )
                    .await?;
                }
                json!({
                    "attributes": {"email": notice.learner_email, "is_enterprise_learner": true},
                    "user_alias": alias,
                })
            }
        };
        self.post(
            services,
            "campaigns/trigger/send",
            json!({
                "campaign_id": campaign,
                "trigger_properties": properties,
                "recipients": [recipient],
                "broadcast": false,
            }),
        )
        .await?;
        Ok(())
    }

    async fn customer(
        &self,
        services: &EnterpriseServices,
        uuid: &str,
    ) -> Result<Value, HttpError> {
        if let Some(found) = self.customers.lock().await.get(uuid) {
            return Ok(found.clone());
        }
        let found = services.enterprise_customer(uuid).await?;
        self.customers
            .lock()
            .await
            .insert(uuid.to_owned(), found.clone());
        Ok(found)
    }

    async fn post(
        &self,
        services: &EnterpriseServices,
        path: &str,
        body: Value,
    ) -> Result<Value, HttpError> {
        let url = format!("{}/{path}", self.config.api_url.trim_end_matches('/'));
        services
            .post_bearer("Braze", &url, &self.config.api_key, &body)
            .await
    }
}
