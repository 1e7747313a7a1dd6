//! The YAML config file: tubular's keys, accepted unchanged, plus this project's.
//!
//! Each top-level key is read on its own so an error names the key and the file. Keys that
//! tubular's other scripts use (Braze, Segment, partner reports, …) are accepted and ignored;
//! any other key is reported as unknown (a warning: a typo must not go unnoticed, but a file
//! shared with other tools must still load).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assignment_expiry::PolicyKind;
use retirement_core::{
    DEFAULT_RETIRED_EMAIL_DOMAIN, DEFAULT_RETIRED_PREFIX, Pipeline, Regime, RetiredIdConfig,
    RetryPolicy, Stage, StateTable,
};
use retirement_http::GenericService;
use retirement_http::connectors::Connector;
use retirement_http::runtime::OutagePolicy;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::CliError;

/// The default store: a SQLite file in the working directory.
pub const DEFAULT_STORE: &str = "sqlite://retirement.db";

/// Keys tubular's scripts read that this tool does not use; accepted without a warning.
const TUBULAR_OTHER_KEYS: &[&str] = &[
    "salesforce_user",
    "salesforce_password",
    "salesforce_token",
    "salesforce_domain",
    "salesforce_assignee",
    "segment_workspace_slug",
    "segment_base_url",
    "hubspot_aws_region",
    "hubspot_from_address",
    "hubspot_alert_email",
    "s3_archive",
];

/// A secret: `Debug` never shows it; in YAML a string or `{env: NAME}`.
pub use retirement_http::Secret;

/// `braze:`: where the expiration emails go with `notifications: braze`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrazeKeys {
    /// Braze's REST endpoint, e.g. `https://rest.iad-01.braze.com`.
    pub api_url: String,
    /// The REST API key.
    pub api_key: Secret,
    /// The campaign ids: `regular` (upstream's
    /// `BRAZE_ASSIGNMENT_AUTOMATIC_CANCELLATION_NOTIFICATION_CAMPAIGN`) and `bnr`
    /// (`BRAZE_LEARNER_CREDIT_BNR_AUTOMATIC_EXPIRATION_NOTIFICATION_CAMPAIGN`).
    pub campaigns: BrazeCampaigns,
    /// The learner portal's URL, for the Browse & Request email's link
    /// (upstream's `ENTERPRISE_LEARNER_PORTAL_URL`).
    #[serde(default)]
    pub learner_portal_url: String,
}

/// The two expiration campaigns.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrazeCampaigns {
    /// The regular expiration email.
    pub regular: String,
    /// The Browse & Request expiration email.
    pub bnr: String,
}

/// Request timeouts, in seconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Connecting to a service (default 5).
    #[serde(default = "five")]
    pub connect_seconds: f64,
    /// A whole request (default 60).
    #[serde(default = "sixty")]
    pub request_seconds: f64,
    /// The token call (default 5).
    #[serde(default = "five")]
    pub token_seconds: f64,
}

fn five() -> f64 {
    5.0
}
fn sixty() -> f64 {
    60.0
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect_seconds: 5.0,
            request_seconds: 60.0,
            token_seconds: 5.0,
        }
    }
}

/// Retry rules for stage calls, in seconds (defaults are tubular's).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// The first backoff (1).
    pub initial_backoff_seconds: Option<f64>,
    /// The longest backoff (300).
    pub max_backoff_seconds: Option<f64>,
    /// No retry later than this after a stage's first attempt (600).
    pub budget_seconds: Option<f64>,
    /// The wait before retrying a 504 or a timeout (60).
    pub gateway_timeout_wait_seconds: Option<f64>,
    /// How often a 504 or timeout is retried (1).
    pub gateway_timeout_retries: Option<u32>,
}

/// How `retire run` tells a service outage from a learner's failure (defaults are
/// `OutagePolicy`'s: 5 learners, 5 s, 300 s, 900 s, 60 s).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OutageConfig {
    /// Different learners failing in a row on one endpoint that make it down (5).
    pub learners_to_open: Option<usize>,
    /// The wait before the first probe of a down endpoint; doubles per failed probe (5).
    pub first_probe_after_seconds: Option<f64>,
    /// The longest wait between probes (300).
    pub max_probe_interval_seconds: Option<f64>,
    /// How long learners wait for a down endpoint before the run ends, exit 5 (900).
    pub patience_seconds: Option<f64>,
    /// A learner out of retries on an endpoint that answered nobody for this long while it was
    /// failing there is spared ERRORED (60).
    pub quiet_seconds: Option<f64>,
}

