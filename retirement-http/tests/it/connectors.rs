//! The third-party connectors (issue 15) against the fake vendors, each following its vendor's
//! documented contract: every connector's success, "not found", 4xx, 5xx, 429 with
//! `Retry-After` and timeout; batching; a job polled to completion across a restart; a manual
//! step that waits for `retire done`; and the LMS-mode admin calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use retirement_core::{
    DriverOptions, OriginalIdentity, Override, Pipeline, RetiredIdConfig, Stage, StateTable,
    TransportErrorKind, WaitingOn,
};
use retirement_http::clock::{Clock, TokioClock};
use retirement_http::fake::{FakeConfig, FakeEdx, FakeUser, Fault, IN_PROCESS_URL};
use retirement_http::runtime::{NoObserver, RunOptions, RunSummary, Runner};
use retirement_http::{
    CallOutcome, ClientCredentials, HttpOptions, LearnerRef, LmsStore, ServiceClients, Steps,
};
use retirement_store::{DieselStore, NewRetirement, RetirementStore, StoreError, StoreOptions};

fn credentials() -> ClientCredentials {
    ClientCredentials {
        client_id: "retirement-worker".into(),
        client_secret: "s3cret".into(),
    }
}

/// A learner's identifiers, owned.
pub(crate) struct Learner {
    pub(crate) username: String,
    pub(crate) email: String,
    id: i64,
    retired: String,
    retired_email: String,
}

impl Learner {
    pub(crate) fn new(n: i64) -> Learner {
        Learner {
            username: format!("vendor-learner-{n}"),
            email: format!("vendor.learner.{n}@example.com"),
            id: 7000 + n,
            retired: format!("retired__user_{n:04}"),
            retired_email: format!("retired__user_{n:04}@retired.invalid"),
        }
    }

    fn refs(&self) -> LearnerRef<'_> {
        LearnerRef {
            original_username: &self.username,
            original_email: &self.email,
            lms_user_id: Some(self.id),
            retired_username: &self.retired,
            retired_email: &self.retired_email,
        }
    }
}

/// Clients for every connector set up against `fake`.
fn vendor_clients(fake: &FakeEdx, options: &HttpOptions) -> ServiceClients {
    let base_urls = BTreeMap::from([("lms".to_string(), fake.base_url())]);
    let clients = if fake.base_url() == IN_PROCESS_URL {
        ServiceClients::with_transport(
            fake.transport(),
            base_urls,
            credentials(),
            Vec::new(),
            options,
        )
    } else {
        ServiceClients::new(base_urls, credentials(), Vec::new(), options)
    };
    clients
        .and_then(|c| c.with_connectors(fake.vendor_connectors()))
        .expect("clients")
}

/// Every connector set up against the fake: (service, operation, the path its first request
/// goes to).
const CONNECTORS: &[(&str, &str, &str)] = &[
    ("BRAZE", "delete_user", "/braze/users/delete"),
    (
        "AMPLITUDE",
        "delete_user",
        "/amplitude/api/2/deletions/users",
    ),
    (
        "HUBSPOT",
        "delete_user",
        "/hubspot/crm/v3/objects/contacts/gdpr-delete",
    ),
    (
        "SEGMENT",
        "delete_and_suppress_learner",
        "/segment/regulations",
    ),
    (
        "SALESFORCE_MARKETING_CLOUD",
        "delete_contact",
        "/sfmc/contacts/v1/addresses/email/search",
    ),
    (
        "SALESFORCE",
        "retire_learner",
        "/salesforce/services/data/v60.0/query",
    ),
    ("RED_VENTURES", "delete_user", "/redventures/deletion"),
    (
        "COMMERCE_COORDINATOR",
        "retire_learner",
        "/lms/user_retirement/",
    ),
    (
        "LMS_CERTIFICATES",
        "retire_certs_s3_for_user",
        "/api/certificates/v1/retire_certs_s3_for_user",
    ),
];

/// Gives each vendor a record of `learner`.
fn seed_vendors(fake: &FakeEdx, learner: &Learner) {
    fake.with_vendors(|v| {
        v.hubspot_contacts.insert(learner.email.clone());
        v.sfmc_contacts
            .insert(learner.email.clone(), format!("contact-{}", learner.id));
        v.salesforce_leads
            .insert(learner.email.clone(), format!("00Q{}", learner.id));
        v.rv_emails.insert(learner.email.clone());
    });
}

/// What a recorded call looks like in a snapshot: the auth scheme, never a credential.
fn shown(call: &retirement_http::fake::RecordedCall) -> serde_json::Value {
    let scheme = call
        .authorization
        .as_deref()
        .and_then(|a| a.split_whitespace().next())
        .unwrap_or("none");
    serde_json::json!({"method": call.method, "path": call.path, "auth": scheme, "body": call.body})
}

