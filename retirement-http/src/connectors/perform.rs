//! The one adapter every [`Connector`] runs through: fill the templates, authenticate, send
//! (alone, or in a batch with other learners), and say what the answer means — a status for
//! the core to classify (success, retry after a 429 or 5xx with its `Retry-After`, ERRORED),
//! "done" when the vendor holds nothing, a job started or still running, a person asked.

use std::collections::HashMap;
use std::sync::Arc;

use retirement_core::TransportErrorKind;
use tokio::sync::oneshot;

use super::{Auth, Batch, Connector, Kind, Request, Values, found_in};
use crate::auth::{AccessToken, TokenSource};
use crate::catalog::LearnerRef;
use crate::client::{CallOutcome, ServiceClients};

/// A connector with what it needs at run time: its vendor token cache and its batch queue.
pub(crate) struct LiveConnector {
    pub(crate) connector: Connector,
    /// The vendor's OAuth2 tokens, for [`Auth::Oauth2`].
    pub(crate) tokens: Option<TokenSource>,
    /// Learners waiting to be sent together, for a connector with a [`Batch`].
    pub(crate) queue: std::sync::Mutex<Vec<Queued>>,
    /// Recent job statuses: every learner of a batch waits on the same job, and one poll
    /// answers them all (held while a poll is on its way, so the others wait for it).
    polls: tokio::sync::Mutex<HashMap<String, (tokio::time::Instant, CallOutcome)>>,
}

impl LiveConnector {
    pub(crate) fn new(connector: Connector, tokens: Option<TokenSource>) -> LiveConnector {
        LiveConnector {
            connector,
            tokens,
            queue: std::sync::Mutex::new(Vec::new()),
            polls: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    fn name(&self) -> String {
        format!("{} {}", self.connector.service, self.connector.operation)
    }
}

/// A request with its placeholders filled.
#[derive(Debug, Clone)]
struct Filled {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    json: Option<serde_json::Value>,
}

fn fill(request: &Request, values: &Values<'_>) -> Filled {
    Filled {
        method: request.method.clone(),
        url: values.url(&request.url),
        headers: request
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), values.text(v)))
            .collect(),
        json: request.json.as_ref().map(|j| values.json(j)),
    }
}

/// One learner in a batch queue: its own filled request (whose array at `list_at` holds its
/// items), and where its answer goes.
pub(crate) struct Queued {
    request: Filled,
    items: Vec<serde_json::Value>,
    reply: oneshot::Sender<CallOutcome>,
}

impl ServiceClients {
    /// Runs `live` for `learner` once (the core schedules any retry).
    pub(crate) async fn call_connector(
        &self,
        live: &Arc<LiveConnector>,
        learner: &LearnerRef<'_>,
    ) -> CallOutcome {
        let c = &live.connector;
        let name = live.name();
        let requests: Vec<&Request> = match &c.kind {
            Kind::Call { request } => vec![request],
            Kind::LookupThenDelete { lookup, delete, .. } => vec![lookup, delete],
            Kind::Job { start, .. } => vec![start],
            Kind::Manual { lookup, ask, .. } => {
                lookup.iter().map(|(r, _)| r).chain([ask]).collect()
            }
        };
        if learner.lms_user_id.is_none() && requests.iter().any(|r| super::needs_user_id(r)) {
            return CallOutcome::Failed {
                transient: false,
                message: format!("{name} is keyed by the LMS user id, and this learner has none"),
            };
        }
        let plain = Values {
            learner,
            found: None,
            job: None,
        };
        match &c.kind {
            Kind::Call { request } => {
                let outcome = self.send_batched(live, request, &plain).await;
                not_found_is_done(c, &name, outcome, "")
            }
            Kind::LookupThenDelete {
                lookup,
                found_at,
                delete,
            } => {
                let found = match self.look_up(live, lookup, found_at, &plain).await {
                    Ok(Some(found)) => found,
                    Ok(None) => {
                        return CallOutcome::Done {
                            message: format!(
                                "{name}: the lookup found nothing for this learner; nothing to delete"
                            ),
                        };
                    }
                    Err(outcome) => return outcome,
                };
                let with_found = Values {
                    learner,
                    found: Some(&found),
                    job: None,
                };
                let outcome = self.send_request(live, &fill(delete, &with_found)).await;
                not_found_is_done(c, &name, outcome, " (delete)")
            }
            Kind::Job {
                start, job_id_at, ..
            } => match self.send_batched(live, start, &plain).await {
                CallOutcome::Response { status, body, .. } if (200..300).contains(&status) => {
                    match found_in(&body, job_id_at) {
                        Some(job_id) => CallOutcome::JobStarted { job_id },
                        None => CallOutcome::Failed {
                            transient: false,
                            message: format!(
                                "{name}: HTTP {status}, but the answer has no job id at {job_id_at}"
                            ),
                        },
                    }
                }
                other => not_found_is_done(c, &name, other, ""),
            },
            Kind::Manual {
                lookup,
                ask,
                reference_at,
            } => {
                let found = match lookup {
                    None => None,
                    Some((request, found_at)) => {
                        match self.look_up(live, request, found_at, &plain).await {
                            Ok(Some(found)) => Some(found),
                            Ok(None) => {
                                return CallOutcome::Done {
                                    message: format!(
                                        "{name}: the lookup found no record of this learner; nothing to erase, nobody to ask"
                                    ),
                                };
                            }
                            Err(outcome) => return outcome,
                        }
                    }
                };
                let values = Values {
                    learner,
                    found: found.as_deref(),
                    job: None,
                };
                match self.send_request(live, &fill(ask, &values)).await {
                    CallOutcome::Response { status, body, .. } if (200..300).contains(&status) => {
                        CallOutcome::PersonAsked {
                            reference: found_in(&body, reference_at)
                                .map(|id| format!("task {id}"))
                                .unwrap_or_default(),
                        }
                    }
                    other => other,
                }
            }
        }
    }

