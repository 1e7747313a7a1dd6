//! The expiry pass, the PII job and the retirement scrub on enterprise-access's own database
//! (MariaDB, upstream's reference schema, and a copy whose history UUID columns are
//! `char(32)`), with the fake enterprise-catalog, enterprise-subsidy and token endpoint on
//! loopback. After every scrub a scan of every text column of every table finds no trace of
//! the scrubbed email.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use assignment_expiry::{Policy, PolicyKind, Reason};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use retirement_core::RetryPolicy;
use retirement_http::expiry::{self, BrazeConfig, EnterpriseServices, Notifications, PassOptions};
use retirement_http::fake::{FakeConfig, FakeEdx, Fault};
use retirement_http::{ClientCredentials, HttpOptions, ServiceClients};
use retirement_store::enterprise_access::EnterpriseAccessStore;
use retirement_store::testdb::{
    TestDatabase, enterprise_access_database, mysql_lines, mysql_text_columns_containing,
};
use retirement_store::{AssignmentStore, DieselStore, ExpiryWrite, Scan, StoreError, StoreOptions};

const LIVE: &str = "content_assignments_learnercontentassignment";
const HISTORY: &str = "content_assignments_historicallearnercontentassignment";
const CATALOG: &str = "11111111-1111-4111-8111-111111111111";
const OTHER_CATALOG: &str = "22222222-2222-4222-8222-222222222222";
const SUBSIDY: &str = "33333333-3333-4333-8333-333333333333";
const EXPIRED_SUBSIDY: &str = "44444444-4444-4444-8444-444444444444";
const CUSTOMER: &str = "55555555-5555-4555-8555-555555555555";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap()
}

