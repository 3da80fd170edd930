//! What the proxy test files share: running a client in the sandbox (with or without a run
//! report), reading the `KEY value` lines it prints, the allowlist entry of a loopback port,
//! and a python library that speaks SOCKS5 and CONNECT by hand.

use std::path::Path;

use serde_json::Value;

use super::Ran;

pub const CURL: &str = "/usr/bin/curl";
pub const PYTHON: &str = "/usr/bin/python3";

/// Whether every tool exists; prints a note naming the missing one otherwise.
pub fn have(test: &str, tools: &[&str]) -> bool {
    for t in tools {
        if !Path::new(t).exists() {
            super::note_skip(test, &format!("no {t}"));
            return false;
        }
    }
    true
}

/// `sbx ARGS -- CMD...`.
pub fn run(args: &[&str], cmd: &[&str]) -> Ran {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--");
    all.extend_from_slice(cmd);
    super::sbx(all).run()
}

/// `sbx ARGS -- sh -c SCRIPT sh SCRIPT_ARGS...`.
pub fn sh(args: &[&str], script: &str, script_args: &[&str]) -> Ran {
    let mut cmd = vec!["sh", "-c", script, "sh"];
    cmd.extend_from_slice(script_args);
    run(args, &cmd)
}

/// Like [`run`], with `--json-status`; returns the report too.
pub fn run_report(args: &[&str], cmd: &[&str]) -> (Ran, Value) {
    let dir = super::Workdir::new();
    let status = dir.path().join("status.json");
    let status_arg = status.display().to_string();
    let mut all: Vec<&str> = vec!["--json-status", &status_arg];
    all.extend_from_slice(args);
    let r = run(&all, cmd);
    let report = super::read_report(&status, &r);
    (r, report)
}

/// The rest of the stdout line that starts with `key ` (the last one if several).
pub fn field<'a>(r: &'a Ran, key: &str) -> &'a str {
    let prefix = format!("{key} ");
    r.stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(&prefix).or_else(|| (l == key).then_some("")))
        .unwrap_or_else(|| panic!("no {key:?} line in the output: {r:?}"))
}

pub fn allow(port: &str) -> String {
    format!("127.0.0.1:{port}")
}

/// A python helper library, prepended to scripts that speak SOCKS5 or CONNECT by hand.
pub const PY_LIB: &str = r#"
import socket, sys

def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError("closed after %r" % out)
        out += chunk
    return out

def socks(port, name=b"127.0.0.1"):
    """Opens a SOCKS5 CONNECT to name:port through the proxy; returns (socket, reply code)."""
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    s.sendall(b"\x05\x01\x00")
    assert recv_exact(s, 2) == b"\x05\x00"
    s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
    return s, recv_exact(s, 10)[1]

def connect(port):
    """Opens an HTTP CONNECT tunnel to 127.0.0.1:port; returns (socket, status line)."""
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    return s, head.split(b"\r\n")[0].decode()

def get_over(s, port):
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % port)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n\r\n", 1)[-1].decode().strip()
"#;

pub fn py(script: &str) -> String {
    format!("{PY_LIB}\n{script}")
}

/// Like [`sh`], with `--json-status`; returns the report too.
pub fn sh_report(args: &[&str], script: &str, script_args: &[&str]) -> (Ran, Value) {
    let mut cmd = vec!["sh", "-c", script, "sh"];
    cmd.extend_from_slice(script_args);
    run_report(args, &cmd)
}
