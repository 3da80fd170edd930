//! `sbx why`: whether a sandbox would let its command see, read, write or execute a path, or
//! reach a destination (`why_net`), what decides it, and the one line that would change it.
//!
//! Answers come from the plan alone, the same plan a run replays: its mount ops (the deepest
//! mount holding the path decides; a later mount at the same place covers an earlier one),
//! the protected and hidden paths, and the landlock rules. So an answer cannot drift from what
//! a run does, and a refusal observed at run time can be explained with the same functions.
//! Nothing here reads the profile: `Verdict::decided_by` names the profile and key, and the
//! caller finds the line (`profile::line_of`) when it prints one.

use std::path::{Path, PathBuf};

use landlock::AccessFs;

use crate::plan::{MountAttrs, Op, OpInfo, Plan};
use crate::profile::{Origin, lexical};

pub use super::why_net::judge_destination;

/// What is asked of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Whether the host's file shows there at all.
    See,
    Read,
    Write,
    Exec,
}

impl Access {
    /// The answer in a word: `readable`, `not writable`...
    pub fn word(self, allowed: bool) -> String {
        let w = match self {
            Access::See => "visible",
            Access::Read => "readable",
            Access::Write => "writable",
            Access::Exec => "executable",
        };
        match allowed {
            true => w.to_string(),
            false => format!("not {w}"),
        }
    }
}

/// What decided, in a form the profile's text can be searched for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// Nothing a profile wrote: sbx's own layout.
    Layout,
    /// A mount: where it is in the sandbox, and what of the host it shows.
    Mount {
        sandbox: String,
        host: Option<String>,
    },
    /// An entry written exactly so (after variable expansion): a hidden or protected path, an
    /// allowlist entry.
    Entry(String),
    /// The key itself (`network.mode`).
    Key,
}

impl Subject {
    /// Whether `entry`, a value of the deciding key after variable expansion, is the one that
    /// decided.
    pub fn is(&self, entry: &str) -> bool {
        match self {
            Subject::Layout => false,
            Subject::Key => true,
            Subject::Entry(e) => e == entry,
            Subject::Mount { sandbox, host } => {
                let spec = crate::profile::BindSpec::parse(entry);
                let src = lexical(spec.src);
                lexical(spec.dst) == *sandbox
                    || host.as_deref().is_some_and(|h| {
                        src == h || std::fs::canonicalize(&src).is_ok_and(|c| c == Path::new(h))
                    })
            }
        }
    }
}

/// The answer to one question.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub allowed: bool,
    /// Why, in one line (raw: profile values and paths are escaped when printed).
    pub reason: String,
    /// The profile and key that decide. A profile of "the merged profile" means the plan
    /// knows the key but not which layer set it (network keys): the caller looks it up.
    pub decided_by: Option<Origin>,
    /// Which entry of that key decided.
    pub subject: Subject,
    /// The one line to add to change the answer, if one can.
    pub fix: Option<String>,
}

/// A mount of the plan: its op, what it is, and where it is.
struct Mount<'a> {
    op: &'a Op,
    info: &'a OpInfo,
    /// A later `Seal` made it read-only (/dev).
    sealed: bool,
}

impl Mount<'_> {
    fn attrs(&self) -> MountAttrs {
        let mut a = match self.op {
            Op::Bind { attrs, .. }
            | Op::Tmpfs { attrs, .. }
            | Op::Proc { attrs, .. }
            | Op::Devpts { attrs, .. }
            | Op::Overlay { attrs, .. } => *attrs,
            _ => MountAttrs::NOSUID | MountAttrs::NODEV,
        };
        a.set(
            MountAttrs::RDONLY,
            a.contains(MountAttrs::RDONLY) || self.sealed,
        );
        a
    }

    fn key(&self) -> Option<&'static str> {
        self.info.origin.as_ref().map(|o| o.key)
    }
}

fn is_within(path: &str, dir: &str) -> bool {
    dir == "/" || path == dir || path.starts_with(&format!("{dir}/"))
}

/// The mount that holds `path` when the command starts: the deepest, and of those at one
/// place the last.
fn covering<'a>(plan: &'a Plan, path: &str) -> Option<Mount<'a>> {
    let is_mount = |op: &Op, info: &OpInfo| {
        matches!(
            op,
            Op::Bind { .. }
                | Op::StoreBind { .. }
                | Op::Proc { .. }
                | Op::Devpts { .. }
                | Op::Overlay { .. }
                | Op::Tmpfs { .. }
        ) && info.what != "scratch tmpfs store"
    };
    let (op, info) = plan
        .ops
        .iter()
        .zip(&plan.op_info)
        .filter(|(op, info)| is_mount(op, info) && is_within(path, &info.sandbox_path))
        .max_by_key(|(_, info)| info.sandbox_path.len())?;
    let sealed = plan
        .ops
        .iter()
        .zip(&plan.op_info)
        .any(|(op, i)| matches!(op, Op::Seal { .. }) && i.sandbox_path == info.sandbox_path);
    Some(Mount { op, info, sealed })
}

