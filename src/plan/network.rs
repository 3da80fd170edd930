//! The network the sandbox gets: the one place that decides it from the profile. The report,
//! `--explain` and the executor ask this plan; nothing else reads the profile's network keys.

use super::error::PlanError;
use crate::profile::{NetMode, Network, ProfileFile};
use std::net::IpAddr;

use crate::proxy::{Allowlist, Rule};

#[derive(Clone, Debug)]
pub enum NetworkPlan {
    /// The host's network namespace, shared.
    Host,
    /// A private network namespace with only `lo`.
    Isolated,
    /// The internet, not the host: a private network namespace whose connections out sbx makes
    /// (see `egress`), to public addresses and the exceptions listed.
    Internet(Egress),
    /// A private network namespace whose only way out is sbx's proxy, and sbx's egress held
    /// to the same allowlist for programs that ignore the proxy.
    Proxy(ProxyPlan),
}

impl NetworkPlan {
    /// The mode's name, as profiles, the CLI and the run report spell it.
    pub fn name(&self) -> &'static str {
        match self {
            NetworkPlan::Host => "host",
            NetworkPlan::Isolated => "none",
            NetworkPlan::Internet(_) => "on",
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

    /// sbx's egress: the connections out it makes for the command, and the DNS it answers.
    pub fn egress(&self) -> Option<&Egress> {
        match self {
            NetworkPlan::Internet(e) => Some(e),
            NetworkPlan::Proxy(p) => Some(&p.egress),
            _ => None,
        }
    }

    /// The allowlist as written, for messages and the report.
    pub fn allow(&self) -> &[String] {
        self.egress().map_or(&[], |e| &e.entries)
    }

    /// One line for `--explain`.
    pub fn describe(&self) -> String {
        match self {
            NetworkPlan::Host => "host (shared)".into(),
            NetworkPlan::Isolated => "none (private namespace, lo up)".into(),
            NetworkPlan::Internet(e) => format!(
                "on (private namespace; sbx connects out to public addresses{}; DNS answered by \
                 sbx{})",
                match e.entries.is_empty() {
                    true => String::new(),
                    false => format!(" and [{}]", e.entries.join(", ")),
                },
                e.mapped_ports()
            ),
            NetworkPlan::Proxy(p) => format!(
                "proxy on 127.0.0.1:{} allowing [{}]; other programs held to the same list{}",
                p.port,
                p.egress.entries.join(", "),
                p.egress.mapped_ports()
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
            (Some(m @ (NetMode::None | NetMode::On | NetMode::Proxy)), Some(false)) => {
                let name = match m {
                    NetMode::None => "none",
                    NetMode::On => "on",
                    _ => "proxy",
                };
                return Err(conflict(&format!(
                    "mode = \"{name}\" needs namespaces.net = true"
                )));
            }
            (Some(m), _) => m,
            (None, Some(false)) => NetMode::Host,
            (None, _) => NetMode::None,
        };
        if matches!(mode, NetMode::None | NetMode::Host) && !n.allow.is_empty() {
            return Err(PlanError::merged(
                "network.allow",
                "an allowlist needs network.mode = \"on\" or \"proxy\"",
            ));
        }
        Ok(match mode {
            NetMode::Host => NetworkPlan::Host,
            NetMode::None => NetworkPlan::Isolated,
            NetMode::On => NetworkPlan::Internet(Egress::build(n, false)?),
            NetMode::Proxy => {
                let egress = Egress::build(n, true)?;
                let port = n.proxy_port.unwrap_or(ProxyPlan::DEFAULT_PORT);
                if port == 0 {
                    return Err(PlanError::merged("network.proxy_port", "0 is not a port"));
                }
                if egress.host_ports.contains(&port) {
                    return Err(PlanError::merged(
                        "network.allow",
                        format!(
                            "127.0.0.1:{port} maps a host port onto the proxy's own port \
                             (network.proxy_port); move the proxy"
                        ),
                    ));
                }
                NetworkPlan::Proxy(ProxyPlan { port, egress })
            }
        })
    }
}

/// What sbx does for a sandbox whose connections out it makes: the rules, the host ports it
/// maps in, and where the sandbox's DNS questions go.
#[derive(Clone, Debug)]
pub struct Egress {
    pub allow: Allowlist,
    /// The entries as written, for messages and the report.
    pub entries: Vec<String>,
    /// Only what the allowlist names (proxy), rather than the internet and what it names (on).
    pub listed_only: bool,
    /// Host loopback ports mapped in at the same address (`127.0.0.1:PORT` entries).
    pub host_ports: Vec<u16>,
    /// IPv4 addresses inside the sandbox where sbx answers DNS on port 53: 127.0.0.1 (where
    /// resolvers go without a resolv.conf), and the host's own nameservers (those outside
    /// 127/8 added to the sandbox's `lo`), so that the host's `/etc/resolv.conf` works
    /// unchanged.
    pub dns_inside: Vec<[u8; 4]>,
    /// The host's nameservers, which sbx asks.
    pub upstream: Vec<IpAddr>,
    /// `network.connect_ports`: the only TCP ports a connection out may go to (landlock holds
    /// the connections inside; sbx makes the ones out).
    pub connect_ports: Option<Vec<u16>>,
}

impl Egress {
    fn build(network: &Network, listed_only: bool) -> Result<Egress, PlanError> {
        let entries = &network.allow;
        let rules = entries
            .iter()
            .map(|e| Rule::parse(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PlanError::merged("network.allow", e.to_string()))?;
        let mut host_ports: Vec<u16> = rules.iter().filter_map(Rule::loopback_port).collect();
        host_ports.sort_unstable();
        host_ports.dedup();
        if host_ports.contains(&53) {
            return Err(PlanError::merged(
                "network.allow",
                "127.0.0.1:53 is where sbx answers DNS inside; the host's resolver is asked \
                 through it already",
            ));
        }
        let upstream = nameservers(&std::fs::read_to_string(RESOLV_CONF).unwrap_or_default());
        let mut dns_inside = vec![[127, 0, 0, 1]];
        for ip in &upstream {
            if let IpAddr::V4(v4) = ip
                && !dns_inside.contains(&v4.octets())
            {
                dns_inside.push(v4.octets());
            }
        }
        Ok(Egress {
            allow: Allowlist::new(rules),
            entries: entries.to_vec(),
            listed_only,
            host_ports,
            dns_inside,
            upstream,
            connect_ports: network.connect_ports.clone(),
        })
    }

    fn mapped_ports(&self) -> String {
        match self.host_ports.is_empty() {
            true => String::new(),
            false => format!(
                "; host ports mapped in at 127.0.0.1: {}",
                self.host_ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The `nameserver` lines of a resolv.conf; glibc's default (the local host) when there are
/// none.
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .filter_map(|a| a.split('%').next()?.parse().ok())
        .collect();
    out.dedup();
    if out.is_empty() {
        out.push(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    }
    out
}

/// `network.mode = "proxy"`: where the proxy listens inside, and what it lets through.
#[derive(Clone, Debug)]
pub struct ProxyPlan {
    pub port: u16,
    pub egress: Egress,
}

impl ProxyPlan {
    pub const DEFAULT_PORT: u16 = 3128;

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
