//! The sandbox (feature `demo`): a whole retirement world on one machine — a store with the
//! six-stage states, the fake edX on 127.0.0.1 serving the LMS API from that store and guarding
//! its step endpoints with each learner's state, made-up learners, and a tubular config file
//! pointing at both. `retire demo`, the `retire` tests, the chaos runs and the driver bench all
//! start from it; nothing else sets such a world up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use retirement_core::{OriginalIdentity, RetiredIdConfig, SIX_STAGE_EXAMPLE, SIX_STAGE_STATES};
use retirement_http::fake::{FakeConfig, FakeEdx};
use retirement_http::{ClientCredentials, HttpOptions, ServiceClients};
use retirement_store::{DieselStore, NewRetirement, RetirementStore, StoreOptions};

use crate::error::CliError;
use crate::wiring::random_u64;

/// The salt the sandbox's retired identifiers are hashed with.
pub const SALT: &str = "sandbox-salt";

/// Every erasure stream (`retire demo --services all`): the LMS's stages, credentials, every
/// third-party connector, the edX fork's services described by config, and the LMS's own
/// retirement last.
pub const ALL_SERVICES: &[[&str; 4]] = &[
    [
        "RETIRING_FORUMS",
        "FORUMS_COMPLETE",
        "LMS",
        "retirement_retire_forum",
    ],
    [
        "RETIRING_ENROLLMENTS",
        "ENROLLMENTS_COMPLETE",
        "LMS",
        "retirement_unenroll",
    ],
    [
        "RETIRING_NOTES",
        "NOTES_COMPLETE",
        "LMS",
        "retirement_retire_notes",
    ],
    [
        "RETIRING_CREDENTIALS",
        "CREDENTIALS_COMPLETE",
        "CREDENTIALS",
        "retire_learner",
    ],
    [
        "RETIRING_SEGMENT",
        "SEGMENT_COMPLETE",
        "SEGMENT",
        "delete_and_suppress_learner",
    ],
    [
        "RETIRING_AMPLITUDE",
        "AMPLITUDE_COMPLETE",
        "AMPLITUDE",
        "delete_user",
    ],
    ["RETIRING_BRAZE", "BRAZE_COMPLETE", "BRAZE", "delete_user"],
    [
        "RETIRING_HUBSPOT",
        "HUBSPOT_COMPLETE",
        "HUBSPOT",
        "delete_user",
    ],
    [
        "RETIRING_SFMC",
        "SFMC_COMPLETE",
        "SALESFORCE_MARKETING_CLOUD",
        "delete_contact",
    ],
    [
        "RETIRING_SALESFORCE",
        "SALESFORCE_COMPLETE",
        "SALESFORCE",
        "retire_learner",
    ],
    [
        "RETIRING_RED_VENTURES",
        "RED_VENTURES_COMPLETE",
        "RED_VENTURES",
        "delete_user",
    ],
    [
        "RETIRING_COMMERCE",
        "COMMERCE_COMPLETE",
        "COMMERCE_COORDINATOR",
        "retire_learner",
    ],
    [
        "RETIRING_CERTIFICATES",
        "CERTIFICATES_COMPLETE",
        "LMS_CERTIFICATES",
        "retire_certs_s3_for_user",
    ],
    [
        "RETIRING_LMS_MISC",
        "LMS_MISC_COMPLETE",
        "LMS",
        "retirement_lms_retire_misc",
    ],
    [
        "RETIRING_LMS",
        "LMS_COMPLETE",
        "LMS",
        "retirement_lms_retire",
    ],
];

/// How to build a [`Sandbox`].
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Part of the temporary directory's name (`retire-<name>-<pid>-<n>`).
    pub name: String,
    /// Use this directory (created if missing, kept afterwards) instead of a temporary one.
    pub dir: Option<PathBuf>,
    /// The store's URL (a fresh database on a server); default a SQLite file in the directory.
    pub store_url: Option<String>,
    /// Made-up learners' usernames are `<prefix>.Learner00042`.
    pub prefix: String,
    /// Learners are queued this many days ago (past the default 7-day cool-off).
    pub requested_days_ago: i64,
    /// Seeds the fake's fault draws.
    pub fake_seed: u64,
    /// The fake serves the LMS API (`store: lms`) from the store, and so reads each step
    /// call's learner state from it (recorded with the call; the LMS steps are guarded by it).
    pub serve_lms: bool,
    /// The fake refuses an LMS step call for a learner outside that step's working state.
    pub guard_steps: bool,
    /// The pipeline's rows (default the six-stage example); the store gets its states.
    pub pipeline: &'static [[&'static str; 4]],
}

