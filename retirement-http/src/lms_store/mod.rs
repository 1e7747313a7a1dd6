//! [`LmsStore`]: `retirement-store`'s [`RetirementStore`] over a real Open edX LMS, so the
//! driver works against an existing installation as tubular does.
//!
//! What the LMS API cannot do, and what happens instead:
//! - no state table, state sync, enqueue, ledger lookup or lookup by id: those answer
//!   [`StoreError::Unsupported`] (`get` by id works for learners this store has already listed or
//!   claimed);
//! - no leases: a claim lists the queue; a learner in a working state is claimable once its
//!   `modified` time is older than the lease length (the worker that moved it there is presumed
//!   gone). Within one process, claims are exact:
//!   - a learner claimed and not yet released or ended is never claimed again (the LMS lists it
//!     again between two stages: found by `chaos kill`);
//!   - a listing is never older than what this process last wrote: a learner written while the
//!     listing was on its way (or with a write still in flight) is left out of it, because the
//!     listing may show it in a state it has already left (issue 13: a learner completed while
//!     the listing travelled was driven again from its old state);
//!   - a write refused because the learner is already in the state written (this process's
//!     earlier attempt landed, its answer was lost) stands as written.
//!
//!   Between processes the fence is the LMS's own forward-only rule: two workers cannot both
//!   move a learner into `RETIRING_X`. Heartbeats and releases change nothing on the LMS, so a
//!   step that outlives the lease length may be claimed again by another process: set the
//!   lease above the request timeout times the retry budget;
//! - listings are paged: a claim asks for as many learners as it wants plus the ones this
//!   process holds (they are listed too), and asks for more only when a full page held too few
//!   claimable ones, so its cost follows the free slots, not the queue's length;
//! - no audit fields: an operator's name and reason go into the `response` text of a forced move;
//! - `bulk_move` and `cleanup` are not one transaction: bulk moves stop at the first refusal
//!   (earlier learners stay moved), and rewinds go to `last_state` as upstream's script does.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use retirement_core::{
    Actor, CoreError, LogEntry, Override, Retirement, RetirementId, StateTable, SyncPlan, Wait,
};
use retirement_store::{
    ClaimRequest, Claimed, Lease, LeaseTable, MoveTarget, NewRetirement, QueueQuery, Result,
    RetirementStore, StateWindow, StoreError,
};

use crate::client::ServiceClients;
use crate::error::HttpError;
use local::{Held, Listing, Local, Writing};

mod fencing;
mod local;
use crate::status_json::StatusJson;

const ACCOUNTS: &str = "api/user/v1/accounts";

/// How many times a claim looks again after other hosts took every candidate it found.
const MAX_CLAIM_ROUNDS: usize = 16;

/// The LMS as the retirement store.
pub struct LmsStore {
    clients: Arc<ServiceClients>,
    lms: String,
    local: Mutex<Local>,
    /// The shared lease table between hosts (`lease_store:`), when there is one.
    leases: Option<Arc<dyn LeaseTable>>,
    /// Every state of the pipeline, for finding a learner by retirement id (the LMS looks
    /// learners up by username only).
    states: Vec<String>,
}

impl std::fmt::Debug for LmsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmsStore").field("lms", &self.lms).finish()
    }
}

impl LmsStore {
    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn unsupported(operation: &'static str) -> StoreError {
    StoreError::Unsupported {
        operation,
        backend: "LMS",
    }
}

/// The LMS's error text: a bare JSON string, `{"message": …}`, or the raw body.
fn message_of(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(v) => v
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_owned()),
        Err(_) => body.to_owned(),
    }
}

impl LmsStore {
    /// A store over the LMS at `base_urls.lms` of `clients`, sharing its token and connections.
    pub fn new(clients: Arc<ServiceClients>) -> Result<LmsStore> {
        let lms = clients
            .base_url("lms")
            .ok_or_else(|| StoreError::InvalidArgument("base_urls.lms is not configured".into()))?
            .trim_end_matches('/')
            .to_owned();
        Ok(LmsStore {
            clients,
            lms,
            local: Mutex::new(Local::default()),
            leases: None,
            states: Vec::new(),
        })
    }

    /// The same store fenced by a lease table shared with every other host driving this LMS
    /// (see the module docs of `fencing`): without one, claims are exact within one process
    /// only.
    pub fn with_leases(self, leases: Arc<dyn LeaseTable>) -> LmsStore {
        LmsStore {
            leases: Some(leases),
            ..self
        }
    }

