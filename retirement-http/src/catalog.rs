//! The retirement operations of the edX services, named as tubular's `retirement_pipeline`
//! names them (`LMS retirement_retire_forum`, `ECOMMERCE retire_learner`, …): method, path and
//! body, exactly as upstream's clients send them (reference §3, §5.1).

use serde::Serialize;

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
    ),
    op(
        "CREDENTIALS",
        "retire_learner",
        "credentials",
        "POST",
        "user/retire/",
        Body::Username,
    ),
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

/// A service configured by the operator instead of code: `POST {base_url}/{path}/` with a JSON
/// body template whose string values `{username}`, `{lms_user_id}` and `{retired_username}` are
/// replaced (a value that is exactly `{lms_user_id}` becomes a number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct GenericService {
    /// The pipeline's service key.
    pub service: String,
    /// The pipeline's method name.
    pub operation: String,
    /// The base URL.
    pub base_url: String,
    /// The path below it.
    pub path: String,
    /// The HTTP method (default `POST`).
    #[serde(default = "post")]
    pub method: String,
    /// The body template.
    pub body_template: serde_json::Value,
}

fn post() -> String {
    "POST".into()
}

/// What a body template or path needs to know about the learner.
#[derive(Clone, PartialEq, Eq)]
pub struct LearnerRef<'a> {
    /// The original username (PII: bodies only, never logs).
    pub original_username: &'a str,
    /// The LMS user id.
    pub lms_user_id: Option<i64>,
    /// The retired username.
    pub retired_username: &'a str,
}

impl std::fmt::Debug for LearnerRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearnerRef")
            .field("original_username", &format_args!("<redacted>"))
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
    }
}

/// Fills a generic service's body template.
pub fn fill_template(template: &serde_json::Value, learner: &LearnerRef<'_>) -> serde_json::Value {
    use serde_json::Value;
    match template {
        Value::String(s) if s == "{lms_user_id}" => {
            learner.lms_user_id.map(Value::from).unwrap_or(Value::Null)
        }
        Value::String(s) => Value::String(
            s.replace("{username}", learner.original_username)
                .replace("{retired_username}", learner.retired_username)
                .replace(
                    "{lms_user_id}",
                    &learner
                        .lms_user_id
                        .map(|id| id.to_string())
                        .unwrap_or_default(),
                ),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| fill_template(v, learner)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill_template(v, learner)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `base + '/' + path.strip('/') + '/'`, as upstream joins them (path prefixes of the base URL
/// are kept; the trailing slash is always there).
pub fn join(base: &str, path: &str) -> String {
    format!("{}/{}/", base.trim_end_matches('/'), path.trim_matches('/'))
}
