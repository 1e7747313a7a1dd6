//! The retirement operations of the edX services, named as tubular's `retirement_pipeline`
//! names them (`LMS retirement_retire_forum`, `ECOMMERCE retire_learner`, …): method, path and
//! body, exactly as upstream's clients send them (reference §3, §5.1).

use serde::Serialize;

use crate::connectors::{Auth, Check, Connector, Kind, Request};

/// What a request body carries about the learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Body {
    /// `{"username": <original username>}`.
    Username,
    /// `{"lms_user_id": <user id>}` (demographics).
    LmsUserId,
    /// `{"lms_user_id": <user id>, "original_username": <original username>}` (license manager).
    LmsUserIdAndOriginalUsername,
    /// No body (proctoring; the user id is in the path).
    Empty,
    /// `{"username_mappings": [{<original username>: <retired username>}]}` (credentials'
    /// `replace_usernames`).
    UsernameMapping,
}

/// One operation of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operation {
    /// The pipeline's service key, e.g. `LMS`.
    pub service: &'static str,
    /// The pipeline's method name, e.g. `retirement_retire_forum`.
    pub name: &'static str,
    /// The config key of the service's base URL (`base_urls.<key>`).
    pub base_url_key: &'static str,
    /// `POST` or `PUT`.
    pub method: &'static str,
    /// The path below the base URL, with a trailing slash; `{user_id}` is replaced.
    pub path: &'static str,
    /// The body.
    pub body: Body,
    /// What a 2xx answer must also say.
    pub check: Check,
    /// Why the operation is legacy, when it is: `retire` warns at start-up and `--help`
    /// marks it.
    pub legacy: Option<&'static str>,
}

const fn op(
    service: &'static str,
    name: &'static str,
    base_url_key: &'static str,
    method: &'static str,
    path: &'static str,
    body: Body,
) -> Operation {
    Operation {
        service,
        name,
        base_url_key,
        method,
        path,
        body,
        check: Check::Status,
        legacy: None,
    }
}

impl Operation {
    const fn legacy(self, why: &'static str) -> Operation {
        Operation {
            legacy: Some(why),
            ..self
        }
    }

    const fn checked(self, check: Check) -> Operation {
        Operation { check, ..self }
    }
}

/// Every built-in operation.
pub const OPERATIONS: &[Operation] = &[
    op(
        "LMS",
        "retirement_retire_forum",
        "lms",
        "POST",
        "api/discussion/v1/accounts/retire_forum/",
        Body::Username,
    ),
    op(
        "LMS",
        "retirement_retire_mailings",
        "lms",
        "POST",
        "api/user/v1/accounts/retire_mailings/",
        Body::Username,
    ),
    op(
        "LMS",
        "retirement_unenroll",
        "lms",
        "POST",
        "api/enrollment/v1/unenroll/",
        Body::Username,
    ),
    op(
        "LMS",
        "retirement_retire_notes",
        "lms",
        "POST",
        "api/edxnotes/v1/retire_user/",
        Body::Username,
    ),
    op(
        "LMS",
        "retirement_lms_retire_misc",
        "lms",
        "POST",
        "api/user/v1/accounts/retire_misc/",
        Body::Username,
    ),
    op(
        "LMS",
        "retirement_lms_retire",
        "lms",
        "POST",
        "api/user/v1/accounts/retire/",
        Body::Username,
    ),
    op(
        "LMS",
        "retirement_partner_queue",
        "lms",
        "PUT",
        "api/user/v1/accounts/retirement_partner_report/",
        Body::Username,
    ),
    op(
        "LMS",
        "retirement_retire_proctoring_data",
        "lms",
        "POST",
        "api/edx_proctoring/v1/retire_user/{user_id}/",
        Body::Empty,
    ),
    op(
        "LMS",
        "retirement_retire_proctoring_backend_data",
        "lms",
        "POST",
        "api/edx_proctoring/v1/retire_backend_user/{user_id}/",
        Body::Empty,
    ),
    op(
        "ECOMMERCE",
        "retire_learner",
        "ecommerce",
        "POST",
        "api/v2/user/retire/",
        Body::Username,
    )
    .legacy("ecommerce was archived upstream in 2024; keep this stage only while the service runs"),
    // tubular posts to `user/retire/`, a route openedx/credentials never had: every learner
    // ended ERRORED. The edX fork (July 2026) replaces the username instead, which since
    // August 2026 also blanks the learner's names in credentials.
    op(
        "CREDENTIALS",
        "retire_learner",
        "credentials",
        "POST",
        "api/v2/replace_usernames/",
        Body::UsernameMapping,
    )
    .checked(Check::ReplacementsSucceeded),
    op(
        "DEMOGRAPHICS",
        "retire_learner",
        "demographics",
        "POST",
        "demographics/api/v1/retire_demographics/",
        Body::LmsUserId,
    ),
    op(
        "LICENSE_MANAGER",
        "retire_learner",
        "license_manager",
        "POST",
        "api/v1/retire_user/",
        Body::LmsUserIdAndOriginalUsername,
    ),
];

