//! `retire partner-report prune`: published reports hold personal data and are kept only
//! `age_days` (60 by default). Each report's recipients are warned once, `warn_days` before
//! its deletion day; on that day it is deleted. A report whose recipients were never warned
//! (prune did not run in the window) is announced as deleted today and deleted all the same:
//! the retention limit is the duty, the warning a courtesy.
//!
//! A report's day is the one in its name (`user_retirement_{platform}_{partner}_{YYYY-MM-DD}
//! [-N].csv`), which this tool wrote; files with other names are never touched.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::Serialize;

use super::report::{PartnerReporter, lock};
use crate::error::HttpError;

/// What a prune did. Locations and partners only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneOutcome {
    /// Reports whose recipients were warned now, with their deletion day.
    pub warned: Vec<(String, NaiveDate)>,
    /// Reports deleted.
    pub deleted: Vec<String>,
    /// Reports kept (not yet due, or already warned).
    pub kept: usize,
    /// Reports whose partner has no point of contact to warn (deleted on time all the same).
    pub no_contact: Vec<String>,
    /// Warnings or deletions that failed, and why (retried next prune).
    pub failed: Vec<(String, String)>,
}

/// A report name's partner and day, if it is one of `platform`'s reports.
pub fn parse_report_name(platform: &str, name: &str) -> Option<(String, NaiveDate)> {
    let platform = platform.replace(['/', '\\'], "-");
    let rest = name
        .strip_prefix("user_retirement_")?
        .strip_prefix(platform.as_str())?
        .strip_prefix('_')?
        .strip_suffix(".csv")?;
    let (partner, day) = rest.rsplit_once('_')?;
    let date = day.get(..10)?;
    let suffix = &day[10..];
    if !(suffix.is_empty()
        || suffix
            .strip_prefix('-')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
    {
        return None;
    }
    let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    (!partner.is_empty()).then(|| (partner.to_owned(), day))
}

fn warning(
    platform: &str,
    location: &str,
    delete_on: NaiveDate,
    today: NaiveDate,
) -> (String, String) {
    let when = if delete_on <= today {
        "is deleted today".to_owned()
    } else {
        format!("will be deleted on {}", delete_on.format("%Y-%m-%d"))
    };
    (
        format!("{platform}: a learner retirement report {when}"),
        format!(
            "The learner retirement report at:\n{location}\n{when}, as the retention of \
             personal data requires. Make sure the learners in it have been erased from your \
             systems; keep no copy of the report."
        ),
    )
}

impl PartnerReporter<'_> {
    /// Warns and deletes published reports (see the module docs).
    pub async fn prune(
        &self,
        age_days: i64,
        warn_days: i64,
        now: DateTime<Utc>,
    ) -> Result<PruneOutcome, HttpError> {
        if age_days < 1 || warn_days < 0 {
            return Err(HttpError::Refused(
                "the age must be at least one day and the warning not negative".into(),
            ));
        }
        let _lock = lock(self.spool)?;
        let mut state = self.spool.load()?;
        let today = now.date_naive();
        let platform = &self.settings.platform;
        let mut outcome = PruneOutcome::default();
        let mut listed = Vec::new();
        for key in self.output.keys().await? {
            let Some(name) = key.filename() else { continue };
            let Some((partner, day)) = parse_report_name(platform, name) else {
                continue;
            };
            let location = self.output.location(&key);
            listed.push(location.clone());
            let delete_on = day + TimeDelta::days(age_days);
            let due = delete_on <= today;
            let warn_now = !state.warned.contains_key(&location)
                && (due || delete_on - TimeDelta::days(warn_days) <= today);
            if warn_now {
                let sinks = self.contacts.get(&partner).filter(|s| !s.is_empty());
                match sinks {
                    None => outcome.no_contact.push(location.clone()),
                    Some(sinks) => {
                        let (subject, text) = warning(platform, &location, delete_on, today);
                        let mut sent = true;
                        for sink in sinks {
                            if let Err(e) = sink.send(&subject, &text).await {
                                outcome
                                    .failed
                                    .push((location.clone(), format!("warning: {e}")));
                                sent = false;
                                break;
                            }
                        }
                        if sent {
                            state.warned.insert(location.clone(), delete_on);
                            outcome.warned.push((location.clone(), delete_on));
                        }
                    }
                }
            }
            if due {
                match self.output.delete(&key).await {
                    Ok(()) => {
                        state.warned.remove(&location);
                        outcome.deleted.push(location);
                    }
                    Err(e) => outcome.failed.push((location, format!("deleting: {e}"))),
                }
            } else if !warn_now {
                outcome.kept += 1;
            }
        }
        // Reports deleted by other hands need no warning any more.
        state.warned.retain(|location, _| listed.contains(location));
        self.spool.save(&state)?;
        Ok(outcome)
    }
}