fn uuid(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

fn sql_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

fn days_ago(days: i64) -> DateTime<Utc> {
    now() - TimeDelta::days(days)
}

struct World {
    db: Option<TestDatabase>,
    hex: bool,
    sql: Arc<DieselStore>,
    store: EnterpriseAccessStore,
    fake: FakeEdx,
    services: EnterpriseServices,
    next_user: std::sync::atomic::AtomicI64,
}

impl World {
    async fn new(hex: bool) -> Option<World> {
        let db = enterprise_access_database(hex).await?;
        let sql = Arc::new(
            DieselStore::open(&db.url, &StoreOptions::default())
                .await
                .unwrap(),
        );
        let store = EnterpriseAccessStore::open(sql.clone()).await.unwrap();
        let fake = FakeEdx::start(FakeConfig::default()).await.unwrap();
        let services = services_of(&fake, None);
        fake.set_subsidy(SUBSIDY, serde_json::json!({"uuid": SUBSIDY, "expiration_datetime": "2030-01-01T00:00:00Z", "is_active": true}));
        fake.set_subsidy(EXPIRED_SUBSIDY, serde_json::json!({"uuid": EXPIRED_SUBSIDY, "expiration_datetime": "2026-10-01T00:00:00Z", "is_active": false}));
        Some(World {
            db: Some(db),
            hex,
            sql,
            store,
            fake,
            services,
            next_user: std::sync::atomic::AtomicI64::new(1),
        })
    }

    async fn exec(&self, script: &str) {
        self.sql.execute_mysql_script(script).await.unwrap();
    }

    /// An active (or not) configuration with a policy on `catalog` and `subsidy`.
    async fn configuration(&self, n: u64, active: bool, catalog: &str, subsidy: &str) -> String {
        let c = uuid(1000 + n);
        let p = uuid(2000 + n);
        let t = sql_time(days_ago(400));
        self.exec(&format!(
            "INSERT INTO content_assignments_assignmentconfiguration (created, modified, uuid, active, enterprise_customer_uuid) \
             VALUES ('{t}', '{t}', '{c}', {}, '{CUSTOMER}'); \
             INSERT INTO subsidy_access_policy_subsidyaccesspolicy (created, modified, policy_type, uuid, description, active, \
               catalog_uuid, subsidy_uuid, access_method, enterprise_customer_uuid, assignment_configuration_id, retired) \
             VALUES ('{t}', '{t}', 'AssignedLearnerCreditAccessPolicy', '{p}', '', 1, '{catalog}', '{subsidy}', 'assigned', \
               '{CUSTOMER}', '{c}', 0)",
            i32::from(active)
        ))
        .await;
        c
    }

    fn history_uuid(&self, u: &str) -> String {
        if self.hex {
            u.replace('-', "")
        } else {
            u.to_owned()
        }
    }

    /// An assignment row and the `'+'` history row its creation left.
    async fn assignment(&self, a: &Row<'_>) {
        let t = sql_time(a.allocated_at);
        let opt = |v: Option<&str>| v.map(|v| format!("'{v}'")).unwrap_or_else(|| "NULL".into());
        let user = a
            .lms_user_id
            .map(|u| u.to_string())
            .unwrap_or_else(|| "NULL".into());
        let values = |id: &str, cfg: &str| {
            format!(
                "'{t}', '{t}', '{id}', '{}', {user}, '{}', -1000, '{}', '{cfg}', 'A course', '{t}', {}, {}",
                a.email,
                a.content_key,
                a.state,
                opt(a.preferred_run),
                opt(a.parent_key),
            )
        };
        self.exec(&format!(
            "INSERT INTO {LIVE} (created, modified, uuid, learner_email, lms_user_id, content_key, content_quantity, state, \
               assignment_configuration_id, content_title, allocated_at, preferred_course_run_key, parent_content_key, is_assigned_course_run) \
             VALUES ({}, 0); \
             INSERT INTO {HISTORY} (created, modified, uuid, learner_email, lms_user_id, content_key, content_quantity, state, \
               assignment_configuration_id, content_title, allocated_at, preferred_course_run_key, parent_content_key, is_assigned_course_run, \
               history_date, history_type) VALUES ({}, 0, '{t}', '+')",
            values(a.uuid, a.configuration),
            values(&self.history_uuid(a.uuid), &self.history_uuid(a.configuration)),
        ))
        .await;
    }

    async fn action(
        &self,
        assignment: &str,
        n: u64,
        kind: &str,
        at: DateTime<Utc>,
        error: Option<&str>,
    ) {
        let t = sql_time(at);
        let error = error
            .map(|e| format!("'{e}'"))
            .unwrap_or_else(|| "NULL".into());
        self.exec(&format!(
            "INSERT INTO content_assignments_learnercontentassignmentaction (created, modified, uuid, action_type, completed_at, error_reason, assignment_id) \
             VALUES ('{t}', '{t}', '{}', '{kind}', '{t}', {error}, '{assignment}')",
            uuid(5000 + n)
        ))
        .await;
    }

    async fn user(&self, email: &str, lms_user_id: i64) -> i64 {
        let id = self
            .next_user
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.exec(&format!(
            "INSERT INTO core_user (id, password, is_superuser, username, first_name, last_name, email, is_staff, is_active, \
               date_joined, full_name, lms_user_id) \
             VALUES ({id}, '!', 0, 'user{id}', 'Given', 'Family', '{email}', 0, 1, '2025-01-01', 'Given Family', {lms_user_id})"
        ))
        .await;
        id
    }

    async fn credit_request(&self, n: u64, assignment: &str, user: i64) -> String {
        let r = uuid(7000 + n);
        let t = sql_time(days_ago(200));
        self.exec(&format!(
            "INSERT INTO subsidy_request_learnercreditrequest (created, modified, is_removed, uuid, course_id, course_title, \
               enterprise_customer_uuid, state, reviewed_at, assignment_id, user_id) \
             VALUES ('{t}', '{t}', 0, '{r}', 'edX+Bnr', 'A course', '{CUSTOMER}', 'approved', '{t}', '{assignment}', {user})"
        ))
        .await;
        r
    }

    /// Lines of `select` (one text column named `line`).
    async fn lines(&self, select: &str) -> Vec<String> {
        mysql_lines(&self.db.as_ref().unwrap().url, select).await
    }

    async fn count(&self, table: &str, filter: &str) -> i64 {
        self.store.count(table, filter).await.unwrap()
    }

    async fn state(&self, u: &str) -> String {
        self.lines(&format!(
            "SELECT CONCAT_WS('|', state, IFNULL(DATE_FORMAT(expired_at, '%Y-%m-%d %H:%i:%s'), '-'), \
               IFNULL(DATE_FORMAT(cancelled_at, '%Y-%m-%d %H:%i:%s'), '-'), DATE_FORMAT(modified, '%Y-%m-%d %H:%i:%s')) AS line \
             FROM {LIVE} WHERE uuid = '{u}'"
        ))
        .await
        .pop()
        .unwrap()
    }

    /// Every `table.column` of a text type holding `needle` (any case).
    async fn text_columns_containing(&self, needle: &str) -> Vec<String> {
        mysql_text_columns_containing(&self.db.as_ref().unwrap().url, needle).await
    }

    fn options(&self, kind: PolicyKind) -> PassOptions {
        PassOptions {
            policy: Policy::named(kind),
            now: now(),
            dry_run: false,
            page_size: 3,
            notifications: Notifications::None,
        }
    }

    async fn expire(&self, options: &PassOptions) -> expiry::ExpirySummary {
        let mut n = 0u64;
        let mut nonce = move || {
            n += 1;
            n
        };
        expiry::expire(
            &self.store,
            Some(&self.services),
            options,
            &mut nonce,
            &mut |_| {},
        )
        .await
        .unwrap()
    }

    async fn finish(mut self) {
        if let Some(db) = self.db.take() {
            db.drop_database().await;
        }
    }
}

/// The services on `fake`, with quick retries (an outage test must give up within
/// milliseconds), and Braze when given.
fn services_of(fake: &FakeEdx, braze: Option<BrazeConfig>) -> EnterpriseServices {
    let base = fake.base_url();
    let base_urls: BTreeMap<String, String> = ["lms", "enterprise_catalog", "enterprise_subsidy"]
        .iter()
        .map(|k| (k.to_string(), base.clone()))
        .collect();
    let clients = ServiceClients::new(
        base_urls,
        ClientCredentials {
            client_id: "retirement-worker".into(),
            client_secret: "s3cret".into(),
        },
        Vec::new(),
        &HttpOptions::default(),
    )
    .unwrap();
    let retry = RetryPolicy {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        budget: Duration::from_millis(50),
        gateway_timeout_wait: Duration::from_millis(1),
        gateway_timeout_retries: 1,
    };
    let services = EnterpriseServices::new(&clients, retry, 7).unwrap();
    match braze {
        Some(config) => services.with_braze(config),
        None => services,
    }
}

struct Row<'a> {
    uuid: &'a str,
    configuration: &'a str,
    email: &'a str,
    lms_user_id: Option<i64>,
    content_key: &'a str,
    parent_key: Option<&'a str>,
    preferred_run: Option<&'a str>,
    state: &'a str,
    allocated_at: DateTime<Utc>,
}

fn row<'a>(
    uuid: &'a str,
    configuration: &'a str,
    email: &'a str,
    allocated_days_ago: i64,
) -> Row<'a> {
    Row {
        uuid,
        configuration,
        email,
        lms_user_id: None,
        content_key: "edX+Course",
        parent_key: None,
        preferred_run: None,
        state: "allocated",
        allocated_at: days_ago(allocated_days_ago),
    }
}

fn course(key: &str, advertised_enroll_by: &str, runs: &[(&str, &str)]) -> serde_json::Value {
    let by_run: serde_json::Map<String, serde_json::Value> = runs
        .iter()
        .map(|(run, date)| (run.to_string(), serde_json::json!({"enroll_by_date": date})))
        .collect();
    serde_json::json!({
        "key": key,
        "content_type": "course",
        "normalized_metadata": {"enroll_by_date": advertised_enroll_by},
        "normalized_metadata_by_run": by_run,
    })
}

