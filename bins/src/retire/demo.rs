//! `retire demo`: the whole system on one machine with nothing but this binary — a fake edX on
//! 127.0.0.1 that guards its step endpoints with the learners' states, a temporary SQLite
//! store, made-up learners, and the six-stage pipeline — or, with `--services all`, every
//! erasure stream: the LMS's stages, credentials and every third-party connector.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use std::collections::BTreeMap;

use clap::Args;
use retirement_core::{OriginalIdentity, Override, Pipeline, SIX_STAGE_EXAMPLE, WaitingOn};
use retirement_http::Steps;
use retirement_http::console;
use retirement_http::runtime::{RunOptions, RunSummary, Runner};
use retirement_store::{DieselStore, RetirementStore};

use super::Global;
use super::drive::{Progress, stop_on_signals};
use crate::error::{CliError, exit};
use crate::logging;
use crate::sandbox::{ALL_SERVICES, Sandbox, SandboxOptions};
use crate::wiring::random_u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Services {
    /// The six-stage example pipeline (LMS stages and ecommerce).
    SixStage,
    /// Every erasure stream: the LMS's stages, credentials, every third-party connector
    /// (Segment and Amplitude jobs polled, Braze batched, HubSpot, Marketing Cloud, the
    /// Salesforce manual step, which the demo marks done as an operator would) and the edX
    /// fork's services described by config.
    All,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many learners to retire.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    learners: u32,
    /// Learners retired at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    concurrency: u32,
    /// Which services the learners are retired from.
    #[arg(long, value_enum, default_value_t = Services::SixStage)]
    services: Services,
    /// Keep the SQLite file in this directory instead of a temporary one (inspect it with
    /// `retire status --store sqlite://DIR/store.db …`).
    #[arg(long, value_name = "DIR")]
    keep_in: Option<PathBuf>,
    /// Afterwards, queue made-up requests in every kind of state (PENDING, stuck, ERRORED,
    /// overdue, …) and serve the operator console over the demo's store, with a printed
    /// sign-in, until Ctrl-C.
    #[arg(long)]
    serve: bool,
    /// Where the console listens with --serve.
    #[arg(long, default_value = super::serve::DEFAULT_LISTEN, requires = "serve")]
    listen: String,
}

