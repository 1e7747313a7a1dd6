//! [`ServiceClients`]: every configured service's retirement calls, with the shared token,
//! timeouts, connection reuse, per-service concurrency limits and optional rate limits.
//!
//! A call returns what happened — a status and body, or a transport failure — as a
//! [`CallOutcome`]; `retirement-core` decides what that means (success, retry, ERRORED).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use retirement_core::{Input, Pipeline, TransportErrorKind};
use tokio::sync::{Mutex, Semaphore};

use crate::auth::{ClientCredentials, TokenSource};
use crate::catalog::{self, GenericService, LearnerRef};
use crate::connectors::{Check, LiveConnector};
use crate::error::HttpError;
use crate::transport::{Network, Transport};

/// Timeouts, limits and identity of the HTTP clients. Defaults are stated per field.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Connecting to a service (default 5 s). Upstream sets none (defect D12).
    pub connect_timeout: Duration,
    /// A whole request, connect to last body byte (default 60 s). Upstream sets none.
    pub request_timeout: Duration,
    /// The token call's total timeout (default 5 s, upstream's read timeout).
    pub token_timeout: Duration,
    /// Refresh the token this long before `expires_in` runs out (default 60 s).
    pub token_refresh_margin: Duration,
    /// Concurrent calls per service key at most (default 16).
    pub max_concurrent_per_service: usize,
    /// Requests per second per service key, for services that need protecting (default none).
    pub rate_limits: BTreeMap<String, f64>,
    /// The `User-Agent` header (default `learner-retirement/<version>`).
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            token_timeout: Duration::from_secs(5),
            token_refresh_margin: Duration::from_secs(60),
            max_concurrent_per_service: 16,
            rate_limits: BTreeMap::new(),
            user_agent: concat!("learner-retirement/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// What one call produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// An HTTP answer, success or not.
    Response {
        /// The status.
        status: u16,
        /// The body as text.
        body: String,
        /// The `Retry-After` delay, when given in seconds.
        retry_after: Option<Duration>,
    },
    /// No HTTP answer.
    Transport {
        /// How it failed.
        kind: TransportErrorKind,
        /// A description without secrets or PII.
        message: String,
    },
    /// The service holds nothing for the learner (a status the connector lists as "not
    /// found", or a lookup that found nothing): the stage is done.
    Done {
        /// What happened, for the learner's log (no PII).
        message: String,
    },
    /// A job stage's call started the vendor's job.
    JobStarted {
        /// The vendor's job id.
        job_id: String,
    },
    /// A poll found the job still running.
    JobRunning,
    /// A manual stage's call asked a person.
    PersonAsked {
        /// The person's task, if the vendor names it.
        reference: String,
    },
    /// A 2xx whose content says the learner was not erased (e.g. listed in
    /// `failed_replacements`).
    Failed {
        /// Whether a later attempt may succeed.
        transient: bool,
        /// Why (no PII).
        message: String,
    },
}

impl CallOutcome {
    /// What a request's exchange produced: the answer, or how it failed.
    pub(crate) fn of(
        exchanged: Result<crate::transport::Answer, crate::transport::Failure>,
    ) -> CallOutcome {
        match exchanged {
            Ok(crate::transport::Answer {
                status,
                retry_after,
                body: Ok(body),
            }) => CallOutcome::Response {
                status,
                body,
                retry_after,
            },
            // Headers came but the body broke off: the server did not finish.
            Ok(crate::transport::Answer { body: Err(e), .. }) | Err(e) => CallOutcome::Transport {
                kind: e.kind,
                message: e.message,
            },
        }
    }

    /// The machine input this outcome is.
    pub fn into_input(self) -> Input {
        match self {
            CallOutcome::Response {
                status,
                body,
                retry_after,
            } => Input::Response {
                status,
                body,
                retry_after,
            },
            CallOutcome::Transport { kind, message } => Input::TransportError { kind, message },
            CallOutcome::Done { message } => Input::StepSucceeded { message },
            CallOutcome::JobStarted { job_id } => Input::JobStarted { job_id },
            CallOutcome::JobRunning => Input::JobRunning,
            CallOutcome::PersonAsked { reference } => Input::PersonAsked { reference },
            CallOutcome::Failed { transient, message } => Input::StepFailed { transient, message },
        }
    }
}