#[tokio::test]
async fn every_connector_erases_the_learner_as_its_vendor_documents() {
    let fake = FakeEdx::start(FakeConfig::default()).await.unwrap();
    let clients = vendor_clients(&fake, &HttpOptions::default());
    let learner = Learner::new(1);
    seed_vendors(&fake, &learner);
    let mut outcomes = Vec::new();
    for (service, operation, _) in CONNECTORS {
        let outcome = clients
            .call(service, operation, &learner.refs())
            .await
            .unwrap();
        let summary = match outcome {
            CallOutcome::Response { status, .. } => format!("HTTP {status}"),
            CallOutcome::JobStarted { job_id } => format!("job {job_id}"),
            CallOutcome::PersonAsked { reference } => format!("person asked ({reference})"),
            other => panic!("{service}: unexpected {other:?}"),
        };
        outcomes.push(format!("{service} {operation}: {summary}"));
    }
    let vendors = fake.vendors();
    let erased: Vec<&str> = vendors.deleted.iter().map(|(s, _)| s.as_str()).collect();
    for service in [
        "BRAZE",
        "AMPLITUDE",
        "HUBSPOT",
        "SEGMENT",
        "SALESFORCE_MARKETING_CLOUD",
        "RED_VENTURES",
        "COMMERCE_COORDINATOR",
        "CERTIFICATES",
    ] {
        assert!(erased.contains(&service), "{service} erased nothing");
    }
    assert_eq!(vendors.salesforce_tasks.len(), 1, "one Task for a person");
    assert!(vendors.hubspot_contacts.is_empty() && vendors.sfmc_contacts.is_empty());
    let calls: Vec<serde_json::Value> = fake.calls().iter().map(shown).collect();
    insta::assert_snapshot!(outcomes.join("\n"));
    insta::assert_json_snapshot!(calls);
}

#[tokio::test]
async fn not_found_means_done_where_the_vendor_says_so() {
    let fake = FakeEdx::start(FakeConfig::default()).await.unwrap();
    let clients = vendor_clients(&fake, &HttpOptions::default());
    let stranger = Learner::new(2);
    let call = |service: &'static str, operation: &'static str| {
        let clients = &clients;
        let stranger = &stranger;
        async move {
            clients
                .call(service, operation, &stranger.refs())
                .await
                .unwrap()
        }
    };
    for (service, operation) in [
        ("SALESFORCE_MARKETING_CLOUD", "delete_contact"),
        ("SALESFORCE", "retire_learner"),
        ("RED_VENTURES", "delete_user"),
    ] {
        match call(service, operation).await {
            CallOutcome::Done { message } => {
                assert!(message.contains("nothing"), "{message}");
                assert!(!message.contains(&stranger.email), "{message}");
            }
            other => panic!("{service}: expected done, got {other:?}"),
        }
    }
    // HubSpot's GDPR delete of an unknown email succeeds and blocklists it.
    assert!(matches!(
        call("HUBSPOT", "delete_user").await,
        CallOutcome::Response { status: 204, .. }
    ));
    assert_eq!(
        fake.vendors().hubspot_blocklist,
        vec![stranger.email.clone()]
    );
    assert!(
        fake.vendors().salesforce_tasks.is_empty(),
        "no Task without a Lead"
    );
}

#[tokio::test]
async fn vendor_failures_reach_the_core_as_the_vendor_answered() {
    let fake = FakeEdx::start(FakeConfig::default()).await.unwrap();
    let options = HttpOptions {
        request_timeout: Duration::from_millis(300),
        ..HttpOptions::default()
    };
    let clients = vendor_clients(&fake, &options);
    let learner = Learner::new(3);
    seed_vendors(&fake, &learner);
    let faults = [
        (
            "400",
            Fault {
                status: Some(400),
                body: Some("bad request".into()),
                ..Fault::default()
            },
        ),
        (
            "503",
            Fault {
                status: Some(503),
                ..Fault::default()
            },
        ),
        (
            "429",
            Fault {
                status: Some(429),
                retry_after: Some(Duration::from_secs(30)),
                ..Fault::default()
            },
        ),
        (
            "hang",
            Fault {
                hang: true,
                ..Fault::default()
            },
        ),
    ];
    for (service, operation, path) in CONNECTORS {
        for (name, fault) in &faults {
            fake.set_fault(path, Some(fault.clone()));
            let outcome = clients
                .call(service, operation, &learner.refs())
                .await
                .unwrap();
            fake.set_fault(path, None);
            match (*name, &outcome) {
                ("400", CallOutcome::Response { status: 400, .. })
                | ("503", CallOutcome::Response { status: 503, .. }) => {}
                (
                    "429",
                    CallOutcome::Response {
                        status: 429,
                        retry_after: Some(after),
                        ..
                    },
                ) => assert_eq!(*after, Duration::from_secs(30), "{service}"),
                ("hang", CallOutcome::Transport { kind, .. }) => {
                    assert_eq!(*kind, TransportErrorKind::Timeout, "{service}")
                }
                _ => panic!("{service} with {name}: {outcome:?}"),
            }
            // What goes to the learner's log never holds the originals.
            let text = format!("{outcome:?}");
            assert!(!text.contains(&learner.email) && !text.contains(&learner.username));
        }
    }
}

