//! The command to exec: argv, the environment, and the executable candidates, all as C strings ready
//! for execve.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;

use super::error::PlanError;
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