/// `path` with the symlinks sbx makes (`/bin -> usr/bin`) followed, as the kernel would.
fn follow_links(plan: &Plan, path: &str) -> String {
    let mut path = path.to_string();
    for _ in 0..40 {
        let link = plan
            .ops
            .iter()
            .zip(&plan.op_info)
            .find_map(|(op, info)| match op {
                Op::Symlink { target, .. } if is_within(&path, &info.sandbox_path) => Some((
                    info.sandbox_path.clone(),
                    target.to_string_lossy().into_owned(),
                )),
                _ => None,
            });
        let Some((at, target)) = link else { break };
        let rest = &path[at.len()..];
        let base = match target.starts_with('/') {
            true => target,
            false => {
                let dir = Path::new(&at).parent().unwrap_or(Path::new("/"));
                dir.join(target).to_string_lossy().into_owned()
            }
        };
        path = lexical(&format!("{base}{rest}"));
    }
    path
}

/// The rights landlock leaves at `path`: those of every rule above it, accumulated. None when
/// the plan applies no landlock.
fn landlock_rights(plan: &Plan, path: &str) -> Option<landlock::BitFlags<AccessFs>> {
    let l = plan.landlock.as_ref()?;
    Some(
        l.rules
            .iter()
            .filter(|(p, _)| is_within(path, &p.to_string_lossy()))
            .fold(landlock::BitFlags::empty(), |acc, (_, a)| acc | *a),
    )
}

/// The entry that would show `host` at `inside` with this access: `SRC` or `SRC:DST`.
fn entry(host: &str, inside: &str) -> String {
    match host == inside {
        true => host.to_string(),
        false => format!("{host}:{inside}"),
    }
}

/// The line that binds `host` at `inside`, writable or not.
pub(super) fn bind_fix(host: &str, inside: &str, writable: bool) -> String {
    let e = entry(host, inside);
    let (key, flag) = match writable {
        true => ("rw", "--bind"),
        false => ("ro", "--ro-bind"),
    };
    format!("add to [filesystem] {key} in your profile: {key} = [\"{e}\"], or run with {flag} {e}")
}

/// The host path a sandbox path under the mount `m` shows, if it shows one.
fn host_of(m: &Mount, path: &str) -> Option<PathBuf> {
    let host = m.info.host_path.as_ref()?;
    let rest = path[m.info.sandbox_path.len()..].trim_start_matches('/');
    Some(match rest.is_empty() {
        true => PathBuf::from(host),
        false => Path::new(host).join(rest),
    })
}

/// Whether `path`, an absolute path inside the sandbox, would be visible, readable, writable
/// or executable (`access`) for the command when it starts, and why. Needs only the plan:
/// the host is read only to say whether a file a bind shows exists.
pub fn judge_path(plan: &Plan, inside_path: &Path, access: Access) -> Verdict {
    let asked = lexical(&inside_path.to_string_lossy());
    let path = follow_links(plan, &asked);
    let via = match path == asked {
        true => String::new(),
        false => format!(" (it is {path} through sbx's symlink)"),
    };
    let Some(m) = covering(plan, &path) else {
        return in_own_root(plan, &path, access, &via);
    };
    let mut v = match (m.op, m.key()) {
        (_, Some("filesystem.hide")) | (_, Some("--hide")) => hidden(plan, &m, &path),
        (Op::StoreBind { .. }, _) => tmpfs(&m, &path, access),
        (Op::Overlay { .. }, _) => overlay(&m, &path, access),
        (Op::Bind { .. }, _) => bind(plan, &m, &path, access),
        _ => special(&m, &path, access),
    };
    if v.allowed
        && let Some(denied) = landlock_denies(plan, &path, access)
    {
        v.allowed = false;
        v.reason = denied;
    }
    v.reason.push_str(&via);
    v
}

/// What landlock refuses that the mounts allow, in words.
fn landlock_denies(plan: &Plan, path: &str, access: Access) -> Option<String> {
    let rights = landlock_rights(plan, path)?;
    let (need, what) = match access {
        Access::See => return None,
        Access::Read => (AccessFs::ReadFile | AccessFs::ReadDir, "reading"),
        Access::Write => (AccessFs::WriteFile | AccessFs::MakeReg, "writing"),
        Access::Exec => (AccessFs::Execute.into(), "executing"),
    };
    (!rights.intersects(need))
        .then(|| format!("landlock grants no {what} at {path} (security.landlock)"))
}

