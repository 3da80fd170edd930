//! Running a sandbox: the layers directory for overlays, the plan, the supervisor, and then
//! what the run means: its exit code, its reason, the change report and the run report.

use std::ffi::OsString;
use std::path::Path;

use super::{Finished, Sandbox};
use crate::diagnose;
use crate::error::Error;
use crate::exit::{EXIT_SBX_FAILED, EXIT_TIMEOUT, Ending};
use crate::overlay::{self, LayerRoot};
use crate::plan::{Plan, RunOptions};
use crate::profile::OverlayMode;
use crate::report::{self, Reason};
use crate::sandbox::channel::Step;
use crate::supervisor::janitor::Janitor;
use crate::supervisor::watchdog::Crossed;
use crate::supervisor::{self, Outcome, Supervision};
use crate::sys;
use crate::text::{escape, escape_bytes, escape_path};

impl Sandbox {
    /// Runs `command` and waits for it, without touching this process's signals.
    pub fn run<I, S>(&self, command: I) -> Result<Finished, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.run_with(command, Supervision::default())
    }

    /// Runs `command` with the given supervision (the CLI forwards signals).
    pub fn run_with<I, S>(&self, command: I, how: Supervision) -> Result<Finished, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let command: Vec<OsString> = command.into_iter().map(Into::into).collect();
        let shown: Vec<String> = command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let landlock_abi = sys::landlock_abi();
        let mut layer_root = self.layer_root()?;
        // A private layer must not outlive sbx even if it is killed; dropped after the root.
        let janitor = layer_root.as_ref().filter(|r| !r.kept).and_then(|r| {
            let dirs = std::slice::from_ref(&r.path);
            match how.return_before_teardown {
                true => Janitor::start_for_command(dirs, &[], None),
                false => Janitor::start(dirs, &[]),
            }
        });
        let mut plan = Plan::build(
            &self.profile,
            &self.vars,
            &RunOptions {
                command,
                landlock_abi,
                overlay_root: layer_root.as_ref().map(|r| r.path.clone()),
                observe: self.observe,
            },
        )?;
        if let Some(root) = &layer_root {
            layers_out_of_reach(root, &plan)?;
        }
        overlay::prepare(&mut plan.overlays).map_err(|source| Error::Overlay {
            path: layer_root
                .as_ref()
                .map(|r| r.path.clone())
                .unwrap_or_default(),
            source,
        })?;
        // Warnings quote profile values and paths: escaped on the terminal, raw in the report.
        for w in &plan.warnings {
            tracing::warn!("{}", escape(w));
        }
        for n in &plan.notes {
            tracing::info!("{}", escape(n));
        }
        // Fallbacks the profile accepts: quiet by default, named once with -v.
        for d in &plan.degradations {
            tracing::info!("degraded: {}", escape(d));
        }
        tracing::info!(
            profiles = self.names.join(","),
            mounts = plan.ops.len(),
            cwd = %escape_bytes(plan.exec.cwd.as_bytes()),
            "starting sandbox"
        );
        tracing::info!("protections: {}", diagnose::protections(&plan));
        let outcome = supervisor::run_with(&plan, how)?;
        if let Some(root) = layer_root.as_mut() {
            root.mark_used();
        }
        if let Some(status) = outcome.landlock {
            tracing::info!("landlock enforcement: {status:?}");
        }
        let (code, reason, message) = classify(&plan, &outcome);
        tracing::info!(
            "finished: {reason:?}, exit {code}, wall {:?}, cpu {:?} user + {:?} system",
            outcome.wall_time,
            outcome.usage.user,
            outcome.usage.system
        );
        let changes = overlay::report(&plan.overlays);
        for set in &changes {
            if let Some(why) = &set.incomplete {
                tracing::error!(
                    "the change report of {} is incomplete: {why}",
                    crate::text::escape(&set.destination)
                );
            }
        }
        if let Some(root) = layer_root.as_ref().filter(|r| r.kept) {
            match overlay::write_meta(root, &plan.overlays) {
                Ok(()) => tracing::info!("kept the changes in {}", escape_path(&root.path)),
                Err(e) => tracing::error!(
                    "cannot record the kept layers in {}: {e}",
                    escape_path(&root.path)
                ),
            }
        }
        let status = report::after_run(
            &plan,
            &outcome,
            report::Context {
                command: &shown,
                profiles: &self.names,
                landlock_abi,
                exit_code: code,
                reason,
                error: message.clone(),
                changes,
                cgroup: outcome.cgroup.as_ref().map(|(p, _)| p.clone()),
                cgroup_peak: outcome.cgroup.as_ref().and_then(|(_, s)| s.memory_peak),
                degradations: (plan.warnings.iter())
                    .chain(&plan.degradations)
                    .chain(&outcome.degradations)
                    .cloned()
                    .collect(),
            },
        );
        // The private layer goes first, then the janitor that would remove it if sbx died.
        drop(layer_root);
        drop(janitor);
        Ok(Finished {
            exit_code: code,
            status,
            message,
            observed: outcome.observed,
        })
    }

    /// Where writable overlays keep their upper layers: the --keep-changes directory, or a
    /// private one removed after the run; None without a writable overlay.
    fn layer_root(&self) -> Result<Option<LayerRoot>, Error> {
        let fs = &self.profile.filesystem;
        let writable = fs
            .overlay
            .iter()
            .any(|o| o.mode.unwrap_or(OverlayMode::Rw) == OverlayMode::Rw);
        if !writable {
            return Ok(None);
        }
        let root = match &fs.changes {
            Some(dir) => (Path::new(dir), LayerRoot::kept(Path::new(dir))),
            None => {
                let tmp = Path::new(&self.vars.tmpdir);
                (tmp, LayerRoot::private(tmp))
            }
        };
        match root {
            (_, Ok(r)) => Ok(Some(r)),
            (path, Err(source)) => Err(Error::Overlay {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

/// What a run means: the exit code sbx passes on, why, and what to tell the user.
fn classify(plan: &Plan, outcome: &Outcome) -> (i32, Reason, Option<String>) {
    let oom_kills = outcome
        .cgroup
        .as_ref()
        .and_then(|(_, s)| s.oom_kills)
        .unwrap_or(0);
    match outcome.failure {
        Some(f) if f.step == Step::Exec => (
            outcome.ending.code(),
            Reason::ExecFailed,
            Some(diagnose::exec_failure(plan, f.errno)),
        ),
        Some(f) => (
            EXIT_SBX_FAILED,
            Reason::SetupFailed,
            Some(diagnose::setup_failure(plan, &f)),
        ),
        None if !outcome.protected.is_empty() => {
            // Names the sandbox created: escaped here, kept raw in the report's
            // `protect.created`.
            let what: Vec<String> = outcome
                .protected
                .iter()
                .map(|t| match &t.moved_to {
                    Some(aside) => format!("{} (moved to {})", escape(&t.path), escape(aside)),
                    None => escape(&t.path),
                })
                .collect();
            let message = format!(
                "the command created or replaced a protected path, which host tools run or trust: \
                 {}; the run was ended (key filesystem.protect; `!PATH` lifts an entry)",
                what.join(", ")
            );
            (128 + libc::SIGKILL, Reason::ProtectedPath, Some(message))
        }
        None if outcome.timed_out => (EXIT_TIMEOUT, Reason::Timeout, None),
        None if outcome.crossed.is_some() => {
            let (reason, message) = match outcome.crossed.expect("checked") {
                Crossed::Memory { used, limit } => (
                    Reason::MemoryLimit,
                    format!(
                        "the sandbox used {} MiB of memory, over its limits.memory of {} MiB: \
                         killed",
                        used >> 20,
                        limit >> 20
                    ),
                ),
                Crossed::Processes { count, limit } => (
                    Reason::ProcessLimit,
                    format!(
                        "the sandbox reached {count} tasks, its limits.processes of {limit}: killed"
                    ),
                ),
            };
            (128 + libc::SIGKILL, reason, Some(message))
        }
        None => match outcome.payload.unwrap_or(outcome.ending) {
            Ending::Signaled(n) if n == libc::SIGKILL && oom_kills > 0 => {
                let limit = plan.limits.cgroup.memory_max.map_or(String::new(), |b| {
                    format!(", its limits.memory of {} MiB", b >> 20)
                });
                let message = format!(
                    "the sandbox reached its cgroup's memory.max{limit}: the kernel's OOM killer \
                     ended it"
                );
                (128 + n, Reason::Oom, Some(message))
            }
            Ending::Signaled(n) => (128 + n, Reason::Signaled, None),
            Ending::Exited(c) => (c, Reason::Exited, None),
        },
    }
}

/// The overlays' layers (a kept directory, or the private one in `$TMPDIR`) must lie outside
/// every directory the command can write through a bind: there it could swap the upper layer
/// for a symlink, and the change report and `sbx apply` would read whatever it points to.
fn layers_out_of_reach(root: &LayerRoot, plan: &Plan) -> Result<(), Error> {
    let at = std::fs::canonicalize(&root.path).unwrap_or_else(|_| root.path.clone());
    let Some(bind) = plan
        .writable_host_dirs()
        .into_iter()
        .find(|dir| at.starts_with(dir))
    else {
        return Ok(());
    };
    let (what, fix) = match root.kept {
        true => ("--keep-changes directory", "keep the changes outside it"),
        false => (
            "private layer directory (in $TMPDIR)",
            "point TMPDIR outside it",
        ),
    };
    Err(Error::Overlay {
        path: root.path.clone(),
        source: std::io::Error::other(format!(
            "the {what} lies in {}, which the command can write (a read-write bind): it could \
             replace the layers the change report and `sbx apply` read; {fix}",
            escape_path(&bind)
        )),
    })
}
