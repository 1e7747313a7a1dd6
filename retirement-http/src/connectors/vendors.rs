//! The built-in third-party connectors, each following the vendor's current documentation
//! (`../docs/connectors.md` says where that differs from tubular). Each is a [`Connector`]
//! built from a few settings ([`VendorSettings`], the config's `connectors:` key).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use super::{Auth, Check, Connector, Kind, OAuth2, Request, Secret, TokenEncoding};

/// Braze's REST endpoint instances look like `https://rest.iad-01.braze.com`.
fn braze_default() -> String {
    "https://rest.iad-01.braze.com".into()
}
fn amplitude_default() -> String {
    "https://amplitude.com".into()
}
fn hubspot_default() -> String {
    "https://api.hubapi.com".into()
}
fn segment_default() -> String {
    "https://api.segmentapis.com".into()
}
fn requester_default() -> String {
    "learner-retirement".into()
}
fn regulation_default() -> String {
    "SUPPRESS_WITH_DELETE".into()
}

/// The connector `connectors.<service>` of the config describes: `settings` are that
/// vendor's struct below. An error names what is wrong, never a secret's value.
pub fn connector(service: &str, settings: serde_json::Value) -> Result<Connector, String> {
    fn parse<T: serde::de::DeserializeOwned>(
        service: &str,
        settings: serde_json::Value,
    ) -> Result<T, String> {
        serde_json::from_value(settings).map_err(|e| {
            // serde quotes values it cannot use; keep only the field it names.
            let text = e.to_string();
            let reason = text.split(", expected").next().unwrap_or("");
            let reason = if reason.contains("invalid type") || reason.contains("invalid value") {
                "a field has the wrong type (its value is not shown)".to_owned()
            } else {
                reason.to_owned()
            };
            format!("connectors.{service}: {reason}")
        })
    }
    Ok(match service {
        "BRAZE" => parse::<Braze>(service, settings)?.connector(),
        "AMPLITUDE" => parse::<Amplitude>(service, settings)?.connector(),
        "HUBSPOT" => parse::<Hubspot>(service, settings)?.connector(),
        "SEGMENT" => parse::<Segment>(service, settings)?.connector(),
        "SALESFORCE_MARKETING_CLOUD" => parse::<MarketingCloud>(service, settings)?.connector(),
        other => {
            let known: Vec<&str> = BUILT_IN.iter().map(|(s, _, _)| *s).collect();
            return Err(format!(
                "connectors.{other}: no built-in connector has that name (built in: {}; \
                 describe other services under services:)",
                known.join(", ")
            ));
        }
    })
}

/// `BRAZE`: `POST {api_url}/users/delete` with `external_ids` (the LMS user id as a string),
/// bearer API key. Braze answers 201 and ignores unknown ids.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Braze {
    /// The instance's REST endpoint (tubular: `https://rest.{braze_instance}.braze.com`).
    #[serde(default = "braze_default")]
    pub api_url: String,
    /// A REST API key with `users.delete`.
    pub api_key: Secret,
}

/// `AMPLITUDE`: `POST {api_url}/api/2/deletions/users`, HTTP Basic (API key, secret key).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Amplitude {
    /// `https://amplitude.com`, or the EU residency server `https://analytics.eu.amplitude.com`.
    #[serde(default = "amplitude_default")]
    pub api_url: String,
    /// The project's API key.
    pub api_key: String,
    /// The project's secret key.
    pub secret_key: Secret,
    /// Delete the users from every project of the organisation (`delete_from_org`), not only
    /// this key's project.
    #[serde(default)]
    pub delete_from_org: bool,
    /// The `requester` recorded with the job.
    #[serde(default = "requester_default")]
    pub requester: String,
}

/// `HUBSPOT`: the GDPR delete, `POST {api_url}/crm/v3/objects/contacts/gdpr-delete` by email,
/// with a private-app token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hubspot {
    /// `https://api.hubapi.com`.
    #[serde(default = "hubspot_default")]
    pub api_url: String,
    /// The private app's access token (scope `crm.objects.contacts.write`).
    pub access_token: Secret,
}

/// `SEGMENT`: a Public API regulation (`POST {api_url}/regulations`) for the learner's user id
/// and username, bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// `https://api.segmentapis.com` (or `https://eu1.api.segmentapis.com`).
    #[serde(default = "segment_default")]
    pub api_url: String,
    /// A Public API token with the Workspace Owner role.
    pub token: Secret,
    /// `SUPPRESS_WITH_DELETE` (default) or `DELETE_ONLY`.
    #[serde(default = "regulation_default")]
    pub regulation_type: String,
}

/// `SALESFORCE_MARKETING_CLOUD`: OAuth2 at `https://{subdomain}.auth.marketingcloudapis.com`,
/// the contact key found by email, then deleted with its attributes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketingCloud {
    /// The tenant subdomain.
    pub subdomain: String,
    /// The installed package's client id.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: Secret,
    /// The business unit's MID, when the package spans several.
    #[serde(default)]
    pub account_id: Option<String>,
    /// Overrides `https://{subdomain}.auth.marketingcloudapis.com` (tests, proxies).
    #[serde(default)]
    pub auth_url: Option<String>,
    /// Overrides `https://{subdomain}.rest.marketingcloudapis.com`.
    #[serde(default)]
    pub rest_url: Option<String>,
}

