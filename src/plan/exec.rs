//! The command to exec: argv, the environment, and the executable candidates, all as C strings ready
//! for execve.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;

use super::error::PlanError;
use super::mount::{Seen, View};
use crate::profile::{Env, Vars};

const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[derive(Clone, Debug)]
pub struct ExecPlan {
    /// The command as the user typed it, for messages.
    pub display: String,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// Paths tried in order, like execvp, but resolved against the sandbox's PATH.
    pub candidates: Vec<CString>,
    /// The directory the command starts in, inside the sandbox.
    pub cwd: CString,
    pub search_path: String,
}

fn env_error(key: &'static str, message: String) -> PlanError {
    PlanError::merged(key, message)
}

/// `LC_*` matches every name starting with `LC_`; anything else matches exactly.
fn keep_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// The command's environment: the host variables the profile keeps, then `set`, minus `unset`.
pub fn environment(
    env: &Env,
    host: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, PlanError> {
    for pattern in &env.keep {
        let body = pattern.strip_suffix('*').unwrap_or(pattern);
        if body.is_empty() || body.contains(['*', '=', '\0']) {
            return Err(env_error(
                "env.keep",
                format!("{pattern:?} is not a variable name (a trailing `*` matches a prefix)"),
            ));
        }
    }
    let mut out: BTreeMap<String, String> = host
        .iter()
        .filter(|(k, _)| env.keep.iter().any(|p| keep_matches(p, k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &env.set {
        if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
            return Err(env_error(
                "env.set",
                format!("{k:?} = {v:?} is not a valid variable"),
            ));
        }
        out.insert(k.clone(), v.clone());
    }
    for k in &env.unset {
        out.remove(k);
    }
    Ok(out)
}

impl ExecPlan {
    pub fn build(
        env: &Env,
        vars: &Vars,
        command: &[OsString],
        cwd: &str,
    ) -> Result<ExecPlan, PlanError> {
        let Some(program) = command.first() else {
            return Err(PlanError::NoCommand);
        };
        if program.is_empty() {
            return Err(PlanError::Other("the command is an empty string".into()));
        }
        let argv = command
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| PlanError::Other("an argument contains a NUL byte".into()))?;
        let vars_out = environment(env, &vars.env)?;
        let search_path = vars_out
            .get("PATH")
            .cloned()
            .unwrap_or_else(|| DEFAULT_PATH.to_string());
        let envp = vars_out
            .iter()
            .map(|(k, v)| CString::new(format!("{k}={v}")).expect("checked for NUL"))
            .collect();
        let prog = program.as_bytes();
        let candidates = if prog.contains(&b'/') {
            vec![argv[0].clone()]
        } else {
            search_path
                .split(':')
                .map(|dir| if dir.is_empty() { "." } else { dir })
                .map(|dir| {
                    let mut p = dir.as_bytes().to_vec();
                    p.push(b'/');
                    p.extend_from_slice(prog);
                    CString::new(p).expect("checked for NUL")
                })
                .collect()
        };
        Ok(ExecPlan {
            display: program.to_string_lossy().into_owned(),
            argv,
            envp,
            candidates,
            cwd: CString::new(cwd).map_err(|_| {
                PlanError::Other("the working directory contains a NUL byte".into())
            })?,
            search_path,
        })
    }
}

/// What the sandbox's PATH search finds that the host's would not: the PATH entries the
/// sandbox does not show as the host does, and the file a command name resolves to when it
/// differs from the host's.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PathReport {
    /// Entries of the sandbox's PATH that exist on the host but not as the same directory
    /// inside.
    pub hidden: Vec<String>,
    /// The command name found at a different file inside than on the host (or not at all).
    pub differs: Option<String>,
}

/// A sandbox path of a regular, executable file, and the host file it shows.
fn executable_inside(view: &View, inside: &str) -> Option<std::path::PathBuf> {
    match view.resolve(inside) {
        Seen::Host(h) if is_executable(&h) => Some(h),
        _ => None,
    }
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The absolute entries of a PATH value, each once, in order.
fn entries(path: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for e in path.split(':').filter(|e| e.starts_with('/')) {
        if !out.contains(&e) {
            out.push(e);
        }
    }
    out
}

/// Compares the sandbox's PATH search with the host's (`host_path`, sbx's own PATH): reads
/// the host (a few stats per entry), nothing inside.
pub fn path_report(exec: &ExecPlan, view: &View, host_path: Option<&str>) -> PathReport {
    let same_dir = |entry: &str| match (view.resolve(entry), std::fs::canonicalize(entry)) {
        (Seen::Host(h), Ok(outside)) => std::fs::canonicalize(h).is_ok_and(|h| h == outside),
        _ => false,
    };
    let hidden: Vec<String> = entries(&exec.search_path)
        .into_iter()
        .filter(|e| std::path::Path::new(e).is_dir() && !same_dir(e))
        .map(str::to_string)
        .collect();
    let prog = &exec.display;
    let differs = (!prog.contains('/'))
        .then(|| {
            let outside = entries(host_path?).into_iter().find_map(|dir| {
                let p = std::path::Path::new(dir).join(prog);
                is_executable(&p).then_some(p)
            })?;
            let real = std::fs::canonicalize(&outside).ok()?;
            let inside = entries(&exec.search_path).into_iter().find_map(|dir| {
                let at = format!("{dir}/{prog}");
                executable_inside(view, &at).map(|h| (at, h))
            });
            let why = |outside: &std::path::Path| {
                let dir = outside.parent().map(|d| d.display().to_string());
                match dir {
                    Some(d) if !entries(&exec.search_path).contains(&d.as_str()) => {
                        format!("{d} is not in the sandbox's PATH")
                    }
                    Some(d) if !same_dir(&d) => format!("{d} is not visible inside"),
                    _ => "an earlier entry of the sandbox's PATH has it".to_string(),
                }
            };
            match inside {
                Some((_, h)) if std::fs::canonicalize(&h).is_ok_and(|h| h == real) => None,
                Some((at, h)) => {
                    let host = if std::path::Path::new(&at) == h {
                        String::new()
                    } else {
                        format!(" (the host's {})", h.display())
                    };
                    Some(format!(
                        "`{prog}` runs {at}{host} in the sandbox, not {} as on the host: {}",
                        outside.display(),
                        why(&outside)
                    ))
                }
                None => Some(format!(
                    "`{prog}` is not found by the sandbox's PATH; on the host it is {}: {}",
                    outside.display(),
                    why(&outside)
                )),
            }
        })
        .flatten();
    PathReport { hidden, differs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_allowlist_then_sets_then_unsets() {
        let host: BTreeMap<String, String> = [
            ("TERM", "xterm"),
            ("LC_ALL", "C"),
            ("SSH_AUTH_SOCK", "/run/agent"),
            ("SECRET_TOKEN", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let env = Env {
            keep: vec!["TERM".into(), "LC_*".into()],
            set: [
                ("A".to_string(), "1".to_string()),
                ("TERM".to_string(), "dumb".to_string()),
            ]
            .into(),
            unset: vec!["A".into()],
        };
        let out = environment(&env, &host).unwrap();
        assert_eq!(out.get("TERM").map(String::as_str), Some("dumb"));
        assert_eq!(out.get("LC_ALL").map(String::as_str), Some("C"));
        assert!(!out.contains_key("SSH_AUTH_SOCK") && !out.contains_key("SECRET_TOKEN"));
        assert!(!out.contains_key("A"));
    }

    #[test]
    fn rejects_bad_patterns() {
        let env = Env {
            keep: vec!["A*B".into()],
            ..Default::default()
        };
        assert!(environment(&env, &BTreeMap::new()).is_err());
    }
}
