//! `retire completed`: the completion feed — learners who finished retiring since a time,
//! PII-free, for downstream erasure jobs — and the per-run completion webhook.

use chrono::{DateTime, NaiveDate, Utc};
use clap::Args;
use retirement_http::completion::{Completion, completed_since};

use crate::config::Config;
use crate::error::{CliError, exit};
use crate::wiring::{self, Wired};

#[derive(Debug, Args)]
pub(crate) struct CompletedArgs {
    /// Learners who reached COMPLETE at or after this time: RFC 3339
    /// (2026-12-01T00:00:00Z) or a day (2026-12-01, midnight UTC).
    #[arg(long, value_parser = parse_since)]
    since: DateTime<Utc>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.to_utc());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{text:?} is neither RFC 3339 nor YYYY-MM-DD"))
}

pub(crate) async fn completed(config: &Config, args: CompletedArgs) -> Result<u8, CliError> {
    let wired = wiring::wire(config).await?;
    let pipeline = wiring::pipeline(config, &wired).await?;
    let feed = completed_since(wired.store.as_ref(), &pipeline, args.since, Utc::now()).await?;
    for c in &feed {
        if args.json {
            println!("{}", serde_json::to_string(c).unwrap_or_default());
        } else {
            println!(
                "{}  {:>8}  {}  lms_user_id={}  stages: {}",
                c.completed.to_rfc3339(),
                c.retirement_id,
                c.retired_username,
                c.lms_user_id
                    .map_or_else(|| "-".to_owned(), |id| id.to_string()),
                c.stages.join(", ")
            );
        }
    }
    if !args.json {
        eprintln!(
            "{} learner(s) completed since {}",
            feed.len(),
            args.since.to_rfc3339()
        );
    }
    Ok(exit::OK)
}

/// After a run: posts `{"completed": [...]}` of the learners that completed since `started`
/// to `completion_webhook`, if set and any did. A failure is logged: the feed (`retire
/// completed`) still has them.
pub(crate) async fn notify(config: &Config, wired: &Wired, started: DateTime<Utc>) {
    let Some(url) = &config.completion_webhook else {
        return;
    };
    let feed: Vec<Completion> = match wiring::pipeline(config, wired).await {
        Ok(pipeline) => {
            match completed_since(wired.store.as_ref(), &pipeline, started, Utc::now()).await {
                Ok(feed) => feed,
                Err(e) => {
                    tracing::warn!(error = %e, "the completion feed could not be read");
                    return;
                }
            }
        }
        Err(_) => return,
    };
    if feed.is_empty() {
        return;
    }
    match retirement_http::completion::post(url, &feed).await {
        Ok(()) => tracing::info!(learners = feed.len(), "completion webhook notified"),
        Err(e) => tracing::warn!(error = %e, "the completion webhook failed"),
    }
}
