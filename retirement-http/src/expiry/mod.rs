//! The assignment expiry pass, the PII job and the retirement scrub, written once over
//! `retirement-store`'s [`AssignmentStore`]: the same code runs on this project's own tables
//! (every input stored) and on enterprise-access's database (the enrollment deadline and the
//! subsidy's expiry asked of enterprise-catalog and enterprise-subsidy, [`EnterpriseServices`]).
//!
//! A page at a time: read (keyset), gather the inputs the rows need (each catalog's metadata
//! once per content key per pass, at most 100 keys per request; each subsidy once per pass),
//! decide with `assignment-expiry`, write the page in one short transaction. A service that
//! fails for a policy leaves that policy's rows undecided for the rest of the pass (they are
//! counted, and the pass reports it) instead of aborting the pass as upstream does.

mod braze;
mod services;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use assignment_expiry::{
    ContentMetadata, Context, Decision, Enrollment, ExpiryEmails, NonceSource, PiiNow, Policy,
    Reason, RunMetadata, Tombstone, evaluate, pii_job_decision_for, scrub_for_retired_learner,
    tombstone_email,
};
use chrono::{DateTime, Utc};
use retirement_store::{
    AssignmentStore, Configuration, EmailOutcome, ExpiryWrite, Notify, Row, RowContext, Scan,
    ScrubWrite,
};
use serde::Serialize;

use crate::error::HttpError;

pub use braze::BrazeConfig;
pub use services::{EnterpriseServices, MAX_CONTENT_KEYS, default_service_retry};

/// How expired assignments' emails get sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Notifications {
    /// No expiration email is sent; the PII job does not wait for one (it would wait
    /// forever).
    #[default]
    None,
    /// One row per expiry in the outbox table, in the expiry's transaction; the sender
    /// records each delivery as an `expired` action, which the PII job waits for.
    Outbox,
    /// Sent through Braze right after each page commits; each outcome is recorded as an
    /// `expired` action (successful, or errored with `email_error`), which the PII job waits for.
    Braze,
}

/// One pass's settings.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// The expiry policy.
    pub policy: Policy,
    /// The instant decided at and written everywhere the pass writes a time.
    pub now: DateTime<Utc>,
    /// Read and decide only: write nothing, queue nothing.
    pub dry_run: bool,
    /// Rows per page (and per write transaction).
    pub page_size: usize,
    /// How emails are queued.
    pub notifications: Notifications,
}

/// Rows per page unless configured: one transaction each.
pub const DEFAULT_PAGE_SIZE: usize = 500;

/// What an expiry pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExpirySummary {
    /// Allocated assignments of active configurations evaluated.
    pub scanned: u64,
    /// Expired (or, in a dry run, that would be).
    pub expired: u64,
    /// Expired, by reason.
    pub by_reason: BTreeMap<Reason, u64>,
    /// Emails scrubbed at expiry (ADR 0016's 90-day reason).
    pub scrubbed: u64,
    /// Left allocated: not due yet.
    pub kept: u64,
    /// Rows of inactive (or missing) configurations, which are never scanned.
    pub skipped_inactive: u64,
    /// Rows that could not be decided because a service failed for their policy.
    pub undecided: u64,
    /// Why, per configuration uuid.
    pub undecided_configurations: BTreeMap<String, String>,
    /// Rows another writer changed between read and write (decided again next run).
    pub changed_meanwhile: u64,
    /// Emails queued in the outbox.
    pub emails_queued: u64,
    /// Emails sent through Braze.
    pub emails_sent: u64,
    /// Emails Braze (or the LMS) failed for good: recorded as errored `expired` actions.
    pub emails_failed: u64,
    /// Decisions that carried warnings (unparseable dates, missing runs).
    pub with_warnings: u64,
    /// Pages read.
    pub pages: u64,
    /// Whether nothing was written.
    pub dry_run: bool,
}

/// What the PII job did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PiiSummary {
    /// Expired assignments examined.
    pub scanned: u64,
    /// Emails scrubbed (or, in a dry run, that would be).
    pub scrubbed: u64,
    /// Left alone, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Rows that could not be decided because a service failed for their policy.
    pub undecided: u64,
    /// Why, per configuration uuid.
    pub undecided_configurations: BTreeMap<String, String>,
    /// Rows another writer changed between read and write.
    pub changed_meanwhile: u64,
    /// Whether nothing was written.
    pub dry_run: bool,
}

/// What scrubbing one retiring learner did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScrubSummary {
    /// The assignments scrubbed, by uuid.
    pub scrubbed: Vec<String>,
    /// Other rows of the learner scrubbed (enterprise-access's user row).
    pub other_rows: u64,
}

