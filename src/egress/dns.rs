//! DNS inside the sandbox, answered by sbx: questions arrive on sbx's sockets in the sandbox's
//! network (127.0.0.1:53 and the host's nameservers' addresses, see `plan::Egress`), go to the
//! host's nameservers from the host's network, and come back. With an allowlist (proxy mode),
//! a name it does not allow gets NXDOMAIN without leaving the sandbox, and a name matched
//! only by a wildcard that resolves to an internal address gets NXDOMAIN too (DNS rebinding).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use crate::proxy::allow::{Match, is_internal};

const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(4);
const MAX_MESSAGE: usize = 65535;

/// The question of a query: its name (lowercase, no trailing dot) and where it ends.
#[derive(Debug, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub end: usize,
}

/// Reads a possibly compressed name at `at`; returns it and the offset after it in place.
fn name(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(at)? as usize;
        match len {
            0 => {
                return Some((labels.join("."), end.unwrap_or(at + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let ptr = ((l & 0x3f) << 8) | *msg.get(at + 1)? as usize;
                end.get_or_insert(at + 2);
                at = ptr;
            }
            l if l < 64 => {
                let label = msg.get(at + 1..at + 1 + l)?;
                labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
                at += 1 + l;
            }
            _ => return None,
        }
    }
    None
}

pub fn question(msg: &[u8]) -> Option<Question> {
    let count = u16::from_be_bytes([*msg.get(4)?, *msg.get(5)?]);
    if msg.len() < 12 || count != 1 {
        return None;
    }
    let (name, at) = name(msg, 12)?;
    let end = at + 4;
    (end <= msg.len()).then_some(Question { name, end })
}

/// The A and AAAA addresses of an answer.
pub fn addresses(msg: &[u8]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let Some(q) = question(msg) else {
        return out;
    };
    let answers = u16::from_be_bytes([msg[6], msg[7]]);
    let mut at = q.end;
    for _ in 0..answers {
        let Some((_, after)) = name(msg, at) else {
            break;
        };
        let Some(fixed) = msg.get(after..after + 10) else {
            break;
        };
        let kind = u16::from_be_bytes([fixed[0], fixed[1]]);
        let len = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let Some(data) = msg.get(after + 10..after + 10 + len) else {
            break;
        };
        match (kind, len) {
            (1, 4) => out.push(IpAddr::V4(Ipv4Addr::new(
                data[0], data[1], data[2], data[3],
            ))),
            (28, 16) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(data);
                out.push(IpAddr::V6(Ipv6Addr::from(b)));
            }
            _ => {}
        }
        at = after + 10 + len;
    }
    out
}

/// An answer with `rcode` and no records, for the query `msg` whose question ends at `end`.
pub fn refusal(msg: &[u8], end: usize, rcode: u8) -> Vec<u8> {
    let mut out = msg[..end].to_vec();
    out[2] = 0x80 | (msg[2] & 0x79); // QR, the query's opcode and RD
    out[3] = 0x80 | rcode; // RA
    out[6..12].fill(0);
    out
}

const NXDOMAIN: u8 = 3;
const FORMERR: u8 = 1;
const SERVFAIL: u8 = 2;

/// The answer sbx gives to `query`, asking the host's nameservers when the name may go out.
fn answer(shared: &Shared, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let policy = &shared.policy;
    let listed_only = policy.plan().listed_only;
    let Some(q) = question(query) else {
        // Not one question: nothing to check a name against.
        return match listed_only {
            true if query.len() >= 12 => Some(refusal(&query[..12], 12, FORMERR)),
            true => None,
            false => ask(shared, query, tcp),
        };
    };
    let how = match listed_only {
        true => policy.plan().allow.names(&q.name),
        false => Match::Exact,
    };
    if how == Match::None {
        shared.ledger.deny(
            &format!("dns {}", q.name),
            "the allowlist names no such host",
        );
        return Some(refusal(query, q.end, NXDOMAIN));
    }
    let reply = match ask(shared, query, tcp) {
        Some(r) => r,
        None => return Some(refusal(query, q.end, SERVFAIL)),
    };
    let addrs = addresses(&reply);
    if listed_only && how == Match::Wildcard && addrs.iter().any(|a| is_internal(*a)) {
        let list: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
        shared.ledger.deny(
            &format!("dns {}", q.name),
            &format!(
                "matched only a wildcard and resolves to an internal address ({}); list it \
                 exactly to allow it",
                list.join(", ")
            ),
        );
        return Some(refusal(query, q.end, NXDOMAIN));
    }
    // The names stand for the addresses in the proxy's decisions, and in what a run reached.
    for a in addrs {
        policy.resolved(&q.name, a);
    }
    Some(reply)
}

/// Sends `query` to each of the host's nameservers in turn; the first answer wins.
fn ask(shared: &Shared, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    for server in &shared.policy.plan().upstream {
        let to = SocketAddr::new(*server, 53);
        let got = match tcp {
            false => ask_udp(to, query),
            true => ask_tcp(to, query),
        };
        match got {
            Ok(r) if r.len() >= 12 && r[..2] == query[..2] => return Some(r),
            Ok(_) => {}
            Err(e) => tracing::debug!("dns: {to}: {e}"),
        }
    }
    None
}

fn ask_udp(to: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let any: SocketAddr = match to {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = UdpSocket::bind(any)?;
    s.connect(to)?;
    s.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    s.send(query)?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let n = s.recv(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn ask_tcp(to: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&to, UPSTREAM_TIMEOUT)?;
    s.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    write_framed(&mut s, query)?;
    read_framed(&mut s)
}

fn read_framed(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut msg)?;
    Ok(msg)
}

fn write_framed(s: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| io::ErrorKind::InvalidData)?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    s.write_all(&out)
}

/// Serves one UDP socket inside the sandbox until it is shut down.
pub fn serve_udp(shared: Arc<Shared>, sock: UdpSocket) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(got) => got,
            Err(_) if shared.stopping() => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!("dns: {e}");
                if shared.stopping() {
                    return;
                }
                continue;
            }
        };
        if shared.stopping() {
            return;
        }
        let query = buf[..n].to_vec();
        let Some(task) = shared.task() else { continue };
        let (shared, sock) = (shared.clone(), sock.try_clone());
        let Ok(sock) = sock else { continue };
        let _ = std::thread::Builder::new()
            .name("sbx-dns".into())
            .spawn(move || {
                let _task = task;
                if let Some(reply) = answer(&shared, &query, false) {
                    let _ = sock.send_to(&reply, from);
                }
            });
    }
}

