//! Where a connection may go: the one decision behind every connect(2) the sandbox makes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Mutex;

use crate::plan::Egress;
use crate::proxy::allow::{Match, is_internal};

/// What happens to one connect(2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Inside the sandbox's own network (its loopback, sbx's DNS): the kernel runs the call.
    Local,
    /// sbx connects out from the host's network and relays.
    Out,
    /// Refused, with why.
    Refuse(String),
}

pub struct Policy {
    plan: Egress,
    /// The addresses sbx's DNS answered, with the names asked.
    resolved: Mutex<HashMap<IpAddr, Vec<String>>>,
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is an address of the host itself: the kernel lets a socket bind to it.
fn is_host_address(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

impl Policy {
    pub fn new(plan: Egress) -> Policy {
        Policy {
            plan,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    pub fn plan(&self) -> &Egress {
        &self.plan
    }

    /// Remembers that sbx's DNS answered `ip` for `name`.
    pub fn resolved(&self, name: &str, ip: IpAddr) {
        let mut map = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        let names = map.entry(canonical(ip)).or_default();
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }

    /// The names sbx's DNS answered `ip` for, in the order asked.
    pub fn names_of(&self, ip: IpAddr) -> Vec<String> {
        (self.resolved.lock().unwrap_or_else(|e| e.into_inner()))
            .get(&canonical(ip))
            .cloned()
            .unwrap_or_default()
    }

    pub fn decide(&self, dest: SocketAddr) -> Verdict {
        let ip = canonical(dest.ip());
        let port = dest.port();
        if ip.is_loopback() || ip.is_unspecified() {
            return Verdict::Local;
        }
        if let IpAddr::V4(v4) = ip
            && port == 53
            && self.plan.dns_inside.contains(&v4.octets())
        {
            return Verdict::Local;
        }
        if let Some(ports) = &self.plan.connect_ports
            && !ports.contains(&port)
        {
            return Verdict::Refuse(format!("network.connect_ports does not list port {port}"));
        }
        let internal = is_internal(ip);
        let literal = self.plan.allow.matches(&ip.to_string(), port);
        if literal == Match::Exact {
            return Verdict::Out;
        }
        let host = || !internal && is_host_address(ip);
        if !self.plan.listed_only {
            return if internal {
                Verdict::Refuse(
                    "an internal address (loopback, private, link-local, shared, multicast); \
                     list it in --allow to reach it"
                        .into(),
                )
            } else if host() {
                Verdict::Refuse("an address of the host itself".into())
            } else {
                Verdict::Out
            };
        }
        let names = self
            .resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ip)
            .cloned()
            .unwrap_or_default();
        for name in &names {
            match self.plan.allow.matches(name, port) {
                Match::Exact => return Verdict::Out,
                Match::Wildcard if !internal && !host() => return Verdict::Out,
                _ => {}
            }
        }
        if literal == Match::Wildcard && !internal && !host() {
            return Verdict::Out;
        }
        Verdict::Refuse(match names.is_empty() {
            true => "not an address sbx resolved for an allowed name".into(),
            false => format!(
                "resolved for {}, which the allowlist does not allow here",
                names.join(", ")
            ),
        })
    }
}