/// The built-in operation `service name`, if there is one.
pub fn find(service: &str, name: &str) -> Option<&'static Operation> {
    OPERATIONS
        .iter()
        .find(|o| o.service == service && o.name == name)
}

/// A service configured by the operator instead of code. The short form is upstream's generic
/// service: `POST {base_url}/{path}/` with the LMS JWT and a JSON body template. The long form
/// is any [`Connector`]: `auth` (a bearer token, HTTP Basic, the vendor's OAuth2), a whole
/// `request` URL, a `lookup` whose answer names what to delete, and the statuses that mean
/// "not found, nothing to delete". Placeholders are [`crate::connectors::Placeholder`]'s:
/// `{email}`, `{lms_user_id}`, `{lms_user_id_string}`, `{username}`, `{retired_username}`,
/// `{retired_email}`, `{found}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericService {
    /// The pipeline's service key.
    pub service: String,
    /// The pipeline's method name.
    pub operation: String,
    /// The base URL (short form).
    #[serde(default)]
    pub base_url: String,
    /// The path below it (short form; upstream's join adds the trailing slash).
    #[serde(default)]
    pub path: String,
    /// The HTTP method (default `POST`).
    #[serde(default = "post")]
    pub method: String,
    /// The body template (short form).
    #[serde(default)]
    pub body_template: serde_json::Value,
    /// How it authenticates (default: the LMS JWT).
    #[serde(default)]
    pub auth: Option<Auth>,
    /// The request, instead of `base_url` + `path` + `body_template`.
    #[serde(default)]
    pub request: Option<Request>,
    /// A lookup before the request; the request then deletes `{found}`.
    #[serde(default)]
    pub lookup: Option<Lookup>,
    /// Statuses that mean "nothing to delete" (e.g. `[404]`).
    #[serde(default)]
    pub not_found: Vec<u16>,
}

/// The lookup of a configured lookup-then-delete service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    /// The lookup request.
    #[serde(flatten)]
    pub request: Request,
    /// A JSON pointer into its answer to the value `{found}` stands for.
    pub found_at: String,
}

fn post() -> String {
    "POST".into()
}

impl GenericService {
    /// The connector this configuration describes; an error says which field is wrong.
    pub fn connector(&self) -> Result<Connector, String> {
        let name = format!("services: {} {}", self.service, self.operation);
        let request = match &self.request {
            Some(request) => {
                if !self.base_url.is_empty() || !self.path.is_empty() {
                    return Err(format!(
                        "{name}: give either request or base_url and path, not both"
                    ));
                }
                request.clone()
            }
            None => {
                if self.base_url.is_empty() {
                    return Err(format!("{name}: base_url (or request) is required"));
                }
                Request {
                    method: self.method.clone(),
                    url: join(&self.base_url, &self.path),
                    json: (!self.body_template.is_null()).then(|| self.body_template.clone()),
                    headers: Default::default(),
                }
            }
        };
        for url in std::iter::once(&request.url).chain(self.lookup.iter().map(|l| &l.request.url)) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "{name}: the URL must start with http:// or https://"
                ));
            }
        }
        if let Some(Auth::Oauth2(oauth)) = &self.auth
            && !(oauth.token_url.starts_with("http://") || oauth.token_url.starts_with("https://"))
        {
            return Err(format!("{name}: auth.token_url must be an http(s) URL"));
        }
        let kind = match &self.lookup {
            None => Kind::Call { request },
            Some(lookup) => {
                if !lookup.found_at.starts_with('/') {
                    return Err(format!(
                        "{name}: lookup.found_at must be a JSON pointer such as /results/0/id"
                    ));
                }
                Kind::LookupThenDelete {
                    lookup: lookup.request.clone(),
                    found_at: lookup.found_at.clone(),
                    delete: request,
                }
            }
        };
        Ok(Connector {
            service: self.service.clone(),
            operation: self.operation.clone(),
            auth: self.auth.clone().unwrap_or(Auth::LmsJwt),
            kind,
            not_found: self.not_found.clone(),
            check: Check::Status,
            batch: None,
            follows: "the operator's configuration",
        })
    }
}

