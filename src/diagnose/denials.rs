//! `--trace-denials`: which of the paths an observed run named the sandbox refused, judged
//! with the same functions as `sbx why`, so that what a failed run reports is what `sbx why`
//! would answer for the path.
//!
//! The listener sees the call, not its result: a refusal is inferred from the plan. A path the
//! sandbox does not show counts only when the host has it (or, for a write, its directory):
//! a command probing for an optional file that exists nowhere was not refused anything. And
//! a path the command created itself (or one below it) is the sandbox's own, whatever the host
//! holds at that place.

use std::path::{Path, PathBuf};

use super::why::{self, Access, Verdict, bind_fix};
use crate::intercept::{self, Observed};
use crate::plan::Plan;

/// Where nothing of the host is expected: the kernel's and sbx's own file systems.
const OWN: &[&str] = &["/proc", "/sys", "/dev", "/sbx-store"];

/// One refusal: the path as the command named it, what was refused, and `sbx why`'s answer.
#[derive(Clone, Debug)]
pub struct Denial {
    pub path: PathBuf,
    pub access: Access,
    pub verdict: Verdict,
}

/// The paths of `observed` the plan refused, the changes first, then reads and runs, then
/// lookups (a command's failing step is likelier to be one of the former), each in path order.
pub fn denials(plan: &Plan, observed: &Observed) -> Vec<Denial> {
    judged(plan, observed, &|p| std::fs::symlink_metadata(p).is_ok())
}

/// `denials`, with whether the host has a path given (for tests).
fn judged(plan: &Plan, observed: &Observed, on_host: &dyn Fn(&Path) -> bool) -> Vec<Denial> {
    let mut out: Vec<(u8, Denial)> = observed
        .paths
        .iter()
        .filter(|(p, _)| !OWN.iter().any(|o| p.starts_with(o)))
        .filter_map(|(p, &did)| {
            let created = p.ancestors().skip(1).any(|a| {
                observed
                    .paths
                    .get(a)
                    .is_some_and(|x| x.contains(intercept::Access::CREATE))
            });
            let d = judge(plan, p, did, created, on_host)?;
            let rank = match (
                did.changes(),
                did.intersects(intercept::Access::READ | intercept::Access::EXEC),
            ) {
                (true, _) => 0,
                (false, true) => 1,
                (false, false) => 2,
            };
            Some((rank, d))
        })
        .collect();
    out.sort_by(|a, b| (a.0, &a.1.path).cmp(&(b.0, &b.1.path)));
    out.into_iter().map(|(_, d)| d).collect()
}

/// What the sandbox refused of what the command did (`did`) to `path`, if anything.
/// `created_above`: the command created a directory above it.
fn judge(
    plan: &Plan,
    path: &Path,
    did: intercept::Access,
    created_above: bool,
    on_host: &dyn Fn(&Path) -> bool,
) -> Option<Denial> {
    use intercept::Access as Did;
    if created_above {
        return None;
    }
    let denial = |access, verdict| Denial {
        path: path.to_path_buf(),
        access,
        verdict,
    };
    let see = why::judge_path(plan, path, Access::See);
    if did.contains(Did::CREATE) {
        // A new file needs a writable place, not a host file to show.
        let w = why::judge_path(plan, path, Access::Write);
        // A new file is not visible before it is made: what counts is its directory.
        let dir_seen = path
            .parent()
            .is_some_and(|d| why::judge_path(plan, d, Access::See).allowed);
        return match (w.allowed, see.allowed || dir_seen) {
            (true, _) => None,
            (false, true) => Some(denial(Access::Write, w)),
            (false, false) => unseen(path, see, true, on_host).map(|v| denial(Access::See, v)),
        };
    }
    if !see.allowed {
        let hidden = (see.decided_by.as_ref()).is_some_and(|o| o.key.ends_with("hide"));
        if hidden {
            // A hidden credential shows as an empty stand-in: looking it up succeeds.
            let used = did.changes() || did.intersects(Did::READ | Did::EXEC);
            return used.then(|| denial(Access::See, see));
        }
        return unseen(path, see, did.changes(), on_host).map(|v| denial(Access::See, v));
    }
    let asked = [
        (did.changes(), Access::Write),
        (did.contains(Did::EXEC), Access::Exec),
        (did.contains(Did::READ), Access::Read),
    ];
    asked
        .into_iter()
        .filter(|(done, _)| *done)
        .map(|(_, a)| (a, why::judge_path(plan, path, a)))
        .find(|(_, v)| !v.allowed)
        .map(|(a, v)| denial(a, v))
}

/// The verdict on a path the sandbox does not show, with the bind that would show it; None
/// when the host has nothing there either (for a write: not even its directory).
fn unseen(
    path: &Path,
    mut see: Verdict,
    write: bool,
    on_host: &dyn Fn(&Path) -> bool,
) -> Option<Verdict> {
    let host = match (on_host(path), write, path.parent()) {
        (true, _, _) => path,
        (false, true, Some(dir)) if dir != Path::new("/") && on_host(dir) => dir,
        _ => return None,
    };
    let h = host.to_string_lossy();
    see.fix = Some(bind_fix(&h, &h, write));
    Some(see)
}

