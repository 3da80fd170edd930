//! The sandbox's file tree as the plan makes it, for questions asked on the host without
//! entering the sandbox: which host file a sandbox path shows, if any (a PATH entry, the
//! command a PATH search finds, a program's interpreter). Binds show host trees, so beneath
//! them the host is read (symlinks followed the way the kernel would follow them inside);
//! sbx's own tmpfs holds only what the plan put there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::NEW_ROOT;
use super::op::Op;
use super::tree::Node;

/// What the plan placed at a sandbox path.
#[derive(Clone, Debug)]
enum Place {
    /// A directory in sbx's tmpfs.
    Own,
    /// A bind (or overlay) of this host file or directory.
    Host(PathBuf),
    /// A symlink sbx made, with its target.
    Link(String),
    /// A stand-in, a file sbx wrote, a special filesystem: nothing of the host.
    Other,
}

/// What a sandbox path shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// This host file or directory (symlinks resolved).
    Host(PathBuf),
    /// Something sbx made (its tmpfs, a stand-in, /proc...).
    Sandbox,
    /// Nothing: the path does not exist inside.
    Missing,
}

#[derive(Clone, Debug, Default)]
pub struct View {
    places: BTreeMap<String, Place>,
}

/// The symlinks the kernel follows in one lookup before giving up (ELOOP).
const MAX_LINKS: usize = 40;

enum Walk {
    Done(Seen),
    /// Start again from the root with this path (a symlink or `..` was met).
    Again(String),
}

impl View {
    pub(super) fn new(
        nodes: &BTreeMap<String, Node>,
        binds: &[(String, PathBuf)],
        ops: &[Op],
    ) -> View {
        let places = nodes
            .iter()
            .map(|(dst, node)| {
                let place = match node {
                    Node::OwnDir => Place::Own,
                    Node::HostDir(src) => Place::Host(src.clone()),
                    Node::Leaf("bound file") => match binds.iter().rev().find(|(d, _)| d == dst) {
                        Some((_, src)) => Place::Host(src.clone()),
                        None => Place::Other,
                    },
                    Node::Leaf("symlink") => match symlink_target(ops, dst) {
                        Some(t) => Place::Link(t),
                        None => Place::Other,
                    },
                    Node::Leaf(_) => Place::Other,
                };
                (dst.clone(), place)
            })
            .collect();
        View { places }
    }

    /// What the absolute sandbox path `inside` shows when the command starts.
    pub fn resolve(&self, inside: &str) -> Seen {
        let mut path = inside.to_string();
        for _ in 0..=MAX_LINKS {
            match self.walk(&path) {
                Walk::Done(seen) => return seen,
                Walk::Again(p) => path = p,
            }
        }
        Seen::Missing
    }

    fn walk(&self, path: &str) -> Walk {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut cur = String::new();
        // The host directory `cur` shows, or None in sbx's own tmpfs (the root is one).
        let mut host: Option<PathBuf> = None;
        for (i, comp) in comps.iter().enumerate() {
            let rest = comps[i + 1..].join("/");
            let again = |base: &str| Walk::Again(format!("{base}/{rest}"));
            match *comp {
                "." => continue,
                ".." => {
                    let parent = cur.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                    return again(parent);
                }
                _ => {}
            }
            let next = format!("{cur}/{comp}");
            match (self.places.get(&next), &host) {
                (Some(Place::Own), _) => host = None,
                (Some(Place::Host(src)), _) => host = Some(src.clone()),
                (Some(Place::Link(target)), _) => return again(&link(&cur, target)),
                (Some(Place::Other), _) if rest.is_empty() => return Walk::Done(Seen::Sandbox),
                (Some(Place::Other), _) | (None, None) => return Walk::Done(Seen::Missing),
                (None, Some(base)) => {
                    let h = base.join(comp);
                    match std::fs::symlink_metadata(&h) {
                        Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(&h) {
                            Ok(t) => return again(&link(&cur, &t.to_string_lossy())),
                            Err(_) => return Walk::Done(Seen::Missing),
                        },
                        Ok(m) if !m.is_dir() && !rest.is_empty() => {
                            return Walk::Done(Seen::Missing);
                        }
                        Ok(_) => host = Some(h),
                        Err(_) => return Walk::Done(Seen::Missing),
                    }
                }
            }
            cur = next;
        }
        Walk::Done(match host {
            Some(h) => Seen::Host(h),
            None => Seen::Sandbox,
        })
    }
}

/// Where a symlink in directory `dir` with `target` leads (before the rest of the path).
fn link(dir: &str, target: &str) -> String {
    if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{dir}/{target}")
    }
}

fn symlink_target(ops: &[Op], dst: &str) -> Option<String> {
    let want = super::path::cstr(NEW_ROOT, Path::new(dst));
    ops.iter().rev().find_map(|op| match op {
        Op::Symlink { target, path } if *path == want => {
            Some(target.to_string_lossy().into_owned())
        }
        _ => None,
    })
}
