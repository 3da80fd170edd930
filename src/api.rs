//! The library API: what the `sbx` command does, for programs that embed it. Build a sandbox
//! from profiles and overrides, run a command, read the run report.
//!
//! ```
//! use sbx::Sandbox;
//!
//! // The default profile, the current directory read-only, a 10 s wall clock.
//! let sandbox = Sandbox::new()?
//!     .profile("default")?
//!     .ro_bind(std::env::current_dir()?, None)
//!     .limit("wall_time", "10s")?;
//! // The resolved plan can be inspected without running anything.
//! let plan = sandbox.plan(["sh", "-c", "exit 3"])?;
//! assert!(plan.namespaces.pid && plan.namespaces.net);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Running it blocks the calling thread until the command ends; other threads go on. The
//! sandbox's processes are started with a raw `clone` and never allocate before `execve`, and
//! the end of the run is watched through a pidfd, so this is safe from a multi-threaded program:
//!
//! ```
//! # use sbx::Sandbox;
//! # if nix::unistd::geteuid().is_root() {
//! #     // The project's rule: sandboxes in tests run unprivileged; as root this example only
//! #     // builds the sandbox.
//! #     println!("NOTE: running as root; the example does not start a sandbox");
//! #     return Ok(());
//! # }
//! let finished = Sandbox::new()?.profile("default")?.run(["sh", "-c", "exit 3"])?;
//! assert_eq!(finished.exit_code, 3);
//! assert_eq!(finished.status.reason, sbx::status::Reason::Exited);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::overlay::{self, LayerRoot};
use crate::plan::{Plan, RunOptions};
use crate::profile::{self, Loader, NetMode, OverlayMode, ProfileFile, Sourced, Vars};
use crate::sandbox::report::Step;
use crate::status::{self, Reason, RunStatus};
use crate::supervisor::{self, Ending, Supervision};
use crate::{diagnose, sandbox};

/// Exit code for sbx's own failures: the command never ran.
pub const EXIT_SBX_FAILED: i32 = 125;
/// Exit code when the wall-clock limit fired.
pub const EXIT_TIMEOUT: i32 = 124;

/// A sandbox description: profiles merged in order, then overrides.
#[derive(Clone, Debug)]
pub struct Sandbox {
    vars: Vars,
    names: Vec<String>,
    profile: ProfileFile,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The exit code the `sbx` command would exit with (the contract in README).
    pub exit_code: i32,
    /// The run report, as `--json-status` writes it.
    pub status: RunStatus,
    /// The message the `sbx` command would print, if the command never ran or could not be
    /// executed.
    pub message: Option<String>,
}

fn layer(f: impl FnOnce(&mut ProfileFile)) -> ProfileFile {
    let mut p = ProfileFile::default();
    f(&mut p);
    p
}

impl Sandbox {
    /// No profile yet, with variables (`${HOME}`, `${CWD}`, ...) taken from this process.
    pub fn new() -> Result<Sandbox, Error> {
        Ok(Sandbox::with_vars(Vars::from_host()?))
    }

    pub fn with_vars(vars: Vars) -> Sandbox {
        Sandbox {
            vars,
            names: Vec::new(),
            profile: ProfileFile::default(),
        }
    }

    /// Merges a profile by name (built-in or user) or path over what is there.
    pub fn profile(mut self, name: &str) -> Result<Sandbox, Error> {
        let p = Loader::new(self.vars.clone()).load(name)?;
        self.profile = profile::merge(self.profile, p);
        self.names.push(name.to_string());
        Ok(self)
    }

    /// Merges a profile layer built in code over what is there.
    pub fn layer(mut self, layer: ProfileFile) -> Sandbox {
        self.profile = profile::merge(self.profile, layer);
        self
    }

    /// The merged profile so far.
    pub fn profile_file(&self) -> &ProfileFile {
        &self.profile
    }

    fn path_entry(src: &Path, dst: Option<&Path>) -> String {
        match dst {
            Some(d) => format!("{}:{}", src.display(), d.display()),
            None => src.display().to_string(),
        }
    }

    /// Binds a host path read-write (at `dst`, default the same path).
    pub fn bind(self, src: impl AsRef<Path>, dst: Option<&Path>) -> Sandbox {
        let e = Self::path_entry(src.as_ref(), dst);
        self.layer(layer(|p| {
            p.filesystem.rw.push(Sourced::new(e, "the library", "bind"))
        }))
    }

