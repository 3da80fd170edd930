//! The setup process's mount table (`/proc/self/mountinfo`), read as a stream without
//! allocating: for each mount, its id, its parent's id, its mount point (unescaped) and its
//! per-mount options. See proc(5): `ID PARENT MAJ:MIN ROOT POINT OPTIONS ...`.

use std::ffi::CStr;

use crate::plan::MountAttrs;
use crate::sys::{self, Errno, SysResult};

/// One line of the table.
pub struct Entry<'a> {
    pub id: u64,
    pub parent: u64,
    /// The mount point, as the reading process sees it.
    pub point: &'a CStr,
    /// Which of ro, nosuid, nodev and noexec the mount has.
    pub attrs: MountAttrs,
}

/// Room for a mount point (PATH_MAX) and its NUL.
const POINT: usize = 4097;

/// The parser's state between bytes: which field it is in, and what it kept of the line.
struct Line {
    field: usize,
    id: u64,
    parent: u64,
    point: [u8; POINT],
    point_len: usize,
    /// Digits of an octal escape (`\040`) read so far in the mount point, and their value.
    escape: Option<(u8, u8)>,
    /// The option being read (longer ones are none of those kept).
    word: [u8; 8],
    word_len: usize,
    attrs: MountAttrs,
    bad: Option<Errno>,
}

impl Line {
    fn new() -> Line {
        Line {
            field: 0,
            id: 0,
            parent: 0,
            point: [0; POINT],
            point_len: 0,
            escape: None,
            word: [0; 8],
            word_len: 0,
            attrs: MountAttrs::empty(),
            bad: None,
        }
    }

    fn reset(&mut self) {
        self.field = 0;
        self.id = 0;
        self.parent = 0;
        self.point_len = 0;
        self.escape = None;
        self.word_len = 0;
        self.attrs = MountAttrs::empty();
        self.bad = None;
    }

    fn number(n: &mut u64, b: u8) -> Result<(), Errno> {
        match b {
            b'0'..=b'9' => {
                *n = n
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(b - b'0')))
                    .ok_or(Errno::EIO)?;
                Ok(())
            }
            _ => Err(Errno::EIO),
        }
    }

    fn point_byte(&mut self, b: u8) -> Result<(), Errno> {
        let b = match (self.escape, b) {
            (None, b'\\') => {
                self.escape = Some((0, 0));
                return Ok(());
            }
            (None, b) => b,
            (Some((n, v)), b'0'..=b'7') => {
                let v = v.wrapping_mul(8).wrapping_add(b - b'0');
                if n < 2 {
                    self.escape = Some((n + 1, v));
                    return Ok(());
                }
                self.escape = None;
                v
            }
            (Some(_), _) => return Err(Errno::EIO),
        };
        // A NUL would cut the path short; the last byte stays for the terminator.
        if b == 0 {
            return Err(Errno::EIO);
        }
        if self.point_len + 1 >= POINT {
            return Err(Errno::ENAMETOOLONG);
        }
        self.point[self.point_len] = b;
        self.point_len += 1;
        Ok(())
    }

    fn end_word(&mut self) {
        self.attrs |= match &self.word[..self.word_len] {
            b"ro" => MountAttrs::RDONLY,
            b"nosuid" => MountAttrs::NOSUID,
            b"nodev" => MountAttrs::NODEV,
            b"noexec" => MountAttrs::NOEXEC,
            _ => MountAttrs::empty(),
        };
        self.word_len = 0;
    }

    fn option_byte(&mut self, b: u8) {
        if b == b',' {
            self.end_word();
        } else if self.word_len < self.word.len() {
            self.word[self.word_len] = b;
            self.word_len += 1;
        } else {
            // Longer than any option kept: never matches.
            self.word_len = self.word.len();
            self.word[0] = b'-';
        }
    }

    /// Takes one byte that is not the end of the line.
    fn byte(&mut self, b: u8) {
        if self.bad.is_some() {
            return;
        }
        if b == b' ' {
            if self.field == 4 && self.escape.is_some() {
                self.bad = Some(Errno::EIO);
            }
            if self.field == 5 {
                self.end_word();
            }
            self.field += 1;
            return;
        }
        let r = match self.field {
            0 => Line::number(&mut self.id, b),
            1 => Line::number(&mut self.parent, b),
            4 => self.point_byte(b),
            5 => {
                self.option_byte(b);
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = r {
            self.bad = Some(e);
        }
    }

    /// The line just ended: the entry, or why there is none.
    fn entry(&mut self) -> Result<Entry<'_>, Errno> {
        if let Some(e) = self.bad {
            return Err(e);
        }
        if self.field < 6 || self.point_len == 0 {
            return Err(Errno::EIO);
        }
        self.point[self.point_len] = 0;
        let point =
            CStr::from_bytes_with_nul(&self.point[..=self.point_len]).map_err(|_| Errno::EIO)?;
        Ok(Entry {
            id: self.id,
            parent: self.parent,
            point,
            attrs: self.attrs,
        })
    }
}

