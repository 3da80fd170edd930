//! The `SRC[:DST][?]` syntax of bind entries.

use std::path::{Component, Path, PathBuf};

/// A parsed bind entry. `dst` equals `src` when no destination is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindSpec<'a> {
    pub src: &'a str,
    pub dst: &'a str,
    /// A trailing `?`: skip the entry when the source is missing.
    pub optional: bool,
}

impl<'a> BindSpec<'a> {
    pub fn parse(entry: &'a str) -> BindSpec<'a> {
        let (body, optional) = match entry.strip_suffix('?') {
            Some(b) => (b, true),
            None => (entry, false),
        };
        let (src, dst) = body.split_once(':').unwrap_or((body, body));
        BindSpec { src, dst, optional }
    }
}

/// A command-line path (a bind or overlay source, `--hide`, `--keep-changes`) made absolute:
/// a relative one is relative to `cwd`, the canonical current directory, as in a shell. Its
/// `..` are resolved as the kernel would, through the directory up to the last `..`
/// (canonicalized: `sub/../x` with `sub` a symlink means what `ls sub/../x` means), so that no
/// `..` is left for the plan, which refuses them in the paths it mounts and compares. Where
/// that directory does not exist the path is evened out lexically (`cwd` has no symlinks, so
/// leading `..` mean the same either way), and the missing source is reported as such.
pub fn absolute_in(cwd: &str, path: &str) -> String {
    if path.starts_with('/') {
        return path.to_string();
    }
    let joined = Path::new(cwd).join(path);
    let comps: Vec<Component> = Path::new(path).components().collect();
    let Some(last) = comps.iter().rposition(|c| *c == Component::ParentDir) else {
        return joined.display().to_string();
    };
    let prefix: PathBuf = comps[..=last].iter().collect();
    let rest: PathBuf = comps[last + 1..].iter().collect();
    let resolved = match std::fs::canonicalize(Path::new(cwd).join(prefix)) {
        // `join` of an empty path would add a trailing `/`.
        Ok(dir) if rest.as_os_str().is_empty() => dir,
        Ok(dir) => dir.join(rest),
        Err(_) => {
            let mut out = PathBuf::from("/");
            for c in joined.components() {
                match c {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(n) => out.push(n),
                    _ => {}
                }
            }
            out
        }
    };
    resolved.display().to_string()
}

/// A command-line `SRC[:DST][?]` entry with its source made absolute ([`absolute_in`]); the
/// destination and the optional mark are kept as written.
pub fn entry_in(cwd: &str, entry: &str) -> String {
    let spec = BindSpec::parse(entry);
    let src = absolute_in(cwd, spec.src);
    let body = entry.strip_suffix('?').unwrap_or(entry);
    let dst = match body.contains(':') {
        true => format!(":{}", spec.dst),
        false => String::new(),
    };
    let mark = if spec.optional { "?" } else { "" };
    format!("{src}{dst}{mark}")
}

/// The sandbox path an `ro`, `rw` or `tmpfs` entry mounts on, as written ([`lexical`]).
pub fn destination_of(entry: &str) -> String {
    lexical(BindSpec::parse(entry).dst)
}

/// `path` with its spelling evened out: no `.`, repeated or trailing `/`, so that `$PWD/.`,
/// `$PWD/` and `$PWD` name one destination when layers are merged. Symlinks and `..` are left
/// for the plan, which resolves sources on the host.
pub fn lexical(path: &str) -> String {
    let mut out = String::new();
    for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        out.push('/');
        out.push_str(c);
    }
    match (path.starts_with('/'), out.is_empty()) {
        (true, true) => "/".into(),
        (true, false) => out,
        (false, _) => out.trim_start_matches('/').to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        assert_eq!(
            BindSpec::parse("/a"),
            BindSpec {
                src: "/a",
                dst: "/a",
                optional: false
            }
        );
        assert_eq!(
            BindSpec::parse("/a:/b?"),
            BindSpec {
                src: "/a",
                dst: "/b",
                optional: true
            }
        );
        assert_eq!(destination_of("/opt/?"), "/opt");
        for same in ["/w/p", "/w/p/", "/w/./p/.", "//w//p", "/x:/w/p/./"] {
            assert_eq!(destination_of(same), "/w/p", "{same}");
        }
        assert_eq!(destination_of("/"), "/");
        assert_eq!(destination_of("/w/../p"), "/w/../p");
    }

    #[test]
    fn relative_sources_resolve_against_the_current_directory() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(cwd.join("work/sub")).unwrap();
        let cwd_s = cwd.join("work").display().to_string();
        let top = cwd.display().to_string();
        assert_eq!(absolute_in(&cwd_s, "/abs/../x"), "/abs/../x");
        assert_eq!(absolute_in(&cwd_s, "x"), format!("{cwd_s}/x"));
        assert_eq!(absolute_in(&cwd_s, "../x"), format!("{top}/x"));
        assert_eq!(
            absolute_in(&cwd_s, "../.."),
            cwd.parent().unwrap().display().to_string()
        );
        assert_eq!(absolute_in(&cwd_s, "sub/../../y/"), format!("{top}/y"));
        // Through a directory that does not exist: evened out lexically.
        assert_eq!(absolute_in(&cwd_s, "gone/../../z"), format!("{top}/z"));
        // A symlink before `..` is followed, as the kernel does.
        std::os::unix::fs::symlink(cwd.join("work/sub"), cwd.join("work/link")).unwrap();
        assert_eq!(absolute_in(&cwd_s, "link/../q"), format!("{cwd_s}/q"));
        std::os::unix::fs::symlink("/usr/lib", cwd.join("work/far")).unwrap();
        assert_eq!(absolute_in(&cwd_s, "far/../bin"), "/usr/bin");
        assert_eq!(entry_in(&cwd_s, "../d:/data?"), format!("{top}/d:/data?"));
        assert_eq!(entry_in(&cwd_s, "../d?"), format!("{top}/d?"));
        assert_eq!(entry_in(&cwd_s, "/a:/b"), "/a:/b");
    }
}
