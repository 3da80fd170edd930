//! Profiles: parse, resolve `extends`, expand variables, merge. Pure: no syscalls beyond
//! reading profile files.

mod builtin;
mod limit;
mod load;
mod merge;
mod model;
mod spec;
mod units;
mod vars;

use std::path::PathBuf;

pub use builtin::BUILTIN;
pub use limit::{LimitError, set_limit, split_assignment};
pub use load::Loader;
pub use merge::merge;
pub use model::{
    Count, DevMode, Enforcement, Env, Filesystem, Limits, Namespaces, NetMode, Network, Origin,
    Overlay, OverlayMode, Process, ProfileFile, Seccomp, SeccompAction, SeccompMode, Security,
    Sourced,
};
pub use spec::{BindSpec, destination_of, lexical};
pub use units::{Size, Span, UnitError};
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
    #[error("profile {profile}, key {key}: {message}")]
    Limit {
        profile: String,
        key: &'static str,
        message: String,
    },
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
        let message = message.trim();
        let message = match key_at(text, offset) {
            Some(key) if !message.contains(&key) => format!("{key}: {message}"),
            _ => message.to_string(),
        };
        ProfileError::Parse {
            file: file.to_string(),
            line,
            col,
            message,
        }
    }
}

/// The dotted key (`limits.memory`) of the `key = value` line at `offset`, under the nearest
/// `[table]` header above it, so that a message about a value names its key.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim();
    let bare = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    if !bare(key) {
        return None;
    }
    let table = text[..start].lines().rev().find_map(|l| {
        let l = l.trim();
        let inner = l.strip_prefix('[')?.strip_suffix(']')?;
        Some(inner.trim_matches(['[', ']']).trim().to_string())
    });
    Some(match table {
        Some(t) if bare(&t) => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}
