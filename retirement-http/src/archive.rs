//! Where `retire cleanup` puts its archive (issue 17): object storage — `s3://bucket/prefix`,
//! `gs://bucket/prefix`, `az://container/prefix` — or `file:///dir`, through the `object_store`
//! crate, in tubular's layout (`<prefix>/raw/YYYY/MM/<name>`). Credentials come from each
//! provider's usual environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`); `AWS_ENDPOINT_URL` names an
//! S3-compatible server, reached over plain HTTP only when it is loopback or `allow_http` is
//! given. Every object is read back and compared before [`ArchiveTarget::put_verified`]
//! returns, so nothing is deleted on the strength of an upload that did not land whole.
//!
//! Requests go through this crate's reqwest 0.12 client (rustls, bundled roots) rather than
//! object_store's own transport, and are signed with ring.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Utc};
use futures_util::StreamExt as _;
use http_body_util::BodyExt as _;
use object_store::client::{
    HttpClient, HttpConnector, HttpError as StoreHttpError, HttpErrorKind, HttpRequest,
    HttpResponse, HttpResponseBody, HttpService,
};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt as _, PutPayload, WriteMultipart};

use retirement_core::Retirement;
use retirement_store::{ActionKind, Journal, OperatorAction, RetirementStore};

use crate::error::HttpError;

/// Objects above this size are uploaded in parts of this size.
pub const MULTIPART_PART: usize = 8 * 1024 * 1024;

/// An archive destination.
#[derive(Debug, Clone)]
pub struct ArchiveTarget {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    /// What keys are relative to: `scheme://bucket`, or the `file://` folder.
    root: String,
    /// For `file://`: the folder, whose files are made owner-only once written.
    local: Option<std::path::PathBuf>,
}

fn bad(url: &str, why: impl std::fmt::Display) -> HttpError {
    HttpError::InvalidService(format!("archive {url}: {why}"))
}

/// Whether `url`'s host is a loopback address or `localhost`.
fn is_loopback(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    })
}

impl ArchiveTarget {
    /// Whether `text` names object storage (a URL with one of the supported schemes) rather
    /// than a local file.
    pub fn is_url(text: &str) -> bool {
        ["s3://", "gs://", "az://", "file://"]
            .iter()
            .any(|scheme| text.starts_with(scheme))
    }

    /// Opens `url` (see the module docs). `allow_http` lets `AWS_ENDPOINT_URL` be plain HTTP
    /// on a non-loopback host.
    pub fn open(url: &str, allow_http: bool) -> Result<ArchiveTarget, HttpError> {
        ArchiveTarget::open_with(url, allow_http, std::env::vars())
    }