/// What a body template or path needs to know about the learner.
#[derive(Clone, PartialEq, Eq)]
pub struct LearnerRef<'a> {
    /// The original username (PII: bodies only, never logs).
    pub original_username: &'a str,
    /// The original email address (PII: only where a vendor's API is keyed by it).
    pub original_email: &'a str,
    /// The LMS user id.
    pub lms_user_id: Option<i64>,
    /// The retired username.
    pub retired_username: &'a str,
    /// The retired email address.
    pub retired_email: &'a str,
}

impl<'a> LearnerRef<'a> {
    /// The learner of a status record.
    pub fn of(record: &'a retirement_core::Retirement) -> LearnerRef<'a> {
        let parts = record.parts();
        LearnerRef {
            original_username: &record.original().username,
            original_email: &record.original().email,
            lms_user_id: parts.lms_user_id,
            retired_username: record.retired_username(),
            retired_email: &parts.retired_email,
        }
    }

    /// `text` with the learner's original username and email replaced by `<username>` and
    /// `<email>`: what a service answers is written to the learner's log, and a vendor may
    /// echo what it was sent.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        // Longest first: an email usually contains the username.
        let mut originals = [
            (self.original_email, "<email>"),
            (self.original_username, "<username>"),
        ];
        originals.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        for (value, mask) in originals {
            if !value.is_empty() && out.contains(value) {
                out = out.replace(value, mask);
            }
        }
        out
    }
}

impl std::fmt::Debug for LearnerRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearnerRef")
            .field("original_username", &format_args!("<redacted>"))
            .field("original_email", &format_args!("<redacted>"))
            .field("lms_user_id", &self.lms_user_id)
            .field("retired_username", &self.retired_username)
            .finish()
    }
}

/// The JSON body of a built-in operation.
pub fn body(kind: Body, learner: &LearnerRef<'_>) -> Option<serde_json::Value> {
    use serde_json::json;
    match kind {
        Body::Username => Some(json!({ "username": learner.original_username })),
        Body::LmsUserId => Some(json!({ "lms_user_id": learner.lms_user_id })),
        Body::LmsUserIdAndOriginalUsername => Some(json!({
            "lms_user_id": learner.lms_user_id,
            "original_username": learner.original_username,
        })),
        Body::Empty => None,
        Body::UsernameMapping => {
            let mut mapping = serde_json::Map::new();
            mapping.insert(
                learner.original_username.to_owned(),
                serde_json::Value::String(learner.retired_username.to_owned()),
            );
            Some(json!({ "username_mappings": [mapping] }))
        }
    }
}

/// `base + '/' + path.strip('/') + '/'`, as upstream joins them (path prefixes of the base URL
/// are kept; the trailing slash is always there).
pub fn join(base: &str, path: &str) -> String {
    format!("{}/{}/", base.trim_end_matches('/'), path.trim_matches('/'))
}

/// Whether a 2xx `body` passes `check` for `learner`: `Err` holds why not (no PII).
pub fn check_answer(check: Check, body: &str, learner: &LearnerRef<'_>) -> Result<(), String> {
    match check {
        Check::Status => Ok(()),
        Check::ReplacementsSucceeded => {
            let json: serde_json::Value = serde_json::from_str(body)
                .map_err(|_| "the username replacement answer is not JSON".to_owned())?;
            let names = |key: &str| -> Vec<String> {
                json.get(key)
                    .and_then(|v| v.as_array())
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|m| m.as_object())
                            .flat_map(|m| m.keys().cloned())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            if names("failed_replacements")
                .iter()
                .any(|n| n == learner.original_username)
            {
                return Err("the service listed the learner in failed_replacements".into());
            }
            if !names("successful_replacements")
                .iter()
                .any(|n| n == learner.original_username)
            {
                return Err(
                    "the service did not list the learner in successful_replacements".into(),
                );
            }
            Ok(())
        }
    }
}

/// The legacy note of `service operation`, if the catalog marks it legacy.
pub fn legacy_note(service: &str, operation: &str) -> Option<&'static str> {
    find(service, operation).and_then(|op| op.legacy)
}

/// The built-in stages for `--help`: `SERVICE operation`, one per line, legacy ones marked.
pub fn help_text() -> String {
    let mut out = String::new();
    for op in OPERATIONS {
        out.push_str(&format!("  {} {}", op.service, op.name));
        if let Some(why) = op.legacy {
            out.push_str(&format!("  [legacy: {why}]"));
        }
        out.push('\n');
    }
    out
}