    /// Binds a host path read-only, recursively.
    pub fn ro_bind(self, src: impl AsRef<Path>, dst: Option<&Path>) -> Sandbox {
        let e = Self::path_entry(src.as_ref(), dst);
        self.layer(layer(|p| {
            p.filesystem
                .ro
                .push(Sourced::new(e, "the library", "ro_bind"))
        }))
    }

    /// Mounts a fresh tmpfs.
    pub fn tmpfs(self, dst: impl AsRef<Path>) -> Sandbox {
        let e = dst.as_ref().display().to_string();
        self.layer(layer(|p| {
            p.filesystem
                .tmpfs
                .push(Sourced::new(e, "the library", "tmpfs"))
        }))
    }

    /// Shows a host directory through an overlay (`Rw`: writes reported, then thrown away).
    pub fn overlay(self, src: impl AsRef<Path>, mode: OverlayMode) -> Sandbox {
        let src = src.as_ref().display().to_string();
        self.layer(layer(|p| {
            p.filesystem.overlay.push(profile::Overlay {
                src: Sourced::new(src, "the library", "overlay"),
                dst: None,
                mode: Some(mode),
                lower: Vec::new(),
            })
        }))
    }

    /// Sets an environment variable for the command.
    pub fn env(self, key: &str, value: &str) -> Sandbox {
        self.layer(layer(|p| {
            p.env.set.insert(key.to_string(), value.to_string());
        }))
    }

    /// Sets any `[limits]` key from its text form (`memory`, `"512M"`).
    pub fn limit(self, key: &str, value: &str) -> Result<Sandbox, Error> {
        let mut l = ProfileFile::default();
        set_limit(&mut l.limits, &format!("{key}={value}"))?;
        crate::plan::limits::check(&l.limits, "the library")?;
        Ok(self.layer(l))
    }

    /// Chooses the network: `None` (only lo), `Host`, or `Proxy` with an allowlist.
    pub fn network(self, mode: NetMode, allow: &[&str]) -> Sandbox {
        self.layer(layer(|p| {
            p.network.mode = Some(mode);
            p.namespaces.net = Some(mode != NetMode::Host);
            p.network.allow = allow.iter().map(|a| a.to_string()).collect();
        }))
    }

