//! Retired identifiers, compatible with Open edX's `user-util`:
//! `PREFIX + sha1_hex(salt + lowercase(value))`, plus `@DOMAIN` for emails.
//!
//! New retirements use the newest salt; "was this ever retired" checks try every historical
//! salt, oldest first.

use std::fmt;

use crate::error::CoreError;

/// Upstream's default `RETIRED_USERNAME_PREFIX` and `RETIRED_EMAIL_PREFIX`.
pub const DEFAULT_RETIRED_PREFIX: &str = "retired__user_";
/// Upstream's default `RETIRED_EMAIL_DOMAIN`.
pub const DEFAULT_RETIRED_EMAIL_DOMAIN: &str = "retired.invalid";

/// How retired identifiers are made: prefixes, email domain and the salts (oldest first).
///
/// The salts are secret (with them anyone can test a guessed username against a retired one),
/// so `Debug` prints only how many there are.
#[derive(Clone, PartialEq, Eq)]
pub struct RetiredIdConfig {
    username_prefix: String,
    email_prefix: String,
    email_domain: String,
    salts: Vec<String>,
}

impl fmt::Debug for RetiredIdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetiredIdConfig")
            .field("username_prefix", &self.username_prefix)
            .field("email_prefix", &self.email_prefix)
            .field("email_domain", &self.email_domain)
            .field("salts", &format_args!("<{} redacted>", self.salts.len()))
            .finish()
    }
}

impl RetiredIdConfig {
    /// Upstream's default prefixes and domain with the given salts, oldest first. At least one
    /// salt is required.
    ///
    /// ```
    /// use retirement_core::RetiredIdConfig;
    ///
    /// // The LMS's RETIRED_USER_SALTS, oldest first; the newest hashes new requests.
    /// let ids = RetiredIdConfig::new(vec!["old-salt".into(), "new-salt".into()])?;
    /// let retired = ids.retired_username("grace");
    /// assert!(retired.starts_with("retired__user_"));
    /// assert!(!retired.contains("grace"));
    /// // Earlier salts' hashes are known too, to find a learner retired before a rotation.
    /// assert_eq!(ids.all_retired_usernames("grace").len(), 2);
    /// assert!(ids.retired_email("grace@example.org").ends_with("@retired.invalid"));
    /// assert!(RetiredIdConfig::new(Vec::new()).is_err());
    /// # Ok::<(), retirement_core::CoreError>(())
    /// ```
    pub fn new(salts: Vec<String>) -> Result<RetiredIdConfig, CoreError> {
        RetiredIdConfig::with_format(
            DEFAULT_RETIRED_PREFIX,
            DEFAULT_RETIRED_PREFIX,
            DEFAULT_RETIRED_EMAIL_DOMAIN,
            salts,
        )
    }

    /// Custom prefixes and domain (upstream's `RETIRED_USERNAME_PREFIX`, `RETIRED_EMAIL_PREFIX`,
    /// `RETIRED_EMAIL_DOMAIN`).
    pub fn with_format(
        username_prefix: &str,
        email_prefix: &str,
        email_domain: &str,
        salts: Vec<String>,
    ) -> Result<RetiredIdConfig, CoreError> {
        if salts.is_empty() {
            return Err(CoreError::NoSalts);
        }
        Ok(RetiredIdConfig {
            username_prefix: username_prefix.to_owned(),
            email_prefix: email_prefix.to_owned(),
            email_domain: email_domain.to_owned(),
            salts,
        })
    }

    fn newest_salt(&self) -> &str {
        // `new`/`with_format` refuse an empty list, so there is always a last salt.
        self.salts.last().map(String::as_str).unwrap_or_default()
    }

    /// The retired username for a new retirement (newest salt).
    pub fn retired_username(&self, username: &str) -> String {
        format!(
            "{}{}",
            self.username_prefix,
            hash(self.newest_salt(), username)
        )
    }

    /// The retired email for a new retirement (newest salt).
    pub fn retired_email(&self, email: &str) -> String {
        self.email_for(self.newest_salt(), email)
    }

    /// Every retired username `username` may have had, one per salt, oldest salt first.
    pub fn all_retired_usernames(&self, username: &str) -> Vec<String> {
        self.salts
            .iter()
            .map(|salt| format!("{}{}", self.username_prefix, hash(salt, username)))
            .collect()
    }

    /// Every retired email `email` may have had, one per salt, oldest salt first.
    pub fn all_retired_emails(&self, email: &str) -> Vec<String> {
        self.salts
            .iter()
            .map(|salt| self.email_for(salt, email))
            .collect()
    }

    fn email_for(&self, salt: &str, email: &str) -> String {
        format!(
            "{}{}@{}",
            self.email_prefix,
            hash(salt, email),
            self.email_domain
        )
    }
}

/// Lower-case hex SHA-1 of the salt's bytes followed by the lower-cased value's UTF-8 bytes,
/// as `user_util._compute_retired_hash` computes it.
pub fn hash(salt: &str, value: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(salt.as_bytes());
    sha.update(value.to_lowercase().as_bytes());
    sha.digest().to_string()
}
