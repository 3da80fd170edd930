//! Why a plan cannot be built: each error names the profile and key it comes from. The paths
//! and values it quotes come from profiles (and, resolved, from the host's file system): they
//! are shown escaped, so that none can move the cursor or forge a line of sbx's output.

use crate::profile::Origin;
use crate::text::escape;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{origin}: {}", missing(.what, .path, .fixed.as_deref(), .origin))]
    MissingSource {
        origin: Origin,
        /// `bind source` or `overlay source`.
        what: &'static str,
        path: String,
        /// The entry as it would be written optional, where it can be.
        fixed: Option<String>,
    },
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

/// The message of a missing source, with the exact entry that would skip it. A `?` ending the
/// source of a `SRC:DST?` entry is part of the path (a file name may end in `?`): the user
/// who put it there meant the entry to be optional, so the message says where it goes.
fn missing(what: &str, path: &str, fixed: Option<&str>, origin: &Origin) -> String {
    let shown = |entry: &str| match origin.key.starts_with("--") {
        true => format!("`{} {}`", origin.key, escape(entry)),
        false => format!("`\"{}\"`", escape(entry)),
    };
    match fixed {
        Some(f) if path.ends_with('?') => format!(
            "{what} {} does not exist; `?` makes an entry optional only at its very end: {}",
            escape(path),
            shown(f)
        ),
        Some(f) => format!(
            "{what} {} does not exist (to skip it when missing, end the entry with `?`: {})",
            escape(path),
            shown(f)
        ),
        None => format!("{what} {} does not exist", escape(path)),
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