impl SandboxOptions {
    /// The state table of the pipeline: PENDING, each stage's pair, the end states.
    pub fn states(&self) -> Vec<String> {
        if std::ptr::eq(self.pipeline, SIX_STAGE_EXAMPLE) {
            return SIX_STAGE_STATES.iter().map(|s| s.to_string()).collect();
        }
        let mut states = vec![retirement_core::PENDING.to_owned()];
        for [w, c, _, _] in self.pipeline {
            states.push(w.to_string());
            states.push(c.to_string());
        }
        states.extend(retirement_core::END_STATES.iter().map(|s| s.to_string()));
        states
    }

    /// The pipeline, with each stage's kind as the sandbox's connectors do it.
    pub fn pipeline(
        &self,
        clients: &ServiceClients,
    ) -> Result<retirement_core::Pipeline, CliError> {
        let stages = self
            .pipeline
            .iter()
            .map(|[w, c, s, o]| retirement_core::Stage::new(*w, *c, *s, *o))
            .collect();
        let table = retirement_core::StateTable::from_names(&self.states())
            .map_err(|e| CliError::Refused(e.to_string()))?;
        let pipeline = retirement_core::Pipeline::new(stages, &table)
            .map_err(|e| CliError::Refused(e.to_string()))?;
        Ok(pipeline.with_kinds(|s| clients.stage_kind(&s.service, &s.operation)))
    }

    /// A temporary sandbox with a SQLite store, learners requested 30 days ago.
    pub fn new(name: &str) -> SandboxOptions {
        SandboxOptions {
            name: name.to_owned(),
            dir: None,
            store_url: None,
            prefix: "Sandbox".to_owned(),
            requested_days_ago: 30,
            fake_seed: 0xC4A05,
            serve_lms: true,
            guard_steps: true,
            pipeline: SIX_STAGE_EXAMPLE,
        }
    }
}

/// See the module docs. Dropping it stops the fake; [`Sandbox::finish`] also removes the
/// directory.
pub struct Sandbox {
    /// The fake edX (its record of every call is what tests check).
    pub fake: FakeEdx,
    /// The store the learners live in: the driver's, or the one the fake LMS serves.
    pub store: Arc<DieselStore>,
    /// The store's URL.
    pub url: String,
    /// Where the store file, the config and any captured output live.
    pub dir: PathBuf,
    /// The learners queued so far.
    pub seeded: Vec<OriginalIdentity>,
    options: SandboxOptions,
    // Last: removes a temporary directory after the fake and the store are gone.
    guard: DirGuard,
}

/// Removes a temporary sandbox's directory when dropped (also after an early error).
struct DirGuard {
    dir: PathBuf,
    remove: bool,
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("url", &self.store.redacted_url())
            .field("dir", &self.dir)
            .field("learners", &self.seeded.len())
            .finish()
    }
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> CliError {
    CliError::io(what)
}

