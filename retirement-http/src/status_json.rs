//! The LMS's status JSON (`UserRetirementStatusSerializer`), both ways.

use chrono::{DateTime, Utc};
#[cfg(feature = "fake")]
use retirement_core::StateTable;
use retirement_core::{OriginalIdentity, Retirement, RetirementId, RetirementParts};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StateJson {
    #[serde(default)]
    pub(crate) id: i64,
    pub(crate) state_name: String,
    #[serde(default)]
    pub(crate) state_execution_order: i32,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ProfileJson {
    #[serde(default)]
    pub(crate) name: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct UserJson {
    pub(crate) id: Option<i64>,
    #[serde(default)]
    pub(crate) username: String,
    #[serde(default)]
    pub(crate) email: String,
    #[serde(default)]
    pub(crate) profile: Option<ProfileJson>,
}

/// One status as the LMS serialises it (`responses` excluded).
#[derive(Serialize, Deserialize)]
pub(crate) struct StatusJson {
    pub(crate) id: i64,
    pub(crate) user: UserJson,
    pub(crate) current_state: StateJson,
    pub(crate) last_state: StateJson,
    pub(crate) created: DateTime<Utc>,
    pub(crate) modified: DateTime<Utc>,
    pub(crate) original_username: String,
    pub(crate) original_email: String,
    #[serde(default)]
    pub(crate) original_name: String,
    pub(crate) retired_username: String,
    pub(crate) retired_email: String,
}

#[cfg(feature = "fake")]
fn state_json(table: &StateTable, name: &str) -> StateJson {
    let order = table
        .get(name)
        .map(|s| s.execution_order)
        .unwrap_or_default();
    StateJson {
        id: table
            .position(name)
            .map(|p| p as i64 + 1)
            .unwrap_or_default(),
        state_name: name.to_owned(),
        state_execution_order: order,
    }
}

impl StatusJson {
    #[cfg(feature = "fake")]
    pub(crate) fn from_retirement(r: &Retirement, table: &StateTable) -> StatusJson {
        let parts = r.parts();
        StatusJson {
            id: parts.id.0,
            user: UserJson {
                id: parts.lms_user_id,
                username: parts.original.username.clone(),
                email: parts.retired_email.clone(),
                profile: Some(ProfileJson {
                    name: String::new(),
                }),
            },
            current_state: state_json(table, &parts.current_state),
            last_state: state_json(table, &parts.last_state),
            created: parts.created,
            modified: parts.modified,
            original_username: parts.original.username.clone(),
            original_email: parts.original.email.clone(),
            original_name: parts.original.name.clone(),
            retired_username: parts.retired_username.clone(),
            retired_email: parts.retired_email.clone(),
        }
    }

    pub(crate) fn into_retirement(self) -> Retirement {
        Retirement::from_parts(RetirementParts {
            id: RetirementId(self.id),
            lms_user_id: self.user.id,
            original: OriginalIdentity {
                username: self.original_username,
                email: self.original_email,
                name: self.original_name,
            },
            retired_username: self.retired_username,
            retired_email: self.retired_email,
            current_state: self.current_state.state_name,
            last_state: self.last_state.state_name,
            created: self.created,
            modified: self.modified,
            log: Vec::new(),
        })
    }
}

/// The JSON the fake and the LMS send for a list of statuses.
#[cfg(feature = "fake")]
pub(crate) fn status_list(list: &[Retirement], table: &StateTable) -> serde_json::Value {
    serde_json::to_value(
        list.iter()
            .map(|r| StatusJson::from_retirement(r, table))
            .collect::<Vec<_>>(),
    )
    .unwrap_or(serde_json::Value::Null)
}
