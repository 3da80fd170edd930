//! The bodies of the subcommands that are not a run: `profile list|show|check`, `changes`,
//! `apply`, `doctor` (`completions` and `man` have files of their own).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::ProfileCmd;
use crate::error::Error;
use crate::overlay;
use crate::plan::{Plan, RunOptions};
use crate::profile::{self, Loader, Vars};
use crate::sys;
use crate::text;

/// Colours only on a terminal, and never with NO_COLOR set.
pub fn use_color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

fn kind_letter(k: overlay::Kind) -> char {
    match k {
        overlay::Kind::Added => 'A',
        overlay::Kind::Modified => 'M',
        overlay::Kind::Deleted => 'D',
    }
}

fn kept(dir: &Path) -> Result<overlay::Meta, Error> {
    overlay::read_meta(dir).map_err(|source| Error::Overlay {
        path: dir.to_path_buf(),
        source,
    })
}

/// `sbx changes DIR`: what the command changed, read from the kept layers now. Every name
/// and path is escaped for the terminal (the sandbox made them); `--json` keeps them exact.
/// A report that could not be read whole is printed as far as it goes, says why, and makes
/// the exit code 125.
pub fn changes(dir: &Path, json: bool) -> Result<i32, Error> {
    let meta = kept(dir)?;
    let sets: Vec<overlay::ChangeSet> = meta.overlays.iter().map(|o| o.changes()).collect();
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&sets).unwrap_or_default()
        );
    } else {
        for set in &sets {
            let _ = writeln!(
                out,
                "# {} (over {})",
                text::escape(&set.destination),
                text::escape(&set.source)
            );
            if let Some(why) = &set.incomplete {
                // Built with escaped names already.
                let _ = writeln!(out, "! incomplete: {why}");
            }
            for c in &set.changes {
                let mark = if c.protected { "  [protected]" } else { "" };
                let _ = writeln!(
                    out,
                    "{} {:>10}  {}{mark}",
                    kind_letter(c.kind),
                    c.size,
                    c.shown()
                );
            }
        }
    }
    let _ = out.flush();
    incomplete(dir, &sets)
}

/// Exit 0, or the error that says which report is incomplete and why.
fn incomplete(dir: &Path, sets: &[overlay::ChangeSet]) -> Result<i32, Error> {
    let why: Vec<String> = sets
        .iter()
        .filter_map(|s| {
            let reason = s.incomplete.as_ref()?;
            Some(format!(
                "the change report of {} is incomplete: {reason}",
                text::escape(&s.destination)
            ))
        })
        .collect();
    if why.is_empty() {
        return Ok(0);
    }
    Err(Error::Overlay {
        path: dir.to_path_buf(),
        source: std::io::Error::other(why.join("; ")),
    })
}

/// `sbx apply DIR`: each kept layer onto the directory it was taken from (see
/// [`overlay::apply`]); names escaped for the terminal.
pub fn apply(dir: &Path, dry_run: bool, allow_protected: bool) -> Result<i32, Error> {
    let meta = kept(dir)?;
    let mut out = std::io::stdout().lock();
    for o in &meta.overlays {
        let protected = if allow_protected {
            &[][..]
        } else {
            &o.protected[..]
        };
        let actions = overlay::apply::Apply {
            upper: Path::new(&o.upper),
            tree: Path::new(&o.source),
            tree_id: o.source_id,
            protected,
            dry_run,
        }
        .run()
        .map_err(|e| match e {
            e @ overlay::apply::ApplyError::Protected { .. } => Error::Hint {
                error: Box::new(e.into()),
                hint: "read them in the layer first; `sbx apply --protected` writes them",
            },
            e @ overlay::apply::ApplyError::Replaced { .. } => Error::Hint {
                error: Box::new(e.into()),
                hint: "look at what is there now; the layer's files are in the kept directory",
            },
            e => e.into(),
        })?;
        let verb = if dry_run { "would apply" } else { "applied" };
        let _ = writeln!(out, "# {verb} onto {}", text::escape(&o.source));
        for a in &actions {
            let dropped = if a.dropped.is_empty() {
                String::new()
            } else {
                format!("  (dropped: {})", a.dropped.join(", "))
            };
            let _ = writeln!(out, "{} {}{dropped}", kind_letter(a.kind), a.shown());
        }
    }
    Ok(0)
}

pub fn doctor(json: bool) -> Result<i32, Error> {
    let report = crate::doctor::run(&crate::doctor::root_from_env());
    if json {
        let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
        text.push('\n');
        super::out::stdout(text);
    } else {
        super::out::stdout(crate::doctor::render(&report, use_color()));
    }
    Ok(if report.default_profile_runs { 0 } else { 1 })
}

pub fn profile(cmd: ProfileCmd, vars: Vars) -> Result<i32, Error> {
    let loader = Loader::new(vars.clone());
    let mut out = std::io::stdout().lock();
    match cmd {
        ProfileCmd::List => {
            for profile::Builtin { name, text, .. } in profile::BUILTIN {
                let d = Loader::parse(name, text)
                    .ok()
                    .and_then(|p| p.description)
                    .unwrap_or_default();
                let _ = writeln!(out, "{name:<12} built-in  {d}");
            }
            if let Some(dir) = &loader.user_dir {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect();
                entries.sort();
                for path in entries {
                    let name = path
                        .file_stem()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    // A user's file: its name and description are shown escaped.
                    let d = match loader.load(&path.display().to_string()) {
                        Ok(p) => crate::text::escape(&p.description.unwrap_or_default()),
                        Err(e) => format!("(invalid: {e})"),
                    };
                    let name = crate::text::escape(&name);
                    let _ = writeln!(out, "{name:<12} user      {d}");
                }
            }
            Ok(0)
        }
        ProfileCmd::Show { names } => {
            let merged = loader.load_all(&names)?.with_effective_security();
            let text = toml::to_string(&merged).map_err(|e| Error::Output {
                what: "the profile as TOML".into(),
                source: std::io::Error::other(e),
            })?;
            let _ = write!(out, "{text}");
            Ok(0)
        }
        ProfileCmd::Check { file } => {
            let name = file.display().to_string();
            let name = if name.contains('/') || name.ends_with(".toml") {
                name
            } else {
                format!("./{name}")
            };
            let p = loader.load(&name)?;
            let planned = Plan::build(
                &p,
                &vars,
                &RunOptions {
                    command: vec!["true".into()],
                    landlock_abi: sys::landlock_abi(),
                    overlay_root: Some(std::env::temp_dir()),
                    observe: false,
                },
            );
            match planned {
                // Where sbx is started (the home, /tmp) is the run's business, not the
                // profile's: a profile is checked from wherever it is kept.
                Ok(_) | Err(crate::plan::PlanError::Workspace { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let _ = writeln!(out, "{}: ok", file.display());
            Ok(0)
        }
    }
}
