//! From what a learning run touched to the entries of a profile: what the base already gives
//! is left out, what is left is granted read-only or writable, directories are granted once
//! rather than file by file, and each entry says why it is there.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::diagnose::why;
use crate::intercept::{Access, Observed};
use crate::plan::{Plan, Seen};
use crate::profile::{NetMode, Vars};
use crate::text::escape;

/// What one granted entry stands for.
#[derive(Clone, Debug, Default)]
struct Uses {
    read: usize,
    listed: usize,
    ran: usize,
    looked_up: usize,
    wrote: usize,
    created: usize,
    removed: usize,
    /// A few of the paths, for the comment.
    examples: Vec<PathBuf>,
}

impl Uses {
    fn add(&mut self, path: &Path, a: Access, is_dir: bool) {
        if a.contains(Access::EXEC) {
            self.ran += 1;
        } else if a.contains(Access::READ) && is_dir {
            self.listed += 1;
        } else if a.contains(Access::READ) {
            self.read += 1;
        } else if !a.changes() {
            self.looked_up += 1;
        }
        if a.contains(Access::CREATE) {
            self.created += 1;
        } else if a.contains(Access::WRITE) {
            self.wrote += 1;
        }
        if a.contains(Access::REMOVE) {
            self.removed += 1;
        }
        if self.examples.len() < 2 {
            self.examples.push(path.to_path_buf());
        }
    }

    fn merge(&mut self, o: Uses) {
        self.read += o.read;
        self.listed += o.listed;
        self.ran += o.ran;
        self.looked_up += o.looked_up;
        self.wrote += o.wrote;
        self.created += o.created;
        self.removed += o.removed;
        for e in o.examples {
            if self.examples.len() < 2 {
                self.examples.push(e);
            }
        }
    }

    /// "read 12 files, ran 1, e.g. bin/python", paths shown relative to the entry.
    fn comment(&self, entry: &Path) -> String {
        let mut parts = Vec::new();
        let mut say = |n: usize, one: &str, many: &str| match n {
            0 => {}
            1 => parts.push(one.to_string()),
            n => parts.push(format!("{many} {n}")),
        };
        say(self.read, "read 1 file", "files read:");
        say(self.listed, "listed 1 directory", "directories listed:");
        say(self.ran, "ran 1 program", "programs run:");
        say(self.looked_up, "looked up 1 path", "paths looked up:");
        say(self.wrote, "wrote 1 file", "files written:");
        say(self.created, "created 1 path", "paths created:");
        say(self.removed, "removed 1 path", "paths removed:");
        let examples: Vec<String> = (self.examples.iter())
            .filter_map(|e| match e.strip_prefix(entry) {
                Ok(r) if r.as_os_str().is_empty() => None,
                Ok(r) => Some(r.display().to_string()),
                Err(_) => Some(e.display().to_string()),
            })
            .filter(|e| !e.is_empty())
            .collect();
        let mut c = parts.join(", ");
        if !examples.is_empty() {
            let _ = write!(c, " (e.g. {})", examples.join(", "));
        }
        escape(&c).to_string()
    }
}

/// The profile entries a learning run calls for.
#[derive(Debug, Default)]
pub struct Learned {
    ro: BTreeMap<PathBuf, Uses>,
    rw: BTreeMap<PathBuf, Uses>,
    /// What was used but is not granted, and why.
    left_out: Vec<String>,
    truncated: bool,
    /// The destinations connected out (`NAME:PORT`), and whether the base let every public
    /// one through (`network.mode = "on"`), which the learned profile narrows to them.
    reached: Vec<String>,
    narrow: bool,
    home: PathBuf,
    cwd: PathBuf,
}

/// Directories never granted whole: the host's top level, $HOME, the working directory's
/// ancestors. An entry beneath one is granted by itself instead.
fn too_wide(dir: &Path, home: &Path, cwd: &Path) -> bool {
    dir.parent().is_none_or(|p| p == Path::new("/"))
        || home.starts_with(dir)
        || (cwd.starts_with(dir) && dir != cwd)
}

