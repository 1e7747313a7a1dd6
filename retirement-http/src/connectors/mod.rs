//! Services as data: a [`Connector`] says how one `SERVICE operation` of the pipeline erases a
//! learner — its auth, its request(s) with placeholders for the learner, and what "not found"
//! means — so a vendor is data plus this module's one adapter (`perform.rs`), not new code.
//!
//! - Auth kinds ([`Auth`]): the LMS JWT every Open edX service accepts, a bearer token, HTTP
//!   Basic, or the vendor's own OAuth2 client credentials (its token URL, audience, extra
//!   fields; the token is cached and refreshed like the LMS's).
//! - Placeholders in URLs and bodies ([`Placeholder`]): the original email, the LMS user id,
//!   the original and retired username, the retired email, and `{found}`, what a lookup found.
//!   A URL's placeholders are percent-encoded; a JSON string that is exactly `{lms_user_id}`
//!   becomes a number.
//! - Kinds ([`Kind`]): one call, or a lookup then a delete (an email-keyed vendor). A status
//!   listed in `not_found` means "nothing to delete": the stage is done.
//! - Secrets ([`Secret`]) come from the config or the environment and never show in `Debug`,
//!   errors or logs; whatever a vendor answers is written to the learner's log with the
//!   learner's original username and email masked ([`crate::LearnerRef::redact`]).
//!
//! The built-in vendors are in [`vendors`]; operators add services in the config
//! ([`crate::GenericService`], which becomes a [`Connector`]).

mod perform;
pub mod vendors;

pub(crate) use perform::LiveConnector;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalog::LearnerRef;

/// A secret value (an API key, a client secret, a token). `Debug` and `Display` never show it.
///
/// In YAML it is a string, or `{env: NAME}` to read the variable `NAME` when the config is
/// loaded (an unset variable is an error naming the variable, never a value).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Value(String),
            Env { env: String },
        }
        match Form::deserialize(deserializer) {
            Ok(Form::Value(value)) => Ok(Secret(value)),
            Ok(Form::Env { env }) => match std::env::var(&env) {
                Ok(value) if !value.is_empty() => Ok(Secret(value)),
                _ => Err(serde::de::Error::custom(format!(
                    "the environment variable {env} is not set"
                ))),
            },
            // Never echo the value: it may be a secret of the wrong shape.
            Err(_) => Err(serde::de::Error::custom(
                "a secret must be a string or {env: NAME} (the value is not shown)",
            )),
        }
    }
}

/// How a connector authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: JWT <token>` from the LMS (the Open edX services).
    LmsJwt,
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token or API key.
        token: Secret,
    },
    /// HTTP Basic.
    Basic {
        /// The user name (or API key).
        username: String,
        /// The password (or secret key).
        password: Secret,
    },
    /// The vendor's own OAuth2 client credentials; `Authorization: Bearer <token>`.
    Oauth2(OAuth2),
    /// No `Authorization` header (the key is in the URL or a header template).
    None,
}

/// A vendor's OAuth2 client-credentials grant.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    /// The token endpoint.
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// The `audience` parameter, when the vendor asks for one.
    #[serde(default)]
    pub audience: Option<String>,
    /// The `scope` parameter.
    #[serde(default)]
    pub scope: Option<String>,
    /// Other fields of the token request (e.g. Marketing Cloud's `account_id`).
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
    /// How the token request's fields are sent (default `form`).
    #[serde(default)]
    pub encoding: TokenEncoding,
}

/// The body encoding of a token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEncoding {
    /// `application/x-www-form-urlencoded` (RFC 6749).
    #[default]
    Form,
    /// A JSON object (Salesforce Marketing Cloud).
    Json,
}

/// One request of a connector. `url` and `body` hold placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The method (default `POST`).
    #[serde(default = "post")]
    pub method: String,
    /// The whole URL, with placeholders (percent-encoded when filled).
    pub url: String,
    /// A JSON body template.
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    /// Extra headers (values may hold placeholders).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn post() -> String {
    "POST".into()
}