/// Retired-identifier settings (upstream's `RETIRED_USER_SALTS`, `RETIRED_USERNAME_PREFIX`,
/// `RETIRED_EMAIL_DOMAIN`).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RetiredIdKeys {
    /// Every salt ever used, oldest first; new learners are hashed with the last.
    #[serde(default)]
    pub salts: Vec<Secret>,
    /// The retired username prefix (default `retired__user_`).
    pub prefix: Option<String>,
    /// The retired email prefix (default: the username prefix).
    pub email_prefix: Option<String>,
    /// The retired email domain (default `retired.invalid`).
    pub email_domain: Option<String>,
}

/// `console:`: `retire serve`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConsoleKeys {
    /// Where to listen (default `127.0.0.1:8650`: loopback only).
    pub listen: Option<String>,
    /// The console's URL as browsers reach it (default `http://<listen>`); the LMS sign-in
    /// redirects back to it.
    pub public_url: Option<String>,
    /// Operators who sign in with a password (`retire console hash-password` makes the hash).
    #[serde(default)]
    pub operators: Vec<OperatorKey>,
    /// Sign-in through the LMS's OAuth2 provider (staff only).
    pub lms_sign_in: Option<LmsSignInKeys>,
    /// A bearer token that lets a Prometheus scraper read `/metrics` without a session.
    pub metrics_token: Option<Secret>,
    /// Force `Secure` cookies on or off (default: on unless `public_url` is plain HTTP on
    /// loopback).
    pub secure_cookies: Option<bool>,
}

/// One password operator.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorKey {
    /// The name audited actions carry.
    pub name: String,
    /// An argon2id PHC string (`$argon2id$v=19$…`), never the password.
    pub password_hash: String,
}

/// `console.lms_sign_in`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmsSignInKeys {
    /// The LMS OAuth2 application's client id (authorization-code grant, confidential, with
    /// the redirect URI `<public_url>/login/lms/callback`).
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// The LMS's URL as browsers reach it (default `base_urls.lms`).
    pub lms_url: Option<String>,
}

/// `alerts:`: where PII-free alerts go and how often.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AlertKeys {
    /// A Slack-compatible incoming webhook (its URL is a secret: a string or `{env: NAME}`).
    pub webhook_url: Option<Secret>,
    /// Email through an SMTP relay.
    pub smtp: Option<SmtpKeys>,
    /// Alert on requests due within this many days (default 7).
    pub due_within_days: Option<i64>,
    /// At most one message of a kind per this many minutes (default 60).
    pub min_interval_minutes: Option<i64>,
    /// The same message is not repeated within this many hours (default 24).
    pub repeat_after_hours: Option<i64>,
    /// Where the alerter remembers what it sent between runs (default: nowhere; each run
    /// deduplicates only its own alerts).
    pub state_file: Option<PathBuf>,
    /// The site's name in subjects (default `retire`).
    pub site: Option<String>,
}

/// `alerts.smtp`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpKeys {
    /// The relay.
    pub host: String,
    /// Its port (default 587).
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    #[serde(default)]
    pub security: retirement_http::alerts::SmtpSecurity,
    /// Login.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// The sender address.
    pub from: String,
    /// Operator addresses (alerts; `partner_report.smtp` takes its recipients from the
    /// contacts).
    #[serde(default)]
    pub to: Vec<String>,
}

/// `partner_report:`: where `retire partner-report` publishes, whom it tells, what it keeps.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PartnerReportKeys {
    /// Where reports are published: a folder, or `s3://`, `gs://`, `az://`, `file://`
    /// (`--output` overrides).
    pub output: Option<String>,
    /// The spool of fetched rows (default `partner-report-spool.json`). It holds personal
    /// data while rows wait; it is written owner-only.
    pub spool: Option<PathBuf>,
    /// Partners that get no report.
    #[serde(default)]
    pub exempted_partners: Vec<String>,
    /// Days a report is kept (default 60): the announcement's deletion day and `prune`'s
    /// default age.
    pub retention_days: Option<i64>,
    /// Days before deletion that recipients are warned (default 7).
    pub warn_days: Option<i64>,
    /// The relay for contacts' email (default: `alerts.smtp`'s relay).
    pub smtp: Option<SmtpKeys>,
    /// Each partner's points of contact.
    #[serde(default)]
    pub contacts: BTreeMap<String, PartnerContact>,
}