/// Paths sbx makes or keeps out in every sandbox: nothing of the host's to grant.
fn sandbox_own(path: &Path) -> bool {
    ["/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp"]
        .iter()
        .any(|r| path.starts_with(r))
}

impl Learned {
    pub fn from(seen: &Observed, base: &Plan, vars: &Vars) -> Learned {
        let mut l = Learned {
            truncated: seen.truncated,
            home: PathBuf::from(&vars.home),
            cwd: PathBuf::from(&vars.cwd),
            ..Learned::default()
        };
        let hidden: Vec<PathBuf> = base.hide.entries.iter().map(PathBuf::from).collect();
        // The command itself: init is not dumpable, so its execve of the command is not read.
        let mut paths = seen.paths.clone();
        let program = (base.exec.candidates.iter())
            .map(|c| PathBuf::from(std::ffi::OsStr::from_bytes(c.as_bytes())))
            .find(|p| p.exists());
        if let Some(p) = program {
            *paths.entry(p).or_default() |= Access::EXEC;
        }
        for (path, &a) in &paths {
            if sandbox_own(path) && !path.starts_with(&l.cwd) {
                continue;
            }
            let meta = std::fs::symlink_metadata(path).ok();
            let is_dir = meta.as_ref().is_some_and(|m| m.is_dir());
            // mkdir -p and O_CREAT name what may exist already: only a new path is created.
            let a = match &meta {
                Some(m) if m.is_dir() && !a.intersects(Access::WRITE | Access::REMOVE) => {
                    a.without(Access::CREATE)
                }
                Some(m) if !m.is_dir() && !a.contains(Access::REMOVE) => a.without(Access::CREATE),
                _ => a,
            };
            if let Some(h) = hidden.iter().find(|h| path.starts_with(h)) {
                l.left_out.push(format!(
                    "{} (used): hidden by the base's filesystem.hide; lift it with \"!{}\" if \
                     the command needs it",
                    l.shown(path),
                    l.shown(h)
                ));
                continue;
            }
            if a.changes() {
                if writable(base, path, a) {
                    continue;
                }
                let target = match (&meta, a.intersects(Access::CREATE | Access::REMOVE)) {
                    // A file written in place is granted alone.
                    (Some(m), false) if !m.is_dir() => Some(path.clone()),
                    // Where a tree was created, the host has its nearest existing directory.
                    _ => path
                        .ancestors()
                        .skip(1)
                        .find(|d| d.is_dir())
                        .map(Path::to_path_buf),
                };
                match target {
                    Some(t) if !too_wide(&t, &l.home, &l.cwd) || t == l.cwd => {
                        l.rw.entry(t).or_default().add(path, a, is_dir)
                    }
                    _ => l.left_out.push(format!(
                        "{} ({}): granting it means making a whole top-level or home \
                         directory writable; bind it yourself if it is needed",
                        l.shown(path),
                        if a.contains(Access::CREATE) {
                            "created"
                        } else {
                            "changed"
                        }
                    )),
                }
                continue;
            }
            let Some(meta) = meta else {
                // Looked up and missing on the host: missing in the sandbox too.
                continue;
            };
            if is_dir && !a.intersects(Access::READ | Access::EXEC) {
                // A directory only looked up is made by the binds beneath it.
                continue;
            }
            if visible(base, path) {
                continue;
            }
            if meta.file_type().is_symlink() {
                // The link, where the base does not show it, and what it leads to.
                if let Ok(real) = std::fs::canonicalize(path) {
                    if !visible(base, &real) {
                        l.ro.entry(real).or_default().add(path, a, is_dir);
                    }
                }
            }
            if is_dir && too_wide(path, &l.home, &l.cwd) {
                l.left_out.push(format!(
                    "{} (listed): a whole top-level or home directory is not granted; bind it \
                     yourself if the command needs it",
                    l.shown(path)
                ));
                continue;
            }
            l.ro.entry(path.clone()).or_default().add(path, a, is_dir);
        }
        l.rw = collapse(std::mem::take(&mut l.rw), &l.home, &l.cwd);
        l.ro = collapse(std::mem::take(&mut l.ro), &l.home, &l.cwd);
        // Read-only beneath a writable entry says nothing more.
        let rw: Vec<PathBuf> = l.rw.keys().cloned().collect();
        l.ro.retain(|p, _| !rw.iter().any(|w| p.starts_with(w)));
        l
    }

