//! The built-in third-party connectors, each following the vendor's current documentation
//! (`../docs/connectors.md` says where that differs from tubular). Each is a [`Connector`]
//! built from a few settings (read by [`connector`] from the config's `connectors:` key).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use std::time::Duration;

use super::{Auth, Batch, Check, Connector, Kind, OAuth2, Request, Secret, TokenEncoding};

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
fn batch_wait_default() -> f64 {
    5.0
}
fn poll_default() -> f64 {
    3600.0
}
fn salesforce_version_default() -> String {
    "v60.0".into()
}

/// Braze: at most 50 ids per `users/delete` request.
pub const BRAZE_MAX_IDS: usize = 50;
/// Segment: at most 5,000 subject ids per regulation.
pub const SEGMENT_MAX_IDS: usize = 5000;
/// Amplitude: at most 100 user ids per deletion request.
pub const AMPLITUDE_MAX_IDS: usize = 100;

fn seconds(value: f64, default: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::from_secs_f64(default))
}

impl Braze {
    fn batch_wait(&self) -> Duration {
        seconds(self.batch_wait_seconds, batch_wait_default())
    }
}
impl Amplitude {
    fn batch_wait(&self) -> Duration {
        seconds(self.batch_wait_seconds, batch_wait_default())
    }
    fn poll_every(&self) -> Duration {
        seconds(self.poll_every_seconds, poll_default())
    }
}
impl Segment {
    fn batch_wait(&self) -> Duration {
        seconds(self.batch_wait_seconds, batch_wait_default())
    }
    fn poll_every(&self) -> Duration {
        seconds(self.poll_every_seconds, poll_default())
    }
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
        "SALESFORCE" => parse::<Salesforce>(service, settings)?.connector(),
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Braze {
    /// The instance's REST endpoint (tubular: `https://rest.{braze_instance}.braze.com`).
    #[serde(default = "braze_default")]
    pub api_url: String,
    /// A REST API key with `users.delete`.
    pub api_key: Secret,
    /// How long the first learner of a batch waits for others, in seconds (default 5).
    #[serde(default = "batch_wait_default")]
    pub batch_wait_seconds: f64,
}

/// `AMPLITUDE`: `POST {api_url}/api/2/deletions/users`, HTTP Basic (API key, secret key).
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// How long the first learner of a batch waits for others, in seconds (default 5).
    #[serde(default = "batch_wait_default")]
    pub batch_wait_seconds: f64,
    /// Between polls of a job, in seconds (default 3600).
    #[serde(default = "poll_default")]
    pub poll_every_seconds: f64,
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
/// (and, with `include_username`, the original username), bearer token.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// Also name the learner's original username as a userId (tubular does; only for sites
    /// whose tracking identified users by username: the LMS identifies them by user id).
    #[serde(default)]
    pub include_username: bool,
    /// How long the first learner of a batch waits for others, in seconds (default 5).
    #[serde(default = "batch_wait_default")]
    pub batch_wait_seconds: f64,
    /// Between polls of a job, in seconds (default 3600).
    #[serde(default = "poll_default")]
    pub poll_every_seconds: f64,
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
    (
        "SALESFORCE",
        "retire_learner",
        "Salesforce REST API: SOQL query for the Lead, then a Task for a person (manual)",
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
            batch: Some(Batch {
                list_at: "/external_ids".into(),
                max_items: BRAZE_MAX_IDS,
                wait: self.batch_wait(),
            }),
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
            kind: Kind::Job {
                start: Request {
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
                // The answer lists the day the deletion is scheduled for: the job's id.
                job_id_at: "/0/day".into(),
                poll: Request {
                    method: "GET".into(),
                    url: format!(
                        "{}/api/2/deletions/users?start_day={{job_id}}&end_day={{job_id}}",
                        trim(&self.api_url)
                    ),
                    json: None,
                    headers: BTreeMap::new(),
                },
                status_at: "/0/status".into(),
                done: vec!["done".into()],
                failed: Vec::new(),
                poll_every: self.poll_every(),
            },
            not_found: Vec::new(),
            check: Check::Status,
            batch: Some(Batch {
                list_at: "/user_ids".into(),
                max_items: AMPLITUDE_MAX_IDS,
                wait: self.batch_wait(),
            }),
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
            batch: None,
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
            kind: Kind::Job {
                start: Request {
                    method: "POST".into(),
                    url: format!("{}/regulations", trim(&self.api_url)),
                    json: Some(json!({
                        "regulationType": self.regulation_type,
                        "subjectType": "USER_ID",
                        "subjectIds": if self.include_username {
                            json!(["{lms_user_id_string}", "{username}"])
                        } else {
                            json!(["{lms_user_id_string}"])
                        },
                    })),
                    headers: BTreeMap::new(),
                },
                job_id_at: "/data/regulateId".into(),
                poll: Request {
                    method: "GET".into(),
                    url: format!("{}/regulations/{{job_id}}", trim(&self.api_url)),
                    json: None,
                    headers: BTreeMap::new(),
                },
                status_at: "/data/regulation/overallStatus".into(),
                done: vec!["FINISHED".into()],
                failed: ["FAILED", "INVALID", "NOT_SUPPORTED", "PARTIAL_SUCCESS"]
                    .into_iter()
                    .map(String::from)
                    .collect(),
                poll_every: self.poll_every(),
            },
            not_found: Vec::new(),
            check: Check::Status,
            batch: Some(Batch {
                list_at: "/subjectIds".into(),
                max_items: SEGMENT_MAX_IDS,
                wait: self.batch_wait(),
            }),
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
            batch: None,
            follows: BUILT_IN[4].2,
        }
    }
}

