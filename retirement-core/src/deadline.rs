//! The statutory deadline of a retirement request, computed purely from `now` (issue 16).
//!
//! GDPR Art. 12(3): one month from receipt, extendable by two further months. A period in
//! months ends on the same date of the later month, or on its last day when that month is
//! shorter (Regulation 1182/71, Art. 3(2)(c)): 31 January is due 28 (or 29) February. CCPA
//! (Cal. Civ. Code § 1798.130): 45 days, extendable once by 45 more. A regime of N days: N days,
//! each extension N more.

use chrono::{DateTime, Months, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Which clock a request runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Regime {
    /// One calendar month, extendable by two.
    Gdpr,
    /// 45 days, extendable by 45.
    Ccpa,
    /// A number of days, each extension as many again.
    Days(u32),
}

impl Regime {
    /// Reads `gdpr`, `ccpa` or a number of days.
    pub fn parse(text: &str) -> Option<Regime> {
        match text.trim().to_ascii_lowercase().as_str() {
            "gdpr" => Some(Regime::Gdpr),
            "ccpa" => Some(Regime::Ccpa),
            other => other
                .parse::<u32>()
                .ok()
                .filter(|d| *d > 0)
                .map(Regime::Days),
        }
    }

    /// How many extensions the statute allows (GDPR and CCPA: one); `None` for a regime of
    /// days, whose extensions the site's own policy limits.
    pub fn max_extensions(self) -> Option<u32> {
        match self {
            Regime::Gdpr | Regime::Ccpa => Some(1),
            Regime::Days(_) => None,
        }
    }

    /// When a request received at `received` is due, after `extensions` extensions (the
    /// statutes allow one; more are counted as the regime's extension each).
    pub fn due(self, received: DateTime<Utc>, extensions: u32) -> DateTime<Utc> {
        match self {
            Regime::Gdpr => received
                .checked_add_months(Months::new(1 + 2 * extensions))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            Regime::Ccpa => received + TimeDelta::days(45 * (1 + i64::from(extensions))),
            Regime::Days(days) => {
                received + TimeDelta::days(i64::from(days) * (1 + i64::from(extensions)))
            }
        }
    }
}

impl std::fmt::Display for Regime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Regime::Gdpr => f.write_str("gdpr"),
            Regime::Ccpa => f.write_str("ccpa"),
            Regime::Days(d) => write!(f, "{d} days"),
        }
    }
}

/// A request's deadline at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Deadline {
    /// When the request was received.
    pub received: DateTime<Utc>,
    /// When it is due.
    pub due: DateTime<Utc>,
    /// Whole calendar days (UTC) from `now`'s date to the due date: 0 on the due day,
    /// negative once overdue.
    pub days_left: i64,
    /// Past the due moment.
    pub overdue: bool,
}

impl Deadline {
    /// The deadline of a request received at `received` under `regime`, seen at `now`.
    pub fn at(
        regime: Regime,
        received: DateTime<Utc>,
        extensions: u32,
        now: DateTime<Utc>,
    ) -> Deadline {
        let due = regime.due(received, extensions);
        Deadline {
            received,
            due,
            days_left: (due.date_naive() - now.date_naive()).num_days(),
            overdue: now > due,
        }
    }

    /// `12 days left`, `due today`, `3 days overdue`.
    pub fn describe(&self) -> String {
        match self.days_left {
            _ if self.overdue && self.days_left >= 0 => "overdue today".to_owned(),
            d if d < 0 => format!("{} days overdue", -d),
            0 => "due today".to_owned(),
            1 => "1 day left".to_owned(),
            d => format!("{d} days left"),
        }
    }
}