/// What a connector does for one learner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// One request.
    Call {
        /// The request.
        request: Request,
    },
    /// A lookup, then a delete of what it found (`{found}` in the delete request).
    LookupThenDelete {
        /// The lookup.
        lookup: Request,
        /// A JSON pointer into the lookup's answer (RFC 6901, e.g. `/results/0/id`); a
        /// missing, null or empty value means the vendor holds nothing for the learner.
        found_at: String,
        /// The delete.
        delete: Request,
    },
    /// An asynchronous job: `start` answers with a job id, `poll` (`{job_id}` in it) with
    /// its status, polled every `poll_every` until it is one of `done` or `failed`.
    Job {
        /// Starts the job.
        start: Request,
        /// A JSON pointer to the job id in `start`'s answer.
        job_id_at: String,
        /// Reads the job's status.
        poll: Request,
        /// A JSON pointer to the status in `poll`'s answer.
        status_at: String,
        /// Statuses meaning the erasure is done.
        done: Vec<String>,
        /// Statuses meaning it failed for good (anything else: still running).
        failed: Vec<String>,
        /// Between polls.
        poll_every: std::time::Duration,
    },
    /// A manual step: an optional lookup (nothing found: nothing to do), then `ask` creates
    /// the person's task (`{found}` in it); the learner waits until an operator marks the
    /// stage done.
    Manual {
        /// The lookup and where its answer names what was found.
        lookup: Option<(Request, String)>,
        /// Asks the person (creates a task).
        ask: Request,
        /// A JSON pointer to the task's id in `ask`'s answer (shown to operators).
        reference_at: String,
    },
}

/// Several learners in one request: the array at `list_at` of the request's JSON holds each
/// learner's items (the template array's elements, filled per learner), at most
/// `max_items` of them; a batch is sent when full, or `wait` after its first learner came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// A JSON pointer to the array, e.g. `/external_ids`.
    pub list_at: String,
    /// The vendor's limit of items per request.
    pub max_items: usize,
    /// How long the first learner of a batch waits for others.
    pub wait: std::time::Duration,
}

/// A 2xx answer's meaning beyond its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Check {
    /// Any 2xx is success.
    #[default]
    Status,
    /// A username replacement (`replace_usernames`): the answer's `failed_replacements` must
    /// not hold the learner.
    ReplacementsSucceeded,
}

/// One `SERVICE operation` of a pipeline, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connector {
    /// The pipeline's service key, e.g. `BRAZE`.
    pub service: String,
    /// The pipeline's operation, e.g. `delete_user`.
    pub operation: String,
    /// How it authenticates.
    pub auth: Auth,
    /// What it sends.
    pub kind: Kind,
    /// Statuses that mean "the vendor holds nothing for this learner": the stage is done.
    pub not_found: Vec<u16>,
    /// What a 2xx must also say.
    pub check: Check,
    /// Sends several learners per request (the call, or a job's start).
    pub batch: Option<Batch>,
    /// The vendor documentation this connector follows, for the docs and `--help`.
    pub follows: &'static str,
}

impl Connector {
    /// The kind of pipeline stage this connector's operation is.
    pub fn stage_kind(&self) -> retirement_core::StageKind {
        match &self.kind {
            Kind::Job { poll_every, .. } => retirement_core::StageKind::Job {
                poll_every: *poll_every,
            },
            Kind::Manual { .. } => retirement_core::StageKind::Manual,
            _ => retirement_core::StageKind::Call,
        }
    }
}