/// One partner's points of contact.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PartnerContact {
    /// Addresses, through the relay (addresses in `denied_notification_domains` are
    /// skipped).
    #[serde(default)]
    pub email: Vec<String>,
    /// A Slack-compatible webhook (a secret: a string or `{env: NAME}`).
    pub webhook_url: Option<Secret>,
}

/// What the partner report reads from the config.
#[derive(Debug, Clone, Default)]
pub struct PartnerReportConfig {
    /// tubular's `org_partner_mapping` (inline, or a CSV file of `org,partner` rows).
    pub mapping: Option<BTreeMap<String, Vec<String>>>,
    /// tubular's `partner_report_platform_name`.
    pub platform: Option<String>,
    /// tubular's `denied_notification_domains`.
    pub denied_domains: Vec<String>,
    /// tubular's `drive_partners_folder` is set (accepted; reports go to `output`).
    pub drive_folder: bool,
    /// `partner_report:`.
    pub keys: PartnerReportKeys,
}

/// The whole config. Every field has a default, so a missing file means "defaults".
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub file: Option<PathBuf>,
    /// tubular: the OAuth2 client of the retirement service user.
    pub client_id: Option<String>,
    /// tubular: its secret.
    pub client_secret: Option<Secret>,
    /// tubular: service base URLs (`lms`, `ecommerce`, `credentials`, `demographics`,
    /// `license_manager`, …).
    pub base_urls: BTreeMap<String, String>,
    /// tubular: the stages, `[working_state, complete_state, SERVICE, operation]`.
    pub retirement_pipeline: Option<Vec<Vec<String>>>,
    /// tubular: accepted; no built-in stage needs the ecommerce segment id.
    pub fetch_ecommerce_segment_id: bool,
    /// The status store: `sqlite://PATH`, `postgres://…`, `mysql://…`, or `lms`.
    pub store: String,
    /// Where the assignment tables live, for `expire-assignments` and the ASSIGNMENTS stage
    /// (default: the store, when it is SQL).
    pub assignments_store: Option<String>,
    /// With `store: lms`: a SQL database (`postgres://…`, `mysql://…`; `sqlite://PATH` for
    /// processes on one host) holding the leases every `retire run` shares, so several hosts
    /// never drive one learner at once.
    pub lease_store: Option<String>,
    /// Learners retired at once by `retire run` (default 8).
    pub concurrency: usize,
    /// Lease length in seconds (default 300).
    pub lease_seconds: u64,
    /// Days a PENDING learner waits before retirement (tubular's default 7).
    pub cool_off_days: i64,
    /// tubular's fail-safe: refuse to run when more learners than this are queued.
    pub user_count_error_threshold: Option<usize>,
    /// Request timeouts.
    pub timeouts: Timeouts,
    /// Requests per second per service key.
    pub rate_limits: BTreeMap<String, f64>,
    /// Concurrent calls per service key (default 16).
    pub max_concurrent_per_service: usize,
    /// Stage retry rules.
    pub retry: RetryConfig,
    /// Outage detection and waiting.
    pub outage: OutageConfig,
    /// Retired-identifier salts and format.
    pub retired_id: RetiredIdKeys,
    /// The state table `retire states sync` installs (default: derived from the pipeline).
    pub retirement_states: Option<Vec<String>>,
    /// Operator-defined services.
    pub services: Vec<GenericService>,
    /// The built-in third-party connectors, by service key (`connectors:`, and tubular's
    /// `braze_api_key`/`braze_instance`, `amplitude_api_key`/`amplitude_secret_key`,
    /// `hubspot_api_key`, `segment_auth_token`).
    pub connectors: Vec<Connector>,
    /// The assignment expiry policy (default `adr-0016`).
    pub expiry_policy: PolicyKind,
    /// How `assignments_store` is laid out (default `own`).
    pub assignments_schema: AssignmentsSchema,
    /// How expired assignments' emails are queued (default `none`).
    pub notifications: retirement_http::expiry::Notifications,
    /// Braze, for `notifications: braze`.
    pub braze: Option<BrazeKeys>,
    /// The partner report: tubular's keys and `partner_report:`.
    pub partner_report: PartnerReportConfig,
    /// The statutory clock requests run on (`deadlines: {regime: gdpr|ccpa|DAYS}`, default
    /// GDPR's one month).
    pub deadline_regime: Regime,
    /// `console:` (`retire serve`).
    pub console: ConsoleKeys,
    /// `alerts:`.
    pub alerts: Option<AlertKeys>,
    /// Where `retire run` posts the learners it completed (`{"completed": [...]}`, PII-free).
    pub completion_webhook: Option<Secret>,
    /// Keys nobody knows, for the warning.
    pub unknown_keys: Vec<String>,
}