/// A current-thread runtime whose clock starts paused: batches and polls wait on tokio's
/// clock, so what is sent together depends on nothing but the code.
pub(crate) fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

#[test]
fn batches_send_learners_together_up_to_the_vendor_limit() {
    paused().block_on(async {
        let fake = FakeEdx::in_process(FakeConfig::default());
        let clients = Arc::new(vendor_clients(&fake, &HttpOptions::default()));
        let learners: Vec<Arc<Learner>> = (0..120).map(|n| Arc::new(Learner::new(n))).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for learner in &learners {
            let (clients, learner) = (clients.clone(), learner.clone());
            tasks.spawn(async move {
                clients
                    .call("BRAZE", "delete_user", &learner.refs())
                    .await
                    .unwrap()
            });
        }
        while let Some(outcome) = tasks.join_next().await {
            assert!(matches!(
                outcome.unwrap(),
                CallOutcome::Response { status: 201, .. }
            ));
        }
        let sizes: Vec<usize> = fake
            .calls()
            .iter()
            .filter(|c| c.path == "/braze/users/delete")
            .map(|c| c.body["external_ids"].as_array().map_or(0, Vec::len))
            .collect();
        // Braze takes at most 50 ids a request: 50, 50, then the 20 left after the wait.
        assert_eq!(sizes, vec![50, 50, 20]);
        let mut erased: Vec<String> = fake
            .vendors()
            .deleted
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        erased.sort();
        erased.dedup();
        assert_eq!(erased.len(), 120, "every learner erased once");
    });
}

const STATES: &[&str] = &[
    "PENDING",
    "RETIRING_SEGMENT",
    "SEGMENT_COMPLETE",
    "RETIRING_SALESFORCE",
    "SALESFORCE_COMPLETE",
    "RETIRING_LMS",
    "LMS_COMPLETE",
    "ERRORED",
    "ABORTED",
    "COMPLETE",
];

fn epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A world for the runner: an in-memory store holding `learners` PENDING learners, the
/// in-process fake (its LMS served from the store), and the pipeline SEGMENT (a job),
/// SALESFORCE (a person), LMS.
pub(crate) struct World {
    pub(crate) store: Arc<DieselStore>,
    pub(crate) fake: Arc<FakeEdx>,
    pub(crate) clock: Arc<TokioClock>,
    pub(crate) pipeline: Arc<Pipeline>,
}

impl World {
    pub(crate) async fn new(learners: i64) -> World {
        let clock = Arc::new(TokioClock::starting_at(epoch()));
        let store = Arc::new(
            DieselStore::open(
                "sqlite://:memory:",
                &StoreOptions {
                    sqlite_inline: true,
                    ..StoreOptions::default()
                },
            )
            .await
            .unwrap(),
        );
        store.migrate().await.unwrap();
        let names: Vec<String> = STATES.iter().map(|s| s.to_string()).collect();
        store.sync_states(&names, false).await.unwrap();
        let ids = RetiredIdConfig::new(vec!["vendor-salt".into()]).unwrap();
        let fake = FakeEdx::in_process(FakeConfig {
            lms_store: Some(store.clone()),
            ..FakeConfig::default()
        });
        fake.clock().follow(clock.clone());
        for n in 0..learners {
            let learner = Learner::new(n);
            seed_vendors(&fake, &learner);
            let original = OriginalIdentity {
                username: learner.username.clone(),
                email: learner.email.clone(),
                name: format!("Vendor Learner {n}"),
            };
            store
                .enqueue(
                    NewRetirement::new(original, Some(learner.id), &ids),
                    epoch() - TimeDelta::days(30),
                )
                .await
                .unwrap();
        }
        let table = StateTable::from_names(STATES).unwrap();
        let stages = vec![
            Stage::new(
                "RETIRING_SEGMENT",
                "SEGMENT_COMPLETE",
                "SEGMENT",
                "delete_and_suppress_learner",
            ),
            Stage::new(
                "RETIRING_SALESFORCE",
                "SALESFORCE_COMPLETE",
                "SALESFORCE",
                "retire_learner",
            ),
            Stage::new(
                "RETIRING_LMS",
                "LMS_COMPLETE",
                "LMS",
                "retirement_lms_retire",
            ),
        ];
        let pipeline = Pipeline::new(stages, &table).unwrap();
        let fake = Arc::new(fake);
        World {
            store,
            fake,
            clock,
            pipeline: Arc::new(pipeline),
        }
    }

