//! The command line: clap definitions, overrides merged into the profile as its last layer,
//! and the dispatch of subcommands.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::api::Sandbox;
pub use crate::api::{EXIT_SBX_FAILED, EXIT_TIMEOUT};
use crate::diagnose;
use crate::error::Error;
use crate::overlay;
use crate::plan::{Plan, RunOptions};
use crate::profile::{self, Loader, NetMode, ProfileFile, Sourced, Vars};
use crate::status::{self, Destination};
use crate::supervisor::Supervision;

#[derive(Debug, Parser)]
#[command(
    name = "sbx",
    version,
    about = "Run a command in a rootless sandbox: new namespaces, a tmpfs root, TOML profiles",
    long_about = None,
    args_conflicts_with_subcommands = true,
    after_help = "Exit codes: the command's own; 128+N when killed by signal N; 124 timeout; \
                  125 sbx failed (the command never ran); 126 not executable; 127 not found."
)]
pub struct Cli {
    #[command(subcommand)]
    pub sub: Option<Sub>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Sub {
    /// List, show or check profiles
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Check what this host supports (user namespaces, landlock, seccomp, cgroups, ...)
    Doctor {
        /// Print JSON for machines
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (generated from the command-line definition)
    Completions {
        /// bash, zsh or fish (also elvish, powershell)
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `sbx man > /usr/local/share/man/man1/sbx.1`
    Man,
    /// Report what a run changed, from a directory kept with --keep-changes
    Changes {
        /// The kept directory
        dir: PathBuf,
        /// Print JSON instead of one line per path
        #[arg(long)]
        json: bool,
    },
    /// Copy a kept upper layer onto the host tree it was taken from
    Apply {
        /// The kept directory
        dir: PathBuf,
        /// Only say what would be done
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfileCmd {
    /// List the built-in profiles and the user's own
    List,
    /// Print the fully merged profile(s) as TOML that loads back identically
    Show {
        /// Profile names or paths, merged in order
        #[arg(default_value = "default")]
        names: Vec<String>,
    },
    /// Load a profile file, resolve its extends and paths, and report problems
    Check {
        /// The profile file
        file: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NetArg {
    /// A private network namespace with only lo
    None,
    /// Share the host's network
    Host,
    /// A private network namespace whose only way out is sbx's proxy (see --allow)
    Proxy,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Profile name or path to a TOML file; repeatable, later ones win [default: default]
    #[arg(short = 'p', long = "profile", value_name = "NAME|PATH")]
    pub profiles: Vec<String>,
    /// Bind SRC read-write at DST (default: the same path); a trailing ? skips a missing SRC
    #[arg(long, value_name = "SRC[:DST]")]
    pub bind: Vec<String>,
    /// Bind SRC read-only (recursively, submounts included) at DST
    #[arg(long = "ro-bind", value_name = "SRC[:DST]")]
    pub ro_bind: Vec<String>,
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
    /// Hostname inside the sandbox (needs the UTS namespace)
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Network: none (private namespace, only lo), host (share the host's), or proxy (only
    /// the hosts allowed with --allow, through sbx's HTTP/SOCKS5 proxy)
    #[arg(long, value_enum, value_name = "MODE")]
    pub net: Option<NetArg>,
    /// With --net proxy: a destination the proxy may connect to (HOST:PORT, *.DOMAIN:PORT,
    /// PORT may be *); repeatable
    #[arg(long, value_name = "HOST:PORT")]
    pub allow: Vec<String>,
    /// Map your uid and gid to 0 inside (still no privileges on the host)
    #[arg(long)]
    pub map_root: bool,
    /// Give the command a pseudo-terminal of its own and relay it (for interactive shells:
    /// job control and Ctrl-C keep working in the new session); only when stdin is a terminal
    #[arg(long)]
    pub pty: bool,
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
    /// Any [limits] key, e.g. processes=64, file_size=1G, tmpfs_size=256M, cgroup=required
    #[arg(long = "limit", value_name = "KEY=VALUE", allow_hyphen_values = true)]
    pub limit: Vec<String>,
    /// Write a JSON run report to FILE when the run ends (`-` for stderr, a number for an fd)
    #[arg(long = "json-status", value_name = "FILE")]
    pub json_status: Option<String>,
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
    pub fn overlay(&self, vars: &Vars) -> Result<ProfileFile, Error> {
        let mut p = ProfileFile::default();
        let absolute = |entry: &str| -> String {
            // Relative sources are relative to the current directory, as in bwrap.
            if entry.starts_with('/') {
                entry.to_string()
            } else {
                Path::new(&vars.cwd).join(entry).display().to_string()
            }
        };
        let fs = &mut p.filesystem;
        fs.rw = self
            .bind
            .iter()
            .map(|b| Sourced::new(absolute(b), "the command line", "--bind"))
            .collect();
        fs.ro = self
            .ro_bind
            .iter()
            .map(|b| Sourced::new(absolute(b), "the command line", "--ro-bind"))
            .collect();
        fs.tmpfs = self
            .tmpfs
            .iter()
            .map(|t| Sourced::new(t.clone(), "the command line", "--tmpfs"))
            .collect();
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
        if self.map_root {
            p.process.map_root = Some(true);
        }
        if self.as_pid_1 {
            p.process.as_pid_1 = Some(true);
        }
        if self.pty {
            p.process.pty = Some(true);
        }
        p.network.allow = self.allow.clone();
        for (list, mode) in [
            (&self.overlay, profile::OverlayMode::Rw),
            (&self.ro_overlay, profile::OverlayMode::Ro),
            (&self.tmp_overlay, profile::OverlayMode::Tmp),
        ] {
            for entry in list {
                let spec = profile::BindSpec::parse(entry);
                if spec.optional {
                    return Err(Error::Usage(format!(
                        "{entry:?}: overlays cannot be optional"
                    )));
                }
                p.filesystem.overlay.push(profile::Overlay {
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
            crate::api::set_limit(&mut p.limits, kv)?;
        }
        if let Some(t) = &self.timeout {
            p.limits.wall_time = Some(t.clone());
        }
        if let Some(m) = &self.memory {
            p.limits.memory = Some(m.clone());
        }
        crate::plan::limits::check(&p.limits, "the command line")?;
        match self.net {
            Some(NetArg::None) => {
                p.network.mode = Some(NetMode::None);
                p.namespaces.net = Some(true);
            }
            Some(NetArg::Host) => {
                p.network.mode = Some(NetMode::Host);
                p.namespaces.net = Some(false);
            }
            Some(NetArg::Proxy) => {
                p.network.mode = Some(NetMode::Proxy);
                p.namespaces.net = Some(true);
            }
            None => {}
        }
        Ok(p)
    }
}

fn init_logging(run: &RunArgs) {
    let level = match (run.quiet, run.verbose) {
        (true, _) => tracing::Level::ERROR,
        (false, 0) => tracing::Level::WARN,
        (false, 1) => tracing::Level::INFO,
        (false, _) => tracing::Level::DEBUG,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// Parses the command line, runs, and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => EXIT_SBX_FAILED,
            };
        }
    };
    init_logging(&cli.run);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sbx: {e}");
            EXIT_SBX_FAILED
        }
    }
}

fn dispatch(cli: Cli) -> Result<i32, Error> {
    let vars = Vars::from_host()?;
    match cli.sub {
        Some(Sub::Profile(cmd)) => profile_cmd(cmd, vars),
        Some(Sub::Changes { dir, json }) => changes_cmd(&dir, json),
        Some(Sub::Completions { shell }) => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "sbx", &mut std::io::stdout());
            Ok(0)
        }
        Some(Sub::Man) => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| Error::Usage(format!("cannot write the man page: {e}")))?;
            Ok(0)
        }
        Some(Sub::Doctor { json }) => {
            let report = crate::doctor::run(&crate::doctor::root_from_env());
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", crate::doctor::render(&report, use_color()));
            }
            Ok(if report.default_profile_runs { 0 } else { 1 })
        }
        Some(Sub::Apply { dir, dry_run }) => apply_cmd(&dir, dry_run),
        None => run(&cli.run, vars),
    }
}

fn run(args: &RunArgs, vars: Vars) -> Result<i32, Error> {
    let names = if args.profiles.is_empty() {
        vec!["default".to_string()]
    } else {
        args.profiles.clone()
    };
    let command: Vec<String> = args
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let dest = args.json_status.as_deref().map(Destination::parse);
    let result = run_sandbox(args, vars, &names);
    if let (Some(dest), false) = (dest, args.explain) {
        let report = match &result {
            Ok((_, status)) => status.clone(),
            Err(e) => status::before_run(&command, &names, &e.to_string()),
        };
        if let Err(e) = dest.write(&report) {
            tracing::error!("cannot write the run report to {dest:?}: {e}");
        }
    }
    match result {
        Err(Error::Explained) => Ok(0),
        r => r.map(|(code, _)| code),
    }
}

fn run_sandbox(
    args: &RunArgs,
    vars: Vars,
    names: &[String],
) -> Result<(i32, status::RunStatus), Error> {
    if args.command.is_empty() {
        return Err(Error::Usage(
            "no command given: usage is `sbx [OPTIONS] [--] COMMAND [ARGS...]` (see --help)".into(),
        ));
    }
    let mut sandbox = Sandbox::with_vars(vars.clone());
    for name in names {
        sandbox = sandbox.profile(name)?;
    }
    if args.hostname.is_some() && sandbox.profile_file().namespaces.uts == Some(false) {
        return Err(Error::Usage(
            "--hostname needs the UTS namespace, which the profile turns off".into(),
        ));
    }
    let sandbox = sandbox.layer(args.overlay(&vars)?);
    if args.explain {
        print!(
            "{}",
            diagnose::explain(&sandbox.plan(args.command.clone())?)
        );
        return Err(Error::Explained);
    }
    let finished = sandbox.run_with(
        args.command.clone(),
        Supervision {
            forward_signals: true,
            return_before_teardown: true,
        },
    )?;
    if let Some(m) = &finished.message {
        eprintln!("sbx: {m}");
    }
    if let Some(dest) = &args.changes {
        if let Err(e) = Destination::parse(dest).write_json(&finished.status.changes) {
            tracing::error!("cannot write the change report to {dest}: {e}");
        }
    }
    Ok((finished.exit_code, finished.status))
}

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

fn changes_cmd(dir: &Path, json: bool) -> Result<i32, Error> {
    let meta = overlay::read_meta(dir).map_err(|e| Error::Usage(e.to_string()))?;
    let mut sets = Vec::new();
    for o in &meta.overlays {
        let changes = overlay::changes::collect(Path::new(&o.upper), Path::new(&o.source))
            .map_err(|e| Error::Usage(format!("{}: {e}", o.upper)))?;
        sets.push(overlay::ChangeSet {
            destination: o.destination.clone(),
            source: o.source.clone(),
            changes,
        });
    }
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&sets).unwrap_or_default()
        );
    } else {
        for set in &sets {
            let _ = writeln!(out, "# {} (over {})", set.destination, set.source);
            for c in &set.changes {
                let _ = writeln!(out, "{} {:>10}  {}", kind_letter(c.kind), c.size, c.path);
            }
        }
    }
    Ok(0)
}

