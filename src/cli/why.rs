//! `sbx why PATH|HOST:PORT`: the question on the command line, the plan a run would build,
//! the verdict (`diagnose::why`), and where in which profile the deciding entry is written.

use std::path::PathBuf;

use clap::{Args, Parser};

use super::{Cli, out};
use crate::api::Sandbox;
use crate::diagnose::why::{self, Access, Subject, Verdict};
use crate::error::Error;
use crate::profile::{
    Layer, Loader, NetMode, Origin, ProfileFile, Vars, absolute_in, lexical, line_of, line_of_key,
};
use crate::text::escape;

#[derive(Debug, Args)]
pub struct WhyArgs {
    /// A path inside the sandbox (a relative one is relative to the current directory), or
    /// HOST:PORT ([ADDRESS]:PORT for IPv6)
    #[arg(value_name = "PATH|HOST:PORT")]
    pub target: String,
    /// Profile name or path, as for a run; repeatable, later ones win [default: default]
    #[arg(short = 'p', long = "profile", value_name = "NAME|PATH")]
    pub profiles: Vec<String>,
    /// Ask whether the path is writable (the default question is readable)
    #[arg(long, conflicts_with_all = ["exec", "see"])]
    pub write: bool,
    /// Ask whether the path is executable
    #[arg(long, conflicts_with = "see")]
    pub exec: bool,
    /// Ask whether the host's file shows there at all (a fresh tmpfs shows none)
    #[arg(long)]
    pub see: bool,
    /// As for a run: bind SRC read-write at DST
    #[arg(long, value_name = "SRC[:DST]")]
    pub bind: Vec<String>,
    /// As for a run: bind SRC read-only at DST
    #[arg(long = "ro-bind", value_name = "SRC[:DST]")]
    pub ro_bind: Vec<String>,
    /// As for a run: a fresh tmpfs at DST
    #[arg(long, value_name = "DST")]
    pub tmpfs: Vec<String>,
    /// As for a run: protect PATH, or lift a protected path with `!PATH`
    #[arg(long, value_name = "PATH", allow_hyphen_values = true)]
    pub protect: Vec<String>,
    /// As for a run: hide the host path PATH, or lift a hidden one with `!PATH`
    #[arg(long, value_name = "PATH", allow_hyphen_values = true)]
    pub hide: Vec<String>,
    /// As for a run: none, on, proxy or host
    #[arg(long, value_enum, value_name = "MODE")]
    pub net: Option<NetMode>,
    /// As for a run: a destination the sandbox may reach (HOST:PORT)
    #[arg(long, value_name = "HOST:PORT")]
    pub allow: Vec<String>,
}

/// What is asked about.
enum Target {
    Path(PathBuf),
    Destination(String, u16),
}

impl Target {
    /// A path has a `/` or no `:`; `HOST:PORT` must have a port.
    fn parse(arg: &str, vars: &Vars) -> Result<Target, Error> {
        if arg.is_empty() {
            return Err(Error::Usage("sbx why: an empty PATH or HOST:PORT".into()));
        }
        let home = arg.strip_prefix("~/").map(|r| format!("{}/{r}", vars.home));
        let arg = home.as_deref().unwrap_or(arg);
        if arg.contains('/') || !arg.contains(':') {
            let abs = absolute_in(&vars.cwd, arg);
            return Ok(Target::Path(PathBuf::from(lexical(&abs))));
        }
        let (host, port) = match arg.strip_prefix('[') {
            Some(rest) => rest.split_once("]:").ok_or_else(|| {
                Error::Usage(format!("sbx why {}: expected [ADDRESS]:PORT", escape(arg)))
            })?,
            None => arg.rsplit_once(':').expect("has a colon"),
        };
        let bad = |what: &str| {
            Error::Usage(format!(
                "sbx why {}: {what}; expected a path or HOST:PORT (a file of that name: ./{0})",
                escape(arg)
            ))
        };
        if host.is_empty() || (host.contains(':') && !arg.starts_with('[')) {
            return Err(bad("no host (an IPv6 address goes in brackets: [::1]:80)"));
        }
        match port.parse::<u16>() {
            Ok(p) if p != 0 => Ok(Target::Destination(host.to_string(), p)),
            _ => Err(bad(&format!("{:?} is not a port (1-65535)", escape(port)))),
        }
    }
}

impl WhyArgs {
    fn access(&self) -> Access {
        match (self.write, self.exec, self.see) {
            (true, _, _) => Access::Write,
            (_, true, _) => Access::Exec,
            (_, _, true) => Access::See,
            _ => Access::Read,
        }
    }

    /// The run options given, as the layer a run with them would merge over the profiles:
    /// parsed by the run's own definition, so that both mean the same.
    fn layer(&self, vars: &Vars) -> Result<ProfileFile, Error> {
        let mut argv: Vec<String> = vec!["sbx".into()];
        let lists = [
            ("--bind", &self.bind),
            ("--ro-bind", &self.ro_bind),
            ("--tmpfs", &self.tmpfs),
            ("--protect", &self.protect),
            ("--hide", &self.hide),
            ("--allow", &self.allow),
        ];
        for (flag, values) in lists {
            for v in values {
                argv.push(format!("{flag}={v}"));
            }
        }
        if let Some(n) = self.net {
            let name = clap::ValueEnum::to_possible_value(&n).expect("no skipped variants");
            argv.push(format!("--net={}", name.get_name()));
        }
        let cli = Cli::try_parse_from(argv).map_err(|e| Error::Usage(e.to_string()))?;
        cli.run.to_layer(vars)
    }
}

