//! `${NAME}` expansion in profile strings, done once at load time.

use std::collections::BTreeMap;
use std::path::Path;

use super::ProfileError;
use super::model::ProfileFile;

/// The values variables expand to. Built from the host once per run; tests build their own.
#[derive(Clone, Debug)]
pub struct Vars {
    pub home: String,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub tmpdir: String,
    pub env: BTreeMap<String, String>,
}

impl Vars {
    pub fn from_host() -> Result<Vars, ProfileError> {
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let uid = nix::unistd::getuid();
        let gid = nix::unistd::getgid();
        // /etc/passwd is only read when the environment does not say, and never through NSS
        // (see `passwd`).
        let passwd = || super::passwd::lookup(uid.as_raw());
        let (home, user) = identity(
            env.get("HOME").map(String::as_str),
            env.get("USER").map(String::as_str),
            uid.as_raw(),
            passwd,
        );
        let cwd = std::env::current_dir()
            .and_then(|d| d.canonicalize())
            .map_err(|e| ProfileError::Cwd { source: e })?;
        let tmpdir = env
            .get("TMPDIR")
            .filter(|t| t.starts_with('/'))
            .cloned()
            .unwrap_or_else(|| "/tmp".to_string());
        Ok(Vars {
            home: normalize(&home),
            cwd: cwd.to_string_lossy().into_owned(),
            uid: uid.as_raw(),
            gid: gid.as_raw(),
            user,
            tmpdir: normalize(&tmpdir),
            env,
        })
    }

    fn lookup(&self, name: &str) -> Option<String> {
        if let Some(var) = name.strip_prefix("env:") {
            return self.env.get(var).cloned();
        }
        Some(match name {
            "HOME" => self.home.clone(),
            "CWD" => self.cwd.clone(),
            "UID" => self.uid.to_string(),
            "GID" => self.gid.to_string(),
            "USER" => self.user.clone(),
            "TMPDIR" => self.tmpdir.clone(),
            _ => return None,
        })
    }

    /// Expands `${NAME}`; `$$` is a literal `$`. An unknown or unset variable is an error.
    pub fn expand(&self, input: &str, profile: &str, key: &str) -> Result<String, ProfileError> {
        let mut out = String::with_capacity(input.len());
        let mut rest = input;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let end = body.find('}').ok_or_else(|| ProfileError::Var {
                    profile: profile.to_string(),
                    key: key.to_string(),
                    message: format!("unterminated `${{` in `{input}`"),
                })?;
                let name = &body[..end];
                let value = self.lookup(name).ok_or_else(|| ProfileError::Var {
                    profile: profile.to_string(),
                    key: key.to_string(),
                    message: if let Some(var) = name.strip_prefix("env:") {
                        format!("environment variable `{var}` is not set")
                    } else {
                        format!(
                            "unknown variable `${{{name}}}` (known: HOME, CWD, UID, GID, USER, TMPDIR, env:NAME; write `$$` for a literal `$`)"
                        )
                    },
                })?;
                out.push_str(&value);
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Expands every string of a profile that names a path, a variable value or a hostname.
    /// File contents are left alone: they are often scripts with their own `${...}`.
    pub fn expand_profile(&self, p: &mut ProfileFile, profile: &str) -> Result<(), ProfileError> {
        let fs = &mut p.filesystem;
        for (list, key) in fs.path_lists_mut() {
            let binds = matches!(key, "filesystem.ro" | "filesystem.rw");
            for entry in list.iter_mut() {
                entry.workspace = binds && is_workspace(&entry.value);
                entry.value = self.expand(&entry.value, profile, key)?;
            }
        }
        fs.symlinks = std::mem::take(&mut fs.symlinks)
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    self.expand(&k, profile, "filesystem.symlinks")?,
                    self.expand(&v, profile, "filesystem.symlinks")?,
                ))
            })
            .collect::<Result<_, ProfileError>>()?;
        fs.files = std::mem::take(&mut fs.files)
            .into_iter()
            .map(|(k, v)| Ok((self.expand(&k, profile, "filesystem.files")?, v)))
            .collect::<Result<_, ProfileError>>()?;
        for o in fs.overlay.iter_mut() {
            o.src.workspace = is_workspace(&o.src.value);
            o.src.value = self.expand(&o.src.value, profile, "filesystem.overlay")?;
            if let Some(d) = o.dst.as_mut() {
                *d = self.expand(d, profile, "filesystem.overlay")?;
            }
            for l in o.lower.iter_mut() {
                *l = self.expand(l, profile, "filesystem.overlay")?;
            }
        }
        if let Some(c) = fs.changes.as_mut() {
            *c = self.expand(c, profile, "filesystem.changes")?;
        }
        for v in p.env.set.values_mut() {
            *v = self.expand(v, profile, "env.set")?;
        }
        if let Some(h) = p.process.hostname.as_mut() {
            *h = self.expand(h, profile, "process.hostname")?;
        }
        if let Some(d) = p.process.chdir.as_mut() {
            *d = self.expand(d, profile, "process.chdir")?;
        }
        Ok(())
    }
}

