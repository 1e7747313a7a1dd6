//! Alerts: delivered to an in-process webhook and SMTP relay, PII-free; deduplicated and
//! rate-limited by the time they are given (a property test over random nights).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use retirement_core::RetirementId;
use retirement_http::Secret;
use retirement_http::alerts::{
    Alert, AlertSink, Alerter, DEFAULT_MIN_INTERVAL, DEFAULT_REPEAT_AFTER, Delivery, FileLedger,
    MemoryLedger, Smtp, SmtpSecurity, Webhook,
};
use retirement_http::fake::sinks::{SmtpSink, WebhookSink};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 2, 0, 0).unwrap()
}

#[tokio::test]
async fn alerts_reach_the_webhook_and_the_smtp_relay() {
    let hook = WebhookSink::start().await.unwrap();
    let smtp = SmtpSink::start().await.unwrap();
    let alerter = Alerter {
        sinks: vec![
            Box::new(Webhook::new(Secret::new(hook.url.clone())).unwrap()),
            Box::new(Smtp {
                host: "127.0.0.1".into(),
                port: smtp.port,
                security: SmtpSecurity::None,
                username: None,
                password: None,
                from: "retire@example.org".into(),
                to: vec!["privacy@example.org".into(), "ops@example.org".into()],
            }),
        ],
        ledger: Box::new(MemoryLedger::default()),
        min_interval: DEFAULT_MIN_INTERVAL,
        repeat_after: DEFAULT_REPEAT_AFTER,
        site: "edx-stage".into(),
    };
    let alerts = [
        Alert::Errored {
            ids: vec![RetirementId(7), RetirementId(9)],
        },
        Alert::Deadlines {
            overdue: 2,
            due_soon: 5,
            within_days: 7,
        },
    ];
    let delivered = alerter.send(&alerts, t0()).await.unwrap();
    assert_eq!(delivered, vec![Delivery::Sent, Delivery::Sent]);
    let posted = hook.received();
    assert_eq!(posted.len(), 2);
    assert_eq!(
        posted[0]["text"],
        "*[edx-stage] retirement: errored*\n2 learner(s) went to ERRORED: retirement 7, 9. See `retire status` or the console."
    );
    let mails = smtp.received();
    assert_eq!(mails.len(), 2);
    assert_eq!(mails[0].to, ["<privacy@example.org>", "<ops@example.org>"]);
    assert!(
        mails[1]
            .data
            .contains("Subject: [edx-stage] retirement: deadlines")
    );
    assert!(
        mails[1]
            .data
            .contains("2 open request(s) overdue, 5 due within 7 days")
    );
    // The same alerts again: duplicates, nothing sent.
    let again = alerter
        .send(&alerts, t0() + TimeDelta::hours(2))
        .await
        .unwrap();
    assert_eq!(again, vec![Delivery::Duplicate, Delivery::Duplicate]);
    assert_eq!(hook.received().len(), 2);
    assert_eq!(smtp.received().len(), 2);
}