    /// [`ArchiveTarget::open`] with the provider settings taken from `vars` (`AWS_*`,
    /// `GOOGLE_*`, `AZURE_*`) instead of the process environment.
    pub fn open_with(
        url: &str,
        allow_http: bool,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ArchiveTarget, HttpError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let var = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad(url, "not a URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let connector = Connector::new()?;
        let store: Arc<dyn ObjectStore> = match scheme {
            "file" => {
                let dir = std::path::Path::new("/").join(rest.trim_start_matches('/'));
                std::fs::create_dir_all(&dir).map_err(|e| bad(url, e))?;
                return Ok(ArchiveTarget {
                    store: Arc::new(
                        object_store::local::LocalFileSystem::new_with_prefix(&dir)
                            .map_err(|e| bad(url, e))?,
                    ),
                    prefix: Path::default(),
                    url: url.to_owned(),
                    root: url.trim_end_matches('/').to_owned(),
                    local: Some(dir),
                });
            }
            "s3" => {
                let mut builder = object_store::aws::AmazonS3Builder::new();
                for (k, v) in &vars {
                    if k.starts_with("AWS_")
                        && let Ok(key) = k.to_ascii_lowercase().parse()
                    {
                        builder = builder.with_config(key, v);
                    }
                }
                let mut builder = builder
                    .with_bucket_name(bucket)
                    .with_http_connector(connector);
                if let Some(endpoint) = var("AWS_ENDPOINT_URL") {
                    let plain = endpoint.starts_with("http://");
                    if plain && !(allow_http || is_loopback(&endpoint)) {
                        return Err(bad(
                            url,
                            "AWS_ENDPOINT_URL is plain HTTP on a host that is not loopback: \
                             pass --allow-http if that is meant",
                        ));
                    }
                    builder = builder.with_endpoint(endpoint).with_allow_http(plain);
                }
                Arc::new(builder.build().map_err(|e| bad(url, e))?)
            }
            "gs" => Arc::new(
                vars.iter()
                    .filter(|(k, _)| k.starts_with("GOOGLE_"))
                    .filter_map(|(k, v)| Some((k.to_ascii_lowercase().parse().ok()?, v)))
                    .fold(
                        object_store::gcp::GoogleCloudStorageBuilder::new(),
                        |b, (k, v)| b.with_config(k, v),
                    )
                    .with_bucket_name(bucket)
                    .with_http_connector(connector)
                    .build()
                    .map_err(|e| bad(url, e))?,
            ),
            "az" => Arc::new(
                vars.iter()
                    .filter(|(k, _)| k.starts_with("AZURE_"))
                    .filter_map(|(k, v)| Some((k.to_ascii_lowercase().parse().ok()?, v)))
                    .fold(
                        object_store::azure::MicrosoftAzureBuilder::new(),
                        |b, (k, v)| b.with_config(k, v),
                    )
                    .with_container_name(bucket)
                    .with_http_connector(connector)
                    .build()
                    .map_err(|e| bad(url, e))?,
            ),
            other => return Err(bad(url, format!("unknown scheme {other}://"))),
        };
        if bucket.is_empty() {
            return Err(bad(url, "names no bucket"));
        }
        Ok(ArchiveTarget {
            store,
            prefix: Path::from(prefix.trim_matches('/')),
            url: url.to_owned(),
            root: format!("{scheme}://{bucket}"),
            local: None,
        })
    }

    /// A URL ([`ArchiveTarget::open`]) or a local folder, created if missing.
    pub fn open_location(text: &str, allow_http: bool) -> Result<ArchiveTarget, HttpError> {
        if ArchiveTarget::is_url(text) {
            return ArchiveTarget::open(text, allow_http);
        }
        std::fs::create_dir_all(text).map_err(|e| bad(text, e))?;
        let dir = std::fs::canonicalize(text).map_err(|e| bad(text, e))?;
        let url = format!("file://{}", dir.display());
        ArchiveTarget::open(&url, allow_http)
    }

    /// The key of `name` directly under the prefix.
    pub fn named_key(&self, name: &str) -> Path {
        self.prefix.clone().join(name)
    }

    /// Every key under the prefix, sorted.
    pub async fn keys(&self) -> Result<Vec<Path>, HttpError> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let mut listing = self.store.list(prefix);
        let mut out = Vec::new();
        while let Some(meta) = listing.next().await {
            out.push(
                meta.map_err(|e| HttpError::Service {
                    service: format!("archive {}", self.url),
                    message: format!("listing: {e}"),
                })?
                .location,
            );
        }
        out.sort();
        Ok(out)
    }