/// A path in the sandbox's own root, a tmpfs sbx made read-only before the command starts.
fn in_own_root(plan: &Plan, path: &str, access: Access, via: &str) -> Verdict {
    let made = path == "/"
        || plan.ops.iter().zip(&plan.op_info).any(|(op, info)| {
            matches!(op, Op::Mkdir { .. } | Op::File { .. } | Op::Touch { .. })
                && info.sandbox_path == path
        });
    if made {
        let allowed = matches!(access, Access::See | Access::Read);
        return Verdict {
            allowed,
            reason: format!(
                "{path} is a directory or file of sbx's own root, nothing of the host; the root \
                 is read-only and runs nothing once set up{via}"
            ),
            decided_by: None,
            subject: Subject::Layout,
            fix: (!allowed).then(|| match access {
                Access::Write => format!(
                    "{}; or for an empty writable directory: --tmpfs {path}",
                    bind_fix(path, path, true)
                ),
                _ => bind_fix(path, path, false),
            }),
        };
    }
    let missing = match std::fs::symlink_metadata(path) {
        Ok(_) => "",
        Err(_) => "; it does not exist on the host either (a bind of it needs it there)",
    };
    Verdict {
        allowed: false,
        reason: format!(
            "no mount shows {path}: the sandbox's root is an empty tmpfs, and only what the \
             profile binds is there{via}{missing}"
        ),
        decided_by: None,
        subject: Subject::Layout,
        fix: Some(bind_fix(path, path, access == Access::Write)),
    }
}