impl Sandbox {
    /// Creates the directory and the store (migrated, the six-stage states installed), and
    /// starts the fake edX over it.
    pub async fn new(options: SandboxOptions) -> Result<Sandbox, CliError> {
        let (dir, temporary) = match &options.dir {
            Some(dir) => (dir.clone(), false),
            None => (
                std::env::temp_dir().join(format!(
                    "retire-{}-{}-{:x}",
                    options.name,
                    std::process::id(),
                    random_u64()
                )),
                true,
            ),
        };
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let url = options
            .store_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.join("store.db").display()));
        // The fake answers from this store at high rates: SQLite's statements run on the
        // calling task (no hop to the blocking pool and back per statement).
        let store = Arc::new(
            DieselStore::open(
                &url,
                &StoreOptions {
                    sqlite_inline: true,
                    ..StoreOptions::default()
                },
            )
            .await?,
        );
        store.migrate().await?;
        store.sync_states(&options.states(), false).await?;
        let fake = FakeEdx::start(FakeConfig {
            lms_store: options.serve_lms.then(|| store.clone()),
            enforce_state_guard: options.guard_steps,
            seed: options.fake_seed,
            ..FakeConfig::default()
        })
        .await?;
        Ok(Sandbox {
            fake,
            store,
            url,
            dir: dir.clone(),
            seeded: Vec::new(),
            options,
            guard: DirGuard {
                dir: dir.clone(),
                remove: temporary,
            },
        })
    }

    /// Queues `n` more made-up learners, with originals distinctive enough that a plain
    /// substring scan finds any leak.
    pub async fn seed(&mut self, n: usize) -> Result<Vec<OriginalIdentity>, CliError> {
        let ids = RetiredIdConfig::new(vec![SALT.into()])
            .map_err(|e| CliError::Refused(e.to_string()))?;
        let requested = Utc::now() - TimeDelta::days(self.options.requested_days_ago);
        let prefix = &self.options.prefix;
        let start = self.seeded.len();
        let mut added = Vec::with_capacity(n);
        for i in start..start + n {
            let original = OriginalIdentity {
                username: format!("{prefix}.Learner{i:05}"),
                email: format!("{}.learner{i:05}@example.org", prefix.to_lowercase()),
                name: format!("{prefix} Person {i:05}"),
            };
            self.store
                .enqueue(
                    NewRetirement::new(original.clone(), Some(1000 + i as i64), &ids),
                    requested,
                )
                .await?;
            added.push(original);
        }
        self.seeded.extend(added.clone());
        Ok(added)
    }

    /// tubular's config file, unchanged in shape — the fake's client, its URL for `lms` and
    /// `ecommerce`, the six-stage pipeline, the sandbox's salt — plus `extra` lines.
    pub fn config_yaml(&self, extra: &str) -> String {
        let base = self.fake.base_url();
        let mut yaml = format!(
            "client_id: retirement-worker\nclient_secret: s3cret\nbase_urls:\n  lms: {base}/\n  ecommerce: {base}/\n  credentials: {base}/\nretirement_pipeline:\n"
        );
        for [w, c, s, o] in self.options.pipeline {
            yaml.push_str(&format!("  - [{w}, {c}, {s}, {o}]\n"));
        }
        yaml.push_str(&format!("retired_id:\n  salts: [{SALT}]\n{extra}"));
        yaml
    }

    /// Writes [`Self::config_yaml`] with `store:` set to `store` (the sandbox's URL, `lms`, or
    /// another) to `retirement.yml` in the directory; returns its path.
    pub fn write_config(&self, store: &str, extra: &str) -> Result<PathBuf, CliError> {
        let path = self.dir.join("retirement.yml");
        std::fs::write(&path, self.config_yaml(&format!("store: {store}\n{extra}")))
            .map_err(io(format!("writing {}", path.display())))?;
        Ok(path)
    }

    /// Clients for the fake with its credentials (for code that runs the runtime in process).
    pub fn clients(&self) -> Result<Arc<ServiceClients>, CliError> {
        let base_urls: BTreeMap<String, String> = ["lms", "ecommerce", "credentials"]
            .into_iter()
            .map(|k| (k.to_owned(), self.fake.base_url()))
            .collect();
        let credentials = ClientCredentials {
            client_id: "retirement-worker".into(),
            client_secret: "s3cret".into(),
        };
        // Every vendor connector and config-described service, against the fake.
        Ok(Arc::new(
            ServiceClients::new(base_urls, credentials, Vec::new(), &HttpOptions::default())?
                .with_connectors(self.fake.vendor_connectors())?,
        ))
    }

    /// How the sandbox was built.
    pub fn options(&self) -> &SandboxOptions {
        &self.options
    }

    /// The seeded learners not yet in an end state.
    pub async fn unfinished(&self) -> Result<usize, CliError> {
        let mut open = 0;
        for original in &self.seeded {
            let r = self.store.find_by_username(&original.username).await?;
            if !retirement_core::END_STATES.contains(&r.current_state()) {
                open += 1;
            }
        }
        Ok(open)
    }

    /// Stops the fake and closes the store; removes a temporary directory unless `keep` (a
    /// broken promise: what is in it is evidence). Returns the directory when it stays.
    pub fn finish(mut self, keep: bool) -> Option<PathBuf> {
        if keep {
            self.guard.remove = false;
        }
        let stays = !self.guard.remove;
        let dir = self.dir.clone();
        drop(self);
        stays.then_some(dir)
    }
}