    /// Deletes the object at `key` (already gone is fine).
    pub async fn delete(&self, key: &Path) -> Result<(), HttpError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(HttpError::Service {
                service: format!("archive {}", self.url),
                message: format!("deleting {key}: {e}"),
            }),
        }
    }

    /// The URL of the target itself.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key of `name` archived at `at`: `<prefix>/raw/YYYY/MM/<name>`.
    pub fn key(&self, name: &str, at: DateTime<Utc>) -> Path {
        let mut key = self.prefix.clone();
        for part in [
            "raw".to_owned(),
            format!("{:04}", at.year()),
            format!("{:02}", at.month()),
            name.to_owned(),
        ] {
            key = key.clone().join(part);
        }
        key
    }

    /// Uploads `bytes` as `name` (in parts when large), reads it back and compares; returns
    /// the object's URL. Any failure leaves nothing to rely on: the caller deletes nothing.
    pub async fn put_verified(
        &self,
        name: &str,
        bytes: Bytes,
        at: DateTime<Utc>,
    ) -> Result<String, HttpError> {
        self.put_key_verified(&self.key(name, at), bytes).await
    }

    /// [`ArchiveTarget::put_verified`] at a full key.
    pub async fn put_key_verified(&self, key: &Path, bytes: Bytes) -> Result<String, HttpError> {
        let key = key.clone();
        let fail = |what: &str, e: object_store::Error| HttpError::Service {
            service: format!("archive {}", self.url),
            message: format!("{what} {key}: {e}"),
        };
        if bytes.len() > MULTIPART_PART {
            let upload = self
                .store
                .put_multipart(&key)
                .await
                .map_err(|e| fail("starting the upload of", e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART);
            writer.put(bytes.clone());
            writer.finish().await.map_err(|e| fail("uploading", e))?;
        } else {
            self.store
                .put(&key, PutPayload::from(bytes.clone()))
                .await
                .map_err(|e| fail("uploading", e))?;
        }
        let back = self
            .store
            .get(&key)
            .await
            .map_err(|e| fail("reading back", e))?
            .bytes()
            .await
            .map_err(|e| fail("reading back", e))?;
        // Archives and reports hold personal data: a local file is the owner's alone.
        #[cfg(unix)]
        if let Some(dir) = &self.local {
            use std::os::unix::fs::PermissionsExt as _;
            let file = key
                .parts()
                .fold(dir.clone(), |path, part| path.join(part.as_ref()));
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| HttpError::Io {
                    what: format!("making {} owner-only", file.display()),
                    source: e,
                },
            )?;
        }
        if back != bytes {
            return Err(HttpError::Service {
                service: format!("archive {}", self.url),
                message: format!(
                    "{key} reads back {} bytes, not the {} uploaded",
                    back.len(),
                    bytes.len()
                ),
            });
        }
        Ok(self.location(&key))
    }

    /// Every object under the prefix with its contents (tests and audits).
    pub async fn objects(&self) -> Result<Vec<(String, Bytes)>, HttpError> {
        let fail = |e: object_store::Error| HttpError::Service {
            service: format!("archive {}", self.url),
            message: e.to_string(),
        };
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let mut listing = self.store.list(prefix);
        let mut out = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(fail)?;
            let bytes = self
                .store
                .get(&meta.location)
                .await
                .map_err(fail)?
                .bytes()
                .await
                .map_err(fail)?;
            out.push((meta.location.to_string(), bytes));
        }
        out.sort();
        Ok(out)
    }
}

/// object_store's requests through reqwest 0.12.
#[derive(Debug, Clone)]
struct Connector(reqwest::Client);

impl Connector {
    fn new() -> Result<Connector, HttpError> {
        reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(300))
            .build()
            .map(Connector)
            .map_err(|e| HttpError::Client(e.to_string()))
    }
}

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(self.clone()))
    }
}

fn kind_of(e: &reqwest::Error) -> HttpErrorKind {
    if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_connect() {
        HttpErrorKind::Connect
    } else if e.is_request() {
        HttpErrorKind::Request
    } else if e.is_decode() || e.is_body() {
        HttpErrorKind::Decode
    } else {
        HttpErrorKind::Unknown
    }
}

fn wrap(e: reqwest::Error) -> StoreHttpError {
    StoreHttpError::new(kind_of(&e), e.without_url())
}

