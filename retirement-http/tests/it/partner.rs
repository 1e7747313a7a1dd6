//! The LMS's partner-reporting queue against the fake LMS: the pipeline's stage queues a
//! learner enrolled in an org; the report answers each row once; cleanup removes exactly the
//! rows named, and its refusal never quotes a username.

use chrono::{TimeDelta, Utc};
use retirement_core::{Actor, OriginalIdentity, RetiredIdConfig};
use retirement_http::{LearnerRef, partner};
use retirement_store::{NewRetirement, RetirementStore};

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_is_answered_once_and_cleaned_up_exactly() {
    let states: Vec<String> = [
        "PENDING",
        "ADDING_TO_PARTNER_QUEUE",
        "PARTNER_QUEUE_COMPLETE",
        "ERRORED",
        "ABORTED",
        "COMPLETE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let world = crate::support::lms_world(&states).await;
    let ids = RetiredIdConfig::new(vec!["salt".into()]).unwrap();
    let mut queued = Vec::new();
    for n in 0..3 {
        let original = OriginalIdentity {
            username: format!("Partner.Learner{n}"),
            email: format!("partner.learner{n}@example.com"),
            name: format!("Partner Person {n}"),
        };
        let r = world
            .store
            .enqueue(
                NewRetirement::new(original.clone(), Some(100 + n), &ids),
                Utc::now() - TimeDelta::days(30),
            )
            .await
            .unwrap();
        world
            .store
            .advance(
                r.id(),
                None,
                "ADDING_TO_PARTNER_QUEUE",
                "",
                Actor::Driver,
                Utc::now(),
            )
            .await
            .unwrap();
        // Learner 2 is enrolled in no org: upstream queues nobody for it.
        if n < 2 {
            world
                .fake
                .set_partner_orgs(&original.username, &["MITx", "HarvardX"]);
        }
        let retired = world.store.get(r.id()).await.unwrap();
        let outcome = world
            .clients
            .call("LMS", "retirement_partner_queue", &LearnerRef::of(&retired))
            .await
            .unwrap();
        assert!(
            matches!(
                outcome,
                retirement_http::CallOutcome::Response { status: 204, .. }
            ),
            "{outcome:?}"
        );
        queued.push(original);
    }
    let rows = partner::fetch(&world.clients).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].original_username, "Partner.Learner0");
    assert_eq!(rows[0].original_email, "partner.learner0@example.com");
    assert_eq!(rows[0].orgs, ["MITx", "HarvardX"]);
    assert_eq!(rows[0].user_id, 100);
    assert!(!format!("{:?}", rows[0]).contains("Partner.Learner0"));
    // Answered once: now being processed.
    assert!(partner::fetch(&world.clients).await.unwrap().is_empty());
    assert_eq!(world.fake.partner_rows().len(), 2);

    // A cleanup naming a row that is not being processed is refused whole, without names.
    let err = partner::cleanup(
        &world.clients,
        &["Partner.Learner0".to_owned(), "Partner.Learner2".to_owned()],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("answered 400"), "{err}");
    assert!(!err.to_string().contains("Partner.Learner"), "{err}");
    assert_eq!(world.fake.partner_rows().len(), 2);
    // Exactly the delivered row.
    partner::cleanup(&world.clients, &["Partner.Learner0".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        world.fake.partner_rows(),
        vec![("Partner.Learner1".to_owned(), true)]
    );
    partner::cleanup(&world.clients, &[]).await.unwrap();
}

fn row(user_id: i64, orgs: &[&str], config: Option<(&str, &[&str])>) -> partner::PartnerRow {
    partner::PartnerRow {
        user_id,
        student_id: config.map(|_| format!("ext-{user_id}")),
        original_username: format!("learner{user_id}"),
        original_email: format!("learner{user_id}@example.com"),
        original_name: format!("Learner, \"{user_id}\""),
        orgs: orgs.iter().map(|o| o.to_string()).collect(),
        orgs_config: config
            .map(|(org, headings)| {
                vec![partner::OrgConfig {
                    org: org.to_owned(),
                    field_headings: headings.iter().map(|h| h.to_string()).collect(),
                }]
            })
            .unwrap_or_default(),
        created: format!("2026-11-0{user_id}T10:00:00Z"),
    }
}