    /// Adds the destinations the run connected out to, under a base with `mode`.
    pub fn with_network(mut self, mode: Option<NetMode>, reached: Vec<String>) -> Learned {
        self.narrow = mode == Some(NetMode::On);
        self.reached = reached;
        self
    }

    /// `path` with the working directory or home written as the variables profiles use.
    fn shown(&self, path: &Path) -> String {
        for (base, var) in [(&self.cwd, "${CWD}"), (&self.home, "${HOME}")] {
            if base.as_os_str().len() > 1 {
                if let Ok(rest) = path.strip_prefix(base) {
                    return match rest.as_os_str().is_empty() {
                        true => var.to_string(),
                        false => format!("{var}/{}", rest.display()),
                    };
                }
            }
        }
        path.display().to_string()
    }

    /// The profile text: `extends` the base, then the entries, each with its comment.
    pub fn profile(&self, base: &[String], command: &[OsString], exit: i32) -> String {
        let cmd: Vec<String> = command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut t = String::new();
        let _ = writeln!(
            t,
            "# Learned by `sbx learn` from one run of: {} (exit {exit}).",
            escape(&cmd.join(" "))
        );
        t.push_str(
            "# It grants what that run used beyond its base: a path touched only on another \
             branch of the\n# program is not here. Review every entry before you use it.\n",
        );
        let extends: Vec<String> = base.iter().map(|b| toml_string(&extended(b))).collect();
        let _ = writeln!(t, "extends = [{}]\n\n[filesystem]", extends.join(", "));
        for (key, map) in [("ro", &self.ro), ("rw", &self.rw)] {
            if map.is_empty() {
                let _ = writeln!(t, "{key} = []");
                continue;
            }
            let _ = writeln!(t, "{key} = [");
            for (path, uses) in map {
                let _ = writeln!(t, "  # {}", uses.comment(path));
                let _ = writeln!(t, "  {},", toml_string(&self.shown(path)));
            }
            t.push_str("]\n");
        }
        if !self.reached.is_empty() {
            t.push_str("\n[network]\n");
            if self.narrow {
                t.push_str(
                    "# The base reaches every public address; this profile only what the run \
                     reached.\nmode = \"proxy\"\n",
                );
            }
            t.push_str("# Connected out during the run (the name sbx's DNS answered, if any).\n");
            let list: Vec<String> = self.reached.iter().map(|r| toml_string(r)).collect();
            let _ = writeln!(t, "allow = [{}]", list.join(", "));
        }
        if !self.left_out.is_empty() || self.truncated {
            t.push_str("\n# Used but not granted:\n");
            for why in &self.left_out {
                let _ = writeln!(t, "#   {}", escape(why));
            }
            if self.truncated {
                t.push_str("#   more paths than sbx records in one run; run learn on a part\n");
            }
        }
        t
    }

    /// The line sbx prints on stderr after writing the profile.
    pub fn summary(&self, output: Option<&Path>) -> String {
        let to = output.map_or("stdout".to_string(), |p| {
            escape(&p.display().to_string()).to_string()
        });
        format!(
            "learned {} read-only and {} writable entries and {} destinations beyond the base \
             ({} used but left out); the profile is on {to}",
            self.ro.len(),
            self.rw.len(),
            self.reached.len(),
            self.left_out.len()
        )
    }
}

