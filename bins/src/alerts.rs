//! `alerts:` wired: the alerter from the config, and what `retire run` reports to it.

use retirement_http::alerts::{
    Alert, AlertLedger, AlertSink, Alerter, DEFAULT_MIN_INTERVAL, DEFAULT_REPEAT_AFTER, Delivery,
    FileLedger, MemoryLedger, Smtp, Webhook,
};
use retirement_http::console::DUE_SOON_DAYS;
use retirement_http::runtime::RunSummary;
use retirement_store::RunRecord;

use crate::config::{AlertKeys, Config};
use crate::error::CliError;
use crate::wiring::{self, Wired};

/// The alerter the config asks for (`None` without `alerts:` or without a sink).
pub fn alerter(config: &Config) -> Result<Option<Alerter>, CliError> {
    let Some(keys) = &config.alerts else {
        return Ok(None);
    };
    let mut sinks: Vec<Box<dyn AlertSink>> = Vec::new();
    if let Some(url) = &keys.webhook_url {
        sinks
            .push(Box::new(Webhook::new(url.clone()).map_err(|e| {
                config.error("alerts.webhook_url", e.to_string())
            })?));
    }
    if let Some(smtp) = &keys.smtp {
        if smtp.to.is_empty() {
            return Err(config.error("alerts.smtp.to", "names no recipient"));
        }
        sinks.push(Box::new(Smtp {
            host: smtp.host.clone(),
            port: smtp.port.unwrap_or(587),
            security: smtp.security,
            username: smtp.username.clone(),
            password: smtp.password.clone(),
            from: smtp.from.clone(),
            to: smtp.to.clone(),
        }));
    }
    if sinks.is_empty() {
        return Err(config.error("alerts", "needs webhook_url or smtp"));
    }
    let ledger: Box<dyn AlertLedger> = match &keys.state_file {
        Some(path) => Box::new(FileLedger(path.clone())),
        None => Box::new(MemoryLedger::default()),
    };
    Ok(Some(Alerter {
        sinks,
        ledger,
        min_interval: keys
            .min_interval_minutes
            .map_or(DEFAULT_MIN_INTERVAL, chrono::TimeDelta::minutes),
        repeat_after: keys
            .repeat_after_hours
            .map_or(DEFAULT_REPEAT_AFTER, chrono::TimeDelta::hours),
        site: keys.site.clone().unwrap_or_else(|| "retire".to_owned()),
    }))
}

fn due_within(keys: &AlertKeys) -> i64 {
    keys.due_within_days.unwrap_or(DUE_SOON_DAYS)
}

/// The alerts of a finished (or refused, or failed) run: its ERRORED learners, the state of
/// the statutory clock, the refusal or the failure. Sending failures are logged, never
/// raised: an alert must not change how the run ends.
pub async fn after_run(
    config: &Config,
    wired: &Wired,
    record: &RunRecord,
    total: &RunSummary,
    error: Option<&CliError>,
) {
    let alerter = match alerter(config) {
        Ok(Some(alerter)) => alerter,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "alerts are not set up right; none sent");
            return;
        }
    };
    let mut alerts = Vec::new();
    if !total.errored_ids.is_empty() {
        alerts.push(Alert::Errored {
            ids: total.errored_ids.clone(),
        });
    }
    match (record.outcome.as_str(), error) {
        ("refused", Some(e)) => alerts.push(Alert::Refused {
            message: e.to_string(),
        }),
        (_, Some(e)) => alerts.push(Alert::RunFailed {
            message: e.to_string(),
        }),
        _ => {}
    }
    if let Some(keys) = &config.alerts
        && let Some(alert) = deadline_alert(config, wired, due_within(keys)).await
    {
        alerts.push(alert);
    }
    if alerts.is_empty() {
        return;
    }
    match alerter.send(&alerts, chrono::Utc::now()).await {
        Ok(deliveries) => {
            for (alert, delivery) in alerts.iter().zip(deliveries) {
                match delivery {
                    Delivery::Sent => tracing::info!(kind = alert.kind(), "alert sent"),
                    Delivery::Duplicate | Delivery::RateLimited => {
                        tracing::debug!(kind = alert.kind(), ?delivery, "alert held back")
                    }
                    Delivery::Failed(why) => {
                        tracing::warn!(kind = alert.kind(), error = %why, "alert not sent")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "alerts could not be sent"),
    }
}

/// Overdue and due-soon counts, when any.
async fn deadline_alert(config: &Config, wired: &Wired, within_days: i64) -> Option<Alert> {
    let pipeline = wiring::pipeline(config, wired).await.ok()?;
    let console = wiring::console(config, wired, pipeline);
    let rows = match console.rows().await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "deadlines could not be checked for alerts");
            return None;
        }
    };
    let overdue = rows.iter().filter(|r| r.overdue).count();
    let due_soon = rows
        .iter()
        .filter(|r| !r.overdue && r.days_left.is_some_and(|d| d <= within_days))
        .count();
    (overdue + due_soon > 0).then_some(Alert::Deadlines {
        overdue,
        due_soon,
        within_days,
    })
}
