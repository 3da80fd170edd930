//! Finding profiles by name or path and folding their `extends` chains.

use std::path::{Path, PathBuf};

use super::model::ProfileFile;
use super::trust::{self, ReadError};
use super::{ProfileError, Vars, builtin, merge};

/// The most profiles one `extends` chain may nest: far beyond any real layering, and well
/// within the stack (each level is a recursive call).
pub const MAX_EXTENDS_DEPTH: usize = 64;
/// The most profile files one load may read: `extends = ["b", "b"]` at every level would
/// otherwise read 2^depth files.
pub const MAX_PROFILES_READ: usize = 512;

/// Where a profile's text came from.
pub(super) struct Source {
    /// Unique key for cycle detection: `builtin:NAME` or the canonical path.
    pub(super) id: String,
    /// What messages call it: a name for built-ins, the path for files.
    pub(super) display: String,
    pub(super) text: String,
    /// A built-in's text as JSON, which is what is parsed (see `builtin`).
    pub(super) json: Option<&'static str>,
    /// Directory that relative `extends` paths resolve against.
    pub(super) dir: Option<PathBuf>,
}

pub struct Loader {
    /// `$XDG_CONFIG_HOME/sbx/profiles` (or `~/.config/sbx/profiles`).
    pub user_dir: Option<PathBuf>,
    pub vars: Vars,
    /// Whose profile files are trusted (besides root's): the user sbx runs as.
    pub uid: u32,
}

/// The `extends` chain being loaded: for cycles, depth and the number of files read.
#[derive(Default)]
struct Walk {
    stack: Vec<String>,
    read: usize,
}

impl Loader {
    pub fn new(vars: Vars) -> Loader {
        let user_dir = vars
            .env
            .get("XDG_CONFIG_HOME")
            .filter(|d| d.starts_with('/'))
            .map(PathBuf::from)
            .or_else(|| Some(Path::new(&vars.home).join(".config")))
            .map(|d| d.join("sbx").join("profiles"));
        Loader {
            user_dir,
            vars,
            uid: nix::unistd::geteuid().as_raw(),
        }
    }

    /// Loads and merges the named profiles in order (later wins).
    pub fn load_all(&self, names: &[String]) -> Result<ProfileFile, ProfileError> {
        let mut merged = ProfileFile::default();
        for name in names {
            let p = self.load(name)?;
            merged = merge(merged, p);
        }
        Ok(merged)
    }

    /// Loads one profile with its `extends` chain folded in.
    pub fn load(&self, name: &str) -> Result<ProfileFile, ProfileError> {
        self.load_inner(name, None, &mut Walk::default())
    }

    /// Parses `text` as a profile called `display` without resolving `extends`: used by
    /// `profile check` on the text itself, and by tests.
    pub fn parse(display: &str, text: &str) -> Result<ProfileFile, ProfileError> {
        let mut p: ProfileFile = toml::from_str(text)
            .map_err(|e| ProfileError::parse(display, text, e.span(), e.message()))?;
        p.stamp_origins(display);
        Ok(p)
    }

    /// A built-in profile from its JSON form; `text` is its TOML, for a message. The JSON is
    /// built from that TOML, so the two agree (test `builtins_parse_alike_from_json`).
    fn parse_json(display: &str, text: &str, json: &str) -> Result<ProfileFile, ProfileError> {
        let mut p: ProfileFile = serde_json::from_str(json)
            .map_err(|e| ProfileError::parse(display, text, None, &e.to_string()))?;
        p.stamp_origins(display);
        Ok(p)
    }

    fn load_inner(
        &self,
        name: &str,
        from: Option<&Path>,
        walk: &mut Walk,
    ) -> Result<ProfileFile, ProfileError> {
        let src = self.locate(name, from)?;
        let stack = &walk.stack;
        if let Some(pos) = stack.iter().position(|id| *id == src.id) {
            let mut chain: Vec<&str> = stack[pos..].iter().map(String::as_str).collect();
            chain.push(&src.id);
            return Err(ProfileError::Cycle {
                chain: chain.join(" -> "),
            });
        }
        walk.read += 1;
        if stack.len() >= MAX_EXTENDS_DEPTH || walk.read > MAX_PROFILES_READ {
            return Err(ProfileError::TooDeep {
                profile: src.display,
                depth: MAX_EXTENDS_DEPTH,
                files: MAX_PROFILES_READ,
            });
        }
        let mut this = match src.json {
            Some(json) => Self::parse_json(&src.display, &src.text, json)?,
            None => Self::parse(&src.display, &src.text)?,
        };
        if !src.id.starts_with("builtin:") {
            this.limits.mark_explicit();
        }
        self.vars.expand_profile(&mut this, &src.display)?;
        this.limits
            .check()
            .map_err(|(key, message)| ProfileError::Limit {
                profile: src.display.clone(),
                key,
                message,
            })?;
        walk.stack.push(src.id.clone());
        let mut base = ProfileFile::default();
        for parent in std::mem::take(&mut this.extends) {
            let p = self.load_inner(&parent, src.dir.as_deref(), walk)?;
            base = merge(base, p);
        }
        walk.stack.pop();
        Ok(merge(base, this))
    }

