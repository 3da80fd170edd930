//! The run options: what the command line asks of one run, and the same as a profile layer
//! merged over the profiles (the command line wins).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;

use crate::error::Error;
use crate::profile::{
    BindSpec, Enforcement, LimitError, NetMode, Overlay, OverlayMode, ProcMode, ProfileFile,
    Sourced, Vars, absolute_in, entry_in, set_limit, split_assignment,
};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Profile name or path to a TOML file; repeatable, later ones win [default: default]
    #[arg(short = 'p', long = "profile", value_name = "NAME|PATH")]
    pub profiles: Vec<String>,
    /// Bind SRC read-write at DST (default: the same path); a ? ending the entry skips a
    /// missing SRC; a relative SRC (`..` too) is relative to the current directory
    #[arg(long, value_name = "SRC[:DST]")]
    pub bind: Vec<String>,
    /// Bind SRC read-only (recursively, submounts included) at DST
    #[arg(long = "ro-bind", value_name = "SRC[:DST]")]
    pub ro_bind: Vec<String>,
    /// Protect PATH (relative to each writable bind, or absolute): read-only inside if it
    /// exists, and the run ends if the command creates it; `!PATH` lifts a protected path
    /// (repeatable)
    #[arg(long, value_name = "PATH", allow_hyphen_values = true)]
    pub protect: Vec<String>,
    /// Hide the host path PATH (a credential file or directory) wherever a bind or overlay
    /// shows it: an empty read-only stand-in covers it; `!PATH` lifts one the profile hides
    /// (repeatable)
    #[arg(long, value_name = "PATH", allow_hyphen_values = true)]
    pub hide: Vec<String>,
    /// Let git inside the sandbox commit, branch and fetch: .git becomes writable, while its
    /// config, hooks, info and the other files host git runs code from stay protected
    #[arg(long = "git-writes")]
    pub git_writes: bool,
    /// Mount a fresh tmpfs at DST
    #[arg(long, value_name = "DST")]
    pub tmpfs: Vec<String>,
    /// Set an environment variable for the command
    #[arg(long, value_name = "KEY=VALUE")]
    pub setenv: Vec<String>,
    /// Remove an environment variable the profile would pass or set
    #[arg(long, value_name = "KEY")]
    pub unsetenv: Vec<String>,
    /// Start the command in DIR (a path inside the sandbox) instead of the current directory
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<String>,
    /// Hostname inside the sandbox (needs the UTS namespace); a trailing ? sets it only where
    /// the environment allows (a container's seccomp filter may deny sethostname)
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// /proc: fresh (the sandbox's own, with a PID namespace), host (the /proc sbx sees,
    /// bound as it is, and no PID namespace: for containers whose masked /proc refuses a
    /// fresh one), or off
    #[arg(long, value_enum, value_name = "MODE")]
    pub proc: Option<ProcMode>,
    /// Network: none (private namespace, only lo), on (the internet but not the host: public
    /// addresses, DNS answered by sbx), proxy (only the hosts allowed with --allow, for every
    /// program, with sbx's HTTP/SOCKS5 proxy for the tools that want one), or host (share the
    /// host's network)
    #[arg(long, value_enum, value_name = "MODE")]
    pub net: Option<NetMode>,
    /// With --net proxy: a destination the sandbox may reach (HOST:PORT, *.DOMAIN:PORT, PORT
    /// may be *); with --net on: an internal address it may reach besides the internet; with
    /// either, 127.0.0.1:PORT (or localhost:PORT) maps that host port in; repeatable
    #[arg(long, value_name = "HOST:PORT")]
    pub allow: Vec<String>,
    /// Landlock (security.landlock): required (the default: exit 125 where the kernel lacks
    /// what the profile needs), best-effort (run with what the kernel has; -v and the run
    /// report name what is missing, e.g. on Linux before 5.13, which has no landlock), or off
    #[arg(long, value_enum, value_name = "MODE")]
    pub landlock: Option<Enforcement>,
    /// Map your uid and gid to 0 inside (still no privileges on the host)
    #[arg(long)]
    pub map_root: bool,
    /// Give the command a pseudo-terminal of its own and relay it (job control, Ctrl-C and
    /// Ctrl-Z keep working in the new session), whenever stdin is a terminal; the default when
    /// stdin, stdout and stderr all are and sbx runs in the terminal's foreground
    #[arg(long, conflicts_with = "no_pty")]
    pub pty: bool,
    /// No pseudo-terminal: the command shares the caller's terminal, in a session of its own
    /// (Ctrl-C reaches only the command's first process)
    #[arg(long = "no-pty")]
    pub no_pty: bool,
    /// Run the command itself as PID 1 (no sbx init; it must reap its own children)
    #[arg(long = "as-pid-1")]
    pub as_pid_1: bool,
    /// Show host directory SRC at DST (default the same path) through a writable overlay: the
    /// command's writes go to a private layer, reported and thrown away (see --keep-changes)
    #[arg(long, value_name = "SRC[:DST]")]
    pub overlay: Vec<String>,
    /// Like --overlay, read-only (the layers merged, no writes)
    #[arg(long = "ro-overlay", value_name = "SRC[:DST]")]
    pub ro_overlay: Vec<String>,
    /// Like --overlay, with writes in a tmpfs (size-limited by tmpfs_size) and never reported
    #[arg(long = "tmp-overlay", value_name = "SRC[:DST]")]
    pub tmp_overlay: Vec<String>,
    /// Keep the writable overlays' upper layers in DIR (new or empty) for `sbx changes` and
    /// `sbx apply`
    #[arg(long = "keep-changes", value_name = "DIR")]
    pub keep_changes: Option<PathBuf>,
    /// Write the change report (JSON) of the writable overlays to FILE (`-` for stderr)
    #[arg(long, value_name = "FILE")]
    pub changes: Option<String>,
    /// Wall-clock limit (e.g. 90s, 10m): SIGTERM, then SIGKILL after the grace period; exit 124
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub timeout: Option<String>,
    /// Memory limit (e.g. 512M, 2G): per process as RLIMIT_DATA, for the sandbox with a cgroup
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Any `[limits]` key, e.g. processes=64, file_size=1G, tmpfs_size=256M, cgroup=required
    #[arg(long = "limit", value_name = "KEY=VALUE", allow_hyphen_values = true)]
    pub limit: Vec<String>,
    /// Write a JSON run report to FILE when the run ends (`-` for stderr, a number for an fd)
    #[arg(long = "json-status", value_name = "FILE")]
    pub json_status: Option<String>,
    /// Record the paths the command names (slower: each such call waits for sbx) and, when it
    /// fails, name on one line those the sandbox refused, each with the profile line that
    /// decided and the option that would allow it; the run report's `denials` has them all
    #[arg(long = "trace-denials")]
    pub trace_denials: bool,
    /// Print the resolved plan (namespaces, every mount in order, environment, limits, landlock
    /// rules, seccomp policy, network) and exit without running anything
    #[arg(long)]
    pub explain: bool,
    /// More output: -v shows each step, -vv debug details
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long)]
    pub quiet: bool,
    /// The command and its arguments
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