#[test]
fn rows_group_by_partner_into_csvs_with_upstreams_headings() {
    let mapping: std::collections::BTreeMap<String, Vec<String>> = [
        ("MITx", vec!["MIT"]),
        ("HarvardX", vec!["Harvard", "edX Consortium"]),
        ("mb_coaching", vec!["Coaching"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    let rows = vec![
        row(1, &["MITx", "HarvardX"], None),
        row(2, &["HarvardX"], None),
        row(
            3,
            &[],
            Some((
                "mb_coaching",
                &[
                    "student_id",
                    "original_email",
                    "original_name",
                    "deletion_completed",
                ],
            )),
        ),
    ];
    let reports = partner::group_by_partner(&rows, &mapping).unwrap();
    let csvs: std::collections::BTreeMap<&str, String> =
        reports.iter().map(|(p, r)| (p.as_str(), r.csv())).collect();
    insta::assert_yaml_snapshot!(csvs);
    // An org the mapping does not name refuses the whole report, naming the org only.
    let unknown =
        partner::group_by_partner(&[row(4, &["UnknownX", "MITx"], None)], &mapping).unwrap_err();
    assert_eq!(unknown, ["UnknownX"]);
}

/// The partner-report run's world: the fake LMS's queue, two contact sinks, an output
/// folder and a spool.
struct Reporting {
    world: crate::support::LmsWorld,
    hook: retirement_http::fake::sinks::WebhookSink,
    smtp: retirement_http::fake::sinks::SmtpSink,
    out: crate::support::TempDir,
    output: retirement_http::archive::ArchiveTarget,
    spool: partner::Spool,
    settings: partner::PartnerSettings,
}

fn original(n: i64) -> OriginalIdentity {
    OriginalIdentity {
        username: format!("Reported.Learner{n}"),
        email: format!("reported.learner{n}@example.com"),
        name: format!("Reported Person {n}"),
    }
}

impl Reporting {
    async fn new() -> Reporting {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let world = crate::support::lms_world(&[]).await;
        // The queue's `created` (the CSV's deletion_completed) is the fake LMS's time.
        world
            .fake
            .clock()
            .set(Some("2026-12-03T17:30:00Z".parse().unwrap()));
        let out = crate::support::TempDir(
            std::env::temp_dir().join(format!("retire-partner-{}-{n}", std::process::id())),
        );
        let output = retirement_http::archive::ArchiveTarget::open_location(
            out.0.join("reports").to_str().unwrap(),
            false,
        )
        .unwrap();
        let spool = partner::Spool::new(out.0.join("spool").join("partner-spool.json"));
        let mapping = [
            ("MITx", vec!["MIT"]),
            ("HarvardX", vec!["Harvard", "edX Consortium"]),
            ("mb_coaching", vec!["Coaching"]),
            ("OpenOrg", vec!["Open Partner"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect();
        Reporting {
            world,
            hook: retirement_http::fake::sinks::WebhookSink::start()
                .await
                .unwrap(),
            smtp: retirement_http::fake::sinks::SmtpSink::start()
                .await
                .unwrap(),
            out,
            output,
            spool,
            settings: partner::PartnerSettings {
                mapping,
                platform: "Example Learning".into(),
                exempt: ["Open Partner".to_owned()].into(),
                retention_days: partner::DEFAULT_RETENTION_DAYS,
            },
        }
    }

    /// Four learners: MITx+HarvardX, HarvardX, mb_coaching (own headings), OpenOrg (exempt).
    fn queue_four(&self) {
        let fake = &self.world.fake;
        fake.queue_partner_row(1, &original(1), &["MITx", "HarvardX"], &[]);
        fake.queue_partner_row(2, &original(2), &["HarvardX"], &[]);
        fake.queue_partner_row(
            3,
            &original(3),
            &[],
            &[(
                "mb_coaching",
                &[
                    "student_id",
                    "original_email",
                    "original_name",
                    "deletion_completed",
                ],
            )],
        );
        fake.queue_partner_row(4, &original(4), &["OpenOrg"], &[]);
    }

    /// MIT and edX Consortium by webhook, Harvard by email, Coaching by email unless
    /// `coaching` is false.
    fn contacts(&self, coaching: bool) -> partner::Contacts {
        use retirement_http::alerts::{AlertSink, Smtp, SmtpSecurity, Webhook};
        let hook = || -> Vec<Box<dyn AlertSink>> {
            vec![Box::new(
                Webhook::new(retirement_http::Secret::new(self.hook.url.clone())).unwrap(),
            )]
        };
        let mail = |to: &str| -> Vec<Box<dyn AlertSink>> {
            vec![Box::new(Smtp {
                host: "127.0.0.1".into(),
                port: self.smtp.port,
                security: SmtpSecurity::None,
                username: None,
                password: None,
                from: "privacy@example.org".into(),
                to: vec![to.to_owned()],
            })]
        };
        let mut contacts = partner::Contacts::new();
        contacts.insert("MIT".into(), hook());
        contacts.insert("edX Consortium".into(), hook());
        contacts.insert("Harvard".into(), mail("gdpr@harvard.example"));
        if coaching {
            contacts.insert("Coaching".into(), mail("privacy@coaching.example"));
        }
        contacts
    }

    async fn run(
        &self,
        contacts: &partner::Contacts,
        now: chrono::DateTime<Utc>,
    ) -> partner::ReportOutcome {
        self.reporter(contacts)
            .run(&self.world.clients, now)
            .await
            .unwrap()
    }

    fn reporter<'a>(&'a self, contacts: &'a partner::Contacts) -> partner::PartnerReporter<'a> {
        partner::PartnerReporter {
            settings: &self.settings,
            contacts,
            output: &self.output,
            spool: &self.spool,
        }
    }

    /// Every report: its name and contents.
    async fn reports(&self) -> Vec<(String, String)> {
        let objects = self.output.objects().await.unwrap();
        objects
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.to_vec()).unwrap()))
            .collect()
    }

    /// Every announcement, as `to: subject / text`, with the output folder shown as `<out>`.
    fn announcements(&self) -> Vec<String> {
        let out = self.out.0.display().to_string();
        let mut all: Vec<String> = self
            .hook
            .received()
            .iter()
            .map(|b| format!("webhook: {}", b["text"].as_str().unwrap()))
            .collect();
        for mail in self.smtp.received() {
            all.push(format!(
                "{}: {}\n{}",
                mail.to.join(","),
                mail.header("Subject").unwrap_or_default(),
                mail.text().trim_end()
            ));
        }
        all.into_iter().map(|a| a.replace(&out, "<out>")).collect()
    }
}

fn report_day() -> chrono::DateTime<Utc> {
    "2026-12-04T09:00:00Z".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_partner_gets_its_report_announced_then_exactly_those_rows_are_cleaned_up() {
    let r = Reporting::new().await;
    r.queue_four();
    let contacts = r.contacts(true);
    let outcome = r.run(&contacts, report_day()).await;
    assert_eq!((outcome.fetched, outcome.carried), (4, 0));
    let partners: Vec<(&str, usize)> = outcome
        .delivered
        .iter()
        .map(|d| (d.partner.as_str(), d.learners))
        .collect();
    assert_eq!(
        partners,
        [
            ("Coaching", 1),
            ("Harvard", 2),
            ("MIT", 1),
            ("edX Consortium", 2)
        ]
    );
    // The exempt partner gets nothing, and its learner is not held for it.
    assert_eq!(outcome.exempt, [("Open Partner".to_owned(), 1)]);
    assert!(
        outcome.no_contact.is_empty() && outcome.failed.is_empty(),
        "{outcome:?}"
    );
    assert_eq!((outcome.cleaned, outcome.waiting), (4, 0));
    assert!(r.world.fake.partner_rows().is_empty());
    assert!(r.spool.load().unwrap().rows.is_empty());
    // Reports hold personal data: owner-only.
    #[cfg(unix)]
    for entry in std::fs::read_dir(r.out.0.join("reports")).unwrap() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = entry.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
    insta::assert_yaml_snapshot!("partner_reports", r.reports().await);
    let announcements = r.announcements();
    // Announcements name partners and places, never a learner.
    for a in &announcements {
        assert!(!a.contains("Reported"), "{a}");
        assert!(!a.contains("reported.learner"), "{a}");
    }
    let mut sorted = announcements.clone();
    sorted.sort();
    insta::assert_yaml_snapshot!("partner_announcements", sorted);
    // Nothing is left to do: a second run fetches nothing and announces nothing.
    let again = r.run(&contacts, report_day()).await;
    assert_eq!(again, partner::ReportOutcome::default());
    assert_eq!(r.announcements().len(), announcements.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_without_contact_waits_after_the_others_are_delivered() {
    let r = Reporting::new().await;
    r.queue_four();
    let without = r.contacts(false);
    let outcome = r.run(&without, report_day()).await;
    assert_eq!(outcome.no_contact, [("Coaching".to_owned(), 1)]);
    assert_eq!(outcome.delivered.len(), 3, "{outcome:?}");
    // Everyone but the coaching learner is cleaned up; that one waits in the spool and in
    // the LMS (being processed), and no report was written for Coaching.
    assert_eq!((outcome.cleaned, outcome.waiting), (3, 1));
    assert_eq!(
        r.world.fake.partner_rows(),
        [("Reported.Learner3".to_owned(), true)]
    );
    assert!(
        r.reports()
            .await
            .iter()
            .all(|(k, _)| !k.contains("Coaching"))
    );
    // The spool holds the waiting learner's originals: owner-only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(r.spool.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
    let announced = r.announcements().len();
    // Once Coaching has a contact, the next run delivers it alone.
    let with = r.contacts(true);
    let next = r.run(&with, report_day()).await;
    assert_eq!((next.fetched, next.carried), (0, 1));
    assert_eq!(next.delivered.len(), 1);
    assert_eq!(next.delivered[0].partner, "Coaching");
    assert_eq!((next.cleaned, next.waiting), (1, 0));
    assert_eq!(r.announcements().len(), announced + 1);
    assert!(r.world.fake.partner_rows().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmapped_org_stops_before_anything_is_written_and_the_rows_wait() {
    let r = Reporting::new().await;
    r.queue_four();
    r.world
        .fake
        .queue_partner_row(5, &original(5), &["UnknownX"], &[]);
    let contacts = r.contacts(true);
    let err = r
        .reporter(&contacts)
        .run(&r.world.clients, report_day())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UnknownX"), "{err}");
    assert!(!err.to_string().contains("Reported"), "{err}");
    assert!(r.reports().await.is_empty());
    assert!(r.announcements().is_empty());
    // The LMS answered the rows once; they are safe in the spool.
    assert_eq!(r.spool.load().unwrap().rows.len(), 5);
    assert!(partner::fetch(&r.world.clients).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_step_is_safe_to_repeat() {
    let r = Reporting::new().await;
    r.queue_four();
    let contacts = r.contacts(true);
    // 1. The LMS's cleanup fails after every report went out: the rows wait, delivered.
    r.world.fake.set_fault(
        "/api/user/v1/accounts/retirement_partner_report_cleanup/",
        Some(retirement_http::fake::Fault {
            status: Some(503),
            ..Default::default()
        }),
    );
    let first = r.run(&contacts, report_day()).await;
    assert_eq!(first.delivered.len(), 4);
    assert!(
        first.cleanup_error.as_deref().unwrap().contains("503"),
        "{first:?}"
    );
    assert_eq!((first.cleaned, first.waiting), (0, 4));
    let announced = r.announcements().len();
    let spooled = std::fs::read(r.spool.path()).unwrap();
    // 2. The next run announces nothing again and cleans them up.
    r.world.fake.set_fault(
        "/api/user/v1/accounts/retirement_partner_report_cleanup/",
        None,
    );
    let second = r.run(&contacts, report_day()).await;
    assert!(second.delivered.is_empty(), "{second:?}");
    assert_eq!((second.cleaned, second.waiting), (4, 0));
    assert_eq!(r.announcements().len(), announced);
    // 3. A run that died after that cleanup but before saving its spool: the LMS refuses
    // the names it no longer holds, which are dropped as cleaned up already.
    std::fs::write(r.spool.path(), &spooled).unwrap();
    let third = r.run(&contacts, report_day()).await;
    assert!(third.cleanup_error.is_none(), "{third:?}");
    assert_eq!((third.cleaned, third.waiting), (4, 0));
    assert_eq!(r.announcements().len(), announced);
    // 4. A publication that fails (an S3 endpoint nobody listens on) leaves the fetched rows
    // spooled and undelivered; the next run with a working output delivers them.
    r.world
        .fake
        .queue_partner_row(6, &original(6), &["MITx"], &[]);
    let dead = crate::support::unreachable_s3("s3://reports");
    let failing = partner::PartnerReporter {
        output: &dead,
        ..r.reporter(&contacts)
    };
    let fourth = failing.run(&r.world.clients, report_day()).await.unwrap();
    assert_eq!(fourth.failed.len(), 1, "{fourth:?}");
    assert_eq!(fourth.failed[0].0, "MIT");
    assert_eq!((fourth.cleaned, fourth.waiting), (0, 1));
    let fifth = r.run(&contacts, report_day()).await;
    assert_eq!(fifth.delivered.len(), 1);
    assert_eq!((fifth.cleaned, fifth.waiting), (1, 0));
    // The same day's second MIT report does not overwrite the first.
    let names: Vec<String> = r.reports().await.into_iter().map(|(k, _)| k).collect();
    assert!(
        names.contains(&"user_retirement_Example Learning_MIT_2026-12-04.csv".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"user_retirement_Example Learning_MIT_2026-12-04-2.csv".to_owned()),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_warns_recipients_once_then_deletes_expired_reports() {
    let r = Reporting::new().await;
    let contacts = r.contacts(true);
    let day = |d: &str| -> chrono::NaiveDate { d.parse().unwrap() };
    // Reports published on four days, and a file that is not a report.
    for (partner, published) in [
        ("MIT", "2026-09-01"),
        ("Harvard", "2026-10-01"),
        ("Coaching", "2026-10-10"),
        ("Nobody Knows", "2026-09-02"),
    ] {
        let name = partner::report_name("Example Learning", partner, day(published));
        r.output
            .put_key_verified(
                &r.output.named_key(&name),
                bytes::Bytes::from_static(b"h\n"),
            )
            .await
            .unwrap();
    }
    r.output
        .put_key_verified(
            &r.output.named_key("notes.txt"),
            bytes::Bytes::from_static(b"x"),
        )
        .await
        .unwrap();
    let now: chrono::DateTime<Utc> = "2026-11-26T08:00:00Z".parse().unwrap();
    let reporter = r.reporter(&contacts);
    let first = reporter.prune(60, 7, now).await.unwrap();
    // MIT's (due 2026-10-31) was never warned: announced as deleted today, then deleted.
    // Harvard's (due 2026-11-30) is within the 7 days: warned. Coaching's (2026-12-09) is
    // kept. Nobody Knows has no contact: deleted on time, reported.
    let folder = r.out.0.join("reports").canonicalize().unwrap();
    let location = |partner: &str, published: &str| {
        format!(
            "file://{}/user_retirement_Example Learning_{partner}_{published}.csv",
            folder.display()
        )
    };
    assert_eq!(
        first.warned,
        [
            (location("Harvard", "2026-10-01"), day("2026-11-30")),
            (location("MIT", "2026-09-01"), day("2026-10-31")),
        ]
    );
    assert_eq!(first.deleted.len(), 2, "{first:?}");
    assert!(
        first
            .deleted
            .iter()
            .any(|l| l.ends_with("MIT_2026-09-01.csv"))
    );
    assert!(
        first
            .deleted
            .iter()
            .any(|l| l.ends_with("Nobody Knows_2026-09-02.csv"))
    );
    assert_eq!(first.no_contact.len(), 1);
    assert_eq!(first.kept, 1);
    let sent = r.announcements();
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter().any(|a| a.contains("is deleted today")),
        "{sent:?}"
    );
    assert!(
        sent.iter()
            .any(|a| a.contains("will be deleted on 2026-11-30")),
        "{sent:?}"
    );
    // The next day: nobody is warned twice.
    let next = reporter
        .prune(60, 7, now + TimeDelta::days(1))
        .await
        .unwrap();
    assert!(
        next.warned.is_empty() && next.deleted.is_empty(),
        "{next:?}"
    );
    assert_eq!(next.kept, 2);
    assert_eq!(r.announcements().len(), 2);
    // Harvard's day comes: deleted without another message; Coaching's warning is due.
    let later = reporter
        .prune(60, 7, "2026-12-02T08:00:00Z".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(later.deleted.len(), 1);
    assert!(later.deleted[0].ends_with("Harvard_2026-10-01.csv"));
    assert_eq!(later.warned.len(), 1);
    assert_eq!(later.warned[0].1, day("2026-12-09"));
    let names: Vec<String> = r.reports().await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        [
            "notes.txt",
            "user_retirement_Example Learning_Coaching_2026-10-10.csv"
        ]
    );
    assert_eq!(r.announcements().len(), 3);
}

#[test]
fn report_names_parse_back_and_others_do_not() {
    let day: chrono::NaiveDate = "2026-12-04".parse().unwrap();
    let name = partner::report_name("edX", "Under_Score Partner", day);
    assert_eq!(
        name,
        "user_retirement_edX_Under_Score Partner_2026-12-04.csv"
    );
    assert_eq!(
        partner::parse_report_name("edX", &name),
        Some(("Under_Score Partner".to_owned(), day))
    );
    assert_eq!(
        partner::parse_report_name("edX", "user_retirement_edX_MIT_2026-12-04-2.csv"),
        Some(("MIT".to_owned(), day))
    );
    for other in [
        "user_retirement_other_MIT_2026-12-04.csv",
        "user_retirement_edX_MIT_2026-13-04.csv",
        "user_retirement_edX_MIT_2026-12-04-x.csv",
        "user_retirement_edX__2026-12-04.csv",
        "user_retirement_edX_MIT_2026-12-04.txt",
        "notes.txt",
    ] {
        assert_eq!(partner::parse_report_name("edX", other), None, "{other}");
    }
    assert_eq!(
        partner::report_name("a/b", "c\\d", day),
        "user_retirement_a-b_c-d_2026-12-04.csv"
    );
}

#[test]
fn a_damaged_spool_is_refused_without_quoting_it() {
    let dir = crate::support::TempDir(
        std::env::temp_dir().join(format!("retire-spool-{}", std::process::id())),
    );
    std::fs::create_dir_all(&dir.0).unwrap();
    let spool = partner::Spool::new(dir.0.join("spool.json"));
    // A user_id that is an email: serde would quote it.
    std::fs::write(
        spool.path(),
        r#"{"rows": [{"row": {"user_id": "someone@example.com"}}]}"#,
    )
    .unwrap();
    let err = spool.load().unwrap_err().to_string();
    assert!(err.contains("not a spool (line 1"), "{err}");
    assert!(!err.contains("someone"), "{err}");
}