async fn each_reason_under_the_current_policy(hex: bool) {
    let Some(w) = World::new(hex).await else {
        return;
    };
    w.fake
        .add_catalog_record(CATALOG, course("edX+Course", "2027-06-01T00:00:00Z", &[]));
    w.fake.add_catalog_record(
        CATALOG,
        course(
            "edX+Runs",
            "2027-06-01T00:00:00Z",
            &[
                ("course-v1:edX+Runs+1T2026", "2026-09-01 00:00:00Z"),
                ("course-v1:edX+Runs+2T2027", "2027-09-01T00:00:00Z"),
            ],
        ),
    );
    let active = w.configuration(1, true, CATALOG, SUBSIDY).await;
    let subsidy_gone = w.configuration(2, true, CATALOG, EXPIRED_SUBSIDY).await;
    let inactive = w.configuration(3, false, CATALOG, SUBSIDY).await;
    let (old, run, sub, fresh, accepted, off, bnr, reminded) = (
        uuid(1),
        uuid(2),
        uuid(3),
        uuid(4),
        uuid(5),
        uuid(6),
        uuid(7),
        uuid(8),
    );
    w.assignment(&row(&old, &active, "old@example.com", 100))
        .await;
    w.assignment(&Row {
        content_key: "course-v1:edX+Runs+1T2026",
        parent_key: Some("edX+Runs"),
        preferred_run: Some("course-v1:edX+Runs+1T2026"),
        ..row(&run, &active, "run@example.com", 30)
    })
    .await;
    w.assignment(&row(&sub, &subsidy_gone, "sub@example.com", 30))
        .await;
    w.assignment(&row(&fresh, &active, "fresh@example.com", 10))
        .await;
    w.assignment(&Row {
        state: "accepted",
        ..row(&accepted, &active, "accepted@example.com", 200)
    })
    .await;
    w.assignment(&row(&off, &inactive, "off@example.com", 200))
        .await;
    w.assignment(&row(&bnr, &active, "bnr@example.com", 120))
        .await;
    let user = w.user("bnr@example.com", 77).await;
    let request = w.credit_request(1, &bnr, user).await;
    // Reminders never move the 90-day clock; allocated 80 days ago, reminded yesterday: kept.
    w.assignment(&row(&reminded, &active, "reminded@example.com", 80))
        .await;
    w.action(&reminded, 1, "reminded", days_ago(1), None).await;

    let summary = w.expire(&w.options(PolicyKind::Current)).await;
    assert_eq!(summary.scanned, 6, "{summary:?}");
    assert_eq!(summary.skipped_inactive, 1);
    assert_eq!(summary.expired, 4);
    assert_eq!(
        summary.by_reason,
        BTreeMap::from([
            (Reason::NinetyDaysPassed, 2),
            (Reason::EnrollmentDatePassed, 1),
            (Reason::SubsidyExpired, 1)
        ])
    );
    assert_eq!((summary.kept, summary.undecided), (2, 0));
    let stamped = "2026-11-01 08:00:00";
    for u in [&old, &run, &sub, &bnr] {
        assert_eq!(
            w.state(u).await,
            format!("expired|{stamped}|-|{stamped}"),
            "{u}"
        );
        // One '~' history row, a full copy of the row after the change.
        let copies = w
            .lines(&format!(
                "SELECT CONCAT_WS('|', h.state, h.learner_email, h.content_key, DATE_FORMAT(h.expired_at, '%Y-%m-%d %H:%i:%s'), \
                   DATE_FORMAT(h.history_date, '%Y-%m-%d %H:%i:%s'), IFNULL(h.history_change_reason, '-'), IFNULL(h.history_user_id, '-')) AS line \
                 FROM {HISTORY} h WHERE h.uuid = '{}' AND h.history_type = '~'",
                w.history_uuid(u)
            ))
            .await;
        let live = w
            .lines(&format!("SELECT CONCAT_WS('|', learner_email, content_key) AS line FROM {LIVE} WHERE uuid = '{u}'"))
            .await
            .pop()
            .unwrap();
        let (email, key) = live.split_once('|').unwrap();
        assert_eq!(
            copies,
            vec![format!("expired|{email}|{key}|{stamped}|{stamped}|-|-")]
        );
    }
    for u in [&fresh, &reminded] {
        assert!(w.state(u).await.starts_with("allocated|-|-|"), "{u}");
    }
    assert!(w.state(&accepted).await.starts_with("accepted|"));
    assert!(w.state(&off).await.starts_with("allocated|"));
    // The linked credit request expired too, with its own history row.
    assert_eq!(
        w.count(
            "subsidy_request_learnercreditrequest",
            &format!("uuid = '{request}' AND state = 'expired'")
        )
        .await,
        1
    );
    let hist_request = if hex {
        request.replace('-', "")
    } else {
        request.clone()
    };
    assert_eq!(
        w.count(
            "subsidy_request_historicallearnercreditrequest",
            &format!("uuid = '{hist_request}' AND history_type = '~' AND state = 'expired'")
        )
        .await,
        1
    );
    // Nothing left to do: a second run changes nothing.
    let again = w.expire(&w.options(PolicyKind::Current)).await;
    assert_eq!((again.expired, again.scanned), (0, 2));
    w.finish().await;
}

#[tokio::test]
async fn each_reason_under_the_current_policy_native_uuids() {
    each_reason_under_the_current_policy(false).await;
}

#[tokio::test]
async fn each_reason_under_the_current_policy_char32_history_uuids() {
    each_reason_under_the_current_policy(true).await;
}