pub(crate) async fn demo(global: &Global, args: DemoArgs) -> Result<u8, CliError> {
    let all = args.services == Services::All;
    let mut sandbox = Sandbox::new(SandboxOptions {
        dir: args.keep_in.clone(),
        prefix: "Demo".into(),
        pipeline: if all { ALL_SERVICES } else { SIX_STAGE_EXAMPLE },
        ..SandboxOptions::new("demo")
    })
    .await?;
    let store = sandbox.store.clone();
    let clients = sandbox.clients()?;
    let pipeline = Arc::new(sandbox.options().pipeline(&clients)?);

    println!(
        "demo: fake edX and vendors at {}, store {}, {} learners, {} stages, concurrency {}",
        sandbox.fake.base_url(),
        store.redacted_url(),
        args.learners,
        pipeline.stages().len(),
        args.concurrency
    );
    let learners = sandbox.seed(args.learners as usize).await?;
    if all {
        seed_vendors(&sandbox, &learners);
    }

    let steps = Arc::new(Steps::new(clients, Some(store.clone()), random_u64()));
    steps.check_pipeline(&pipeline).map_err(CliError::Refused)?;
    let runner = Runner::new(
        store.clone(),
        steps,
        pipeline.clone(),
        RunOptions {
            concurrency: args.concurrency as usize,
            seed: random_u64(),
            ..RunOptions::default()
        },
    );
    let bar = logging::progress(
        Some(u64::from(args.learners)),
        logging::interactive(global.log_format),
    );
    let started = Instant::now();
    let stop = stop_on_signals();
    let mut total = RunSummary::default();
    let mut marked_done = 0u64;
    loop {
        let summary = runner
            .run(stop.clone(), Arc::new(Progress(bar.clone())))
            .await?;
        total.merge(&summary);
        if summary.shutdown || sandbox.unfinished().await? == 0 {
            break;
        }
        // The people: the Salesforce Tasks are made up, so the demo marks them done.
        marked_done += mark_people_done(&store, &pipeline).await?;
        // The vendors' jobs: wait for the earliest next poll.
        if let Some(next) = next_poll(&store).await? {
            let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
        } else if summary.claimed == 0 && marked_done == 0 {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let calls = sandbox.fake.calls();
    let overlaps = sandbox.fake.overlaps().len();
    println!(
        "learners completed: {} of {} (errored {}, interrupted {})",
        total.completed, args.learners, total.errored, total.interrupted
    );
    println!(
        "calls made:         {} service calls, {} state writes; {overlaps} overlapping calls for one learner",
        calls.len(),
        total.writes
    );
    let mut clean = true;
    if all {
        let mut per_service: BTreeMap<&'static str, usize> = BTreeMap::new();
        for call in &calls {
            *per_service.entry(service_of(&call.path)).or_default() += 1;
        }
        println!("calls per service:");
        for (service, n) in &per_service {
            println!("  {service:<28} {n}");
        }
        println!("manual steps marked done by the demo's operator: {marked_done}");
        let scan = privacy_scan(&calls);
        println!(
            "privacy scan of the fakes' request records: {} carry an original identifier, each \
             where the API is keyed by it ({}); {} elsewhere",
            scan.required,
            REQUIRED
                .iter()
                .map(|(p, _)| *p)
                .collect::<Vec<_>>()
                .join(", "),
            scan.unexpected.len()
        );
        for path in &scan.unexpected {
            println!("  unexpected: {path}");
        }
        clean = scan.unexpected.is_empty();
    }
    println!("wall time:          {seconds:.2} s");
    println!(
        "learners per second: {:.0}",
        total.completed as f64 / seconds.max(1e-9)
    );
    let demo_ok = total.completed == u64::from(args.learners) && overlaps == 0 && clean;
    if args.serve {
        use retirement_store::Journal as _;
        let ended = chrono::Utc::now();
        store
            .record_run(&retirement_store::RunRecord {
                started: ended - chrono::TimeDelta::milliseconds((seconds * 1000.0) as i64),
                ended,
                worker: "retire-demo".into(),
                outcome: if demo_ok { "ok" } else { "errored" }.into(),
                claimed: total.claimed,
                completed: total.completed,
                errored: total.errored,
                waiting: total.waiting,
                deferred: total.deferred,
            })
            .await?;
        serve_console(&store, &pipeline, &args.listen).await?;
    }
    drop(store);
    if let Some(dir) = sandbox.finish(false) {
        println!("store kept at {}", dir.join("store.db").display());
    }
    Ok(if demo_ok { exit::OK } else { exit::FAILED })
}

/// `--serve`: forty more made-up requests in every kind of state, then the console over the
/// demo's store with a one-time operator password, until Ctrl-C.
async fn serve_console(
    store: &Arc<DieselStore>,
    pipeline: &Arc<Pipeline>,
    listen: &str,
) -> Result<(), CliError> {
    let ids = retirement_core::RetiredIdConfig::new(vec!["demo-console-salt".into()])
        .map_err(|e| CliError::Refused(e.to_string()))?;
    retirement_http::fake::console::seed_examples(
        store,
        pipeline,
        &ids,
        chrono::Utc::now(),
        40,
        "Queue",
    )
    .await?;
    let listener = super::serve::bind(listen).await?;
    let local = listener
        .local_addr()
        .map_err(CliError::io("reading the listening address"))?;
    let url = format!("http://{local}");
    let password = console::access::random_token();
    let access = console::Access::new(console::AccessConfig {
        operators: vec![console::Operator {
            name: "demo".into(),
            password_hash: console::access::hash_password(&password)?,
        }],
        lms: None,
        public_url: url.clone(),
        secure_cookies: false,
    })?;
    let view = console::Console {
        store: store.clone(),
        journal: Some(store.clone()),
        pipeline: pipeline.clone(),
        regime: retirement_core::Regime::Gdpr,
        clock: Arc::new(retirement_http::clock::SystemClock),
        stuck_after: retirement_http::runtime::DEFAULT_LEASE,
        store_kind: "sqlite".into(),
    };
    println!("console:            {url}");
    println!("sign in as:         demo / {password}");
    println!("(Ctrl-C stops the console and removes the demo's store)");
    let stop = stop_on_signals();
    console::serve(listener, console::router(view, access, None), async move {
        let mut stop = stop;
        let _ = stop.wait_for(|s| *s).await;
    })
    .await
    .map_err(CliError::io("serving the console"))
}

/// Gives the vendors records of the learners: HubSpot and Marketing Cloud contacts and Red
/// Ventures' records for every other learner (the rest are "not found", which is done too),
/// Salesforce Leads for every tenth (their Tasks need a person).
fn seed_vendors(sandbox: &Sandbox, learners: &[OriginalIdentity]) {
    sandbox.fake.with_vendors(|v| {
        v.polls_to_finish = 1;
        for (i, l) in learners.iter().enumerate() {
            if i % 2 == 0 {
                v.hubspot_contacts.insert(l.email.clone());
                v.sfmc_contacts
                    .insert(l.email.clone(), format!("contact-{i}"));
                v.rv_emails.insert(l.email.clone());
            }
            if i % 10 == 0 {
                v.salesforce_leads
                    .insert(l.email.clone(), format!("00Q{i:012}"));
            }
        }
    });
}

/// Marks every learner waiting for a person done, as an operator does with `retire done`.
async fn mark_people_done(store: &Arc<DieselStore>, pipeline: &Pipeline) -> Result<u64, CliError> {
    let why = Override {
        operator: "demo".into(),
        reason: "the made-up Salesforce Lead was erased".into(),
    };
    let mut done = 0;
    for (id, wait) in store.waits().await? {
        if !matches!(wait.on, WaitingOn::Person { .. }) {
            continue;
        }
        let record = store.get(id).await?;
        let Some(stage) = pipeline
            .stages()
            .iter()
            .find(|s| s.working_state == wait.working_state)
        else {
            continue;
        };
        if wait.applies_to(&record) {
            store
                .force(id, &stage.complete_state, &why, chrono::Utc::now())
                .await?;
            done += 1;
        }
    }
    Ok(done)
}

/// The earliest next poll of a learner waiting on a vendor job.
async fn next_poll(
    store: &Arc<DieselStore>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, CliError> {
    let mut earliest = None;
    for (id, wait) in store.waits().await? {
        if let WaitingOn::Job { next_poll, .. } = wait.on
            && wait.applies_to(&store.get(id).await?)
        {
            earliest = Some(
                earliest.map_or(next_poll, |e: chrono::DateTime<chrono::Utc>| {
                    e.min(next_poll)
                }),
            );
        }
    }
    Ok(earliest)
}

/// Which service a recorded call went to.
fn service_of(path: &str) -> &'static str {
    const PREFIXES: &[(&str, &str)] = &[
        ("/braze/", "BRAZE"),
        ("/amplitude/", "AMPLITUDE"),
        ("/hubspot/", "HUBSPOT"),
        ("/segment/", "SEGMENT"),
        ("/sfmc/", "SALESFORCE_MARKETING_CLOUD"),
        ("/salesforce/", "SALESFORCE"),
        ("/redventures/", "RED_VENTURES"),
        ("/lms/user_retirement/", "COMMERCE_COORDINATOR"),
        ("/api/certificates/", "LMS_CERTIFICATES"),
        ("/api/v2/replace_usernames/", "CREDENTIALS"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map(|(_, service)| *service)
        .unwrap_or("LMS")
}

/// Where a request may carry an original identifier because the API is keyed by it: (path
/// prefix, what).
const REQUIRED: &[(&str, &str)] = &[
    (
        "LMS steps",
        "the original username: the LMS's step APIs take it",
    ),
    (
        "credentials",
        "the original username: replace_usernames maps it",
    ),
    (
        "Segment",
        "the original username as a userId, as tubular sends it",
    ),
    ("HubSpot", "the email: the GDPR delete is keyed by it"),
    (
        "Marketing Cloud",
        "the email: the contact search is keyed by it",
    ),
];

struct Scan {
    required: usize,
    unexpected: Vec<String>,
}

/// Scans every recorded request (path and body) for the demo learners' originals: their
/// usernames, emails and names share the prefixes `Demo.Learner`, `demo.learner` and
/// `Demo Person`, so one pass finds any of them.
fn privacy_scan(calls: &[retirement_http::fake::RecordedCall]) -> Scan {
    let mut scan = Scan {
        required: 0,
        unexpected: Vec::new(),
    };
    for call in calls {
        let text = format!("{} {}", call.path, call.body);
        let username = text.contains("Demo.Learner");
        let email = text.contains("demo.learner");
        let name = text.contains("Demo Person");
        if !(username || email || name) {
            continue;
        }
        let allowed = !name
            && if email {
                call.path == "/hubspot/crm/v3/objects/contacts/gdpr-delete"
                    || call.path == "/sfmc/contacts/v1/addresses/email/search"
            } else {
                call.path.starts_with("/api/") || call.path == "/segment/regulations"
            };
        if allowed {
            scan.required += 1;
        } else {
            scan.unexpected
                .push(format!("{} {}", call.method, call.path));
        }
    }
    scan.unexpected.sort();
    scan.unexpected.dedup();
    scan
}