    /// A name containing `/` or ending in `.toml` is a path; otherwise the user's profile
    /// directory is searched first, then the built-ins.
    pub(super) fn locate(&self, name: &str, from: Option<&Path>) -> Result<Source, ProfileError> {
        if name.contains('/') || name.ends_with(".toml") {
            let path = match from {
                Some(dir) if !name.starts_with('/') => dir.join(name),
                _ => PathBuf::from(name),
            };
            return self.read_file(&path, None);
        }
        let mut searched = Vec::new();
        if let Some(dir) = &self.user_dir {
            let path = dir.join(format!("{name}.toml"));
            if path.exists() {
                // Trusted up to the configuration root, `sbx/` above `profiles/`.
                return self.read_file(&path, dir.parent());
            }
            searched.push(path);
        }
        if let Some(b) = builtin::find(name) {
            return Ok(Source {
                id: format!("builtin:{name}"),
                display: name.to_string(),
                text: b.text.to_string(),
                json: Some(b.json),
                dir: None,
            });
        }
        Err(ProfileError::NotFound {
            name: name.to_string(),
            searched,
        })
    }

    /// Reads a profile file that passes the ownership checks (see `trust`) up to `stop`.
    fn read_file(&self, path: &Path, stop: Option<&Path>) -> Result<Source, ProfileError> {
        let t = trust::read(path, stop, self.uid).map_err(|e| match e {
            ReadError::Io(source) => ProfileError::Io {
                path: path.to_path_buf(),
                source,
            },
            ReadError::Untrusted(why) => ProfileError::Untrusted {
                path: path.to_path_buf(),
                why,
            },
        })?;
        Ok(Source {
            id: t.canonical.display().to_string(),
            display: path.display().to_string(),
            text: t.text,
            json: None,
            dir: t.canonical.parent().map(Path::to_path_buf),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::NetMode;

    fn loader(dir: &Path) -> Loader {
        Loader {
            user_dir: Some(dir.to_path_buf()),
            uid: nix::unistd::geteuid().as_raw(),
            vars: Vars {
                home: "/home/u".into(),
                cwd: "/work/p".into(),
                uid: 1000,
                gid: 1000,
                user: "u".into(),
                tmpdir: "/tmp".into(),
                env: [("PATH".to_string(), "/usr/bin:/bin".to_string())].into(),
            },
        }
    }

    #[test]
    fn every_builtin_loads() {
        let dir = tempfile::tempdir().unwrap();
        for builtin::Builtin { name, .. } in builtin::BUILTIN {
            let p = loader(dir.path())
                .load(name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(p.description.is_some(), "{name} has no description");
        }
    }

    #[test]
    fn builtins_parse_alike_from_json() {
        for b in builtin::BUILTIN {
            let from_json = Loader::parse_json(b.name, b.text, b.json).unwrap();
            assert_eq!(
                from_json,
                Loader::parse(b.name, b.text).unwrap(),
                "{}",
                b.name
            );
        }
    }

    #[test]
    fn shown_profile_loads_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        for builtin::Builtin { name, .. } in builtin::BUILTIN {
            let p = loader(dir.path()).load(name).unwrap();
            let text = toml::to_string(&p).unwrap();
            let back = Loader::parse("shown", &text).unwrap();
            assert_eq!(p, back, "{name}:\n{text}");
        }
    }

    #[test]
    fn unknown_key_reports_line_and_column() {
        let e = Loader::parse("x.toml", "description = \"a\"\n[namespaces]\npidd = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.toml:3:1:"), "{e}");
        assert!(e.contains("pidd"), "{e}");
    }

    #[test]
    fn malformed_toml_reports_position() {
        let e = Loader::parse("y.toml", "[filesystem]\nro = [\"/usr\"\n").unwrap_err();
        assert!(matches!(e, ProfileError::Parse { line: 2.., .. }), "{e}");
    }

    #[test]
    fn user_profile_extends_builtin_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.toml"),
            "extends = [\"default\"]\n[network]\nmode = \"host\"\n[filesystem]\nro = [\"${CWD}\"]\n",
        )
        .unwrap();
        let p = loader(dir.path()).load("mine").unwrap();
        assert_eq!(p.network.mode, Some(NetMode::Host));
        assert!(p.filesystem.ro.iter().any(|e| e.value == "/work/p"));
        assert!(!p.filesystem.rw.iter().any(|e| e.value == "/work/p"));
        let origin = &p
            .filesystem
            .ro
            .iter()
            .find(|e| e.value == "/work/p")
            .unwrap()
            .origin;
        assert_eq!(origin.key, "filesystem.ro");
        assert!(origin.profile.ends_with("mine.toml"));
    }