/// `sbx why`: prints the verdict; exits 0 when the access is allowed, 1 when it is not.
pub fn why(args: WhyArgs, vars: Vars) -> Result<i32, Error> {
    let target = Target::parse(&args.target, &vars)?;
    let names = match args.profiles.is_empty() {
        true => vec!["default".to_string()],
        false => args.profiles.clone(),
    };
    let mut sandbox = Sandbox::with_vars(vars.clone());
    for name in &names {
        sandbox = sandbox.profile(name)?;
    }
    let sandbox = sandbox.layer(args.layer(&vars)?);
    let plan = sandbox.plan(["true"])?;
    let (shown, verdict, word) = match &target {
        Target::Path(p) => {
            let access = args.access();
            let v = why::judge_path(&plan, p, access);
            let word = access.word(v.allowed);
            (p.to_string_lossy().into_owned(), v, word)
        }
        Target::Destination(host, port) => {
            let v = why::judge_destination(&plan, host, *port);
            let word = match v.allowed {
                true => "reachable",
                false => "not reachable",
            };
            (args.target.clone(), v, word.to_string())
        }
    };
    let layers = Loader::new(vars.clone()).layers(&names)?;
    let place = Place {
        layers: &layers,
        vars: &vars,
        args: Some(&args),
    };
    let mut text = format!("{}: {word}\n", escape(&shown));
    text.push_str(&format!("  because: {}\n", escape(&verdict.reason)));
    text.push_str(&format!("  decided by: {}\n", escape(&place.of(&verdict))));
    if let Some(fix) = &verdict.fix {
        text.push_str(&format!("  to change: {}\n", escape(fix)));
    }
    out::stdout(text);
    Ok(if verdict.allowed { 0 } else { 1 })
}

/// Where the deciding entry is written.
pub(super) struct Place<'a> {
    pub(super) layers: &'a [Layer],
    pub(super) vars: &'a Vars,
    /// `sbx why`'s own options; none for a run's refusals, which name paths only.
    pub(super) args: Option<&'a WhyArgs>,
}

impl Place<'_> {
    pub(super) fn of(&self, v: &Verdict) -> String {
        let Some(origin) = &v.decided_by else {
            return "sbx's own layout (no profile key)".into();
        };
        match origin.profile.as_str() {
            "the command line" => format!("command line ({} {})", origin.key, shown(&v.subject)),
            "the merged profile" => self.merged(origin.key, &v.subject),
            _ => self.in_layer(origin, &v.subject),
        }
    }

    /// A path entry of the profile `origin` names: found by its value, as written or expanded.
    fn in_layer(&self, origin: &Origin, subject: &Subject) -> String {
        let Some(layer) = self
            .layers
            .iter()
            .rev()
            .find(|l| l.display == origin.profile)
        else {
            return format!("{origin}");
        };
        let vars = self.vars;
        let wanted = |raw: &str| {
            subject.is(raw)
                || vars
                    .expand(raw, &origin.profile, origin.key)
                    .is_ok_and(|e| subject.is(&e))
        };
        match line_of(&layer.text, origin.key, &wanted) {
            Some(line) => format!("{}:{line} ({} {})", layer.label, origin.key, shown(subject)),
            None => format!("{} ({} {})", layer.label, origin.key, shown(subject)),
        }
    }

    /// A network key of the merged profile: the command line, else the last layer that sets
    /// it (for an allowlist entry, the first that lists it: merging keeps the first).
    fn merged(&self, key: &'static str, subject: &Subject) -> String {
        let a = self.args;
        match (key, subject) {
            ("network.mode", _) if a.is_some_and(|a| a.net.is_some()) => {
                return "command line (--net)".into();
            }
            ("network.allow", Subject::Entry(e)) => {
                let found = self
                    .layers
                    .iter()
                    .find_map(|l| line_of(&l.text, key, &|raw| raw == e).map(|n| (l, n)));
                return match found {
                    Some((l, n)) => format!("{}:{n} (network.allow \"{e}\")", l.label),
                    None if a.is_some_and(|a| a.allow.contains(e)) => {
                        format!("command line (--allow {e})")
                    }
                    None => format!("network.allow \"{e}\""),
                };
            }
            _ => {}
        }
        let keys = match key {
            "network.mode" => vec!["network.mode", "namespaces.net"],
            k => vec![k],
        };
        let found = self.layers.iter().rev().find_map(|l| {
            keys.iter()
                .find_map(|k| line_of_key(&l.text, k).map(|n| (l, n, *k)))
        });
        match found {
            Some((l, n, k)) => format!("{}:{n} ({k})", l.label),
            None => format!("{key} (no profile sets it: sbx's default)"),
        }
    }
}

/// The deciding entry, for messages.
fn shown(s: &Subject) -> String {
    match s {
        Subject::Mount {
            sandbox,
            host: Some(h),
        } if h != sandbox => format!("\"{h}\" at {sandbox}"),
        Subject::Mount { sandbox, .. } => format!("\"{sandbox}\""),
        Subject::Entry(e) => format!("\"{e}\""),
        Subject::Key | Subject::Layout => String::new(),
    }
}