/// A simple pacer: calls of one service start at least `1 / rate` apart.
struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

/// A resolved operation: where and what to send.
#[derive(Clone)]
enum Target {
    Builtin(&'static catalog::Operation, String),
    Connector(Arc<LiveConnector>),
}

/// Every service's retirement calls.
pub struct ServiceClients {
    /// Builds requests; the transport sends them.
    pub(crate) http: reqwest::Client,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) request_timeout: Duration,
    tokens: TokenSource,
    base_urls: BTreeMap<String, String>,
    connectors: HashMap<(String, String), Arc<LiveConnector>>,
    token_refresh_margin: Duration,
    token_timeout: Duration,
    max_concurrent: usize,
    limits: HashMap<String, Arc<Semaphore>>,
    pacers: HashMap<String, Arc<Pacer>>,
}

impl std::fmt::Debug for ServiceClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClients")
            .field("base_urls", &self.base_urls)
            .field("tokens", &self.tokens)
            .finish()
    }
}

impl ServiceClients {
    /// Builds the clients. Nothing is fetched yet: the token is requested on the first call
    /// (upstream builds every client eagerly, fetching a token for services the pipeline never
    /// uses, defect D18).
    ///
    /// ```
    /// use retirement_http::{ClientCredentials, HttpError, HttpOptions, ServiceClients};
    ///
    /// let credentials = || ClientCredentials {
    ///     client_id: "retirement-worker".into(),
    ///     client_secret: "s3cret".into(),
    /// };
    /// // tubular's `base_urls`; building makes no request.
    /// let base_urls = [("lms".to_owned(), "https://lms.example.org/".to_owned())].into();
    /// let clients = ServiceClients::new(base_urls, credentials(), Vec::new(), &HttpOptions::default())?;
    /// assert_eq!(clients.base_url("lms"), Some("https://lms.example.org/"));
    /// assert!(!format!("{clients:?}").contains("s3cret"));
    ///
    /// let bad = [("lms".to_owned(), "lms.example.org".to_owned())].into();
    /// assert!(ServiceClients::new(bad, credentials(), Vec::new(), &HttpOptions::default()).is_err());
    /// # Ok::<(), HttpError>(())
    /// ```
    pub fn new(
        base_urls: BTreeMap<String, String>,
        credentials: ClientCredentials,
        generic: Vec<GenericService>,
        options: &HttpOptions,
    ) -> Result<ServiceClients, HttpError> {
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .user_agent(options.user_agent.clone())
            .pool_max_idle_per_host(options.max_concurrent_per_service.max(1))
            .build()
            .map_err(|e| HttpError::Client(e.to_string()))?;
        let token_http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout.min(Duration::from_millis(3050)))
            .timeout(options.token_timeout)
            .user_agent(options.user_agent.clone())
            .build()
            .map_err(|e| HttpError::Client(e.to_string()))?;
        let transports = Transports {
            calls: Arc::new(Network::new(http.clone())),
            tokens: Arc::new(Network::new(token_http)),
        };
        ServiceClients::build(http, transports, base_urls, credentials, generic, options)
    }

    /// Clients whose requests (the token's too) go through `transport` instead of the network:
    /// the in-process fake of a simulation.
    pub fn with_transport(
        transport: Arc<dyn Transport>,
        base_urls: BTreeMap<String, String>,
        credentials: ClientCredentials,
        generic: Vec<GenericService>,
        options: &HttpOptions,
    ) -> Result<ServiceClients, HttpError> {
        let http = reqwest::Client::builder()
            .user_agent(options.user_agent.clone())
            .build()
            .map_err(|e| HttpError::Client(e.to_string()))?;
        let transports = Transports {
            calls: transport.clone(),
            tokens: transport,
        };
        ServiceClients::build(http, transports, base_urls, credentials, generic, options)
    }

    fn build(
        http: reqwest::Client,
        transports: Transports,
        base_urls: BTreeMap<String, String>,
        credentials: ClientCredentials,
        generic: Vec<GenericService>,
        options: &HttpOptions,
    ) -> Result<ServiceClients, HttpError> {
        let lms = base_urls
            .get("lms")
            .ok_or_else(|| HttpError::MissingBaseUrl {
                service: "LMS".into(),
                key: "lms".into(),
            })?;
        let tokens = TokenSource::new(
            http.clone(),
            transports.tokens,
            lms,
            credentials,
            options.token_refresh_margin,
            options.token_timeout,
        )?;
        let pacers = options
            .rate_limits
            .iter()
            .filter(|(_, rate)| **rate > 0.0)
            .map(|(service, rate)| {
                (
                    service.clone(),
                    Arc::new(Pacer {
                        interval: Duration::from_secs_f64(1.0 / rate),
                        next: Mutex::new(Instant::now()),
                    }),
                )
            })
            .collect();
        let max_concurrent = options.max_concurrent_per_service.max(1);
        let mut limits = HashMap::new();
        for service in catalog::OPERATIONS.iter().map(|o| o.service) {
            limits
                .entry(service.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(max_concurrent)));
        }
        let connectors = generic
            .iter()
            .map(|g| g.connector().map_err(HttpError::InvalidService))
            .collect::<Result<Vec<_>, _>>()?;
        ServiceClients {
            http,
            transport: transports.calls,
            request_timeout: options.request_timeout,
            tokens,
            base_urls,
            connectors: HashMap::new(),
            token_refresh_margin: options.token_refresh_margin,
            token_timeout: options.token_timeout,
            max_concurrent,
            limits,
            pacers,
        }
        .with_connectors(connectors)
    }

    /// These clients with `connectors` added (the built-in vendors the config sets up, see
    /// [`crate::connectors::vendors`]). A connector for a `SERVICE operation` already known
    /// replaces it.
    pub fn with_connectors(
        mut self,
        connectors: Vec<crate::connectors::Connector>,
    ) -> Result<ServiceClients, HttpError> {
        for connector in connectors {
            let tokens = match &connector.auth {
                crate::connectors::Auth::Oauth2(oauth) => Some(TokenSource::vendor(
                    self.http.clone(),
                    self.transport.clone(),
                    oauth.clone(),
                    self.token_refresh_margin,
                    self.token_timeout,
                )),
                _ => None,
            };
            self.limits
                .entry(connector.service.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(self.max_concurrent)));
            self.connectors.insert(
                (connector.service.clone(), connector.operation.clone()),
                Arc::new(LiveConnector::new(connector, tokens)),
            );
        }
        Ok(self)
    }

    /// The kind of stage `service operation` is: a job or a manual step for connectors
    /// that start jobs or ask people, else one call.
    pub fn stage_kind(&self, service: &str, operation: &str) -> retirement_core::StageKind {
        self.connector(service, operation)
            .map(|c| c.stage_kind())
            .unwrap_or_default()
    }

    /// The connector serving `service operation`, if one does.
    pub fn connector(
        &self,
        service: &str,
        operation: &str,
    ) -> Option<&crate::connectors::Connector> {
        self.connectors
            .get(&(service.to_owned(), operation.to_owned()))
            .map(|live| &live.connector)
    }

    /// The shared token source.
    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    /// A request builder for `url` (the LMS-backed store's requests), with the request timeout.
    pub(crate) fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url).timeout(self.request_timeout)
    }

    /// Sends a built request through the transport.
    pub(crate) async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<crate::transport::Answer, crate::transport::Failure> {
        let request = request.build().map_err(|e| crate::transport::Failure {
            kind: TransportErrorKind::Other,
            message: crate::transport::describe(&e),
        })?;
        self.transport.send(request).await
    }

    /// An authenticated JSON call to the LMS at `path` (relative to `base_urls.lms`): the
    /// status and body. The token is fetched again once on a 401. For the LMS's admin APIs
    /// (the status API of the LMS-backed store, the partner report).
    pub async fn lms_call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<(u16, String), HttpError> {
        let lms = self
            .base_url("lms")
            .ok_or_else(|| HttpError::MissingBaseUrl {
                service: "LMS".into(),
                key: "lms".into(),
            })?
            .trim_end_matches('/')
            .to_owned();
        let url = format!("{lms}/{path}");
        let mut renewed = false;
        loop {
            let token = self.tokens().token().await?;
            let mut request = self
                .request(method.clone(), &url)
                .query(query)
                .header(reqwest::header::AUTHORIZATION, token.header_value());
            if let Some(body) = &body {
                request = request.json(body);
            }
            let failed = |message: String| HttpError::Service {
                service: "LMS".into(),
                message,
            };
            let answer = self
                .exchange(request)
                .await
                .map_err(|e| failed(e.message))?;
            let status = answer.status;
            let text = answer.body.map_err(|e| failed(e.message))?;
            if status == 401 && !renewed {
                self.tokens().invalidate(&token).await;
                renewed = true;
                continue;
            }
            return Ok((status, text));
        }
    }

    /// The configured base URL of a config key (`lms`, `ecommerce`, …).
    pub fn base_url(&self, key: &str) -> Option<&str> {
        self.base_urls.get(key).map(String::as_str)
    }

    fn resolve(&self, service: &str, operation: &str) -> Result<Target, HttpError> {
        if let Some(live) = self
            .connectors
            .get(&(service.to_owned(), operation.to_owned()))
        {
            return Ok(Target::Connector(live.clone()));
        }
        let op = catalog::find(service, operation).ok_or_else(|| HttpError::UnknownOperation {
            service: service.to_owned(),
            operation: operation.to_owned(),
        })?;
        let base =
            self.base_urls
                .get(op.base_url_key)
                .ok_or_else(|| HttpError::MissingBaseUrl {
                    service: service.to_owned(),
                    key: op.base_url_key.to_owned(),
                })?;
        Ok(Target::Builtin(op, base.clone()))
    }

    /// Checks that every stage of `pipeline` resolves to an operation with a base URL: a
    /// config error found before any learner is touched.
    pub fn check_pipeline(&self, pipeline: &Pipeline) -> Result<(), HttpError> {
        for stage in pipeline.stages() {
            self.resolve(&stage.service, &stage.operation)?;
        }
        Ok(())
    }

    /// Calls `service operation` for `learner` once (the core schedules any retry). A 401 is
    /// answered by fetching a new token and sending once more.
    pub async fn call(
        &self,
        service: &str,
        operation: &str,
        learner: &LearnerRef<'_>,
    ) -> Result<CallOutcome, HttpError> {
        let target = self.resolve(service, operation)?;
        let outcome = match target {
            Target::Builtin(op, base) => {
                let _permit = self.permit(service).await;
                self.pace(service).await;
                self.call_builtin(op, &base, learner).await?
            }
            // A connector takes a slot per request (a batch is one request).
            Target::Connector(live) => self.call_connector(&live, learner).await,
        };
        Ok(redacted(outcome, learner))
    }

    /// Polls the job `job_id` that `service operation` started for `learner`.
    pub async fn poll(
        &self,
        service: &str,
        operation: &str,
        learner: &LearnerRef<'_>,
        job_id: &str,
    ) -> Result<CallOutcome, HttpError> {
        match self.resolve(service, operation)? {
            Target::Connector(live) => Ok(redacted(
                self.poll_connector(&live, learner, job_id).await,
                learner,
            )),
            Target::Builtin(..) => Ok(CallOutcome::Failed {
                transient: false,
                message: format!("{service} {operation} starts no jobs"),
            }),
        }
    }

    async fn call_builtin(
        &self,
        op: &'static catalog::Operation,
        base: &str,
        learner: &LearnerRef<'_>,
    ) -> Result<CallOutcome, HttpError> {
        let path = op.path.replace(
            "{user_id}",
            &learner
                .lms_user_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
        );
        let url = catalog::join(base, &path);
        let body = catalog::body(op.body, learner);
        let method = reqwest::Method::from_bytes(op.method.as_bytes()).map_err(|_| {
            HttpError::UnknownOperation {
                service: op.service.to_owned(),
                operation: op.name.to_owned(),
            }
        })?;
        let mut outcome = self.send(&method, &url, body.as_ref()).await;
        if let Ok((CallOutcome::Response { status: 401, .. }, Some(token))) = &outcome {
            self.tokens.invalidate(token).await;
            outcome = self.send(&method, &url, body.as_ref()).await;
        }
        Ok(match outcome {
            Ok((CallOutcome::Response { status, body, .. }, _))
                if (200..300).contains(&status) && op.check != Check::Status =>
            {
                match catalog::check_answer(op.check, &body, learner) {
                    Ok(()) => CallOutcome::Response {
                        status,
                        body,
                        retry_after: None,
                    },
                    Err(why) => CallOutcome::Failed {
                        transient: true,
                        message: format!(
                            "{} {}: HTTP {status}, but {why}: {}",
                            op.service,
                            op.name,
                            learner.redact(&body)
                        ),
                    },
                }
            }
            Ok((result, _)) => result,
            Err(e) => CallOutcome::Transport {
                kind: TransportErrorKind::Other,
                message: e.to_string(),
            },
        })
    }

    /// Waits for the service's pace (its `rate_limits` entry), if it has one.
    pub(crate) async fn pace(&self, service: &str) {
        if let Some(pacer) = self.pacers.get(service) {
            pacer.wait().await;
        }
    }

    /// A slot of the service's concurrency limit (every resolvable service has one).
    pub(crate) async fn permit(&self, service: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.limits.get(service)?.clone().acquire_owned().await.ok()
    }

    async fn send(
        &self,
        method: &reqwest::Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(CallOutcome, Option<crate::auth::AccessToken>), HttpError> {
        let token = match self.tokens.token().await {
            Ok(token) => token,
            Err(e) => {
                return Ok((
                    CallOutcome::Transport {
                        kind: TransportErrorKind::Other,
                        message: e.to_string(),
                    },
                    None,
                ));
            }
        };
        let mut request = self
            .request(method.clone(), url)
            .header(reqwest::header::AUTHORIZATION, token.header_value());
        if let Some(body) = body {
            request = request.json(body);
        } else {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        let outcome = CallOutcome::of(self.exchange(request).await);
        Ok((outcome, Some(token)))
    }
}

/// What a service answered, with the learner's original username and email masked: it goes
/// to the learner's log, and a vendor may echo what it was sent.
fn redacted(outcome: CallOutcome, learner: &LearnerRef<'_>) -> CallOutcome {
    match outcome {
        CallOutcome::Response {
            status,
            body,
            retry_after,
        } => CallOutcome::Response {
            status,
            body: learner.redact(&body),
            retry_after,
        },
        CallOutcome::Transport { kind, message } => CallOutcome::Transport {
            kind,
            message: learner.redact(&message),
        },
        CallOutcome::Done { message } => CallOutcome::Done {
            message: learner.redact(&message),
        },
        CallOutcome::Failed { transient, message } => CallOutcome::Failed {
            transient,
            message: learner.redact(&message),
        },
        CallOutcome::PersonAsked { reference } => CallOutcome::PersonAsked {
            reference: learner.redact(&reference),
        },
        CallOutcome::JobStarted { job_id } => CallOutcome::JobStarted {
            job_id: learner.redact(&job_id),
        },
        CallOutcome::JobRunning => CallOutcome::JobRunning,
    }
}

/// The transports of the calls and of the token.
struct Transports {
    calls: Arc<dyn Transport>,
    tokens: Arc<dyn Transport>,
}
