//! Who may use the console: operators signed in with a password from the config (an argon2id
//! hash) or through the LMS's own OAuth2 provider (authorization-code flow, staff only), each
//! holding a session cookie and a CSRF token that every action must carry back.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};

use crate::connectors::Secret;
use crate::error::HttpError;

/// How long a session lasts without use.
pub const SESSION_IDLE: TimeDelta = TimeDelta::hours(8);

/// How long a sign-in through the LMS may take.
const SIGN_IN_WINDOW: TimeDelta = TimeDelta::minutes(10);

/// The session cookie's name (`__Host-` prefixed when the cookie is secure).
pub const SESSION_COOKIE: &str = "retire_session";

/// 32 random bytes from the OS, URL-safe.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An argon2id PHC string for `password` (`retire console hash-password`, the demo).
pub fn hash_password(password: &str) -> Result<String, HttpError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HttpError::InvalidService(format!("hashing the password: {e}")))
}

/// An operator who signs in with a password.
#[derive(Clone)]
pub struct Operator {
    /// The name audited actions carry.
    pub name: String,
    /// The argon2 PHC string of the password.
    pub password_hash: String,
}

impl fmt::Debug for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operator")
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// Sign-in through the LMS's OAuth2 provider (an application of type "confidential",
/// authorization-code grant, whose redirect URI is `<public_url>/login/lms/callback`).
#[derive(Debug, Clone)]
pub struct LmsSignIn {
    /// The LMS's root URL, as the browser reaches it.
    pub lms_url: String,
    /// The LMS's root URL as this server reaches it (usually the same).
    pub token_url_base: String,
    /// The OAuth2 application's client id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
}

/// Who may sign in and how the cookies are set.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// Password operators.
    pub operators: Vec<Operator>,
    /// LMS sign-in, if set up.
    pub lms: Option<LmsSignIn>,
    /// The console's own URL as browsers reach it (the LMS redirects back to it).
    pub public_url: String,
    /// Mark cookies `Secure` (and `__Host-`): on unless the console is plain HTTP on
    /// loopback.
    pub secure_cookies: bool,
}

/// A signed-in operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The operator's name (LMS sign-in: their LMS username).
    pub operator: String,
    /// How they signed in: `password` or `lms`.
    pub via: &'static str,
    /// The token every form and API write must carry.
    pub csrf: String,
    expires: DateTime<Utc>,
}

/// Sessions and pending LMS sign-ins, in memory (a restart signs everyone out).
pub struct Access {
    /// The configuration.
    pub config: AccessConfig,
    sessions: Mutex<HashMap<String, Session>>,
    sign_ins: Mutex<HashMap<String, DateTime<Utc>>>,
    http: reqwest::Client,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why a sign-in failed (shown on the sign-in page; never which half was wrong).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInError {
    /// Unknown operator or wrong password.
    BadCredentials,
    /// The LMS user is not staff.
    NotStaff,
    /// The LMS flow failed (state mismatch, token refused).
    Lms(String),
}

impl fmt::Display for SignInError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignInError::BadCredentials => f.write_str("Unknown operator or wrong password."),
            SignInError::NotStaff => {
                f.write_str("The LMS says this account is not staff: the console is for staff.")
            }
            SignInError::Lms(why) => write!(f, "Signing in through the LMS failed: {why}"),
        }
    }
}

impl Access {
    /// Access with no sessions yet.
    pub fn new(config: AccessConfig) -> Result<Access, HttpError> {
        for op in &config.operators {
            PasswordHash::new(&op.password_hash).map_err(|e| {
                HttpError::InvalidService(format!(
                    "console.operators: the password hash of {} is not a PHC string ({e}); make \
                     one with `retire console hash-password`",
                    op.name
                ))
            })?;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| HttpError::Client(e.to_string()))?;
        Ok(Access {
            config,
            sessions: Mutex::new(HashMap::new()),
            sign_ins: Mutex::new(HashMap::new()),
            http,
        })
    }

    /// The cookie name, `__Host-` prefixed when secure.
    pub fn cookie_name(&self) -> String {
        if self.config.secure_cookies {
            format!("__Host-{SESSION_COOKIE}")
        } else {
            SESSION_COOKIE.to_owned()
        }
    }

