//! From config to live parts: the store, the HTTP clients, the steps, the pipeline.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use retirement_core::{Pipeline, RetirementId, StageKind};
use retirement_http::Steps;
use retirement_http::console::Console;
use retirement_http::runtime::default_worker_id;
use retirement_http::{ClientCredentials, HttpOptions, LmsStore, ServiceClients};
use retirement_store::enterprise_access::EnterpriseAccessStore;
use retirement_store::{AssignmentStore, DieselStore, Journal, RetirementStore, StoreOptions};

use crate::config::{AssignmentsSchema, Config};
use crate::error::CliError;

/// The store URL meaning "the LMS API is the store".
pub const LMS_STORE: &str = "lms";

/// What the commands work with.
pub struct Wired {
    /// The status store.
    pub store: Arc<dyn RetirementStore>,
    /// The SQL store, when the status store is one (admin commands that need SQL).
    pub sql: Option<Arc<DieselStore>>,
    /// The HTTP clients, when the config names an LMS (or other services).
    pub clients: Option<Arc<ServiceClients>>,
    /// The LMS store, when the LMS is the store (its own admin calls: bulk requests).
    pub lms: Option<Arc<LmsStore>>,
    /// The operator journal (extensions, reveals, runs): the SQL store, or the lease database
    /// in LMS mode; `None` for the LMS without a `lease_store`.
    pub journal: Option<Arc<dyn Journal>>,
}

impl Wired {
    /// The journal, or a refusal saying where one comes from.
    pub fn journal(&self, what: &str) -> Result<&Arc<dyn Journal>, CliError> {
        self.journal.as_ref().ok_or_else(|| {
            CliError::Refused(format!(
                "{what} needs a database to record it in: with store: lms, set lease_store \
                 (the LMS has nowhere to keep it)"
            ))
        })
    }

    /// How many times each learner's deadline was extended (none without a journal).
    pub async fn extensions(&self) -> Result<BTreeMap<RetirementId, u32>, CliError> {
        match &self.journal {
            Some(journal) => Ok(journal.extensions().await?),
            None => Ok(BTreeMap::new()),
        }
    }
}

/// 64 random bits from the OS (std seeds `RandomState` from it): tombstone nonces and jitter
/// seeds, without another dependency.
pub fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// The HTTP options the config asks for. The `User-Agent` names the worker (host and process,
/// never a learner), so the LMS's access log tells which host called.
pub fn http_options(config: &Config, worker: &str) -> HttpOptions {
    HttpOptions {
        user_agent: format!(
            "learner-retirement/{} ({worker})",
            env!("CARGO_PKG_VERSION")
        ),
        connect_timeout: Duration::from_secs_f64(config.timeouts.connect_seconds),
        request_timeout: Duration::from_secs_f64(config.timeouts.request_seconds),
        token_timeout: Duration::from_secs_f64(config.timeouts.token_seconds),
        max_concurrent_per_service: config.max_concurrent_per_service.max(1),
        rate_limits: config.rate_limits.clone(),
        ..HttpOptions::default()
    }
}

/// The service clients, or `None` when the config has no `base_urls.lms` (a standalone store
/// whose pipeline only uses generic services still needs the LMS for tokens).
pub fn clients(config: &Config, worker: &str) -> Result<Option<Arc<ServiceClients>>, CliError> {
    if !config.base_urls.contains_key("lms")
        && config.services.is_empty()
        && config.connectors.is_empty()
    {
        return Ok(None);
    }
    let client_id = config
        .client_id
        .clone()
        .ok_or_else(|| config.error("client_id", "is required to call services"))?;
    let client_secret = config
        .client_secret
        .clone()
        .ok_or_else(|| config.error("client_secret", "is required to call services"))?;
    if !config.base_urls.contains_key("lms") {
        return Err(config.error(
            "base_urls.lms",
            "is required: the LMS issues the token every service accepts",
        ));
    }
    let base_urls: BTreeMap<String, String> = config.base_urls.clone();
    let clients = ServiceClients::new(
        base_urls,
        ClientCredentials {
            client_id,
            client_secret: client_secret.expose().to_owned(),
        },
        config.services.clone(),
        &http_options(config, worker),
    )
    .and_then(|clients| clients.with_connectors(config.connectors.clone()))
    .map_err(|e| config.error("base_urls", e.to_string()))?;
    Ok(Some(Arc::new(clients)))
}

/// Opens a SQL store, refusing one whose schema is behind.
pub async fn open_sql(url: &str) -> Result<Arc<DieselStore>, CliError> {
    Ok(Arc::new(
        DieselStore::connect(url, &StoreOptions::default()).await?,
    ))
}

/// The assignment tables at `url`, laid out as `assignments_schema` says. enterprise-access's
/// database is recognised (every table and column the jobs use) before anything is written.
pub async fn assignment_store(
    config: &Config,
    url: &str,
) -> Result<Arc<dyn AssignmentStore>, CliError> {
    match config.assignments_schema {
        AssignmentsSchema::Own => Ok(open_sql(url).await?),
        AssignmentsSchema::EnterpriseAccess => {
            let sql = Arc::new(DieselStore::open(url, &StoreOptions::default()).await?);
            Ok(Arc::new(EnterpriseAccessStore::open(sql).await?))
        }
    }
}

/// Opens the configured store (and the clients, for LMS mode and for steps) as this process's
/// default worker.
pub async fn wire(config: &Config) -> Result<Wired, CliError> {
    wire_as(config, &default_worker_id()).await
}