/// The short form of a verdict's fix, for one line naming several paths: `add --bind X, or
/// [filesystem] rw` from `add to [filesystem] rw in your profile: rw = [...], or run with
/// --bind X`. A fix of another form is kept whole.
pub fn short_fix(fix: &str) -> String {
    let body = fix.strip_prefix("lift it: ").unwrap_or(fix);
    let key = body
        .strip_prefix("add to [filesystem] ")
        .and_then(|r| r.split_once(' '))
        .map(|(k, _)| k);
    let flag = body
        .split_once("or run with ")
        .map(|(_, t)| t.split(';').next().unwrap_or(t).trim_end());
    match (key, flag) {
        (Some(k), Some(f)) => format!("add {f}, or [filesystem] {k}"),
        _ => fix.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Sandbox;
    use crate::intercept::Access as Did;
    use crate::profile::Vars;

    /// A plan with /usr read-only, a fresh /tmp, and /usr/share hidden.
    fn plan() -> Plan {
        let vars = Vars {
            home: "/nonexistent-home".into(),
            cwd: "/usr".into(),
            uid: 1000,
            gid: 1000,
            user: "u".into(),
            tmpdir: "/tmp".into(),
            env: Default::default(),
        };
        let mut layer = crate::profile::ProfileFile::default();
        let s = |v: &str, key| crate::profile::Sourced::new(v, "t.toml", key);
        layer.filesystem.ro = vec![s("/usr", "filesystem.ro")];
        layer.filesystem.tmpfs = vec![s("/tmp", "filesystem.tmpfs")];
        layer.filesystem.hide = vec![s("/usr/share", "filesystem.hide")];
        Sandbox::with_vars(vars)
            .layer(layer)
            .plan(["true"])
            .expect("the test plan builds")
    }

    fn observed(paths: &[(&str, Did)]) -> Observed {
        Observed {
            paths: paths.iter().map(|(p, a)| (PathBuf::from(p), *a)).collect(),
            truncated: false,
        }
    }

    fn named(ds: &[Denial]) -> Vec<(String, Access)> {
        ds.iter()
            .map(|d| (d.path.to_string_lossy().into_owned(), d.access))
            .collect()
    }

    #[test]
    fn a_write_to_a_read_only_bind_and_a_read_of_an_unseen_host_file() {
        let o = observed(&[
            ("/usr/lib/x", Did::WRITE | Did::CREATE),
            ("/usr/bin", Did::READ),
            ("/srv/data/x", Did::READ),
        ]);
        let ds = judged(&plan(), &o, &|p| {
            p.starts_with("/srv") || p.starts_with("/usr")
        });
        assert_eq!(
            named(&ds),
            [
                ("/usr/lib/x".to_string(), Access::Write),
                ("/srv/data/x".to_string(), Access::See)
            ]
        );
        let fix = short_fix(ds[1].verdict.fix.as_deref().unwrap());
        assert_eq!(fix, "add --ro-bind /srv/data/x, or [filesystem] ro");
    }

    #[test]
    fn a_path_missing_on_the_host_too_is_not_a_refusal() {
        let o = observed(&[("/srv/nothing", Did::LOOKUP), ("/srv/new", Did::CREATE)]);
        assert!(judged(&plan(), &o, &|_| false).is_empty());
        // A new file in a host directory the sandbox does not show: the directory is the fix.
        let ds = judged(&plan(), &o, &|p| p == Path::new("/srv"));
        assert_eq!(named(&ds), [("/srv/new".to_string(), Access::See)]);
        let fix = short_fix(ds[0].verdict.fix.as_deref().unwrap());
        assert_eq!(fix, "add --bind /srv, or [filesystem] rw");
    }

    #[test]
    fn what_the_command_created_on_a_tmpfs_is_its_own() {
        let o = observed(&[
            ("/tmp/d", Did::CREATE),
            ("/tmp/d/f", Did::READ),
            ("/tmp/host-only", Did::READ),
        ]);
        let ds = judged(&plan(), &o, &|_| true);
        assert_eq!(named(&ds), [("/tmp/host-only".to_string(), Access::See)]);
    }

    #[test]
    fn the_kernels_and_sbxs_own_paths_are_skipped() {
        let o = observed(&[
            ("/proc/1/status", Did::WRITE),
            ("/dev/shm/x", Did::READ),
            ("/sys/kernel", Did::LOOKUP),
        ]);
        assert!(judged(&plan(), &o, &|_| true).is_empty());
    }

    #[test]
    fn a_hidden_path_is_refused_when_read_not_when_looked_up() {
        let o = observed(&[("/usr/share", Did::LOOKUP)]);
        assert!(judged(&plan(), &o, &|_| true).is_empty());
        let o = observed(&[("/usr/share/doc", Did::READ)]);
        let ds = judged(&plan(), &o, &|_| true);
        assert_eq!(named(&ds), [("/usr/share/doc".to_string(), Access::See)]);
        let fix = short_fix(ds[0].verdict.fix.as_deref().unwrap());
        assert_eq!(fix, "add --hide '!/usr/share', or [filesystem] hide");
    }

    #[test]
    fn short_fix_keeps_a_fix_of_another_form() {
        assert_eq!(short_fix("something else"), "something else");
        assert_eq!(
            short_fix(
                "add to [filesystem] rw in your profile: rw = [\"/r/x\"], or run with --bind /r/x; or for an empty writable directory: --tmpfs /r/x"
            ),
            "add --bind /r/x, or [filesystem] rw"
        );
    }
}
