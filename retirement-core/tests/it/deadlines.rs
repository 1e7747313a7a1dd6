//! The deadline arithmetic (issue 16): month ends, leap years, extensions, days left.

use chrono::{DateTime, Datelike, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use retirement_core::{Deadline, Regime};

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 9, 30, 0).unwrap()
}

#[test]
fn a_month_ends_on_the_same_date_or_the_last_day_of_a_shorter_month() {
    assert_eq!(Regime::Gdpr.due(at(2026, 3, 15), 0), at(2026, 4, 15));
    assert_eq!(Regime::Gdpr.due(at(2026, 1, 31), 0), at(2026, 2, 28));
    assert_eq!(
        Regime::Gdpr.due(at(2024, 1, 31), 0),
        at(2024, 2, 29),
        "leap year"
    );
    assert_eq!(Regime::Gdpr.due(at(2026, 12, 31), 0), at(2027, 1, 31));
    // Extended by two further months: three from receipt.
    assert_eq!(Regime::Gdpr.due(at(2026, 11, 30), 1), at(2027, 2, 28));
    assert_eq!(Regime::Ccpa.due(at(2026, 1, 1), 0), at(2026, 2, 15));
    assert_eq!(Regime::Ccpa.due(at(2026, 1, 1), 1), at(2026, 4, 1));
    assert_eq!(Regime::Days(30).due(at(2026, 1, 1), 0), at(2026, 1, 31));
    assert_eq!(Regime::parse("GDPR"), Some(Regime::Gdpr));
    assert_eq!(Regime::parse("ccpa"), Some(Regime::Ccpa));
    assert_eq!(Regime::parse("21"), Some(Regime::Days(21)));
    assert_eq!(Regime::parse("0"), None);
    assert_eq!(Regime::parse("a month"), None);
}

#[test]
fn days_left_count_calendar_days_and_overdue_is_past_the_due_moment() {
    let received = at(2026, 1, 31);
    let on = |y, m, d, h| Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap();
    let d = Deadline::at(Regime::Gdpr, received, 0, on(2026, 2, 18, 12));
    assert_eq!(
        (d.days_left, d.overdue, d.describe().as_str()),
        (10, false, "10 days left")
    );
    let d = Deadline::at(Regime::Gdpr, received, 0, on(2026, 2, 28, 8));
    assert_eq!(
        (d.days_left, d.overdue, d.describe().as_str()),
        (0, false, "due today")
    );
    let d = Deadline::at(Regime::Gdpr, received, 0, on(2026, 2, 28, 10));
    assert_eq!(
        (d.days_left, d.overdue, d.describe().as_str()),
        (0, true, "overdue today")
    );
    let d = Deadline::at(Regime::Gdpr, received, 0, on(2026, 3, 3, 10));
    assert_eq!((d.days_left, d.describe().as_str()), (-3, "3 days overdue"));
}

fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
    // 1990 to 2100, to the second.
    (631_152_000i64..4_102_444_800).prop_map(|s| Utc.timestamp_opt(s, 0).unwrap())
}

proptest! {
    #[test]
    fn a_gdpr_month_is_28_to_31_days_on_the_same_date_or_the_month_end(received in any_time()) {
        let due = Regime::Gdpr.due(received, 0);
        let days = (due - received).num_days();
        prop_assert!((28..=31).contains(&days), "{received} -> {due}");
        prop_assert_eq!(due.time(), received.time());
        let next = if received.month() == 12 { 1 } else { received.month() + 1 };
        prop_assert_eq!(due.month(), next);
        let month_end = (due + TimeDelta::days(1)).month() != due.month();
        prop_assert!(due.day() == received.day() || (month_end && due.day() < received.day()));
    }

    #[test]
    fn extensions_only_move_the_due_date_later(received in any_time(), regime in prop_oneof![
        Just(Regime::Gdpr), Just(Regime::Ccpa), (1u32..400).prop_map(Regime::Days)
    ]) {
        let base = regime.due(received, 0);
        let extended = regime.due(received, 1);
        prop_assert!(base > received && extended > base);
        if regime == Regime::Ccpa {
            prop_assert_eq!(extended - base, TimeDelta::days(45));
        }
        if regime == Regime::Gdpr {
            // Two further months: the month-end rule applies to the whole three.
            let days = (extended - received).num_days();
            prop_assert!((89..=92).contains(&days), "{received} -> {extended}");
        }
    }

    #[test]
    fn days_left_never_grow_as_time_passes(received in any_time(), a in 0i64..200, b in 0i64..200) {
        let (early, late) = (a.min(b), a.max(b));
        let d1 = Deadline::at(Regime::Gdpr, received, 0, received + TimeDelta::days(early));
        let d2 = Deadline::at(Regime::Gdpr, received, 0, received + TimeDelta::days(late));
        prop_assert!(d2.days_left <= d1.days_left);
        prop_assert!(!d1.overdue || d2.overdue);
    }
}