    /// The `Set-Cookie` value for a session id.
    pub fn set_cookie(&self, id: &str) -> String {
        format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.cookie_name(),
            SESSION_IDLE.num_seconds(),
            if self.config.secure_cookies {
                "; Secure"
            } else {
                ""
            }
        )
    }

    /// The `Set-Cookie` value that ends the session cookie.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            self.cookie_name(),
            if self.config.secure_cookies {
                "; Secure"
            } else {
                ""
            }
        )
    }

    fn start(&self, operator: String, via: &'static str, now: DateTime<Utc>) -> (String, Session) {
        let id = random_token();
        let session = Session {
            operator,
            via,
            csrf: random_token(),
            expires: now + SESSION_IDLE,
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session of a cookie value, refreshed.
    pub fn session(&self, id: &str, now: DateTime<Utc>) -> Option<Session> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let session = sessions.get_mut(id)?;
        if session.expires <= now {
            sessions.remove(id);
            return None;
        }
        session.expires = now + SESSION_IDLE;
        Some(session.clone())
    }

    /// Ends a session.
    pub fn sign_out(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Signs an operator in with a password. Every attempt costs one argon2 verification,
    /// for unknown names too, so timing does not tell which names exist.
    pub fn sign_in_password(
        &self,
        name: &str,
        password: &str,
        now: DateTime<Utc>,
    ) -> Result<(String, Session), SignInError> {
        // A fixed hash of a random password: verified against when the name is unknown.
        const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Q6d1YIy1dOjgKqaxEXPkM6C1zTkM5YqkKD2PQ8l0Ti4";
        let operator = self.config.operators.iter().find(|o| o.name == name);
        let hash = operator.map_or(DECOY, |o| o.password_hash.as_str());
        let ok = PasswordHash::new(hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        match operator {
            Some(op) if ok => Ok(self.start(op.name.clone(), "password", now)),
            _ => Err(SignInError::BadCredentials),
        }
    }

    /// Where to send the browser to sign in through the LMS, and the `state` that must come
    /// back.
    pub fn lms_authorize_url(&self, now: DateTime<Utc>) -> Option<(String, String)> {
        let lms = self.config.lms.as_ref()?;
        let state = random_token();
        {
            let mut pending = self.sign_ins.lock().unwrap_or_else(|p| p.into_inner());
            pending.retain(|_, started| now - *started < SIGN_IN_WINDOW);
            pending.insert(state.clone(), now);
        }
        let mut url = reqwest::Url::parse(&format!(
            "{}/oauth2/authorize",
            lms.lms_url.trim_end_matches('/')
        ))
        .ok()?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &lms.client_id)
            .append_pair("redirect_uri", &self.redirect_uri())
            .append_pair("scope", "profile email")
            .append_pair("state", &state);
        Some((url.to_string(), state))
    }

    fn redirect_uri(&self) -> String {
        format!(
            "{}/login/lms/callback",
            self.config.public_url.trim_end_matches('/')
        )
    }

    /// Finishes an LMS sign-in: checks `state`, trades `code` for a JWT at the LMS's token
    /// endpoint (server to server, with the client secret), and starts a session for its
    /// user if the LMS says they are staff (the JWT's `administrator` claim, which the LMS
    /// sets from `is_staff`). The JWT came straight from the LMS over this connection, so its
    /// claims are read without checking its signature (OpenID Connect Core 3.1.3.7).
    pub async fn sign_in_lms(
        &self,
        code: &str,
        state: &str,
        cookie_state: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(String, Session), SignInError> {
        let lms = self
            .config
            .lms
            .as_ref()
            .ok_or_else(|| SignInError::Lms("LMS sign-in is not set up".into()))?;
        let started = self
            .sign_ins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(state);
        if started.is_none_or(|at| now - at >= SIGN_IN_WINDOW) || cookie_state != Some(state) {
            return Err(SignInError::Lms(
                "the sign-in expired or did not start here; try again".into(),
            ));
        }
        let response = self
            .http
            .post(format!(
                "{}/oauth2/access_token",
                lms.token_url_base.trim_end_matches('/')
            ))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.redirect_uri()),
                ("client_id", &lms.client_id),
                ("client_secret", lms.client_secret.expose()),
                ("token_type", "jwt"),
            ])
            .send()
            .await
            .map_err(|e| SignInError::Lms(format!("the token endpoint failed: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(SignInError::Lms(format!(
                "the LMS's token endpoint answered {status}"
            )));
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|_| SignInError::Lms("the token endpoint's answer is not JSON".into()))?;
        let claims = body
            .get("access_token")
            .and_then(|t| t.as_str())
            .and_then(jwt_claims)
            .ok_or_else(|| SignInError::Lms("the token is not a JWT".into()))?;
        let username = claims
            .get("preferred_username")
            .and_then(|u| u.as_str())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| SignInError::Lms("the token names no user".into()))?;
        if claims.get("administrator").and_then(|a| a.as_bool()) != Some(true) {
            return Err(SignInError::NotStaff);
        }
        Ok(self.start(username.to_owned(), "lms", now))
    }
}

/// The claims of a JWT (its middle part), unverified.
fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}
