//! Profiles: parse, resolve `extends`, expand variables, merge. Pure: no syscalls beyond
//! reading profile files (and resolving the `..` of a command-line path, `spec`).

mod builtin;
mod limit;
mod load;
mod locate;
mod merge;
mod model;
mod passwd;
mod proc_mode;
mod spec;
mod trust;
mod units;
mod vars;

use std::borrow::Cow;
use std::path::PathBuf;

use crate::text;

pub use builtin::{BUILTIN, Builtin};
pub use limit::{ExplicitKeys, KEYS as LIMIT_KEYS, LimitError, set_limit, split_assignment};
pub use load::{Loader, MAX_EXTENDS_DEPTH, MAX_PROFILES_READ};
pub use locate::{Layer, line_of, line_of_key};
pub use merge::merge;
pub use model::{
    Count, DevMode, Enforcement, Env, Filesystem, Limits, Namespaces, NetMode, Network, Origin,
    Overlay, OverlayMode, Process, ProfileFile, Seccomp, SeccompAction, SeccompMode, Security,
    Sourced,
};
pub use proc_mode::ProcMode;
pub use spec::{BindSpec, absolute_in, destination_of, entry_in, lexical};
pub use trust::Distrust;
pub use units::{Size, Span, UnitError};
pub use vars::Vars;

impl ProfileFile {
    /// The profile with the `[security]` and `[seccomp]` values a run would use where it sets
    /// none (the plan's defaults: `plan::landlock`, `plan::seccomp`), for `sbx profile show`:
    /// an empty table there would read as "nothing", where it means the strict defaults.
    pub fn with_effective_security(mut self) -> ProfileFile {
        let s = &mut self.security;
        let landlock = *s.landlock.get_or_insert(Enforcement::Required);
        s.scope_abstract_sockets.get_or_insert(landlock);
        s.seccomp.get_or_insert(SeccompMode::Default);
        s.nested_userns.get_or_insert(false);
        self.seccomp.action.get_or_insert(SeccompAction::Errno);
        self
    }
}

/// Why profiles could not be loaded. Everything a profile wrote (names, paths, keys, values)
/// is shown escaped: a profile must not put escape sequences or line breaks on the terminal.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown profile `{}` (not a built-in; looked in {})", text::escape(name), searched.iter().map(|p| text::escape_path(p)).collect::<Vec<_>>().join(", "))]
    NotFound {
        name: String,
        searched: Vec<PathBuf>,
    },
    #[error("cannot read profile {}: {source}", text::escape_path(path))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "refusing profile {}: {} {why} ({}): a profile decides what the sandbox may do, so sbx \
         reads one only if it and the directories above it are owned by you or root and \
         writable by no one else",
        text::escape_path(path),
        culprit(path, why),
        why.fix()
    )]
    Untrusted { path: PathBuf, why: Distrust },
    #[error("{}:{line}:{col}: {}", text::escape(file), shown(message))]
    Parse {
        file: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("cyclic `extends`: {}", text::escape(chain))]
    Cycle { chain: String },
    #[error(
        "profile {}: `extends` nests more than {depth} profiles deep, or reads more than {files} \
         profile files; flatten the chain",
        text::escape(profile)
    )]
    TooDeep {
        profile: String,
        depth: usize,
        files: usize,
    },
    #[error(
        "profile {}, key {}: {}",
        text::escape(profile),
        text::escape(key),
        shown(message)
    )]
    Var {
        profile: String,
        key: String,
        message: String,
    },
    #[error("profile {}, key {key}: {}", text::escape(profile), shown(message))]
    Limit {
        profile: String,
        key: &'static str,
        message: String,
    },
    #[error("cannot determine the working directory: {source}")]
    Cwd { source: std::io::Error },
}

/// The file or directory at fault, named relative to the profile the user gave.
fn culprit(profile: &std::path::Path, why: &Distrust) -> String {
    let at = why.path();
    if profile.canonicalize().is_ok_and(|p| p == at) {
        "the file".into()
    } else {
        text::escape_path(at)
    }
}

/// A message that quotes a profile's text, for the terminal: as written when it holds nothing
/// a terminal acts on (so that a `\\` it quotes stays one), else escaped whole.
pub(crate) fn shown(message: &str) -> Cow<'_, str> {
    let bare = message.replace('\\', "");
    if text::escape(&bare) == bare {
        Cow::Borrowed(message)
    } else {
        Cow::Owned(text::escape(message))
    }
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