/// A base profile as `extends` names it from anywhere: a path made absolute.
fn extended(name: &str) -> String {
    match name.contains('/') {
        true => std::path::absolute(name)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| name.to_string()),
        false => name.to_string(),
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Whether the base shows host path `path` as the host has it.
fn visible(base: &Plan, path: &Path) -> bool {
    match base.view.resolve(&path.to_string_lossy()) {
        Seen::Host(h) => std::fs::canonicalize(path).is_ok_and(|real| real == h),
        // sbx's own file (a stand-in, /etc/resolv.conf of the sandbox...): nothing to grant.
        Seen::Sandbox => true,
        Seen::Missing => false,
    }
}

/// Entries granted one directory at a time: a directory under which entries lie in two or
/// more of its subdirectories or files becomes one entry (unless it is too wide), the deepest
/// first, repeated upwards; an entry beneath another is dropped.
fn collapse(mut map: BTreeMap<PathBuf, Uses>, home: &Path, cwd: &Path) -> BTreeMap<PathBuf, Uses> {
    loop {
        let mut kids: BTreeMap<&Path, std::collections::BTreeSet<&std::ffi::OsStr>> =
            BTreeMap::new();
        for key in map.keys() {
            let mut below = key.as_path();
            while let Some(dir) = below.parent() {
                if let Some(name) = below.file_name() {
                    kids.entry(dir).or_default().insert(name);
                }
                below = dir;
            }
        }
        let Some(dir) = kids
            .into_iter()
            .filter(|(d, names)| names.len() >= 2 && !too_wide(d, home, cwd))
            .map(|(d, _)| d.to_path_buf())
            .max_by_key(|d| d.components().count())
        else {
            break;
        };
        let mut uses = map.remove(&dir).unwrap_or_default();
        let inside: Vec<PathBuf> = map
            .keys()
            .filter(|p| p.starts_with(&dir))
            .cloned()
            .collect();
        for p in inside {
            if let Some(u) = map.remove(&p) {
                uses.merge(u);
            }
        }
        map.insert(dir, uses);
    }
    let keys: Vec<PathBuf> = map.keys().cloned().collect();
    map.retain(|p, _| !keys.iter().any(|k| k != p && p.starts_with(k)));
    map
}

/// Whether the base lets the command make this change at `path` (its directory, for a path
/// created or removed).
fn writable(base: &Plan, path: &Path, a: Access) -> bool {
    let at = match a.intersects(Access::CREATE | Access::REMOVE) {
        true => path.parent().unwrap_or(path),
        false => path,
    };
    why::judge_path(base, at, why::Access::Write).allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uses() -> Uses {
        Uses::default()
    }

    #[test]
    fn entries_in_one_directory_become_the_directory() {
        let home = Path::new("/home/u");
        let cwd = Path::new("/home/u/p");
        let mut m = BTreeMap::new();
        for p in [
            "/opt/t/lib/a.py",
            "/opt/t/lib/b.py",
            "/opt/t/bin/x",
            "/srv/one",
        ] {
            m.insert(PathBuf::from(p), uses());
        }
        let got: Vec<PathBuf> = collapse(m, home, cwd).into_keys().collect();
        assert_eq!(got, [PathBuf::from("/opt/t"), PathBuf::from("/srv/one")]);
    }

    #[test]
    fn home_and_the_top_level_are_never_granted_whole() {
        let home = Path::new("/home/u");
        let cwd = Path::new("/home/u/p");
        let mut m = BTreeMap::new();
        for p in ["/home/u/.a", "/home/u/.b", "/etc/x", "/etc/y"] {
            m.insert(PathBuf::from(p), uses());
        }
        let got: Vec<PathBuf> = collapse(m, home, cwd).into_keys().collect();
        assert_eq!(got.len(), 4, "{got:?}");
    }
}