/// How the assignment tables are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum AssignmentsSchema {
    /// This project's tables (`retire db migrate`, filled by `expire-assignments import`).
    #[default]
    #[serde(rename = "own")]
    Own,
    /// enterprise-access's own MySQL/MariaDB database, with its catalog and subsidy services.
    #[serde(rename = "enterprise-access")]
    EnterpriseAccess,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            file: None,
            client_id: None,
            client_secret: None,
            base_urls: BTreeMap::new(),
            retirement_pipeline: None,
            fetch_ecommerce_segment_id: false,
            store: DEFAULT_STORE.to_owned(),
            assignments_store: None,
            lease_store: None,
            concurrency: retirement_http::runtime::DEFAULT_CONCURRENCY,
            lease_seconds: retirement_http::runtime::DEFAULT_LEASE.num_seconds() as u64,
            cool_off_days: retirement_http::runtime::DEFAULT_COOL_OFF_DAYS,
            user_count_error_threshold: None,
            timeouts: Timeouts::default(),
            rate_limits: BTreeMap::new(),
            max_concurrent_per_service: 16,
            retry: RetryConfig::default(),
            outage: OutageConfig::default(),
            retired_id: RetiredIdKeys::default(),
            retirement_states: None,
            services: Vec::new(),
            connectors: Vec::new(),
            expiry_policy: PolicyKind::Adr0016,
            assignments_schema: AssignmentsSchema::Own,
            notifications: retirement_http::expiry::Notifications::None,
            braze: None,
            partner_report: PartnerReportConfig::default(),
            deadline_regime: Regime::Gdpr,
            console: ConsoleKeys::default(),
            alerts: None,
            completion_webhook: None,
            unknown_keys: Vec::new(),
        }
    }
}

impl Config {
    /// Reads `path`. A missing or unreadable file, bad YAML, or a bad value is an error that
    /// names the file and the key.
    pub fn load(path: &Path) -> Result<Config, CliError> {
        let text = std::fs::read_to_string(path).map_err(|e| CliError::Config {
            file: path.display().to_string(),
            key: None,
            message: format!("cannot read the file: {e}"),
        })?;
        Config::parse(&text, Some(path))
    }

