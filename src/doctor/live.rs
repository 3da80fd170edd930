//! The live checks: real sandboxes started on this host, reported with sbx's own messages.

use super::{Check, Status};
use crate::error::Error;
use crate::plan::{Plan, RunOptions};
use crate::profile::{Enforcement, Loader, OverlayMode, ProfileFile, Sourced, Vars};

/// Why a probe sandbox did not run `/bin/true`.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error(transparent)]
    Sbx(#[from] Error),
    /// The sandbox's setup failed: sbx's message for it.
    #[error("{0}")]
    Setup(String),
    #[error("/bin/true exited {0}")]
    Exit(i32),
}

/// Builds and runs a sandbox that runs `/bin/true`; Err carries sbx's own message.
fn run_probe(edit: impl FnOnce(&mut ProfileFile)) -> Result<(), ProbeError> {
    let vars = Vars::from_host().map_err(Error::from)?;
    let mut profile = Loader::new(vars.clone())
        .load("default")
        .map_err(Error::from)?;
    // Independent of where doctor runs: no working-directory bind, no cgroup attempt.
    profile.filesystem.rw.clear();
    profile.limits.cgroup = Some(Enforcement::Off);
    edit(&mut profile);
    let opts = RunOptions {
        command: vec!["/bin/true".into()],
        landlock_abi: crate::sys::landlock_abi(),
        overlay_root: None,
    };
    let plan = Plan::build(&profile, &vars, &opts).map_err(Error::from)?;
    let outcome = crate::supervisor::run(&plan)?;
    match (outcome.failure, outcome.ending.code()) {
        (Some(f), _) => Err(ProbeError::Setup(crate::diagnose::setup_failure(&plan, &f))),
        (None, 0) => Ok(()),
        (None, c) => Err(ProbeError::Exit(c)),
    }
}

pub(super) fn live() -> (Vec<Check>, bool) {
    let default = run_probe(|_| {});
    let runs = default.is_ok();
    let mut out = vec![match default {
        Ok(()) => Check::new(
            "default profile (user, mount, pid, net, ipc, uts, cgroup namespaces; tmpfs, proc, landlock, seccomp)",
            Status::Ok,
            "a sandbox ran /bin/true",
            "",
        ),
        Err(e) => Check::new(
            "default profile (user, mount, pid, net, ipc, uts, cgroup namespaces; tmpfs, proc, landlock, seccomp)",
            Status::Fail,
            e.to_string(),
            "see the hint in the message and the checks above",
        ),
    }];
    let overlay = run_probe(|p| {
        p.filesystem.overlay.push(crate::profile::Overlay {
            src: Sourced::new("/etc", "doctor", "filesystem.overlay"),
            dst: None,
            mode: Some(OverlayMode::Tmp),
            lower: Vec::new(),
        });
    });
    out.push(match overlay {
        Ok(()) => Check::new(
            "overlayfs in a user namespace",
            Status::Ok,
            "a temporary overlay of /etc mounted",
            "",
        ),
        Err(e) => Check::new(
            "overlayfs in a user namespace",
            Status::Warn,
            e.to_string(),
            "overlays (--overlay) need Linux >= 5.11 with overlayfs; other features are unaffected",
        ),
    });
    (out, runs)
}