    /// Resolves everything the run needs, without running it (what `--explain` prints).
    pub fn plan<I, S>(&self, command: I) -> Result<Plan, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let command: Vec<OsString> = command.into_iter().map(Into::into).collect();
        let opts = RunOptions {
            command,
            landlock_abi: sandbox::sys::landlock_abi(),
            // Where a private layer would go; nothing is created for a plan alone.
            overlay_root: Some(PathBuf::from(&self.vars.tmpdir).join("sbx-layers")),
        };
        Ok(Plan::build(&self.profile, &self.vars, &opts)?)
    }

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
        let names = self.names.clone();
        let landlock_abi = sandbox::sys::landlock_abi();
        let writable_overlay = self
            .profile
            .filesystem
            .overlay
            .iter()
            .any(|o| o.mode.unwrap_or(OverlayMode::Rw) == OverlayMode::Rw);
        let mut layer_root = match (&self.profile.filesystem.changes, writable_overlay) {
            (_, false) => None,
            (Some(dir), true) => Some(LayerRoot::kept(Path::new(dir))),
            (None, true) => Some(LayerRoot::private(Path::new(&self.vars.tmpdir))),
        }
        .transpose()
        .map_err(|e| Error::Usage(format!("overlay layers: {e}")))?;
        let plan = Plan::build(
            &self.profile,
            &self.vars,
            &RunOptions {
                command,
                landlock_abi,
                overlay_root: layer_root.as_ref().map(|r| r.path.clone()),
            },
        )?;
        overlay::prepare(&plan.overlays)
            .map_err(|e| Error::Usage(format!("overlay layers: {e}")))?;
        for w in &plan.warnings {
            tracing::warn!("{w}");
        }
        tracing::info!(
            profiles = names.join(","),
            mounts = plan.ops.len(),
            cwd = %plan.exec.cwd.to_string_lossy(),
            "starting sandbox"
        );
        tracing::info!("layers: {}", diagnose::layers(&plan));
        let outcome = supervisor::run_with(&plan, how)?;
        if let Some(root) = layer_root.as_mut() {
            root.mark_used();
        }
        if let Some(status) = outcome.landlock {
            tracing::info!("landlock enforcement: {status:?}");
        }
        let oom_kills = outcome
            .cgroup
            .as_ref()
            .and_then(|(_, s)| s.oom_kills)
            .unwrap_or(0);
        let (code, reason, message) = match outcome.failure {
            Some(f) if f.step == Step::Exec => (
                outcome.ending.code(),
                Reason::ExecFailed,
                Some(diagnose::exec_failure(&plan, f.errno)),
            ),
            Some(f) => (
                EXIT_SBX_FAILED,
                Reason::SetupFailed,
                Some(diagnose::setup_failure(&plan, &f)),
            ),
            None if outcome.timed_out => (EXIT_TIMEOUT, Reason::Timeout, None),
            None => match outcome.payload.unwrap_or(outcome.ending) {
                Ending::Signaled(n) if n == libc::SIGKILL && oom_kills > 0 => {
                    (128 + n, Reason::Oom, None)
                }
                Ending::Signaled(n) => (128 + n, Reason::Signaled, None),
                Ending::Exited(c) => (c, Reason::Exited, None),
            },
        };
        tracing::info!(
            "finished: {reason:?}, exit {code}, wall {:?}, cpu {:?} user + {:?} system",
            outcome.wall_time,
            outcome.usage.user,
            outcome.usage.system
        );
        let changes = if plan.overlays.is_empty() {
            Vec::new()
        } else {
            overlay::report(&plan.overlays).unwrap_or_else(|e| {
                tracing::error!("cannot read the overlay's changes: {e}");
                Vec::new()
            })
        };
        if let Some(root) = layer_root.as_ref().filter(|r| r.kept) {
            match overlay::write_meta(&root.path, &plan.overlays) {
                Ok(()) => tracing::info!("kept the changes in {}", root.path.display()),
                Err(e) => tracing::error!(
                    "cannot record the kept layers in {}: {e}",
                    root.path.display()
                ),
            }
        }
        let status = status::after_run(
            &plan,
            &outcome,
            status::Context {
                command: &shown,
                profiles: &names,
                landlock_abi,
                exit_code: code,
                reason,
                error: message.clone(),
                changes,
                cgroup: outcome.cgroup.as_ref().map(|(p, _)| p.clone()),
                cgroup_peak: outcome.cgroup.as_ref().and_then(|(_, s)| s.memory_peak),
                degradations: plan
                    .warnings
                    .iter()
                    .chain(&outcome.degradations)
                    .cloned()
                    .collect(),
            },
        );
        Ok(Finished {
            exit_code: code,
            status,
            message,
        })
    }
}

/// Applies `KEY=VALUE` to a `[limits]` section (the form of `--limit`).
pub fn set_limit(l: &mut profile::Limits, kv: &str) -> Result<(), Error> {
    let (key, value) = kv
        .split_once('=')
        .ok_or_else(|| Error::Usage(format!("--limit {kv:?}: expected KEY=VALUE")))?;
    let bad = |what: &str| Error::Usage(format!("--limit {key}={value:?}: {what}"));
    let number = || match value.trim() {
        "unlimited" => Ok(profile::Count::Unlimited),
        v => v
            .parse::<u64>()
            .map(profile::Count::Limit)
            .map_err(|_| bad("expected a whole number or unlimited")),
    };
    match key {
        "wall_time" => l.wall_time = Some(value.into()),
        "kill_grace" => l.kill_grace = Some(value.into()),
        "memory" => l.memory = Some(value.into()),
        "processes" => l.processes = Some(number()?),
        "open_files" => l.open_files = Some(number()?),
        "file_size" => l.file_size = Some(value.into()),
        "cpu_time" => l.cpu_time = Some(value.into()),
        "stack" => l.stack = Some(value.into()),
        "core" => l.core = Some(value.into()),
        "tmpfs_size" => l.tmpfs_size = Some(value.into()),
        "cpus" => {
            l.cpus = Some(
                value
                    .trim()
                    .parse()
                    .map_err(|_| bad("expected a number of CPUs"))?,
            )
        }
        "cgroup" => {
            l.cgroup = Some(match value {
                "required" => profile::Enforcement::Required,
                "best-effort" => profile::Enforcement::BestEffort,
                "off" => profile::Enforcement::Off,
                _ => return Err(bad("expected required, best-effort or off")),
            })
        }
        _ => {
            return Err(Error::Usage(format!(
                "--limit {kv:?}: unknown limit `{key}` (known: wall_time, kill_grace, memory, processes, \
                 open_files, file_size, cpu_time, stack, core, tmpfs_size, cpus, cgroup)"
            )));
        }
    }
    Ok(())
}
