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
    #[error(
        "{origin}: the working directory {} {}; binding it as the workspace would let the \
         command {} {}. Run sbx from a project directory, or bind it on purpose: `--bind {0}` \
         (writable) or `--ro-bind {0}` (read-only)",
        escape(.dir),
        .risk.what(),
        if *.writable { "read and change" } else { "read" },
        .risk.exposed(),
    )]
    Workspace {
        origin: Origin,
        dir: String,
        risk: WorkspaceRisk,
        writable: bool,
    },
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

/// Why the working directory is not bound as the workspace by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkspaceRisk {
    /// It is `$HOME`.
    Home,
    /// It holds `$HOME` (this path).
    AboveHome(String),
    /// It is the host's shared `/tmp` or `/var/tmp`.
    SharedTmp,
}

impl WorkspaceRisk {
    fn what(&self) -> String {
        match self {
            WorkspaceRisk::Home => "is your home directory".into(),
            WorkspaceRisk::AboveHome(home) => {
                format!("holds your home directory {}", escape(home))
            }
            WorkspaceRisk::SharedTmp => "is the host's shared temporary directory".into(),
        }
    }

    fn exposed(&self) -> &'static str {
        match self {
            WorkspaceRisk::Home | WorkspaceRisk::AboveHome(_) => {
                "everything in your home (~/.bashrc, ~/.ssh, shell history, browser profiles)"
            }
            WorkspaceRisk::SharedTmp => {
                "every file other programs keep there, in place of the sandbox's private one"
            }
        }
    }
}