fn apply_cmd(dir: &Path, dry_run: bool) -> Result<i32, Error> {
    let meta = overlay::read_meta(dir).map_err(|e| Error::Usage(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    for o in &meta.overlays {
        let actions = overlay::apply::apply(Path::new(&o.upper), Path::new(&o.source), dry_run)
            .map_err(|e| Error::Usage(e.to_string()))?;
        let verb = if dry_run { "would apply" } else { "applied" };
        let _ = writeln!(out, "# {verb} onto {}", o.source);
        for a in &actions {
            let _ = writeln!(out, "{} {}", kind_letter(a.kind), a.path);
        }
    }
    Ok(0)
}

fn profile_cmd(cmd: ProfileCmd, vars: Vars) -> Result<i32, Error> {
    let loader = Loader::new(vars.clone());
    let mut out = std::io::stdout().lock();
    match cmd {
        ProfileCmd::List => {
            for (name, text) in profile::BUILTIN {
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
                    let d = match loader.load(&path.display().to_string()) {
                        Ok(p) => p.description.unwrap_or_default(),
                        Err(e) => format!("(invalid: {e})"),
                    };
                    let _ = writeln!(out, "{name:<12} user      {d}");
                }
            }
            Ok(0)
        }
        ProfileCmd::Show { names } => {
            let merged = loader.load_all(&names)?;
            let text = toml::to_string(&merged)
                .map_err(|e| Error::Usage(format!("cannot render profile: {e}")))?;
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
            Plan::build(
                &p,
                &vars,
                &RunOptions {
                    command: vec!["true".into()],
                    landlock_abi: crate::sandbox::sys::landlock_abi(),
                    overlay_root: Some(std::env::temp_dir()),
                },
            )?;
            let _ = writeln!(out, "{}: ok", file.display());
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn trailing_command_keeps_its_flags() {
        let c =
            Cli::try_parse_from(["sbx", "--net", "host", "--", "ls", "-la", "--color"]).unwrap();
        assert_eq!(c.run.net, Some(NetArg::Host));
        assert_eq!(c.run.command, ["ls", "-la", "--color"]);
        let c = Cli::try_parse_from(["sbx", "echo", "-n", "hi"]).unwrap();
        assert_eq!(c.run.command, ["echo", "-n", "hi"]);
        // A mistyped option must not become the command.
        let e = Cli::try_parse_from(["sbx", "--bogus-flag", "--", "true"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn profile_subcommand_and_command_named_profile() {
        let c = Cli::try_parse_from(["sbx", "profile", "list"]).unwrap();
        assert!(matches!(c.sub, Some(Sub::Profile(ProfileCmd::List))));
        let c = Cli::try_parse_from(["sbx", "--", "profile", "list"]).unwrap();
        assert!(c.sub.is_none());
        assert_eq!(c.run.command, ["profile", "list"]);
    }

    #[test]
    fn setenv_needs_an_equals_sign() {
        let c = Cli::try_parse_from(["sbx", "--setenv", "NOEQ", "true"]).unwrap();
        let vars = Vars {
            home: "/h".into(),
            cwd: "/c".into(),
            uid: 1,
            gid: 1,
            user: "u".into(),
            tmpdir: "/tmp".into(),
            env: Default::default(),
        };
        assert!(c.run.overlay(&vars).is_err());
    }
}