#[async_trait::async_trait]
impl HttpService for Connector {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, StoreHttpError> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await?.to_bytes();
        let url = reqwest::Url::parse(&parts.uri.to_string())
            .map_err(|e| StoreHttpError::new(HttpErrorKind::Request, e))?;
        let mut outgoing = reqwest::Request::new(parts.method, url);
        *outgoing.headers_mut() = parts.headers;
        *outgoing.body_mut() = Some(reqwest::Body::from(body));
        let response = self.0.execute(outgoing).await.map_err(wrap)?;
        let status = response.status();
        let headers = response.headers().clone();
        let stream = response
            .bytes_stream()
            .map(|chunk| chunk.map(http_body::Frame::data).map_err(wrap));
        let mut answer = HttpResponse::new(HttpResponseBody::new(http_body_util::StreamBody::new(
            stream,
        )));
        *answer.status_mut() = status;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}

/// One archive line: upstream's fields (`user_id`, the originals only with `include_pii`,
/// the retired identifiers, request and last-modified dates in Athena's format).
pub fn archive_line(r: &Retirement, include_pii: bool) -> String {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        user_id: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        original_username: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        original_email: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        original_name: Option<&'a str>,
        retired_username: &'a str,
        retired_email: &'a str,
        retirement_request_date: String,
        last_modified_date: String,
    }
    let athena = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    let original = r.original();
    let line = Line {
        user_id: r.parts().lms_user_id,
        original_username: include_pii.then_some(original.username.as_str()),
        original_email: include_pii.then_some(original.email.as_str()),
        original_name: include_pii.then_some(original.name.as_str()),
        retired_username: r.retired_username(),
        retired_email: &r.parts().retired_email,
        retirement_request_date: athena(r.created()),
        last_modified_date: athena(r.modified()),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// gzip JSON lines of `learners`.
pub fn gzip_lines(learners: &[Retirement], include_pii: bool) -> Result<Bytes, HttpError> {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for r in learners {
        writeln!(gz, "{}", archive_line(r, include_pii))
            .map_err(|e| HttpError::InvalidService(format!("compressing the archive: {e}")))?;
    }
    gz.finish()
        .map(Bytes::from)
        .map_err(|e| HttpError::InvalidService(format!("compressing the archive: {e}")))
}

/// The retired usernames in a gzip JSON-lines archive.
pub fn retired_usernames_in(bytes: &[u8]) -> Vec<String> {
    use std::io::Read as _;
    let mut text = String::new();
    if flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .is_err()
    {
        return Vec::new();
    }
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["retired_username"].as_str().map(str::to_owned))
        .collect()
}

/// What [`Archiver::archive_and_delete`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// Learners archived and deleted.
    pub deleted: usize,
    /// The objects written or found (URLs).
    pub objects: Vec<String>,
}

/// Archives COMPLETE learners to object storage, then redacts and deletes their statuses,
/// batch by batch: the journal records each learner's object before the upload, so a run
/// killed at any point and run again neither loses nor duplicates a learner.
pub struct Archiver<'a> {
    /// The store.
    pub store: &'a dyn RetirementStore,
    /// Where the intents are recorded (`None`: the LMS without `lease_store`; a re-run after
    /// a crash between upload and delete then archives the batch again, as a new object).
    pub journal: Option<&'a dyn Journal>,
    /// The destination.
    pub target: &'a ArchiveTarget,
    /// Also archive originals.
    pub include_pii: bool,
}

