//! `retire partner-report`: one CSV per partner from the LMS's partner-reporting queue,
//! published to a folder or object storage and announced to each partner's points of
//! contact, then the delivered rows removed from the LMS.
//!
//! A run, each step safe to repeat:
//! 1. lock the spool (one report run at a time), fetch the queue, spool the rows;
//! 2. group every spooled row by partner (an unmapped org stops the run before anything is
//!    written);
//! 3. per partner with rows it has not had: exempt partners are skipped; a partner without a
//!    point of contact is left for a compliance failure; the others get their CSV (read back
//!    before it counts) and an announcement, and only then are their rows marked delivered;
//! 4. rows delivered to every partner that needs them are cleaned up in the LMS, exactly
//!    those, and leave the spool.
//!
//! Upstream's job fails outright when a partner has no Drive folder, after the queue was
//! marked, leaving every row stuck (D23). Here the others are delivered first, and the
//! undelivered rows wait in the spool for a contact.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::Serialize;

use super::spool::{Spool, SpoolState};
use super::{PartnerReport, cleanup_status, fetch, group_by_partner};
use crate::alerts::AlertSink;
use crate::archive::ArchiveTarget;
use crate::client::ServiceClients;
use crate::error::HttpError;

/// How long published reports are kept by default (upstream's edX jobs: 60 days).
pub const DEFAULT_RETENTION_DAYS: i64 = 60;
/// How many days before deletion recipients are warned by default.
pub const DEFAULT_WARN_DAYS: i64 = 7;

/// What the report is built from.
#[derive(Debug, Clone)]
pub struct PartnerSettings {
    /// Org → partners (tubular's `org_partner_mapping`).
    pub mapping: BTreeMap<String, Vec<String>>,
    /// The platform's name in file names (tubular's `partner_report_platform_name`).
    pub platform: String,
    /// Partners that get no report (their rows are not held for them).
    pub exempt: BTreeSet<String>,
    /// Days a published report is kept; the announcement names the deletion day.
    pub retention_days: i64,
}

/// Each partner's points of contact (emails through a relay, webhooks).
pub type Contacts = BTreeMap<String, Vec<Box<dyn AlertSink>>>;

/// A partner's published report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivered {
    /// The partner.
    pub partner: String,
    /// Where the report is.
    pub location: String,
    /// Learners in it.
    pub learners: usize,
}

/// What a report run did. Partners and locations only; no learner is named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReportOutcome {
    /// Rows the LMS answered this run.
    pub fetched: usize,
    /// Rows already in the spool from earlier runs.
    pub carried: usize,
    /// Reports published and announced.
    pub delivered: Vec<Delivered>,
    /// Exempt partners and the learners they were not sent.
    pub exempt: Vec<(String, usize)>,
    /// Partners owed a report who have no point of contact, with their learners: a
    /// compliance failure.
    pub no_contact: Vec<(String, usize)>,
    /// Partners whose report could not be written or announced, and why (retried next run).
    pub failed: Vec<(String, String)>,
    /// Rows removed from the LMS's queue (and the spool).
    pub cleaned: usize,
    /// Why the LMS's cleanup failed, if it did (retried next run).
    pub cleanup_error: Option<String>,
    /// Rows left in the spool.
    pub waiting: usize,
}

/// A report's file name: `user_retirement_{platform}_{partner}_{YYYY-MM-DD}.csv` (a path
/// separator in a partner's name becomes `-`).
pub fn report_name(platform: &str, partner: &str, day: NaiveDate) -> String {
    let safe = |s: &str| s.replace(['/', '\\'], "-");
    format!(
        "user_retirement_{}_{}_{}.csv",
        safe(platform),
        safe(partner),
        day.format("%Y-%m-%d")
    )
}

/// A report's announcement (subject, text): where it is, how many learners, when it goes.
pub fn announcement(
    platform: &str,
    partner: &str,
    location: &str,
    learners: usize,
    delete_on: NaiveDate,
) -> (String, String) {
    (
        format!("{platform}: learner retirement report for {partner}"),
        format!(
            "A report of {learners} learner(s) who asked {platform} to erase their personal data \
             is published for {partner} at:\n{location}\n\nPlease erase these learners' data from \
             your systems. The report itself holds personal data: it will be deleted on \
             {delete_on}.",
            delete_on = delete_on.format("%Y-%m-%d"),
        ),
    )
}

