//! The network the sandbox gets: the one place that decides it from the profile. The report,
//! `--explain` and the executor ask this plan; nothing else reads the profile's network keys.

use super::error::PlanError;
use crate::profile::{NetMode, ProfileFile};
use crate::proxy::{Allowlist, Rule};

#[derive(Clone, Debug)]
pub enum NetworkPlan {
    /// The host's network namespace, shared.
    Host,
    /// A private network namespace with only `lo`.
    Isolated,
    /// A private network namespace whose only way out is sbx's proxy.
    Proxy(ProxyPlan),
}

impl NetworkPlan {
    /// The mode's name, as profiles, the CLI and the run report spell it.
    pub fn name(&self) -> &'static str {
        match self {
            NetworkPlan::Host => "host",
            NetworkPlan::Isolated => "none",
            NetworkPlan::Proxy(_) => "proxy",
        }
    }

    /// Whether the sandbox gets a network namespace of its own.
    pub fn needs_namespace(&self) -> bool {
        !matches!(self, NetworkPlan::Host)
    }

    pub fn proxy(&self) -> Option<&ProxyPlan> {
        match self {
            NetworkPlan::Proxy(p) => Some(p),
            _ => None,
        }
    }

    /// The allowlist as written, for messages and the report.
    pub fn allow(&self) -> &[String] {
        self.proxy().map_or(&[], |p| &p.entries)
    }

    /// One line for `--explain`.
    pub fn describe(&self) -> String {
        match self {
            NetworkPlan::Host => "host (shared)".into(),
            NetworkPlan::Isolated => "none (private namespace, lo up)".into(),
            NetworkPlan::Proxy(p) => format!(
                "proxy on 127.0.0.1:{} allowing [{}]",
                p.port,
                p.entries.join(", ")
            ),
        }
    }

    /// Reads `network.mode` (and the older `namespaces.net`, which must agree with it).
    pub fn build(profile: &ProfileFile) -> Result<NetworkPlan, PlanError> {
        let n = &profile.network;
        let conflict = |m: &str| PlanError::merged("network.mode", m);
        let mode = match (n.mode, profile.namespaces.net) {
            (Some(NetMode::Host), Some(true)) => {
                return Err(conflict(
                    "mode = \"host\" conflicts with namespaces.net = true",
                ));
            }
            (Some(m @ (NetMode::None | NetMode::Proxy)), Some(false)) => {
                let name = if m == NetMode::None { "none" } else { "proxy" };
                return Err(conflict(&format!(
                    "mode = \"{name}\" needs namespaces.net = true"
                )));
            }
            (Some(m), _) => m,
            (None, Some(false)) => NetMode::Host,
            (None, _) => NetMode::None,
        };
        if mode != NetMode::Proxy && !n.allow.is_empty() {
            return Err(PlanError::merged(
                "network.allow",
                "an allowlist needs network.mode = \"proxy\"",
            ));
        }
        Ok(match mode {
            NetMode::Host => NetworkPlan::Host,
            NetMode::None => NetworkPlan::Isolated,
            NetMode::Proxy => NetworkPlan::Proxy(ProxyPlan::build(&n.allow, n.proxy_port)?),
        })
    }
}

/// `network.mode = "proxy"`: where the proxy listens inside, and what it lets through.
#[derive(Clone, Debug)]
pub struct ProxyPlan {
    pub port: u16,
    pub allow: Allowlist,
    /// The entries as written, for messages and the report.
    pub entries: Vec<String>,
}

impl ProxyPlan {
    pub const DEFAULT_PORT: u16 = 3128;

    fn build(entries: &[String], port: Option<u16>) -> Result<ProxyPlan, PlanError> {
        let rules = entries
            .iter()
            .map(|e| Rule::parse(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PlanError::merged("network.allow", e.to_string()))?;
        let port = port.unwrap_or(Self::DEFAULT_PORT);
        if port == 0 {
            return Err(PlanError::merged("network.proxy_port", "0 is not a port"));
        }
        Ok(ProxyPlan {
            port,
            allow: Allowlist::new(rules),
            entries: entries.to_vec(),
        })
    }

    /// The variables that point clients at the proxy (both spellings, as tools differ).
    pub fn environment(&self) -> Vec<(String, String)> {
        let http = format!("http://127.0.0.1:{}", self.port);
        let socks = format!("socks5h://127.0.0.1:{}", self.port);
        let mut v = Vec::new();
        for (k, val) in [
            ("HTTP_PROXY", &http),
            ("HTTPS_PROXY", &http),
            ("ALL_PROXY", &socks),
            ("NO_PROXY", &String::new()),
        ] {
            v.push((k.to_string(), val.clone()));
            v.push((k.to_lowercase(), val.clone()));
        }
        v
    }
}