    /// The same store told the pipeline's states, so a learner found by retirement id alone
    /// (the LMS's account lookup by email names only that) can be listed and read.
    pub fn with_states(self, states: Vec<String>) -> LmsStore {
        LmsStore { states, ..self }
    }

    /// Queues learners through the LMS's `bulk_retire_users` (what MITx Online uses): each by
    /// username, as the LMS's own deactivation does. Returns the usernames queued and those
    /// the LMS refused (unknown, or already queued). Names are sent once each (upstream counts
    /// a name listed twice as failed, defect D8).
    pub async fn bulk_retire(&self, usernames: &[String]) -> Result<(Vec<String>, Vec<String>)> {
        let mut unique: Vec<String> = Vec::with_capacity(usernames.len());
        for name in usernames {
            let name = name.trim();
            if !name.is_empty() && !unique.iter().any(|u| u == name) {
                unique.push(name.to_owned());
            }
        }
        if unique.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                "v1/accounts/bulk_retire_users",
                &[],
                Some(serde_json::json!({ "usernames": unique.join(",") })),
            )
            .await?;
        match status {
            200..=299 => {
                let json: serde_json::Value =
                    serde_json::from_str(&body).map_err(|e| StoreError::Lms {
                        status,
                        message: format!("unreadable bulk retirement answer: {e}"),
                    })?;
                let names = |key: &str| -> Vec<String> {
                    json.get(key)
                        .and_then(|v| v.as_array())
                        .map(|items| {
                            items
                                .iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                Ok((
                    names("successful_user_retirements"),
                    names("failed_user_retirements"),
                ))
            }
            403 => Err(StoreError::Lms {
                status,
                message: "bulk_retire_users needs the retirement worker \
                          (RETIREMENT_SERVICE_WORKER_USERNAME), a superuser, or staff with the \
                          permission user_api.add_userretirementrequest"
                    .into(),
            }),
            404 => Err(StoreError::Lms {
                status,
                message: "bulk_retire_users is off on this LMS: it is served only with \
                          FEATURES['ENABLE_BULK_USER_RETIREMENT']"
                    .into(),
            }),
            _ => Err(StoreError::Lms {
                status,
                message: message_of(&body),
            }),
        }
    }

    /// The staff account lookup (`GET accounts?email=…` or `?lms_user_id=…`): its status,
    /// the answer as JSON, and the account's current username when it names one. A 403 is
    /// the error naming what the worker lacks; any other failure is reported without the
    /// LMS's text, which may echo what was looked up.
    async fn look_up_account(
        &self,
        query: (&str, String),
    ) -> Result<(u16, serde_json::Value, Option<String>)> {
        let (status, body) = self
            .request(reqwest::Method::GET, ACCOUNTS, &[query], None)
            .await?;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let username = match &json {
            serde_json::Value::Array(items) => items.first(),
            other => Some(other),
        }
        .and_then(|a| a.get("username"))
        .and_then(|u| u.as_str())
        .map(str::to_owned);
        match status {
            200..=299 | 400 | 404 => Ok((status, json, username)),
            403 => Err(StoreError::Lms {
                status,
                message: "the staff account lookup needs a staff worker (is_staff on the \
                          retirement service user)"
                    .into(),
            }),
            _ => Err(StoreError::Lms {
                status,
                message: "the staff account lookup failed".into(),
            }),
        }
    }

    /// The username of the active account with `email` (the staff account lookup), or
    /// `None` when no active account has it (unknown, or already being retired: the LMS
    /// replaced its email at the request).
    pub async fn username_for_email(&self, email: &str) -> Result<Option<String>> {
        let (status, _, username) = self.look_up_account(("email", email.to_owned())).await?;
        Ok(username.filter(|_| (200..300).contains(&status)))
    }

    fn remember(&self, list: &[Retirement]) {
        let mut local = self.local();
        for r in list {
            local
                .usernames
                .insert(r.id().0, r.original().username.clone());
        }
    }

    fn username_of(&self, id: RetirementId) -> Result<String> {
        self.local()
            .usernames
            .get(&id.0)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                what: format!(
                    "retirement {id} (the LMS is looked up by username; list or claim it first)"
                ),
            })
    }