/// The spool, locked for one report run or prune at a time (an advisory lock the OS
/// releases when the process ends, so a crash leaves no stale lock).
pub(super) struct Locked {
    _file: std::fs::File,
}

pub(super) fn lock(spool: &Spool) -> Result<Locked, HttpError> {
    let mut name = spool.path().file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let path = spool.path().with_file_name(name);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| HttpError::Io {
            what: format!("creating {}", dir.display()),
            source: e,
        })?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| HttpError::Io {
            what: format!("opening {}", path.display()),
            source: e,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Locked { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(HttpError::Refused(format!(
            "another partner report is running on the spool {}",
            spool.path().display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(HttpError::Io {
            what: format!("locking {}", path.display()),
            source: e,
        }),
    }
}

/// Builds, publishes and announces the partner reports.
#[derive(Debug)]
pub struct PartnerReporter<'a> {
    /// The mapping, platform, exemptions and retention.
    pub settings: &'a PartnerSettings,
    /// Who hears of each partner's report.
    pub contacts: &'a Contacts,
    /// Where reports are published.
    pub output: &'a ArchiveTarget,
    /// Where fetched rows wait until the LMS has removed them.
    pub spool: &'a Spool,
}

impl PartnerReporter<'_> {
    /// One run (see the module docs). Errors before delivery (the spool, the LMS's answer,
    /// an unmapped org) leave every fetched row in the spool; a partner's failure is in the
    /// outcome and does not stop the others.
    pub async fn run(
        &self,
        clients: &ServiceClients,
        now: DateTime<Utc>,
    ) -> Result<ReportOutcome, HttpError> {
        let _lock = lock(self.spool)?;
        let mut state = self.spool.load()?;
        let mut outcome = ReportOutcome {
            carried: state.rows.len(),
            ..ReportOutcome::default()
        };
        let fetched = fetch(clients).await?;
        outcome.fetched = fetched.len();
        if !fetched.is_empty() {
            state.add(fetched);
            self.spool.save(&state)?;
        }
        let rows: Vec<_> = state.rows.iter().map(|s| s.row.clone()).collect();
        let grouped = group_by_partner(&rows, &self.settings.mapping)
            .map_err(|unknown_orgs| HttpError::UnmappedOrgs { unknown_orgs })?;
        for (partner, report) in &grouped {
            self.deliver(partner, report, &mut state, now, &mut outcome)
                .await?;
        }
        self.clean_up(clients, &grouped, &mut state, &mut outcome)
            .await?;
        outcome.waiting = state.rows.len();
        Ok(outcome)
    }

    async fn deliver(
        &self,
        partner: &str,
        report: &PartnerReport,
        state: &mut SpoolState,
        now: DateTime<Utc>,
        outcome: &mut ReportOutcome,
    ) -> Result<(), HttpError> {
        let delivered_to = |username: &str, state: &SpoolState| {
            state
                .rows
                .iter()
                .any(|s| s.row.original_username == username && s.delivered.contains(partner))
        };
        let pending = PartnerReport {
            headings: report.headings.clone(),
            rows: report
                .rows
                .iter()
                .filter(|r| !delivered_to(&r.original_username, state))
                .cloned()
                .collect(),
        };
        let learners = pending.rows.len();
        if learners == 0 {
            return Ok(());
        }
        if self.settings.exempt.contains(partner) {
            outcome.exempt.push((partner.to_owned(), learners));
            return Ok(());
        }
        let sinks = match self.contacts.get(partner) {
            Some(sinks) if !sinks.is_empty() => sinks,
            _ => {
                outcome.no_contact.push((partner.to_owned(), learners));
                return Ok(());
            }
        };
        let day = now.date_naive();
        let bytes = bytes::Bytes::from(pending.csv());
        let location = match self.publish(partner, day, bytes).await {
            Ok(location) => location,
            Err(e) => {
                outcome
                    .failed
                    .push((partner.to_owned(), format!("publishing: {e}")));
                return Ok(());
            }
        };
        let delete_on = day + TimeDelta::days(self.settings.retention_days);
        let (subject, text) = announcement(
            &self.settings.platform,
            partner,
            &location,
            learners,
            delete_on,
        );
        for sink in sinks {
            if let Err(e) = sink.send(&subject, &text).await {
                // The report stays; the next run publishes the same bytes under the same
                // name and announces it again.
                outcome
                    .failed
                    .push((partner.to_owned(), format!("announcing: {e}")));
                return Ok(());
            }
        }
        let names: BTreeSet<&str> = pending
            .rows
            .iter()
            .map(|r| r.original_username.as_str())
            .collect();
        for spooled in &mut state.rows {
            if names.contains(spooled.row.original_username.as_str()) {
                spooled.delivered.insert(partner.to_owned());
            }
        }
        self.spool.save(state)?;
        outcome.delivered.push(Delivered {
            partner: partner.to_owned(),
            location,
            learners,
        });
        Ok(())
    }

    /// Writes the CSV under today's name; when that name already holds other rows (an
    /// earlier run today), under `…_YYYY-MM-DD-2.csv`, `-3`, …, never over a delivered
    /// report. The same bytes again (a repeat after a crash) reuse the name.
    async fn publish(
        &self,
        partner: &str,
        day: NaiveDate,
        bytes: bytes::Bytes,
    ) -> Result<String, HttpError> {
        let base = report_name(&self.settings.platform, partner, day);
        let stem = base.trim_end_matches(".csv");
        for n in 1..1000 {
            let name = if n == 1 {
                base.clone()
            } else {
                format!("{stem}-{n}.csv")
            };
            let key = self.output.named_key(&name);
            match self.output.read(&key).await? {
                Some(existing) if existing != bytes => continue,
                _ => return self.output.put_key_verified(&key, bytes).await,
            }
        }
        Err(HttpError::Refused(format!(
            "{base}: 999 reports for one partner on one day already exist"
        )))
    }

    async fn clean_up(
        &self,
        clients: &ServiceClients,
        grouped: &BTreeMap<String, PartnerReport>,
        state: &mut SpoolState,
        outcome: &mut ReportOutcome,
    ) -> Result<(), HttpError> {
        // A row is done once every partner that needs it (exempt ones aside) has it.
        let done: Vec<String> = state
            .rows
            .iter()
            .filter(|s| {
                grouped.iter().all(|(partner, report)| {
                    self.settings.exempt.contains(partner)
                        || s.delivered.contains(partner)
                        || !report
                            .rows
                            .iter()
                            .any(|r| r.original_username == s.row.original_username)
                })
            })
            .map(|s| s.row.original_username.clone())
            .collect();
        if done.is_empty() {
            return Ok(());
        }
        let mut cleaned = Vec::new();
        match cleanup_status(clients, &done).await {
            Ok(status) if (200..300).contains(&status) => cleaned = done,
            Ok(400) => {
                // The LMS refuses a cleanup whole when any name is not being processed — a
                // row an earlier run cleaned up before it could save the spool. One by one,
                // a 400 means exactly that: it is gone already.
                for name in done {
                    match cleanup_status(clients, std::slice::from_ref(&name)).await {
                        Ok(status) if (200..300).contains(&status) || status == 400 => {
                            cleaned.push(name)
                        }
                        Ok(status) => {
                            outcome.cleanup_error = Some(format!(
                                "retirement_partner_report_cleanup answered {status}"
                            ))
                        }
                        Err(e) => outcome.cleanup_error = Some(e.to_string()),
                    }
                }
            }
            Ok(status) => {
                outcome.cleanup_error = Some(format!(
                    "retirement_partner_report_cleanup answered {status}"
                ))
            }
            Err(e) => outcome.cleanup_error = Some(e.to_string()),
        }
        if !cleaned.is_empty() {
            state.remove(&cleaned);
            self.spool.save(state)?;
        }
        outcome.cleaned = cleaned.len();
        Ok(())
    }
}
