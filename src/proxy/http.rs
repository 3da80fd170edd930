//! The HTTP side of the proxy: `CONNECT host:port` tunnels and plain `GET http://…` requests,
//! one request per connection (`Connection: close`), so every request is checked: the server
//! is sent the request that was checked, with the Host it was checked for, and nothing after
//! it.

use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;

use super::request::{self, Head};
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

/// What the server is sent: the request in origin form, a Host header naming the destination
/// that was checked (a proxy replaces the client's, RFC 9112 section 3.2.2: otherwise a request
/// checked for one name reaches another site on the same server), the client's headers less
/// the proxy's and the connection's own, and `Connection: close`.
fn forwarded_head(req: &Head, path: &str, host: &str, port: u16) -> Vec<u8> {
    let mut out = format!("{} {path} {}\r\n", req.method, req.version).into_bytes();
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    match port {
        80 => out.extend_from_slice(format!("Host: {host}\r\n").as_bytes()),
        _ => out.extend_from_slice(format!("Host: {host}:{port}\r\n").as_bytes()),
    }
    for h in &req.headers {
        let n = h.name.as_str();
        if n == "host" || n.starts_with("proxy-") || n == "connection" || n == "keep-alive" {
            continue;
        }
        out.extend_from_slice(h.line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
}

/// Splits an absolute URI's rest (after `http://`) into its authority and the origin-form
/// target; None when it names a user (`user@host`), which the allowlist does not see.
fn split_uri(after: &str) -> Option<(&str, String)> {
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    if authority.contains('@') {
        return None;
    }
    let rest = rest.split('#').next().unwrap_or_default();
    let path = match rest.starts_with('/') {
        true => rest.to_string(),
        false => format!("/{rest}"),
    };
    Some((authority, path))
}

pub(super) fn serve(mut client: TcpStream, allow: &Allowlist, shared: &Shared) -> io::Result<()> {
    let (head, rest) = read_head(&mut client)?;
    let req = match request::parse(&head) {
        Ok(r) => r,
        Err(r) => return respond(&mut client, r.status, &format!("sbx proxy: {}\n", r.why)),
    };

    if req.method.eq_ignore_ascii_case("CONNECT") {
        let Some((host, port)) = split_host_port(req.target, 443) else {
            return respond(
                &mut client,
                "400 Bad Request",
                "sbx proxy: CONNECT needs host:port\n",
            );
        };
        let what = format!("{host}:{port}");
        return match allow.decide(&host, port) {
            Decision::Deny(why) => {
                shared.ledger.deny(&what, &why);
                respond(&mut client, "403 Forbidden", &format!("sbx proxy: {why}\n"))
            }
            Decision::Allow(addrs) => match connect(&addrs) {
                Ok(server) => {
                    shared.ledger.allow(&what);
                    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
                    splice(client, server, shared, move |client, server| {
                        server.write_all(&rest)?;
                        super::pump::pump(client, server);
                        Ok(())
                    })
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
    let Some(after) = req.target.strip_prefix("http://") else {
        return respond(
            &mut client,
            "400 Bad Request",
            "sbx proxy: expected CONNECT or an http:// absolute URI\n",
        );
    };
    let Some((host, port, path)) = split_uri(after)
        .and_then(|(authority, path)| Some((split_host_port(authority, 80)?, path)))
        .map(|((host, port), path)| (host, port, path))
    else {
        return respond(
            &mut client,
            "400 Bad Request",
            "sbx proxy: bad host in the URI\n",
        );
    };
    let what = format!("{host}:{port}");
    let addrs = match allow.decide(&host, port) {
        Decision::Deny(why) => {
            shared.ledger.deny(&what, &why);
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
    shared.ledger.allow(&what);
    let head = forwarded_head(&req, &path, &host, port);
    let framing = req.framing;
    splice(client, server, shared, move |client, server| {
        server.write_all(&head)?;
        let mut from = BufReader::new(io::Cursor::new(rest).chain(client));
        request::forward_body(framing, &mut from, server)?;
        // Only this request was checked: whatever the client sends after it (a pipelined
        // request, perhaps for another host) is dropped, up to the client's end.
        let dropped = io::copy(&mut from, &mut io::sink())?;
        if dropped > 0 {
            tracing::info!(
                "proxy: {}: dropped {dropped} bytes sent after the first request (one request \
                 per connection)",
                crate::text::escape(&what)
            );
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::{split_host_port, split_uri};

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("a.b:8080", 80), Some(("a.b".into(), 8080)));
        assert_eq!(split_host_port("a.b", 80), Some(("a.b".into(), 80)));
        assert_eq!(split_host_port("[::1]:443", 80), Some(("::1".into(), 443)));
        assert_eq!(split_host_port("[::1]", 80), Some(("::1".into(), 80)));
        assert_eq!(split_host_port(":80", 80), None);
        assert_eq!(split_host_port("a:b", 80), None);
    }

    #[test]
    fn absolute_uris() {
        let split = |s| split_uri(s).map(|(a, p)| (a.to_string(), p));
        assert_eq!(
            split("a.b:8080/x?y"),
            Some(("a.b:8080".into(), "/x?y".into()))
        );
        assert_eq!(split("a.b"), Some(("a.b".into(), "/".into())));
        assert_eq!(split("a.b?q=1"), Some(("a.b".into(), "/?q=1".into())));
        assert_eq!(split("a.b/p#frag"), Some(("a.b".into(), "/p".into())));
        assert_eq!(split("[::1]:80/"), Some(("[::1]:80".into(), "/".into())));
        // A user name before the host would be read as part of the host.
        assert_eq!(split("user@a.b/"), None);
    }
}