/// Every built-in connector's service key and operation, with the vendor documentation it
/// follows: the `--help` list and the docs' table.
pub const BUILT_IN: &[(&str, &str, &str)] = &[
    (
        "BRAZE",
        "delete_user",
        "Braze REST API: POST /users/delete (external_ids)",
    ),
    (
        "AMPLITUDE",
        "delete_user",
        "Amplitude User Privacy API: POST /api/2/deletions/users",
    ),
    (
        "HUBSPOT",
        "delete_user",
        "HubSpot CRM API v3: POST /crm/v3/objects/contacts/gdpr-delete",
    ),
    (
        "SEGMENT",
        "delete_and_suppress_learner",
        "Segment Public API: POST /regulations",
    ),
    (
        "SALESFORCE_MARKETING_CLOUD",
        "delete_contact",
        "Marketing Cloud REST: email search, then contacts/actions/delete?type=keys",
    ),
];

fn trim(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

impl Braze {
    /// The connector.
    pub fn connector(&self) -> Connector {
        Connector {
            service: "BRAZE".into(),
            operation: "delete_user".into(),
            auth: Auth::Bearer {
                token: self.api_key.clone(),
            },
            kind: Kind::Call {
                request: Request {
                    method: "POST".into(),
                    url: format!("{}/users/delete", trim(&self.api_url)),
                    json: Some(json!({ "external_ids": ["{lms_user_id_string}"] })),
                    headers: BTreeMap::new(),
                },
            },
            not_found: Vec::new(),
            check: Check::Status,
            follows: BUILT_IN[0].2,
        }
    }
}

impl Amplitude {
    /// The connector.
    pub fn connector(&self) -> Connector {
        let flag = |b: bool| if b { "True" } else { "False" };
        Connector {
            service: "AMPLITUDE".into(),
            operation: "delete_user".into(),
            auth: Auth::Basic {
                username: self.api_key.clone(),
                password: self.secret_key.clone(),
            },
            kind: Kind::Call {
                request: Request {
                    method: "POST".into(),
                    url: format!("{}/api/2/deletions/users", trim(&self.api_url)),
                    json: Some(json!({
                        "user_ids": ["{lms_user_id_string}"],
                        "requester": self.requester,
                        "ignore_invalid_id": "True",
                        "delete_from_org": flag(self.delete_from_org),
                    })),
                    headers: BTreeMap::new(),
                },
            },
            not_found: Vec::new(),
            check: Check::Status,
            follows: BUILT_IN[1].2,
        }
    }
}

impl Hubspot {
    /// The connector.
    pub fn connector(&self) -> Connector {
        Connector {
            service: "HUBSPOT".into(),
            operation: "delete_user".into(),
            auth: Auth::Bearer {
                token: self.access_token.clone(),
            },
            kind: Kind::Call {
                request: Request {
                    method: "POST".into(),
                    url: format!(
                        "{}/crm/v3/objects/contacts/gdpr-delete",
                        trim(&self.api_url)
                    ),
                    json: Some(json!({ "objectId": "{email}", "idProperty": "email" })),
                    headers: BTreeMap::new(),
                },
            },
            // HubSpot answers 404 for an email it has no contact for (it still blocklists it).
            not_found: vec![404],
            check: Check::Status,
            follows: BUILT_IN[2].2,
        }
    }
}

impl Segment {
    /// The connector.
    pub fn connector(&self) -> Connector {
        Connector {
            service: "SEGMENT".into(),
            operation: "delete_and_suppress_learner".into(),
            auth: Auth::Bearer {
                token: self.token.clone(),
            },
            kind: Kind::Call {
                request: Request {
                    method: "POST".into(),
                    url: format!("{}/regulations", trim(&self.api_url)),
                    json: Some(json!({
                        "regulationType": self.regulation_type,
                        "subjectType": "USER_ID",
                        "subjectIds": ["{lms_user_id_string}", "{username}"],
                    })),
                    headers: BTreeMap::from([(
                        "Content-Type".to_owned(),
                        "application/vnd.segment.v1+json".to_owned(),
                    )]),
                },
            },
            not_found: Vec::new(),
            check: Check::Status,
            follows: BUILT_IN[3].2,
        }
    }
}

impl MarketingCloud {
    /// The connector.
    pub fn connector(&self) -> Connector {
        let auth = self
            .auth_url
            .clone()
            .unwrap_or_else(|| format!("https://{}.auth.marketingcloudapis.com", self.subdomain));
        let rest = self
            .rest_url
            .clone()
            .unwrap_or_else(|| format!("https://{}.rest.marketingcloudapis.com", self.subdomain));
        let mut extra = BTreeMap::new();
        if let Some(account) = &self.account_id {
            extra.insert("account_id".to_owned(), account.clone());
        }
        Connector {
            service: "SALESFORCE_MARKETING_CLOUD".into(),
            operation: "delete_contact".into(),
            auth: Auth::Oauth2(OAuth2 {
                token_url: format!("{}/v2/token", trim(&auth)),
                client_id: self.client_id.clone(),
                client_secret: self.client_secret.clone(),
                audience: None,
                scope: None,
                extra,
                encoding: TokenEncoding::Json,
            }),
            kind: Kind::LookupThenDelete {
                lookup: Request {
                    method: "POST".into(),
                    url: format!("{}/contacts/v1/addresses/email/search", trim(&rest)),
                    json: Some(json!({ "ChannelAddressList": ["{email}"], "MaximumCount": 1 })),
                    headers: BTreeMap::new(),
                },
                found_at: "/channelAddressResponseEntities/0/contactKeyDetails/0/contactKey".into(),
                delete: Request {
                    method: "POST".into(),
                    url: format!(
                        "{}/contacts/v1/contacts/actions/delete?type=keys",
                        trim(&rest)
                    ),
                    json: Some(json!({
                        "values": ["{found}"],
                        "DeleteOperationType": "ContactAndAttributes",
                    })),
                    headers: BTreeMap::new(),
                },
            },
            not_found: Vec::new(),
            check: Check::Status,
            follows: BUILT_IN[4].2,
        }
    }
}
