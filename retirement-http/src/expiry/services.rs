//! enterprise-catalog's content metadata and enterprise-subsidy's subsidy records, with the
//! OAuth2 client-credentials JWT the retirement clients use (`enterprise-access-integration.md`
//! §5.1–5.3), a timeout on every request and bounded retries with jittered backoff
//! ([`RetryPolicy`]) where upstream retries a catalog connection error forever and the subsidy
//! call never.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use retirement_core::{Attempts, RetryPolicy, SplitMix64, Verdict, classify_transport};

use crate::auth::TokenSource;
use crate::client::ServiceClients;
use crate::error::HttpError;
use crate::transport::Transport;

/// enterprise-catalog refuses more content keys than this in one request.
pub const MAX_CONTENT_KEYS: usize = 100;

/// The two enterprise services the expiry pass asks.
pub struct EnterpriseServices {
    http: reqwest::Client,
    transport: Arc<dyn Transport>,
    tokens: TokenSource,
    catalog: reqwest::Url,
    subsidy: reqwest::Url,
    lms: reqwest::Url,
    timeout: Duration,
    retry: RetryPolicy,
    jitter: Mutex<SplitMix64>,
    braze: Option<super::braze::Braze>,
}

impl std::fmt::Debug for EnterpriseServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnterpriseServices")
            .field("catalog", &self.catalog.as_str())
            .field("subsidy", &self.subsidy.as_str())
            .finish_non_exhaustive()
    }
}

/// The retries of one service call: short, because a whole pass waits on them (at most 30 s
/// per call, backoff from 0.5 s, a timed-out call retried once after 5 s).
pub fn default_service_retry() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(8),
        budget: Duration::from_secs(30),
        gateway_timeout_wait: Duration::from_secs(5),
        gateway_timeout_retries: 1,
    }
}

