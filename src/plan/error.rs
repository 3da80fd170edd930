//! Why a plan cannot be built: each error names the profile and key it comes from.

use crate::profile::Origin;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{origin}: bind source {path} does not exist (append `?` to make it optional)")]
    MissingSource { origin: Origin, path: String },
    #[error("{origin}: {message}")]
    Invalid { origin: Origin, message: String },
    #[error("no command given")]
    NoCommand,
    #[error("{0}")]
    Other(String),
}

impl PlanError {
    pub(crate) fn invalid(origin: &Origin, message: impl Into<String>) -> PlanError {
        PlanError::Invalid {
            origin: origin.clone(),
            message: message.into(),
        }
    }

    /// An error about `key` of the merged profile (when no single file can be blamed).
    pub(crate) fn merged(key: &'static str, message: impl Into<String>) -> PlanError {
        PlanError::invalid(&merged(key), message)
    }
}

/// The origin of a value of the merged profile.
pub(crate) fn merged(key: &'static str) -> Origin {
    Origin {
        profile: "the merged profile".into(),
        key,
    }
}
