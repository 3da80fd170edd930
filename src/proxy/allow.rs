//! The allowlist: which destinations the proxy connects to. Decisions are made on the name the
//! command asked for and on the addresses the supervisor resolved it to: a name matched only by
//! a wildcard may not lead to loopback, private, link-local or metadata addresses (a DNS
//! rebinding defence); an exact entry may.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// `*`: any name.
    Any,
    /// `*.example.com`: names ending in `.example.com`.
    Suffix(String),
    /// A name or an address literal, matched exactly (case-insensitive).
    Exact(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    host: HostPattern,
    /// None: any port.
    port: Option<u16>,
}

/// Why an allowlist entry is refused. Each text starts with the entry as written, since the
/// plan reports it under `network.allow` without saying which entry it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("{entry:?}: expected [ADDRESS]:PORT")]
    Bracketed { entry: String },
    #[error("{entry:?}: expected HOST:PORT (PORT may be *)")]
    NoPort { entry: String },
    #[error("{entry:?}: {port:?} is not a port")]
    Port { entry: String, port: String },
    #[error("{entry:?}: a wildcard is `*` or `*.domain`")]
    Host { entry: String },
}

impl Rule {
    /// Parses `HOST:PORT`, `*.DOMAIN:PORT`, `[V6]:PORT`; PORT may be `*`.
    pub fn parse(entry: &str) -> Result<Rule, RuleError> {
        let (host, port) = match entry.strip_prefix('[') {
            Some(rest) => {
                let (h, p) = rest.split_once("]:").ok_or_else(|| RuleError::Bracketed {
                    entry: entry.to_string(),
                })?;
                (h, p)
            }
            None => entry.rsplit_once(':').ok_or_else(|| RuleError::NoPort {
                entry: entry.to_string(),
            })?,
        };
        let port = match port {
            "*" => None,
            p => match p.parse::<u16>() {
                Ok(n) if n != 0 => Some(n),
                _ => {
                    return Err(RuleError::Port {
                        entry: entry.to_string(),
                        port: p.to_string(),
                    });
                }
            },
        };
        let bad_host = || RuleError::Host {
            entry: entry.to_string(),
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            if domain.is_empty() || domain.contains('*') {
                return Err(bad_host());
            }
            HostPattern::Suffix(format!(".{domain}"))
        } else if host.is_empty() || host.contains('*') || host.contains('/') {
            return Err(bad_host());
        } else {
            HostPattern::Exact(host)
        };
        Ok(Rule { host, port })
    }
}

impl Rule {
    /// The host's loopback port this entry maps into the sandbox: `127.0.0.1:PORT`,
    /// `localhost:PORT` or `[::1]:PORT`.
    pub fn loopback_port(&self) -> Option<u16> {
        match &self.host {
            HostPattern::Exact(h) if h == "127.0.0.1" || h == "localhost" || h == "::1" => {
                self.port
            }
            _ => None,
        }
    }

    /// Whether the entry names an address literal rather than a name.
    pub fn is_literal(&self) -> bool {
        matches!(&self.host, HostPattern::Exact(h) if h.parse::<IpAddr>().is_ok())
    }
}

/// How a destination matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    Exact,
    Wildcard,
    None,
}

#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    rules: Vec<Rule>,
}

/// What the proxy decided for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Connect to these addresses, in order.
    Allow(Vec<SocketAddr>),
    Deny(String),
}

