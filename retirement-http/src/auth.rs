//! OAuth2 client credentials against the LMS, returning a JWT shared by every edX service.
//!
//! Upstream's driver fetches one token per client at start-up and never refreshes it (defect
//! D13), so long runs outlive it. Here one [`TokenSource`] serves every client: the token is
//! cached, refreshed `refresh_margin` before `expires_in` runs out, and fetched again once when
//! a service answers 401.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::connectors::{OAuth2, TokenEncoding};
use crate::error::HttpError;
use crate::transport::Transport;

/// The OAuth2 client's id and secret. `Debug` shows the id only.
#[derive(Clone)]
pub struct ClientCredentials {
    /// The client id (not secret).
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &format_args!("<redacted>"))
            .finish()
    }
}

/// An access token: `Authorization: JWT …` from the LMS, `Bearer …` from a vendor. `Debug`
/// hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub(crate) token: String,
    scheme: &'static str,
}

impl AccessToken {
    /// The header value, `JWT <token>` (LMS) or `Bearer <token>` (a vendor's OAuth2).
    pub fn header_value(&self) -> String {
        format!("{} {}", self.scheme, self.token)
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

struct Cached {
    token: AccessToken,
    refresh_at: Instant,
}

/// The shared token cache.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<Inner>,
}

struct Inner {
    /// Builds the token request (no network of its own).
    builder: reqwest::Client,
    transport: Arc<dyn Transport>,
    timeout: Duration,
    token_url: String,
    grant: Grant,
    refresh_margin: Duration,
    cached: Mutex<Option<Cached>>,
    fetched: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", &self.inner.token_url)
            .field("client_id", &self.inner.grant.client_id())
            .finish()
    }
}

/// `{lms}/oauth2/access_token`: the path prefix of the LMS base URL is dropped, as upstream does.
pub fn token_url(lms_base: &str) -> Result<String, HttpError> {
    let url = reqwest::Url::parse(lms_base).map_err(|e| HttpError::BadBaseUrl {
        service: "LMS".into(),
        message: e.to_string(),
    })?;
    let mut root = url.clone();
    root.set_path("/oauth2/access_token");
    root.set_query(None);
    Ok(root.to_string())
}

impl TokenSource {
    /// A token source for the LMS at `lms_base`, fetching through `transport` within `timeout`
    /// (upstream: 3.05 s connect, 5 s read). `builder` only builds the request.
    pub fn new(
        builder: reqwest::Client,
        transport: Arc<dyn Transport>,
        lms_base: &str,
        credentials: ClientCredentials,
        refresh_margin: Duration,
        timeout: Duration,
    ) -> Result<TokenSource, HttpError> {
        Ok(TokenSource {
            inner: Arc::new(Inner {
                builder,
                transport,
                timeout,
                token_url: token_url(lms_base)?,
                grant: Grant::Lms(credentials),
                refresh_margin,
                cached: Mutex::new(None),
                fetched: Default::default(),
            }),
        })
    }

    /// A token source for a vendor's own OAuth2 client credentials (`Bearer` tokens).
    pub fn vendor(
        builder: reqwest::Client,
        transport: Arc<dyn Transport>,
        oauth: OAuth2,
        refresh_margin: Duration,
        timeout: Duration,
    ) -> TokenSource {
        TokenSource {
            inner: Arc::new(Inner {
                builder,
                transport,
                timeout,
                token_url: oauth.token_url.clone(),
                grant: Grant::Vendor(oauth),
                refresh_margin,
                cached: Mutex::new(None),
                fetched: Default::default(),
            }),
        }
    }

    /// How many tokens were fetched so far (for tests and metrics).
    pub fn fetch_count(&self) -> u64 {
        self.inner
            .fetched
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A valid token: the cached one unless it is within the refresh margin of expiring.
    pub async fn token(&self) -> Result<AccessToken, HttpError> {
        let mut cached = self.inner.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Drops `rejected` from the cache after a 401, so the next `token()` fetches a new one.
    /// A token already replaced by another task is left alone.
    pub async fn invalidate(&self, rejected: &AccessToken) {
        let mut cached = self.inner.cached.lock().await;
        if cached.as_ref().is_some_and(|c| &c.token == rejected) {
            *cached = None;
        }
    }

    async fn fetch(&self) -> Result<Cached, HttpError> {
        let started = Instant::now();
        let request = self
            .inner
            .grant
            .request(&self.inner.builder, &self.inner.token_url)
            .timeout(self.inner.timeout)
            .build()
            .map_err(|e| HttpError::Token(crate::transport::describe(&e)))?;
        let answer = self
            .inner
            .transport
            .send(request)
            .await
            .map_err(|e| HttpError::Token(e.message))?;
        if !(200..300).contains(&answer.status) {
            return Err(HttpError::Token(format!(
                "HTTP {} from the token endpoint for client {}",
                answer.status,
                self.inner.grant.client_id()
            )));
        }
        let text = answer.body.map_err(|e| HttpError::Token(e.message))?;
        let body: TokenResponse = serde_json::from_str(&text)
            .map_err(|e| HttpError::Token(format!("unreadable token response: {e}")))?;
        let token = body.access_token.ok_or_else(|| {
            HttpError::Token("'access_token' does not exist in the response".into())
        })?;
        // An empty token would only earn 401s from every service (found by the bad-input test).
        if token.trim().is_empty() {
            return Err(HttpError::Token(
                "'access_token' is empty in the response".into(),
            ));
        }
        self.inner
            .fetched
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // No expires_in: assume the shortest sensible life and refresh often rather than late.
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(60));
        let refresh_at = started + lifetime.saturating_sub(self.inner.refresh_margin);
        Ok(Cached {
            token: AccessToken {
                token,
                scheme: self.inner.grant.scheme(),
            },
            refresh_at,
        })
    }
}

/// What a token is requested with.
enum Grant {
    /// The LMS: form fields with `token_type=jwt`; `Authorization: JWT`.
    Lms(ClientCredentials),
    /// A vendor's OAuth2 client credentials; `Authorization: Bearer`.
    Vendor(OAuth2),
}

impl Grant {
    fn client_id(&self) -> &str {
        match self {
            Grant::Lms(c) => &c.client_id,
            Grant::Vendor(o) => &o.client_id,
        }
    }

    fn scheme(&self) -> &'static str {
        match self {
            Grant::Lms(_) => "JWT",
            Grant::Vendor(_) => "Bearer",
        }
    }

    fn request(&self, builder: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
        match self {
            Grant::Lms(c) => builder.post(url).form(&[
                ("grant_type", "client_credentials"),
                ("client_id", c.client_id.as_str()),
                ("client_secret", c.client_secret.as_str()),
                ("token_type", "jwt"),
            ]),
            Grant::Vendor(o) => {
                let mut fields: Vec<(&str, &str)> = vec![
                    ("grant_type", "client_credentials"),
                    ("client_id", o.client_id.as_str()),
                    ("client_secret", o.client_secret.expose()),
                ];
                if let Some(audience) = &o.audience {
                    fields.push(("audience", audience));
                }
                if let Some(scope) = &o.scope {
                    fields.push(("scope", scope));
                }
                fields.extend(o.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                match o.encoding {
                    TokenEncoding::Form => builder.post(url).form(&fields),
                    TokenEncoding::Json => {
                        let map: serde_json::Map<String, serde_json::Value> = fields
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v.to_owned())))
                            .collect();
                        builder.post(url).json(&map)
                    }
                }
            }
        }
    }
}
