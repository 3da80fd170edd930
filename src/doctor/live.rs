//! The live checks: real sandboxes started on this host, reported with sbx's own messages
//! (the same cause and fix a run would print).

use super::{Check, Status};
use crate::error::Error;
use crate::plan::{Op, Plan, RunOptions};
use crate::profile::{Enforcement, Loader, OverlayMode, ProcMode, ProfileFile, Sourced, Vars};
use crate::sandbox::channel::Step;

/// Why a probe sandbox did not run `/bin/true`.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error(transparent)]
    Sbx(#[from] Error),
    /// The sandbox's setup failed: sbx's message for it; `masked` when a masked /proc stopped
    /// it (at mounting proc, or at writing the limits in a read-only /proc/sys).
    #[error("{message}")]
    Setup { message: String, masked: bool },
    #[error("/bin/true exited {0}")]
    Exit(i32),
}

impl ProbeError {
    /// sbx's message as a check: the error line (with the cause) as what was found, the fix
    /// (or the step's hint) as what to do.
    fn check(&self, name: &'static str, status: Status, otherwise: &str) -> Check {
        let text = self.to_string();
        let mut lines = text.lines();
        let mut detail = lines.next().unwrap_or_default().to_string();
        let mut fix = String::new();
        for l in lines {
            let l = l.trim_start();
            if let Some(c) = l.strip_prefix("cause: ") {
                detail.push_str(&format!("; cause: {c}"));
            } else if let Some(f) = l.strip_prefix("fix: ").or(l.strip_prefix("hint: ")) {
                fix = f.to_string();
            }
        }
        if fix.is_empty() {
            fix = otherwise.to_string();
        }
        Check::new(name, status, detail, fix)
    }

    fn masked(&self) -> bool {
        matches!(self, ProbeError::Setup { masked: true, .. })
    }
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
        observe: false,
    };
    let plan = Plan::build(&profile, &vars, &opts).map_err(Error::from)?;
    let outcome = crate::supervisor::run(&plan)?;
    match (outcome.failure, outcome.ending.code()) {
        (Some(f), _) => Err(ProbeError::Setup {
            message: crate::diagnose::setup_failure(&plan, &f),
            masked: match f.step {
                Step::Op => matches!(plan.ops.get(f.index as usize), Some(Op::Proc { .. })),
                Step::UsernsLimit => f.errno == libc::EROFS,
                _ => false,
            },
        }),
        (None, 0) => Ok(()),
        (None, c) => Err(ProbeError::Exit(c)),
    }
}

/// The check run where a masked /proc stopped the default profile.
pub(super) const WITH_PROC_HOST: &str = "default profile with --proc host";

const DEFAULT: &str = "default profile (user, mount, pid, net, ipc, uts, cgroup namespaces; \
                       tmpfs, proc, landlock, seccomp)";

pub(super) fn live() -> (Vec<Check>, bool) {
    let default = run_probe(|_| {});
    let runs = default.is_ok();
    let mut out = vec![match &default {
        Ok(()) => Check::new(DEFAULT, Status::Ok, "a sandbox ran /bin/true", ""),
        Err(e) => e.check(
            DEFAULT,
            Status::Fail,
            "see the hint in the message and the checks above",
        ),
    }];
    // Where a masked /proc stopped it, whether the proc mode made for that works; the overlay
    // check then runs in that mode.
    let mut proc = None;
    if default.as_ref().is_err_and(ProbeError::masked) {
        let name = WITH_PROC_HOST;
        out.push(
            match run_probe(|p| p.filesystem.proc = Some(ProcMode::Host)) {
                Ok(()) => {
                    proc = Some(ProcMode::Host);
                    Check::new(
                        name,
                        Status::Ok,
                        "a sandbox ran /bin/true with this /proc bound and no PID namespace: \
                         run sbx with --proc host here",
                        "",
                    )
                }
                Err(e) => e.check(name, Status::Fail, "see the checks above"),
            },
        );
    }
    out.push(overlay(proc));
    if runs || proc.is_some() {
        out.push(egress(proc));
    }
    (out, runs)
}

/// `--net on` (and `proxy`): sbx's network helper, its sockets inside, and the seccomp
/// listener through which connect(2) reaches sbx.
fn egress(proc: Option<ProcMode>) -> Check {
    let name = "network mode on/proxy (sbx's egress: seccomp listener, pidfd_getfd)";
    let probe = run_probe(|p| {
        p.filesystem.proc = proc.or(p.filesystem.proc);
        p.network.mode = Some(crate::profile::NetMode::On);
    });
    match probe {
        Ok(()) => Check::new(
            name,
            Status::Ok,
            "a sandbox with the interception installed ran /bin/true",
            "",
        ),
        Err(e) => e.check(
            name,
            Status::Warn,
            "--net on and --net proxy need Linux 5.6 (seccomp user notification, pidfd_getfd) \
             and no seccomp listener above (not inside another on/proxy sandbox); --net none \
             and host are unaffected",
        ),
    }
}

/// A temporary overlay of a directory of doctor's own: a container's own directories (/etc
/// with its bound files) say nothing about overlayfs itself.
fn overlay(proc: Option<ProcMode>) -> Check {
    let name = "overlayfs in a user namespace";
    let fix = "overlays (--overlay) need Linux >= 5.11 with overlayfs; other features are \
               unaffected";
    let dir = match tempfile::Builder::new()
        .prefix("sbx-doctor-")
        .tempdir_in(std::env::temp_dir())
    {
        Ok(d) => d,
        Err(e) => {
            return Check::new(
                name,
                Status::Warn,
                format!(
                    "not checked: cannot create a directory in {} to overlay: {e}",
                    crate::text::escape_path(&std::env::temp_dir())
                ),
                "set TMPDIR to a writable directory",
            );
        }
    };
    let src = dir.path().display().to_string();
    let probe = run_probe(|p| {
        p.filesystem.proc = proc.or(p.filesystem.proc);
        p.filesystem.overlay.push(crate::profile::Overlay {
            src: Sourced::new(src, "doctor", "filesystem.overlay"),
            dst: None,
            mode: Some(OverlayMode::Tmp),
            lower: Vec::new(),
        });
    });
    match probe {
        Ok(()) => Check::new(
            name,
            Status::Ok,
            "a temporary overlay of a fresh directory mounted",
            "",
        ),
        Err(e) => e.check(name, Status::Warn, fix),
    }
}