    /// One request with the shared token (renewed once on a 401): status and body.
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<(u16, String)> {
        self.clients
            .lms_call(method, path, query, body)
            .await
            .map_err(|e| match e {
                // A transport failure: its own message, as the store reports connections.
                HttpError::Service { message, .. } => StoreError::Connection(message),
                other => StoreError::Connection(other.to_string()),
            })
    }

    fn parse_list(&self, body: &str) -> Result<Vec<Retirement>> {
        let list: Vec<StatusJson> = serde_json::from_str(body).map_err(|e| StoreError::Lms {
            status: 200,
            message: format!("unreadable status list: {e}"),
        })?;
        let list: Vec<Retirement> = list.into_iter().map(StatusJson::into_retirement).collect();
        self.remember(&list);
        Ok(list)
    }

    async fn patch_state(
        &self,
        username: &str,
        new_state: &str,
        response: &str,
        force: bool,
    ) -> Result<()> {
        let mut body = serde_json::json!({
            "username": username,
            "new_state": new_state,
            "response": response,
        });
        if force {
            body["force"] = serde_json::Value::Bool(true);
        }
        let (status, text) = self
            .request(
                reqwest::Method::PATCH,
                &format!("{ACCOUNTS}/update_retirement_status/"),
                &[],
                Some(body),
            )
            .await?;
        match status {
            200..=299 => Ok(()),
            404 => Err(StoreError::NotFound {
                what: "that original username".into(),
            }),
            _ => Err(StoreError::Lms {
                status,
                message: message_of(&text),
            }),
        }
    }

    /// `retirement_queue` as the LMS answers it (an older LMS ignores `limit`).
    async fn list_queue(&self, query: &QueueQuery) -> Result<Vec<Retirement>> {
        let mut params: Vec<(&str, String)> =
            vec![("cool_off_days", query.cool_off_days.to_string())];
        params.extend(query.states.iter().map(|s| ("states", s.clone())));
        if let Some(limit) = query.limit {
            params.push(("limit", limit.to_string()));
        }
        self.list("retirement_queue", &params).await
    }

    /// A GET of a status list endpoint: the statuses, or the LMS's refusal.
    async fn list(&self, endpoint: &str, params: &[(&str, String)]) -> Result<Vec<Retirement>> {
        let (status, body) = self
            .request(
                reqwest::Method::GET,
                &format!("{ACCOUNTS}/{endpoint}/"),
                params,
                None,
            )
            .await?;
        if status != 200 {
            return Err(StoreError::Lms {
                status,
                message: message_of(&body),
            });
        }
        self.parse_list(&body)
    }

    /// Why a move of a held learner was refused: already in `new_state` after this process's
    /// own earlier attempt whose answer was lost (it landed: `Ok`), moved on by someone else (a
    /// lost lease), or the refusal itself.
    async fn explain_refusal(
        &self,
        id: RetirementId,
        username: &str,
        new_state: &str,
        lease: &Lease,
        refusal: StoreError,
    ) -> Result<()> {
        let (seen, unanswered) = {
            let mut local = self.local();
            let seen = local.held.get(&id.0).map(|h| h.state.clone());
            (seen, local.unanswered.remove(&id.0))
        };
        let Ok(now) = self.find_by_username(username).await else {
            return Err(refusal);
        };
        if now.current_state() == new_state && unanswered.as_deref() == Some(new_state) {
            return Ok(());
        }
        if seen.is_some_and(|seen| seen != now.current_state()) {
            // The LMS's forward-only rule is the fence between workers: the learner is no
            // longer where this process left it, so another worker moved it. That is a lost
            // lease, not a failure to record as ERRORED over the other worker's progress.
            self.local().held.remove(&id.0);
            return Err(StoreError::LeaseLost {
                retirement_id: id,
                attempt: lease.attempt,
            });
        }
        Err(refusal)
    }

    fn window_query(window: &StateWindow) -> Vec<(&'static str, String)> {
        vec![
            ("start_date", window.start.format("%Y-%m-%d").to_string()),
            ("end_date", window.end.format("%Y-%m-%d").to_string()),
            ("state", window.state.clone()),
        ]
    }
}

#[async_trait]
impl RetirementStore for LmsStore {
    async fn state_table(&self) -> Result<StateTable> {
        Err(unsupported("reading the state table"))
    }

