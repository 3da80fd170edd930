//! The command line: the clap definitions, logging, and the dispatch to a run (the options
//! in `run_args`, merged over the profiles as their last layer) or to a subcommand
//! (`commands`).

mod commands;
mod complete;
mod learn;
mod man;
mod out;
mod run_args;
mod trace;
mod why;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use run_args::RunArgs;

use crate::api::Sandbox;
use crate::diagnose;
use crate::error::Error;
use crate::exit::EXIT_SBX_FAILED;
use crate::profile::Vars;
use crate::report::{self, Destination, RunStatus};
use crate::supervisor::Supervision;

#[derive(Debug, Parser)]
#[command(
    name = "sbx",
    version,
    about = "Run a command in a rootless sandbox: new namespaces, a tmpfs root, TOML profiles",
    long_about = None,
    args_conflicts_with_subcommands = true,
    after_help = crate::exit::summary()
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
    /// Run a command, record the paths and destinations it uses, and write a profile granting them
    ///
    /// Runs the command under a permissive view of a base profile, records the paths it uses,
    /// and writes a profile that extends the base and grants them. Only what this run touched is
    /// learned: a path used only on another branch of the program (another input, an error
    /// path, another option) is not. Environment variables are not observed. See README,
    /// "Learning a profile"
    // Boxed: its run options make it far larger than the other variants.
    Learn(Box<learn::LearnArgs>),
    /// Print a shell completion script (generated from the command-line definition)
    Completions {
        /// bash, zsh or fish (also elvish, powershell)
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `sbx man > ~/.local/share/man/man1/sbx.1` (see its FILES)
    Man,
    /// Say whether the sandbox would let its command read, write or execute PATH, or reach
    /// HOST:PORT, which profile key (file:line) decides, and the line that would change it;
    /// exit 0 if allowed, 1 if not
    Why(why::WhyArgs),
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
        /// Also write protected paths (.git, .envrc, ... as the run's filesystem.protect
        /// listed them), which apply otherwise refuses
        #[arg(long)]
        protected: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfileCmd {
    /// List the built-in profiles and the user's own
    List,
    /// Print the fully merged profile(s) as TOML that loads back identically
    Show {
        /// Profile names or paths, merged in order
        #[arg(default_value = "default", value_name = "NAME|PATH")]
        names: Vec<String>,
    },
    /// Load a profile file, resolve its extends and paths, and report problems
    Check {
        /// The profile file
        file: PathBuf,
    },
}

fn init_logging(cli: &Cli) {
    let run = match &cli.sub {
        Some(Sub::Learn(l)) => &l.run,
        _ => &cli.run,
    };
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
        // Its own note about a failed write is an eprintln!, which would abort sbx on a
        // broken stderr (see `out`).
        .log_internal_errors(false)
        .try_init();
}

/// What std's runtime start-up does that the binary needs, for its C `main` (src/main.rs):
/// the standard descriptors open, and SIGPIPE ignored.
pub fn start_process() {
    crate::sys::start_process();
}

/// Parses the command line, runs, and returns the exit code.
pub fn main() -> i32 {
    // This binary links glibc statically: the proxy must not load the host's NSS modules.
    crate::proxy::allow::resolve_without_nss_modules();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cli = match parse(&argv) {
        Ok(c) => c,
        Err(e) => return parse_error(e),
    };
    if let Some(e) = help_after_options(&cli, &argv) {
        return parse_error(e);
    }
    init_logging(&cli);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            out::error(e);
            EXIT_SBX_FAILED
        }
    }
}

/// The command line, parsed as a run with the run options' definition alone when that can
/// give the same result. Building the whole definition (every subcommand, `learn` with its own
/// copy of the run options) allocated 135 KiB on the start's path, the largest part of the
/// supervisor's heap before the clone; a run needs only its own options. A subcommand's name
/// first (clap sees subcommands only there), `help`, and anything the run options alone reject
/// (help and version flags included) go through the whole definition, so results, messages
/// and help are the same as without this.
fn parse(argv: &[OsString]) -> Result<Cli, clap::Error> {
    match parse_run_only(argv) {
        Some(run) => Ok(Cli { sub: None, run }),
        None => Cli::try_parse_from(argv),
    }
}

