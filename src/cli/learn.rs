//! `sbx learn`: the run under the permissive view, then the learned profile (see `learn`).

use std::path::PathBuf;

use clap::Args;

use super::{RunArgs, out};
use crate::api::Sandbox;
use crate::error::Error;
use crate::hostfile::HostFile;
use crate::learn::{Learned, permissive};
use crate::profile::Vars;

/// Options of `sbx learn`.
#[derive(Debug, Args)]
pub struct LearnArgs {
    /// Write the learned profile to FILE (default: stdout, after the command's own output)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Runs the command observed and writes the learned profile; returns the command's exit code
/// (sbx's contract: 125 when sbx itself failed).
pub fn learn(args: &LearnArgs, vars: Vars) -> Result<i32, Error> {
    let run = &args.run;
    if run.command.is_empty() {
        return Err(Error::Usage(
            "no command given: usage is `sbx learn [--profile BASE] [-o FILE] -- COMMAND`".into(),
        ));
    }
    if run.trace_denials {
        return Err(Error::Usage(
            "--trace-denials is a run option: sbx learn records every path the command names \
             already"
                .into(),
        ));
    }
    let unused = [
        (run.explain, "--explain"),
        (run.json_status.is_some(), "--json-status"),
        (run.changes.is_some(), "--changes"),
    ];
    if let Some((_, option)) = unused.iter().find(|(given, _)| *given) {
        return Err(Error::Usage(format!(
            "{option} is a run option that sbx learn does not take: learn writes a profile (-o \
             FILE); run the command under it to have {option}"
        )));
    }
    let names = if run.profiles.is_empty() {
        vec!["default".to_string()]
    } else {
        run.profiles.clone()
    };
    let mut base = Sandbox::with_vars(vars.clone());
    for name in &names {
        base = base.profile(name)?;
    }
    let base = base.layer(run.to_layer(&vars)?);
    // The base must hold on its own: the learned profile runs under it.
    let base_plan = base.plan(run.command.clone())?;
    let output = args
        .output
        .as_deref()
        .map(HostFile::prepare)
        .transpose()
        .map_err(|source| Error::HostFile {
            option: "--output",
            source,
        })?;
    let learning = Sandbox::with_vars(vars.clone())
        .layer(permissive(base.profile_file()))
        .observe(true);
    let finished = learning.run_with(run.command.clone(), super::AS_A_COMMAND)?;
    if let Some(m) = &finished.message {
        out::error(m);
    }
    let observed = finished.observed.unwrap_or_default();
    let reached = (finished.status.network.connections.as_ref())
        .map(|c| c.reached.clone())
        .unwrap_or_default();
    let learned = Learned::from(&observed, &base_plan, &vars)
        .with_network(base.profile_file().network.mode, reached);
    let text = learned.profile(&names, &run.command, finished.exit_code);
    match output {
        Some(dest) => dest
            .write(text.as_bytes())
            .map_err(|source| Error::HostFile {
                option: "--output",
                source,
            })?,
        None => out::stdout(text),
    }
    if !run.quiet {
        out::error(learned.summary(args.output.as_deref()));
    }
    Ok(finished.exit_code)
}
