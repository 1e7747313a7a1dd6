//! PII-free alerts (issue 16): a learner ERRORED, requests overdue or due soon, a run refused
//! by `user_count_error_threshold`, a run that failed — to a Slack-compatible webhook
//! (`{"text": …}`) and/or email through an SMTP relay.
//!
//! An [`Alerter`] deduplicates and rate-limits with the time it is given (no clock of its
//! own): an identical alert is not sent again within `repeat_after`, and each kind of alert
//! goes out at most once per `min_interval`, what was held back summarised in the next one.
//! Its memory is an [`AlertLedger`] (a JSON file between runs), so a bad night of runs every
//! ten minutes sends one message, not a thousand. Texts name learners by retirement id only.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use retirement_core::RetirementId;
use serde::{Deserialize, Serialize};

use crate::connectors::Secret;
use crate::error::HttpError;

/// One thing worth telling an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// Learners went to ERRORED in a run.
    Errored {
        /// Their retirement ids.
        ids: Vec<RetirementId>,
    },
    /// Open requests past or near their statutory due date.
    Deadlines {
        /// Past due.
        overdue: usize,
        /// Due within `within_days`.
        due_soon: usize,
        /// The horizon.
        within_days: i64,
    },
    /// A run refused to start: more learners queued than the threshold.
    Refused {
        /// The error text (counts only).
        message: String,
    },
    /// A run failed (the store, a config, a file).
    RunFailed {
        /// The error text (never holds an original: the crates' errors do not).
        message: String,
    },
}

impl Alert {
    /// The kind, for rate limits: `errored`, `deadlines`, `refused`, `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Alert::Errored { .. } => "errored",
            Alert::Deadlines { .. } => "deadlines",
            Alert::Refused { .. } => "refused",
            Alert::RunFailed { .. } => "failed",
        }
    }

    /// The message text.
    pub fn text(&self) -> String {
        match self {
            Alert::Errored { ids } => {
                let shown: Vec<String> = ids.iter().take(20).map(|id| id.0.to_string()).collect();
                format!(
                    "{} learner(s) went to ERRORED: retirement {}{}. See `retire status` or the console.",
                    ids.len(),
                    shown.join(", "),
                    if ids.len() > shown.len() { ", …" } else { "" }
                )
            }
            Alert::Deadlines {
                overdue,
                due_soon,
                within_days,
            } => format!(
                "Statutory deadlines: {overdue} open request(s) overdue, {due_soon} due within {within_days} days. See `retire report` or the console."
            ),
            Alert::Refused { message } => format!("A retirement run refused to start: {message}"),
            Alert::RunFailed { message } => format!("A retirement run failed: {message}"),
        }
    }
}

/// Where alerts go.
#[async_trait::async_trait]
pub trait AlertSink: Send + Sync + fmt::Debug {
    /// Sends one message (subject and text).
    async fn send(&self, subject: &str, text: &str) -> Result<(), HttpError>;
}

/// A Slack-compatible incoming webhook: `POST {"text": "…"}`.
pub struct Webhook {
    url: Secret,
    http: reqwest::Client,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL of a Slack webhook is its credential.
        f.write_str("Webhook(<redacted>)")
    }
}

impl Webhook {
    /// A webhook posting to `url`.
    pub fn new(url: Secret) -> Result<Webhook, HttpError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| HttpError::Client(e.to_string()))?;
        Ok(Webhook { url, http })
    }
}

#[async_trait::async_trait]
impl AlertSink for Webhook {
    async fn send(&self, subject: &str, text: &str) -> Result<(), HttpError> {
        let response = self
            .http
            .post(self.url.expose())
            .json(&serde_json::json!({ "text": format!("*{subject}*\n{text}") }))
            .send()
            .await
            .map_err(|e| HttpError::Service {
                service: "alert webhook".into(),
                message: e.without_url().to_string(),
            })?;
        if !response.status().is_success() {
            return Err(HttpError::Service {
                service: "alert webhook".into(),
                message: format!("answered {}", response.status()),
            });
        }
        Ok(())
    }
}

/// Email through an SMTP relay.
#[derive(Clone)]
pub struct Smtp {
    /// The relay's host.
    pub host: String,
    /// Its port (25, 587 with STARTTLS, 465 with TLS).
    pub port: u16,
    /// `none` (a relay on loopback or a private network), `starttls` or `tls`.
    pub security: SmtpSecurity,
    /// Login, if the relay wants one.
    pub username: Option<String>,
    /// Its password.
    pub password: Option<Secret>,
    /// The sender.
    pub from: String,
    /// The recipients (operators; never a learner).
    pub to: Vec<String>,
}

impl fmt::Debug for Smtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smtp")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// STARTTLS required (port 587).
    #[default]
    Starttls,
    /// TLS from the start (port 465).
    Tls,
    /// None: only for a relay on loopback or a trusted network.
    None,
}

#[async_trait::async_trait]
impl AlertSink for Smtp {
    async fn send(&self, subject: &str, text: &str) -> Result<(), HttpError> {
        let fail = |message: String| HttpError::Service {
            service: "alert email".into(),
            message,
        };
        let from: Mailbox = self
            .from
            .parse()
            .map_err(|e| fail(format!("alerts.smtp.from: {e}")))?;
        let mut builder = Message::builder().from(from).subject(subject);
        for to in &self.to {
            let to: Mailbox = to
                .parse()
                .map_err(|e| fail(format!("alerts.smtp.to: {e}")))?;
            builder = builder.to(to);
        }
        let message = builder
            .body(text.to_owned())
            .map_err(|e| fail(e.to_string()))?;
        let transport = match self.security {
            SmtpSecurity::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            }
            SmtpSecurity::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.host)
                    .map_err(|e| fail(e.to_string()))?
            }
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&self.host)
                .map_err(|e| fail(e.to_string()))?,
        };
        let mut transport = transport
            .port(self.port)
            .timeout(Some(Duration::from_secs(30)));
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            transport =
                transport.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        transport
            .build()
            .send(message)
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok(())
    }
}

