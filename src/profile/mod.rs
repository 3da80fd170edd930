//! Profiles: parse, resolve `extends`, expand variables, merge. Pure: no syscalls beyond
//! reading profile files.

mod builtin;
mod load;
mod merge;
mod model;
mod spec;
mod vars;

use std::path::PathBuf;

pub use builtin::BUILTIN;
pub use load::Loader;
pub use merge::merge;
pub use model::{
    Count, DevMode, Enforcement, Env, Filesystem, Limits, Namespaces, NetMode, Network, Origin,
    Overlay, OverlayMode, Process, ProfileFile, Seccomp, SeccompAction, SeccompMode, Security,
    Sourced,
};
pub use spec::{BindSpec, destination_of};
pub use vars::Vars;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown profile `{name}` (not a built-in; looked in {})", searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        name: String,
        searched: Vec<PathBuf>,
    },
    #[error("cannot read profile {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{col}: {message}")]
    Parse {
        file: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("cyclic `extends`: {chain}")]
    Cycle { chain: String },
    #[error("profile {profile}, key {key}: {message}")]
    Var {
        profile: String,
        key: String,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("cannot determine the working directory: {source}")]
    Cwd { source: std::io::Error },
}

impl ProfileError {
    /// Builds a parse error at `file:line:col` from a byte span in `text`.
    pub(crate) fn parse(
        file: &str,
        text: &str,
        span: Option<std::ops::Range<usize>>,
        message: &str,
    ) -> Self {
        let offset = span.map(|s| s.start).unwrap_or(0).min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rsplit('\n')
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0)
            + 1;
        ProfileError::Parse {
            file: file.to_string(),
            line,
            col,
            message: message.trim().to_string(),
        }
    }
}