    /// Polls the job `job_id` of `live` for `learner`.
    pub(crate) async fn poll_connector(
        &self,
        live: &Arc<LiveConnector>,
        learner: &LearnerRef<'_>,
        job_id: &str,
    ) -> CallOutcome {
        let name = live.name();
        let Kind::Job {
            poll,
            status_at,
            done,
            failed,
            poll_every,
            ..
        } = &live.connector.kind
        else {
            return CallOutcome::Failed {
                transient: false,
                message: format!("{name} starts no jobs"),
            };
        };
        let fresh_for = *poll_every / 2;
        let mut recent = live.polls.lock().await;
        recent.retain(|_, (at, _)| at.elapsed() < fresh_for);
        if let Some((_, outcome)) = recent.get(job_id) {
            return outcome.clone();
        }
        let values = Values {
            learner,
            found: None,
            job: Some(job_id),
        };
        let outcome = self
            .job_status(live, &fill(poll, &values), status_at, done, failed, job_id)
            .await;
        if matches!(
            outcome,
            CallOutcome::JobRunning | CallOutcome::Done { .. } | CallOutcome::Failed { .. }
        ) {
            recent.insert(
                job_id.to_owned(),
                (tokio::time::Instant::now(), outcome.clone()),
            );
        }
        outcome
    }

    async fn job_status(
        &self,
        live: &LiveConnector,
        poll: &Filled,
        status_at: &str,
        done: &[String],
        failed: &[String],
        job_id: &str,
    ) -> CallOutcome {
        let name = live.name();
        match self.send_request(live, poll).await {
            CallOutcome::Response { status, body, .. } if (200..300).contains(&status) => {
                match found_in(&body, status_at) {
                    Some(s) if done.contains(&s) => CallOutcome::Done {
                        message: format!("{name}: job {job_id} {s}"),
                    },
                    Some(s) if failed.contains(&s) => CallOutcome::Failed {
                        transient: false,
                        message: format!("{name}: job {job_id} ended {s}"),
                    },
                    _ => CallOutcome::JobRunning,
                }
            }
            other => other,
        }
    }

    /// A lookup: `Ok(Some(value))` found, `Ok(None)` nothing (or a not-found status), or the
    /// outcome to hand back (a failure the core classifies).
    async fn look_up(
        &self,
        live: &LiveConnector,
        request: &Request,
        found_at: &str,
        values: &Values<'_>,
    ) -> Result<Option<String>, CallOutcome> {
        match self.send_request(live, &fill(request, values)).await {
            CallOutcome::Response { status, body, .. } if (200..300).contains(&status) => {
                Ok(found_in(&body, found_at))
            }
            CallOutcome::Response { status, .. } if live.connector.not_found.contains(&status) => {
                Ok(None)
            }
            other => Err(other),
        }
    }