    /// Parses YAML text (`file` only names it in errors).
    pub fn parse(text: &str, file: Option<&Path>) -> Result<Config, CliError> {
        let file_name = file
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "<config>".into());
        let error = |key: Option<&str>, message: String| CliError::Config {
            file: file_name.clone(),
            key: key.map(str::to_owned),
            message,
        };
        let document: serde_json::Value = if text.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                // Only the first line (position and reason): the parser's snippet of the
                // source would quote whatever sits on that line, `client_secret` included
                // (found by the bad-input test).
                let text = e.to_string();
                let reason = text.lines().next().unwrap_or("").trim();
                error(None, format!("invalid YAML: {reason}"))
            })?
        };
        let serde_json::Value::Object(map) = document else {
            return Err(error(
                None,
                "the file must be a YAML mapping of keys to values".into(),
            ));
        };
        let mut config = Config {
            file: file.map(Path::to_path_buf),
            ..Config::default()
        };
        // tubular's flat vendor keys, turned into connectors unless `connectors:` names the
        // same service.
        let mut tubular = BTreeMap::<String, serde_json::Value>::new();
        let mut connectors = BTreeMap::<String, serde_json::Value>::new();
        for (key, value) in map {
            let k = key.as_str();
            match k {
                "client_id" => config.client_id = Some(typed(k, value, &error)?),
                "client_secret" => config.client_secret = Some(typed(k, value, &error)?),
                "base_urls" => {
                    let urls: BTreeMap<String, Option<String>> = typed(k, value, &error)?;
                    config.base_urls = urls
                        .into_iter()
                        .filter_map(|(name, url)| url.map(|u| (name, u)))
                        .collect();
                }
                "retirement_pipeline" => {
                    config.retirement_pipeline = Some(typed(k, value, &error)?)
                }
                "fetch_ecommerce_segment_id" => {
                    config.fetch_ecommerce_segment_id = typed(k, value, &error)?
                }
                "store" => config.store = typed(k, value, &error)?,
                "assignments_store" => config.assignments_store = Some(typed(k, value, &error)?),
                "lease_store" => config.lease_store = Some(typed(k, value, &error)?),
                "assignments_schema" => config.assignments_schema = typed(k, value, &error)?,
                "braze" => config.braze = Some(typed(k, value, &error)?),
                "notifications" => {
                    config.notifications = match typed::<String>(k, value, &error)?.as_str() {
                        "none" => retirement_http::expiry::Notifications::None,
                        "outbox" => retirement_http::expiry::Notifications::Outbox,
                        "braze" => retirement_http::expiry::Notifications::Braze,
                        other => {
                            return Err(error(
                                Some(k),
                                format!("{other:?} is not one of: none, outbox, braze"),
                            ));
                        }
                    }
                }
                "concurrency" => {
                    config.concurrency = typed(k, value, &error)?;
                    if config.concurrency == 0 {
                        return Err(error(Some(k), "must be at least 1".into()));
                    }
                }
                "lease_seconds" => {
                    config.lease_seconds = typed(k, value, &error)?;
                    if config.lease_seconds < 10 {
                        return Err(error(Some(k), "must be at least 10".into()));
                    }
                }
                "cool_off_days" => {
                    config.cool_off_days = typed(k, value, &error)?;
                    if config.cool_off_days < 0 {
                        return Err(error(Some(k), "must not be negative".into()));
                    }
                }
                "user_count_error_threshold" => {
                    config.user_count_error_threshold = Some(typed(k, value, &error)?)
                }
                "timeouts" => config.timeouts = typed(k, value, &error)?,
                "rate_limits" => config.rate_limits = typed(k, value, &error)?,
                "max_concurrent_per_service" => {
                    config.max_concurrent_per_service = typed(k, value, &error)?
                }
                "retry" => config.retry = typed(k, value, &error)?,
                "outage" => config.outage = typed(k, value, &error)?,
                "retired_id" => config.retired_id = typed(k, value, &error)?,
                "retirement_states" => config.retirement_states = Some(typed(k, value, &error)?),
                "services" => {
                    config.services = typed(k, value, &error)?;
                    for service in &config.services {
                        service.connector().map_err(|m| error(Some(k), m))?;
                    }
                }
                "connectors" => connectors = typed(k, value, &error)?,
                "deadlines" => {
                    #[derive(Deserialize)]
                    #[serde(deny_unknown_fields)]
                    struct Deadlines {
                        regime: serde_json::Value,
                    }
                    let d: Deadlines = typed(k, value, &error)?;
                    let text = match &d.regime {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    config.deadline_regime = Regime::parse(&text).ok_or_else(|| {
                        error(
                            Some("deadlines.regime"),
                            format!("{text:?} is not gdpr, ccpa or a number of days"),
                        )
                    })?;
                }
                "console" => config.console = typed(k, value, &error)?,
                "alerts" => config.alerts = Some(typed(k, value, &error)?),
                "completion_webhook" => config.completion_webhook = Some(typed(k, value, &error)?),
                "braze_api_key"
                | "braze_instance"
                | "amplitude_api_key"
                | "amplitude_secret_key"
                | "hubspot_api_key"
                | "segment_auth_token" => {
                    tubular.insert(key, value);
                }
                "expiry_policy" => config.expiry_policy = typed(k, value, &error)?,
                "org_partner_mapping" => {
                    config.partner_report.mapping = match value {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(csv) => Some(mapping_csv(&csv, file, &error)?),
                        other => Some(typed(k, other, &error)?),
                    }
                }
                "drive_partners_folder" => {
                    config.partner_report.drive_folder = !value.is_null();
                }
                "partner_report_platform_name" => {
                    config.partner_report.platform = typed(k, value, &error)?
                }
                "denied_notification_domains" => {
                    config.partner_report.denied_domains =
                        typed::<Option<Vec<String>>>(k, value, &error)?.unwrap_or_default()
                }
                "partner_report" => config.partner_report.keys = typed(k, value, &error)?,
                _ if TUBULAR_OTHER_KEYS.contains(&k) => {}
                _ => config.unknown_keys.push(key),
            }
        }
        config.connectors = vendor_connectors(tubular, connectors, &error)?;
        config.check(&error)?;
        Ok(config)
    }

    fn check(&self, error: &dyn Fn(Option<&str>, String) -> CliError) -> Result<(), CliError> {
        for (name, url) in &self.base_urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(error(
                    Some(&format!("base_urls.{name}")),
                    "must be an http:// or https:// URL".into(),
                ));
            }
        }
        for (service, rate) in &self.rate_limits {
            if !(rate.is_finite() && *rate > 0.0) {
                return Err(error(
                    Some(&format!("rate_limits.{service}")),
                    "must be a positive number of requests per second".into(),
                ));
            }
        }
        let t = &self.timeouts;
        for (name, value) in [
            ("connect_seconds", t.connect_seconds),
            ("request_seconds", t.request_seconds),
            ("token_seconds", t.token_seconds),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(error(
                    Some(&format!("timeouts.{name}")),
                    "must be a positive number of seconds".into(),
                ));
            }
        }
        // A lease must outlive a whole request, or a slow call would lose it mid-step.
        if (self.lease_seconds as f64) < 2.0 * t.request_seconds {
            return Err(error(
                Some("lease_seconds"),
                format!(
                    "must be at least twice timeouts.request_seconds ({}), so a lease outlives a call",
                    t.request_seconds
                ),
            ));
        }
        if let Some(rows) = &self.retirement_pipeline {
            for (index, row) in rows.iter().enumerate() {
                if row.len() != 4 {
                    return Err(error(
                        Some("retirement_pipeline"),
                        format!(
                            "stage {index} has {} fields; each stage is [working_state, complete_state, SERVICE, operation]",
                            row.len()
                        ),
                    ));
                }
            }
            self.stages_unchecked()
                .and_then(|stages| Pipeline::without_table(stages).map_err(|e| e.to_string()))
                .map_err(|m| error(Some("retirement_pipeline"), m))?;
        }
        self.check_partner_report(error)?;
        self.retry_policy().map_err(|m| error(Some("retry"), m))?;
        self.outage_policy().map_err(|m| error(Some("outage"), m))?;
        if !self.retired_id.salts.is_empty() {
            self.retired_ids()
                .map_err(|m| error(Some("retired_id"), m))?;
        }
        Ok(())
    }

    /// Contacts and exemptions name partners the mapping has (a typo would otherwise leave a
    /// partner without its report); emails need a relay; the day counts are sane.
    fn check_partner_report(
        &self,
        error: &dyn Fn(Option<&str>, String) -> CliError,
    ) -> Result<(), CliError> {
        let p = &self.partner_report;
        let partners: std::collections::BTreeSet<&String> = p
            .mapping
            .iter()
            .flat_map(|m| m.values().flatten())
            .collect();
        let keys = &p.keys;
        for (what, names) in [
            (
                "partner_report.contacts",
                keys.contacts.keys().collect::<Vec<_>>(),
            ),
            (
                "partner_report.exempted_partners",
                keys.exempted_partners.iter().collect(),
            ),
        ] {
            if let Some(name) = names.iter().find(|n| !partners.contains(*n)) {
                return Err(error(
                    Some(what),
                    format!("{name:?} is no partner of org_partner_mapping"),
                ));
            }
        }
        for (partner, contact) in &keys.contacts {
            if contact.email.is_empty() && contact.webhook_url.is_none() {
                return Err(error(
                    Some(&format!("partner_report.contacts.{partner}")),
                    "needs email or webhook_url".into(),
                ));
            }
        }
        let emails = keys.contacts.values().any(|c| !c.email.is_empty());
        let relay = keys.smtp.is_some() || self.alerts.as_ref().is_some_and(|a| a.smtp.is_some());
        if emails && !relay {
            return Err(error(
                Some("partner_report.smtp"),
                "contacts have email addresses but no relay is set (partner_report.smtp or \
                 alerts.smtp)"
                    .into(),
            ));
        }
        if keys.retention_days.is_some_and(|d| d < 1) {
            return Err(error(
                Some("partner_report.retention_days"),
                "must be at least 1".into(),
            ));
        }
        if keys.warn_days.is_some_and(|d| d < 0) {
            return Err(error(
                Some("partner_report.warn_days"),
                "must not be negative".into(),
            ));
        }
        Ok(())
    }

    fn stages_unchecked(&self) -> Result<Vec<Stage>, String> {
        let rows = self
            .retirement_pipeline
            .as_ref()
            .ok_or_else(|| "no retirement_pipeline in the config".to_owned())?;
        Ok(rows
            .iter()
            .map(|r| Stage::new(&r[0], &r[1], &r[2], &r[3]))
            .collect())
    }

    /// The pipeline checked against `table` (standalone mode) or without one (LMS mode).
    pub fn pipeline(&self, table: Option<&StateTable>) -> Result<Pipeline, CliError> {
        let file = self.file_name();
        let stages = self
            .stages_unchecked()
            .map_err(|message| CliError::Config {
                file: file.clone(),
                key: Some("retirement_pipeline".into()),
                message,
            })?;
        let pipeline = match table {
            Some(table) => Pipeline::new(stages, table),
            None => Pipeline::without_table(stages),
        };
        pipeline.map_err(|e| CliError::Config {
            file,
            key: Some("retirement_pipeline".into()),
            message: format!("{e} (the store's state table may need `retire states sync`)"),
        })
    }

    /// The state table `states sync` installs: `retirement_states`, or PENDING, each stage's
    /// pair, ERRORED, ABORTED, COMPLETE.
    pub fn desired_states(&self) -> Result<Vec<String>, CliError> {
        if let Some(states) = &self.retirement_states {
            return Ok(states.clone());
        }
        let pipeline = self.pipeline(None)?;
        Ok(pipeline
            .all_states()
            .into_iter()
            .map(str::to_owned)
            .collect())
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> Result<RetryPolicy, String> {
        let mut policy = RetryPolicy::default();
        let r = &self.retry;
        let seconds = |name: &str, v: f64| -> Result<Duration, String> {
            Duration::try_from_secs_f64(v)
                .map_err(|_| format!("{name} must be a non-negative number of seconds"))
        };
        if let Some(v) = r.initial_backoff_seconds {
            policy.initial_backoff = seconds("initial_backoff_seconds", v)?;
        }
        if let Some(v) = r.max_backoff_seconds {
            policy.max_backoff = seconds("max_backoff_seconds", v)?;
        }
        if let Some(v) = r.budget_seconds {
            policy.budget = seconds("budget_seconds", v)?;
        }
        if let Some(v) = r.gateway_timeout_wait_seconds {
            policy.gateway_timeout_wait = seconds("gateway_timeout_wait_seconds", v)?;
        }
        if let Some(v) = r.gateway_timeout_retries {
            policy.gateway_timeout_retries = v;
        }
        Ok(policy)
    }

    /// The outage policy: `OutagePolicy`'s defaults with the config's values over them.
    pub fn outage_policy(&self) -> Result<OutagePolicy, String> {
        let mut policy = OutagePolicy::default();
        let o = &self.outage;
        let seconds = |name: &str, v: f64| -> Result<Duration, String> {
            Duration::try_from_secs_f64(v)
                .map_err(|_| format!("{name} must be a non-negative number of seconds"))
        };
        if let Some(n) = o.learners_to_open {
            if n == 0 {
                return Err("learners_to_open must be at least 1".into());
            }
            policy.learners_to_open = n;
        }
        if let Some(v) = o.first_probe_after_seconds {
            policy.first_probe_after = seconds("first_probe_after_seconds", v)?;
        }
        if let Some(v) = o.max_probe_interval_seconds {
            policy.max_probe_interval = seconds("max_probe_interval_seconds", v)?;
        }
        if let Some(v) = o.patience_seconds {
            policy.patience = seconds("patience_seconds", v)?;
        }
        if let Some(v) = o.quiet_seconds {
            policy.quiet_for = seconds("quiet_seconds", v)?;
        }
        Ok(policy)
    }

    /// The retired-identifier hasher; needs `retired_id.salts`.
    pub fn retired_ids(&self) -> Result<RetiredIdConfig, String> {
        if self.retired_id.salts.is_empty() {
            return Err(
                "retired_id.salts is empty: set the LMS's RETIRED_USER_SALTS (oldest first)".into(),
            );
        }
        let prefix = self
            .retired_id
            .prefix
            .as_deref()
            .unwrap_or(DEFAULT_RETIRED_PREFIX);
        RetiredIdConfig::with_format(
            prefix,
            self.retired_id.email_prefix.as_deref().unwrap_or(prefix),
            self.retired_id
                .email_domain
                .as_deref()
                .unwrap_or(DEFAULT_RETIRED_EMAIL_DOMAIN),
            self.retired_id
                .salts
                .iter()
                .map(|s| s.expose().to_owned())
                .collect(),
        )
        .map_err(|e| e.to_string())
    }

    /// Whether a partner report is set up (tubular's `org_partner_mapping` or
    /// `drive_partners_folder`), so the partner queue is owed reports.
    pub fn partner_report_configured(&self) -> bool {
        self.partner_report.mapping.is_some() || self.partner_report.drive_folder
    }

    /// The file name for messages.
    pub fn file_name(&self) -> String {
        self.file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "<no config file>".into())
    }

    /// A config error about `key` of this file.
    pub fn error(&self, key: &str, message: impl Into<String>) -> CliError {
        CliError::Config {
            file: self.file_name(),
            key: Some(key.to_owned()),
            message: message.into(),
        }
    }
}