/// A placeholder of [`Request`] templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `{email}`: the original email address.
    Email,
    /// `{lms_user_id}`: the LMS user id (a number when it is a whole JSON string).
    LmsUserId,
    /// `{lms_user_id_string}`: the LMS user id, always a string.
    LmsUserIdString,
    /// `{username}`: the original username.
    Username,
    /// `{retired_username}`.
    RetiredUsername,
    /// `{retired_email}`.
    RetiredEmail,
    /// `{found}`: what the lookup found (lookup-then-delete only).
    Found,
    /// `{job_id}`: the job being polled.
    JobId,
    /// `{email_soql}`: the original email as a SOQL string literal's content (`'` and `\`
    /// escaped).
    EmailSoql,
}

impl Placeholder {
    /// Every placeholder with its name in templates.
    pub const ALL: &[(Placeholder, &'static str)] = &[
        (Placeholder::Email, "{email}"),
        (Placeholder::LmsUserIdString, "{lms_user_id_string}"),
        (Placeholder::LmsUserId, "{lms_user_id}"),
        (Placeholder::Username, "{username}"),
        (Placeholder::RetiredUsername, "{retired_username}"),
        (Placeholder::RetiredEmail, "{retired_email}"),
        (Placeholder::Found, "{found}"),
        (Placeholder::JobId, "{job_id}"),
        (Placeholder::EmailSoql, "{email_soql}"),
    ];
}

/// The values placeholders are filled with.
pub(crate) struct Values<'a> {
    pub(crate) learner: &'a LearnerRef<'a>,
    pub(crate) found: Option<&'a str>,
    pub(crate) job: Option<&'a str>,
}

impl Values<'_> {
    fn value(&self, placeholder: Placeholder) -> String {
        let l = self.learner;
        match placeholder {
            Placeholder::Email => l.original_email.to_owned(),
            Placeholder::LmsUserId | Placeholder::LmsUserIdString => {
                l.lms_user_id.map(|id| id.to_string()).unwrap_or_default()
            }
            Placeholder::Username => l.original_username.to_owned(),
            Placeholder::RetiredUsername => l.retired_username.to_owned(),
            Placeholder::RetiredEmail => l.retired_email.to_owned(),
            Placeholder::Found => self.found.unwrap_or_default().to_owned(),
            Placeholder::JobId => self.job.unwrap_or_default().to_owned(),
            Placeholder::EmailSoql => l.original_email.replace('\\', "\\\\").replace('\'', "\\'"),
        }
    }

    fn fill(&self, text: &str, encode: bool) -> String {
        let mut out = text.to_owned();
        for (placeholder, name) in Placeholder::ALL {
            if out.contains(name) {
                let value = self.value(*placeholder);
                let value = if encode {
                    encode_component(&value)
                } else {
                    value
                };
                out = out.replace(name, &value);
            }
        }
        out
    }

    /// A URL template filled, each value percent-encoded.
    pub(crate) fn url(&self, template: &str) -> String {
        self.fill(template, true)
    }

    /// A header value filled.
    pub(crate) fn text(&self, template: &str) -> String {
        self.fill(template, false)
    }

    /// A JSON template filled.
    pub(crate) fn json(&self, template: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match template {
            Value::String(s) if s == "{lms_user_id}" => self
                .learner
                .lms_user_id
                .map(Value::from)
                .unwrap_or(Value::Null),
            Value::String(s) => Value::String(self.fill(s, false)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.json(v)).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), self.json(v))).collect())
            }
            other => other.clone(),
        }
    }
}

/// Which placeholders a template uses that a learner may not have: a connector keyed by the
/// LMS user id cannot serve a learner without one.
pub(crate) fn needs_user_id(request: &Request) -> bool {
    let json = request
        .json
        .as_ref()
        .map(|j| j.to_string())
        .unwrap_or_default();
    [request.url.as_str(), json.as_str()]
        .iter()
        .any(|t| t.contains("{lms_user_id"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn encode_component(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The value at `pointer` of `body`, as text: a string, or a number's digits. Null, empty
/// and missing are `None`.
pub(crate) fn found_in(body: &str, pointer: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    match json.pointer(pointer)? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