    async fn sync_states(&self, _desired: &[String], _dry_run: bool) -> Result<SyncPlan> {
        Err(unsupported(
            "states sync (run populate_retirement_states on the LMS)",
        ))
    }

    async fn enqueue(&self, _request: NewRetirement, _now: DateTime<Utc>) -> Result<Retirement> {
        Err(unsupported(
            "enqueue (learners request retirement through the LMS)",
        ))
    }

    async fn was_requested(&self, _retired_usernames: &[String]) -> Result<bool> {
        Err(unsupported("the request ledger"))
    }

    async fn get(&self, id: RetirementId) -> Result<Retirement> {
        let username = match self.username_of(id) {
            Ok(username) => username,
            // Not listed yet: list every state of the pipeline once (an admin lookup).
            Err(e) if !self.states.is_empty() => {
                let query = QueueQuery {
                    states: self.states.clone(),
                    cool_off_days: 0,
                    limit: None,
                };
                self.list_queue(&query).await?;
                self.username_of(id).map_err(|_| e)?
            }
            Err(e) => return Err(e),
        };
        self.find_by_username(&username).await
    }

    async fn find_by_email(&self, original_email: &str) -> Result<Retirement> {
        // The staff account lookup: a retired email answers 404 with the retirement's id
        // (while it can still be cancelled, within the LMS's COOL_OFF_DAYS).
        let (status, json, _) = self
            .look_up_account(("email", original_email.to_owned()))
            .await?;
        match status {
            200..=299 => Err(StoreError::NotFound {
                what: "that email address (the LMS has an active account with it)".into(),
            }),
            404 => match json.get("retirement_id").and_then(|v| v.as_i64()) {
                Some(id) => self.get(RetirementId(id)).await,
                None if json.get("error_msg").is_some() => Err(StoreError::Lms {
                    status,
                    message: "This email is associated to a retired account. The LMS names the \
                              retirement only while it can be cancelled (within its \
                              COOL_OFF_DAYS); look the learner up by username or user id"
                        .into(),
                }),
                None => Err(StoreError::NotFound {
                    what: "that email address".into(),
                }),
            },
            _ => Err(StoreError::NotFound {
                what: "that email address".into(),
            }),
        }
    }

    async fn find_by_user_id(&self, lms_user_id: i64) -> Result<Retirement> {
        let (status, _, username) = self
            .look_up_account(("lms_user_id", lms_user_id.to_string()))
            .await?;
        match username.filter(|_| (200..300).contains(&status)) {
            // The current username: the LMS's status lookup takes the hashed one too.
            Some(username) => self.find_by_username(&username).await,
            None => Err(StoreError::NotFound {
                what: format!("LMS user {lms_user_id}"),
            }),
        }
    }

    async fn find_by_username(&self, original_username: &str) -> Result<Retirement> {
        let segment: String = original_username
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        let (status, body) = self
            .request(
                reqwest::Method::GET,
                &format!("{ACCOUNTS}/{segment}/retirement_status/"),
                &[],
                None,
            )
            .await?;
        match status {
            200 => {
                let status: StatusJson =
                    serde_json::from_str(&body).map_err(|e| StoreError::Lms {
                        status: 200,
                        message: format!("unreadable status: {e}"),
                    })?;
                let r = status.into_retirement();
                self.remember(std::slice::from_ref(&r));
                Ok(r)
            }
            404 => Err(StoreError::NotFound {
                what: "that original username".into(),
            }),
            _ => Err(StoreError::Lms {
                status,
                message: message_of(&body),
            }),
        }
    }

    async fn queue(&self, query: &QueueQuery, _now: DateTime<Utc>) -> Result<Vec<Retirement>> {
        let mut list = self.list_queue(query).await?;
        // Older LMS versions ignore `limit`: truncate here too, as tubular does.
        if let Some(limit) = query.limit {
            list.truncate(limit.max(0) as usize);
        }
        Ok(list)
    }

    async fn by_state_and_date(
        &self,
        window: &StateWindow,
        _now: DateTime<Utc>,
    ) -> Result<Vec<Retirement>> {
        self.list(
            "retirements_by_status_and_date",
            &Self::window_query(window),
        )
        .await
    }