/// The built-in connectors: `connectors:` first, then tubular's flat keys for a vendor it
/// does not name.
fn vendor_connectors(
    tubular: BTreeMap<String, serde_json::Value>,
    mut settings: BTreeMap<String, serde_json::Value>,
    error: &dyn Fn(Option<&str>, String) -> CliError,
) -> Result<Vec<Connector>, CliError> {
    use serde_json::json;
    let get = |k: &str| tubular.get(k).cloned();
    let mut fallback = |service: &str, value: serde_json::Value| {
        settings.entry(service.to_owned()).or_insert(value);
    };
    if let Some(key) = get("braze_api_key") {
        let instance = get("braze_instance")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "iad-01".into());
        fallback(
            "BRAZE",
            json!({ "api_key": key, "api_url": format!("https://rest.{instance}.braze.com") }),
        );
    }
    if let (Some(key), Some(secret)) = (get("amplitude_api_key"), get("amplitude_secret_key")) {
        fallback("AMPLITUDE", json!({ "api_key": key, "secret_key": secret }));
    }
    if let Some(token) = get("hubspot_api_key") {
        fallback("HUBSPOT", json!({ "access_token": token }));
    }
    if let Some(token) = get("segment_auth_token") {
        fallback("SEGMENT", json!({ "token": token }));
    }
    settings
        .into_iter()
        .map(|(service, value)| {
            retirement_http::connectors::vendors::connector(&service, value)
                .map_err(|m| error(Some("connectors"), m))
        })
        .collect()
}