#[tokio::test]
async fn adr_0016_cancels_and_scrubs_ninety_day_rows_with_unique_tombstones_and_a_dry_run_writes_nothing()
 {
    let Some(w) = World::new(false).await else {
        return;
    };
    w.fake
        .add_catalog_record(CATALOG, course("edX+Course", "2027-06-01T00:00:00Z", &[]));
    let c = w.configuration(1, true, CATALOG, SUBSIDY).await;
    let (a, b, renotified) = (uuid(1), uuid(2), uuid(3));
    // Two learners, same content, same configuration: ADR 0016's fixed tombstone would break
    // the (configuration, email, content) unique key.
    w.assignment(&row(&a, &c, "first@example.com", 200)).await;
    w.assignment(&row(&b, &c, "second@example.com", 200)).await;
    // Notified 30 days ago: the ADR anchor restarts there.
    w.assignment(&Row {
        content_key: "edX+Other",
        ..row(&renotified, &c, "renotified@example.com", 200)
    })
    .await;
    w.action(&renotified, 1, "notified", days_ago(30), None)
        .await;

    let whole = format!(
        "SELECT CONCAT((SELECT GROUP_CONCAT(CONCAT_WS('|', uuid, state, learner_email, modified) ORDER BY uuid) FROM {LIVE}), '#', \
           (SELECT COUNT(*) FROM {HISTORY}), '#', (SELECT GROUP_CONCAT(learner_email ORDER BY history_id) FROM {HISTORY})) AS line"
    );
    let untouched = w.lines(&whole).await;
    let mut dry = w.options(PolicyKind::Adr0016);
    dry.dry_run = true;
    let summary = w.expire(&dry).await;
    assert_eq!((summary.expired, summary.scrubbed, summary.kept), (2, 2, 1));
    assert_eq!(w.lines(&whole).await, untouched, "a dry run writes nothing");

    let summary = w.expire(&w.options(PolicyKind::Adr0016)).await;
    assert_eq!((summary.expired, summary.scrubbed, summary.kept), (2, 2, 1));
    for u in [&a, &b] {
        assert_eq!(
            w.state(u).await,
            "cancelled|-|2026-11-01 08:00:00|2026-11-01 08:00:00"
        );
    }
    let emails = w
        .lines(&format!(
            "SELECT learner_email AS line FROM {LIVE} WHERE uuid IN ('{a}', '{b}') ORDER BY uuid"
        ))
        .await;
    assert_eq!(emails.len(), 2);
    assert_ne!(emails[0], emails[1], "unique tombstones");
    assert!(
        emails.iter().all(|e| e.starts_with("retired_user")
            && e.ends_with("@retired.invalid")
            && e.len() == 44),
        "{emails:?}"
    );
    for gone in ["first@example.com", "second@example.com"] {
        assert_eq!(
            w.text_columns_containing(gone).await,
            Vec::<String>::new(),
            "{gone}"
        );
    }
    assert!(w.state(&renotified).await.starts_with("allocated|"));
    w.finish().await;
}

#[tokio::test]
async fn the_pii_job_scrubs_delivered_ninety_day_rows_everywhere_and_keeps_the_rest() {
    let Some(w) = World::new(true).await else {
        return;
    };
    w.fake
        .add_catalog_record(CATALOG, course("edX+Course", "2027-06-01T00:00:00Z", &[]));
    let c = w.configuration(1, true, CATALOG, SUBSIDY).await;
    let (delivered, failed, pending) = (uuid(1), uuid(2), uuid(3));
    for (u, email) in [
        (&delivered, "delivered@example.com"),
        (&failed, "failed@example.com"),
        (&pending, "pending@example.com"),
    ] {
        w.assignment(&Row {
            lms_user_id: Some(42),
            content_key: email.split('@').next().unwrap(),
            ..row(u, &c, email, 120)
        })
        .await;
    }
    // Expire them (current policy), then record the email outcomes as upstream's task does.
    let summary = w.expire(&w.options(PolicyKind::Current)).await;
    assert_eq!(summary.expired, 3);
    w.action(&delivered, 1, "expired", days_ago(0), None).await;
    w.action(&failed, 2, "expired", days_ago(0), Some("email_error"))
        .await;
    let mut n = 100u64;
    let mut nonce = move || {
        n += 1;
        n
    };
    // Emails go out through the outbox: the job waits for each recorded delivery.
    let mut sent = w.options(PolicyKind::Current);
    sent.notifications = Notifications::Outbox;
    let job = expiry::scrub_pii(&w.store, Some(&w.services), &sent, &mut nonce)
        .await
        .unwrap();
    assert_eq!((job.scanned, job.scrubbed), (3, 1), "{job:?}");
    assert_eq!(job.skipped.get("expiration email not delivered"), Some(&2));
    assert_eq!(
        w.text_columns_containing("delivered@example.com").await,
        Vec::<String>::new()
    );
    assert_eq!(
        w.text_columns_containing("pending@example.com").await,
        vec![
            format!("{HISTORY}.learner_email"),
            format!("{LIVE}.learner_email")
        ]
    );
    // lms_user_id kept; the scrub's own '~' history row carries the tombstone.
    let live = w.lines(&format!("SELECT CONCAT_WS('|', learner_email, lms_user_id) AS line FROM {LIVE} WHERE uuid = '{delivered}'")).await;
    assert!(
        live[0].starts_with("retired_user") && live[0].ends_with("|42"),
        "{live:?}"
    );
    assert_eq!(
        w.count(HISTORY, &format!("uuid = '{}'", w.history_uuid(&delivered)))
            .await,
        3
    );
    // Nothing more to do while the others wait for their emails.
    let again = expiry::scrub_pii(&w.store, Some(&w.services), &sent, &mut nonce)
        .await
        .unwrap();
    assert_eq!((again.scanned, again.scrubbed), (2, 0));
    // With no emails at all, nothing is waited for.
    let unsent = expiry::scrub_pii(
        &w.store,
        Some(&w.services),
        &w.options(PolicyKind::Current),
        &mut nonce,
    )
    .await
    .unwrap();
    assert_eq!((unsent.scanned, unsent.scrubbed), (2, 2));
    assert_eq!(
        w.text_columns_containing("pending@example.com").await,
        Vec::<String>::new()
    );
    w.finish().await;
}

