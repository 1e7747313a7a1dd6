//! One chaos world: a store with the six-stage states and seeded learners, the fake edX (which
//! records every call with the learner's state when it arrived), a config file, and the
//! captured output of every `retire` process started in it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use retirement_core::{OriginalIdentity, RetiredIdConfig, SIX_STAGE_EXAMPLE, SIX_STAGE_STATES};
use retirement_http::fake::{FakeConfig, FakeEdx};
use retirement_store::testdb::TestDatabase;
use retirement_store::{DieselStore, NewRetirement, RetirementStore, StoreOptions};

pub(crate) const SALT: &str = "chaos-salt";

/// Where the learners' states live for the driver.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// A SQLite file in the world's directory.
    Sqlite,
    /// A fresh database on this PostgreSQL server (admin URL).
    Postgres(String),
    /// A fresh database on this MySQL/MariaDB server (admin URL).
    Mysql(String),
    /// The LMS API (the fake's, backed by a SQLite file): `store: lms`.
    Lms,
}

impl Backend {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
            Backend::Mysql(_) => "MariaDB",
            Backend::Lms => "LMS API",
        }
    }
}

/// Turns the store's URL into the one the driver uses.
pub(crate) type UrlRewrite = Box<dyn Fn(&str) -> String>;

/// Extra config lines per run kind (timeouts, retry rules).
pub(crate) struct WorldOptions {
    pub(crate) name: &'static str,
    pub(crate) backend: Backend,
    pub(crate) learners: usize,
    pub(crate) extra_yaml: String,
    /// The URL the driver uses instead of the store's own (the `chaos db` proxy).
    pub(crate) driver_url: Option<UrlRewrite>,
}

pub(crate) struct World {
    pub(crate) fake: FakeEdx,
    /// The store the checks read: the driver's, or the fake LMS's for `Backend::Lms`.
    pub(crate) store: Arc<DieselStore>,
    pub(crate) dir: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) seeded: Vec<OriginalIdentity>,
    database: Option<TestDatabase>,
    processes: usize,
}