    /// Sends `request` for one learner, alone or (for a connector with a [`Batch`]) together
    /// with the other learners waiting at the same stage: each gets the batch's answer.
    async fn send_batched(
        &self,
        live: &Arc<LiveConnector>,
        request: &Request,
        values: &Values<'_>,
    ) -> CallOutcome {
        let Some(batch) = &live.connector.batch else {
            return self.send_request(live, &fill(request, values)).await;
        };
        let filled = fill(request, values);
        let items = filled
            .json
            .as_ref()
            .and_then(|j| j.pointer(&batch.list_at))
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default();
        let per_batch = (batch.max_items / items.len().max(1)).max(1);
        let (reply, answer) = oneshot::channel();
        let full = {
            let mut queue = live.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.push(Queued {
                request: filled,
                items,
                reply,
            });
            queue.len() >= per_batch
        };
        let mut answer = answer;
        if full {
            self.flush(live, batch, per_batch).await;
        } else {
            // Wait for others (or for whoever fills the batch); then send what is queued,
            // unless this learner's batch is already on its way.
            tokio::select! {
                biased;
                outcome = &mut answer => {
                    return outcome.unwrap_or_else(|_| dropped());
                }
                () = tokio::time::sleep(batch.wait) => {}
            }
            self.flush(live, batch, per_batch).await;
        }
        answer.await.unwrap_or_else(|_| dropped())
    }

    /// Sends up to `per_batch` queued learners in one request and answers each.
    async fn flush(&self, live: &Arc<LiveConnector>, batch: &Batch, per_batch: usize) {
        let taken: Vec<Queued> = {
            let mut queue = live.queue.lock().unwrap_or_else(|p| p.into_inner());
            let n = queue.len().min(per_batch);
            queue.drain(..n).collect()
        };
        let Some(first) = taken.first() else {
            return;
        };
        let mut request = first.request.clone();
        let all: Vec<serde_json::Value> = taken.iter().flat_map(|q| q.items.clone()).collect();
        if let Some(list) = request
            .json
            .as_mut()
            .and_then(|j| j.pointer_mut(&batch.list_at))
        {
            *list = serde_json::Value::Array(all);
        }
        let outcome = self.send_request(live, &request).await;
        tracing::debug!(
            service = %live.connector.service,
            learners = taken.len(),
            "batch sent"
        );
        for queued in taken {
            let _ = queued.reply.send(outcome.clone());
        }
    }

    /// Sends one filled request with the connector's auth, within the service's concurrency
    /// limit and pace; a 401 with a cached token (the LMS's or the vendor's) fetches a new
    /// one and sends once more.
    async fn send_request(&self, live: &LiveConnector, request: &Filled) -> CallOutcome {
        let _permit = self.permit(&live.connector.service).await;
        self.pace(&live.connector.service).await;
        let mut outcome = self.send_once(live, request).await;
        if let (CallOutcome::Response { status: 401, .. }, Some(token)) = &outcome {
            match (&live.connector.auth, &live.tokens) {
                (Auth::LmsJwt, _) => self.tokens().invalidate(token).await,
                (Auth::Oauth2(_), Some(tokens)) => tokens.invalidate(token).await,
                _ => return outcome.0,
            }
            outcome = self.send_once(live, request).await;
        }
        outcome.0
    }

    async fn send_once(
        &self,
        live: &LiveConnector,
        request: &Filled,
    ) -> (CallOutcome, Option<AccessToken>) {
        let Ok(method) = reqwest::Method::from_bytes(request.method.as_bytes()) else {
            return (
                CallOutcome::Failed {
                    transient: false,
                    message: format!("{:?} is not an HTTP method", request.method),
                },
                None,
            );
        };
        let mut builder = self.request(method, &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(json) = &request.json {
            builder = builder.json(json);
        }
        let token = match &live.connector.auth {
            Auth::LmsJwt => Some(self.tokens().token().await),
            Auth::Oauth2(_) => match &live.tokens {
                Some(tokens) => Some(tokens.token().await),
                None => None,
            },
            Auth::Bearer { token } => {
                builder = builder.bearer_auth(token.expose());
                None
            }
            Auth::Basic { username, password } => {
                builder = builder.basic_auth(username, Some(password.expose()));
                None
            }
            Auth::None => None,
        };
        let mut used = None;
        match token {
            Some(Ok(token)) => {
                builder = builder.header(reqwest::header::AUTHORIZATION, token.header_value());
                used = Some(token);
            }
            Some(Err(e)) => {
                return (
                    CallOutcome::Transport {
                        kind: TransportErrorKind::Other,
                        message: e.to_string(),
                    },
                    None,
                );
            }
            None => {}
        }
        let outcome = CallOutcome::of(self.exchange(builder).await);
        (outcome, used)
    }
}

fn dropped() -> CallOutcome {
    CallOutcome::Transport {
        kind: TransportErrorKind::Other,
        message: "the batch this learner was in was dropped before it was sent".into(),
    }
}

fn not_found_is_done(c: &Connector, name: &str, outcome: CallOutcome, which: &str) -> CallOutcome {
    match outcome {
        CallOutcome::Response { status, .. } if c.not_found.contains(&status) => {
            CallOutcome::Done {
                message: format!(
                    "{name}{which}: HTTP {status}, which the vendor documents as \"not found\"; \
                 nothing to delete"
                ),
            }
        }
        other => other,
    }
}