fn parse_run_only(argv: &[OsString]) -> Option<RunArgs> {
    use clap::{Args, FromArgMatches};
    let first = argv.get(1)?.to_str()?;
    if first == "help" || Sub::has_subcommand(first) {
        return None;
    }
    let matches = RunArgs::augment_args(clap::Command::new("sbx"))
        .try_get_matches_from(argv)
        .ok()?;
    RunArgs::from_arg_matches(&matches).ok()
}

/// Prints clap's message (help and version are its "errors" too) and returns the exit code.
fn parse_error(e: clap::Error) -> i32 {
    let _ = e.print();
    match e.kind() {
        clap::error::ErrorKind::DisplayHelp
        | clap::error::ErrorKind::DisplayVersion
        | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
        _ => EXIT_SBX_FAILED,
    }
}

/// `sbx -v help [SUBCOMMAND]`: clap sees subcommands only as the first word (after a run
/// option, `doctor` is a command to run), so `help` after options would be run in the
/// sandbox, where it is never found: it is a shell builtin, not a program. It is clap's help
/// subcommand wherever it comes, unless `--` says it is the command (`sbx -- help`).
fn help_after_options(cli: &Cli, argv: &[OsString]) -> Option<clap::Error> {
    if cli.sub.is_some() || cli.run.command.first()? != "help" {
        return None;
    }
    let start = argv.len().checked_sub(cli.run.command.len())?;
    if start > 0 && argv[start - 1] == "--" {
        return None;
    }
    let mut help: Vec<OsString> = vec!["sbx".into(), "help".into()];
    help.extend(cli.run.command[1..].iter().cloned());
    use clap::CommandFactory;
    Cli::command().try_get_matches_from(help).err()
}

fn dispatch(cli: Cli) -> Result<i32, Error> {
    let vars = Vars::from_host()?;
    match cli.sub {
        Some(Sub::Profile(cmd)) => commands::profile(cmd, vars),
        Some(Sub::Changes { dir, json }) => commands::changes(&dir, json),
        Some(Sub::Completions { shell }) => {
            out::stdout(complete::script(shell));
            Ok(0)
        }
        Some(Sub::Man) => {
            let page = man::page().map_err(|source| Error::Output {
                what: "the man page".into(),
                source,
            })?;
            out::stdout(page);
            Ok(0)
        }
        Some(Sub::Doctor { json }) => commands::doctor(json),
        Some(Sub::Why(args)) => why::why(args, vars),
        Some(Sub::Learn(args)) => learn::learn(&args, vars),
        Some(Sub::Apply {
            dir,
            dry_run,
            protected,
        }) => commands::apply(&dir, dry_run, protected),
        None => run(&cli.run, vars),
    }
}

/// How the `sbx` command supervises a run (a run, learn): signals forwarded, a pty for an
/// interactive command, and its exit code as soon as the command's is known.
const AS_A_COMMAND: Supervision = Supervision {
    forward_signals: true,
    return_before_teardown: true,
    pty_when_interactive: true,
    release_code: true,
};

/// What `sbx [OPTIONS] -- COMMAND` did.
enum Ran {
    /// The command ran (or could not be executed): sbx's exit code and the run report.
    Finished(i32, Box<RunStatus>),
    /// `--explain` printed the plan instead.
    Explained,
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
    // Both reports are opened before the command starts: it may change their paths.
    let dest = destination(args.json_status.as_deref(), "--json-status")?;
    let result = destination(args.changes.as_deref(), "--changes")
        .and_then(|changes| run_sandbox(args, vars, &names, changes.as_ref()));
    let report = match &result {
        Ok(Ran::Explained) => None,
        Ok(Ran::Finished(_, status)) => Some((**status).clone()),
        Err(e) => Some(report::before_run(&command, &names, &e.to_string())),
    };
    if let (Some(dest), Some(report)) = (dest, report) {
        if let Err(e) = dest.write_json(&report) {
            out::error(format_args!("the run report was not written: {e}"));
        }
    }
    result.map(|ran| match ran {
        Ran::Finished(code, _) => code,
        Ran::Explained => 0,
    })
}

/// The destination of a report option, if given; its directory opened now.
fn destination(value: Option<&str>, option: &'static str) -> Result<Option<Destination>, Error> {
    value
        .map(Destination::open)
        .transpose()
        .map_err(|source| Error::HostFile { option, source })
}