/// Serves one TCP listener inside the sandbox until it is shut down.
pub fn serve_tcp(shared: Arc<Shared>, listener: TcpListener) {
    for conn in listener.incoming() {
        if shared.stopping() {
            return;
        }
        let Ok(mut conn) = conn else { continue };
        let Some(task) = shared.task() else { continue };
        let shared = shared.clone();
        let _ = std::thread::Builder::new()
            .name("sbx-dns-tcp".into())
            .spawn(move || {
                let _task = task;
                let id = shared.ledger.track(&conn);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                while let Ok(query) = read_framed(&mut conn) {
                    match answer(&shared, &query, true) {
                        Some(reply) if write_framed(&mut conn, &reply).is_ok() => {}
                        _ => break,
                    }
                }
                shared.ledger.untrack(id);
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` (type A), id 0x1234, RD set.
    fn query(name: &str) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    }

    #[test]
    fn reads_the_question_and_compressed_answers() {
        let q = query("Example.COM");
        let parsed = question(&q).unwrap();
        assert_eq!(parsed.name, "example.com");
        assert_eq!(parsed.end, q.len());
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 2;
        // Two answers naming the question by a pointer to offset 12: one A, one AAAA.
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 93, 184, 216, 34]);
        r.extend_from_slice(&[0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
        r.extend_from_slice(&[0x26, 0x06, 0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(
            addresses(&r),
            vec![
                "93.184.216.34".parse::<IpAddr>().unwrap(),
                "2606:2800::1".parse::<IpAddr>().unwrap()
            ]
        );
    }

    #[test]
    fn a_refusal_keeps_the_id_and_question() {
        let q = query("denied.test");
        let r = refusal(&q, q.len(), NXDOMAIN);
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[2] & 0x80, 0x80, "a response");
        assert_eq!(r[3] & 0x0f, NXDOMAIN);
        assert_eq!(&r[4..6], &[0, 1]);
        assert_eq!(&r[6..12], &[0; 6]);
        assert_eq!(&r[12..], &q[12..]);
    }

    #[test]
    fn malformed_messages_are_not_read_past_their_end() {
        for bad in [
            vec![],
            vec![0; 11],
            vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63],
            // A pointer loop.
            vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1],
        ] {
            assert!(question(&bad).is_none());
            assert!(addresses(&bad).is_empty());
        }
    }
}
