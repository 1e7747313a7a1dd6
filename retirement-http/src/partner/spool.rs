//! The partner report's local spool: the LMS answers its queue once (`POST
//! retirement_partner_report/` marks the rows it returns and never returns them again,
//! upstream's defect D23), so the rows are written here before anything else happens, with
//! the partners each has been delivered to, and leave only once the LMS has removed them too.
//! A run that dies at any point finds them here on the next run.
//!
//! The file holds personal data (original usernames, emails, names) for as long as a row
//! waits: it is written owner-only (mode 0600), replaced atomically, and rows are deleted
//! from it the moment the LMS confirms their cleanup. It also remembers which published
//! reports' recipients were warned of their deletion (`retire partner-report prune`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::PartnerRow;
use crate::error::HttpError;

/// One spooled row and the partners it has reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledRow {
    /// The row as the LMS answered it.
    pub row: PartnerRow,
    /// The partners whose report (written and announced) includes it.
    #[serde(default)]
    pub delivered: BTreeSet<String>,
}

/// What the spool file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolState {
    /// Rows fetched from the LMS and not yet cleaned up there.
    #[serde(default)]
    pub rows: Vec<SpooledRow>,
    /// Published reports (by location) whose recipients were warned of their deletion, with
    /// the day they will be deleted.
    #[serde(default)]
    pub warned: BTreeMap<String, NaiveDate>,
}

impl SpoolState {
    /// Adds freshly fetched rows; a row already spooled (same original username) keeps its
    /// deliveries.
    pub fn add(&mut self, rows: Vec<PartnerRow>) {
        for row in rows {
            match self
                .rows
                .iter_mut()
                .find(|s| s.row.original_username == row.original_username)
            {
                Some(spooled) => spooled.row = row,
                None => self.rows.push(SpooledRow {
                    row,
                    delivered: BTreeSet::new(),
                }),
            }
        }
    }

    /// Drops the rows with these original usernames.
    pub fn remove(&mut self, usernames: &[String]) {
        self.rows
            .retain(|s| !usernames.contains(&s.row.original_username));
    }
}

/// The spool file.
#[derive(Debug, Clone)]
pub struct Spool {
    path: PathBuf,
}

impl Spool {
    /// The spool at `path` (created on first save).
    pub fn new(path: impl Into<PathBuf>) -> Spool {
        Spool { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn failed(&self, what: &str, source: std::io::Error) -> HttpError {
        HttpError::Io {
            what: format!("{what} the partner report spool {}", self.path.display()),
            source,
        }
    }

    /// What it holds (empty when the file does not exist yet).
    pub fn load(&self) -> Result<SpoolState, HttpError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SpoolState::default());
            }
            Err(e) => return Err(self.failed("reading", e)),
        };
        // Only the position: serde_json's message may quote a value, and the spool holds
        // originals.
        serde_json::from_slice(&text).map_err(|e| {
            let at = format!("not a spool (line {}, column {})", e.line(), e.column());
            self.failed(
                "parsing",
                std::io::Error::new(std::io::ErrorKind::InvalidData, at),
            )
        })
    }

    /// Replaces the file with `state`: a temporary file beside it (owner-only), flushed to
    /// disk, then renamed over it, so a crash leaves the old state or the new one.
    pub fn save(&self, state: &SpoolState) -> Result<(), HttpError> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| self.failed("creating the folder of", e))?;
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        let temporary = dir.join(name);
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| {
            self.failed(
                "encoding",
                std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            )
        })?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options
            .open(&temporary)
            .map_err(|e| self.failed("writing", e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| self.failed("writing", e))?;
        drop(file);
        std::fs::rename(&temporary, &self.path).map_err(|e| self.failed("replacing", e))?;
        if let Ok(folder) = std::fs::File::open(&dir) {
            let _ = folder.sync_all();
        }
        Ok(())
    }
}
