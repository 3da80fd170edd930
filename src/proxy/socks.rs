//! The SOCKS5 side of the proxy (RFC 1928): no authentication, CONNECT only.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, TcpStream};

use super::{Allowlist, Decision, Shared, connect, splice};

const NOT_ALLOWED: u8 = 0x02;
const HOST_UNREACHABLE: u8 = 0x04;
const REFUSED: u8 = 0x05;
const COMMAND_NOT_SUPPORTED: u8 = 0x07;
const ADDRESS_NOT_SUPPORTED: u8 = 0x08;

fn reply(client: &mut TcpStream, code: u8) -> io::Result<()> {
    client.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0])
}

pub(super) fn serve(mut client: TcpStream, allow: &Allowlist, shared: &Shared) -> io::Result<()> {
    let mut hdr = [0u8; 2];
    client.read_exact(&mut hdr)?;
    let mut methods = vec![0u8; hdr[1] as usize];
    client.read_exact(&mut methods)?;
    if !methods.contains(&0) {
        return client.write_all(&[5, 0xff]);
    }
    client.write_all(&[5, 0])?;

    let mut req = [0u8; 4];
    client.read_exact(&mut req)?;
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            client.read_exact(&mut a)?;
            Ipv4Addr::from(a).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len)?;
            let mut name = vec![0u8; len[0] as usize];
            client.read_exact(&mut name)?;
            String::from_utf8_lossy(&name).into_owned()
        }
        4 => {
            let mut a = [0u8; 16];
            client.read_exact(&mut a)?;
            Ipv6Addr::from(a).to_string()
        }
        _ => return reply(&mut client, ADDRESS_NOT_SUPPORTED),
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port)?;
    let port = u16::from_be_bytes(port);
    if req[1] != 1 {
        return reply(&mut client, COMMAND_NOT_SUPPORTED);
    }
    let what = format!("{host}:{port}");
    match allow.decide(&host, port) {
        Decision::Deny(why) => {
            shared.ledger.deny(&what, &why);
            reply(&mut client, NOT_ALLOWED)
        }
        Decision::Allow(addrs) => match connect(&addrs) {
            Ok(server) => {
                shared.ledger.allow(&what);
                reply(&mut client, 0)?;
                splice(client, server, shared, |client, server| {
                    super::pump::pump(client, server);
                    Ok(())
                })
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => reply(&mut client, REFUSED),
            Err(_) => reply(&mut client, HOST_UNREACHABLE),
        },
    }
}