/// `SALESFORCE`: the Lead with the learner's email, found by SOQL; if there is one, a Task
/// assigned to `assignee_id` asks a person to erase it, and the learner waits until an
/// operator marks the stage done (`retire done`). OAuth2 client credentials of a connected
/// app (tubular logs in with a username, password and security token).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Salesforce {
    /// The org's My Domain URL, e.g. `https://example.my.salesforce.com`.
    pub instance_url: String,
    /// The connected app's consumer key.
    pub client_id: String,
    /// Its consumer secret.
    pub client_secret: Secret,
    /// The user id the Task is assigned to (tubular's `salesforce_assignee`, as an id).
    pub assignee_id: String,
    /// The REST API version (default `v60.0`).
    #[serde(default = "salesforce_version_default")]
    pub api_version: String,
}

impl Salesforce {
    /// The connector.
    pub fn connector(&self) -> Connector {
        let base = trim(&self.instance_url);
        let data = format!("{base}/services/data/{}", self.api_version);
        Connector {
            service: "SALESFORCE".into(),
            operation: "retire_learner".into(),
            auth: Auth::Oauth2(OAuth2 {
                token_url: format!("{base}/services/oauth2/token"),
                client_id: self.client_id.clone(),
                client_secret: self.client_secret.clone(),
                audience: None,
                scope: None,
                extra: BTreeMap::new(),
                encoding: TokenEncoding::Form,
            }),
            kind: Kind::Manual {
                lookup: Some((
                    Request {
                        method: "GET".into(),
                        url: format!(
                            "{data}/query?q=SELECT+Id+FROM+Lead+WHERE+Email%3D%27{{email_soql}}%27"
                        ),
                        json: None,
                        headers: BTreeMap::new(),
                    },
                    "/records/0/Id".into(),
                )),
                // The Task names the Lead by id and the learner by retired username: the
                // person needs nothing else, and Salesforce keeps Tasks after the Lead goes.
                ask: Request {
                    method: "POST".into(),
                    url: format!("{data}/sobjects/Task"),
                    json: Some(json!({
                        "Subject": "GDPR erasure request",
                        "Description": "Right-to-erasure request for retired learner {retired_username}: erase this Lead's personal data, then tell the retirement operator, who marks the Salesforce stage done (retire done).",
                        "WhoId": "{found}",
                        "OwnerId": self.assignee_id,
                    })),
                    headers: BTreeMap::new(),
                },
                reference_at: "/id".into(),
            },
            not_found: Vec::new(),
            check: Check::Status,
            batch: None,
            follows: BUILT_IN[5].2,
        }
    }
}