/// `path`, or its nearest directory that exists on the host (a bind needs its source).
fn existing(path: &str) -> String {
    let mut p = Path::new(path);
    while std::fs::symlink_metadata(p).is_err() {
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    p.to_string_lossy().into_owned()
}

/// A read-write or read-only bind of a host path (a protected path is one).
fn bind(plan: &Plan, m: &Mount, path: &str, access: Access) -> Verdict {
    let attrs = m.attrs();
    let host = host_of(m, path).unwrap_or_else(|| PathBuf::from(path));
    let host_s = host.to_string_lossy().into_owned();
    let exists = std::fs::symlink_metadata(&host).is_ok();
    let dst = &m.info.sandbox_path;
    let mount_src = m.info.host_path.clone().unwrap_or_default();
    let protected = m.key() == Some("filesystem.protect") || m.key() == Some("--protect");
    let (kind, subject) = match protected {
        true => {
            let e = protect_entry(plan, dst);
            (
                format!(
                    "protected by filesystem.protect `{e}` (host tools run or trust it): a read-only bind over itself"
                ),
                Subject::Entry(e),
            )
        }
        false => (
            format!(
                "{} bind of the host's {} at {dst}",
                match attrs.contains(MountAttrs::RDONLY) {
                    true => "a read-only",
                    false => "a read-write",
                },
                mount_src
            ),
            Subject::Mount {
                sandbox: dst.clone(),
                host: m.info.host_path.clone(),
            },
        ),
    };
    let missing = match exists {
        true => String::new(),
        false => format!("; {host_s} does not exist on the host now"),
    };
    let (allowed, fix) = match access {
        Access::See | Access::Read => (exists || access == Access::Read, None),
        Access::Write if attrs.contains(MountAttrs::RDONLY) => (
            false,
            Some(match protected {
                true => lift_fix("protect", "--protect", &protect_entry(plan, dst)),
                false => bind_fix(&existing(&host_s), &existing_inside(&host_s, path), true),
            }),
        ),
        Access::Write => (true, None),
        Access::Exec if attrs.contains(MountAttrs::NOEXEC) => (false, None),
        Access::Exec => (true, None),
    };
    Verdict {
        allowed,
        reason: format!("{kind}{missing}"),
        decided_by: m.info.origin.clone(),
        subject,
        fix,
    }
}

/// The sandbox path of `existing(host)`, for a fix that binds the nearest existing directory.
fn existing_inside(host: &str, inside: &str) -> String {
    let e = existing(host);
    let up = Path::new(host)
        .strip_prefix(&e)
        .map(|r| r.components().count())
        .unwrap_or(0);
    let mut p = Path::new(inside);
    for _ in 0..up {
        p = p.parent().unwrap_or(p);
    }
    p.to_string_lossy().into_owned()
}

/// The line that lifts an entry of a list that `!PATH` lifts.
fn lift_fix(key: &str, flag: &str, entry: &str) -> String {
    format!(
        "lift it: add to [filesystem] {key} in your profile: {key} = [\"!{entry}\"], or run \
         with {flag} '!{entry}'"
    )
}

/// The `filesystem.protect` entry that made the protected bind at `dst`.
fn protect_entry(plan: &Plan, dst: &str) -> String {
    let entries = &plan.protect.entries;
    entries
        .iter()
        .find(|e| *e == dst || dst.ends_with(&format!("/{e}")))
        .cloned()
        .unwrap_or_else(|| dst.to_string())
}

/// An empty read-only stand-in over a credential (`filesystem.hide`).
fn hidden(plan: &Plan, m: &Mount, path: &str) -> Verdict {
    let dst = &m.info.sandbox_path;
    // The host path it covers: what the mount beneath it shows there.
    let beneath = plan
        .ops
        .iter()
        .zip(&plan.op_info)
        .filter(|(op, info)| {
            matches!(op, Op::Bind { .. } | Op::Overlay { .. })
                && info.sandbox_path != *dst
                && is_within(dst, &info.sandbox_path)
        })
        .max_by_key(|(_, info)| info.sandbox_path.len())
        .and_then(|(op, info)| {
            host_of(
                &Mount {
                    op,
                    info,
                    sealed: false,
                },
                dst,
            )
        });
    let entry = beneath
        .as_ref()
        .and_then(|host| {
            plan.hide.entries.iter().find(|e| {
                Path::new(e) == host || std::fs::canonicalize(e).is_ok_and(|c| c == *host)
            })
        })
        .cloned()
        .or_else(|| beneath.map(|h| h.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dst.clone());
    let inner = match path == dst {
        true => String::new(),
        false => format!(", and {path} inside it with it"),
    };
    Verdict {
        allowed: false,
        reason: format!(
            "hidden by filesystem.hide `{entry}`: an empty read-only stand-in covers {dst}{inner}"
        ),
        decided_by: m.info.origin.clone(),
        subject: Subject::Entry(entry.clone()),
        fix: Some(lift_fix("hide", "--hide", &entry)),
    }
}

/// A fresh tmpfs: writable, and empty when the command starts.
fn tmpfs(m: &Mount, path: &str, access: Access) -> Verdict {
    let dst = &m.info.sandbox_path;
    let host_has = std::fs::symlink_metadata(path).is_ok();
    let note = match (path == dst, host_has) {
        (true, _) => String::new(),
        (false, true) => {
            format!(": the host's {path} is not visible, only what the command creates there")
        }
        (false, false) => ": only what the command creates there".into(),
    };
    let allowed = access != Access::See || path == dst;
    Verdict {
        allowed,
        reason: format!("a fresh tmpfs at {dst}, empty when the command starts{note}"),
        decided_by: m.info.origin.clone(),
        subject: Subject::Mount {
            sandbox: dst.clone(),
            host: None,
        },
        // A bind deeper than the tmpfs shows the host's file, where there is one.
        fix: (!allowed && host_has).then(|| bind_fix(path, path, false)),
    }
}

/// A host directory through overlayfs: writes go to a layer, never to the host.
fn overlay(m: &Mount, path: &str, access: Access) -> Verdict {
    let dst = &m.info.sandbox_path;
    let ro = m.attrs().contains(MountAttrs::RDONLY);
    let host = host_of(m, path).map(|h| h.to_string_lossy().into_owned());
    let allowed = match access {
        Access::Write => !ro,
        Access::Exec => !m.attrs().contains(MountAttrs::NOEXEC),
        Access::See | Access::Read => true,
    };
    let writes = match (ro, m.info.what) {
        (true, _) => "no writes",
        (false, "temporary overlay") => "writes go to a tmpfs and vanish",
        (false, _) => {
            "writes go to a private layer, reported and thrown away (--keep-changes keeps them); the host is not changed"
        }
    };
    Verdict {
        allowed,
        reason: format!(
            "a {} of the host's {} at {dst}: {writes}",
            m.info.what,
            m.info.host_path.as_deref().unwrap_or("?")
        ),
        decided_by: m.info.origin.clone(),
        subject: Subject::Mount {
            sandbox: dst.clone(),
            host: m.info.host_path.clone(),
        },
        fix: (!allowed && access == Access::Write).then(|| {
            let h = host.unwrap_or_else(|| path.to_string());
            format!(
                "{}, or --overlay {h} for writes kept off the host",
                bind_fix(&h, path, true)
            )
        }),
    }
}

/// /proc, /dev and its pseudo-terminals: sbx's own, never the host's files.
fn special(m: &Mount, path: &str, access: Access) -> Verdict {
    let attrs = m.attrs();
    let allowed = match access {
        Access::Write => !attrs.contains(MountAttrs::RDONLY),
        Access::Exec => !attrs.contains(MountAttrs::NOEXEC),
        Access::See | Access::Read => true,
    };
    Verdict {
        allowed,
        reason: format!(
            "{} is under sbx's own {} at {} [{}]",
            path,
            m.info.what,
            m.info.sandbox_path,
            m.op.describe()
        ),
        decided_by: m.info.origin.clone(),
        subject: Subject::Layout,
        fix: None,
    }
}
