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
//! assert_eq!(finished.status.reason, sbx::report::Reason::Exited);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod run;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use crate::profile::LimitError;

use crate::error::Error;
use crate::plan::{Plan, RunOptions};
use crate::profile::{self, Loader, NetMode, OverlayMode, ProfileFile, Sourced, Vars, set_limit};
use crate::report::RunStatus;
use crate::sys;

/// A sandbox description: profiles merged in order, then overrides.
#[derive(Clone, Debug)]
pub struct Sandbox {
    vars: Vars,
    names: Vec<String>,
    profile: ProfileFile,
    observe: bool,
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
    /// The paths the command named, with what it did to each (see [`Sandbox::observe`]).
    pub observed: Option<crate::intercept::Observed>,
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
            observe: false,
        }
    }

    /// Merges a profile by name (built-in or user) or path over what is there.
    pub fn profile(mut self, name: &str) -> Result<Sandbox, Error> {
        let p = Loader::new(self.vars.clone()).load(name)?;
        self.profile = profile::merge(self.profile, p);
        self.names.push(name.to_string());
        Ok(self)
    }

    /// Records the paths the command names (what `sbx learn` and `--trace-denials` read),
    /// returned in [`Finished::observed`]. Each such call waits for sbx: slower, never
    /// weaker (the mounts and landlock decide as without it).
    pub fn observe(mut self, on: bool) -> Sandbox {
        self.observe = on;
        self
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
    pub fn limit(self, key: &str, value: &str) -> Result<Sandbox, LimitError> {
        let mut l = ProfileFile::default();
        set_limit(&mut l.limits, key, value)?;
        Ok(self.layer(l))
    }

    /// Chooses the network: `None` (only lo), `Host`, or `Proxy` with an allowlist.
    pub fn network(self, mode: NetMode, allow: &[&str]) -> Sandbox {
        self.layer(layer(|p| {
            p.network.mode = Some(mode);
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
            landlock_abi: sys::landlock_abi(),
            // Where a private layer would go; nothing is created for a plan alone.
            overlay_root: Some(PathBuf::from(&self.vars.tmpdir).join("sbx-layers")),
            observe: self.observe,
        };
        Ok(Plan::build(&self.profile, &self.vars, &opts)?)
    }
}
