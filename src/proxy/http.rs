//! The HTTP side of the proxy: `CONNECT host:port` tunnels and plain `GET http://…` requests,
//! one request per connection (`Connection: close`), so every request is checked.

use std::io::{self, Write};
use std::net::TcpStream;

use super::{Allowlist, Decision, Shared, connect, read_head, splice};

fn respond(client: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(msg.as_bytes())
}

/// Splits `host:port` (with `[v6]:port`), defaulting the port.
pub(super) fn split_host_port(s: &str, default: u16) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once(']')?;
        let port = match p.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if p.is_empty() => default,
            None => return None,
        };
        return Some((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => None,
        None => Some((s.to_string(), default)),
    }
    .filter(|(h, _)| !h.is_empty())
}

pub(super) fn serve(mut client: TcpStream, allow: &Allowlist, shared: &Shared) -> io::Result<()> {
    let (head, rest) = read_head(&mut client)?;
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return respond(
            &mut client,
            "400 Bad Request",
            "sbx proxy: malformed request line\n",
        );
    };

    if method.eq_ignore_ascii_case("CONNECT") {
        let Some((host, port)) = split_host_port(target, 443) else {
            return respond(
                &mut client,
                "400 Bad Request",
                "sbx proxy: CONNECT needs host:port\n",
            );
        };
        let what = format!("{host}:{port}");
        return match allow.decide(&host, port) {
            Decision::Deny(why) => {
                shared.deny(&what, &why);
                respond(&mut client, "403 Forbidden", &format!("sbx proxy: {why}\n"))
            }
            Decision::Allow(addrs) => match connect(&addrs) {
                Ok(server) => {
                    shared.allow(&what);
                    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
                    splice(client, server, &rest, shared)
                }
                Err(e) => respond(
                    &mut client,
                    "502 Bad Gateway",
                    &format!("sbx proxy: {what}: {e}\n"),
                ),
            },
        };
    }

    // Plain HTTP through a proxy uses an absolute URI: http://host[:port]/path.
    let Some(after) = target.strip_prefix("http://") else {
        return respond(
            &mut client,
            "400 Bad Request",
            "sbx proxy: expected CONNECT or an http:// absolute URI\n",
        );
    };
    let (authority, path) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    let Some((host, port)) = split_host_port(authority, 80) else {
        return respond(
            &mut client,
            "400 Bad Request",
            "sbx proxy: bad host in the URI\n",
        );
    };
    let what = format!("{host}:{port}");
    let addrs = match allow.decide(&host, port) {
        Decision::Deny(why) => {
            shared.deny(&what, &why);
            return respond(&mut client, "403 Forbidden", &format!("sbx proxy: {why}\n"));
        }
        Decision::Allow(addrs) => addrs,
    };
    let server = match connect(&addrs) {
        Ok(s) => s,
        Err(e) => {
            return respond(
                &mut client,
                "502 Bad Gateway",
                &format!("sbx proxy: {what}: {e}\n"),
            );
        }
    };
    shared.allow(&what);
    let mut out = format!("{method} {path} {version}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if name.starts_with("proxy-") || name == "connection" || name == "keep-alive" {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut early = out.into_bytes();
    early.extend_from_slice(&rest);
    splice(client, server, &early, shared)
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("a.b:8080", 80), Some(("a.b".into(), 8080)));
        assert_eq!(split_host_port("a.b", 80), Some(("a.b".into(), 80)));
        assert_eq!(split_host_port("[::1]:443", 80), Some(("::1".into(), 443)));
        assert_eq!(split_host_port("[::1]", 80), Some(("::1".into(), 80)));
        assert_eq!(split_host_port(":80", 80), None);
        assert_eq!(split_host_port("a:b", 80), None);
    }
}