    async fn advance(
        &self,
        id: RetirementId,
        lease: Option<&Lease>,
        new_state: &str,
        response: &str,
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<LogEntry> {
        let username = self.username_of(id)?;
        self.fence(id, lease, new_state, now).await?;
        let written = {
            let _writing = Writing::start(self, id);
            // The answer to this process's last move of the learner to the same state was
            // lost: it may have landed. Look before moving, so the retry is not refused.
            let retry = self.local().unanswered.get(&id.0).map(String::as_str) == Some(new_state);
            match retry {
                true => match self.find_by_username(&username).await {
                    Ok(now) if now.current_state() == new_state => Ok(()),
                    Ok(_) => {
                        self.patch_state(&username, new_state, response, false)
                            .await
                    }
                    Err(e) => Err(e),
                },
                false => {
                    self.patch_state(&username, new_state, response, false)
                        .await
                }
            }
        };
        match &written {
            Ok(()) => {
                self.local().unanswered.remove(&id.0);
            }
            Err(StoreError::Connection(_)) => {
                self.local().unanswered.insert(id.0, new_state.to_owned());
            }
            Err(_) => {}
        }
        match (written, lease) {
            (Ok(()), _) => {}
            (Err(refusal @ StoreError::Lms { status: 400, .. }), Some(lease)) => {
                self.explain_refusal(id, &username, new_state, lease, refusal)
                    .await?;
            }
            (Err(e), _) => return Err(e),
        }
        let ended = retirement_core::END_STATES.contains(&new_state);
        {
            let mut local = self.local();
            if ended {
                // An end state ends the claim: the runner does not release it.
                local.held.remove(&id.0);
            } else if let Some(held) = local.held.get_mut(&id.0) {
                held.state = new_state.to_owned();
            }
        }
        if ended && let Some(lease) = lease {
            // Best effort: a lease left behind only runs out, on a learner nobody claims.
            let _ = self.release_everywhere(lease).await;
        }
        Ok(LogEntry {
            at: now,
            from: None,
            to: new_state.to_owned(),
            actor,
            text: response.to_owned(),
        })
    }

    async fn force(
        &self,
        id: RetirementId,
        to: &str,
        why: &Override,
        _now: DateTime<Utc>,
    ) -> Result<Retirement> {
        if why.operator.trim().is_empty() {
            return Err(CoreError::MissingAuditField { field: "operator" }.into());
        }
        if why.reason.trim().is_empty() {
            return Err(CoreError::MissingAuditField { field: "reason" }.into());
        }
        let username = self.username_of(id)?;
        let text = format!(
            "Forced by operator {} to {to}: {}",
            why.operator, why.reason
        );
        self.revoke(id).await?;
        {
            let _writing = Writing::start(self, id);
            self.patch_state(&username, to, &text, true).await?;
        }
        self.find_by_username(&username).await
    }

    async fn bulk_move(
        &self,
        window: &StateWindow,
        target: &MoveTarget,
        why: &Override,
        now: DateTime<Utc>,
    ) -> Result<Vec<(RetirementId, LogEntry)>> {
        let learners = self.by_state_and_date(window, now).await?;
        let mut moved = Vec::with_capacity(learners.len());
        for learner in learners {
            let to = match target {
                MoveTarget::To(state) => state.clone(),
                MoveTarget::Rewind => learner.last_state().to_owned(),
            };
            let text = format!(
                "Forced by operator {} to {to}: {}",
                why.operator, why.reason
            );
            self.revoke(learner.id()).await?;
            {
                let _writing = Writing::start(self, learner.id());
                self.patch_state(&learner.original().username, &to, &text, true)
                    .await?;
            }
            moved.push((
                learner.id(),
                LogEntry {
                    at: now,
                    from: Some(learner.current_state().to_owned()),
                    to,
                    actor: Actor::Operator(why.operator.clone()),
                    text,
                },
            ));
        }
        Ok(moved)
    }

    async fn cancel(&self, id: RetirementId) -> Result<()> {
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                &format!("{ACCOUNTS}/cancel_retirement/"),
                &[],
                Some(serde_json::json!({ "retirement_id": id.0 })),
            )
            .await?;
        match status {
            200..=299 => Ok(()),
            _ => {
                let message = message_of(&body);
                if message == "Retirement does not exist!" {
                    return Err(StoreError::NotFound {
                        what: format!("retirement {id}"),
                    });
                }
                if message.starts_with("Retirement requests can only be cancelled") {
                    // Upstream's text names the original username: keep only the state.
                    let state = message.rsplit(": ").next().unwrap_or_default().to_owned();
                    return Err(CoreError::NotPending {
                        retirement_id: id,
                        state,
                    }
                    .into());
                }
                if status == 403 {
                    return Err(StoreError::Lms {
                        status,
                        message: "cancel_retirement needs a superuser, or staff with the \
                                  permission user_api.change_userretirementstatus"
                            .into(),
                    });
                }
                Err(StoreError::Lms {
                    status,
                    message: "cancellation refused".into(),
                })
            }
        }
    }