impl RunArgs {
    /// The command line as a profile layer, merged over the profiles.
    pub fn to_layer(&self, vars: &Vars) -> Result<ProfileFile, Error> {
        let mut p = ProfileFile::default();
        // Relative paths are relative to the current directory, as in bwrap and a shell,
        // `..` included (resolved here: the plan refuses `..` in what it mounts).
        let absolute = |path: &str| absolute_in(&vars.cwd, path);
        let entry = |e: &str| entry_in(&vars.cwd, e);
        let sourced = |list: &[String], key, place: &dyn Fn(&str) -> String| {
            list.iter()
                .map(|b| Sourced::new(place(b), "the command line", key))
                .collect()
        };
        let fs = &mut p.filesystem;
        fs.rw = sourced(&self.bind, "--bind", &entry);
        fs.ro = sourced(&self.ro_bind, "--ro-bind", &entry);
        fs.tmpfs = sourced(&self.tmpfs, "--tmpfs", &|t| t.to_string());
        fs.protect = sourced(&self.protect, "--protect", &|t| t.to_string());
        fs.hide = sourced(&self.hide, "--hide", &|h| match h.strip_prefix('!') {
            Some(lifted) => format!("!{}", absolute(lifted)),
            None => absolute(h),
        });
        if self.git_writes {
            fs.protect
                .push(Sourced::new("!.git", "the command line", "--git-writes"));
        }
        for kv in &self.setenv {
            let (k, v) = kv
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| Error::Usage(format!("--setenv {kv:?}: expected KEY=VALUE")))?;
            p.env.set.insert(k.to_string(), v.to_string());
        }
        p.env.unset = self.unsetenv.clone();
        p.process.chdir = self.chdir.clone();
        p.process.hostname = self.hostname.clone();
        p.filesystem.proc = self.proc;
        p.process.map_root = self.map_root.then_some(true);
        p.process.as_pid_1 = self.as_pid_1.then_some(true);
        p.process.pty = match (self.pty, self.no_pty) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        p.network.allow = self.allow.clone();
        p.network.mode = self.net;
        p.security.landlock = self.landlock;
        for (list, mode) in [
            (&self.overlay, OverlayMode::Rw),
            (&self.ro_overlay, OverlayMode::Ro),
            (&self.tmp_overlay, OverlayMode::Tmp),
        ] {
            for entry in list {
                let spec = BindSpec::parse(entry);
                if spec.optional {
                    return Err(Error::Usage(format!(
                        "{entry:?}: overlays cannot be optional"
                    )));
                }
                p.filesystem.overlay.push(Overlay {
                    src: Sourced::new(absolute(spec.src), "the command line", "--overlay"),
                    dst: (spec.dst != spec.src).then(|| spec.dst.to_string()),
                    mode: Some(mode),
                    lower: Vec::new(),
                });
            }
        }
        if let Some(dir) = &self.keep_changes {
            p.filesystem.changes = Some(absolute(&dir.to_string_lossy()));
        }
        for kv in &self.limit {
            let (key, value) = split_assignment(kv).map_err(|e| flag("--limit", kv, e))?;
            set_limit(&mut p.limits, key, value).map_err(|e| flag("--limit", kv, e))?;
        }
        if let Some(t) = &self.timeout {
            set_limit(&mut p.limits, "wall_time", t).map_err(|e| flag("--timeout", t, e))?;
        }
        if let Some(m) = &self.memory {
            set_limit(&mut p.limits, "memory", m).map_err(|e| flag("--memory", m, e))?;
        }
        Ok(p)
    }
}

/// A limit's error, prefixed with the option that set it.
fn flag(option: &str, value: &str, e: LimitError) -> Error {
    Error::Usage(format!("{option} {value}: {e}"))
}