/// The inputs fetched from the services during one pass.
struct Inputs<'a> {
    services: Option<&'a EnterpriseServices>,
    /// Subsidy expiry per subsidy uuid (`Err`: the service failed).
    subsidies: HashMap<String, Result<Option<String>, String>>,
    /// Catalog records per catalog, by record key (course key).
    records: HashMap<String, HashMap<String, Arc<ContentMetadata>>>,
    /// Content keys already asked of each catalog.
    asked: HashSet<(String, String)>,
    /// Catalogs that failed during this pass.
    failed_catalogs: HashMap<String, String>,
}

impl<'a> Inputs<'a> {
    fn new(services: Option<&'a EnterpriseServices>) -> Inputs<'a> {
        Inputs {
            services,
            subsidies: HashMap::new(),
            records: HashMap::new(),
            asked: HashSet::new(),
            failed_catalogs: HashMap::new(),
        }
    }

    /// Fetches what the page's rows need and has not been fetched yet.
    async fn prefetch(&mut self, rows: &[Row]) {
        let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut subsidies = Vec::new();
        for row in rows {
            let RowContext::FromServices { configuration, .. } = &row.context else {
                continue;
            };
            let Some(policy) = &configuration.policy else {
                continue;
            };
            if !self.subsidies.contains_key(&policy.subsidy_uuid)
                && !subsidies.contains(&policy.subsidy_uuid)
            {
                subsidies.push(policy.subsidy_uuid.clone());
            }
            let key = (
                policy.catalog_uuid.clone(),
                row.assignment.content_key.clone(),
            );
            if !self.failed_catalogs.contains_key(&policy.catalog_uuid) && self.asked.insert(key) {
                wanted
                    .entry(policy.catalog_uuid.clone())
                    .or_default()
                    .push(row.assignment.content_key.clone());
            }
        }
        let Some(services) = self.services else {
            for subsidy in subsidies {
                self.subsidies.insert(
                    subsidy,
                    Err("no enterprise services are configured".to_owned()),
                );
            }
            for catalog in wanted.into_keys() {
                self.failed_catalogs
                    .insert(catalog, "no enterprise services are configured".into());
            }
            return;
        };
        for subsidy in subsidies {
            let found = services
                .subsidy_expiration(&subsidy)
                .await
                .map_err(|e| e.to_string());
            self.subsidies.insert(subsidy, found);
        }
        for (catalog, keys) in wanted {
            for chunk in keys.chunks(MAX_CONTENT_KEYS) {
                let keys: Vec<&str> = chunk.iter().map(String::as_str).collect();
                match services.content_metadata(&catalog, &keys).await {
                    Ok(records) => {
                        let by_key = self.records.entry(catalog.clone()).or_default();
                        for record in records {
                            if let Some(key) = record.get("key").and_then(|k| k.as_str()) {
                                by_key.insert(key.to_owned(), Arc::new(metadata_of(&record)));
                            }
                        }
                    }
                    Err(e) => {
                        self.failed_catalogs.insert(catalog.clone(), e.to_string());
                        break;
                    }
                }
            }
        }
    }

    /// The row's context, or why it cannot be decided.
    fn context(&self, row: &Row) -> Result<Context, String> {
        let (configuration, parent) = match &row.context {
            RowContext::Known(context) => return Ok(context.clone()),
            RowContext::FromServices {
                configuration,
                parent_content_key,
            } => (configuration, parent_content_key),
        };
        let policy = policy_of(configuration)?;
        if let Some(error) = self.failed_catalogs.get(&policy.catalog_uuid) {
            return Err(error.clone());
        }
        let subsidy_expiration = match self.subsidies.get(&policy.subsidy_uuid) {
            Some(Ok(found)) => found.clone(),
            Some(Err(error)) => return Err(error.clone()),
            None => return Err("subsidy not fetched".into()),
        };
        // Upstream: a record matches when its key is the content key or the parent key.
        let records = self.records.get(&policy.catalog_uuid);
        let metadata = records.and_then(|r| {
            r.get(&row.assignment.content_key)
                .or_else(|| parent.as_ref().and_then(|p| r.get(p)))
        });
        Ok(Context {
            enrollment: Enrollment::Metadata(metadata.map(|m| (**m).clone())),
            subsidy_expiration,
            configuration_active: configuration.active,
        })
    }
}

fn policy_of(configuration: &Configuration) -> Result<&retirement_store::PolicyLink, String> {
    configuration
        .policy
        .as_ref()
        .ok_or_else(|| "no subsidy access policy points at this configuration".to_owned())
}

/// The parts of a catalog record the rules read.
fn metadata_of(record: &serde_json::Value) -> ContentMetadata {
    let text = |v: &serde_json::Value, field: &str| {
        v.get(field).and_then(|d| d.as_str()).map(str::to_owned)
    };
    let run = |v: &serde_json::Value| RunMetadata {
        enroll_by_date: text(v, "enroll_by_date"),
        end_date: text(v, "end_date"),
    };
    ContentMetadata {
        normalized_metadata: record.get("normalized_metadata").map(run),
        normalized_metadata_by_run: record
            .get("normalized_metadata_by_run")
            .and_then(|m| m.as_object())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), run(v))).collect())
            .unwrap_or_default(),
    }
}

