//! Moving bytes from one TCP stream to another, for the proxy's tunnels and sbx's relay: with
//! splice(2) through a pipe, so that the bytes never enter sbx (a copy loop where splice is
//! refused).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;

/// Moves what `from` sends to `to` until end of file, then half-closes `to`.
pub fn pump(from: &TcpStream, to: &TcpStream) {
    if splice_all(from, to).is_err() {
        let _ = copy(from, to);
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Moves the bytes through a pipe with splice(2), never copying them into sbx. An error before
/// the first byte moved (no splice here) leaves the copy to the caller.
fn splice_all(from: &TcpStream, to: &TcpStream) -> io::Result<()> {
    use nix::fcntl::{SpliceFFlags, splice};
    const CHUNK: usize = 1 << 20;
    let (r, w) = nix::unistd::pipe()?;
    let _ = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(CHUNK as i32));
    let flags = SpliceFFlags::SPLICE_F_MOVE;
    let mut moved_any = false;
    loop {
        let n = match splice(from.as_fd(), None, w.as_fd(), None, CHUNK, flags) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) if !moved_any => return Err(e.into()),
            Err(_) => return Ok(()),
        };
        moved_any = true;
        let mut left = n;
        while left > 0 {
            match splice(r.as_fd(), None, to.as_fd(), None, left, flags) {
                Ok(0) => return Ok(()),
                Ok(m) => left -= m,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return Ok(()),
            }
        }
    }
}

/// Copies until end of file with a buffer; returns the bytes copied.
pub fn copy(mut from: &TcpStream, mut to: &TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0;
    loop {
        match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                to.write_all(&buf[..n])?;
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
