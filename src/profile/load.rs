//! Finding profiles by name or path and folding their `extends` chains.

use std::path::{Path, PathBuf};

use super::model::ProfileFile;
use super::{ProfileError, Vars, builtin, merge};

/// Where a profile's text came from.
struct Source {
    /// Unique key for cycle detection: `builtin:NAME` or the canonical path.
    id: String,
    /// What messages call it: a name for built-ins, the path for files.
    display: String,
    text: String,
    /// Directory that relative `extends` paths resolve against.
    dir: Option<PathBuf>,
}

pub struct Loader {
    /// `$XDG_CONFIG_HOME/sbx/profiles` (or `~/.config/sbx/profiles`).
    pub user_dir: Option<PathBuf>,
    pub vars: Vars,
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
        Loader { user_dir, vars }
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
        self.load_inner(name, None, &mut Vec::new())
    }

    /// Parses `text` as a profile called `display` without resolving `extends`: used by
    /// `profile check` on the text itself, and by tests.
    pub fn parse(display: &str, text: &str) -> Result<ProfileFile, ProfileError> {
        let mut p: ProfileFile = toml::from_str(text)
            .map_err(|e| ProfileError::parse(display, text, e.span(), e.message()))?;
        p.stamp_origins(display);
        Ok(p)
    }

    fn load_inner(
        &self,
        name: &str,
        from: Option<&Path>,
        stack: &mut Vec<String>,
    ) -> Result<ProfileFile, ProfileError> {
        let src = self.locate(name, from)?;
        if let Some(pos) = stack.iter().position(|id| *id == src.id) {
            let mut chain: Vec<&str> = stack[pos..].iter().map(String::as_str).collect();
            chain.push(&src.id);
            return Err(ProfileError::Cycle {
                chain: chain.join(" -> "),
            });
        }
        let mut this = Self::parse(&src.display, &src.text)?;
        self.vars.expand_profile(&mut this, &src.display)?;
        this.limits
            .check()
            .map_err(|(key, message)| ProfileError::Limit {
                profile: src.display.clone(),
                key,
                message,
            })?;
        stack.push(src.id.clone());
        let mut base = ProfileFile::default();
        for parent in std::mem::take(&mut this.extends) {
            let p = self.load_inner(&parent, src.dir.as_deref(), stack)?;
            base = merge(base, p);
        }
        stack.pop();
        Ok(merge(base, this))
    }

    /// A name containing `/` or ending in `.toml` is a path; otherwise the user's profile
    /// directory is searched first, then the built-ins.
    fn locate(&self, name: &str, from: Option<&Path>) -> Result<Source, ProfileError> {
        if name.contains('/') || name.ends_with(".toml") {
            let path = match from {
                Some(dir) if !name.starts_with('/') => dir.join(name),
                _ => PathBuf::from(name),
            };
            return read_file(&path);
        }
        let mut searched = Vec::new();
        if let Some(dir) = &self.user_dir {
            let path = dir.join(format!("{name}.toml"));
            if path.exists() {
                return read_file(&path);
            }
            searched.push(path);
        }
        if let Some(text) = builtin::find(name) {
            return Ok(Source {
                id: format!("builtin:{name}"),
                display: name.to_string(),
                text: text.to_string(),
                dir: None,
            });
        }
        Err(ProfileError::NotFound {
            name: name.to_string(),
            searched,
        })
    }
}

fn read_file(path: &Path) -> Result<Source, ProfileError> {
    let io = |source| ProfileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let canonical = path.canonicalize().map_err(io)?;
    let text = std::fs::read_to_string(&canonical).map_err(io)?;
    Ok(Source {
        id: canonical.display().to_string(),
        display: path.display().to_string(),
        text,
        dir: canonical.parent().map(Path::to_path_buf),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::NetMode;

    fn loader(dir: &Path) -> Loader {
        Loader {
            user_dir: Some(dir.to_path_buf()),
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
        for (name, _) in builtin::BUILTIN {
            let p = loader(dir.path())
                .load(name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(p.description.is_some(), "{name} has no description");
        }
    }

    #[test]
    fn shown_profile_loads_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        for (name, _) in builtin::BUILTIN {
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
    fn unknown_profile_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = loader(dir.path()).load("nope").unwrap_err().to_string();
        assert!(e.contains("unknown profile `nope`"), "{e}");
    }
}