    /// A limit is the user's when the layer whose value wins is theirs: a profile file of
    /// their own or the command line, not a built-in.
    #[test]
    fn limits_remember_whether_a_user_set_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.toml"),
            "extends = [\"default\"]\n[limits]\nmemory = \"1G\"\n",
        )
        .unwrap();
        let l = loader(dir.path());
        let mine = l.load("mine").unwrap();
        assert!(mine.limits.explicit.contains("memory"));
        assert!(mine.limits.processes.is_some() && !mine.limits.explicit.contains("processes"));
        // A built-in merged over it sets memory again: the default's value, not the user's.
        let both = l.load_all(&["mine".into(), "default".into()]).unwrap();
        assert!(!both.limits.explicit.contains("memory"), "{both:?}");
        // The command line (and the library) set limits through set_limit.
        let mut cli = ProfileFile::default();
        crate::profile::set_limit(&mut cli.limits, "processes", "64").unwrap();
        let p = merge(l.load("default").unwrap(), cli);
        assert!(p.limits.explicit.contains("processes"));
        assert!(!p.limits.explicit.contains("open_files"));
        // Not part of the profile's text, nor of its equality.
        assert!(!toml::to_string(&p).unwrap().contains("explicit"));
        let mut bare = mine.clone();
        bare.limits.explicit = Default::default();
        assert_eq!(mine, bare);
    }

    #[test]
    fn cyclic_extends_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), "extends = [\"b\"]\n").unwrap();
        std::fs::write(dir.path().join("b.toml"), "extends = [\"a\"]\n").unwrap();
        let e = loader(dir.path()).load("a").unwrap_err();
        assert!(matches!(e, ProfileError::Cycle { .. }), "{e}");
        assert!(e.to_string().contains("a.toml -> "), "{e}");
    }

    #[test]
    fn extends_deeper_than_the_bound_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let chain = |n: usize| {
            for i in 0..n {
                let next = if i + 1 < n {
                    format!("extends = [\"c{}\"]\n", i + 1)
                } else {
                    String::new()
                };
                std::fs::write(dir.path().join(format!("c{i}.toml")), next).unwrap();
            }
        };
        chain(MAX_EXTENDS_DEPTH);
        loader(dir.path()).load("c0").unwrap();
        chain(MAX_EXTENDS_DEPTH + 1);
        let e = loader(dir.path()).load("c0").unwrap_err();
        assert!(matches!(e, ProfileError::TooDeep { .. }), "{e}");
        assert!(e.to_string().contains("64"), "{e}");
    }

    #[test]
    fn a_diamond_of_extends_reads_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        // d0 extends d1 twice, d1 extends d2 twice...: 2^30 reads without a bound.
        for i in 0..30 {
            let next = format!("extends = [\"d{0}\", \"d{0}\"]\n", i + 1);
            std::fs::write(dir.path().join(format!("d{i}.toml")), next).unwrap();
        }
        std::fs::write(dir.path().join("d30.toml"), "").unwrap();
        let e = loader(dir.path()).load("d0").unwrap_err();
        assert!(matches!(e, ProfileError::TooDeep { .. }), "{e}");
    }

    #[test]
    fn unknown_profile_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = loader(dir.path()).load("nope").unwrap_err().to_string();
        assert!(e.contains("unknown profile `nope`"), "{e}");
    }
}
