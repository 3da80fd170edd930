//! `sbx why HOST:PORT`: whether the sandbox's network would let a connection reach a
//! destination. The allowlist is matched by the proxy's own matcher (`proxy::allow`), one
//! entry at a time so that the verdict names the entry that decides; addresses are classed by
//! the egress policy's own test (`is_internal`). Names are not resolved: a name a wildcard
//! allows is reachable only where it resolves to a public address, and the verdict says so.

use std::net::IpAddr;

use super::why::{Subject, Verdict};
use crate::plan::{Egress, NetworkPlan, Plan};
use crate::profile::Origin;
use crate::proxy::allow::{Allowlist, Match, Rule, is_internal};

/// A key of the merged profile: the caller finds which layer set it.
fn merged(key: &'static str) -> Option<Origin> {
    Some(Origin {
        profile: "the merged profile".into(),
        key,
    })
}

/// The line that allows `dest`, in a profile or on the command line.
fn allow_fix(dest: &str, mode: &str) -> String {
    match mode {
        "none" | "host" => format!(
            "run with --net proxy --allow {dest}, or in your profile: [network] mode = \"proxy\" \
             and allow = [\"{dest}\"]"
        ),
        _ => format!(
            "add to [network] allow in your profile: allow = [\"{dest}\"], or run with --allow \
             {dest}"
        ),
    }
}

/// The first allowlist entry that matches `host:port`, and how (an exact entry before a
/// wildcard).
fn matching<'a>(egress: &'a Egress, host: &str, port: u16) -> Option<(&'a str, Match)> {
    let mut wildcard = None;
    for entry in &egress.entries {
        let Ok(rule) = Rule::parse(entry) else {
            continue;
        };
        match Allowlist::new(vec![rule]).matches(host, port) {
            Match::Exact => return Some((entry, Match::Exact)),
            Match::Wildcard if wildcard.is_none() => wildcard = Some(entry.as_str()),
            _ => {}
        }
    }
    wildcard.map(|e| (e, Match::Wildcard))
}

/// Whether a connection from the sandbox to `host:port` would be made, and why. `host` is a
/// name or an address literal (IPv6 without brackets).
pub fn judge_destination(plan: &Plan, host: &str, port: u16) -> Verdict {
    let dest = match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    };
    let mode = plan.network.name();
    if let Some(ports) = plan
        .landlock
        .as_ref()
        .and_then(|l| l.connect_ports.as_ref())
        && !ports.contains(&port)
        && mode != "none"
    {
        return Verdict {
            allowed: false,
            reason: format!("network.connect_ports does not list port {port} (landlock)"),
            decided_by: merged("network.connect_ports"),
            subject: Subject::Key,
            fix: Some(format!(
                "add {port} to [network] connect_ports in your profile"
            )),
        };
    }
    let literal: Option<IpAddr> = host.parse().ok();
    let by_mode = |allowed: bool, reason: String, fix: Option<String>| Verdict {
        allowed,
        reason,
        decided_by: merged("network.mode"),
        subject: Subject::Key,
        fix,
    };
    let egress = match &plan.network {
        NetworkPlan::Host => {
            return by_mode(
                true,
                "network.mode = \"host\": the sandbox shares the host's network".into(),
                None,
            );
        }
        NetworkPlan::Isolated => {
            return by_mode(
                false,
                "network.mode = \"none\": a private network with only its own lo, nothing \
                 outside the sandbox is reachable"
                    .into(),
                Some(allow_fix(&dest, mode)),
            );
        }
        NetworkPlan::Internet(e) | NetworkPlan::Proxy(crate::plan::ProxyPlan { egress: e, .. }) => {
            e
        }
    };
    let by_entry = |entry: &str, reason: String| Verdict {
        allowed: true,
        reason,
        decided_by: merged("network.allow"),
        subject: Subject::Entry(entry.to_string()),
        fix: None,
    };
    match matching(egress, host, port) {
        Some((entry, Match::Exact)) => {
            return by_entry(
                entry,
                format!("network.allow lists `{entry}` (network.mode = \"{mode}\")"),
            );
        }
        Some((entry, _)) if egress.listed_only => {
            let reason = match literal {
                Some(ip) if is_internal(ip) => {
                    return Verdict {
                        allowed: false,
                        reason: format!(
                            "`{entry}` matches only as a wildcard, and {host} is an internal \
                             address: a wildcard never reaches one"
                        ),
                        decided_by: merged("network.allow"),
                        subject: Subject::Entry(entry.to_string()),
                        fix: Some(allow_fix(&dest, mode)),
                    };
                }
                Some(_) => format!("network.allow's wildcard `{entry}` matches it"),
                None => format!(
                    "network.allow's wildcard `{entry}` matches it, where {host} resolves to a \
                     public address (a wildcard never reaches internal ones)"
                ),
            };
            return by_entry(entry, reason);
        }
        _ => {}
    }
    if egress.listed_only {
        return Verdict {
            allowed: false,
            reason: format!(
                "network.mode = \"proxy\" reaches only what network.allow lists, and no entry \
                 matches {dest}"
            ),
            decided_by: merged("network.allow"),
            subject: Subject::Key,
            fix: Some(allow_fix(&dest, mode)),
        };
    }
    let internal = literal.is_some_and(is_internal) || host.eq_ignore_ascii_case("localhost");
    match internal {
        true => by_mode(
            false,
            format!(
                "network.mode = \"on\" reaches public addresses, and {host} is an internal one \
                 (loopback, private, link-local)"
            ),
            Some(allow_fix(&dest, mode)),
        ),
        false => by_mode(
            true,
            match literal {
                Some(_) => "network.mode = \"on\": public addresses are reachable".into(),
                None => format!(
                    "network.mode = \"on\": reachable where {host} resolves to a public address"
                ),
            },
            None,
        ),
    }
}