/// [`wire`] for the worker named `worker` (`retire run --worker-id`).
pub async fn wire_as(config: &Config, worker: &str) -> Result<Wired, CliError> {
    let clients = clients(config, worker)?;
    if config.store == LMS_STORE {
        let clients = clients.ok_or_else(|| {
            config.error(
                "store",
                "`lms` needs base_urls.lms, client_id and client_secret",
            )
        })?;
        let mut store = LmsStore::new(clients.clone()).map_err(CliError::Store)?;
        let mut journal: Option<Arc<dyn Journal>> = None;
        if let Some(url) = &config.lease_store {
            let leases = open_sql(url).await?;
            journal = Some(leases.clone());
            store = store.with_leases(leases);
        }
        if config.retirement_pipeline.is_some() {
            store = store.with_states(config.desired_states()?);
        }
        let store = Arc::new(store);
        return Ok(Wired {
            store: store.clone(),
            sql: None,
            clients: Some(clients),
            lms: Some(store),
            journal,
        });
    }
    if config.lease_store.is_some() {
        return Err(config.error(
            "lease_store",
            "is for `store: lms` only: a SQL store keeps its leases beside its states",
        ));
    }
    let sql = open_sql(&config.store).await?;
    Ok(Wired {
        store: sql.clone(),
        sql: Some(sql.clone()),
        clients,
        lms: None,
        journal: Some(sql),
    })
}

/// The pipeline, checked against the store's state table when the store has one.
pub async fn pipeline(config: &Config, wired: &Wired) -> Result<Arc<Pipeline>, CliError> {
    let table = match &wired.sql {
        Some(sql) => Some(sql.state_table().await?),
        None => None,
    };
    if let Some(table) = &table
        && table.is_empty()
    {
        return Err(CliError::Refused(
            "the store has no retirement states yet: run `retire states sync` first".into(),
        ));
    }
    let mut pipeline = config.pipeline(table.as_ref())?;
    if let Some(clients) = &wired.clients {
        pipeline =
            pipeline.with_kinds(|stage| clients.stage_kind(&stage.service, &stage.operation));
    }
    let parks = pipeline.stages().iter().find(|s| s.kind != StageKind::Call);
    if let Some(stage) = parks
        && config.store == LMS_STORE
        && config.lease_store.is_none()
    {
        return Err(config.error(
            "lease_store",
            format!(
                "is required with store: lms for {} {}: a learner waiting on a vendor job or a \
                 person is parked, and the LMS has nowhere to keep the wait (a SQL database; \
                 sqlite://PATH for one host)",
                stage.service, stage.operation
            ),
        ));
    }
    Ok(Arc::new(pipeline))
}

/// What an operator should know about `pipeline` before it runs: legacy stages, and the
/// partner-queue stage without a partner report (its copies of the originals stay in the LMS).
pub fn pipeline_warnings(config: &Config, pipeline: &Pipeline) -> Vec<String> {
    let mut warnings = Vec::new();
    for stage in pipeline.stages() {
        if let Some(why) = retirement_http::catalog::legacy_note(&stage.service, &stage.operation) {
            warnings.push(format!(
                "{} {} is legacy: {why}",
                stage.service, stage.operation
            ));
        }
        if stage.service == "LMS"
            && stage.operation == "retirement_partner_queue"
            && !config.partner_report_configured()
        {
            warnings.push(
                "LMS retirement_partner_queue copies each learner's original username, email and \
                 name into the LMS's partner-reporting table, and only a partner report empties \
                 it; none is configured (org_partner_mapping), so those copies stay: configure \
                 and run `retire partner-report`, empty it with `retire partner-queue drain`, \
                 or drop the stage"
                    .to_owned(),
            );
        }
    }
    warnings
}

/// The steps for `pipeline`, checked before any learner is touched.
pub async fn steps(
    config: &Config,
    wired: &Wired,
    pipeline: &Pipeline,
) -> Result<Arc<Steps>, CliError> {
    let clients = match &wired.clients {
        Some(c) => c.clone(),
        None => {
            return Err(config.error(
                "base_urls.lms",
                "is required: the pipeline's services are called with the LMS's token",
            ));
        }
    };
    let assignments = match &config.assignments_store {
        Some(url) => Some(assignment_store(config, url).await?),
        None => wired.sql.clone().map(|sql| sql as Arc<dyn AssignmentStore>),
    };
    let steps = Steps::new(clients, assignments, random_u64());
    steps
        .check_pipeline(pipeline)
        .map_err(|m| config.error("retirement_pipeline", m))?;
    Ok(Arc::new(steps))
}

/// The console's view of the wired store (`retire serve`, `retire extend`, the deadline
/// alerts): one definition of what "stuck", "due" and "overdue" mean.
pub fn console(config: &Config, wired: &Wired, pipeline: Arc<Pipeline>) -> Console {
    Console {
        store: wired.store.clone(),
        journal: wired.journal.clone(),
        pipeline,
        regime: config.deadline_regime,
        clock: Arc::new(retirement_http::clock::SystemClock),
        stuck_after: chrono::TimeDelta::seconds(config.lease_seconds as i64),
        store_kind: store_kind(&config.store).to_owned(),
    }
}

/// `sqlite`, `postgres`, `mysql` or `lms`.
fn store_kind(url: &str) -> &str {
    if url == LMS_STORE {
        return "lms";
    }
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("postgres" | "postgresql") => "postgres",
        Some("mysql" | "mariadb") => "mysql",
        Some(other) => other,
        None => "sqlite",
    }
}