    async fn cleanup(&self, original_usernames: &[String]) -> Result<Vec<Retirement>> {
        if original_usernames.is_empty() {
            return Ok(Vec::new());
        }
        let mut records = Vec::with_capacity(original_usernames.len());
        for username in original_usernames {
            match self.find_by_username(username).await {
                Ok(r) => records.push(r),
                Err(StoreError::NotFound { .. }) => return Err(StoreError::NotAllComplete),
                Err(e) => return Err(e),
            }
        }
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                &format!("{ACCOUNTS}/retirement_cleanup/"),
                &[],
                Some(serde_json::json!({ "usernames": original_usernames })),
            )
            .await?;
        match status {
            200..=299 => Ok(records),
            400 if message_of(&body) == "Not all usernames exist in the COMPLETE state." => {
                Err(StoreError::NotAllComplete)
            }
            _ => Err(StoreError::Lms {
                status,
                message: message_of(&body),
            }),
        }
    }

    async fn claim(&self, request: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Claimed>> {
        if request.limit <= 0 {
            return Ok(Vec::new());
        }
        // With a shared lease table, candidates may go to other hosts (or be finished by them)
        // between the look at the table and the acquisitions. A claim that returns fewer than
        // asked tells the runner the queue is drained, so look again until the claim is full or
        // a listing had nothing another host took: the learners lost are live leases now, left
        // out of the next listing.
        let want = request.limit as usize;
        let mut won: Vec<Claimed> = Vec::new();
        for _ in 0..MAX_CLAIM_ROUNDS {
            let round = ClaimRequest {
                limit: (want - won.len()) as i64,
                ..request.clone()
            };
            let taken = match self.list_claimable(&round, now).await {
                Ok(candidates) if candidates.is_empty() => break,
                Ok(candidates) => self.take_shared(candidates, &round, now).await,
                Err(e) => Err(e),
            };
            match taken {
                Ok((more, lost)) => {
                    won.extend(more);
                    if won.len() >= want || lost == 0 {
                        break;
                    }
                }
                // What this claim already holds is handed out; the error comes back next time.
                Err(_) if !won.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        Ok(won)
    }

    async fn heartbeat(&self, lease: &Lease, until: DateTime<Utc>) -> Result<Lease> {
        if let Err(e) = self.renew_shared(lease, until).await {
            if let StoreError::LeaseLost { .. } = e {
                self.forget_hold(lease.retirement_id, &lease.owner);
            }
            return Err(e);
        }
        if let Some(held) = self.local().held.get_mut(&lease.retirement_id.0)
            && held.owner == lease.owner
        {
            held.expires = until;
        }
        Ok(Lease {
            expires: until,
            ..lease.clone()
        })
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        self.release_everywhere(lease).await
    }

    async fn park(
        &self,
        id: RetirementId,
        lease: Option<&Lease>,
        wait: &Wait,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Wait> {
        let Some(table) = &self.leases else {
            return Err(unsupported(
                "parking a learner on a vendor job or a person without lease_store: (the LMS \
                 has nowhere to keep the wait)",
            ));
        };
        let username = self.username_of(id)?;
        self.fence(id, lease, &wait.working_state, now).await?;
        {
            // A forced move to the same state: the LMS's log (`responses`) gets the note.
            let _writing = Writing::start(self, id);
            self.patch_state(&username, &wait.working_state, note, true)
                .await?;
        }
        // The LMS stamps `modified`; the wait applies only while it stays so.
        let fresh = self.find_by_username(&username).await?;
        let stored = Wait {
            since: fresh.modified(),
            ..wait.clone()
        };
        table.record_wait(id, &stored).await?;
        Ok(stored)
    }

    async fn release_until(
        &self,
        id: RetirementId,
        lease: Option<&Lease>,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if let Some(lease) = lease {
            self.forget_hold(id, &lease.owner);
        }
        let Some(table) = &self.leases else {
            return Ok(());
        };
        match lease {
            Some(lease) => table.release_until(lease, until).await,
            // `retire learner` holds no lease: take one for the moment, then park it.
            None => match table
                .acquire(
                    id,
                    "retire-learner",
                    now + chrono::TimeDelta::minutes(1),
                    now,
                )
                .await?
            {
                Some(acquired) => table.release_until(&acquired.lease, until).await,
                None => Err(StoreError::Leased {
                    retirement_id: id,
                    until: "a worker's lease runs out".into(),
                }),
            },
        }
    }

    async fn wait_of(&self, id: RetirementId) -> Result<Option<Wait>> {
        match &self.leases {
            Some(table) => table.wait_of(id).await,
            None => Ok(None),
        }
    }

    async fn waits(&self) -> Result<Vec<(RetirementId, Wait)>> {
        match &self.leases {
            Some(table) => table.waits().await,
            None => Ok(Vec::new()),
        }
    }
}

impl LmsStore {
    /// One claim's candidates from the queue listing, held in this process (not yet in the
    /// shared lease table).
    async fn list_claimable(
        &self,
        request: &ClaimRequest,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claimed>> {
        let mut states = request.resume_states.clone();
        states.extend(request.working_states.iter().cloned());
        let want = request.limit as usize;
        let expires = now + request.lease_for;
        let elsewhere = self.leased_elsewhere(&request.owner, now).await?;
        // Parked learners (a vendor job not due, a person) are nobody's to claim.
        let parked: std::collections::HashMap<i64, Wait> = self
            .waits()
            .await?
            .into_iter()
            .filter(|(_, w)| w.until().is_none_or(|until| until > now))
            .map(|(id, w)| (id.0, w))
            .collect();
        // The learners this process holds, and those other hosts hold, are listed too: a page
        // holds them plus the wanted.
        let mut page = {
            let local = self.local();
            want + local.held.len() + local.writing.len() + elsewhere.len()
        };
        let mut claimed: Vec<Claimed> = Vec::new();
        loop {
            let listing = Listing::start(self);
            let query = QueueQuery {
                states: states.clone(),
                cool_off_days: request.cool_off_days,
                limit: Some(page as i64),
            };
            let listed = self.list_queue(&query).await?;
            // More than asked for: an older LMS that ignores `limit` sent the whole queue.
            let full = listed.len() == page;
            let fresh: Vec<Claimed> = {
                let mut local = self.local();
                let fresh: Vec<Claimed> = listed
                    .into_iter()
                    // Never a learner written since this listing started (it may show a state the
                    // learner has left), nor one its own owner holds (the LMS lists a learner again
                    // between two stages); another owner's only once that lease ran out.
                    .filter(|r| !local.stale_in(r.id().0, listing.started))
                    .filter(|r| !elsewhere.contains(&r.id().0))
                    .filter(|r| !parked.get(&r.id().0).is_some_and(|w| w.applies_to(r)))
                    .filter(|r| match local.held.get(&r.id().0) {
                        Some(h) => h.owner != request.owner && h.expires <= now,
                        None => true,
                    })
                    .filter_map(|r| {
                        let working = request
                            .working_states
                            .iter()
                            .any(|s| s == r.current_state());
                        // A working learner is someone else's until its lease (emulated by
                        // `modified`) runs out.
                        if working && r.modified() + request.lease_for > now {
                            return None;
                        }
                        Some(Claimed {
                            lease: Lease {
                                retirement_id: r.id(),
                                owner: request.owner.clone(),
                                attempt: r.modified().timestamp_micros(),
                                expires,
                            },
                            resumes_working_state: working,
                            retirement: r,
                        })
                    })
                    .take(want - claimed.len())
                    .collect();
                for c in &fresh {
                    local.held.insert(
                        c.lease.retirement_id.0,
                        Held {
                            owner: request.owner.clone(),
                            expires,
                            state: c.retirement.current_state().to_owned(),
                        },
                    );
                }
                fresh
            };
            drop(listing);
            claimed.extend(fresh);
            if claimed.len() >= want || !full {
                return Ok(claimed);
            }
            // A full page with too few claimable learners (other processes' working learners,
            // or learners written while it travelled): ask for a larger one.
            page = page.saturating_mul(2);
        }
    }
}