#[tokio::test]
async fn the_retirement_scrub_covers_every_state_by_user_id_or_email_and_the_user_row() {
    let Some(w) = World::new(false).await else {
        return;
    };
    let c = w.configuration(1, true, CATALOG, SUBSIDY).await;
    let states = ["allocated", "accepted", "errored", "expired", "cancelled"];
    for (i, state) in states.iter().enumerate() {
        let u = uuid(i as u64 + 1);
        let key = format!("edX+C{i}");
        // Two by email in another case, the rest by user id under an older email.
        let email = if i < 2 {
            "Retiring.Person@Example.com"
        } else {
            "old.address@example.com"
        };
        w.assignment(&Row {
            state,
            content_key: &key,
            lms_user_id: Some(900),
            ..row(&u, &c, email, 50)
        })
        .await;
    }
    w.assignment(&row(&uuid(9), &c, "bystander@example.com", 50))
        .await;
    w.user("retiring.person@example.com", 900).await;
    let mut n = 0u64;
    let mut nonce = move || {
        n += 1;
        n
    };
    let summary = expiry::scrub_learner(
        &w.store,
        "retiring.person@example.com",
        Some(900),
        now(),
        &mut nonce,
    )
    .await
    .unwrap();
    assert_eq!((summary.scrubbed.len(), summary.other_rows), (5, 1));
    for gone in [
        "retiring.person@example.com",
        "old.address@example.com",
        "Given Family",
    ] {
        assert_eq!(
            w.text_columns_containing(gone).await,
            Vec::<String>::new(),
            "{gone}"
        );
    }
    assert_eq!(
        w.text_columns_containing("bystander@example.com").await,
        vec![
            format!("{HISTORY}.learner_email"),
            format!("{LIVE}.learner_email")
        ]
    );
    // States are left as they were; safe to repeat.
    assert!(w.state(&uuid(2)).await.starts_with("accepted|"));
    let again = expiry::scrub_learner(
        &w.store,
        "retiring.person@example.com",
        Some(900),
        now(),
        &mut nonce,
    )
    .await
    .unwrap();
    assert!(again.scrubbed.is_empty());
    w.finish().await;
}

#[tokio::test]
async fn a_catalog_or_subsidy_outage_leaves_that_policy_undecided_and_the_rest_done() {
    let Some(w) = World::new(false).await else {
        return;
    };
    w.fake
        .add_catalog_record(CATALOG, course("edX+Course", "2027-06-01T00:00:00Z", &[]));
    w.fake.add_catalog_record(
        OTHER_CATALOG,
        course("edX+Course", "2027-06-01T00:00:00Z", &[]),
    );
    let healthy = w.configuration(1, true, CATALOG, SUBSIDY).await;
    let broken = w.configuration(2, true, OTHER_CATALOG, SUBSIDY).await;
    for i in 0..4 {
        w.assignment(&row(
            &uuid(i + 1),
            &healthy,
            &format!("h{i}@example.com"),
            120,
        ))
        .await;
        w.assignment(&row(
            &uuid(i + 11),
            &broken,
            &format!("b{i}@example.com"),
            120,
        ))
        .await;
    }
    let path = format!("/api/v2/enterprise-catalogs/{OTHER_CATALOG}/get_content_metadata/");
    w.fake.set_fault(
        &path,
        Some(Fault {
            status: Some(503),
            ..Fault::default()
        }),
    );
    let summary = w.expire(&w.options(PolicyKind::Current)).await;
    assert_eq!((summary.expired, summary.undecided), (4, 4), "{summary:?}");
    let why = summary
        .undecided_configurations
        .get(&broken)
        .expect("the broken configuration is named");
    assert!(
        why.contains("enterprise-catalog") && why.contains("503"),
        "{why}"
    );
    for i in 0..4 {
        assert!(w.state(&uuid(i + 11)).await.starts_with("allocated|"));
    }
    // The subsidy service down: its policy's rows wait too.
    w.fake.set_fault(&path, None);
    let subsidy_path = format!("/api/v1/subsidies/{SUBSIDY}/");
    w.fake.set_fault(
        &subsidy_path,
        Some(Fault {
            status: Some(500),
            ..Fault::default()
        }),
    );
    let summary = w.expire(&w.options(PolicyKind::Current)).await;
    assert_eq!((summary.expired, summary.undecided), (0, 4), "{summary:?}");
    w.fake.set_fault(&subsidy_path, None);
    let summary = w.expire(&w.options(PolicyKind::Current)).await;
    assert_eq!((summary.expired, summary.undecided), (4, 0), "{summary:?}");
    w.finish().await;
}

#[tokio::test]
async fn catalog_requests_carry_at_most_100_keys_and_each_key_is_asked_once_per_pass() {
    let Some(w) = World::new(false).await else {
        return;
    };
    let c = w.configuration(1, true, CATALOG, SUBSIDY).await;
    for i in 0..150u64 {
        let key = format!("edX+K{i}");
        w.fake
            .add_catalog_record(CATALOG, course(&key, "2026-01-01T00:00:00Z", &[]));
        w.assignment(&Row {
            content_key: &key,
            ..row(&uuid(i + 1), &c, &format!("k{i}@example.com"), 10)
        })
        .await;
        // A second learner on the same content: the key is not asked again.
        w.assignment(&Row {
            content_key: &key,
            ..row(&uuid(i + 1001), &c, &format!("l{i}@example.com"), 10)
        })
        .await;
    }
    let mut options = w.options(PolicyKind::Current);
    options.page_size = 250;
    let summary = w.expire(&options).await;
    assert_eq!(
        summary.by_reason.get(&Reason::EnrollmentDatePassed),
        Some(&300)
    );
    let calls: Vec<_> = w
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.path.contains("get_content_metadata"))
        .collect();
    let mut asked = Vec::new();
    for call in &calls {
        let keys: Vec<&str> = call
            .path
            .split('&')
            .filter_map(|p| p.split('?').next_back())
            .filter_map(|p| p.strip_prefix("content_keys="))
            .collect();
        assert!(keys.len() <= 100, "{} keys in one request", keys.len());
        assert!(call.path.contains("traverse_pagination=True"));
        assert!(
            call.authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("JWT "))
        );
        asked.extend(keys.into_iter().map(str::to_owned));
    }
    let distinct: std::collections::HashSet<&String> = asked.iter().collect();
    assert_eq!((asked.len(), distinct.len()), (150, 150));
    assert_eq!(w.fake.tokens_issued(), 1);
    w.finish().await;
}