/// Whether a bind or overlay entry binds the working directory itself: its source is
/// `${CWD}`, whatever its destination or optional mark.
fn is_workspace(entry: &str) -> bool {
    crate::profile::BindSpec::parse(entry).src == "${CWD}"
}

/// HOME and USER from the environment where it gives them (an absolute HOME, a non-empty
/// USER), else from the passwd entry (`passwd` is called at most once), else `/` and the
/// uid's number: a uid without an entry (a container's random uid) still runs.
fn identity(
    home: Option<&str>,
    user: Option<&str>,
    uid: u32,
    passwd: impl FnOnce() -> Option<super::passwd::Entry>,
) -> (String, String) {
    let home = home.filter(|h| h.starts_with('/'));
    let user = user.filter(|u| !u.is_empty());
    let entry = if home.is_none() || user.is_none() {
        passwd()
    } else {
        None
    };
    let home = home
        .map(str::to_string)
        .or_else(|| {
            let e = entry.as_ref()?;
            e.home.starts_with('/').then(|| e.home.clone())
        })
        .unwrap_or_else(|| "/".to_string());
    let user = user
        .map(str::to_string)
        .or_else(|| entry.as_ref().map(|e| e.name.clone()))
        .unwrap_or_else(|| uid.to_string());
    (home, user)
}

/// Drops a trailing slash so that `${HOME}/x` never yields `//x`.
fn normalize(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        Path::new(trimmed).to_string_lossy().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn vars() -> Vars {
        Vars {
            home: "/home/u".into(),
            cwd: "/work/p".into(),
            uid: 1000,
            gid: 100,
            user: "u".into(),
            tmpdir: "/tmp".into(),
            env: [("FOO".to_string(), "bar".to_string())].into(),
        }
    }

    #[test]
    fn expands_known_variables() {
        let v = vars();
        assert_eq!(
            v.expand("${HOME}/.cargo", "p", "k").unwrap(),
            "/home/u/.cargo"
        );
        assert_eq!(
            v.expand("${CWD}:${UID}:${GID}", "p", "k").unwrap(),
            "/work/p:1000:100"
        );
        assert_eq!(
            v.expand("${env:FOO}-$$x-$y", "p", "k").unwrap(),
            "bar-$x-$y"
        );
    }

    #[test]
    fn identity_falls_back_to_passwd_then_to_the_uid_and_root() {
        use crate::profile::passwd::Entry;
        let entry = || {
            Some(Entry {
                name: "pw".into(),
                home: "/home/pw".into(),
            })
        };
        let none = || None;
        let own = |h: &str, u: &str| (h.to_string(), u.to_string());
        // The environment wins, and passwd is not read at all then.
        let unread = || -> Option<Entry> { panic!("passwd read although HOME and USER are set") };
        assert_eq!(identity(Some("/h"), Some("me"), 7, unread), own("/h", "me"));
        assert_eq!(identity(None, None, 7, entry), own("/home/pw", "pw"));
        assert_eq!(
            identity(Some("rel"), Some(""), 7, entry),
            own("/home/pw", "pw")
        );
        assert_eq!(identity(None, Some("me"), 7, entry), own("/home/pw", "me"));
        // No entry (a container's random uid): the uid's number and /.
        assert_eq!(identity(None, None, 4242, none), own("/", "4242"));
        assert_eq!(identity(Some("/h"), None, 4242, none), own("/h", "4242"));
        // An entry without a usable home.
        let homeless = || {
            Some(Entry {
                name: "n".into(),
                home: String::new(),
            })
        };
        assert_eq!(identity(None, None, 1, homeless), own("/", "n"));
    }

    #[test]
    fn rejects_unknown_and_unset() {
        let v = vars();
        let e = v
            .expand("${NOPE}", "myprof", "filesystem.rw")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("myprof") && e.contains("filesystem.rw") && e.contains("NOPE"),
            "{e}"
        );
        let e = v
            .expand("${env:MISSING}", "p", "env.set")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("MISSING is not set") || e.contains("`MISSING` is not set"),
            "{e}"
        );
        assert!(v.expand("${HOME", "p", "k").is_err());
    }
}