fn base(clients: &ServiceClients, key: &str, service: &str) -> Result<reqwest::Url, HttpError> {
    let raw = clients
        .base_url(key)
        .ok_or_else(|| HttpError::MissingBaseUrl {
            service: service.into(),
            key: key.into(),
        })?;
    let mut url = reqwest::Url::parse(raw).map_err(|e| HttpError::BadBaseUrl {
        service: service.into(),
        message: e.to_string(),
    })?;
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

impl EnterpriseServices {
    /// The services at `base_urls.enterprise_catalog` and `base_urls.enterprise_subsidy` of
    /// `clients`, sharing its HTTP client, transport and token.
    pub fn new(
        clients: &ServiceClients,
        retry: RetryPolicy,
        seed: u64,
    ) -> Result<EnterpriseServices, HttpError> {
        Ok(EnterpriseServices {
            http: clients.http.clone(),
            transport: clients.transport.clone(),
            tokens: clients.tokens().clone(),
            catalog: base(clients, "enterprise_catalog", "enterprise-catalog")?,
            subsidy: base(clients, "enterprise_subsidy", "enterprise-subsidy")?,
            lms: base(clients, "lms", "LMS")?,
            timeout: clients.request_timeout,
            retry,
            jitter: Mutex::new(SplitMix64::new(seed)),
            braze: None,
        })
    }

    /// Sends expiration emails through Braze (`notifications: braze`).
    pub fn with_braze(mut self, config: super::braze::BrazeConfig) -> EnterpriseServices {
        self.braze = Some(super::braze::Braze::new(config));
        self
    }

    /// Sends the expiration email of `notice` through Braze.
    pub async fn send_expiry_email(
        &self,
        notice: &retirement_store::Notice,
    ) -> Result<(), HttpError> {
        match &self.braze {
            Some(braze) => braze.send(self, notice).await,
            None => Err(HttpError::Service {
                service: "Braze".into(),
                message:
                    "notifications: braze needs a braze: section (api_url, api_key, campaigns)"
                        .into(),
            }),
        }
    }

    /// Whether Braze is configured.
    pub fn has_braze(&self) -> bool {
        self.braze.is_some()
    }

    /// The course-level records of `catalog_uuid` matching `keys` (at most
    /// [`MAX_CONTENT_KEYS`]): `GET …/api/v2/enterprise-catalogs/<uuid>/get_content_metadata/`.
    pub async fn content_metadata(
        &self,
        catalog_uuid: &str,
        keys: &[&str],
    ) -> Result<Vec<serde_json::Value>, HttpError> {
        if keys.len() > MAX_CONTENT_KEYS {
            return Err(HttpError::Service {
                service: "enterprise-catalog".into(),
                message: format!(
                    "{} content keys in one request (at most {MAX_CONTENT_KEYS})",
                    keys.len()
                ),
            });
        }
        let mut url = self
            .catalog
            .join(&format!(
                "api/v2/enterprise-catalogs/{catalog_uuid}/get_content_metadata/"
            ))
            .map_err(|e| service_error("enterprise-catalog", e))?;
        {
            let mut query = url.query_pairs_mut();
            for key in keys {
                query.append_pair("content_keys", key);
            }
            query.append_pair("traverse_pagination", "True");
        }
        let (status, body) = self.get("enterprise-catalog", url).await?;
        if status != 200 {
            return Err(HttpError::Service {
                service: "enterprise-catalog".into(),
                message: format!("catalog {catalog_uuid} answered HTTP {status}"),
            });
        }
        let page: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| service_error("enterprise-catalog", e))?;
        match page.get("results") {
            Some(serde_json::Value::Array(results)) => Ok(results.clone()),
            _ => Err(HttpError::Service {
                service: "enterprise-catalog".into(),
                message: "the answer has no results list".into(),
            }),
        }
    }

    /// The subsidy's `expiration_datetime` as written; `None` when enterprise-subsidy does not
    /// know the subsidy (404: upstream then has no subsidy candidate either) or gives no date.
    pub async fn subsidy_expiration(
        &self,
        subsidy_uuid: &str,
    ) -> Result<Option<String>, HttpError> {
        let url = self
            .subsidy
            .join(&format!("api/v1/subsidies/{subsidy_uuid}/"))
            .map_err(|e| service_error("enterprise-subsidy", e))?;
        let (status, body) = self.get("enterprise-subsidy", url).await?;
        match status {
            200 => {
                let record: serde_json::Value = serde_json::from_str(&body)
                    .map_err(|e| service_error("enterprise-subsidy", e))?;
                Ok(record
                    .get("expiration_datetime")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned))
            }
            404 => Ok(None),
            other => Err(HttpError::Service {
                service: "enterprise-subsidy".into(),
                message: format!("subsidy {subsidy_uuid} answered HTTP {other}"),
            }),
        }
    }

    /// The LMS's enterprise-customer record (`name`, `slug`, `admin_users`), for the expiration
    /// emails: `GET …/enterprise/api/v1/enterprise-customer/<uuid>/`.
    pub async fn enterprise_customer(&self, uuid: &str) -> Result<serde_json::Value, HttpError> {
        let url = self
            .lms
            .join(&format!("enterprise/api/v1/enterprise-customer/{uuid}/"))
            .map_err(|e| service_error("LMS", e))?;
        let (status, body) = self.get("LMS", url).await?;
        if status != 200 {
            return Err(HttpError::Service {
                service: "LMS".into(),
                message: format!("enterprise customer {uuid} answered HTTP {status}"),
            });
        }
        serde_json::from_str(&body).map_err(|e| service_error("LMS", e))
    }

    /// A JSON POST with `Authorization: Bearer <key>` (Braze), retried like the GETs; a status
    /// other than 2xx is an error.
    pub async fn post_bearer(
        &self,
        service: &'static str,
        url: &str,
        key: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, HttpError> {
        let url = reqwest::Url::parse(url).map_err(|e| service_error(service, e))?;
        let (status, text) = self
            .send(
                service,
                Auth::Bearer(key),
                reqwest::Method::POST,
                url,
                Some(body),
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(HttpError::Service {
                service: service.into(),
                message: format!("HTTP {status}"),
            });
        }
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    async fn get(
        &self,
        service: &'static str,
        url: reqwest::Url,
    ) -> Result<(u16, String), HttpError> {
        self.send(service, Auth::Jwt, reqwest::Method::GET, url, None)
            .await
    }

    /// One request: with the JWT, a 401 fetches a new token once; 429, 5xx and transport
    /// failures are retried per the policy. Returns the final status and body.
    async fn send(
        &self,
        service: &'static str,
        auth: Auth<'_>,
        method: reqwest::Method,
        url: reqwest::Url,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, String), HttpError> {
        let mut attempts = Attempts::new(Utc::now());
        let mut refreshed = false;
        loop {
            let token = match auth {
                Auth::Jwt => Some(self.tokens.token().await?),
                Auth::Bearer(_) => None,
            };
            let authorization = match (&token, auth) {
                (Some(token), _) => token.header_value(),
                (None, Auth::Bearer(key)) => format!("Bearer {key}"),
                (None, Auth::Jwt) => String::new(),
            };
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header("Authorization", authorization)
                .header("Accept", "application/json")
                .timeout(self.timeout);
            if let Some(body) = body {
                request = request.json(body);
            }
            let request = request.build().map_err(|e| service_error(service, e))?;
            let (verdict, retry_after, failure) = match self.transport.send(request).await {
                Ok(answer) if answer.status == 401 && !refreshed && token.is_some() => {
                    refreshed = true;
                    if let Some(token) = &token {
                        self.tokens.invalidate(token).await;
                    }
                    continue;
                }
                Ok(answer) => match (answer.status, answer.body) {
                    (429 | 500..=503, _) => (
                        Verdict::Backoff,
                        answer.retry_after,
                        format!("HTTP {}", answer.status),
                    ),
                    (504, _) => (Verdict::GatewayTimeout, None, "HTTP 504".to_owned()),
                    (status, Ok(body)) => return Ok((status, body)),
                    (_, Err(broken)) => (classify_transport(broken.kind), None, broken.message),
                },
                Err(failure) => (classify_transport(failure.kind), None, failure.message),
            };
            let now = Utc::now();
            let next = {
                let mut jitter = self.jitter.lock().unwrap_or_else(|p| p.into_inner());
                self.retry
                    .next_attempt_at(verdict, &mut attempts, retry_after, now, &mut *jitter)
            };
            let Some(at) = next else {
                return Err(HttpError::Service {
                    service: service.into(),
                    message: format!("{failure} after {} attempt(s)", attempts.made()),
                });
            };
            tracing::warn!(service, error = %failure, attempt = attempts.made(), "retrying");
            tokio::time::sleep((at - now).to_std().unwrap_or_default()).await;
        }
    }
}

/// How a request authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    /// The LMS's JWT (the edX services).
    Jwt,
    /// A vendor's API key as a bearer token.
    Bearer(&'a str),
}

fn service_error(service: &str, e: impl std::fmt::Display) -> HttpError {
    HttpError::Service {
        service: service.into(),
        message: e.to_string(),
    }
}
