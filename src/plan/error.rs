//! Why a plan cannot be built: each error names the profile and key it comes from. The paths
//! and values it quotes come from profiles (and, resolved, from the host's file system): they
//! are shown escaped, so that none can move the cursor or forge a line of sbx's output.

use crate::profile::Origin;
use crate::text::escape;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "{origin}: bind source {} does not exist (append `?` to make it optional)",
        escape(.path)
    )]
    MissingSource { origin: Origin, path: String },
    #[error("{origin}: {}", escape(.message))]
    Invalid { origin: Origin, message: String },
    #[error("no command given")]
    NoCommand,
    #[error("{}", escape(.0))]
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