#[tokio::test]
async fn a_failing_sink_does_not_stop_the_other_and_the_alert_is_retried() {
    let hook = WebhookSink::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("retire-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = dir.join("alerts.json");
    let make = |sinks: Vec<Box<dyn AlertSink>>| Alerter {
        sinks,
        ledger: Box::new(FileLedger(ledger.clone())),
        min_interval: DEFAULT_MIN_INTERVAL,
        repeat_after: DEFAULT_REPEAT_AFTER,
        site: "s".into(),
    };
    let refused = Alert::Refused {
        message: "Too many learners to retire! Expected 100 or fewer, got 101!".into(),
    };
    // Only a dead relay: failed, and not remembered.
    let dead = make(vec![Box::new(Smtp {
        host: "127.0.0.1".into(),
        port: 1,
        security: SmtpSecurity::None,
        username: None,
        password: None,
        from: "a@example.org".into(),
        to: vec!["b@example.org".into()],
    })]);
    let out = dead
        .send(std::slice::from_ref(&refused), t0())
        .await
        .unwrap();
    assert!(matches!(out[0], Delivery::Failed(_)), "{out:?}");
    // A later process (the ledger is a file) with a working webhook sends it.
    let live = make(vec![Box::new(
        Webhook::new(Secret::new(hook.url.clone())).unwrap(),
    )]);
    let out = live
        .send(std::slice::from_ref(&refused), t0())
        .await
        .unwrap();
    assert_eq!(out, vec![Delivery::Sent]);
    assert_eq!(hook.received().len(), 1);
    // And a third process remembers it was sent.
    let out = make(vec![Box::new(
        Webhook::new(Secret::new(hook.url.clone())).unwrap(),
    )])
    .send(&[refused], t0() + TimeDelta::minutes(10))
    .await
    .unwrap();
    assert_eq!(out, vec![Delivery::Duplicate]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sink that records (kind, time) of what it sent.
#[derive(Debug, Default, Clone)]
struct Recorder(Arc<Mutex<Vec<(String, String)>>>);

#[async_trait::async_trait]
impl AlertSink for Recorder {
    async fn send(&self, subject: &str, text: &str) -> Result<(), retirement_http::HttpError> {
        self.0
            .lock()
            .unwrap()
            .push((subject.to_owned(), text.to_owned()));
        Ok(())
    }
}

fn alert_strategy() -> impl Strategy<Value = Alert> {
    prop_oneof![
        prop::collection::vec(1i64..6, 1..3).prop_map(|ids| Alert::Errored {
            ids: ids.into_iter().map(RetirementId).collect()
        }),
        (0usize..3, 0usize..3).prop_map(|(overdue, due_soon)| Alert::Deadlines {
            overdue,
            due_soon,
            within_days: 7
        }),
        Just(Alert::RunFailed {
            message: "the store failed".into()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Over a random night of runs (minutes apart, each with a few alerts): a kind is sent at
    /// most once per min_interval, a text at most once per repeat_after, every alert is sent,
    /// a duplicate or rate-limited, and what was held back is counted in the next message of
    /// its kind.
    #[test]
    fn alerts_are_deduplicated_and_rate_limited(
        runs in prop::collection::vec((1i64..90, prop::collection::vec(alert_strategy(), 0..4)), 1..40)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let recorder = Recorder::default();
        let alerter = Alerter {
            sinks: vec![Box::new(recorder.clone())],
            ledger: Box::new(MemoryLedger::default()),
            min_interval: TimeDelta::minutes(60),
            repeat_after: TimeDelta::hours(24),
            site: "s".into(),
        };
        let mut now = t0();
        let mut sent: Vec<(DateTime<Utc>, &'static str, String)> = Vec::new();
        let mut held_since_last: std::collections::BTreeMap<&'static str, u32> = Default::default();
        for (gap, alerts) in &runs {
            now += TimeDelta::minutes(*gap);
            let before = recorder.0.lock().unwrap().len();
            let out = runtime.block_on(alerter.send(alerts, now)).unwrap();
            prop_assert_eq!(out.len(), alerts.len());
            let recorded = recorder.0.lock().unwrap()[before..].to_vec();
            let mut next = recorded.iter();
            for (alert, delivery) in alerts.iter().zip(&out) {
                let kind = alert.kind();
                match delivery {
                    Delivery::Sent => {
                        let (subject, text) = next.next().unwrap();
                        prop_assert!(subject.ends_with(kind));
                        prop_assert!(text.starts_with(&alert.text()));
                        for (at, k, t) in &sent {
                            prop_assert!(*k != kind || now - *at >= TimeDelta::minutes(60));
                            prop_assert!(*t != alert.text() || now - *at >= TimeDelta::hours(24));
                        }
                        let held = held_since_last.remove(kind).unwrap_or(0);
                        if held > 0 {
                            let note = format!("({held} similar alert(s) were held back");
                            prop_assert!(text.contains(&note));
                        } else {
                            prop_assert!(!text.contains("held back"));
                        }
                        sent.push((now, kind, alert.text()));
                    }
                    Delivery::Duplicate => {
                        prop_assert!(sent.iter().any(|(at, _, t)| *t == alert.text() && now - *at < TimeDelta::hours(24)));
                    }
                    Delivery::RateLimited => {
                        prop_assert!(sent.iter().any(|(at, k, _)| *k == kind && now - *at < TimeDelta::minutes(60)));
                        *held_since_last.entry(kind).or_default() += 1;
                    }
                    Delivery::Failed(why) => prop_assert!(false, "the recorder never fails: {why}"),
                }
            }
            prop_assert!(next.next().is_none());
        }
    }
}
