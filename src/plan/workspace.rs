//! The working directory as the workspace: the profiles' `${CWD}` binds (see
//! `Sourced::workspace`). Binding "wherever sbx was started" is right for a project
//! directory and wrong for three places users also start from:
//!
//! - `/` (Docker's default WORKDIR, systemd units): a bind of the host's root would expose
//!   everything, so there is no workspace bind and the command starts in the sandbox's `/`;
//! - `$HOME`, or a directory above it that would show it (no mount of the profile, such as
//!   the default profile's private tmpfs on `${HOME}`, covers it): the workspace would be the
//!   whole home (dotfiles that the host's shells run, keys, browser profiles);
//! - `/tmp` or `/var/tmp`: the host's shared directory, with every other program's files, in
//!   place of the sandbox's private one.
//!
//! The last two are refused rather than bound read-only: read-only would still show all of
//! the home (or everyone's temporary files) to the command, and a read-only `/tmp` breaks
//! most tools in ways that do not name the cause. The refusal says how to bind the directory
//! on purpose: an explicit `--bind DIR` or `--ro-bind DIR` replaces the `${CWD}` entry.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::error::{PlanError, WorkspaceRisk};
use crate::profile::{BindSpec, Filesystem, Vars, destination_of, lexical};

/// The filesystem section with the workspace rules applied: the `${CWD}` entries left out
/// when the working directory is `/`, or an error when binding it is refused.
pub fn apply<'a>(fs: &'a Filesystem, vars: &Vars) -> Result<Cow<'a, Filesystem>, PlanError> {
    let ro = fs.ro.iter().map(|e| (e, false));
    let binds = ro.chain(fs.rw.iter().map(|e| (e, true)));
    let overlays = fs.overlay.iter().map(|o| (&o.src, false));
    let Some((first, writable)) = binds.chain(overlays).find(|(e, _)| e.workspace) else {
        return Ok(Cow::Borrowed(fs));
    };
    if vars.cwd == "/" {
        let mut fs = fs.clone();
        fs.ro.retain(|e| !e.workspace);
        fs.rw.retain(|e| !e.workspace);
        fs.overlay.retain(|o| !o.src.workspace);
        return Ok(Cow::Owned(fs));
    }
    let spec = BindSpec::parse(&first.value);
    let mounts = destinations(fs);
    let shown_at = |rel: &Path| Path::new(&lexical(spec.dst)).join(rel);
    match risk(
        Path::new(spec.src),
        Path::new(&vars.home),
        shown_at,
        &mounts,
    ) {
        Some(risk) => Err(PlanError::Workspace {
            origin: first.origin.clone(),
            dir: spec.src.to_string(),
            risk,
            writable,
        }),
        None => Ok(Cow::Borrowed(fs)),
    }
}

/// Every place the section mounts something, as written.
fn destinations(fs: &Filesystem) -> Vec<String> {
    let lists = fs.ro.iter().chain(&fs.rw).chain(&fs.tmpfs);
    lists
        .map(|e| destination_of(&e.value))
        .chain(fs.overlay.iter().map(|o| o.destination()))
        .collect()
}

