//! The confinement layers that need more than one system call: landlock (in the sandbox's
//! first process, so that its init is confined as well as the command) and the seccomp
//! filter (in the payload, last before execve).

use std::os::fd::RawFd;

use landlock::{
    AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetError, RulesetStatus,
};

use super::channel::{self, Fact, Failure, LandlockOutcome, Step};
use crate::plan::Plan;
use crate::plan::landlock::LandlockPlan;
use crate::profile::Enforcement;
use crate::sys::{self, Errno};

fn errno_of(e: &RulesetError) -> Errno {
    // Compatibility errors carry no errno: the kernel lacks a requested feature.
    let io = match e {
        RulesetError::CreateRuleset(landlock::CreateRulesetError::CreateRulesetCall {
            source,
            ..
        }) => Some(source),
        RulesetError::AddRules(landlock::AddRulesError::Fs(
            landlock::AddRuleError::AddRuleCall { source, .. },
        )) => Some(source),
        RulesetError::RestrictSelf(landlock::RestrictSelfError::RestrictSelfCall {
            source,
            ..
        }) => Some(source),
        _ => None,
    };
    io.and_then(|s| s.raw_os_error())
        .map(Errno::from_raw)
        .unwrap_or(Errno::EOPNOTSUPP)
}

/// Builds the ruleset from paths as the sandbox sees them and restricts this process (and so
/// everything it forks). Returns the enforcement status for the supervisor.
fn restrict(l: &LandlockPlan) -> Result<RulesetStatus, Failure> {
    let fail = |e: RulesetError| Failure::new(Step::Landlock, errno_of(&e));
    let level = if l.mode == Enforcement::Required {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    };
    let mut ruleset = Ruleset::default()
        .set_compatibility(level)
        .handle_access(l.handled)
        .map_err(fail)?;
    if l.connect_ports.is_some() {
        ruleset = ruleset.handle_access(AccessNet::ConnectTcp).map_err(fail)?;
    }
    if l.bind_ports.is_some() {
        ruleset = ruleset.handle_access(AccessNet::BindTcp).map_err(fail)?;
    }
    if !l.scopes.is_empty() {
        ruleset = ruleset.scope(l.scopes).map_err(fail)?;
    }
    let mut created = ruleset.create().map_err(fail)?;
    for (i, (path, access)) in l.rules.iter().enumerate() {
        let fd =
            sys::open_owned(path, libc::O_PATH).map_err(|e| Failure::at(Step::Landlock, i, e))?;
        created = created
            .add_rule(PathBeneath::new(fd, *access))
            .map_err(fail)?;
    }
    for (ports, access) in [
        (&l.connect_ports, AccessNet::ConnectTcp),
        (&l.bind_ports, AccessNet::BindTcp),
    ] {
        for port in ports.iter().flatten() {
            created = created
                .add_rule(NetPort::new(*port, access))
                .map_err(fail)?;
        }
    }
    let status = created.restrict_self().map_err(fail)?;
    if l.mode == Enforcement::Required && status.ruleset != RulesetStatus::FullyEnforced {
        return Err(Failure::new(Step::Landlock, Errno::EOPNOTSUPP));
    }
    Ok(status.ruleset)
}

/// Applies landlock in the sandbox's first process, once its root is built (everything it
/// forks inherits the domain), and tells the supervisor what was enforced.
pub fn landlock(plan: &Plan, report: RawFd) -> Result<(), Failure> {
    let Some(l) = &plan.landlock else {
        return Ok(());
    };
    let outcome = match restrict(l)? {
        RulesetStatus::NotEnforced => LandlockOutcome::None,
        RulesetStatus::PartiallyEnforced => LandlockOutcome::Partial,
        RulesetStatus::FullyEnforced => LandlockOutcome::Full,
    };
    channel::send(report, Fact::Landlock(outcome));
    Ok(())
}

/// Installs the seccomp programs: the last step before execve. no_new_privs is already set
/// (by the first process), so each program is one seccomp(2) call.
pub fn seccomp(plan: &Plan) -> Result<(), Failure> {
    let Some(s) = &plan.seccomp else {
        return Ok(());
    };
    for prog in &s.programs {
        sys::seccomp_filter(prog).map_err(|e| Failure::new(Step::Seccomp, e))?;
    }
    Ok(())
}