#[tokio::test]
async fn a_row_changed_between_read_and_write_is_left_for_the_next_run() {
    let Some(w) = World::new(false).await else {
        return;
    };
    let c = w.configuration(1, true, CATALOG, SUBSIDY).await;
    w.assignment(&row(&uuid(1), &c, "racer@example.com", 120))
        .await;
    w.assignment(&row(&uuid(2), &c, "steady@example.com", 120))
        .await;
    let page = w
        .store
        .page(
            Scan::Expirable {
                with_notified: false,
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(page.rows.len(), 2);
    // The learner redeems meanwhile (the app's save bumps modified).
    w.exec(&format!(
        "UPDATE {LIVE} SET state = 'accepted', modified = '2026-11-01 07:59:59' WHERE uuid = '{}'",
        uuid(1)
    ))
    .await;
    let writes: Vec<ExpiryWrite> = page
        .rows
        .iter()
        .map(|r| ExpiryWrite {
            key: r.key.clone(),
            version: r.version.clone(),
            new_state: assignment_expiry::AssignmentState::Expired,
            tombstone: None,
            expire_credit_request: false,
            reason: Reason::NinetyDaysPassed,
            record_reason_as: None,
        })
        .collect();
    let done = w
        .store
        .write_expiries(&writes, now(), retirement_store::Notify::Nothing)
        .await
        .unwrap();
    assert_eq!(done.written, vec![uuid(2)]);
    assert_eq!(done.changed_meanwhile, vec![uuid(1)]);
    assert!(w.state(&uuid(1)).await.starts_with("accepted|"));
    w.finish().await;
}

#[tokio::test]
async fn outbox_rows_are_queued_with_the_expiry_and_an_unknown_schema_is_refused() {
    let Some(w) = World::new(false).await else {
        return;
    };
    w.fake
        .add_catalog_record(CATALOG, course("edX+Course", "2027-06-01T00:00:00Z", &[]));
    let c = w.configuration(1, true, CATALOG, SUBSIDY).await;
    w.assignment(&Row {
        lms_user_id: Some(5),
        ..row(&uuid(1), &c, "queued@example.com", 120)
    })
    .await;
    let mut options = w.options(PolicyKind::Current);
    options.notifications = Notifications::Outbox;
    let mut nonce = || 1u64;
    let refused = expiry::expire(
        &w.store,
        Some(&w.services),
        &options,
        &mut nonce,
        &mut |_| {},
    )
    .await;
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("expire-assignments migrate")
    );
    assert_eq!(
        w.count(LIVE, "state = 'expired'").await,
        0,
        "refused before any write"
    );
    w.store.create_outbox().await.unwrap();
    let store = EnterpriseAccessStore::open(w.sql.clone()).await.unwrap();
    let summary = expiry::expire(&store, Some(&w.services), &options, &mut nonce, &mut |_| {})
        .await
        .unwrap();
    assert_eq!((summary.expired, summary.emails_queued), (1, 1));
    let queued = w
        .lines(
            "SELECT CONCAT_WS('|', kind, campaign_setting, assignment_uuid, learner_email, lms_user_id, enterprise_customer_uuid, reason) AS line \
             FROM learner_retirement_expiry_outbox"
        )
        .await;
    assert_eq!(
        queued,
        vec![format!(
            "regular|BRAZE_ASSIGNMENT_AUTOMATIC_CANCELLATION_NOTIFICATION_CAMPAIGN|{}|queued@example.com|5|{CUSTOMER}|NINETY_DAYS_PASSED",
            uuid(1)
        )]
    );
    // The retirement scrub empties the learner's outbox rows too.
    let mut n = 0u64;
    let mut nonce = move || {
        n += 1;
        n
    };
    expiry::scrub_learner(&store, "queued@example.com", None, now(), &mut nonce)
        .await
        .unwrap();
    assert_eq!(
        w.text_columns_containing("queued@example.com").await,
        Vec::<String>::new()
    );
    // A database that is not enterprise-access's: refused, naming what is missing.
    w.exec(&format!("ALTER TABLE {LIVE} DROP COLUMN allocated_at"))
        .await;
    let err = EnterpriseAccessStore::open(w.sql.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnrecognisedSchema { .. }));
    assert!(
        err.to_string()
            .contains(&format!("missing {LIVE}.allocated_at")),
        "{err}"
    );
    w.finish().await;
}

/// A version-4 UUID spread over the whole space (MariaDB's native UUID order is not its
/// text's: a keyset page that compared or sorted by text would skip rows).
fn spread_uuid(n: u64) -> String {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut hex = String::new();
    for _ in 0..2 {
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        hex.push_str(&format!("{x:016x}"));
    }
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

#[tokio::test]
async fn small_pages_over_spread_uuids_expire_every_eligible_row_exactly_once() {
    let Some(w) = World::new(false).await else {
        return;
    };
    w.fake
        .add_catalog_record(CATALOG, course("edX+Course", "2027-06-01T00:00:00Z", &[]));
    let c = w.configuration(1, true, CATALOG, SUBSIDY).await;
    let mut eligible = std::collections::BTreeSet::new();
    for i in 0..240u64 {
        let u = spread_uuid(i);
        let email = format!("spread{i}@example.com");
        let days = if i % 3 == 0 { 30 } else { 120 };
        w.assignment(&row(&u, &c, &email, days)).await;
        if days > 90 {
            eligible.insert(u);
        }
    }
    let mut options = w.options(PolicyKind::Current);
    options.page_size = 7;
    let mut seen = Vec::new();
    let mut nonce = || 1u64;
    let summary = expiry::expire(
        &w.store,
        Some(&w.services),
        &options,
        &mut nonce,
        &mut |d| seen.push(d.uuid.clone()),
    )
    .await
    .unwrap();
    assert_eq!(summary.scanned, 240);
    let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), 240, "every row seen exactly once");
    assert_eq!(summary.expired as usize, eligible.len());
    let expired: std::collections::BTreeSet<String> = w
        .lines(&format!(
            "SELECT CAST(uuid AS CHAR) AS line FROM {LIVE} WHERE state = 'expired'"
        ))
        .await
        .into_iter()
        .collect();
    assert_eq!(expired, eligible);
    w.finish().await;
}