/// Counts a row a failing service left undecided, keeping the first reason per configuration.
fn count_undecided(
    count: &mut u64,
    by_configuration: &mut BTreeMap<String, String>,
    row: &Row,
    why: String,
) {
    *count += 1;
    by_configuration
        .entry(configuration_uuid(row))
        .or_insert(why);
}

fn configuration_uuid(row: &Row) -> String {
    match &row.context {
        RowContext::FromServices { configuration, .. } => configuration.uuid.clone(),
        RowContext::Known(_) => String::new(),
    }
}

/// One expiry pass over every allocated assignment of `store`. `on_decision` sees each
/// decision (the CLI's `--json` lines, tests).
pub async fn expire(
    store: &dyn AssignmentStore,
    services: Option<&EnterpriseServices>,
    options: &PassOptions,
    nonce: &mut (dyn NonceSource + Send),
    on_decision: &mut (dyn FnMut(&Decision) + Send),
) -> Result<ExpirySummary, HttpError> {
    if options.notifications == Notifications::Braze && !services.is_some_and(|s| s.has_braze()) {
        return Err(HttpError::Service {
            service: "Braze".into(),
            message: "notifications: braze needs a braze: section (api_url, api_key, campaigns)"
                .into(),
        });
    }
    if options.notifications == Notifications::Outbox && !store.has_outbox() {
        return Err(HttpError::Store(
            retirement_store::StoreError::InvalidArgument(format!(
                "notifications: outbox needs an outbox table in the {} schema: run \
                 `expire-assignments migrate`",
                store.schema()
            )),
        ));
    }
    let mut summary = ExpirySummary {
        dry_run: options.dry_run,
        ..ExpirySummary::default()
    };
    let mut inputs = Inputs::new(services);
    let scan = Scan::Expirable {
        with_notified: options.policy.anchor == assignment_expiry::Anchor::LatestNotifiedOrCreated,
    };
    let mut cursor = None;
    loop {
        let page = store.page(scan, cursor.as_ref(), options.page_size).await?;
        summary.pages += 1;
        summary.skipped_inactive += page.inactive;
        inputs.prefetch(&page.rows).await;
        let mut writes = Vec::new();
        for row in &page.rows {
            let context = match inputs.context(row) {
                Ok(context) => context,
                Err(why) => {
                    count_undecided(
                        &mut summary.undecided,
                        &mut summary.undecided_configurations,
                        row,
                        why,
                    );
                    continue;
                }
            };
            summary.scanned += 1;
            let decision = evaluate(&row.assignment, &context, &options.policy, options.now);
            if !decision.warnings.is_empty() {
                summary.with_warnings += 1;
            }
            match decision.expiry() {
                None => summary.kept += 1,
                Some(expiry) => {
                    let tombstone = match &expiry.pii {
                        PiiNow::Keep => None,
                        PiiNow::Tombstone(fixed) if !store.needs_unique_tombstones() => {
                            Some(fixed.clone())
                        }
                        PiiNow::Tombstone(_) | PiiNow::UniqueTombstone => {
                            Some(tombstone_email(Tombstone::Unique, nonce))
                        }
                    };
                    writes.push(ExpiryWrite {
                        key: row.key.clone(),
                        version: row.version.clone(),
                        new_state: expiry.new_state,
                        tombstone,
                        expire_credit_request: expiry.expire_credit_request,
                        reason: expiry.reason,
                        record_reason_as: (options.policy.scrub
                            == assignment_expiry::ScrubTiming::ByPiiJobRecordedReason)
                            .then(|| v4(nonce)),
                    });
                }
            }
            on_decision(&decision);
        }
        let reasons: HashMap<String, (Reason, bool)> = writes
            .iter()
            .map(|w| (w.key.as_str().to_owned(), (w.reason, w.tombstone.is_some())))
            .collect();
        let written: Vec<String> = if options.dry_run {
            writes.iter().map(|w| w.key.as_str().to_owned()).collect()
        } else {
            let notify = match options.notifications {
                Notifications::None => Notify::Nothing,
                Notifications::Outbox => Notify::Outbox,
                Notifications::Braze => Notify::Return,
            };
            let done = store.write_expiries(&writes, options.now, notify).await?;
            summary.changed_meanwhile += done.changed_meanwhile.len() as u64;
            summary.emails_queued += done.queued;
            if let Some(services) = services {
                for notice in &done.notices {
                    // Sent after the commit, as upstream's task is; the outcome is recorded as
                    // upstream's task records it (a B&R success too: upstream records none,
                    // so its PII job never scrubs those rows).
                    let outcome = match services.send_expiry_email(notice).await {
                        Ok(()) => {
                            summary.emails_sent += 1;
                            EmailOutcome::Delivered
                        }
                        Err(e) => {
                            summary.emails_failed += 1;
                            tracing::warn!(assignment = %notice.assignment_uuid, error = %e, "expiration email failed");
                            EmailOutcome::Failed(e.to_string())
                        }
                    };
                    let action = v4(nonce);
                    store
                        .record_email(notice, &action, &outcome, options.now)
                        .await?;
                }
            }
            done.written
        };
        for key in written {
            if let Some((reason, scrubbed)) = reasons.get(&key) {
                summary.expired += 1;
                *summary.by_reason.entry(*reason).or_default() += 1;
                summary.scrubbed += u64::from(*scrubbed);
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(summary)
}

/// The PII job: scrubs expired assignments whose expiration email was delivered and whose
/// recomputed earliest reason is the 90-day one (rule set B, §4.6).
pub async fn scrub_pii(
    store: &dyn AssignmentStore,
    services: Option<&EnterpriseServices>,
    options: &PassOptions,
    nonce: &mut (dyn NonceSource + Send),
) -> Result<PiiSummary, HttpError> {
    let mut summary = PiiSummary {
        dry_run: options.dry_run,
        ..PiiSummary::default()
    };
    let mut inputs = Inputs::new(services);
    let mut cursor = None;
    loop {
        let page = store
            .page(Scan::PiiCandidates, cursor.as_ref(), options.page_size)
            .await?;
        inputs.prefetch(&page.rows).await;
        let mut writes = Vec::new();
        for row in &page.rows {
            let context = match inputs.context(row) {
                Ok(context) => context,
                Err(why) => {
                    count_undecided(
                        &mut summary.undecided,
                        &mut summary.undecided_configurations,
                        row,
                        why,
                    );
                    continue;
                }
            };
            summary.scanned += 1;
            let emails = match options.notifications {
                Notifications::None => ExpiryEmails::NotSent,
                Notifications::Outbox | Notifications::Braze => ExpiryEmails::Recorded,
            };
            let decision = pii_job_decision_for(
                &row.assignment,
                &context,
                &options.policy,
                options.now,
                emails,
                nonce,
            );
            match (decision.tombstone, decision.skipped_because) {
                (Some(tombstone), _) => writes.push(ScrubWrite {
                    key: row.key.clone(),
                    version: Some(row.version.clone()),
                    tombstone,
                }),
                (None, why) => {
                    *summary
                        .skipped
                        .entry(why.unwrap_or("no reason"))
                        .or_default() += 1
                }
            }
        }
        if options.dry_run {
            summary.scrubbed += writes.len() as u64;
        } else {
            let done = store.write_scrubs(&writes, options.now).await?;
            summary.scrubbed += done.written.len() as u64;
            summary.changed_meanwhile += done.changed_meanwhile.len() as u64;
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(summary)
}

/// Scrubs every assignment of a retiring learner, in any state (upstream has no such hook),
/// matched by `lms_user_id` or by email in any case: a unique tombstone on the row and
/// everywhere the schema kept the email. Safe to repeat.
pub async fn scrub_learner(
    store: &dyn AssignmentStore,
    email: &str,
    lms_user_id: Option<i64>,
    now: DateTime<Utc>,
    nonce: &mut (dyn NonceSource + Send),
) -> Result<ScrubSummary, HttpError> {
    let rows = store.learner_rows(email, lms_user_id).await?;
    let assignments: Vec<_> = rows.iter().map(|r| r.assignment.clone()).collect();
    let scrubs = scrub_for_retired_learner(&assignments, email, lms_user_id, nonce);
    let keys: HashMap<&str, &Row> = rows
        .iter()
        .map(|r| (r.assignment.uuid.as_str(), r))
        .collect();
    let writes: Vec<ScrubWrite> = scrubs
        .iter()
        .filter_map(|s| keys.get(s.uuid.as_str()))
        .zip(&scrubs)
        .map(|(row, s)| ScrubWrite {
            key: row.key.clone(),
            version: None,
            tombstone: s.tombstone.clone(),
        })
        .collect();
    store.write_scrubs(&writes, now).await?;
    let other_rows = store
        .scrub_learner_elsewhere(
            email,
            lms_user_id,
            &tombstone_email(Tombstone::Unique, nonce),
        )
        .await?;
    Ok(ScrubSummary {
        scrubbed: scrubs.into_iter().map(|s| s.uuid).collect(),
        other_rows,
    })
}

/// A version-4 UUID from `nonce` (action rows' ids).
fn v4(nonce: &mut (dyn NonceSource + Send)) -> String {
    let (a, b) = (nonce.next_nonce(), nonce.next_nonce());
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}