impl Archiver<'_> {
    async fn intents(&self, learners: &[Retirement]) -> Result<Vec<Option<String>>, HttpError> {
        let mut out = Vec::with_capacity(learners.len());
        for r in learners {
            let key = match self.journal {
                Some(journal) => journal
                    .actions_of(r.id())
                    .await?
                    .into_iter()
                    .rev()
                    .find(|a| a.kind == ActionKind::Archived)
                    .map(|a| a.reason),
                None => None,
            };
            out.push(key);
        }
        Ok(out)
    }

    async fn delete(&self, batch: &[Retirement]) -> Result<usize, HttpError> {
        let usernames: Vec<String> = batch
            .iter()
            .map(|r| r.original().username.clone())
            .collect();
        Ok(self.store.cleanup(&usernames).await?.len())
    }

    /// Records the intent, uploads `batch` to `key`, verifies it. Public for tests that stop
    /// a run between upload and delete.
    pub async fn upload(&self, batch: &[Retirement], key: &Path) -> Result<String, HttpError> {
        if let Some(journal) = self.journal {
            for r in batch {
                journal
                    .record_action(&OperatorAction {
                        retirement_id: r.id(),
                        at: Utc::now(),
                        operator: "retire cleanup".into(),
                        kind: ActionKind::Archived,
                        reason: key.to_string(),
                    })
                    .await?;
            }
        }
        self.target
            .put_key_verified(key, gzip_lines(batch, self.include_pii)?)
            .await
    }

    /// The object name of a fresh batch.
    pub fn batch_key(&self, batch: &[Retirement], now: DateTime<Utc>) -> Path {
        let first = batch.first().map_or(0, |r| r.id().0);
        let last = batch.last().map_or(0, |r| r.id().0);
        self.target.key(
            &format!(
                "retirement_archive_{}_{first}-{last}.json.gz",
                now.format("%Y_%m_%d_%H_%M_%S")
            ),
            now,
        )
    }

    /// See the type's docs. `learners` are COMPLETE records (with originals).
    pub async fn archive_and_delete(
        &self,
        learners: &[Retirement],
        batch_size: usize,
        now: DateTime<Utc>,
    ) -> Result<ArchiveSummary, HttpError> {
        let mut summary = ArchiveSummary::default();
        let intents = self.intents(learners).await?;
        // Learners a killed run meant to archive: finish their objects first.
        let mut by_key: std::collections::BTreeMap<String, Vec<Retirement>> = Default::default();
        let mut fresh = Vec::new();
        for (r, key) in learners.iter().zip(intents) {
            match key {
                Some(key) => by_key.entry(key).or_default().push(r.clone()),
                None => fresh.push(r.clone()),
            }
        }
        for (key, group) in by_key {
            let key = Path::from(key);
            let present = self.target.read(&key).await?;
            let names = present
                .as_deref()
                .map(retired_usernames_in)
                .unwrap_or_default();
            let complete = group
                .iter()
                .all(|r| names.iter().any(|n| n == r.retired_username()));
            let location = if complete {
                self.target.location(&key)
            } else {
                // The object is missing or partial: write it again, whole.
                let mut all: Vec<Retirement> = group.clone();
                all.sort_by_key(|r| r.id());
                self.target
                    .put_key_verified(&key, gzip_lines(&all, self.include_pii)?)
                    .await?
            };
            summary.deleted += self.delete(&group).await?;
            summary.objects.push(location);
        }
        for batch in fresh.chunks(batch_size.max(1)) {
            let key = self.batch_key(batch, now);
            let location = self.upload(batch, &key).await?;
            summary.deleted += self.delete(batch).await?;
            summary.objects.push(location);
        }
        Ok(summary)
    }
}

impl ArchiveTarget {
    /// The URL of `key`.
    pub fn location(&self, key: &Path) -> String {
        format!("{}/{key}", self.root)
    }

    /// The object at `key`, if any.
    pub async fn read(&self, key: &Path) -> Result<Option<Bytes>, HttpError> {
        match self.store.get(key).await {
            Ok(found) => Ok(Some(found.bytes().await.map_err(|e| {
                HttpError::Service {
                    service: format!("archive {}", self.url),
                    message: format!("reading {key}: {e}"),
                }
            })?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(HttpError::Service {
                service: format!("archive {}", self.url),
                message: format!("reading {key}: {e}"),
            }),
        }
    }
}