/// `org_partner_mapping` as a CSV file (relative to the config file): a header
/// `org,partner`, then one row per org and partner.
fn mapping_csv(
    path: &str,
    file: Option<&Path>,
    error: &dyn Fn(Option<&str>, String) -> CliError,
) -> Result<BTreeMap<String, Vec<String>>, CliError> {
    let key = Some("org_partner_mapping");
    let path = match file.and_then(Path::parent) {
        Some(dir) if Path::new(path).is_relative() => dir.join(path),
        _ => PathBuf::from(path),
    };
    let mut reader = csv::Reader::from_path(&path)
        .map_err(|e| error(key, format!("cannot read {}: {e}", path.display())))?;
    let headers = reader
        .headers()
        .map_err(|e| error(key, format!("{}: {e}", path.display())))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (Some(org), Some(partner)) = (column("org"), column("partner")) else {
        return Err(error(
            key,
            format!("{} needs the header org,partner", path.display()),
        ));
    };
    let mut mapping: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|e| error(key, format!("{}: {e}", path.display())))?;
        let cell = |i: usize| record.get(i).map(str::trim).unwrap_or_default().to_owned();
        let (o, p) = (cell(org), cell(partner));
        if o.is_empty() || p.is_empty() {
            return Err(error(
                key,
                format!(
                    "{} row {} has an empty org or partner",
                    path.display(),
                    line + 2
                ),
            ));
        }
        let partners = mapping.entry(o).or_default();
        if !partners.contains(&p) {
            partners.push(p);
        }
    }
    Ok(mapping)
}

fn typed<T: DeserializeOwned>(
    key: &str,
    value: serde_json::Value,
    error: &dyn Fn(Option<&str>, String) -> CliError,
) -> Result<T, CliError> {
    serde_json::from_value(value).map_err(|e| {
        // serde's messages quote the offending value; never a secret's.
        let message = if matches!(
            key,
            "client_secret" | "retired_id" | "connectors" | "services" | "braze"
        ) {
            "has the wrong shape (the value is secret and not shown)".to_owned()
        } else {
            e.to_string()
        };
        error(Some(key), message)
    })
}
