use std::io::{BufReader, Read};

use super::*;

fn head(text: &str) -> Result<Head<'_>, Refusal> {
    parse(text.as_bytes())
}

fn why(text: &str) -> &'static str {
    head(text).expect_err("accepted").why
}

#[test]
fn a_plain_request() {
    let h =
        head("GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n\r\n").unwrap();
    assert_eq!(
        (h.method, h.target, h.version),
        ("GET", "http://a.example/x", "HTTP/1.1")
    );
    let names: Vec<&str> = h.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["host", "accept"]);
    assert_eq!(h.headers[0].value, b"a.example");
    assert_eq!(h.headers[1].line, b"Accept: */*");
    assert_eq!(h.framing, Framing::Empty);
}

#[test]
fn heads_servers_could_read_differently_are_refused() {
    // A bare LF or CR: a server that takes it for a line end sees another header.
    assert_eq!(
        why("GET http://a/ HTTP/1.1\r\nX: 1\nHost: b\r\n\r\n"),
        "a bare LF in the head"
    );
    assert_eq!(
        why("GET http://a/ HTTP/1.1\r\nX: 1\rHost: b\r\n\r\n"),
        "a bare CR in the head"
    );
    assert_eq!(
        why("GET http://a/ HTTP/1.1\nHost: b\r\n\r\n"),
        "a bare LF in the head"
    );
    // Obsolete line folding, space before the colon, no colon, control bytes.
    assert_eq!(
        why("GET http://a/ HTTP/1.1\r\nX: 1\r\n Host: b\r\n\r\n"),
        "a malformed header name"
    );
    assert_eq!(
        why("GET http://a/ HTTP/1.1\r\nHost : b\r\n\r\n"),
        "a malformed header name"
    );
    assert_eq!(
        why("GET http://a/ HTTP/1.1\r\nHost\r\n\r\n"),
        "a header line without a colon"
    );
    assert_eq!(
        why("GET http://a/ HTTP/1.1\r\nX: a\x00b\r\n\r\n"),
        "a control character in a header value"
    );
    // The request line: three parts, one space apart, visible ASCII.
    for line in [
        "GET  http://a/ HTTP/1.1",
        "GET http://a/",
        "GET http://a/ HTTP/1.1 x",
        "GET http://a\x1b/ HTTP/1.1",
        "G(T http://a/ HTTP/1.1",
    ] {
        assert_eq!(why(&format!("{line}\r\n\r\n")), "a malformed request line");
    }
    assert_eq!(
        head("GET http://a/ HTTP/2\r\n\r\n").unwrap_err().status,
        "505 HTTP Version Not Supported"
    );
}

#[test]
fn framing_is_unambiguous_or_refused() {
    let framing = |headers: &str| {
        parse(format!("POST http://a/ HTTP/1.1\r\n{headers}\r\n").as_bytes()).map(|h| h.framing)
    };
    assert_eq!(framing("Content-Length: 5\r\n"), Ok(Framing::Length(5)));
    assert_eq!(
        framing("Content-Length: 5\r\nContent-Length: 5, 5\r\n"),
        Ok(Framing::Length(5))
    );
    assert_eq!(
        framing("Transfer-Encoding: Chunked\r\n"),
        Ok(Framing::Chunked)
    );
    assert_eq!(
        framing("Content-Length: 5\r\nContent-Length: 6\r\n")
            .unwrap_err()
            .why,
        "conflicting Content-Length headers"
    );
    for bad in ["+5", "0x5", "5 5", "", "99999999999999999999999"] {
        assert_eq!(
            framing(&format!("Content-Length: {bad}\r\n"))
                .unwrap_err()
                .why,
            "a malformed Content-Length",
            "{bad:?}"
        );
    }
    assert_eq!(
        framing("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")
            .unwrap_err()
            .why,
        "both Content-Length and Transfer-Encoding"
    );
    for te in [
        "gzip, chunked",
        "chunked, chunked",
        "identity",
        "chunked\r\nTransfer-Encoding: gzip",
    ] {
        assert_eq!(
            framing(&format!("Transfer-Encoding: {te}\r\n"))
                .unwrap_err()
                .status,
            "501 Not Implemented",
            "{te:?}"
        );
    }
}

/// Forwards the body `framing` delimits out of `input`; returns (forwarded, left over).
fn forward(framing: Framing, input: &[u8]) -> (io::Result<()>, Vec<u8>, Vec<u8>) {
    let mut from = BufReader::new(input);
    let mut out = Vec::new();
    let r = forward_body(framing, &mut from, &mut out);
    let mut rest = Vec::new();
    from.read_to_end(&mut rest).unwrap();
    (r, out, rest)
}

#[test]
fn only_the_body_is_forwarded() {
    let (r, out, rest) = forward(Framing::Empty, b"GET /second HTTP/1.1\r\n\r\n");
    assert!(r.is_ok());
    assert_eq!(
        (out.as_slice(), rest.as_slice()),
        (&b""[..], &b"GET /second HTTP/1.1\r\n\r\n"[..])
    );

    let (r, out, rest) = forward(Framing::Length(5), b"helloGET /second HTTP/1.1\r\n\r\n");
    assert!(r.is_ok());
    assert_eq!(out, b"hello");
    assert_eq!(rest, b"GET /second HTTP/1.1\r\n\r\n");

    let chunked =
        b"5;x=y\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\n";
    let mut input = chunked.to_vec();
    input.extend_from_slice(b"GET /second HTTP/1.1\r\n\r\n");
    let (r, out, rest) = forward(Framing::Chunked, &input);
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(out, chunked);
    assert_eq!(rest, b"GET /second HTTP/1.1\r\n\r\n");
}

#[test]
fn a_bad_chunked_body_stops_the_forwarding() {
    for (input, forwarded) in [
        (&b"5\r\nhelloXX0\r\n\r\n"[..], &b"5\r\nhello"[..]),
        (b"5\nhello\r\n0\r\n\r\n", b""),
        (b"g\r\n", b""),
        (b" 5\r\nhello\r\n", b""),
        (b"11111111111111111\r\n", b""),
        (b"0\r\nX\x01: y\r\n\r\n", b"0\r\n"),
        (b"5\r\nhel", b"5\r\nhel"),
    ] {
        let (r, out, _) = forward(Framing::Chunked, input);
        assert!(r.is_err(), "{:?} accepted", String::from_utf8_lossy(input));
        assert_eq!(out, forwarded, "{:?}", String::from_utf8_lossy(input));
    }
    let (r, out, _) = forward(Framing::Length(10), b"short");
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(out, b"short");
}
