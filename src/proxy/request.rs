//! The head and body of a plain HTTP request through the proxy, read strictly. The proxy
//! forwards one request per connection, so it must know exactly where that request ends; any
//! head or framing a server could read differently from the proxy (a bare CR or LF, a folded or
//! malformed header line, a control byte, Content-Length together with Transfer-Encoding,
//! conflicting lengths, a transfer coding other than chunked) is refused, not guessed at:
//! otherwise the bytes the proxy takes for a body could be a second request to the server.

use std::io::{self, BufRead, Read, Write};

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: u64 = 8 * 1024;

/// Why a request is refused: the HTTP status and what the client is told.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    pub status: &'static str,
    pub why: &'static str,
}

const fn bad(why: &'static str) -> Refusal {
    Refusal {
        status: "400 Bad Request",
        why,
    }
}

/// How the request's body is delimited (RFC 9112, section 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// No Content-Length and no Transfer-Encoding: no body.
    Empty,
    Length(u64),
    Chunked,
}

/// A request head, as received.
#[derive(Debug)]
pub(super) struct Head<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub version: &'a str,
    pub headers: Vec<Header<'a>>,
    pub framing: Framing,
}

/// One header line.
#[derive(Debug)]
pub(super) struct Header<'a> {
    /// The name, in lowercase.
    pub name: String,
    /// The value, without the spaces around it.
    pub value: &'a [u8],
    /// The whole line as received, without its CRLF.
    pub line: &'a [u8],
}

/// `tchar` of RFC 9110: what a method or a header name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// A header field value: visible bytes, spaces, tabs and obs-text; no other control byte.
fn is_field_value(v: &[u8]) -> bool {
    v.iter()
        .all(|&b| b == b'\t' || b == b' ' || (0x21..0x7f).contains(&b) || b >= 0x80)
}

/// Splits a header line (without its CRLF) at its colon.
fn header(line: &[u8]) -> Result<Header<'_>, Refusal> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(bad("a header line without a colon"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    // A name followed by whitespace, or a line starting with it (obsolete folding), is read
    // differently by different servers.
    if !is_token(name) {
        return Err(bad("a malformed header name"));
    }
    if !is_field_value(value) {
        return Err(bad("a control character in a header value"));
    }
    Ok(Header {
        name: String::from_utf8_lossy(name).to_ascii_lowercase(),
        value: value.trim_ascii(),
        line,
    })
}

/// Parses `head` (up to and including the empty line that ends it).
pub(super) fn parse(head: &[u8]) -> Result<Head<'_>, Refusal> {
    // Every line, the last one included, ends in CR (the LFs are split off below).
    let text = head
        .strip_suffix(b"\n\r\n")
        .ok_or(bad("the request head does not end with an empty line"))?;
    // Lines end in CRLF; a CR or LF on its own is where servers disagree about line ends.
    let mut lines = text.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r"));
    let first = lines.next().flatten().ok_or(bad("a bare LF in the head"))?;
    let request = std::str::from_utf8(first)
        .ok()
        .filter(|l| l.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .ok_or(bad("a malformed request line"))?;
    let mut parts = request.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("a malformed request line"));
    };
    if !is_token(method.as_bytes()) || target.is_empty() {
        return Err(bad("a malformed request line"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(Refusal {
            status: "505 HTTP Version Not Supported",
            why: "only HTTP/1.0 and HTTP/1.1 are proxied",
        });
    }
    let mut headers = Vec::new();
    for line in lines {
        let line = line.ok_or(bad("a bare LF in the head"))?;
        if line.contains(&b'\r') {
            return Err(bad("a bare CR in the head"));
        }
        headers.push(header(line)?);
    }
    let framing = framing(&headers)?;
    Ok(Head {
        method,
        target,
        version,
        headers,
        framing,
    })
}

/// The body's framing, from the Content-Length and Transfer-Encoding headers.
fn framing(headers: &[Header]) -> Result<Framing, Refusal> {
    // Each header may hold a comma-separated list, and may be repeated.
    let values = |want: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name == want)
            .flat_map(|h| h.value.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
    };
    let mut length = None;
    for v in values("content-length") {
        let n = std::str::from_utf8(v)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(bad("a malformed Content-Length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(bad("conflicting Content-Length headers"));
        }
        length = Some(n);
    }
    let codings: Vec<&[u8]> = values("transfer-encoding").collect();
    if codings.is_empty() {
        return Ok(length.map_or(Framing::Empty, Framing::Length));
    }
    if length.is_some() {
        return Err(bad("both Content-Length and Transfer-Encoding"));
    }
    match codings.as_slice() {
        [c] if c.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
        _ => Err(Refusal {
            status: "501 Not Implemented",
            why: "the only transfer coding proxied is chunked",
        }),
    }
}

/// Copies exactly `n` bytes.
fn copy_exact(from: &mut impl BufRead, to: &mut impl Write, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut from.take(n), to)?;
    if copied < n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the client closed inside the request body",
        ));
    }
    Ok(())
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// One CRLF-terminated line (with its CRLF), with no other CR or LF in it.
fn read_line(from: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    from.take(MAX_LINE).read_until(b'\n', &mut line)?;
    match line.strip_suffix(b"\r\n") {
        Some(text) if !text.contains(&b'\r') && !text.contains(&b'\n') => Ok(line),
        _ if line.last() != Some(&b'\n') => Err(invalid("a chunk line too long or cut short")),
        _ => Err(invalid("a chunk line not ended by CRLF")),
    }
}

/// The size on a chunk-size line (`HEX[;extensions]CRLF`).
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let text = &line[..line.len() - 2];
    let (hex, ext) = match text.iter().position(|&b| b == b';') {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, &[][..]),
    };
    if hex.is_empty() || hex.len() > 16 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(invalid("a malformed chunk size"));
    }
    if !is_field_value(ext) {
        return Err(invalid("a control character in a chunk extension"));
    }
    let hex = std::str::from_utf8(hex).map_err(|_| invalid("a malformed chunk size"))?;
    u64::from_str_radix(hex, 16).map_err(|_| invalid("a malformed chunk size"))
}

/// Copies the body that `framing` delimits from `from` to `to`, and not a byte more.
pub(super) fn forward_body(
    framing: Framing,
    from: &mut impl BufRead,
    to: &mut impl Write,
) -> io::Result<()> {
    match framing {
        Framing::Empty => Ok(()),
        Framing::Length(n) => copy_exact(from, to, n),
        Framing::Chunked => loop {
            let line = read_line(from)?;
            let size = chunk_size(&line)?;
            to.write_all(&line)?;
            if size == 0 {
                // The trailer section: header lines up to an empty line.
                loop {
                    let line = read_line(from)?;
                    if line != b"\r\n" {
                        header(&line[..line.len() - 2]).map_err(|r| invalid(r.why))?;
                    }
                    to.write_all(&line)?;
                    if line == b"\r\n" {
                        return Ok(());
                    }
                }
            }
            copy_exact(from, to, size)?;
            let mut end = [0u8; 2];
            from.read_exact(&mut end)?;
            if &end != b"\r\n" {
                return Err(invalid("chunk data not followed by CRLF"));
            }
            to.write_all(&end)?;
        },
    }
}

#[cfg(test)]
mod tests;
