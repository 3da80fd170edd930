//! Paths into /proc, built on the stack: the magic link of a descriptor (how mount(2) is given
//! exactly the file a descriptor holds), its fdinfo (which mount it is on) and a process's
//! namespace. The sandbox's processes use them where they may not allocate.

use std::ffi::CStr;
use std::os::fd::RawFd;

use super::{Errno, SysResult};

/// A piece of a [`ShortPath`].
pub enum Part<'a> {
    Text(&'a [u8]),
    Num(u64),
}

/// A NUL-terminated path of at most 127 bytes, built without allocating.
pub struct ShortPath {
    buf: [u8; 128],
    len: usize,
}

impl ShortPath {
    /// The parts joined; ENAMETOOLONG if they do not fit.
    pub fn of(parts: &[Part<'_>]) -> SysResult<ShortPath> {
        let mut p = ShortPath {
            buf: [0; 128],
            len: 0,
        };
        for part in parts {
            match part {
                Part::Text(t) => p.push(t)?,
                Part::Num(n) => {
                    let mut digits = [0u8; 20];
                    let mut i = digits.len();
                    let mut n = *n;
                    loop {
                        i -= 1;
                        digits[i] = b'0' + (n % 10) as u8;
                        n /= 10;
                        if n == 0 {
                            break;
                        }
                    }
                    p.push(&digits[i..])?;
                }
            }
        }
        Ok(p)
    }

    fn push(&mut self, t: &[u8]) -> SysResult {
        // One byte stays for the NUL; a NUL inside would cut the path short.
        if self.len + t.len() >= self.buf.len() || t.contains(&0) {
            return Err(Errno::ENAMETOOLONG);
        }
        self.buf[self.len..self.len + t.len()].copy_from_slice(t);
        self.len += t.len();
        Ok(())
    }

    pub fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.buf).expect("the buffer ends in a NUL")
    }
}

/// `<proc>/self/fd/<fd>`: given to mount(2), it names exactly what `fd` holds, whatever
/// happened to the path it was opened by.
pub fn fd_path(proc: &CStr, fd: RawFd) -> SysResult<ShortPath> {
    ShortPath::of(&[
        Part::Text(proc.to_bytes()),
        Part::Text(b"/self/fd/"),
        Part::Num(fd as u64),
    ])
}

/// The id of the mount `fd` is on (`mnt_id` of `<proc>/self/fdinfo/<fd>`, Linux 3.15), the
/// first field of mountinfo.
pub fn mount_id(proc: &CStr, fd: RawFd) -> SysResult<u64> {
    let path = ShortPath::of(&[
        Part::Text(proc.to_bytes()),
        Part::Text(b"/self/fdinfo/"),
        Part::Num(fd as u64),
    ])?;
    let info = super::open(path.as_cstr(), libc::O_RDONLY, 0)?;
    let mut buf = [0u8; 1024];
    let mut len = 0;
    let read = loop {
        match super::read(info, &mut buf[len..]) {
            Ok(0) => break Ok(()),
            Ok(n) => len += n,
            Err(e) => break Err(e),
        }
        if len == buf.len() {
            break Ok(());
        }
    };
    super::close(info);
    read?;
    parse_mnt_id(&buf[..len]).ok_or(Errno::EIO)
}

/// Opens `/proc/<pid>/ns/<name>` of the /proc at `/proc`.
pub fn open_namespace(pid: libc::pid_t, name: &[u8]) -> SysResult<RawFd> {
    let path = ShortPath::of(&[
        Part::Text(b"/proc/"),
        Part::Num(pid as u64),
        Part::Text(b"/ns/"),
        Part::Text(name),
    ])?;
    super::open(path.as_cstr(), libc::O_RDONLY, 0)
}

fn parse_mnt_id(info: &[u8]) -> Option<u64> {
    let line = info
        .split(|b| *b == b'\n')
        .find_map(|l| l.strip_prefix(b"mnt_id:"))?;
    let digits = line.trim_ascii_start();
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    digits[..end].iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_paths_join_text_and_numbers() {
        let p = ShortPath::of(&[Part::Text(b"/proc/"), Part::Num(0), Part::Text(b"/x")]);
        assert_eq!(p.unwrap().as_cstr(), c"/proc/0/x");
        let p = fd_path(c"/oldroot/proc", 1234567).unwrap();
        assert_eq!(p.as_cstr(), c"/oldroot/proc/self/fd/1234567");
        let p = ShortPath::of(&[Part::Num(u64::MAX)]).unwrap();
        assert_eq!(p.as_cstr().to_bytes(), u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn a_path_too_long_or_with_a_nul_is_refused() {
        let long = [b'a'; 128];
        assert!(ShortPath::of(&[Part::Text(&long[..127])]).is_ok());
        assert_eq!(
            ShortPath::of(&[Part::Text(&long)]).err(),
            Some(Errno::ENAMETOOLONG)
        );
        assert!(ShortPath::of(&[Part::Text(b"a\0b")]).is_err());
    }

    #[test]
    fn mnt_id_is_read_from_fdinfo() {
        let info = b"pos:\t0\nflags:\t012100000\nmnt_id:\t4242\nino:\t7\n";
        assert_eq!(parse_mnt_id(info), Some(4242));
        assert_eq!(parse_mnt_id(b"pos:\t0\n"), None);
        assert_eq!(parse_mnt_id(b"mnt_id:\t\n"), None);
        assert_eq!(parse_mnt_id(b"mnt_id:\t99999999999999999999999\n"), None);
    }

    #[test]
    fn the_mount_id_of_a_descriptor_is_the_one_mountinfo_lists() {
        let fd = crate::sys::open(c"/proc", libc::O_PATH | libc::O_DIRECTORY, 0).unwrap();
        let id = mount_id(c"/proc", fd).unwrap();
        crate::sys::close(fd);
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let proc_line = mountinfo
            .lines()
            .rfind(|l| l.split(' ').nth(4) == Some("/proc"))
            .expect("/proc is a mount");
        assert_eq!(proc_line.split(' ').next(), Some(id.to_string().as_str()));
    }
}