/// What the alerter remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerState {
    /// When each exact text was last sent.
    pub sent: BTreeMap<String, DateTime<Utc>>,
    /// When each kind was last sent.
    pub last_of_kind: BTreeMap<String, DateTime<Utc>>,
    /// Alerts held back by the rate limit, by kind.
    pub held: BTreeMap<String, u32>,
}

/// Where the alerter's memory lives.
pub trait AlertLedger: Send + Sync + fmt::Debug {
    /// Reads it (empty when new).
    fn load(&self) -> Result<LedgerState, HttpError>;
    /// Writes it.
    fn save(&self, state: &LedgerState) -> Result<(), HttpError>;
}

/// Memory for one process only.
#[derive(Debug, Default)]
pub struct MemoryLedger(std::sync::Mutex<LedgerState>);

impl AlertLedger for MemoryLedger {
    fn load(&self) -> Result<LedgerState, HttpError> {
        Ok(self.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
    fn save(&self, state: &LedgerState) -> Result<(), HttpError> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = state.clone();
        Ok(())
    }
}

/// Memory in a JSON file (`alerts.state_file`), written atomically.
#[derive(Debug)]
pub struct FileLedger(pub PathBuf);

impl AlertLedger for FileLedger {
    fn load(&self) -> Result<LedgerState, HttpError> {
        match std::fs::read_to_string(&self.0) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| HttpError::InvalidService(format!("{}: {e}", self.0.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LedgerState::default()),
            Err(e) => Err(HttpError::InvalidService(format!(
                "{}: {e}",
                self.0.display()
            ))),
        }
    }
    fn save(&self, state: &LedgerState) -> Result<(), HttpError> {
        let tmp = self.0.with_extension("tmp");
        let text = serde_json::to_string_pretty(state)
            .map_err(|e| HttpError::InvalidService(e.to_string()))?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.0))
            .map_err(|e| HttpError::InvalidService(format!("{}: {e}", self.0.display())))
    }
}

/// The default of [`Alerter::min_interval`].
pub const DEFAULT_MIN_INTERVAL: TimeDelta = TimeDelta::hours(1);
/// The default of [`Alerter::repeat_after`].
pub const DEFAULT_REPEAT_AFTER: TimeDelta = TimeDelta::hours(24);

/// Sends alerts to every sink, deduplicated and rate-limited. See the module docs.
#[derive(Debug)]
pub struct Alerter {
    /// Where they go.
    pub sinks: Vec<Box<dyn AlertSink>>,
    /// What it remembers.
    pub ledger: Box<dyn AlertLedger>,
    /// At most one message of a kind per this long.
    pub min_interval: TimeDelta,
    /// The same text is not sent again within this long.
    pub repeat_after: TimeDelta,
    /// The subject line's prefix (the site's name).
    pub site: String,
}

/// What [`Alerter::send`] did with each alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Sent to every sink.
    Sent,
    /// Sent the same text within `repeat_after`: not again.
    Duplicate,
    /// A message of its kind went out within `min_interval`: held back, counted in the
    /// next one.
    RateLimited,
    /// A sink failed (the others were still tried); the alert is tried again next time.
    Failed(String),
}

impl Alerter {
    /// Sends `alerts` at `now`; returns what happened to each.
    pub async fn send(
        &self,
        alerts: &[Alert],
        now: DateTime<Utc>,
    ) -> Result<Vec<Delivery>, HttpError> {
        let mut state = self.ledger.load()?;
        state.sent.retain(|_, at| now - *at < self.repeat_after);
        let mut out = Vec::with_capacity(alerts.len());
        for alert in alerts {
            let kind = alert.kind();
            let mut text = alert.text();
            if state.sent.contains_key(&text) {
                out.push(Delivery::Duplicate);
                continue;
            }
            if state
                .last_of_kind
                .get(kind)
                .is_some_and(|at| now - *at < self.min_interval)
            {
                *state.held.entry(kind.to_owned()).or_default() += 1;
                out.push(Delivery::RateLimited);
                continue;
            }
            let held = state.held.remove(kind).unwrap_or(0);
            let key = text.clone();
            if held > 0 {
                text.push_str(&format!(
                    "\n({held} similar alert(s) were held back by the rate limit since the last one.)"
                ));
            }
            let subject = format!("[{}] retirement: {kind}", self.site);
            let mut failed = Vec::new();
            for sink in &self.sinks {
                if let Err(e) = sink.send(&subject, &text).await {
                    tracing::warn!(sink = ?sink, error = %e, "an alert could not be sent");
                    failed.push(e.to_string());
                }
            }
            if failed.len() == self.sinks.len() && !self.sinks.is_empty() {
                if held > 0 {
                    state.held.insert(kind.to_owned(), held);
                }
                out.push(Delivery::Failed(failed.join("; ")));
                continue;
            }
            state.sent.insert(key, now);
            state.last_of_kind.insert(kind.to_owned(), now);
            out.push(if failed.is_empty() {
                Delivery::Sent
            } else {
                Delivery::Failed(failed.join("; "))
            });
        }
        self.ledger.save(&state)?;
        Ok(out)
    }
}
