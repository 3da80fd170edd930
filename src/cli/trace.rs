//! `--trace-denials`: the refusals `diagnose::denials` finds in an observed run, as the run
//! report's `denials` and as the one line a failed run prints, each naming the profile
//! file:line that decided (as `sbx why` does) and the option that would allow it.

use super::why::Place;
use crate::diagnose::denials::{Denial, short_fix};
use crate::diagnose::why::{Access, Verdict};
use crate::intercept::Observed;
use crate::plan::Plan;
use crate::profile::{Layer, Vars};
use crate::report::DenialStatus;
use crate::text::{escape, escape_path};

/// Most paths the line names; the report has them all.
const SHOWN: usize = 5;

/// The refusals of an observed run: for the report, and the line a failed run prints (None
/// when nothing was refused).
pub(super) fn refusals(
    plan: &Plan,
    observed: &Observed,
    layers: &[Layer],
    vars: &Vars,
) -> (Vec<DenialStatus>, Option<String>) {
    let place = Place {
        layers,
        vars,
        args: None,
    };
    let found = crate::diagnose::denials::denials(plan, observed);
    let statuses = found
        .iter()
        .map(|d| DenialStatus {
            path: d.path.to_string_lossy().into_owned(),
            access: name(d.access),
            reason: d.verdict.reason.clone(),
            decided_by: place.of(&d.verdict),
            fix: d.verdict.fix.clone(),
        })
        .collect();
    (statuses, line(&found, &place, observed.truncated))
}

fn name(a: Access) -> &'static str {
    match a {
        Access::See => "see",
        Access::Read => "read",
        Access::Write => "write",
        Access::Exec => "exec",
    }
}

/// `the sandbox refused /x (not visible: add --ro-bind /x, or [filesystem] ro), ...`
fn line(found: &[Denial], place: &Place, truncated: bool) -> Option<String> {
    if found.is_empty() {
        return None;
    }
    let mut named: Vec<String> = found
        .iter()
        .take(SHOWN)
        .map(|d| {
            let mut parts = vec![d.access.word(false)];
            parts.extend(decided(place, &d.verdict));
            let mut s = format!("{} ({}", escape_path(&d.path), parts.join(": "));
            if let Some(fix) = &d.verdict.fix {
                s.push_str(&format!("; {}", escape(&short_fix(fix))));
            }
            s.push(')');
            s
        })
        .collect();
    if found.len() > SHOWN {
        named.push(format!(
            "and {} more (--json-status has them all)",
            found.len() - SHOWN
        ));
    }
    let partial = match truncated {
        true => " (the record of paths was cut short)",
        false => "",
    };
    Some(format!(
        "the sandbox refused {}{partial}; sbx why PATH explains one",
        named.join(", ")
    ))
}

/// The deciding key and where it is written, `filesystem.ro "/usr" at
/// builtin:default.toml:13`; None for sbx's own layout, which no key decides.
fn decided(place: &Place, v: &Verdict) -> Option<String> {
    if v.reason.starts_with("landlock grants") {
        return Some("security.landlock".into());
    }
    v.decided_by.as_ref()?;
    let of = place.of(v);
    let text = match of.split_once(" (") {
        Some((at, what)) if what.ends_with(')') => {
            let what = &what[..what.len() - 1];
            match at {
                "command line" => format!("{what} on the command line"),
                at => format!("{what} at {at}"),
            }
        }
        _ => of,
    };
    Some(escape(&text))
}