    /// One `retire run` process: new clients, new steps, a new runner (nothing in memory
    /// survives from the one before).
    pub(crate) async fn run(&self, process: u64) -> RunSummary {
        self.run_crashing(process, 16, None)
            .await
            .expect("no crash was asked for")
    }

    /// [`World::run`] with `concurrency`, killed after `crash_after` of simulated time
    /// (`None` when it was).
    pub(crate) async fn run_crashing(
        &self,
        process: u64,
        concurrency: usize,
        crash_after: Option<Duration>,
    ) -> Option<RunSummary> {
        let clients = Arc::new(vendor_clients(&self.fake, &HttpOptions::default()));
        let steps = Steps::new(clients, None, process);
        let pipeline = Arc::new(steps.kinds((*self.pipeline).clone()));
        let runner = Runner::new(
            self.store.clone(),
            Arc::new(steps),
            pipeline,
            RunOptions {
                worker: format!("vendor-worker-{process}"),
                concurrency,
                seed: process,
                driver: DriverOptions::default(),
                clock: self.clock.clone(),
                lease_for: TimeDelta::minutes(2),
                ..RunOptions::default()
            },
        );
        let (keep, stop) = tokio::sync::watch::channel(false);
        let mut run = tokio::spawn(async move { runner.run(stop, Arc::new(NoObserver)).await });
        let ended = match crash_after {
            None => Some((&mut run).await),
            Some(after) => tokio::select! {
                biased;
                ended = &mut run => Some(ended),
                () = tokio::time::sleep(after) => {
                    run.abort();
                    let _ = run.await;
                    None
                }
            },
        };
        drop(keep);
        ended.map(|r| r.expect("the runner task").expect("the run"))
    }

    pub(crate) async fn states(&self) -> Vec<String> {
        let mut states = Vec::new();
        for n in 0..100 {
            match self.store.find_by_username(&Learner::new(n).username).await {
                Ok(r) => states.push(r.current_state().to_owned()),
                Err(_) => break,
            }
        }
        states
    }
}

#[test]
fn a_job_is_polled_to_completion_across_a_restart_and_a_person_finishes_the_manual_step() {
    paused().block_on(async {
        let world = World::new(5).await;
        // Segment finishes the regulation on its second poll. One poll answers every learner
        // waiting on it (they share the regulation).
        world.fake.with_vendors(|v| v.polls_to_finish = 2);

        // First process: one regulation for all five (a batch), then every learner parks.
        let first = world.run(1).await;
        assert_eq!(first.waiting, 5, "{first:?}");
        assert!(world.states().await.iter().all(|s| s == "RETIRING_SEGMENT"));
        let regulations = world.fake.vendors().segment_regulations;
        assert_eq!(regulations.len(), 1, "one regulation for the batch");
        let (job_id, (subjects, _)) = regulations.iter().next().unwrap();
        assert_eq!(subjects.len(), 5, "one user id per learner");
        let learner = world
            .store
            .find_by_username(&Learner::new(0).username)
            .await
            .unwrap();
        let wait = world.store.wait_of(learner.id()).await.unwrap().unwrap();
        assert!(wait.applies_to(&learner));
        assert!(matches!(&wait.on, WaitingOn::Job { job_id: j, .. } if j == job_id));
        assert!(
            learner
                .log()
                .iter()
                .any(|e| e.text.contains(&format!("Job started: SEGMENT {job_id}")))
        );

        // A process started before the next poll is due claims nobody.
        let early = world.run(2).await;
        assert_eq!(early.claimed, 0, "{early:?}");

        // After the poll interval, a new process polls (running), then later finishes it.
        tokio::time::advance(Duration::from_secs(2)).await;
        let second = world.run(3).await;
        assert_eq!(second.waiting, 5, "still running: {second:?}");
        tokio::time::advance(Duration::from_secs(2)).await;
        let third = world.run(4).await;
        // FINISHED: on to Salesforce, where a person is asked and the learners park again.
        assert_eq!(third.waiting, 5, "{third:?}");
        assert!(
            world
                .states()
                .await
                .iter()
                .all(|s| s == "RETIRING_SALESFORCE")
        );
        assert_eq!(world.fake.vendors().salesforce_tasks.len(), 5);

        // Nobody is claimed while the person works, however long it takes.
        tokio::time::advance(Duration::from_secs(7 * 24 * 3600)).await;
        let idle = world.run(5).await;
        assert_eq!(idle.claimed, 0, "{idle:?}");

        // The operator marks two done (as `retire done` does): only they go on.
        for n in 0..2 {
            let r = world
                .store
                .find_by_username(&Learner::new(n).username)
                .await
                .unwrap();
            let why = Override {
                operator: "privacy-officer".into(),
                reason: "Lead erased in Salesforce".into(),
            };
            world
                .store
                .force(r.id(), "SALESFORCE_COMPLETE", &why, world.clock.now())
                .await
                .unwrap();
        }
        let last = world.run(6).await;
        assert_eq!(last.completed, 2, "{last:?}");
        let states = world.states().await;
        assert_eq!(&states[..2], &["COMPLETE", "COMPLETE"]);
        assert!(states[2..].iter().all(|s| s == "RETIRING_SALESFORCE"));
        assert_eq!(
            world.fake.vendors().salesforce_tasks.len(),
            5,
            "no person asked twice"
        );
        assert_eq!(
            world.fake.vendors().segment_regulations.len(),
            1,
            "no second job"
        );
        let polls = world
            .fake
            .calls()
            .iter()
            .filter(|c| c.method == "GET" && c.path.starts_with("/segment/regulations/"))
            .count();
        assert_eq!(polls, 2, "one poll a round for the whole batch");
    });
}