#[tokio::test]
async fn braze_sends_each_expiration_email_as_upstream_and_records_the_outcome() {
    let Some(w) = World::new(false).await else {
        return;
    };
    w.fake
        .add_catalog_record(CATALOG, course("edX+Course", "2027-06-01T00:00:00Z", &[]));
    w.fake.set_enterprise_customer(
        CUSTOMER,
        serde_json::json!({"uuid": CUSTOMER, "name": "Acme", "slug": "acme",
            "admin_users": [{"email": "admin1@acme.example"}, {"email": "admin2@acme.example"}]}),
    );
    let c = w.configuration(1, true, CATALOG, SUBSIDY).await;
    let (known, alias, bnr) = (uuid(1), uuid(2), uuid(3));
    w.assignment(&Row {
        lms_user_id: Some(11),
        ..row(&known, &c, "known@example.com", 120)
    })
    .await;
    w.assignment(&Row {
        content_key: "edX+Alias",
        ..row(&alias, &c, "alias@example.com", 120)
    })
    .await;
    w.assignment(&Row {
        lms_user_id: Some(13),
        content_key: "edX+Bnr",
        ..row(&bnr, &c, "bnr@example.com", 120)
    })
    .await;
    let user = w.user("bnr@example.com", 13).await;
    w.credit_request(1, &bnr, user).await;
    let braze = BrazeConfig {
        api_url: format!("{}/braze", w.fake.base_url()),
        api_key: "braze-key".into(),
        regular_campaign: "campaign-regular".into(),
        bnr_campaign: "campaign-bnr".into(),
        learner_portal_url: "https://portal.example.com/".into(),
    };
    let services = services_of(&w.fake, Some(braze));
    let mut options = w.options(PolicyKind::Current);
    options.notifications = Notifications::Braze;
    let mut n = 0u64;
    let mut nonce = move || {
        n += 1;
        n
    };
    let summary = expiry::expire(&w.store, Some(&services), &options, &mut nonce, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        (summary.expired, summary.emails_sent, summary.emails_failed),
        (3, 3, 0)
    );
    let braze_calls: Vec<serde_json::Value> = w
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.path.starts_with("/braze/"))
        .map(|c| {
            assert_eq!(c.authorization.as_deref(), Some("Bearer braze-key"));
            serde_json::json!({"path": c.path, "body": c.body})
        })
        .collect();
    insta::assert_json_snapshot!("braze_expiration_emails", braze_calls);
    // Each delivery recorded as upstream's task records it: a successful `expired` action and
    // its '+' history row (the B&R one too: upstream records none, so it never scrubs them).
    for u in [&known, &alias, &bnr] {
        assert_eq!(
            w.count(
                "content_assignments_learnercontentassignmentaction",
                &format!("assignment_id = '{u}' AND action_type = 'expired' AND error_reason IS NULL AND completed_at IS NOT NULL")
            )
            .await,
            1
        );
        assert_eq!(
            w.count(
                "content_assignments_historicallearnercontentassignmentaction",
                &format!("assignment_id = '{u}' AND history_type = '+'")
            )
            .await,
            1
        );
    }
    // Braze down: the row still expires; the failure is an errored `expired` action, and the
    // PII job waits.
    let down = uuid(4);
    w.assignment(&Row {
        lms_user_id: Some(14),
        content_key: "edX+Down",
        ..row(&down, &c, "down@example.com", 120)
    })
    .await;
    w.fake.set_fault(
        "/braze/campaigns/trigger/send",
        Some(Fault {
            status: Some(500),
            ..Fault::default()
        }),
    );
    let summary = expiry::expire(&w.store, Some(&services), &options, &mut nonce, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        (summary.expired, summary.emails_sent, summary.emails_failed),
        (1, 0, 1)
    );
    assert!(w.state(&down).await.starts_with("expired|"));
    assert_eq!(
        w.count(
            "content_assignments_learnercontentassignmentaction",
            &format!("assignment_id = '{down}' AND error_reason = 'email_error' AND completed_at IS NULL AND traceback LIKE '%Braze%'")
        )
        .await,
        1
    );
    let pii = expiry::scrub_pii(&w.store, Some(&services), &options, &mut nonce)
        .await
        .unwrap();
    assert_eq!(pii.scrubbed, 3);
    assert_eq!(pii.skipped.get("expiration email not delivered"), Some(&1));
    assert_eq!(
        w.text_columns_containing("known@example.com").await,
        Vec::<String>::new()
    );
    w.finish().await;
}