fn run_sandbox(
    args: &RunArgs,
    vars: Vars,
    names: &[String],
    changes: Option<&Destination>,
) -> Result<Ran, Error> {
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
    let sandbox = sandbox
        .layer(args.to_layer(&vars)?)
        .observe(args.trace_denials);
    if args.explain {
        out::stdout(diagnose::explain(&sandbox.plan(args.command.clone())?));
        return Ok(Ran::Explained);
    }
    // The plan the refusals are judged against: the run's own, built the same way.
    let traced = match args.trace_denials {
        true => Some(sandbox.plan(args.command.clone())?),
        false => None,
    };
    let mut finished = sandbox.run_with(args.command.clone(), AS_A_COMMAND)?;
    if let Some(m) = &finished.message {
        out::error(m);
    }
    // A failing command's own error ("connection refused", "could not resolve host") does not
    // say that the sandbox refused it: sbx does.
    if let (true, false, Some(line)) = (
        finished.exit_code != 0,
        args.quiet,
        &finished.status.network.refused,
    ) {
        out::error(line);
    }
    if let (Some(plan), Some(observed)) = (&traced, &finished.observed) {
        let layers = crate::profile::Loader::new(vars.clone()).layers(names)?;
        let (denials, line) = trace::refusals(plan, observed, &layers, &vars);
        finished.status.denials = Some(denials);
        if let (true, false, Some(line)) = (finished.exit_code != 0, args.quiet, line) {
            out::error(line);
        }
    }
    // A private upper layer is gone once the run returns: say so when it held anything.
    if sandbox.profile_file().filesystem.changes.is_none() && !args.quiet {
        if let Some(line) = discarded(&finished.status.changes) {
            out::error(line);
        }
    }
    if let Some(dest) = changes {
        if let Err(e) = dest.write_json(&finished.status.changes) {
            out::error(format_args!("the change report was not written: {e}"));
        }
    }
    Ok(Ran::Finished(finished.exit_code, Box::new(finished.status)))
}

/// The line for writable overlays' changes that were thrown away, if there were any.
fn discarded(sets: &[crate::overlay::ChangeSet]) -> Option<String> {
    let n: usize = sets.iter().map(|s| s.changes.len()).sum();
    let what = match n {
        0 => return None,
        1 => "1 file changed in the overlay was".to_string(),
        n => format!("{n} files changed in the overlay were"),
    };
    Some(format!("{what} discarded; use --keep-changes DIR"))
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
        assert_eq!(c.run.net, Some(crate::profile::NetMode::Host));
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
    fn a_run_parses_alike_with_the_run_options_alone() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let runs: &[&[&str]] = &[
            &["sbx", "--net", "host", "--", "ls", "-la", "--color"],
            &["sbx", "echo", "-n", "hi"],
            &["sbx", "-v", "doctor"],
            &["sbx", "-p", "ci", "--memory", "64M", "--", "make", "-j2"],
            &["sbx", "--", "profile", "list"],
            &["sbx", "--setenv", "A=1", "--protect", "-x", "true"],
        ];
        for argv in runs {
            let lean = parse_run_only(&os(argv)).unwrap_or_else(|| panic!("{argv:?}"));
            let whole = Cli::try_parse_from(*argv).unwrap();
            assert!(whole.sub.is_none(), "{argv:?}");
            assert_eq!(format!("{lean:?}"), format!("{:?}", whole.run), "{argv:?}");
        }
        // These go through the whole definition: subcommands, help, version, mistakes.
        let others: &[&[&str]] = &[
            &["sbx"],
            &["sbx", "profile", "list"],
            &["sbx", "learn", "--", "true"],
            &["sbx", "help"],
            &["sbx", "--help"],
            &["sbx", "-V"],
            &["sbx", "--version"],
            &["sbx", "--bogus-flag", "--", "true"],
            &["sbx", "--memory"],
        ];
        for argv in others {
            assert!(parse_run_only(&os(argv)).is_none(), "{argv:?}");
            let (a, b) = (parse(&os(argv)), Cli::try_parse_from(*argv));
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{argv:?}");
        }
    }

    /// `parse_run_only` asks `Sub::has_subcommand`, which knows names, not aliases: an alias
    /// would be taken for a command to run.
    #[test]
    fn every_subcommand_is_known_by_its_name_alone() {
        use clap::CommandFactory;
        for sub in Cli::command().get_subcommands() {
            assert!(Sub::has_subcommand(sub.get_name()), "{}", sub.get_name());
            assert_eq!(sub.get_all_aliases().count(), 0, "{}", sub.get_name());
        }
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
        assert!(c.run.to_layer(&vars).is_err());
    }
}
