//! The one adapter every [`Connector`] runs through: fill the templates, authenticate, send,
//! and say what the answer means — a status for the core to classify (success, retry after a
//! 429 or 5xx with its `Retry-After`, ERRORED), or "done" when the vendor holds nothing.

use std::sync::Arc;

use retirement_core::TransportErrorKind;

use super::{Auth, Connector, Kind, Request, Values, found_in};
use crate::auth::{AccessToken, TokenSource};
use crate::catalog::LearnerRef;
use crate::client::{CallOutcome, ServiceClients};

/// A connector with what it needs at run time (its vendor token cache).
pub(crate) struct LiveConnector {
    pub(crate) connector: Connector,
    /// The vendor's OAuth2 tokens, for [`Auth::Oauth2`].
    pub(crate) tokens: Option<TokenSource>,
}

impl ServiceClients {
    /// Runs `live` for `learner` once (the core schedules any retry).
    pub(crate) async fn call_connector(
        &self,
        live: &Arc<LiveConnector>,
        learner: &LearnerRef<'_>,
    ) -> CallOutcome {
        let c = &live.connector;
        let name = format!("{} {}", c.service, c.operation);
        let requests: Vec<&Request> = match &c.kind {
            Kind::Call { request } => vec![request],
            Kind::LookupThenDelete { lookup, delete, .. } => vec![lookup, delete],
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
        };
        match &c.kind {
            Kind::Call { request } => {
                let outcome = self.send_request(live, request, &plain).await;
                self.not_found_is_done(c, &name, outcome, "")
            }
            Kind::LookupThenDelete {
                lookup,
                found_at,
                delete,
            } => {
                let outcome = self.send_request(live, lookup, &plain).await;
                let body = match outcome {
                    CallOutcome::Response { status, body, .. } if (200..300).contains(&status) => {
                        body
                    }
                    other => return self.not_found_is_done(c, &name, other, " (lookup)"),
                };
                let Some(found) = found_in(&body, found_at) else {
                    return CallOutcome::Done {
                        message: format!(
                            "{name}: the lookup found nothing for this learner; nothing to delete"
                        ),
                    };
                };
                let with_found = Values {
                    learner,
                    found: Some(&found),
                };
                let outcome = self.send_request(live, delete, &with_found).await;
                self.not_found_is_done(c, &name, outcome, " (delete)")
            }
        }
    }

    fn not_found_is_done(
        &self,
        c: &Connector,
        name: &str,
        outcome: CallOutcome,
        which: &str,
    ) -> CallOutcome {
        match outcome {
            CallOutcome::Response { status, .. } if c.not_found.contains(&status) => {
                CallOutcome::Done {
                    message: format!(
                        "{name}{which}: HTTP {status}, which the vendor documents as \"not \
                         found\"; nothing to delete"
                    ),
                }
            }
            other => other,
        }
    }

    /// Sends one request with the connector's auth; a 401 with a cached token (the LMS's or
    /// the vendor's) fetches a new one and sends once more.
    async fn send_request(
        &self,
        live: &LiveConnector,
        request: &Request,
        values: &Values<'_>,
    ) -> CallOutcome {
        let mut outcome = self.send_once(live, request, values).await;
        if let (CallOutcome::Response { status: 401, .. }, Some(token)) = &outcome {
            match (&live.connector.auth, &live.tokens) {
                (Auth::LmsJwt, _) => self.tokens().invalidate(token).await,
                (Auth::Oauth2(_), Some(tokens)) => tokens.invalidate(token).await,
                _ => return outcome.0,
            }
            outcome = self.send_once(live, request, values).await;
        }
        outcome.0
    }

    async fn send_once(
        &self,
        live: &LiveConnector,
        request: &Request,
        values: &Values<'_>,
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
        let url = values.url(&request.url);
        let mut builder = self.request(method, &url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), values.text(value));
        }
        if let Some(json) = &request.json {
            builder = builder.json(&values.json(json));
        }
        let mut used = None;
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
        let outcome = match self.exchange(builder).await {
            Ok(crate::transport::Answer {
                status,
                retry_after,
                body: Ok(body),
            }) => CallOutcome::Response {
                status,
                body,
                retry_after,
            },
            Ok(crate::transport::Answer { body: Err(e), .. }) | Err(e) => CallOutcome::Transport {
                kind: e.kind,
                message: values.learner.redact(&e.message),
            },
        };
        (outcome, used)
    }
}