/// Why binding `dir` (canonical) as the workspace is refused, with `home` the caller's
/// `$HOME` (compared as the directory it resolves to). A directory above the home is
/// refused only if the home would be seen through it: `shown_at` gives where the bind shows
/// a path below `dir`, and a mount of `mounts` between the bind and the home (the default
/// profile's private tmpfs on `${HOME}`) keeps it out of sight.
fn risk(
    dir: &Path,
    home: &Path,
    shown_at: impl Fn(&Path) -> PathBuf,
    mounts: &[String],
) -> Option<WorkspaceRisk> {
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let home: PathBuf = real(home);
    if dir == Path::new("/") {
        return None;
    }
    // Resolved only when the names match: a run from a project directory pays no syscall.
    let shared = ["/tmp", "/var/tmp"].iter().map(Path::new);
    let is = |t: &Path| dir == t || (dir.file_name() == t.file_name() && dir == real(t));
    if shared.into_iter().any(is) {
        return Some(WorkspaceRisk::SharedTmp);
    }
    if dir == home {
        return Some(WorkspaceRisk::Home);
    }
    let rel = home.strip_prefix(dir).ok()?;
    let (bind, seen) = (shown_at(Path::new("")), shown_at(rel));
    let covered = mounts
        .iter()
        .map(Path::new)
        .any(|m| m != bind && m.starts_with(&bind) && seen.starts_with(m));
    (!covered).then(|| WorkspaceRisk::AboveHome(home.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Overlay, Sourced};

    fn vars(cwd: &str, home: &str) -> Vars {
        Vars {
            home: home.into(),
            cwd: cwd.into(),
            uid: 1000,
            gid: 1000,
            user: "u".into(),
            tmpdir: "/tmp".into(),
            env: Default::default(),
        }
    }

    /// A filesystem section as the default profile's `${CWD}` entry leaves it, with `cwd`.
    fn workspace(cwd: &str, rw: bool) -> Filesystem {
        let mut e = Sourced::new(cwd, "default", "filesystem.rw");
        e.workspace = true;
        let usr = Sourced::new("/usr", "default", "filesystem.ro");
        if rw {
            Filesystem {
                ro: vec![usr],
                rw: vec![e],
                ..Default::default()
            }
        } else {
            Filesystem {
                ro: vec![usr, e],
                ..Default::default()
            }
        }
    }

    #[test]
    fn from_the_root_there_is_no_workspace_bind() {
        for rw in [true, false] {
            let fs = workspace("/", rw);
            let out = apply(&fs, &vars("/", "/home/u")).unwrap();
            assert!(out.rw.is_empty(), "{out:?}");
            assert_eq!(out.ro.len(), 1);
            assert_eq!(out.ro[0].value, "/usr");
        }
        // An overlay of `${CWD}` as well; an explicit bind of / is the mount planner's to refuse.
        let mut src = Sourced::new("/", "p", "filesystem.overlay");
        src.workspace = true;
        let fs = Filesystem {
            overlay: vec![Overlay {
                src,
                dst: None,
                mode: None,
                lower: vec![],
            }],
            rw: vec![Sourced::new("/", "the command line", "--bind")],
            ..Default::default()
        };
        let out = apply(&fs, &vars("/", "/home/u")).unwrap();
        assert!(out.overlay.is_empty());
        assert_eq!(out.rw.len(), 1);
    }

    #[test]
    fn home_its_parents_and_the_shared_tmp_are_refused() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path().canonicalize().unwrap().join("above/home");
        std::fs::create_dir_all(&h).unwrap();
        let hs = h.display().to_string();
        let parent = h.parent().unwrap().display().to_string();
        // The temporary home lies in /tmp: the shared directories are checked with another.
        let elsewhere = "/nonexistent-sbx/home/u".to_string();
        for (cwd, home, want) in [
            (hs.clone(), &hs, WorkspaceRisk::Home),
            (parent, &hs, WorkspaceRisk::AboveHome(hs.clone())),
            ("/tmp".to_string(), &elsewhere, WorkspaceRisk::SharedTmp),
            ("/var/tmp".to_string(), &elsewhere, WorkspaceRisk::SharedTmp),
        ] {
            for rw in [true, false] {
                let e = apply(&workspace(&cwd, rw), &vars(&cwd, home)).unwrap_err();
                match &e {
                    PlanError::Workspace {
                        dir,
                        risk,
                        writable,
                        ..
                    } => {
                        assert_eq!((dir, risk, *writable), (&cwd, &want, rw), "{e}");
                    }
                    other => panic!("{other}"),
                }
                let text = e.to_string();
                for needed in [
                    format!("--bind {cwd}"),
                    format!("--ro-bind {cwd}"),
                    "default (key filesystem.rw)".to_string(),
                ] {
                    assert!(text.contains(&needed), "{needed}: {text}");
                }
            }
        }
    }

    #[test]
    fn above_the_home_is_bound_when_a_mount_keeps_the_home_out_of_sight() {
        let d = tempfile::tempdir().unwrap();
        let above = d.path().canonicalize().unwrap();
        let home = above.join("u");
        std::fs::create_dir(&home).unwrap();
        let (a, h) = (above.display().to_string(), home.display().to_string());
        // The default profile's private tmpfs on `${HOME}`: the home is not seen.
        let mut fs = workspace(&a, true);
        fs.tmpfs = vec![Sourced::new(&h, "default", "filesystem.tmpfs")];
        assert!(apply(&fs, &vars(&a, &h)).is_ok());
        // The same tmpfs on a spelling of the home through a symlink covers another path:
        // the home itself would be seen through the workspace.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&home, &link).unwrap();
        let mut fs = workspace(&a, true);
        fs.tmpfs = vec![Sourced::new(
            link.to_str().unwrap(),
            "p",
            "filesystem.tmpfs",
        )];
        let e = apply(&fs, &vars(&a, link.to_str().unwrap()));
        assert!(matches!(e, Err(PlanError::Workspace { .. })), "{e:?}");
        // A workspace bound elsewhere (`${CWD}:/work`) shows the home at /work/u.
        let mut fs = workspace(&format!("{a}:/work"), true);
        fs.tmpfs = vec![Sourced::new(&h, "p", "filesystem.tmpfs")];
        let e = apply(&fs, &vars(&a, &h));
        assert!(matches!(e, Err(PlanError::Workspace { .. })), "{e:?}");
        fs.tmpfs = vec![Sourced::new("/work/u", "p", "filesystem.tmpfs")];
        assert!(apply(&fs, &vars(&a, &h)).is_ok());
    }

    #[test]
    fn a_home_reached_through_a_symlink_is_still_the_home() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().canonicalize().unwrap().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let cwd = real.display().to_string();
        let fs = workspace(&cwd, true);
        let e = apply(&fs, &vars(&cwd, &link.display().to_string()));
        assert!(matches!(e, Err(PlanError::Workspace { .. })), "{e:?}");
    }

    #[test]
    fn elsewhere_and_explicit_binds_are_left_alone() {
        let home = "/home/u";
        for cwd in [
            "/home/u/proj",
            "/tmp/build",
            "/srv/x",
            "/var/tmp/y",
            "/home/other",
        ] {
            let fs = workspace(cwd, true);
            assert!(matches!(apply(&fs, &vars(cwd, home)), Ok(Cow::Borrowed(_))));
        }
        // `--bind ~` from ~: explicit, so bound.
        let fs = Filesystem {
            rw: vec![Sourced::new(home, "the command line", "--bind")],
            ..Default::default()
        };
        assert!(matches!(
            apply(&fs, &vars(home, home)),
            Ok(Cow::Borrowed(_))
        ));
        // A home of / (a uid without passwd entry): no directory is above it.
        let fs = workspace("/srv/x", true);
        assert!(apply(&fs, &vars("/srv/x", "/")).is_ok());
    }
}