#[tokio::test]
async fn lms_mode_admin_queues_finds_and_cancels_through_the_lms() {
    let store = Arc::new(
        DieselStore::open("sqlite://:memory:", &StoreOptions::default())
            .await
            .unwrap(),
    );
    store.migrate().await.unwrap();
    let names: Vec<String> = STATES.iter().map(|s| s.to_string()).collect();
    store.sync_states(&names, false).await.unwrap();
    let fake = FakeEdx::start(FakeConfig {
        lms_store: Some(store.clone()),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    for n in 0..3 {
        let l = Learner::new(n);
        fake.add_user(FakeUser {
            id: l.id,
            username: l.username.clone(),
            email: l.email.clone(),
            name: format!("Vendor Learner {n}"),
        });
    }
    let clients = Arc::new(vendor_clients(&fake, &HttpOptions::default()));
    let lms = LmsStore::new(clients).unwrap().with_states(names.clone());

    // bulk_retire_users: known users queued, an unknown one and a repeat are not.
    let (queued, failed) = lms
        .bulk_retire(&[
            Learner::new(0).username,
            Learner::new(1).username,
            Learner::new(1).username,
            "nobody-at-all".into(),
        ])
        .await
        .unwrap();
    assert_eq!(queued.len(), 2);
    assert_eq!(failed, vec!["nobody-at-all".to_string()]);

    // By email (the staff lookup names the retirement), and by LMS user id.
    let by_email = lms.find_by_email(&Learner::new(0).email).await.unwrap();
    assert_eq!(by_email.original().username, Learner::new(0).username);
    let by_id = lms.find_by_user_id(Learner::new(1).id).await.unwrap();
    assert_eq!(by_id.original().username, Learner::new(1).username);
    // An active account's email has no retirement.
    assert!(matches!(
        lms.find_by_email(&Learner::new(2).email).await,
        Err(StoreError::NotFound { .. })
    ));

    // Cancel by email: the lookup, then cancel_retirement.
    lms.cancel(by_email.id()).await.unwrap();
    assert!(
        store
            .find_by_username(&Learner::new(0).username)
            .await
            .is_err()
    );

    // A worker without the permissions: the error names what it lacks.
    fake.set_fault(
        "/api/user/v1/accounts",
        Some(Fault {
            status: Some(403),
            ..Fault::default()
        }),
    );
    let refused = lms.find_by_email(&Learner::new(1).email).await.unwrap_err();
    assert!(refused.to_string().contains("is_staff"), "{refused}");
    fake.set_fault(
        "/v1/accounts/bulk_retire_users",
        Some(Fault {
            status: Some(403),
            ..Fault::default()
        }),
    );
    let refused = lms
        .bulk_retire(&[Learner::new(2).username])
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("user_api.add_userretirementrequest"),
        "{refused}"
    );
}