#[tokio::test]
async fn edx_2026_expires_ended_courses_and_its_pii_job_reads_the_recorded_reason() {
    let Some(w) = World::new(false).await else {
        return;
    };
    // The edx fork's action audit field: the expiry's reason is recorded there.
    w.exec(
        "ALTER TABLE content_assignments_learnercontentassignmentaction ADD COLUMN metadata longtext NOT NULL, \
           ADD COLUMN source varchar(64) NULL, ADD COLUMN actor_type varchar(32) NULL; \
         ALTER TABLE content_assignments_historicallearnercontentassignmentaction ADD COLUMN metadata longtext NOT NULL, \
           ADD COLUMN source varchar(64) NULL, ADD COLUMN actor_type varchar(32) NULL",
    )
    .await;
    let store = EnterpriseAccessStore::open(w.sql.clone()).await.unwrap();
    let ended = |key: &str, enroll_by: &str| {
        serde_json::json!({
            "key": key,
            "normalized_metadata": {"enroll_by_date": enroll_by},
            "normalized_metadata_by_run": {
                format!("course-v1:{key}+1T2026"): {"enroll_by_date": enroll_by, "end_date": "2026-10-01T00:00:00Z"},
                format!("course-v1:{key}+2T2026"): {"enroll_by_date": enroll_by, "end_date": "2026-10-20T00:00:00Z"},
            },
        })
    };
    w.fake
        .add_catalog_record(CATALOG, ended("edX+Ended", "2027-01-01T00:00:00Z"));
    w.fake
        .add_catalog_record(CATALOG, ended("edX+Closed", "2026-09-01T00:00:00Z"));
    w.fake.set_enterprise_customer(
        CUSTOMER,
        serde_json::json!({"name": "Acme", "slug": "acme", "admin_users": []}),
    );
    let c = w.configuration(1, true, CATALOG, SUBSIDY).await;
    let (run_ended, closed) = (uuid(1), uuid(2));
    w.assignment(&Row {
        lms_user_id: Some(1),
        content_key: "edX+Ended",
        ..row(&run_ended, &c, "ended@example.com", 30)
    })
    .await;
    w.assignment(&Row {
        lms_user_id: Some(2),
        content_key: "edX+Closed",
        ..row(&closed, &c, "closed@example.com", 30)
    })
    .await;
    // The current policy does not know the reason: both stay (the second for its enrollment
    // deadline would expire; it is checked under edx-2026 below).
    let mut dry = w.options(PolicyKind::Current);
    dry.dry_run = true;
    let current = expiry::expire(&store, Some(&w.services), &dry, &mut || 1u64, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        current.by_reason,
        BTreeMap::from([(Reason::EnrollmentDatePassed, 1)])
    );

    let braze = BrazeConfig {
        api_url: format!("{}/braze", w.fake.base_url()),
        api_key: "braze-key".into(),
        regular_campaign: "campaign-regular".into(),
        bnr_campaign: "campaign-bnr".into(),
        learner_portal_url: String::new(),
    };
    let services = services_of(&w.fake, Some(braze));
    let mut options = w.options(PolicyKind::Edx2026);
    options.notifications = Notifications::Braze;
    let mut n = 0u64;
    let mut nonce = move || {
        n += 1;
        n
    };
    let summary = expiry::expire(&store, Some(&services), &options, &mut nonce, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        summary.by_reason,
        BTreeMap::from([
            (Reason::EnrollmentDatePassed, 1),
            (Reason::CourseRunEnded, 1)
        ])
    );
    assert_eq!(summary.emails_sent, 2);
    let recorded = w
        .lines(
            "SELECT CONCAT_WS('|', CAST(assignment_id AS CHAR), JSON_VALUE(metadata, '$.expiration_reason')) AS line \
             FROM content_assignments_learnercontentassignmentaction \
             WHERE source = 'scheduled_job' AND actor_type = 'system' ORDER BY assignment_id"
        )
        .await;
    assert_eq!(
        recorded,
        vec![
            format!("{run_ended}|COURSE_RUN_ENDED"),
            format!("{closed}|ENROLLMENT_DATE_PASSED")
        ]
    );
    // Both courses leave the catalog: recomputing would now say NINETY_DAYS_PASSED for both;
    // the recorded reasons decide instead.
    w.fake.clear_catalog(CATALOG);
    let services = services_of(&w.fake, None);
    let pii = expiry::scrub_pii(&store, Some(&services), &options, &mut nonce)
        .await
        .unwrap();
    assert_eq!((pii.scanned, pii.scrubbed), (2, 1), "{pii:?}");
    assert_eq!(
        w.text_columns_containing("ended@example.com").await,
        Vec::<String>::new()
    );
    assert_eq!(
        w.text_columns_containing("closed@example.com").await,
        vec![
            format!("{HISTORY}.learner_email"),
            format!("{LIVE}.learner_email")
        ]
    );
    w.finish().await;
}

#[tokio::test]
async fn re_allocation_restarts_each_policy_s_clock_its_own_way() {
    let Some(w) = World::new(false).await else {
        return;
    };
    w.fake
        .add_catalog_record(CATALOG, course("edX+Course", "2027-06-01T00:00:00Z", &[]));
    let c = w.configuration(1, true, CATALOG, SUBSIDY).await;
    let (renotified, silent) = (uuid(1), uuid(2));
    // Both expired once and were allocated again 10 days ago (upstream's re-allocation resets
    // allocated_at); only the first was notified again.
    for (u, email, key) in [
        (&renotified, "again@example.com", "edX+A"),
        (&silent, "silent@example.com", "edX+B"),
    ] {
        w.assignment(&Row {
            content_key: key,
            ..row(u, &c, email, 10)
        })
        .await;
        w.exec(&format!(
            "UPDATE {LIVE} SET created = '{}' WHERE uuid = '{u}'",
            sql_time(days_ago(300))
        ))
        .await;
    }
    w.action(&renotified, 1, "notified", days_ago(200), None)
        .await;
    w.action(&renotified, 2, "notified", days_ago(10), None)
        .await;
    w.action(&silent, 3, "notified", days_ago(200), None).await;
    let mut dry = w.options(PolicyKind::Current);
    dry.dry_run = true;
    let current = w.expire(&dry).await;
    assert_eq!(
        (current.expired, current.kept),
        (0, 2),
        "allocated_at is the current anchor"
    );
    let mut adr = w.options(PolicyKind::Adr0016);
    adr.dry_run = true;
    let summary = w.expire(&adr).await;
    assert_eq!(
        (summary.expired, summary.kept),
        (1, 1),
        "ADR 0016 anchors on the latest notification: only the silent one is past 90 days"
    );
    w.finish().await;
}