impl Allowlist {
    pub fn new(rules: Vec<Rule>) -> Allowlist {
        Allowlist { rules }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether any entry could match `name` on some port: a DNS question for it is answered.
    pub fn names(&self, name: &str) -> Match {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut best = Match::None;
        for r in &self.rules {
            match &r.host {
                HostPattern::Exact(h) if *h == name => return Match::Exact,
                HostPattern::Suffix(s) if name.ends_with(s.as_str()) => best = Match::Wildcard,
                HostPattern::Any => best = Match::Wildcard,
                _ => {}
            }
        }
        best
    }

    pub fn matches(&self, host: &str, port: u16) -> Match {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let mut best = Match::None;
        for r in &self.rules {
            if r.port.is_some_and(|p| p != port) {
                continue;
            }
            match &r.host {
                HostPattern::Exact(h) if *h == host => return Match::Exact,
                HostPattern::Suffix(s) if host.ends_with(s.as_str()) => best = Match::Wildcard,
                HostPattern::Any => best = Match::Wildcard,
                _ => {}
            }
        }
        best
    }

    /// Decides, resolving the name with `resolve` (the system resolver in production).
    pub fn decide_with(
        &self,
        host: &str,
        port: u16,
        resolve: impl FnOnce(&str, u16) -> std::io::Result<Vec<SocketAddr>>,
    ) -> Decision {
        let how = self.matches(host, port);
        if how == Match::None {
            return Decision::Deny(format!("{host}:{port} is not in the allowlist"));
        }
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        let addrs = match literal {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => match resolve(host, port) {
                Ok(a) if !a.is_empty() => a,
                Ok(_) => return Decision::Deny(format!("{host} does not resolve")),
                Err(e) => return Decision::Deny(format!("{host} does not resolve: {e}")),
            },
        };
        if how == Match::Exact {
            return Decision::Allow(addrs);
        }
        let public: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| !is_internal(a.ip()))
            .collect();
        if public.is_empty() {
            Decision::Deny(format!(
                "{host}:{port} matched only a wildcard entry and resolves to an internal address \
                 ({}); list it exactly to allow it",
                addrs
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        } else {
            Decision::Allow(public)
        }
    }

    pub fn decide(&self, host: &str, port: u16) -> Decision {
        self.decide_with(host, port, |h, p| {
            builtin_name_service();
            (h, p).to_socket_addrs().map(Iterator::collect)
        })
    }
}

/// Set by the sbx binary (see [`resolve_without_nss_modules`]).
static BUILTIN_NSS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes the proxy resolve names with the lookups built into glibc only ("files", "dns"),
/// never loading the host's NSS modules: the sbx binary links glibc statically, and a module
/// such as libnss_systemd loaded into it crashes it. Process-wide, so a program using sbx as a
/// library keeps its own name service unless it asks for this.
pub fn resolve_without_nss_modules() {
    BUILTIN_NSS.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Configures glibc once, before the first lookup: every lookup passes here first, so none
/// runs while it is being configured. Nothing of NSS is touched by a run without the proxy.
fn builtin_name_service() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if BUILTIN_NSS.load(std::sync::atomic::Ordering::Relaxed) {
        ONCE.call_once(crate::sys::nss_builtin_only);
    }
}

/// Loopback, private, link-local (cloud metadata lives there), shared, multicast, unspecified
/// and other non-public ranges.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local, incl. fd00:ec2::254
                || (seg[0] & 0xffc0) == 0xfe80 // link-local
                || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (seg[0] & 0xff00) == 0xff00 // multicast
                || v6 == Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0xa9fe, 0xa9fe) // NAT64 of metadata
        }
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16: cloud metadata at 169.254.169.254
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast() // 224/4
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10 shared address space
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24 protocol assignments
        || o[0] >= 240
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::new(entries.iter().map(|e| Rule::parse(e).unwrap()).collect())
    }

    fn fake(
        addrs: &'static [&'static str],
    ) -> impl FnOnce(&str, u16) -> std::io::Result<Vec<SocketAddr>> {
        move |_, port| {
            Ok(addrs
                .iter()
                .map(|a| SocketAddr::new(a.parse().unwrap(), port))
                .collect())
        }
    }

    #[test]
    fn parses_entries() {
        assert!(Rule::parse("crates.io:443").is_ok());
        assert!(Rule::parse("*.pythonhosted.org:443").is_ok());
        assert!(Rule::parse("127.0.0.1:8080").is_ok());
        assert!(Rule::parse("[::1]:8080").is_ok());
        assert!(Rule::parse("example.com:*").is_ok());
        for bad in [
            "crates.io",
            "crates.io:0",
            "crates.io:http",
            "a*.b:1",
            "*.:1",
            ":80",
            "*.a.*:1",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn rule_errors_name_the_entry() {
        let text = |e: &str| Rule::parse(e).unwrap_err().to_string();
        assert_eq!(text("[::1]"), r#""[::1]": expected [ADDRESS]:PORT"#);
        assert_eq!(
            text("crates.io"),
            r#""crates.io": expected HOST:PORT (PORT may be *)"#
        );
        assert_eq!(text("crates.io:0"), r#""crates.io:0": "0" is not a port"#);
        assert_eq!(
            text("a*.b:1"),
            r#""a*.b:1": a wildcard is `*` or `*.domain`"#
        );
        assert_eq!(text("*.:1"), r#""*.:1": a wildcard is `*` or `*.domain`"#);
    }

    #[test]
    fn matches_names_and_ports() {
        let l = list(&[
            "crates.io:443",
            "*.pythonhosted.org:443",
            "static.rust-lang.org:*",
        ]);
        assert_eq!(l.matches("crates.io", 443), Match::Exact);
        assert_eq!(l.matches("CRATES.IO.", 443), Match::Exact);
        assert_eq!(l.matches("crates.io", 80), Match::None);
        assert_eq!(l.matches("files.pythonhosted.org", 443), Match::Wildcard);
        assert_eq!(l.matches("pythonhosted.org", 443), Match::None);
        assert_eq!(l.matches("evilpythonhosted.org", 443), Match::None);
        assert_eq!(l.matches("static.rust-lang.org", 8443), Match::Exact);
        assert_eq!(l.matches("example.com", 443), Match::None);
    }

    #[test]
    fn wildcards_never_reach_internal_addresses() {
        let l = list(&["*:8080", "*.corp.example:443"]);
        assert!(matches!(
            l.decide_with("localhost", 8080, fake(&["127.0.0.1", "::1"])),
            Decision::Deny(_)
        ));
        assert!(matches!(
            l.decide_with("db.corp.example", 443, fake(&["10.1.2.3"])),
            Decision::Deny(_)
        ));
        assert!(matches!(
            l.decide_with("meta.corp.example", 443, fake(&["169.254.169.254"])),
            Decision::Deny(_)
        ));
        assert!(matches!(
            l.decide_with("x.corp.example", 443, fake(&["::ffff:192.168.1.1"])),
            Decision::Deny(_)
        ));
        // Mixed answers keep only the public addresses.
        assert_eq!(
            l.decide_with(
                "mixed.corp.example",
                443,
                fake(&["127.0.0.1", "93.184.216.34"])
            ),
            Decision::Allow(vec!["93.184.216.34:443".parse().unwrap()])
        );
    }

    #[test]
    fn exact_entries_allow_internal_addresses() {
        let l = list(&["localhost:8080", "10.1.2.3:443"]);
        assert!(matches!(
            l.decide_with("localhost", 8080, fake(&["127.0.0.1"])),
            Decision::Allow(_)
        ));
        assert_eq!(
            l.decide_with("10.1.2.3", 443, |_, _| panic!("literals are not resolved")),
            Decision::Allow(vec!["10.1.2.3:443".parse().unwrap()])
        );
        assert!(matches!(
            l.decide_with("10.1.2.4", 443, fake(&[])),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn internal_ranges() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }
}
