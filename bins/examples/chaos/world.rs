//! One chaos world: the shared sandbox (a store with the six-stage states and seeded learners,
//! the fake edX recording every call with the learner's state when it arrived), the run's config
//! file, and the captured output of every `retire` process started in it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use bins::sandbox::{Sandbox, SandboxOptions};
use retirement_store::testdb::TestDatabase;

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
    sandbox: Sandbox,
    pub(crate) config: PathBuf,
    database: Option<TestDatabase>,
    processes: usize,
}

impl std::ops::Deref for World {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl World {
    /// The shared sandbox (fake edX over the store the learners live in, so every call is
    /// recorded with the state it arrived in, and the LMS step guard applies), learners
    /// requested 60 days ago (past the cool-off and cleanup's 37 days), and the run's config.
    pub(crate) async fn new(options: WorldOptions) -> Result<World, String> {
        let database = match &options.backend {
            Backend::Postgres(admin) | Backend::Mysql(admin) => Some(
                TestDatabase::create(admin)
                    .await
                    .map_err(|e| format!("database server: {e}"))?,
            ),
            Backend::Sqlite | Backend::Lms => None,
        };
        let mut sandbox = Sandbox::new(SandboxOptions {
            store_url: database.as_ref().map(|db| db.url.clone()),
            prefix: "Chaos".into(),
            requested_days_ago: 60,
            ..SandboxOptions::new(&format!(
                "chaos-{}-{}",
                options.name,
                options.backend.label().replace(' ', "-")
            ))
        })
        .await
        .map_err(|e| format!("sandbox: {e}"))?;
        let driver_store = match (&options.backend, &options.driver_url) {
            (Backend::Lms, _) => "lms".to_owned(),
            (_, Some(rewrite)) => rewrite(&sandbox.url),
            (_, None) => sandbox.url.clone(),
        };
        let mut extra = "lease_seconds: 10\nmax_concurrent_per_service: 64\n".to_owned();
        if !options.extra_yaml.contains("timeouts:") {
            // A lease (10 s, so killed runs' learners come back quickly) must outlive two calls.
            extra.push_str("timeouts:\n  request_seconds: 5\n");
        }
        extra.push_str(&options.extra_yaml);
        let config = sandbox
            .write_config(&driver_store, &extra)
            .map_err(|e| format!("config: {e}"))?;
        sandbox
            .seed(options.learners)
            .await
            .map_err(|e| format!("enqueue: {e}"))?;
        Ok(World {
            sandbox,
            config,
            database,
            processes: 0,
        })
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
        self.sandbox
            .unfinished()
            .await
            .map_err(|e| format!("lookup: {e}"))
    }

    /// Drops the fake and the store's connections, then the server database and, unless
    /// `keep` (a broken promise: the captured output is evidence), the directory.
    pub(crate) async fn finish(self, keep: bool) {
        let World {
            sandbox, database, ..
        } = self;
        let kept = sandbox.finish(keep);
        if let Some(db) = database {
            db.drop_database().await;
        }
        if let Some(dir) = kept {
            println!("   evidence kept in {}", dir.display());
        }
    }
}