/// Calls `f` with every mount of the table at `path` (a mountinfo file), in its order; stops
/// at the first error, `f`'s or the parser's (EIO for a line it cannot read, ENAMETOOLONG for
/// a mount point longer than PATH_MAX).
pub fn each(path: &CStr, mut f: impl FnMut(&Entry<'_>) -> SysResult) -> SysResult {
    let fd = sys::open(path, libc::O_RDONLY, 0)?;
    let r = feed(fd, &mut f);
    sys::close(fd);
    r
}

fn feed(fd: std::os::fd::RawFd, f: &mut impl FnMut(&Entry<'_>) -> SysResult) -> SysResult {
    let mut line = Line::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = sys::read(fd, &mut buf)?;
        if n == 0 {
            // The kernel ends every line with a newline: a partial one is a reading error.
            return match line.field {
                0 if line.id == 0 => Ok(()),
                _ => Err(Errno::EIO),
            };
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                f(&line.entry()?)?;
                line.reset();
            } else {
                line.byte(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry as the tests compare it: id, parent, mount point, attributes.
    type Owned = (u64, u64, Vec<u8>, MountAttrs);

    /// The entries of `text`, parsed from a file like the kernel's.
    fn parse(text: &[u8]) -> SysResult<Vec<Owned>> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, text).unwrap();
        let path = std::ffi::CString::new(file.path().as_os_str().as_encoded_bytes()).unwrap();
        let mut out = Vec::new();
        each(&path, |e| {
            out.push((e.id, e.parent, e.point.to_bytes().to_vec(), e.attrs));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn ids_points_and_options_are_read() {
        let text = b"22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n\
            1042 998 259:1 /usr /stage.d ro,relatime - ext4 /dev/root rw\n\
            1043 1042 0:50 / /stage.d/a\\040b\\134c rw,nodev - tmpfs none rw,size=1k\n";
        let got = parse(text).unwrap();
        let all = MountAttrs::NOSUID | MountAttrs::NODEV | MountAttrs::NOEXEC;
        assert_eq!(
            got,
            vec![
                (22, 1, b"/proc".to_vec(), all),
                (1042, 998, b"/stage.d".to_vec(), MountAttrs::RDONLY),
                (1043, 1042, b"/stage.d/a b\\c".to_vec(), MountAttrs::NODEV),
            ]
        );
    }

    #[test]
    fn the_super_block_options_do_not_count() {
        // The per-mount options are field 6; "ro" after the separator is the file system's.
        let got = parse(b"5 1 0:1 / /x rw - ext4 /dev/x ro,nosuid\n").unwrap();
        assert_eq!(got[0].3, MountAttrs::empty());
        // An option that only starts like a kept one is not it.
        let got = parse(b"5 1 0:1 / /x rw,nosuidx,nodevice,rox - t t rw\n").unwrap();
        assert_eq!(got[0].3, MountAttrs::empty());
    }

    #[test]
    fn a_line_sbx_cannot_read_stops_the_reading() {
        for bad in [
            &b"x 1 0:1 / /a rw - t t rw\n"[..],
            b"5 1 0:1 / /a\\04 rw - t t rw\n",
            b"5 1 0:1 / /a\\000 rw - t t rw\n",
            b"5 1 0:1 / /a\n",
            b"5 1 0:1 / /a rw - t t rw",
        ] {
            assert_eq!(parse(bad).err(), Some(Errno::EIO), "{bad:?}");
        }
        let mut long = b"5 1 0:1 / /".to_vec();
        long.extend([b'a'; POINT]);
        long.extend(b" rw - t t rw\n");
        assert_eq!(parse(&long).err(), Some(Errno::ENAMETOOLONG));
        assert_eq!(parse(b"").unwrap(), vec![]);
    }

    #[test]
    fn lines_longer_than_a_read_are_whole() {
        let mut text = Vec::new();
        for i in 0..200u64 {
            let point = format!("/m/{}", "d".repeat(100 + i as usize));
            text.extend(
                format!(
                    "{} 1 0:1 / {point} ro,nosuid - t t {}\n",
                    i + 2,
                    "o".repeat(50)
                )
                .bytes(),
            );
        }
        let got = parse(&text).unwrap();
        assert_eq!(got.len(), 200);
        assert_eq!(got[199].2.len(), 3 + 100 + 199);
        assert!(
            got.iter()
                .all(|e| e.3 == MountAttrs::RDONLY | MountAttrs::NOSUID)
        );
    }

    #[test]
    fn this_process_table_reads() {
        let mut n = 0;
        each(c"/proc/self/mountinfo", |e| {
            assert!(e.point.to_bytes().starts_with(b"/"));
            n += 1;
            Ok(())
        })
        .unwrap();
        assert!(n > 0);
    }
}