impl World {
    pub(crate) async fn new(options: WorldOptions) -> Result<World, String> {
        let dir = std::env::temp_dir().join(format!(
            "retire-chaos-{}-{}-{}",
            std::process::id(),
            options.name,
            options.backend.label().replace(' ', "-")
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let database = match &options.backend {
            Backend::Postgres(admin) | Backend::Mysql(admin) => Some(
                TestDatabase::create(admin)
                    .await
                    .map_err(|e| format!("database server: {e}"))?,
            ),
            Backend::Sqlite | Backend::Lms => None,
        };
        let url = match &database {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", dir.join("store.db").display()),
        };
        let store = Arc::new(
            DieselStore::open(&url, &StoreOptions::default())
                .await
                .map_err(|e| format!("store: {e}"))?,
        );
        store.migrate().await.map_err(|e| format!("migrate: {e}"))?;
        let states: Vec<String> = SIX_STAGE_STATES.iter().map(|s| s.to_string()).collect();
        store
            .sync_states(&states, false)
            .await
            .map_err(|e| format!("states: {e}"))?;
        // The fake reads each caller's state from the store the learners live in, so every
        // call is recorded with the state it arrived in (and the LMS step guard applies).
        let fake = FakeEdx::start(FakeConfig {
            lms_store: Some(store.clone()),
            enforce_state_guard: true,
            seed: 0xC4A05,
            ..FakeConfig::default()
        })
        .await
        .map_err(|e| format!("fake edX: {e}"))?;
        let driver_store = match (&options.backend, &options.driver_url) {
            (Backend::Lms, _) => "lms".to_owned(),
            (_, Some(rewrite)) => rewrite(&url),
            (_, None) => url.clone(),
        };
        let base = fake.base_url();
        let mut yaml = format!(
            "client_id: retirement-worker\nclient_secret: s3cret\nbase_urls:\n  lms: {base}/\n  ecommerce: {base}/\nstore: {driver_store}\nlease_seconds: 10\nmax_concurrent_per_service: 64\nretired_id:\n  salts: [{SALT}]\nretirement_pipeline:\n"
        );
        for [w, c, s, o] in SIX_STAGE_EXAMPLE {
            yaml.push_str(&format!("  - [{w}, {c}, {s}, {o}]\n"));
        }
        if !options.extra_yaml.contains("timeouts:") {
            // A lease (10 s, so killed runs' learners come back quickly) must outlive two calls.
            yaml.push_str("timeouts:\n  request_seconds: 5\n");
        }
        yaml.push_str(&options.extra_yaml);
        let config = dir.join("retirement.yml");
        std::fs::write(&config, yaml).map_err(|e| format!("{}: {e}", config.display()))?;
        let mut world = World {
            fake,
            store,
            dir,
            config,
            seeded: Vec::new(),
            database,
            processes: 0,
        };
        world.seed(options.learners).await?;
        Ok(world)
    }

    /// Queues `n` learners requested 60 days ago (past the cool-off and cleanup's 37 days),
    /// with originals distinctive enough that any leak is found by a plain substring scan.
    async fn seed(&mut self, n: usize) -> Result<(), String> {
        let ids = RetiredIdConfig::new(vec![SALT.into()]).map_err(|e| e.to_string())?;
        for i in 0..n {
            let original = OriginalIdentity {
                username: format!("Chaos.Learner{i:05}"),
                email: format!("chaos.learner{i:05}@example.org"),
                name: format!("Chaos Person {i:05}"),
            };
            self.store
                .enqueue(
                    NewRetirement::new(original.clone(), Some(10_000 + i as i64), &ids),
                    Utc::now() - TimeDelta::days(60),
                )
                .await
                .map_err(|e| format!("enqueue: {e}"))?;
            self.seeded.push(original);
        }
        Ok(())
    }

    /// Starts `retire ARGS --config FILE` with stdout and stderr captured in the world's
    /// directory (scanned by the privacy check).
    pub(crate) fn spawn(
        &mut self,
        binary: &Path,
        args: &[&str],
    ) -> Result<(Child, PathBuf), String> {
        self.processes += 1;
        let out = self.dir.join(format!("retire-{:03}.out", self.processes));
        let err = self.dir.join(format!("retire-{:03}.err", self.processes));
        let file = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
        let child = Command::new(binary)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .current_dir(&self.dir)
            .env_remove("RETIREMENT_STORE")
            .env_remove("RETIREMENT_CONFIG_FILE")
            .env_remove("RUST_LOG")
            .env("USER", "chaos-operator")
            .stdin(Stdio::null())
            .stdout(file(&out)?)
            .stderr(file(&err)?)
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        Ok((child, out))
    }

    /// Runs `retire ARGS` to its end; its stdout.
    pub(crate) fn run(&mut self, binary: &Path, args: &[&str]) -> Result<(i32, String), String> {
        let (mut child, out) = self.spawn(binary, args)?;
        let status = child.wait().map_err(|e| e.to_string())?;
        let stdout = std::fs::read_to_string(&out).unwrap_or_default();
        Ok((status.code().unwrap_or(-1), stdout))
    }

    /// The seeded learners not yet in an end state.
    pub(crate) async fn unfinished(&self) -> Result<usize, String> {
        let mut open = 0;
        for original in &self.seeded {
            let r = self
                .store
                .find_by_username(&original.username)
                .await
                .map_err(|e| format!("lookup: {e}"))?;
            if !retirement_core::END_STATES.contains(&r.current_state()) {
                open += 1;
            }
        }
        Ok(open)
    }

    /// Drops the fake and the store's connections, then the server database and, unless
    /// `keep` (a broken promise: the captured output is evidence), the directory.
    pub(crate) async fn finish(self, keep: bool) {
        let World {
            fake,
            store,
            database,
            dir,
            ..
        } = self;
        drop(fake);
        drop(store);
        if let Some(db) = database {
            db.drop_database().await;
        }
        if keep {
            println!("   evidence kept in {}", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
